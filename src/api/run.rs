//! Runs and their steps: the records the one run engine keeps for both kinds. A Sync's own
//! run is a one-step run of the same shape as a sequence's.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RunPhase, StepPhase, TriggerKind, UpstreamRun, UpstreamStatus};

/// When runs start on their own: the schedule fields both kinds' specs share (flattened into
/// them, so manifests name them `spec.schedule`, `spec.timeZone`, ...).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.schedule) || !has(self.schedules)").message("set either schedule or schedules, not both (schedules takes a list of one)"))]
pub struct ScheduleSpec {
    /// When runs start: a 5-field cron expression (with month and weekday names, `?`, ranges,
    /// lists and steps), a macro (`@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`, ...) or
    /// `@every <duration>`, with exactly CronJob's meaning. Unset: runs start only on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = super::sequence::schedule_rule())]
    #[schemars(length(min = 1, max = 256))]
    pub schedule: Option<String>,

    /// Several schedules instead of `schedule` (1 to 16, each as `schedule` takes it, all in
    /// the one `timeZone`): runs start at every fire time of any of them, and fire times that
    /// coincide start one run. The next fire time, missed fires and `startingDeadlineSeconds`
    /// follow the union of their fire times. In a list of several, an `@every` schedule counts
    /// its intervals from the object's creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = super::sequence::schedules_rule())]
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 256)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub schedules: Option<Vec<String>>,

    /// Delay each scheduled start by a fixed offset between 0 and this many seconds (at most
    /// 3600), derived from the object's UID: the same offset at every fire, different between
    /// objects, so that many objects on one schedule do not all start in the same second.
    /// `status.lastScheduleTime`, `status.nextScheduleTime` and the Job's
    /// `syncseq.dev/scheduled-timestamp` keep the nominal fire time; `startingDeadlineSeconds`
    /// counts from the delayed start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub jitter_seconds: Option<i32>,

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

    /// Stops new scheduled runs, and runs started by upstreams (`after`; those that finish
    /// while suspended start nothing). The run in progress goes on; manual requests still
    /// start runs.
    #[serde(default)]
    pub suspend: bool,

    /// Start a run when SyncSequences or Syncs of this namespace finish a run (see
    /// docs/upstream.md). Cycles (A after B after A) are refused: the object is `Stalled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<super::AfterSpec>,

    /// Stop the schedule after this many failed runs in a row (runs of any trigger count, and
    /// a run that succeeds, with or without errors, ends the streak; a cancelled run neither
    /// counts nor ends it). Only the schedule stops: requests, retries and upstreams still
    /// start runs. The `ScheduleStopped` condition says so; a run that succeeds or `kubectl
    /// syncseq resume` restarts it, at its next fire time. Unset: the schedule never stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub stop_schedule_after_failures: Option<i32>,
}

/// Schedule bookkeeping in the status of either kind (flattened into it).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// Last time the schedule started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// Next time the schedule fires (unset when suspended or manual only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The most recent scheduled time that was not run because it was past `startingDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed_schedule_time: Option<Time>,
    /// Scheduled times that were not run because they were past `startingDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_schedules: Option<i64>,
    /// When the schedule last restarted after `stopScheduleAfterFailures` stopped it: the
    /// times it would have fired before then are not made up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_restart_time: Option<Time>,
}

