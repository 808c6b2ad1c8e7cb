//! The decision for one standalone Sync: run it on its own schedule or on request, cancel it,
//! and report its most recent run — whoever started it (its schedule, a person, a sequence).
//!
//! A Sync never runs twice at once: a request or a fire time that arrives while any Job of the
//! Sync is active waits (a request stays unhandled until the Sync is free; a fire time is
//! skipped, as CronJob's Forbid policy does).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::conditions::{self, Desired};
use super::triggers::{self, Trigger};
use super::{
    Action, Event, Holder, JobIdentity, JobOutcome, JobOwner, JobView, build_job, earliest,
    job_name,
};
use crate::api::{StepPhase, Sync, SyncRunRecord, SyncStatus, TriggerKind, labels};

/// Standalone runs kept (their Jobs); older Jobs the Sync owns are deleted.
pub const SYNC_HISTORY: i64 = 3;

/// Ends the Running condition's message while a run request waits for the Sync to be free.
const REQUEST_WAITS: &str = "a run request waits";

/// Step label of a standalone run's Job.
const STANDALONE_STEP: &str = "run";

/// A Job that runs this Sync, and who started it.
#[derive(Debug, Clone)]
pub struct SyncJob {
    pub view: JobView,
    /// The sequence that created it, if any; None for the Sync's own runs.
    pub sequence: Option<String>,
    /// For the Sync's own runs: what triggered it (from the Job's label).
    pub trigger: Option<TriggerKind>,
}

/// Everything the engine looks at for one Sync.
#[derive(Debug, Clone, Copy)]
pub struct SyncObserved<'a> {
    pub sync: &'a Sync,
    /// Every Job of this Sync in the namespace.
    pub jobs: &'a [SyncJob],
    pub now: Timestamp,
}

/// What to do for a Sync.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPlan {
    pub status: SyncStatus,
    pub actions: Vec<Action>,
    pub wake_at: Option<Timestamp>,
}

