//! The pure core: given what is in the cluster and the time now, decide what happens next.
//!
//! Nothing here performs I/O. One run engine (`runs.rs`, `run.rs`) serves both kinds:
//! [`decide`] takes an [`Observed`] snapshot of a sequence — its Syncs, the Jobs it controls
//! with their Pods' results, what holds each Sync, and `now` — and [`decide_sync`] the same for
//! a Sync, whose own run is a one-step run. Each returns a [`Plan`]: the status to write, the
//! actions to execute, and when to wake up. The controller executes plans; tests drive this
//! module directly, without an API server.

mod alerting;
mod backfill;
pub(crate) mod conditions;
pub(crate) mod graph;
mod job;
pub(crate) mod reasons;
mod result;
mod run;
mod runs;
mod sequence;
mod sync;
mod triggers;
mod upstream;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;

use crate::api::{Sync, SyncSequence, SyncSequenceStatus};

pub(crate) use backfill::{
    BackfillRange, DEFAULT_MAX_RUNS, check_range, parse_max_runs, parse_range, schedule_to_backfill,
};
pub(crate) use job::{JobIdentity, JobOwner, RunFacts, build_job, job_name};
pub(crate) use result::{
    JobOutcome, JobView, PodResult, Report, job_outcome, latest_report, pod_result,
};
pub(crate) use run::{record_created, record_refusal};
pub(crate) use sequence::decide;
pub(crate) use sync::{
    CLAIM_YOUNG, STANDALONE_STEP, SyncJob, SyncObserved, claimed, decide_sync, sequence_runner,
};
pub(crate) use upstream::{FinishedRun, UpstreamView, Upstreams, find_cycle};

/// How long to wait for a finished Job's Pod result to show up in the Pod cache before
/// deciding without it. Pod and Job watches are separate streams, so the Job's `Complete`
/// can arrive a moment before the Pod's terminated state.
pub(crate) const POD_RESULT_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// Something that holds a Sync: a Job of it that has not finished (or is being deleted), or a
/// Pod of it that has not terminated — a Pod can outlive its deleted Job for its grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    /// The Job's name (for a Pod, the Job it belongs to).
    pub job: String,
    /// Who runs it, for messages: "sequence crm-nightly run 4".
    pub by: String,
}

/// Everything the engine looks at for one sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed<'a> {
    pub sequence: &'a SyncSequence,
    /// Syncs of the sequence's namespace, by name (at least the referenced ones).
    pub syncs: &'a BTreeMap<String, Sync>,
    /// The Jobs the sequence controls (matched by owner UID), with their Pods' results.
    pub jobs: &'a [JobView],
    /// For each Sync, what holds it now, across the namespace.
    pub holders: &'a BTreeMap<String, Vec<Holder>>,
    /// The upstreams of `spec.after`, as their statuses show them.
    pub upstreams: &'a Upstreams,
    pub now: Timestamp,
}

/// What the controller should do, for either kind (`S` is its status type).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan<S = SyncSequenceStatus> {
    /// The status to apply. A plan that starts a new run applies it before any Job call, so
    /// that a Job never exists that the status does not account for.
    pub status: S,
    /// Actions, in order.
    pub actions: Vec<Action>,
    /// When to reconcile again even if nothing changes (next schedule time, a retry's backoff).
    pub wake_at: Option<Timestamp>,
}

/// One thing to do in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Create this Job; `AlreadyExists` means it was created before and is fine.
    CreateJob(Box<Job>),
    /// Delete this Job. Foreground: the Job stays, marked as being deleted, until its Pods are
    /// gone, so it goes on holding its Sync while a Pod terminates.
    DeleteJob { name: String },
    /// Record an Event on the sequence.
    Event(Event),
}

/// An Event to record (events.k8s.io), shown by `kubectl describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub warning: bool,
    /// CamelCase reason, e.g. `StepFailed`.
    pub reason: &'static str,
    /// What the controller did, e.g. `CreateJob`.
    pub action: &'static str,
    /// Human-readable text, carrying the error text for Warnings.
    pub note: String,
    /// The Job this Event announces, if any: it is recorded only when that Job was created.
    pub job: Option<String>,
}

impl Event {
    pub(crate) fn normal(
        reason: &'static str,
        action: &'static str,
        note: impl Into<String>,
    ) -> Action {
        Self::action(false, reason, action, note)
    }
    pub(crate) fn warning(
        reason: &'static str,
        action: &'static str,
        note: impl Into<String>,
    ) -> Action {
        Self::action(true, reason, action, note)
    }
    fn action(
        warning: bool,
        reason: &'static str,
        action: &'static str,
        note: impl Into<String>,
    ) -> Action {
        Action::Event(Event {
            warning,
            reason,
            action,
            note: note.into(),
            job: None,
        })
    }
}

/// Earliest of two optional wake-up times.
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}
