//! The decision for one standalone Sync: its own runs (on its schedule or on request) are
//! one-step runs of the same engine a sequence's runs use, and its `lastRun` reports the most
//! recent run of the Sync whoever started it (its schedule, a person, a sequence).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, Desired};
use super::runs::{self, Cluster, Driven, Runner};
use super::upstream::Upstreams;
use super::{Action, Holder, JobOutcome, JobOwner, JobView, Plan};
use crate::api::{
    ConcurrencyPolicy, FailurePolicy, StepPhase, Sync, SyncRef, SyncRunRecord, SyncStatus,
    TriggerKind,
};

/// Standalone runs kept in `status.runs` (and their Jobs); older Jobs the Sync owns are deleted.
pub const SYNC_HISTORY: i32 = 3;

/// The name of the one step of a Sync's own run (and of its Jobs' step label).
pub const STANDALONE_STEP: &str = "run";

/// A Job that runs this Sync, and who started it.
#[derive(Debug, Clone)]
pub struct SyncJob {
    pub view: JobView,
    /// The sequence that created it, if any; None for the Sync's own runs.
    pub sequence: Option<String>,
}

/// Everything the engine looks at for one Sync.
#[derive(Debug, Clone, Copy)]
pub struct SyncObserved<'a> {
    pub sync: &'a Sync,
    /// The Jobs the Sync controls (its own runs), matched by owner UID.
    pub own: &'a [JobView],
    /// Every Job that runs this Sync, its own and its sequences', for `lastRun`.
    pub all: &'a [SyncJob],
    /// What holds the Sync now (under its own name), across the namespace.
    pub holders: &'a BTreeMap<String, Vec<Holder>>,
    /// The upstreams of `spec.after`, as their statuses show them.
    pub upstreams: &'a Upstreams,
    pub now: Timestamp,
}

/// What to do for a Sync.
pub type SyncPlan = Plan<SyncStatus>;

pub fn decide_sync(obs: &SyncObserved) -> SyncPlan {
    let sync = obs.sync;
    let now = obs.now;
    let old = sync.status.clone().unwrap_or_default();
    let generation = sync.metadata.generation;
    let mut st = old.clone();
    let mut actions = Vec::new();
    let owner = JobOwner::of(sync);
    let steps = [crate::api::Step {
        name: STANDALONE_STEP.into(),
        sync_ref: SyncRef {
            name: owner.name.clone(),
        },
        on_failure: FailurePolicy::Stop,
        rejected_rows: None,
        retries: 0,
        retry_delay_seconds: 0,
        timeout_seconds: None,
    }];
    let syncs = BTreeMap::from([(owner.name.clone(), sync.clone())]);
    let runner = Runner {
        owner,
        meta: &sync.metadata,
        scheduling: &sync.spec.scheduling,
        // CronJob's default: a trigger that arrives while the Sync's own run is in progress is
        // dropped (and counted); one that arrives while a sequence runs the Sync starts a run
        // whose step waits for it.
        concurrency: ConcurrencyPolicy::Forbid,
        steps: &steps,
        history_limit: runs::history_limit(SYNC_HISTORY),
    };
    let cluster = Cluster {
        syncs: &syncs,
        jobs: obs.own,
        holders: obs.holders,
        upstreams: obs.upstreams,
        now,
    };
    let (spec_error, missing_upstreams, wake) = match runs::drive(
        &runner,
        cluster,
        &mut st.schedule,
        &mut st.book,
        &mut st.conditions,
        &mut actions,
    ) {
        Driven::Stale(at) => {
            return SyncPlan {
                status: old,
                // Only the deletes that cannot wait for status.
                actions,
                wake_at: Some(at),
            };
        }
        Driven::Done {
            spec_error,
            missing_upstreams,
            wake,
            ..
        } => (spec_error, missing_upstreams, wake),
    };
    if let Some(newest) = newest(obs.all.iter()) {
        st.last_run = Some(record(newest, &st));
    }
    let ended = |ok: bool| {
        newest(obs.all.iter().filter(move |j| match j.view.outcome {
            JobOutcome::Active => false,
            JobOutcome::Succeeded => ok,
            JobOutcome::Failed { .. } => !ok,
        }))
    };
    let succeeded = ended(true).map(|j| record(j, &st));
    let failed = ended(false).map(|j| record(j, &st));
    keep_newer(&mut st.last_succeeded_run, succeeded);
    keep_newer(&mut st.last_failed_run, failed);
    let holder = obs
        .holders
        .get(&runner.owner.name)
        .and_then(|h| h.first())
        .cloned();
    set_conditions(
        &mut st,
        spec_error.as_ref().map(|(reason, m)| (*reason, m.as_str())),
        &missing_upstreams,
        &old,
        holder.as_ref(),
        generation,
        now,
        &mut actions,
    );
    st.observed_generation = generation;
    SyncPlan {
        status: st,
        actions,
        wake_at: wake,
    }
}

