//! `SyncSequence`: Syncs run in a linear order on a CronJob-style schedule.

// kube-derive's repeated `printcolumn(type_ = ...)` arguments look like duplicated attributes to clippy.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RunPhase, StepPhase, TriggerKind};

/// The most steps a sequence may have. Generous for real pipelines, small enough that a
/// sequence's status stays far below the API server's object size limit.
pub const MAX_STEPS: usize = 32;

/// CEL rules for a schedule string, shared by Sync and SyncSequence. The controller parses the
/// schedule fully; these only catch what the API server can: empty or oversized strings, a
/// time-zone prefix (CronJob rejects those too: the zone belongs in `timeZone`), and a shape that
/// is neither a macro nor five fields.
pub(crate) fn schedule_rule() -> Rule {
    Rule::new(
        r"!self.startsWith('TZ=') && !self.startsWith('CRON_TZ=') && self.matches('^(@[a-z]+( [0-9a-zµ.]+)?|[^\\s]+\\s+[^\\s]+\\s+[^\\s]+\\s+[^\\s]+\\s+[^\\s]+)$')",
    )
    .message("must be a 5-field cron expression or a macro such as @hourly or @every 90m, without a TZ= or CRON_TZ= prefix (put the zone in timeZone)")
}

/// Syncs run in order on a schedule: step n+1 starts only after step n succeeded (or finished
/// under a `Continue` policy).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug)]
#[kube(
    group = "syncseq.dev",
    version = "v1alpha1",
    kind = "SyncSequence",
    namespaced,
    status = "SyncSequenceStatus",
    shortname = "sseq",
    category = "syncseq",
    doc = "Syncs run in a linear order on a CronJob-style schedule, one Kubernetes Job per step.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Step",
        type_ = "string",
        json_path = ".status.currentRun.progress"
    ),
    printcolumn(
        name = "Last Result",
        type_ = "string",
        json_path = ".status.lastRunResult"
    ),
    printcolumn(
        name = "Last Schedule",
        type_ = "date",
        json_path = ".status.lastScheduleTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SyncSequenceSpec {
    /// When runs start: a 5-field cron expression (with month and weekday names, `?`, ranges,
    /// lists and steps), a macro (`@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`, ...) or
    /// `@every <duration>`, with exactly CronJob's meaning. Unset: runs start only on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = schedule_rule())]
    #[schemars(length(min = 1, max = 256))]
    pub schedule: Option<String>,

    /// IANA time zone the schedule is evaluated in (for example `America/New_York`). UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$"),
        length(max = 64)
    )]
    pub time_zone: Option<String>,

    /// How late, in seconds, a missed scheduled run may still start (after controller downtime,
    /// say). Unset means no deadline: the most recent missed time always starts one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,

    /// What a trigger does while a run is in progress: `Forbid` drops it, `Replace` cancels the
    /// running run and starts a new one, `Queue` keeps at most one follow-up run.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// Stops new scheduled runs. The run in progress goes on; manual requests still start runs.
    #[serde(default)]
    pub suspend: bool,

    /// How many finished runs `status.runs` keeps. Jobs of older runs are deleted.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: i32,

    /// The syncs to run, in order. Step names are unique.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub steps: Vec<Step>,

    /// Notifications sent when runs or steps change state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub alerts: Vec<Alert>,
}

fn default_history_limit() -> i32 {
    10
}

/// What happens to a trigger that arrives while a run is in progress.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Drop the new trigger (it is counted and reported in an Event).
    #[default]
    Forbid,
    /// Cancel the running run and start a new one.
    Replace,
    /// Start one follow-up run when the current one ends; further triggers are dropped.
    Queue,
}

/// Stop the run, or go on with the next step.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FailurePolicy {
    /// Stop the run: the remaining steps are skipped and the run fails.
    #[default]
    Stop,
    /// Record the failure and go on with the next step.
    Continue,
}

/// One step of a sequence: a Sync and how to treat its failures.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Unique name of the step within the sequence (a DNS label).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// The Sync this step runs, in the sequence's namespace.
    pub sync_ref: SyncRef,

    /// What to do when the step's Job fails (a fatal error), after its retries.
    #[serde(default)]
    pub on_failure: FailurePolicy,

    /// Limit on rows the destination rejected. Unset: rejected rows never fail the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_rows: Option<RejectedRowsPolicy>,

    /// How many times to retry a failed Job before applying `onFailure`. Each attempt is a new Job.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub retries: i32,

    /// Delay before the first retry, in seconds; it doubles with each further attempt.
    #[serde(default = "default_retry_delay")]
    #[schemars(range(min = 0, max = 3600))]
    pub retry_delay_seconds: i32,

    /// How long one attempt may run before it is stopped and reported as timed out. It becomes
    /// the Job's `activeDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<i64>,
}

fn default_retry_delay() -> i32 {
    10
}

/// Reference to a Sync in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SyncRef {
    /// Name of the Sync.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// A threshold on rejected rows: an absolute count or a percentage of the rows processed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.max) != has(self.maxPercent)").message("set exactly one of max or maxPercent"))]
#[serde(rename_all = "camelCase")]
pub struct RejectedRowsPolicy {
    /// The most rejected rows a step may report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max: Option<i64>,
    /// The largest share of rows (synced plus rejected) that may be rejected, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_percent: Option<f64>,
    /// What to do when the threshold is exceeded.
    #[serde(default)]
    pub on_exceeded: FailurePolicy,
}

