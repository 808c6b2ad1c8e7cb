//! The decision for one standalone Sync: its own runs (on its schedule or on request) are
//! one-step runs of the same engine a sequence's runs use, and its `lastRun` reports the most
//! recent run of the Sync whoever started it (its schedule, a person, a sequence).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions;
use super::reasons;
use super::run::failure_message;
use super::runs::{self, Cluster, Done, Driven, Runner};
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

/// How long a claim holds while its Job is not in the cache (a claimant killed between its
/// claim and its create blocks the Sync for at most that long), and how long the running
/// record a sequence's claim wrote stands before the Jobs alone decide `lastRun` again.
pub const CLAIM_YOUNG: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

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
    // A sequence's claim wrote the running record of the Job it was about to create
    // (`claimed`); until that Job reaches the cache (or the claim is old: its create was
    // refused, or its claimant died), the record stands and the claim holds the Sync.
    let unseen_claim = old.claim.as_ref().filter(|c| {
        now < c.time.0 + CLAIM_YOUNG
            && old.last_run.as_ref().is_some_and(|r| r.job_name == c.job)
            && !obs.all.iter().any(|j| j.view.name == c.job)
    });
    let with_claim;
    let holders = match unseen_claim {
        Some(c) => {
            let mut all = obs.holders.clone();
            all.entry(runner.owner.name.clone())
                .or_default()
                .push(Holder {
                    job: c.job.clone(),
                    by: c.by.clone(),
                });
            with_claim = all;
            &with_claim
        }
        None => obs.holders,
    };
    let cluster = Cluster {
        syncs: &syncs,
        jobs: obs.own,
        holders,
        upstreams: obs.upstreams,
        now,
    };
    let Done {
        spec_error,
        missing_upstreams,
        wake,
        ..
    } = match runs::drive(
        &runner,
        cluster,
        &old,
        &mut st.schedule,
        &mut st.book,
        &mut st.conditions,
        &mut actions,
    ) {
        Driven::Done(done) => done,
        Driven::Stale(plan) => return plan,
    };
    let wake = match unseen_claim {
        Some(c) => crate::engine::earliest(wake, Some(c.time.0 + CLAIM_YOUNG)),
        None => wake,
    };
    if unseen_claim.is_none() {
        match newest(obs.all.iter()) {
            Some(newest) => st.last_run = Some(record(newest, &st, old.last_run.as_ref())),
            // A running record whose Job is gone (its create refused, or deleted before it
            // ended) says how that run ended. (It is rewritten, not removed: a claim may have
            // written it, and the reconciler's apply removes only fields it wrote itself.)
            None => {
                if let Some(r) = st
                    .last_run
                    .as_mut()
                    .filter(|r| r.outcome == Some(StepPhase::Running))
                {
                    r.outcome = Some(StepPhase::Failed);
                    r.completion_time = Some(Time(now));
                    r.message = Some(format!(
                        "job {} did not run to its end: it was never created, or was deleted",
                        r.job_name
                    ));
                }
            }
        }
    }
    let ended = |ok: bool| {
        newest(obs.all.iter().filter(move |j| match j.view.outcome {
            JobOutcome::Active => false,
            JobOutcome::Succeeded => ok,
            JobOutcome::Failed { .. } => !ok,
        }))
    };
    let succeeded = ended(true).map(|j| record(j, &st, old.last_run.as_ref()));
    let failed = ended(false).map(|j| record(j, &st, old.last_run.as_ref()));
    keep_newer(&mut st.last_succeeded_run, succeeded);
    keep_newer(&mut st.last_failed_run, failed);
    let holder = holders
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

/// The Sync's status as it reads once a sequence's Job `job` (run `run` of `sequence`) holds
/// it: `lastRun` running, and the `Running` condition saying for whom. The claim's
/// compare-and-swap write carries it, so the Job's start costs the Sync no write (and no
/// reconcile) of its own; [`decide_sync`] arrives at the same status once the Job is cached.
/// While the Sync's own run is in progress its `Running` condition speaks for that run, and is
/// left to its reconcile.
pub fn claimed(sync: &Sync, job: &str, sequence: &str, run: i64, now: Timestamp) -> SyncStatus {
    let mut st = sync.status.clone().unwrap_or_default();
    let running = SyncJob {
        view: JobView {
            name: job.to_string(),
            uid: String::new(),
            run,
            step: String::new(),
            sync: sync.metadata.name.clone().unwrap_or_default(),
            attempt: 1,
            outcome: JobOutcome::Active,
            finished_at: None,
            report: None,
            deleting: false,
            created: Some(now),
        },
        sequence: Some(sequence.to_string()),
    };
    st.last_run = Some(record(&running, &st, None));
    if st.book.current_run.is_none() {
        conditions::set_running(
            &mut st.conditions,
            Some(format!("running for {}", sequence_runner(sequence, run))),
            IDLE,
            sync.metadata.generation,
            now,
        );
    }
    st
}