fn newest<'a>(jobs: impl Iterator<Item = &'a SyncJob>) -> Option<&'a SyncJob> {
    jobs.max_by(|a, b| (a.view.created, &a.view.name).cmp(&(b.view.created, &b.view.name)))
}

/// Replaces `kept` with `found` unless `kept` is the newer run: the Jobs of older runs are
/// deleted in time (history limits, TTLs), and the record stays.
fn keep_newer(kept: &mut Option<SyncRunRecord>, found: Option<SyncRunRecord>) {
    let Some(found) = found else { return };
    let key = |r: &SyncRunRecord| (r.start_time.as_ref().map(|t| t.0), r.job_name.clone());
    if kept.as_ref().is_none_or(|k| key(k) <= key(&found)) {
        *kept = Some(found);
    }
}

/// The Sync's last run, as its newest Job tells it.
///
/// A Job still active reports nothing of its Pod's result: the result (written when the Pod
/// terminates, just before the Job completes) goes into the record with the outcome, in one
/// status write rather than two.
fn record(job: &SyncJob, st: &SyncStatus) -> SyncRunRecord {
    let v = &job.view;
    let report = match v.outcome {
        JobOutcome::Active => Default::default(),
        _ => v.report.clone().unwrap_or_default(),
    };
    let (outcome, message) = match &v.outcome {
        JobOutcome::Active => (StepPhase::Running, None),
        JobOutcome::Succeeded => (StepPhase::Succeeded, report.message.clone()),
        JobOutcome::Failed {
            timed_out: true, ..
        } => (StepPhase::Failed, Some("timed out".to_string())),
        JobOutcome::Failed { reason, .. } => {
            let exit = report
                .exit_code
                .map(|c| format!(" (exit code {c})"))
                .unwrap_or_default();
            (
                StepPhase::Failed,
                Some(format!(
                    "{}{exit}",
                    report
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("job failed: {reason}"))
                )),
            )
        }
    };
    let (trigger, sequence_run) = match &job.sequence {
        Some(seq) => (
            Some(TriggerKind::Upstream),
            Some(format!("{seq}/{}", v.run)),
        ),
        None => {
            let own = st.book.current_run.iter().map(|r| (r.id, r.trigger));
            let trigger = own
                .chain(st.book.runs.iter().map(|r| (r.id, r.trigger)))
                .find(|(id, _)| *id == v.run)
                .map(|(_, t)| t);
            (trigger, None)
        }
    };
    SyncRunRecord {
        job_name: v.name.clone(),
        trigger,
        sequence_run,
        start_time: v.created.map(Time),
        completion_time: v.finished_at.map(Time),
        outcome: Some(outcome),
        rows_synced: report.rows_synced,
        rows_rejected: report.rows_rejected,
        message,
    }
}

