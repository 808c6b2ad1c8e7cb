//! `Sync`: one data sync, described as a Job template.

// kube-derive's repeated `printcolumn(type_ = ...)` arguments look like duplicated attributes to clippy.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::SyncRunRecord;

/// One data sync: the Job that moves a warehouse model into a business tool.
///
/// A Sync runs as a step of a SyncSequence, on its own schedule, or on request (the
/// `syncseq.dev/requestedAt` annotation). It never runs concurrently with itself.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug)]
#[kube(
    group = "syncseq.dev",
    version = "v1alpha1",
    kind = "Sync",
    namespaced,
    status = "SyncStatus",
    category = "syncseq",
    doc = "One data sync: a Job template that moves a warehouse model into a business tool.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(
        name = "Last Result",
        type_ = "string",
        json_path = ".status.lastRun.outcome"
    ),
    printcolumn(
        name = "Rows",
        type_ = "integer",
        json_path = ".status.lastRun.rowsSynced"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SyncSpec {
    /// The Job to run, with the same shape as a CronJob's `spec.jobTemplate` (its fields are
    /// documented by `kubectl explain cronjob.spec.jobTemplate`). Each run creates one Job from
    /// it; syncseq adds its labels, an owner reference and, inside a sequence, the step's timeout.
    pub job_template: JobTemplateSpec,

    /// Optional schedule for running this sync on its own, outside any sequence: a 5-field cron
    /// expression, a macro such as `@hourly`, or `@every <duration>`, exactly as CronJob accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = super::sequence::schedule_rule())]
    #[schemars(length(min = 1, max = 256))]
    pub schedule: Option<String>,

    /// IANA time zone the schedule is evaluated in (for example `Europe/Berlin`). UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$"),
        length(max = 64)
    )]
    pub time_zone: Option<String>,

    /// How late, in seconds, a missed scheduled run may still start. Unset means no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,

    /// Stops new scheduled runs of this sync on its own; a running Job is left alone.
    #[serde(default)]
    pub suspend: bool,
}

/// Observed state of a Sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// kstatus conditions: `Ready`, `Reconciling`, `Stalled`, `Running`, `LastRunSucceeded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The most recent run of this sync, from its own schedule, a manual request or a sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<SyncRunRecord>,
    /// Last time the sync's own schedule started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The most recent scheduled time that was not run because it was past `startingDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed_schedule_time: Option<Time>,
    /// Scheduled times that were not run because they were past `startingDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_schedules: Option<i64>,
    /// Next time the sync's own schedule fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The value of the `syncseq.dev/requestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_request_at: Option<String>,
    /// The value of the `syncseq.dev/cancelRequestedAt` annotation handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_cancel_at: Option<String>,
    /// Sequence of the Sync's own runs; names its Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_number: Option<i64>,
}