/// Run bookkeeping in the status of either kind (flattened into it).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunBook {
    /// When the last run that succeeded finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The value of the `syncseq.dev/requestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_request_at: Option<String>,
    /// The value of the `syncseq.dev/retryRequestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_retry_at: Option<String>,
    /// The value of the `syncseq.dev/cancelRequestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_cancel_at: Option<String>,
    /// Phase of the last finished run (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_result: Option<RunPhase>,
    /// Number of the newest run started; run numbers name the Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_number: Option<i64>,
    /// Triggers dropped because a run was in progress (`concurrencyPolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_triggers: Option<i64>,
    /// A follow-up run waiting for the current one to end (`concurrencyPolicy: Queue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_run: Option<Box<QueuedRun>>,
    // Boxed, as `queued_run` and `backfill`: most cached objects are idle, and every one
    // carries the fields inline otherwise.
    /// The run in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_run: Option<Box<RunStatus>>,
    /// The last `historyLimit` finished runs, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunSummary>,
    /// Per upstream of `spec.after`: its newest run taken into account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["kind", "name"]))]
    pub upstreams: Vec<UpstreamStatus>,
    /// The failed runs in a row that `spec.stopScheduleAfterFailures` counts (kept while it is
    /// set; unset after a run that succeeds, or a resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_streak: Option<FailureStreak>,
    /// The value of the `syncseq.dev/resumeScheduleRequestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_resume_at: Option<String>,
    // Boxed: most objects never have one, and every cached object carries the field.
    /// The newest backfill (`kubectl syncseq backfill`): in progress, or how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Box<BackfillStatus>>,
    /// The value of the `syncseq.dev/backfillRequestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_backfill_at: Option<String>,
    /// The value of the `syncseq.dev/cancelBackfillRequestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_backfill_cancel_at: Option<String>,
}

/// A backfill: one run per fire time of the schedule in `[from, to)`, oldest first, one at a
/// time, each taking a gap between the object's own runs. Everything it needs to go on after a
/// restart is here: the next fire time is the schedule's next after the last one started.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    /// The `syncseq.dev/backfillRequestedAt` value that asked for it.
    pub requested_at: String,
    /// Fire times from this one on are run (unset only when the range could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Time>,
    /// Fire times before this one are run (unset only when the range could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Time>,
    /// Phase of the backfill.
    pub phase: BackfillPhase,
    /// Fire times in the range, counted when it was accepted.
    #[serde(default)]
    pub total: i64,
    /// Runs it started.
    #[serde(default)]
    pub started: i64,
    /// Of them, runs that succeeded (with errors or without).
    #[serde(default)]
    pub succeeded: i64,
    /// Of them, runs that failed or were cancelled.
    #[serde(default)]
    pub failed: i64,
    /// The fire time the last run it started is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_started_time: Option<Time>,
    /// The next fire time it runs, once no other run is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_time: Option<Time>,
    /// Its run in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    /// The newest runs of it that did not succeed, oldest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub failed_runs: Vec<i64>,
    /// Runs finished of the total, as `done/total` (for `kubectl get`).
    pub progress: String,
    /// When it was accepted (or refused).
    pub start_time: Time,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What it is doing or waiting for, why it was refused, or how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Phase of a backfill.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackfillPhase {
    /// Runs remain to start, or its run is in progress.
    Running,
    /// Every fire time ran, and every run succeeded.
    Succeeded,
    /// Every fire time ran, and at least one run failed or was cancelled.
    Failed,
    /// Cancelled by request before every fire time ran.
    Cancelled,
    /// Not started: the range is invalid, has no fire time or too many, or the object has no
    /// schedule. The message says which.
    Refused,
}

/// Failed runs in a row, for `spec.stopScheduleAfterFailures`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureStreak {
    /// How many runs in a row failed.
    pub count: i64,
    /// The newest of them, oldest first (at most 10): the runs the condition names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub runs: Vec<i64>,
}

/// An attempt that ended without a Job to read its result from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptFailure {
    /// The attempt this is about (1-based).
    pub attempt: i32,
    /// `JobDeleted` or `CreateRefused`.
    pub reason: String,
    /// What happened, with the API server's own message for a refusal.
    pub message: String,
    /// When the controller saw it.
    pub time: Time,
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
    /// The upstream run, for an upstream trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamRun>,
    /// The run to retry, for a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<i64>,
}

