//! `WebhookReceiver`: a signed webhook from outside the cluster (dbt Cloud, Fivetran, or any
//! sender with a shared secret) whose deliveries start runs.
//!
//! Shaped like Flux's `Receiver` (a type, a Secret, a generated URL path in status), with one
//! difference: the objects it starts name it in their `spec.after`, as they name an upstream
//! sequence or Sync, instead of the receiver listing them. So what starts a run is written in
//! one place, on the object that runs, and `when` and `require: All` combine a dbt Cloud job
//! with a Fivetran connector or another sequence. Each delivery is a run of the receiver.

// kube-derive's repeated `printcolumn(type_ = ...)` arguments look like duplicated attributes to clippy.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A signed webhook whose deliveries start the objects that name it in `spec.after`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug)]
#[kube(
    group = "syncseq.dev",
    version = "v1alpha1",
    kind = "WebhookReceiver",
    namespaced,
    status = "WebhookReceiverStatus",
    shortname = "swr",
    category = "syncseq",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters: spec.after names it"),
    doc = "A signed webhook (dbt Cloud, Fivetran, generic HMAC) whose deliveries start the SyncSequences and Syncs that name it in spec.after.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Path", type_ = "string", json_path = ".status.webhookPath"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("self.type != 'DbtCloud' || has(self.dbtCloud)").message("type DbtCloud needs dbtCloud.jobIds"))]
#[x_kube(validation = kube::core::Rule::new("self.type != 'Fivetran' || has(self.fivetran)").message("type Fivetran needs fivetran.connectorIds"))]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceiverSpec {
    /// Who sends the webhook, which decides how its signature and body are read:
    /// `DbtCloud` (job webhooks: `job.run.completed`, `job.run.errored`), `Fivetran`
    /// (`sync_end`), or `Generic` (any sender; `X-Hub-Signature-256: sha256=<hex>`).
    #[serde(rename = "type")]
    pub type_: ReceiverType,

    /// The key of a Secret of this namespace that holds the webhook's signing secret (the
    /// secret dbt Cloud shows when the webhook is created; the one given to Fivetran; the
    /// generic sender's shared secret). Surrounding whitespace is ignored.
    pub secret_ref: super::SecretKeyRef,

    /// For `DbtCloud`: the dbt Cloud jobs whose runs count. Deliveries about other jobs are
    /// acknowledged and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbt_cloud: Option<DbtCloudFilter>,

    /// For `Fivetran`: the connectors whose syncs count. Deliveries about other connectors are
    /// acknowledged and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fivetran: Option<FivetranFilter>,
}

/// The senders a receiver understands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReceiverType {
    DbtCloud,
    Fivetran,
    Generic,
}

/// Which dbt Cloud jobs count.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DbtCloudFilter {
    /// dbt Cloud job ids (the number in the job's URL), as strings.
    #[schemars(length(min = 1, max = 50))]
    pub job_ids: Vec<String>,
}

/// Which Fivetran connectors count.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FivetranFilter {
    /// Fivetran connector (connection) ids, e.g. `mystified_presiding`.
    #[schemars(length(min = 1, max = 50))]
    pub connector_ids: Vec<String>,
}

/// Observed state of a WebhookReceiver.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceiverStatus {
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// kstatus conditions: `Ready` (False while the Secret or its key is missing, or syncseq may
    /// not read it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Where the controller's webhook endpoint receives this receiver's deliveries, e.g.
    /// `/hook/9f86d081884c7d659a2feaa0c55ad015`. Derived from the object's UID, so it cannot
    /// be guessed from the name; deleting and creating the receiver again changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
    /// The deliveries accepted, newest first, at most 50 (`MAX_DELIVERIES`). A delivery whose
    /// id is here already is a replay and starts nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
}

/// How many deliveries a receiver's status keeps: the window in which replays are recognised.
pub const MAX_DELIVERIES: usize = 50;

/// One accepted delivery.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The sender's identity of what finished, e.g. `dbt-job-42-run-9001`,
    /// `fivetran-mystified_presiding-3cdc0a9b`, or a generic sender's delivery id.
    pub id: String,
    /// Whether what it reports succeeded: `Succeeded` or `Failed` (a run of the receiver's in
    /// `spec.after` terms, read against `when`).
    pub phase: super::RunPhase,
    /// When the controller accepted it.
    pub received_time: Time,
    /// What the sender reported, for people: "dbt Cloud job 42 (Daily build) run 9001: Success".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}