/// Who runs a sequence's Job, in messages (as the Job's labels tell it).
pub fn sequence_runner(sequence: &str, run: i64) -> String {
    format!("sequence {sequence} run {run}")
}

/// The `Running` condition's message while nothing runs the Sync.
const IDLE: &str = "no job of this sync is running";

fn newest<'a>(jobs: impl Iterator<Item = &'a SyncJob>) -> Option<&'a SyncJob> {
    jobs.max_by(|a, b| (a.view.created, &a.view.name).cmp(&(b.view.created, &b.view.name)))
}

/// Replaces `kept` with `found` unless `kept` is the newer run: the Jobs of older runs are
/// deleted in time (history limits, TTLs), and the record stays.
fn keep_newer(kept: &mut Option<SyncRunRecord>, found: Option<SyncRunRecord>) {
    let Some(mut found) = found else { return };
    // The same Job's record keeps the start time it was first given (see `record`).
    if let Some(k) = kept.as_ref().filter(|k| k.job_name == found.job_name) {
        found.start_time = k.start_time.clone().or(found.start_time);
    }
    let key = |r: &SyncRunRecord| (r.start_time.as_ref().map(|t| t.0), r.job_name.clone());
    if kept.as_ref().is_none_or(|k| key(k) <= key(&found)) {
        *kept = Some(found);
    }
}