/// A run: in progress (`currentRun`) or the most recent finished one (`lastRun`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Run number, unique within the sequence or Sync.
    pub id: i64,
    /// What started the run.
    pub trigger: TriggerKind,
    /// The schedule time the run is for, when the schedule started it; for a `Retry` run,
    /// the retried run's (its Jobs re-sync that run's data interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// The upstream run that started it, when something upstream did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamRun>,
    /// For a `Retry` run: the run whose succeeded steps it reuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<i64>,
    /// When the run started.
    pub start_time: Time,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Phase of the run.
    pub phase: RunPhase,
    /// The first step whose failure under a `Stop` policy makes the run fail. The steps that
    /// need it are skipped; the run ends `Failed` once nothing more can run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
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
    /// UID of the latest attempt's Job, once the controller has seen it. A Job that was seen
    /// and then disappeared is never created again: the attempt fails instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_uid: Option<String>,
    /// How the latest attempt ended when there was no Job to read it from: the Job was deleted
    /// before it finished, or the API server refused to create it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_failure: Option<AttemptFailure>,
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
    /// For a Skipped step, why, as one CamelCase word: `UpstreamFailed` (a step it needs
    /// failed or was skipped), `UpstreamSucceeded` (`runWhen: AnyFailed`, and nothing it
    /// depends on failed), `FailFast` (`spec.failFast` after a failure elsewhere),
    /// `RunCancelled`, `StepRemoved` (gone from the spec mid-run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a step a `Retry` run did not run again: the run whose success it reuses (its Job,
    /// rows and times are that run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<i64>,
}

impl StepStatus {
    /// Step `name` of a run, running Sync `sync`, before anything happened to it.
    pub fn pending(name: impl Into<String>, sync: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            sync: sync.into(),
            phase: StepPhase::Pending,
            job_name: None,
            job_uid: None,
            attempt_failure: None,
            attempts: 0,
            start_time: None,
            completion_time: None,
            rows_synced: None,
            rows_rejected: None,
            message: None,
            reason: None,
            reused_from: None,
        }
    }
}

/// One finished run, for the history in `status.runs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Run number.
    pub id: i64,
    /// What started the run.
    pub trigger: TriggerKind,
    /// The upstream run that started it, when something upstream did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamRun>,
    /// The schedule time the run was for (see `RunStatus.scheduledTime`): a retry of it
    /// re-syncs that data interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// For a `Retry` run: the run it retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<i64>,
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
    /// For a run that did not succeed: its steps that did, which a retry of the run reuses
    /// (`kubectl syncseq retry NAME --run N`). Kept for nothing else, so status stays small: a
    /// run that succeeded has nothing to retry and keeps none, and steps that did not succeed
    /// run again. Unset in a run recorded before the history kept them (and in a Sync's runs):
    /// such a run can be retried only while it is the last finished one (`lastRun`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded_steps: Option<Vec<SucceededStep>>,
}

/// A step that succeeded in a run of the history, as a retry of that run reuses it: what
/// `lastRun` shows of a succeeded step, but its message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SucceededStep {
    /// Step name.
    pub name: String,
    /// Name of the Sync it ran.
    pub sync: String,
    /// Name of the Job of its last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Attempts it took.
    #[serde(default)]
    pub attempts: i32,
    /// When its first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Rows synced, from the termination message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_synced: Option<i64>,
    /// Rows rejected, from the termination message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_rejected: Option<i64>,
    /// When the run reused it in turn: the run whose success it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<i64>,
}

impl SucceededStep {
    /// What the history keeps of a step of `lastRun` that succeeded.
    pub(crate) fn of(step: &StepStatus) -> Self {
        Self {
            name: step.name.clone(),
            sync: step.sync.clone(),
            job_name: step.job_name.clone(),
            attempts: step.attempts,
            start_time: step.start_time.clone(),
            completion_time: step.completion_time.clone(),
            rows_synced: step.rows_synced,
            rows_rejected: step.rows_rejected,
            reused_from: step.reused_from,
        }
    }

    /// The step as a run's status shows it: Succeeded, with no message (the history keeps none).
    pub(crate) fn to_status(&self) -> StepStatus {
        StepStatus {
            phase: StepPhase::Succeeded,
            job_name: self.job_name.clone(),
            attempts: self.attempts,
            start_time: self.start_time.clone(),
            completion_time: self.completion_time.clone(),
            rows_synced: self.rows_synced,
            rows_rejected: self.rows_rejected,
            reused_from: self.reused_from,
            ..StepStatus::pending(&self.name, &self.sync)
        }
    }
}