#[allow(clippy::too_many_arguments)]
fn set_conditions(
    st: &mut SyncStatus,
    spec_error: Option<(&'static str, &str)>,
    missing_upstreams: &[String],
    old: &SyncStatus,
    holder: Option<&Holder>,
    generation: Option<i64>,
    now: Timestamp,
    actions: &mut Vec<Action>,
) {
    let conds = &mut st.conditions;
    conditions::set_spec_health(
        conds,
        &old.conditions,
        spec_error,
        (!missing_upstreams.is_empty()).then(|| conditions::upstream_not_found(missing_upstreams)),
        "spec is valid",
        generation,
        now,
        actions,
    );
    // Its own run in progress says where it stands (waiting for a sequence that runs the Sync,
    // say); otherwise whoever holds the Sync.
    let own = st.book.current_run.as_ref().and_then(|run| {
        let step = run.steps.first()?;
        Some(format!(
            "its own run {}: {}",
            run.id,
            step.message
                .clone()
                .unwrap_or_else(|| format!("{:?}", step.phase))
        ))
    });
    let running = own.or_else(|| holder.map(|h| format!("running for {}", h.by)));
    conditions::set_running(
        conds,
        running,
        "no job of this sync is running",
        generation,
        now,
    );
    match st.last_run.as_ref().and_then(|r| r.outcome) {
        Some(StepPhase::Succeeded) => conditions::set(
            conds,
            Desired {
                type_: conditions::LAST_RUN_SUCCEEDED,
                status: true,
                reason: "Succeeded",
                message: "the last run succeeded".into(),
            },
            generation,
            now,
        ),
        Some(StepPhase::Failed) => {
            let message = st
                .last_run
                .as_ref()
                .and_then(|r| r.message.clone())
                .unwrap_or_default();
            conditions::set(
                conds,
                Desired {
                    type_: conditions::LAST_RUN_SUCCEEDED,
                    status: false,
                    reason: "Failed",
                    message,
                },
                generation,
                now,
            )
        }
        _ if conds
            .iter()
            .any(|c| c.type_ == conditions::LAST_RUN_SUCCEEDED) => {}
        _ => conditions::set_unknown(
            conds,
            conditions::LAST_RUN_SUCCEEDED,
            "NoRunYet",
            "no run has finished yet",
            generation,
            now,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RunPhase, annotations, labels};
    use crate::engine::fixtures::{self, t0};
    use crate::engine::{Report, job_name};

    /// Plays the cluster around one Sync: its own Jobs, and a sequence's Job of it.
    struct World {
        sync: Sync,
        own: Vec<JobView>,
        elsewhere: Vec<SyncJob>,
        now: Timestamp,
    }

    impl World {
        fn new() -> Self {
            World {
                sync: fixtures::sync("accounts"),
                own: vec![],
                elsewhere: vec![],
                now: t0(),
            }
        }

        fn request(&mut self, key: &str, v: &str) {
            self.sync
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(key.into(), v.into());
        }

        fn holders(&self) -> BTreeMap<String, Vec<Holder>> {
            let mut out: BTreeMap<String, Vec<Holder>> = BTreeMap::new();
            for j in self.all().iter().filter(|j| !j.view.is_finished()) {
                out.entry("accounts".into()).or_default().push(Holder {
                    job: j.view.name.clone(),
                    by: match &j.sequence {
                        Some(s) => format!("sequence {s} run {}", j.view.run),
                        None => format!("its own run {}", j.view.run),
                    },
                });
            }
            out
        }

        fn all(&self) -> Vec<SyncJob> {
            let own = self.own.iter().map(|v| SyncJob {
                view: v.clone(),
                sequence: None,
            });
            own.chain(self.elsewhere.iter().cloned()).collect()
        }

        fn plan(&self) -> SyncPlan {
            decide_sync(&SyncObserved {
                sync: &self.sync,
                own: &self.own,
                all: &self.all(),
                holders: &self.holders(),
                upstreams: &Default::default(),
                now: self.now,
            })
        }

        /// Decides and applies the plan; returns the names of the Jobs it created.
        fn reconcile(&mut self) -> (SyncPlan, Vec<String>) {
            let plan = self.plan();
            self.sync.status = Some(plan.status.clone());
            let mut created = vec![];
            for a in &plan.actions {
                match a {
                    Action::CreateJob(job) => {
                        created.push(job.metadata.name.clone().unwrap());
                        if !self
                            .own
                            .iter()
                            .any(|j| Some(&j.name) == job.metadata.name.as_ref())
                        {
                            self.own.push(fixtures::created(job, self.now));
                        }
                    }
                    Action::DeleteJob { name } => self.own.retain(|j| &j.name != name),
                    _ => {}
                }
            }
            (plan, created)
        }

        fn finish_own(&mut self, outcome: JobOutcome) {
            self.now += jiff::SignedDuration::from_secs(1);
            let job = self.own.iter_mut().find(|j| !j.is_finished()).unwrap();
            job.outcome = outcome;
            job.finished_at = Some(self.now);
            job.report = Some(report());
        }
    }

    fn report() -> Report {
        Report {
            rows_synced: Some(7),
            rows_rejected: Some(1),
            message: Some("ok".into()),
            exit_code: Some(0),
        }
    }

    fn sequence_job(outcome: JobOutcome) -> SyncJob {
        SyncJob {
            view: JobView {
                name: "crm-3-accounts-1-x".into(),
                uid: "uid-seq-job".into(),
                run: 3,
                step: "accounts".into(),
                sync: "accounts".into(),
                attempt: 1,
                finished_at: (outcome != JobOutcome::Active).then(t0),
                outcome,
                report: Some(report()),
                deleting: false,
                created: Some(t0()),
            },
            sequence: Some("crm".into()),
        }
    }

    #[test]
    fn a_request_starts_one_owned_one_step_run_and_is_echoed() {
        let mut w = World::new();
        w.request(annotations::REQUESTED_AT, "r1");
        let (plan, created) = w.reconcile();
        assert_eq!(
            created,
            vec![job_name("Sync", "accounts", 1, STANDALONE_STEP, 1)]
        );
        let Some(Action::CreateJob(new_job)) = plan
            .actions
            .iter()
            .find(|a| matches!(a, Action::CreateJob(_)))
        else {
            panic!()
        };
        let owner = &new_job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Sync", "uid-sync-accounts")
        );
        assert!(
            !new_job
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(labels::SEQUENCE)
        );
        let st = &plan.status;
        assert_eq!(st.book.last_handled_request_at.as_deref(), Some("r1"));
        assert_eq!(st.book.last_run_number, Some(1));
        let run = st.book.current_run.as_ref().unwrap();
        assert_eq!((run.trigger, run.steps.len()), (TriggerKind::Manual, 1));
        // Replaying with the written status starts nothing new.
        assert!(w.reconcile().1.is_empty());
        w.finish_own(JobOutcome::Succeeded);
        let (plan, created) = w.reconcile();
        assert!(created.is_empty());
        assert_eq!(plan.status.book.runs[0].phase, RunPhase::Succeeded);
        let last = plan.status.last_run.unwrap();
        assert_eq!(
            (last.trigger, last.outcome, last.rows_synced),
            (
                Some(TriggerKind::Manual),
                Some(StepPhase::Succeeded),
                Some(7)
            )
        );
    }

    #[test]
    fn its_run_waits_while_a_sequence_runs_the_sync_and_starts_when_it_is_free() {
        let mut w = World::new();
        w.elsewhere.push(sequence_job(JobOutcome::Active));
        w.request(annotations::REQUESTED_AT, "r1");
        let (plan, created) = w.reconcile();
        assert!(created.is_empty());
        let step = &plan.status.book.current_run.as_ref().unwrap().steps[0];
        assert_eq!(step.phase, StepPhase::Waiting);
        assert_eq!(
            step.message.as_deref(),
            Some("waiting: sync accounts is running for sequence crm run 3")
        );
        assert!(
            plan.wake_at.is_some(),
            "a waiting step has a bounded requeue"
        );
        let running = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Running")
            .unwrap();
        assert!(
            running
                .message
                .contains("waiting: sync accounts is running for sequence crm run 3")
        );
        let last = plan.status.last_run.as_ref().unwrap();
        assert_eq!(
            (last.trigger, last.sequence_run.as_deref()),
            (Some(TriggerKind::Upstream), Some("crm/3"))
        );
        assert_eq!(
            (last.outcome, last.rows_synced, last.message.as_deref()),
            (Some(StepPhase::Running), None, None),
            "the Pod's result waits for the Job's outcome: one status write, not two"
        );
        w.elsewhere = vec![sequence_job(JobOutcome::Succeeded)];
        let (plan, created) = w.reconcile();
        assert_eq!(created.len(), 1, "starts once the Sync is free");
        let last = plan.status.last_run.as_ref().unwrap();
        assert_eq!(
            (last.outcome, last.rows_synced, last.message.as_deref()),
            (Some(StepPhase::Succeeded), Some(7), Some("ok"))
        );
    }

    #[test]
    fn cancel_deletes_only_its_own_running_job_and_again_if_the_delete_was_lost() {
        let mut w = World::new();
        w.elsewhere.push(sequence_job(JobOutcome::Active));
        w.request(annotations::REQUESTED_AT, "r1");
        w.elsewhere.clear();
        w.reconcile();
        w.elsewhere.push(sequence_job(JobOutcome::Active));
        w.request(annotations::CANCEL_REQUESTED_AT, "c1");
        let plan = w.plan();
        let own = job_name("Sync", "accounts", 1, STANDALONE_STEP, 1);
        assert_eq!(fixtures::deletes(&plan.actions), vec![own.clone()]);
        assert_eq!(
            plan.status.book.last_handled_cancel_at.as_deref(),
            Some("c1")
        );
        assert_eq!(plan.status.book.runs[0].phase, RunPhase::Cancelled);
        // The delete was lost: the next reconcile deletes again (level-triggered).
        w.sync.status = Some(plan.status);
        let again = w.plan();
        assert_eq!(fixtures::deletes(&again.actions), vec![own]);
    }

    #[test]
    fn its_own_schedule_runs_it() {
        let mut w = World::new();
        w.sync.spec.scheduling.schedule = Some("*/5 * * * *".into());
        w.now = "2026-01-05T10:10:00Z".parse().unwrap();
        let (plan, created) = w.reconcile();
        assert_eq!(created.len(), 1);
        assert_eq!(plan.status.schedule.last_schedule_time, Some(Time(w.now)));
        assert_eq!(
            plan.wake_at,
            Some(w.now + jiff::SignedDuration::from_mins(5))
        );
    }

    #[test]
    fn the_last_succeeded_and_failed_runs_stay_when_newer_runs_start_and_old_jobs_go() {
        let mut w = World::new();
        w.elsewhere.push(sequence_job(JobOutcome::Succeeded));
        w.reconcile();
        let st = w.sync.status.clone().unwrap();
        let ok = st.last_succeeded_run.clone().unwrap();
        assert_eq!(ok.job_name, "crm-3-accounts-1-x");
        assert_eq!(ok.sequence_run.as_deref(), Some("crm/3"));
        assert!(st.last_failed_run.is_none());

        // A newer run starts (its Job is active), and the finished Job is deleted: lastRun
        // follows the new Job, the last success stays.
        w.now += jiff::SignedDuration::from_secs(60);
        w.elsewhere.clear();
        w.request(annotations::REQUESTED_AT, "r1");
        w.reconcile();
        w.reconcile();
        let st = w.sync.status.clone().unwrap();
        assert_eq!(st.last_run.unwrap().outcome, Some(StepPhase::Running));
        assert_eq!(st.last_succeeded_run, Some(ok.clone()));

        w.finish_own(JobOutcome::Failed {
            timed_out: false,
            reason: "BackoffLimitExceeded".into(),
        });
        w.reconcile();
        let st = w.sync.status.clone().unwrap();
        assert_eq!(st.last_succeeded_run, Some(ok));
        let failed = st.last_failed_run.unwrap();
        assert_eq!(failed.outcome, Some(StepPhase::Failed));
        assert_eq!(failed.trigger, Some(crate::api::TriggerKind::Manual));
    }
}
