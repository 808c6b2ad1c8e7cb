//! Runs that start when something upstream finishes: another SyncSequence or Sync of the same
//! namespace, or a delivery to a WebhookReceiver. Shared by both kinds (the spec's `after`, the status's `upstreams`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Start a run when upstream objects finish a run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AfterSpec {
    /// The SyncSequences, Syncs and WebhookReceivers of this namespace whose runs (for a
    /// receiver: deliveries) this one follows.
    #[schemars(length(min = 1, max = 10))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["kind", "name"]))]
    pub upstreams: Vec<UpstreamRef>,

    /// Which upstream runs count: `Succeeded` (the default; a run whose rejected rows stayed
    /// within their limits succeeded), `SucceededWithErrors` (also runs that finished with
    /// failed steps under `Continue` policies), or `Finished` (any end, failures included).
    /// (Named `when`, not `on`: YAML 1.1 parsers, kubectl's among them, read a bare `on` key
    /// as `true`.)
    #[serde(default)]
    pub when: UpstreamOutcome,

    /// With several upstreams: `Any` starts a run whenever one of them finishes a run that
    /// counts; `All` starts one when every one of them has finished a run that counts since
    /// the last run they started.
    #[serde(default)]
    pub require: UpstreamRequire,
}

/// An object whose runs start this one.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRef {
    /// `SyncSequence`, `Sync` or `WebhookReceiver`.
    pub kind: UpstreamKind,
    /// Its name, in this object's namespace.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

impl std::fmt::Display for UpstreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}/{}", self.kind, self.name)
    }
}

/// The kinds that can be upstream.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum UpstreamKind {
    SyncSequence,
    Sync,
    /// A webhook receiver: each delivery it accepts is a finished run, `Succeeded` or
    /// `Failed` as the sender reported it.
    WebhookReceiver,
}

/// Which upstream runs count.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpstreamOutcome {
    /// Runs that succeeded.
    #[default]
    Succeeded,
    /// Runs that succeeded, or finished every step with failures under `Continue` policies.
    SucceededWithErrors,
    /// Every run that ended, however it ended.
    Finished,
}

/// How several upstreams combine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpstreamRequire {
    /// A run whenever any upstream finishes a run that counts.
    #[default]
    Any,
    /// A run once every upstream has finished a run that counts since the last such run.
    All,
}

/// What this object has taken into account of one upstream, so that each upstream run starts
/// at most one run, also across controller restarts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamStatus {
    /// `SyncSequence`, `Sync` or `WebhookReceiver`.
    pub kind: UpstreamKind,
    pub name: String,
    /// The UID of the upstream object these runs belong to; a recreated upstream is another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The newest of its runs taken into account: one that started a run of this object, or
    /// the one it had already finished when this object first saw it (which starts nothing).
    /// A sequence's run number, the Job name of a Sync's run, or a receiver's delivery id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_run: Option<String>,
    /// When that run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_time: Option<Time>,
}

/// The upstream run that started a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRun {
    /// `SyncSequence`, `Sync` or `WebhookReceiver`.
    pub kind: UpstreamKind,
    pub name: String,
    /// A sequence's run number, the Job name of a Sync's run, or a receiver's delivery id.
    pub run: String,
}

impl std::fmt::Display for UpstreamRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            UpstreamKind::SyncSequence => write!(f, "sequence {} run {}", self.name, self.run),
            UpstreamKind::Sync => write!(f, "sync {} (job {})", self.name, self.run),
            UpstreamKind::WebhookReceiver => {
                write!(f, "webhook receiver {} delivery {}", self.name, self.run)
            }
        }
    }
}