/// The Sync's last run, as its newest Job tells it.
///
/// A Job still active reports nothing of its Pod's result: the result (written when the Pod
/// terminates, just before the Job completes) goes into the record with the outcome, in one
/// status write rather than two. A record already kept for the same Job (`known`) keeps its
/// start time: a sequence's claim wrote it a moment before the Job's creation time.
fn record(job: &SyncJob, st: &SyncStatus, known: Option<&SyncRunRecord>) -> SyncRunRecord {
    let v = &job.view;
    let report = match v.outcome {
        JobOutcome::Active => Default::default(),
        _ => v.report.clone().unwrap_or_default(),
    };
    let (outcome, message) = match &v.outcome {
        JobOutcome::Active => (StepPhase::Running, None),
        JobOutcome::Succeeded => (StepPhase::Succeeded, report.message.clone()),
        // The same text as the step's. The limit a sequence's step set is not known here: a
        // timeout names the Job's deadline, which that limit became.
        JobOutcome::Failed { timed_out, reason } => (
            StepPhase::Failed,
            Some(failure_message(*timed_out, reason, &report, None)),
        ),
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
        start_time: known
            .filter(|k| k.job_name == v.name)
            .and_then(|k| k.start_time.clone())
            .or(v.created.map(Time)),
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
    conditions::set_running(conds, running, IDLE, generation, now);
    let ended = match st.last_run.as_ref().and_then(|r| r.outcome) {
        Some(StepPhase::Succeeded) => Some((
            true,
            reasons::SUCCEEDED,
            "the last run succeeded".to_string(),
        )),
        Some(StepPhase::Failed) => {
            let message = st
                .last_run
                .as_ref()
                .and_then(|r| r.message.clone())
                .unwrap_or_default();
            Some((false, reasons::FAILED, message))
        }
        // `lastRun` is in progress (or not there): the condition keeps what it said last.
        _ if conds
            .iter()
            .any(|c| c.type_ == conditions::LAST_RUN_SUCCEEDED) =>
        {
            return;
        }
        _ => None,
    };
    conditions::set_last_run(conds, ended, generation, now);
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

    /// The Sync as a sequence's claim for `job` leaves it (the write the claim makes).
    fn claim_for_sequence(w: &mut World, job: &SyncJob) {
        let mut st = claimed(
            &w.sync,
            &job.view.name,
            job.sequence.as_deref().unwrap(),
            job.view.run,
            w.now,
        );
        st.claim = Some(crate::api::SyncClaim {
            job: job.view.name.clone(),
            by: sequence_runner(job.sequence.as_deref().unwrap(), job.view.run),
            time: Time(w.now),
        });
        w.sync.status = Some(st);
    }

    fn running(st: &SyncStatus) -> (&str, &str) {
        let c = st
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::RUNNING)
            .unwrap();
        (c.status.as_str(), c.message.as_str())
    }

    #[test]
    fn a_sequences_claim_writes_what_the_sync_would_once_the_job_is_cached() {
        let mut w = World::new();
        w.reconcile();
        // The claim is made a moment before the Job's creation time, in another second.
        let job = {
            let mut j = sequence_job(JobOutcome::Active);
            j.view.created = Some(t0() + jiff::SignedDuration::from_secs(1));
            j
        };
        claim_for_sequence(&mut w, &job);
        let claimed = w.sync.status.clone().unwrap();
        let record = claimed.last_run.clone().unwrap();
        assert_eq!(record.outcome, Some(StepPhase::Running));
        assert_eq!(record.sequence_run.as_deref(), Some("crm/3"));
        assert_eq!(
            running(&claimed),
            ("True", "running for sequence crm run 3")
        );

        // Before the Job is cached, and once it is: nothing left to write.
        assert_eq!(w.plan().status, claimed);
        w.elsewhere.push(job.clone());
        assert_eq!(
            w.plan().status,
            claimed,
            "the Job's first event changes nothing"
        );

        // Its end is the Sync's one write of the step.
        w.elsewhere[0].view.outcome = JobOutcome::Succeeded;
        w.elsewhere[0].view.finished_at = Some(t0() + jiff::SignedDuration::from_secs(3));
        let done = w.plan().status;
        let last = done.last_run.clone().unwrap();
        assert_eq!(last.outcome, Some(StepPhase::Succeeded));
        assert_eq!(
            last.start_time, record.start_time,
            "the claim's start time stays"
        );
        assert_eq!(running(&done).0, "False");
    }

    #[test]
    fn a_claimed_job_never_created_stops_showing_once_the_claim_is_old() {
        let mut w = World::new();
        w.elsewhere.push(sequence_job(JobOutcome::Succeeded));
        w.reconcile();
        let before = w.sync.status.clone().unwrap().last_run;
        let mut never = sequence_job(JobOutcome::Active);
        never.view.name = "crm-4-accounts-1-y".into();
        never.view.run = 4;
        claim_for_sequence(&mut w, &never);

        // Young: the record stands, the claim holds, and the Sync looks again when it is old.
        let plan = w.plan();
        assert_eq!(
            plan.status.last_run.as_ref().unwrap().job_name,
            never.view.name
        );
        assert_eq!(
            running(&plan.status),
            ("True", "running for sequence crm run 4")
        );
        assert_eq!(plan.wake_at, Some(w.now + CLAIM_YOUNG));

        // Old (its create was refused, or its claimant died): the Jobs decide again.
        w.now += CLAIM_YOUNG;
        let plan = w.plan();
        assert_eq!(plan.status.last_run, before);
        assert_eq!(running(&plan.status).0, "False");
    }

    #[test]
    fn a_claimed_job_never_created_is_recorded_as_ended_when_no_job_ran_before() {
        let mut w = World::new();
        w.reconcile();
        claim_for_sequence(&mut w, &sequence_job(JobOutcome::Active));
        assert!(
            w.plan().status.last_run.is_some(),
            "young: the record stands"
        );
        w.now += CLAIM_YOUNG;
        let plan = w.plan();
        let last = plan.status.last_run.clone().unwrap();
        assert_eq!(
            last.outcome,
            Some(StepPhase::Failed),
            "a Job that never ran is not running"
        );
        assert!(last.message.unwrap().contains("never created"));
        assert_eq!(running(&plan.status).0, "False");
        // And that is settled: deciding again changes nothing.
        w.sync.status = Some(plan.status.clone());
        assert_eq!(w.plan().status, plan.status);
    }

    #[derive(Debug, Clone)]
    enum SyncOp {
        /// Decide and apply the plan in full.
        Reconcile,
        /// A sequence claims the free Sync for a Job it is about to create.
        Claim,
        /// The claimed Job reaches the cache, created this many seconds after the claim.
        Appear(u8),
        /// A sequence's running Job ends.
        FinishSequence(bool),
        /// The Sync's own running Job ends.
        FinishOwn(bool),
        /// A person asks the Sync for a run of its own.
        Request,
        Clock(u8),
    }

    fn sync_op() -> impl Strategy<Value = SyncOp> {
        prop_oneof![
            3 => Just(SyncOp::Reconcile),
            2 => Just(SyncOp::Claim),
            2 => (0u8..3).prop_map(SyncOp::Appear),
            2 => any::<bool>().prop_map(SyncOp::FinishSequence),
            1 => any::<bool>().prop_map(SyncOp::FinishOwn),
            1 => Just(SyncOp::Request),
            1 => (1u8..40).prop_map(SyncOp::Clock),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        /// What the wake-up filter relies on for Syncs: a plan applied in full leaves nothing
        /// for the next decision (unless it asked to be woken by now), and a sequence's claim
        /// wrote what the Sync decides once the claimed Job is cached, so that Job's first event
        /// need not wake it.
        #[test]
        fn a_sync_settles_and_a_claimed_job_appearing_changes_nothing(
            ops in proptest::collection::vec(sync_op(), 1..40)
        ) {
            let mut w = World::new();
            let mut unseen: Option<SyncJob> = None;
            let mut runs = 0i64;
            let mut requests = 0;
            for op in ops {
                match op {
                    SyncOp::Reconcile => {
                        let (plan, created) = w.reconcile();
                        // (The first event of a Job of its own run does wake the Sync, which
                        // then records it in `lastRun`.)
                        if created.is_empty() && plan.wake_at.is_none_or(|at| at > w.now) {
                            let again = w.plan();
                            prop_assert_eq!(Some(&again.status), w.sync.status.as_ref());
                            prop_assert!(
                                !again.actions.iter().any(|a| matches!(a, Action::CreateJob(_))),
                                "{:?}", again.actions
                            );
                        }
                    }
                    SyncOp::Claim => {
                        let claim_holds = w.sync.status.as_ref()
                            .and_then(|s| s.claim.as_ref())
                            .is_some_and(|c| w.now < c.time.0 + CLAIM_YOUNG
                                && !w.all().iter().any(|j| j.view.name == c.job && j.view.is_finished()));
                        if w.holders().is_empty() && !claim_holds {
                            runs += 1;
                            let mut job = sequence_job(JobOutcome::Active);
                            job.view.name = format!("crm-{runs}-accounts-1-x");
                            job.view.run = runs;
                            job.view.report = None;
                            job.view.finished_at = None;
                            claim_for_sequence(&mut w, &job);
                            unseen = Some(job);
                        }
                    }
                    // Only while the claim is young: a Job whose first event comes later
                    // wakes the Sync (`Freshness::created_job`).
                    SyncOp::Appear(late) => {
                        let young = w.sync.status.as_ref().and_then(|s| s.claim.as_ref())
                            .is_some_and(|c| w.now + jiff::SignedDuration::from_secs(late.into())
                                < c.time.0 + CLAIM_YOUNG);
                        if let Some(mut job) = unseen.take().filter(|_| young) {
                            let claimed_at = w.sync.status.as_ref()
                                .and_then(|s| s.claim.as_ref()).map(|c| c.time.0);
                            job.view.created = claimed_at
                                .map(|t| t + jiff::SignedDuration::from_secs(late.into()));
                            // Created after its claim, and not in the future.
                            w.now = w.now.max(job.view.created.unwrap_or(w.now));
                            // The decision is the same with the Job cached as without it.
                            let before = w.plan().status;
                            w.elsewhere.push(job);
                            prop_assert_eq!(
                                w.plan().status,
                                before,
                                "the claimed Job's first event changed the Sync's status"
                            );
                        }
                    }
                    SyncOp::FinishSequence(ok) => {
                        w.now += jiff::SignedDuration::from_secs(1);
                        let now = w.now;
                        if let Some(j) = w.elsewhere.iter_mut().find(|j| !j.view.is_finished()) {
                            j.view.outcome = if ok {
                                JobOutcome::Succeeded
                            } else {
                                JobOutcome::Failed { timed_out: false, reason: "BackoffLimitExceeded".into() }
                            };
                            j.view.finished_at = Some(now);
                            j.view.report = Some(report());
                        }
                    }
                    SyncOp::FinishOwn(ok) => {
                        if w.own.iter().any(|j| !j.is_finished()) {
                            w.finish_own(if ok {
                                JobOutcome::Succeeded
                            } else {
                                JobOutcome::Failed { timed_out: false, reason: "BackoffLimitExceeded".into() }
                            });
                        }
                    }
                    SyncOp::Request => {
                        requests += 1;
                        w.request(annotations::REQUESTED_AT, &format!("r{requests}"));
                    }
                    SyncOp::Clock(secs) => w.now += jiff::SignedDuration::from_secs(secs.into()),
                }
            }
        }
    }
}
