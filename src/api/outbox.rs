//! The alert outbox in a sequence's status: notifications decided in the same status write as
//! the change they announce, kept until the delivery worker has handled them. It makes alerts
//! at least once: a controller that dies after deciding, a failed delivery, a restart or a new
//! leader all find them in status and deliver them again.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AlertTrigger, TriggerKind};

/// A notification waiting to be delivered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingAlert {
    /// Identifies the notification for good (also sent as its `Idempotency-Key`): the same
    /// change of state of the same alert of the same sequence always has the same key.
    pub key: String,
    /// The alert's name.
    pub alert: String,
    /// What it says.
    pub event: AlertEvent,
}

/// What a notification says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    /// Which change of state this is.
    pub kind: AlertTrigger,
    /// The run it is about (for `Recovered`: the run that succeeded).
    pub run: i64,
    /// What started that run.
    pub trigger: TriggerKind,
    /// The upstream run that started it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<super::UpstreamRun>,
    /// Phase of the run (`RunFailed`, `Recovered`) or of the step (`StepFailed`,
    /// `RejectedRows`), as shown in status.
    pub phase: String,
    /// The step it is about: the failed step, or for `RunFailed` the first failed step of the
    /// run (in step order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<AlertStep>,
    /// For `RunFailed`: every step that failed in the run, in step order (the first is `step`),
    /// each message cut to 300 characters. A graph's branches can fail side by side. Empty in
    /// a notification decided before the list existed: `step` is then the one it names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_steps: Vec<AlertStep>,
    /// The error text (the run's or the step's message from status).
    pub message: String,
    /// For `Recovered`: the run whose notified failure started the failing period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_run: Option<i64>,
    /// When the controller decided it.
    pub time: Time,
}

/// A step's facts, as a notification carries them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertStep {
    pub name: String,
    pub sync: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_synced: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_rejected: Option<i64>,
}
