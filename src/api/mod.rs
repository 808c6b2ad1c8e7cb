//! The `syncseq.dev/v1alpha1` API: the `Sync`, `SyncSequence` and `WebhookReceiver` custom
//! resources.
//!
//! These types are the contract users write manifests against. Every field carries a doc
//! comment (it becomes the schema description `kubectl explain` shows), and everything the API
//! server can check is expressed as OpenAPI constraints or CEL rules so that a bad manifest is
//! refused at `kubectl apply` instead of surfacing later as a controller error.

// The API types are the crate's public surface, all of them. rustc's `unreachable_pub` takes
// the spec structs that kube's `KubeSchema` derive wraps for unreachable although they are
// re-exported below, so the lint is off for this module only.
#![allow(unreachable_pub)]

mod common;
mod crd;
mod outbox;
mod readable;
mod receiver;
mod run;
mod sequence;
mod sync;
mod template;
mod upstream;

pub use common::*;
pub use crd::{all_crds, crds_helm_template, crds_yaml};
pub use outbox::*;
pub use readable::{Readable, Shell, Unreadable};
pub use receiver::*;
pub use run::*;
pub use sequence::*;
pub use sync::*;
pub use template::JobTemplate;
pub use upstream::*;

/// CEL rule on `metadata.name` of both kinds: the name becomes the value of a label on every
/// Job and Pod they run (`syncseq.dev/sync`, `syncseq.dev/sequence`), and label values are at
/// most 63 characters. Refused at apply, with this message, rather than by every Job create.
pub(crate) fn name_rule() -> kube::core::Rule {
    kube::core::Rule::new("size(self.metadata.name) <= 63").message(
        "metadata.name must be at most 63 characters: it becomes a label value on the Jobs it runs",
    )
}

/// API group of both resources.
pub const GROUP: &str = "syncseq.dev";

/// Label keys and annotations put on or read from objects.
pub mod labels {
    /// On Jobs: the sequence that owns the Job.
    pub const SEQUENCE: &str = "syncseq.dev/sequence";
    /// On Jobs: the run number inside the sequence.
    pub const RUN: &str = "syncseq.dev/run";
    /// On Jobs: the step name.
    pub const STEP: &str = "syncseq.dev/step";
    /// On Jobs: the Sync the Job runs. Used to keep a Sync from running twice at once.
    pub const SYNC: &str = "syncseq.dev/sync";
    /// On Jobs: the attempt number of the step (1-based).
    pub const ATTEMPT: &str = "syncseq.dev/attempt";
    /// On Jobs: identifies Jobs managed by syncseq.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`].
    pub const MANAGER: &str = "syncseq";
}

/// Annotations users set to drive the controller without a spec change.
pub mod annotations {
    /// Any new value starts one run (the Flux `reconcile.fluxcd.io/requestedAt` convention).
    pub const REQUESTED_AT: &str = "syncseq.dev/requestedAt";
    /// Any new value starts a run that retries what failed: the steps that succeeded in the
    /// run named by [`RETRY_RUN`] (by default the last finished run) are reused, the others run.
    pub const RETRY_REQUESTED_AT: &str = "syncseq.dev/retryRequestedAt";
    /// The number of the run to retry, read with [`RETRY_REQUESTED_AT`].
    pub const RETRY_RUN: &str = "syncseq.dev/retryRun";
    /// Any new value cancels the run in progress, if any.
    pub const CANCEL_REQUESTED_AT: &str = "syncseq.dev/cancelRequestedAt";
    /// Any new value restarts a schedule that `spec.stopScheduleAfterFailures` stopped, and
    /// starts its count of failed runs again from zero (`kubectl syncseq resume` sets it).
    pub const RESUME_SCHEDULE_REQUESTED_AT: &str = "syncseq.dev/resumeScheduleRequestedAt";
    /// Any new value starts a backfill of the range [`BACKFILL`] names: one run per fire time
    /// of the schedule in it, oldest first, one at a time (`kubectl syncseq backfill`).
    pub const BACKFILL_REQUESTED_AT: &str = "syncseq.dev/backfillRequestedAt";
    /// The range of a backfill, read with [`BACKFILL_REQUESTED_AT`]: `FROM/TO`, two RFC 3339
    /// times; fire times from `FROM` on and before `TO` are run.
    pub const BACKFILL: &str = "syncseq.dev/backfill";
    /// The most fire times a backfill may have (default 1000, at most 10000); a range with
    /// more is refused with the count.
    pub const BACKFILL_MAX_RUNS: &str = "syncseq.dev/backfillMaxRuns";
    /// Any new value cancels the backfill in progress, and its run in progress.
    pub const CANCEL_BACKFILL_REQUESTED_AT: &str = "syncseq.dev/cancelBackfillRequestedAt";
    /// On a Job of a run the schedule or a backfill started: the fire time it is for (RFC
    /// 3339), as the CronJob controller writes `batch.kubernetes.io/cronjob-scheduled-timestamp`.
    pub const SCHEDULED_TIMESTAMP: &str = "syncseq.dev/scheduled-timestamp";
    /// On a Job of a scheduled run of an object with `spec.jitterSeconds`: the object's offset
    /// (`37.412s`), how long after [`SCHEDULED_TIMESTAMP`] the run was meant to start.
    pub const JITTER_OFFSET: &str = "syncseq.dev/jitter-offset";
}
