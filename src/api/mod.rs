//! The `syncseq.dev/v1alpha1` API: the `Sync` and `SyncSequence` custom resources.
//!
//! These types are the contract users write manifests against. Every field carries a doc
//! comment (it becomes the schema description `kubectl explain` shows), and everything the API
//! server can check is expressed as OpenAPI constraints or CEL rules so that a bad manifest is
//! refused at `kubectl apply` instead of surfacing later as a controller error.

mod common;
mod crd;
mod sequence;
mod sync;

pub use common::*;
pub use crd::{all_crds, crds_yaml};
pub use sequence::*;
pub use sync::*;

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
    /// On Jobs of a Sync's own runs: what triggered the run (`Manual` or `Schedule`).
    pub const TRIGGER: &str = "syncseq.dev/trigger";
    /// On Jobs: identifies Jobs managed by syncseq.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`].
    pub const MANAGER: &str = "syncseq";
}

/// Annotations users set to drive the controller without a spec change.
pub mod annotations {
    /// Any new value starts one run (the Flux `reconcile.fluxcd.io/requestedAt` convention).
    pub const REQUESTED_AT: &str = "syncseq.dev/requestedAt";
    /// Any new value cancels the run in progress, if any.
    pub const CANCEL_REQUESTED_AT: &str = "syncseq.dev/cancelRequestedAt";
}
