//! `SyncSequence`: Syncs run in order (a line, or a graph of steps with `dependsOn`) on a
//! CronJob-style schedule.

// kube-derive's repeated `printcolumn(type_ = ...)` arguments look like duplicated attributes to clippy.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RunBook, RunStatus, ScheduleSpec, ScheduleStatus};

/// The most steps a sequence may have. Generous for real pipelines, small enough that a
/// sequence's status stays far below the API server's object size limit.
pub const MAX_STEPS: usize = 32;

/// CEL rules for a schedule string, shared by Sync and SyncSequence. The controller parses the
/// schedule fully; these only catch what the API server can: empty or oversized strings, a
/// time-zone prefix (CronJob rejects those too: the zone belongs in `timeZone`), and a shape that
/// is neither a macro nor five fields.
pub(crate) fn schedule_rule() -> Rule {
    Rule::new(schedule_shape("self")).message(SCHEDULE_SHAPE_MESSAGE)
}

/// The same rule for each entry of `schedules`.
pub(crate) fn schedules_rule() -> Rule {
    Rule::new(format!("self.all(s, {})", schedule_shape("s")))
        .message(format!("each entry {SCHEDULE_SHAPE_MESSAGE}").as_str())
}

const SCHEDULE_SHAPE_MESSAGE: &str = "must be a 5-field cron expression or a macro such as @hourly or @every 90m, without a TZ= or CRON_TZ= prefix (put the zone in timeZone)";

/// The CEL condition that the string `var` has a schedule's shape.
fn schedule_shape(var: &str) -> String {
    format!(
        r"!{var}.startsWith('TZ=') && !{var}.startsWith('CRON_TZ=') && {var}.matches('^(@[a-z]+( [0-9a-zµ.]+)?|[^\\s]+\\s+[^\\s]+\\s+[^\\s]+\\s+[^\\s]+\\s+[^\\s]+)$')"
    )
}

/// Syncs run in order on a schedule: a step starts only once the steps it depends on (by
/// default the step listed before it) met its `runWhen` rule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug)]
#[kube(
    group = "syncseq.dev",
    version = "v1alpha1",
    kind = "SyncSequence",
    namespaced,
    status = "SyncSequenceStatus",
    shortname = "sseq",
    category = "syncseq",
    validation = super::name_rule(),
    doc = "Syncs run in order (a line, or a graph of steps with dependsOn) on a CronJob-style schedule, one Kubernetes Job per step.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Schedules",
        type_ = "string",
        json_path = ".spec.schedules",
        description = "spec.schedules, when set instead of spec.schedule",
        priority = "1"
    ),
    printcolumn(
        name = "Backfill",
        type_ = "string",
        json_path = ".status.backfill.progress",
        description = "Runs of the newest backfill done, of its fire times",
        priority = "1"
    ),
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
    /// The schedule: `schedule` (or `schedules`), `timeZone`, `jitterSeconds`,
    /// `startingDeadlineSeconds`, `suspend`.
    #[serde(flatten)]
    pub scheduling: ScheduleSpec,

    /// What a trigger does while a run is in progress: `Forbid` drops it, `Replace` cancels the
    /// running run and starts a new one, `Queue` keeps at most one follow-up run.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// How many finished runs `status.runs` keeps. Jobs of older runs are deleted.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: i32,

    /// The syncs to run, in order. Step names are unique. A step depends on the step listed
    /// before it unless it says otherwise with `dependsOn`, which may name only steps listed
    /// before it (so no cycle can be written).
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[schemars(extend("x-kubernetes-validations" = depends_on_rules()))]
    pub steps: Vec<Step>,

    /// The most Jobs of one run that run at once. Unset: as many as the graph allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub max_parallel: Option<i32>,

    /// After a step fails under `Stop`, start nothing new in any branch (the Jobs already
    /// running finish). Unset or false: only the failed step's descendants are skipped, and
    /// independent branches run on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_fast: bool,

    /// Notifications sent when runs or steps change state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub alerts: Vec<Alert>,
}

fn default_history_limit() -> i32 {
    10
}

