//! `Sync`: one data sync, described as a Job template.

// kube-derive's repeated `printcolumn(type_ = ...)` arguments look like duplicated attributes to clippy.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{JobTemplate, RunBook, ScheduleSpec, ScheduleStatus, SyncRunRecord};

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
    validation = super::name_rule(),
    doc = "One data sync: a Job template that moves a warehouse model into a business tool.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
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
    pub job_template: JobTemplate,

    /// Optional schedule for running this sync on its own, outside any sequence: `schedule` (or
    /// `schedules`), `timeZone`, `jitterSeconds`, `startingDeadlineSeconds`, `suspend`, exactly
    /// as a sequence takes them.
    #[serde(flatten)]
    pub scheduling: ScheduleSpec,
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
    // The three records are boxed, as the run records of `book`: every cached Sync carries
    // the fields, set or not, and at 30,000 Syncs their inline space alone was 14 MB.
    /// The most recent run of this sync, from its own schedule, a manual request or a sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Box<SyncRunRecord>>,
    /// The most recent run of this sync that succeeded, whoever started it: what downstream
    /// objects (`spec.after`) start on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_succeeded_run: Option<Box<SyncRunRecord>>,
    /// The most recent run of this sync that failed, whoever started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_run: Option<Box<SyncRunRecord>>,
    /// Schedule bookkeeping of the Sync's own schedule.
    #[serde(flatten)]
    pub schedule: ScheduleStatus,
    /// The Sync's own runs (its schedule and requests): each is a one-step run.
    #[serde(flatten)]
    pub book: RunBook,
    /// The Job that last claimed this Sync. It holds the Sync only while that Job or one of its
    /// Pods has not terminated. Written with compare-and-swap, so two reconcilers (or two
    /// replicas) can never both start the Sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<SyncClaim>,
}

/// A claim on a Sync by the Job about to run it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncClaim {
    /// Name of the Job.
    pub job: String,
    /// Who runs it, for messages: "sequence crm-nightly run 4".
    pub by: String,
    /// When the claim was made.
    pub time: Time,
}
