//! Types shared by `Sync` and `SyncSequence`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What started a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TriggerKind {
    /// The resource's own schedule.
    Schedule,
    /// A `syncseq.dev/requestedAt` annotation.
    Manual,
    /// Something upstream: a run of an object named in `spec.after` finished (the run's
    /// `upstream` says which), or, on a Sync's `lastRun`, a step of a SyncSequence.
    Upstream,
    /// A `syncseq.dev/retryRequestedAt` annotation: a run that reuses the steps that
    /// succeeded in an earlier run (`retryOf`) and runs the others.
    Retry,
    /// A backfill (`status.backfill`): a run for one past fire time of the schedule, which
    /// `scheduledTime` names.
    Backfill,
}

/// Phase of a run, on `status.currentRun` and in `status.runs`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RunPhase {
    /// A step is waiting or running.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// Every step finished, but at least one failed or exceeded its rejected-rows limit under
    /// a `Continue` policy.
    SucceededWithErrors,
    /// A step failed under a `Stop` policy; the steps that needed it were skipped.
    Failed,
    /// The run was cancelled by the cancel annotation or replaced by a newer run.
    Cancelled,
}

impl RunPhase {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        self != RunPhase::Running
    }
}

/// Phase of one step of a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum StepPhase {
    /// Not started yet.
    Pending,
    /// Cannot start yet: its Sync is missing or busy elsewhere, or a retry is backing off.
    Waiting,
    /// Its Job exists and has not finished.
    Running,
    /// Its Job succeeded (rejected rows, if any, were within the limit or ignored).
    Succeeded,
    /// Its Job failed, timed out, or its rejected rows exceeded the limit.
    Failed,
    /// Not run: its `runWhen` rule could no longer be met, the run was cancelled first, or
    /// `failFast`. Its `reason` says which.
    Skipped,
    /// Stopped by a cancel request while running.
    Cancelled,
}

impl StepPhase {
    /// Whether the step has reached its final phase.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StepPhase::Succeeded | StepPhase::Failed | StepPhase::Skipped | StepPhase::Cancelled
        )
    }
}

/// The last run of a Sync, whoever triggered it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncRunRecord {
    /// Name of the Job that ran the sync.
    pub job_name: String,
    /// What triggered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerKind>,
    /// For a run started by a sequence: `<sequence>/<run number>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_run: Option<String>,
    /// When the Job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<StepPhase>,
    /// Rows the destination accepted, from the termination message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_synced: Option<i64>,
    /// Rows the destination rejected, from the termination message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_rejected: Option<i64>,
    /// The sync's own message, or the reason it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