pub fn decide_sync(obs: &SyncObserved) -> SyncPlan {
    let sync = obs.sync;
    let now = obs.now;
    let old = sync.status.clone().unwrap_or_default();
    let generation = sync.metadata.generation;
    let own: Vec<&SyncJob> = obs.jobs.iter().filter(|j| j.sequence.is_none()).collect();

    // Status is written before Jobs are created: a Job of a run status does not know yet means
    // the cached Sync is older than our last write.
    let known = old.last_run_number.unwrap_or(0);
    if own.iter().any(|j| j.view.run > known) {
        return SyncPlan {
            status: old,
            actions: vec![],
            wake_at: Some(now + jiff::SignedDuration::from_secs(1)),
        };
    }

    let mut st = old.clone();
    let mut actions = Vec::new();
    let settings = triggers::schedule_settings!(sync.spec);
    let schedule = triggers::parse_schedule(&settings);

    if triggers::cancel_requested(&sync.metadata, &mut st.last_handled_cancel_at) {
        let running: Vec<&&SyncJob> = own
            .iter()
            .filter(|j| !j.view.is_finished() && !j.view.deleting)
            .collect();
        for job in &running {
            actions.push(Action::DeleteJob {
                name: job.view.name.clone(),
            });
        }
        let note = match running.first() {
            Some(j) => format!(
                "run {} cancelled by request: job {} deleted",
                j.view.run, j.view.name
            ),
            None => "cancel requested, but no run of this sync's own is in progress".to_string(),
        };
        actions.push(Event::normal("RunCancelled", "CancelRun", note));
    }

    let holder = obs
        .jobs
        .iter()
        .find(|j| !j.view.is_finished() || j.view.deleting)
        .map(holder_of);
    let mut wake = None;
    let mut incoming: Vec<Trigger> = Vec::new();
    // A request waits, unhandled, while the Sync is busy; it starts once the Sync is free.
    if holder.is_none() {
        incoming.extend(triggers::manual(
            &sync.metadata,
            &mut st.last_handled_request_at,
        ));
    }
    let state = triggers::schedule_state!(st);
    let (fired, next) = triggers::scheduled(
        &settings,
        &schedule,
        &sync.metadata,
        state,
        now,
        &mut actions,
    );
    wake = earliest(wake, next);
    if let (Some(h), Some(_)) = (&holder, fired) {
        actions.push(Event::warning(
            "ScheduleSkipped",
            "SkipRun",
            format!("scheduled run skipped: sync is running for {}", h.by),
        ));
    }
    incoming.extend(fired.filter(|_| holder.is_none()));

    if let Some(trigger) = incoming.first() {
        let run = st.last_run_number.unwrap_or(0) + 1;
        st.last_run_number = Some(run);
        let owner = JobOwner {
            api_version: "syncseq.dev/v1alpha1".into(),
            kind: "Sync".into(),
            name: sync.name_any(),
            uid: sync.metadata.uid.clone().unwrap_or_default(),
            namespace: sync.namespace().unwrap_or_default(),
        };
        let id = JobIdentity {
            name: job_name(&owner.name, run, STANDALONE_STEP, 1),
            run,
            step: STANDALONE_STEP.into(),
            sync: owner.name.clone(),
            attempt: 1,
        };
        let mut job = build_job(&owner, &id, sync, None);
        let kind = format!("{:?}", trigger.kind);
        job.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(labels::TRIGGER.into(), kind.clone());
        actions.push(Action::CreateJob(Box::new(job)));
        actions.push(Event::normal(
            "RunStarted",
            "CreateJob",
            format!("run {run} started ({kind}): job {}", id.name),
        ));
        st.last_run = Some(SyncRunRecord {
            job_name: id.name,
            trigger: Some(trigger.kind),
            start_time: Some(Time(now)),
            outcome: Some(StepPhase::Running),
            ..SyncRunRecord::default()
        });
    } else if let Some(newest) = newest(obs.jobs) {
        st.last_run = Some(record(newest));
    }
    // Say once (not on every reconcile) that a request waits for the Sync to be free.
    let already_said = old
        .conditions
        .iter()
        .any(|c| c.type_ == conditions::RUNNING && c.message.ends_with(REQUEST_WAITS));
    if let Some(h) = &holder
        && triggers::new_request(&sync.metadata, &st.last_handled_request_at).is_some()
        && !already_said
    {
        actions.push(Event::normal(
            "RequestWaiting",
            "WaitForSync",
            format!("run request waits: sync is running for {}", h.by),
        ));
    }

    // Keep the newest standalone runs' Jobs; delete older ones the Sync owns.
    let newest_own = own.iter().map(|j| j.view.run).max().unwrap_or(0);
    for job in own.iter().filter(|j| {
        j.view.run <= newest_own - SYNC_HISTORY && !j.view.deleting && j.view.is_finished()
    }) {
        actions.push(Action::DeleteJob {
            name: job.view.name.clone(),
        });
    }

    set_conditions(
        &mut st,
        schedule.error.as_deref(),
        &old,
        holder.as_ref(),
        &sync.metadata,
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

fn holder_of(job: &SyncJob) -> Holder {
    let by = match &job.sequence {
        Some(seq) => format!("sequence {seq} run {}", job.view.run),
        None => format!("its own run {}", job.view.run),
    };
    Holder {
        job: job.view.name.clone(),
        by,
    }
}

fn newest(jobs: &[SyncJob]) -> Option<&SyncJob> {
    jobs.iter()
        .max_by(|a, b| (a.view.created, &a.view.name).cmp(&(b.view.created, &b.view.name)))
}

/// The Sync's last run, as its newest Job tells it.
fn record(job: &SyncJob) -> SyncRunRecord {
    let v = &job.view;
    let report = v.report.clone().unwrap_or_default();
    let (outcome, message) = match &v.outcome {
        JobOutcome::Active => (StepPhase::Running, report.message.clone()),
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
        None => (job.trigger, None),
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
    spec_error: Option<&str>,
    old: &SyncStatus,
    holder: Option<&Holder>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    generation: Option<i64>,
    now: Timestamp,
    actions: &mut Vec<Action>,
) {
    let conds = &mut st.conditions;
    conditions::set_spec_health(
        conds,
        &old.conditions,
        spec_error,
        None,
        "spec is valid",
        generation,
        now,
        actions,
    );
    let waiting = triggers::new_request(meta, &st.last_handled_request_at).is_some();
    match holder {
        Some(h) => {
            let message = if waiting {
                format!("running for {}; {REQUEST_WAITS}", h.by)
            } else {
                format!("running for {}", h.by)
            };
            conditions::set(
                conds,
                Desired {
                    type_: conditions::RUNNING,
                    status: true,
                    reason: "JobActive",
                    message,
                },
                generation,
                now,
            );
        }
        None => conditions::set(
            conds,
            Desired {
                type_: conditions::RUNNING,
                status: false,
                reason: "Idle",
                message: "no job of this sync is running".into(),
            },
            generation,
            now,
        ),
    }
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
    use crate::api::{SyncSpec, annotations};
    use crate::engine::Report;

    fn sync() -> Sync {
        let template = serde_json::from_value(serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "s", "image": "x"}]}}}})).unwrap();
        let mut s = Sync::new(
            "accounts",
            SyncSpec {
                job_template: template,
                schedule: None,
                time_zone: None,
                starting_deadline_seconds: None,
                suspend: false,
            },
        );
        s.metadata.namespace = Some("revops".into());
        s.metadata.uid = Some("u".into());
        s.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        s
    }

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    fn job(name: &str, run: i64, sequence: Option<&str>, outcome: JobOutcome) -> SyncJob {
        SyncJob {
            view: JobView {
                name: name.into(),
                run,
                step: "run".into(),
                sync: "accounts".into(),
                attempt: 1,
                finished_at: (outcome != JobOutcome::Active).then(now),
                outcome,
                report: Some(Report {
                    rows_synced: Some(7),
                    rows_rejected: Some(1),
                    message: Some("ok".into()),
                    exit_code: Some(0),
                }),
                deleting: false,
                created: Some(now()),
            },
            sequence: sequence.map(String::from),
            trigger: None,
        }
    }

    fn request(s: &mut Sync, key: &str, v: &str) {
        s.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), v.into());
    }

    fn created(plan: &SyncPlan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| {
                if let Action::CreateJob(j) = a {
                    j.metadata.name.clone()
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn a_request_starts_one_owned_run_and_is_echoed() {
        let mut s = sync();
        request(&mut s, annotations::REQUESTED_AT, "r1");
        let plan = decide_sync(&SyncObserved {
            sync: &s,
            jobs: &[],
            now: now(),
        });
        let names = created(&plan);
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("accounts-1-run-1-"));
        let Action::CreateJob(new_job) = &plan.actions[0] else {
            panic!()
        };
        let owner = &new_job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "Sync");
        assert_eq!(
            new_job.metadata.labels.as_ref().unwrap()[labels::TRIGGER],
            "Manual"
        );
        assert!(
            !new_job
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(labels::SEQUENCE)
        );
        assert_eq!(plan.status.last_handled_request_at.as_deref(), Some("r1"));
        assert_eq!(plan.status.last_run_number, Some(1));
        // Replaying with the written status starts nothing new.
        s.status = Some(plan.status);
        let again = decide_sync(&SyncObserved {
            sync: &s,
            jobs: &[job("accounts-1-run-1-x", 1, None, JobOutcome::Active)],
            now: now(),
        });
        assert!(created(&again).is_empty());
    }

    #[test]
    fn a_request_waits_while_a_sequence_runs_the_sync() {
        let mut s = sync();
        request(&mut s, annotations::REQUESTED_AT, "r1");
        let busy = [job(
            "crm-3-accounts-1-x",
            3,
            Some("crm"),
            JobOutcome::Active,
        )];
        let plan = decide_sync(&SyncObserved {
            sync: &s,
            jobs: &busy,
            now: now(),
        });
        assert!(created(&plan).is_empty());
        assert_eq!(plan.status.last_handled_request_at, None, "still waiting");
        let running = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Running")
            .unwrap();
        assert_eq!(
            running.message,
            "running for sequence crm run 3; a run request waits"
        );
        let last = plan.status.last_run.as_ref().unwrap();
        assert_eq!(
            (last.trigger, last.sequence_run.as_deref()),
            (Some(TriggerKind::Upstream), Some("crm/3"))
        );
        s.status = Some(plan.status);
        let done = [job(
            "crm-3-accounts-1-x",
            3,
            Some("crm"),
            JobOutcome::Succeeded,
        )];
        let plan = decide_sync(&SyncObserved {
            sync: &s,
            jobs: &done,
            now: now(),
        });
        assert_eq!(created(&plan).len(), 1, "starts once the Sync is free");
    }

    #[test]
    fn cancel_deletes_only_its_own_running_job() {
        let mut s = sync();
        request(&mut s, annotations::CANCEL_REQUESTED_AT, "c1");
        let jobs = [
            job("accounts-1-run-1-x", 1, None, JobOutcome::Active),
            job("crm-3-accounts-1-x", 3, Some("crm"), JobOutcome::Active),
        ];
        s.status = Some(SyncStatus {
            last_run_number: Some(1),
            ..Default::default()
        });
        let plan = decide_sync(&SyncObserved {
            sync: &s,
            jobs: &jobs,
            now: now(),
        });
        let deleted: Vec<_> = plan
            .actions
            .iter()
            .filter_map(|a| {
                if let Action::DeleteJob { name } = a {
                    Some(name.as_str())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(deleted, vec!["accounts-1-run-1-x"]);
        assert_eq!(plan.status.last_handled_cancel_at.as_deref(), Some("c1"));
    }

    #[test]
    fn its_own_schedule_runs_it() {
        let mut s = sync();
        s.spec.schedule = Some("*/5 * * * *".into());
        let plan = decide_sync(&SyncObserved {
            sync: &s,
            jobs: &[],
            now: now(),
        });
        assert_eq!(created(&plan).len(), 1);
        assert_eq!(plan.status.last_schedule_time, Some(Time(now())));
        assert_eq!(
            plan.wake_at,
            Some(now() + jiff::SignedDuration::from_mins(5))
        );
    }
}