/// A notification target and the state changes it hears about.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Alert {
    /// Unique name of the alert within the sequence.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Which state changes notify. (Named `when`, not `on`: YAML 1.1 parsers, kubectl's
    /// among them, read a bare `on` key as the boolean `true`.)
    #[schemars(length(min = 1, max = 4))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub when: Vec<AlertTrigger>,
    /// Where notifications are delivered.
    pub webhook: Webhook,
}

/// A state change that can notify.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum AlertTrigger {
    /// A run failed (after being healthy).
    RunFailed,
    /// A step failed, whether or not the run stopped.
    StepFailed,
    /// A step's rejected rows exceeded its threshold.
    RejectedRows,
    /// A run succeeded after failing.
    Recovered,
}

/// An HTTP webhook whose URL is kept in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The Secret key holding the webhook URL. The URL never appears in status, Events or logs.
    pub url_secret_ref: SecretKeyRef,
    /// Body format: `Slack` (Slack-compatible `text` and `blocks`) or `JSON` (a plain object).
    #[serde(default)]
    pub format: WebhookFormat,
}

/// A key in a Secret of the sequence's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Body format of a webhook notification.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum WebhookFormat {
    /// A plain JSON object with the event's fields.
    #[default]
    #[serde(rename = "JSON")]
    Json,
    /// A Slack incoming-webhook body.
    Slack,
}

/// Observed state of a SyncSequence, written by the controller with server-side apply.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncSequenceStatus {
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// kstatus conditions: `Ready`, `Reconciling`, `Stalled`, `Running`, `LastRunSucceeded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Last time the schedule started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// Next time the schedule fires (unset when suspended or manual only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// When the last run that succeeded finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The value of the `syncseq.dev/requestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_request_at: Option<String>,
    /// The value of the `syncseq.dev/cancelRequestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_cancel_at: Option<String>,
    /// Phase of the last finished run (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_result: Option<RunPhase>,
    /// Number of the newest run started; run numbers name the Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_number: Option<i64>,
    /// The most recent scheduled time that was not run because it was past `startingDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed_schedule_time: Option<Time>,
    /// Scheduled times that were not run because they were past `startingDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_schedules: Option<i64>,
    /// Triggers dropped because a run was in progress (`concurrencyPolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_triggers: Option<i64>,
    /// A follow-up run waiting for the current one to end (`concurrencyPolicy: Queue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_run: Option<QueuedRun>,
    /// The run in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_run: Option<RunStatus>,
    /// The most recent finished run, with every step's outcome and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunStatus>,
    /// The last `historyLimit` finished runs, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunSummary>,
    /// Per alert: the state last notified, so that repeated failures notify once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_states: Vec<AlertState>,
}

/// A run waiting to start after the current one (`concurrencyPolicy: Queue`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedRun {
    /// What triggered it.
    pub trigger: TriggerKind,
    /// The scheduled time, for a scheduled trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
}

/// A run: in progress (`currentRun`) or the most recent finished one (`lastRun`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Run number, unique within the sequence.
    pub id: i64,
    /// What started the run.
    pub trigger: TriggerKind,
    /// The schedule time the run is for, when the schedule started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// When the run started.
    pub start_time: Time,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Phase of the run.
    pub phase: RunPhase,
    /// The step in progress, as `current/total` (for `kubectl get`).
    pub progress: String,
    /// One entry per step, in order.
    pub steps: Vec<StepStatus>,
    /// Why the run ended, or what it is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// State of one step of a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// Step name.
    pub name: String,
    /// Name of the Sync it runs.
    pub sync: String,
    /// Phase of the step.
    pub phase: StepPhase,
    /// Name of the Job of the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Attempts made so far (each attempt is one Job).
    #[serde(default)]
    pub attempts: i32,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the step reached its final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Rows synced, from the termination message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_synced: Option<i64>,
    /// Rows rejected, from the termination message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_rejected: Option<i64>,
    /// The error text, the sync's own message, or why the step waits or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One finished run, for the history in `status.runs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Run number.
    pub id: i64,
    /// What started the run.
    pub trigger: TriggerKind,
    /// How the run ended.
    pub phase: RunPhase,
    /// When the run started.
    pub start_time: Time,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The first step that failed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Why the run ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What an alert has notified and not yet seen recover, so a failure that goes on run after
/// run notifies once (see docs/alerts.md).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertState {
    /// The alert's name.
    pub name: String,
    /// `Failing` while a failure this alert notified has not been followed by a successful run.
    #[serde(default)]
    pub state: AlertHealth,
    /// The run whose notified failure made the alert `Failing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_run: Option<i64>,
    /// A run failure was notified (`RunFailed`) and no run has succeeded since.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_failed: bool,
    /// Steps whose failure was notified (`StepFailed`) and that have not succeeded since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_steps: Vec<String>,
    /// Steps whose rejected rows over the limit were notified (`RejectedRows`) and that have
    /// not succeeded within the limit since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_rows_steps: Vec<String>,
}

/// Health of an alert's subject, as last notified.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AlertHealth {
    /// Nothing this alert notified is still failing.
    #[default]
    Healthy,
    /// A notified failure has not recovered yet.
    Failing,
}
