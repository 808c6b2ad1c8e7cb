//! Builders for the engine's tests: one set of fixtures for both kinds.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Action, JobOutcome, JobView};
use crate::api::*;

/// The tests' "now" at the start.
pub fn t0() -> Timestamp {
    "2026-01-05T10:00:00Z".parse().unwrap()
}

/// A step running the Sync of the same name, with the API's defaults.
pub fn step(name: &str) -> Step {
    Step {
        name: name.into(),
        sync_ref: SyncRef { name: name.into() },
        on_failure: FailurePolicy::Stop,
        rejected_rows: None,
        retries: 0,
        retry_delay_seconds: 10,
        timeout_seconds: None,
    }
}

/// Sequence `crm` in namespace `revops`, manual only, Forbid, history 3.
pub fn sequence(steps: Vec<Step>) -> SyncSequence {
    let mut seq = SyncSequence::new(
        "crm",
        SyncSequenceSpec {
            scheduling: ScheduleSpec::default(),
            concurrency_policy: ConcurrencyPolicy::Forbid,
            history_limit: 3,
            steps,
            alerts: vec![],
        },
    );
    seq.metadata.namespace = Some("revops".into());
    seq.metadata.uid = Some("uid-1".into());
    seq.metadata.generation = Some(1);
    seq.metadata.creation_timestamp = Some(Time(t0()));
    seq
}

/// A Sync in namespace `revops` with a minimal Job template.
pub fn sync(name: &str) -> Sync {
    let template = serde_json::from_value(serde_json::json!({
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "s", "image": "x"}]}}}
    }))
    .unwrap();
    let mut s = Sync::new(
        name,
        SyncSpec {
            job_template: template,
            scheduling: ScheduleSpec::default(),
        },
    );
    s.metadata.namespace = Some("revops".into());
    s.metadata.uid = Some(format!("uid-sync-{name}"));
    s.metadata.generation = Some(1);
    s.metadata.creation_timestamp = Some(Time(t0()));
    s
}

/// The view of a Job just created from a plan's `CreateJob`, as the API server would make it.
pub fn created(job: &Job, now: Timestamp) -> JobView {
    let l = job.metadata.labels.as_ref().unwrap();
    let name = job.metadata.name.clone().unwrap();
    JobView {
        uid: format!("uid-{name}"),
        name,
        run: l[labels::RUN].parse().unwrap(),
        step: l[labels::STEP].clone(),
        sync: l[labels::SYNC].clone(),
        attempt: l[labels::ATTEMPT].parse().unwrap(),
        outcome: JobOutcome::Active,
        finished_at: None,
        report: None,
        deleting: false,
        created: Some(now),
    }
}

/// The names of the Jobs a plan's actions create.
pub fn creates(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateJob(j) => j.metadata.name.clone(),
            _ => None,
        })
        .collect()
}

/// The names of the Jobs a plan's actions delete.
pub fn deletes(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteJob { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}