/// CEL rules on `spec.steps`: each step's `dependsOn` names only steps listed before it, so
/// that no cycle can be written and unknown names are refused at apply. The message names the
/// step and says which mistake it is.
///
/// One rule per position: CEL on Kubernetes 1.30 has no indexed comprehension, and the API
/// server's cost estimate of the general forms (`indexOf` over a mapped list, `filter` to find
/// the step for the message) exceeds its budget for a 32-step list, while a position's rule,
/// walking the literal indexes before it, stays well within.
fn depends_on_rules() -> serde_json::Value {
    let rules: Vec<serde_json::Value> = (0..MAX_STEPS)
        .map(|i| {
            let earlier = (0..i).map(|j| j.to_string()).collect::<Vec<_>>().join(", ");
            serde_json::json!({
                "rule": format!(
                    "size(self) <= {i} || !has(self[{i}].dependsOn) || self[{i}].dependsOn.all(d, [{earlier}].exists(j, self[j].name == d))"
                ),
                "messageExpression": format!(
                    "'step ' + self[{i}].name + ' dependsOn ' + (self[{i}].dependsOn.exists(d, !self.exists(p, p.name == d)) ? 'a name that is no step of this sequence' : 'a step that is not listed before it') + ': a step may depend only on steps listed earlier'"
                ),
            })
        })
        .collect();
    serde_json::Value::Array(rules)
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
    /// The run fails: the step's descendants that need it to succeed are skipped (with
    /// `failFast`, nothing new starts anywhere), and the run ends `Failed`.
    #[default]
    Stop,
    /// Record the failure and go on: the step counts as succeeded for its descendants.
    Continue,
}

/// When a step runs, given how the steps it depends on ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RunWhen {
    /// Every step it depends on succeeded (a failure under a `Continue` policy counts as
    /// succeeded). Otherwise the step is skipped.
    #[default]
    AllSucceeded,
    /// Every step it depends on ended, whatever the outcome: cleanup, notifications.
    AllFinished,
    /// Every step it depends on ended and at least one failed: a compensating step.
    /// Otherwise the step is skipped.
    AnyFailed,
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

    /// The steps this one waits for, by name; each must be listed before it. Unset: the step
    /// listed before it (none for the first step). `[]`: none, the step starts with the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 31),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub depends_on: Option<Vec<String>>,

    /// When the step runs, given how the steps it depends on ended.
    #[serde(default, skip_serializing_if = "is_default")]
    pub run_when: RunWhen,

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

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
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
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.format) || self.format != 'PagerDuty' || has(self.routingKeySecretRef)").message("format PagerDuty needs routingKeySecretRef"))]
#[x_kube(validation = Rule::new("(has(self.format) && self.format == 'PagerDuty') || !has(self.routingKeySecretRef)").message("routingKeySecretRef is for format PagerDuty only"))]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The Secret key holding the webhook URL (for `PagerDuty`, the Events API v2 endpoint,
    /// `https://events.pagerduty.com/v2/enqueue`). The URL never appears in status, Events or
    /// logs.
    pub url_secret_ref: SecretKeyRef,
    /// Body format: `JSON` (a plain object), `Slack` (`text` and Block Kit `blocks`), `Teams`
    /// (an Adaptive Card for a Microsoft Teams Workflows webhook), `GoogleChat` (a Google Chat
    /// message) or `PagerDuty` (Events API v2: a failure triggers an incident, the recovery
    /// resolves it). docs/alerts.md shows each.
    #[serde(default)]
    pub format: WebhookFormat,
    /// For `PagerDuty`: the Secret key holding the integration's routing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key_secret_ref: Option<SecretKeyRef>,
    /// The Secret key holding a shared secret to sign each delivery with: HMAC-SHA256 of
    /// `<timestamp>.<body>`, sent as `X-Syncseq-Signature: sha256=<hex>` beside
    /// `X-Syncseq-Timestamp: <unix seconds>`, so that the receiver can verify the sender and
    /// refuse replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<SecretKeyRef>,
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
    /// A Microsoft Teams message with an Adaptive Card, for a Workflows webhook.
    Teams,
    /// A Google Chat incoming-webhook message.
    GoogleChat,
    /// A PagerDuty Events API v2 event.
    PagerDuty,
}

impl WebhookFormat {
    /// The format as `spec.alerts[].webhook.format` spells it.
    pub fn name(self) -> &'static str {
        match self {
            WebhookFormat::Json => "JSON",
            WebhookFormat::Slack => "Slack",
            WebhookFormat::Teams => "Teams",
            WebhookFormat::GoogleChat => "GoogleChat",
            WebhookFormat::PagerDuty => "PagerDuty",
        }
    }
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
    /// Schedule bookkeeping: last and next fire times, missed times.
    #[serde(flatten)]
    pub schedule: ScheduleStatus,
    /// Runs: the one in progress, the queued one, the history, the requests handled.
    #[serde(flatten)]
    pub book: RunBook,
    // Boxed, as the run records of `book`.
    /// The most recent finished run, with every step's outcome and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Box<RunStatus>>,
    /// Per alert: the state last notified, so that repeated failures notify once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_states: Vec<AlertState>,
    /// Notifications decided and not yet handled by the delivery worker, oldest first (the
    /// outbox; see docs/alerts.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_alerts: Vec<super::PendingAlert>,
    /// Keys of pending notifications the delivery worker is done with: accepted by their
    /// receiver, or refused for good. Written by the worker (field manager `syncseq-alerts`);
    /// the controller then removes them from `pendingAlerts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handled_alerts: Vec<String>,
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
