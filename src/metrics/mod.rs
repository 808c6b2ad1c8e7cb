//! Prometheus metrics (`/metrics`), in the OpenMetrics text format: the controller's own work
//! (reconciles, hand-offs, deliveries) counted as it happens, and each object's state read from
//! the caches at scrape time (`objects`). Series are labelled by `namespace` and `name` (and
//! `step`), never by Job, so their number is bounded by the objects'; [`PerObject`] bounds it
//! further, down to the per-kind-and-namespace aggregates alone, which are always exported.

mod objects;
#[cfg(test)]
mod scale_tests;
mod stream;

pub(crate) use objects::Objects;
pub(crate) use objects::Stores;
pub(crate) use stream::Chunks;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::Resource;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::admission::Priority;
use crate::api::{RunPhase, Sync, SyncSequence, WebhookFormat};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    /// `SyncSequence` or `Sync`.
    pub kind: String,
}

/// A kind's reconciles of one priority (`due` or `other`: a run in progress or a scheduled
/// time come, against everything else).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AdmissionLabels {
    pub kind: String,
    pub priority: String,
}

/// A sequence and how one of its runs ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RunLabels {
    /// `SyncSequence` or `Sync`: the kinds share names.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub outcome: String,
}

/// A step of a sequence's (or a Sync's own) run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StepLabels {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub step: String,
}

/// An alert channel and what became of one delivery attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AlertLabels {
    /// The webhook format, as `spec.alerts[].webhook.format` spells it (`JSON`, `Slack`, ...).
    pub provider: String,
    /// One of [`DELIVERY_RESULTS`].
    pub result: String,
}

/// What became of an alert delivery attempt: delivered, failed (and retried) or abandoned
/// (refused for good).
pub(crate) const DELIVERED: &str = "delivered";
pub(crate) const FAILED: &str = "failed";
pub(crate) const ABANDONED: &str = "abandoned";
const DELIVERY_RESULTS: [&str; 3] = [DELIVERED, FAILED, ABANDONED];

/// Every webhook format, each an alert channel of its own in `syncseq_alert_deliveries_total`.
const FORMATS: [WebhookFormat; 5] = [
    WebhookFormat::Json,
    WebhookFormat::Slack,
    WebhookFormat::Teams,
    WebhookFormat::GoogleChat,
    WebhookFormat::PagerDuty,
];

/// How a finished run can end: the `outcome` of `syncseq_runs_total`.
const OUTCOMES: [RunPhase; 4] = [
    RunPhase::Succeeded,
    RunPhase::SucceededWithErrors,
    RunPhase::Failed,
    RunPhase::Cancelled,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// A kind's objects in one namespace: the aggregates' labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(crate) struct NamespaceLabels {
    pub kind: String,
    pub namespace: String,
}

/// How runs of a kind's objects in one namespace ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceRunLabels {
    kind: String,
    namespace: String,
    outcome: String,
}

/// What became of deliveries to the webhook receivers of one namespace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceDeliveryLabels {
    namespace: String,
    outcome: String,
}

/// Which objects have series of their own, labelled by `name` (and `step`): every object, none,
/// or those of some namespaces (`--metrics-per-object`, `--metrics-per-object-namespaces`).
/// The aggregates by kind and namespace count every object whatever it says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum PerObject {
    #[default]
    All,
    Off,
    Namespaces(BTreeSet<String>),
}

impl PerObject {
    /// From the two flags: an allowlist bounds per-object series, and has nothing to bound
    /// when they are off.
    pub(crate) fn from_flags(enabled: bool, namespaces: &[String]) -> Result<PerObject, String> {
        let namespaces: BTreeSet<String> = namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        match (enabled, namespaces.is_empty()) {
            (true, true) => Ok(PerObject::All),
            (true, false) => Ok(PerObject::Namespaces(namespaces)),
            (false, true) => Ok(PerObject::Off),
            (false, false) => Err(
                "--metrics-per-object-namespaces bounds per-object series, which \
                 --metrics-per-object=false turns off: set one or the other"
                    .into(),
            ),
        }
    }

    /// Whether the objects of this namespace have series of their own.
    pub(crate) fn covers(&self, namespace: &str) -> bool {
        match self {
            PerObject::All => true,
            PerObject::Off => false,
            PerObject::Namespaces(allowed) => allowed.contains(namespace),
        }
    }
}

/// What the metrics export: which objects have series of their own, and how many schedule
/// intervals without a success make an object stale (`syncseq_objects_stale`, the chart's
/// `staleIntervals`, which `SyncseqNoRecentSuccess` uses too).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Scope {
    pub per_object: PerObject,
    pub stale_intervals: f64,
    /// The leader Lease this replica competes for, the `lease` label of `syncseq_leader`: each
    /// shard has its own (docs/sharding.md), so an alert can say which shard has no leader.
    pub lease: String,
}

impl Default for Scope {
    fn default() -> Self {
        Scope {
            per_object: PerObject::All,
            stale_intervals: 3.0,
            lease: "syncseq".into(),
        }
    }
}

/// The leader Lease of a replica's shard.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LeaseLabel {
    pub lease: String,
}

/// A webhook receiver and what became of a delivery to it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeliveryLabels {
    pub namespace: String,
    pub name: String,
    /// `accepted`, `duplicate`, `ignored`, `bad_signature`, `bad_payload`, `too_large`,
    /// `timed_out`, `rate_limited`, `unavailable` or `not_found` (with an empty name: no such
    /// path).
    pub outcome: String,
}

/// The exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    OpenMetrics,
    Prometheus,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names it, as Prometheus
    /// servers' scrapes do.
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        match accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            true => Format::OpenMetrics,
            false => Format::Prometheus,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Every metric the controller exports.
pub(crate) struct Metrics {
    registry: Registry,
    pub reconciles: Family<KindLabel, Counter>,
    pub reconcile_errors: Family<KindLabel, Counter>,
    pub reconcile_duration: Family<KindLabel, Histogram>,
    pub reconciles_in_flight: Gauge,
    /// How long reconciles waited for a place, by priority.
    pub reconcile_admission_wait: Family<AdmissionLabels, Histogram>,
    /// Which objects have series of their own.
    per_object: PerObject,
    /// Finished sequence runs, by sequence and outcome.
    runs: Family<RunLabels, Counter>,
    /// Steps that ended failed (timed out, or over their rejected-rows limit, included).
    step_failures: Family<StepLabels, Counter>,
    /// Rows the steps' containers reported rejected.
    step_rejected_rows: Family<StepLabels, Counter>,
    /// Seconds steps waited for their Sync (busy with another run, or missing) before their
    /// first Job: how much a shared Sync delays each sequence.
    step_sync_wait: Family<StepLabels, Counter<f64, AtomicU64>>,
    /// The four above, and the webhook deliveries, by kind and namespace: every object counts
    /// here, whether or not it has series of its own.
    namespace_runs: Family<NamespaceRunLabels, Counter>,
    namespace_step_failures: Family<NamespaceLabels, Counter>,
    namespace_step_rejected_rows: Family<NamespaceLabels, Counter>,
    namespace_step_sync_wait: Family<NamespaceLabels, Counter<f64, AtomicU64>>,
    namespace_webhook_deliveries: Family<NamespaceDeliveryLabels, Counter>,
    /// Alert delivery attempts, by channel and result.
    pub alert_deliveries: Family<AlertLabels, Counter>,
    /// 1 while this replica leads (always, without leader election): the series of its
    /// Lease, [`Scope::lease`].
    pub leader: Gauge,
    /// Each object's state, read from the caches at scrape time.
    pub objects: Arc<Objects>,
    pub step_duration: Histogram,
    pub step_handoff: Histogram,
    /// Alert notifications the delivery queue had no room for (they stay pending in status and
    /// are offered again).
    pub alert_queue_dropped: Counter,
    /// Requests to the webhook endpoint, by receiver and outcome.
    webhook_deliveries: Family<DeliveryLabels, Counter>,
    /// When the controller saw each Job finish, for the hand-off histogram. Entries are taken
    /// when the next step starts and dropped after a while otherwise.
    finished_seen: Mutex<HashMap<String, Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Scope::default())
    }
}

impl Metrics {
    pub(crate) fn new(scope: Scope) -> Self {
        let mut registry = Registry::with_prefix("syncseq");
        let reconciles = Family::<KindLabel, Counter>::default();
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        let reconcile_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed and were retried",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time to observe, decide and execute one reconciliation",
            reconcile_duration.clone(),
        );
        let reconciles_in_flight = Gauge::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciliations running now (the work queue's active depth)",
            reconciles_in_flight.clone(),
        );
        let reconcile_admission_wait =
            Family::<AdmissionLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            });
        registry.register(
            "reconcile_admission_wait_seconds",
            "Time reconciles waited for a place (--concurrent-reconciles), by kind and priority",
            reconcile_admission_wait.clone(),
        );
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "runs",
            "Finished runs of sequences and standalone Syncs, by object and outcome",
            runs.clone(),
        );
        let step_failures = Family::<StepLabels, Counter>::default();
        registry.register(
            "step_failures",
            "Steps that ended failed, by object and step",
            step_failures.clone(),
        );
        let step_rejected_rows = Family::<StepLabels, Counter>::default();
        registry.register(
            "step_rejected_rows",
            "Rows the steps reported rejected, by object and step",
            step_rejected_rows.clone(),
        );
        let step_sync_wait = Family::<StepLabels, Counter<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "step_sync_wait",
            "Time steps waited for their Sync (busy with another run, or missing) before their first Job, by object and step",
            Unit::Seconds,
            step_sync_wait.clone(),
        );
        let alert_deliveries = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alert_deliveries",
            "Alert delivery attempts, by channel and result",
            alert_deliveries.clone(),
        );
        let leaders = Family::<LeaseLabel, Gauge>::default();
        let leader = leaders
            .get_or_create(&LeaseLabel {
                lease: scope.lease.clone(),
            })
            .clone();
        registry.register(
            "leader",
            "1 while this replica leads and reconciles, by the Lease it competes for",
            leaders,
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("build_info", "The controller's version", build_info);
        let objects = Arc::new(Objects::new(scope.clone()));
        registry.register_collector(Box::new(objects.clone()));
        let step_duration = Histogram::new(exponential_buckets(0.25, 2.0, 16));
        registry.register(
            "step_duration_seconds",
            "Time from a step's start to its final phase",
            step_duration.clone(),
        );
        let step_handoff = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "step_handoff_seconds",
            "Time from the controller seeing a step's Job finish to the next step's Job being created",
            step_handoff.clone(),
        );
        let alert_queue_dropped = Counter::default();
        registry.register(
            "alert_queue_dropped",
            "Alert notifications the delivery queue had no room for; they stay pending and are offered again",
            alert_queue_dropped.clone(),
        );
        let webhook_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Requests to the webhook endpoint, by receiver and outcome",
            webhook_deliveries.clone(),
        );
        let namespace_runs = Family::<NamespaceRunLabels, Counter>::default();
        registry.register(
            "namespace_runs",
            "Finished runs of sequences and standalone Syncs, by kind, namespace and outcome",
            namespace_runs.clone(),
        );
        let namespace_step_failures = Family::<NamespaceLabels, Counter>::default();
        registry.register(
            "namespace_step_failures",
            "Steps that ended failed, by kind and namespace",
            namespace_step_failures.clone(),
        );
        let namespace_step_rejected_rows = Family::<NamespaceLabels, Counter>::default();
        registry.register(
            "namespace_step_rejected_rows",
            "Rows the steps reported rejected, by kind and namespace",
            namespace_step_rejected_rows.clone(),
        );
        let namespace_step_sync_wait =
            Family::<NamespaceLabels, Counter<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "namespace_step_sync_wait",
            "Time steps waited for their Sync before their first Job, by kind and namespace",
            Unit::Seconds,
            namespace_step_sync_wait.clone(),
        );
        let namespace_webhook_deliveries = Family::<NamespaceDeliveryLabels, Counter>::default();
        registry.register(
            "namespace_webhook_deliveries",
            "Requests to the webhook endpoint, by the receiver's namespace and outcome",
            namespace_webhook_deliveries.clone(),
        );
        // Every series whose labels are known now exists from the start, at 0: a counter's first
        // sample is otherwise its first event, which `rate()` and `increase()` cannot see, and
        // a dashboard panel over it says "No data" until then.
        for kind in [SyncSequence::kind(&()), Sync::kind(&())] {
            let label = KindLabel { kind: kind.into() };
            let _ = reconciles.get_or_create(&label);
            let _ = reconcile_errors.get_or_create(&label);
            let _ = reconcile_duration.get_or_create(&label);
            for priority in [Priority::Due, Priority::Other] {
                let _ = reconcile_admission_wait.get_or_create(&AdmissionLabels {
                    kind: label.kind.clone(),
                    priority: priority.label().into(),
                });
            }
        }
        for format in FORMATS {
            for result in DELIVERY_RESULTS {
                let _ = alert_deliveries.get_or_create(&AlertLabels {
                    provider: format.name().into(),
                    result: result.into(),
                });
            }
        }
        Metrics {
            registry,
            per_object: scope.per_object,
            namespace_runs,
            namespace_step_failures,
            namespace_step_rejected_rows,
            namespace_step_sync_wait,
            namespace_webhook_deliveries,
            webhook_deliveries,
            alert_queue_dropped,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            reconciles_in_flight,
            reconcile_admission_wait,
            runs,
            step_failures,
            step_rejected_rows,
            step_sync_wait,
            alert_deliveries,
            leader,
            objects,
            step_duration,
            step_handoff,
            finished_seen: Mutex::default(),
        }
    }

    /// Writes the metrics in the OpenMetrics text format, or in Prometheus' text format (0.0.4)
    /// for clients that do not ask for OpenMetrics (`promtool check metrics`, curl, older
    /// scrapers), into `out` as they are encoded (the server's [`Chunks`]): at 10,000 objects
    /// they are megabytes, which need not be held at once. Fails only when `out` does.
    pub(crate) fn encode_into(
        &self,
        format: Format,
        out: &mut impl std::fmt::Write,
    ) -> std::fmt::Result {
        match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(out, &self.registry),
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(out, &self.registry)
            }
        }
    }

    /// The whole text at once, for tests.
    #[cfg(test)]
    pub(crate) fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.encode_into(format, &mut out);
        out
    }

    /// Puts at 0 the series of an object's runs (each outcome) and of its steps, and its kind's
    /// and namespace's aggregates, which exist otherwise only from their first event on (see
    /// [`Metrics::new`]). Where they exist it costs a read lock and a lookup per series, against
    /// a reconcile's milliseconds, so every reconcile calls it and a step added to the spec has
    /// its series from the next one on. Like the other series of the controller's work, they
    /// stay when the object or the step goes, until the process ends.
    pub(crate) fn object_seen<'a>(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        steps: impl IntoIterator<Item = &'a str>,
    ) {
        let aggregate = NamespaceLabels {
            kind: kind.into(),
            namespace: namespace.into(),
        };
        let _ = self.namespace_step_failures.get_or_create(&aggregate);
        let _ = self.namespace_step_rejected_rows.get_or_create(&aggregate);
        let _ = self.namespace_step_sync_wait.get_or_create(&aggregate);
        for outcome in OUTCOMES {
            let _ = self.namespace_runs.get_or_create(&NamespaceRunLabels {
                kind: kind.into(),
                namespace: namespace.into(),
                outcome: format!("{outcome:?}"),
            });
        }
        if !self.per_object.covers(namespace) {
            return;
        }
        for outcome in OUTCOMES {
            let _ = self.runs.get_or_create(&RunLabels {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
                outcome: format!("{outcome:?}"),
            });
        }
        for step in steps {
            let labels = step_labels(kind, namespace, name, step);
            let _ = self.step_failures.get_or_create(&labels);
            let _ = self.step_rejected_rows.get_or_create(&labels);
            let _ = self.step_sync_wait.get_or_create(&labels);
        }
    }

    /// Counts a finished run of an object.
    pub(crate) fn run_finished(&self, kind: &str, namespace: &str, name: &str, outcome: RunPhase) {
        let outcome = format!("{outcome:?}");
        self.namespace_runs
            .get_or_create(&NamespaceRunLabels {
                kind: kind.into(),
                namespace: namespace.into(),
                outcome: outcome.clone(),
            })
            .inc();
        if self.per_object.covers(namespace) {
            self.runs
                .get_or_create(&RunLabels {
                    kind: kind.into(),
                    namespace: namespace.into(),
                    name: name.into(),
                    outcome,
                })
                .inc();
        }
    }

    /// Counts a step that ended failed.
    pub(crate) fn step_failed(&self, (kind, namespace, name): (&str, &str, &str), step: &str) {
        self.namespace_step_failures
            .get_or_create(&namespace_labels(kind, namespace))
            .inc();
        if self.per_object.covers(namespace) {
            self.step_failures
                .get_or_create(&step_labels(kind, namespace, name, step))
                .inc();
        }
    }

    /// Counts the rows a step reported rejected.
    pub(crate) fn rows_rejected(
        &self,
        (kind, namespace, name): (&str, &str, &str),
        step: &str,
        rows: u64,
    ) {
        self.namespace_step_rejected_rows
            .get_or_create(&namespace_labels(kind, namespace))
            .inc_by(rows);
        if self.per_object.covers(namespace) {
            self.step_rejected_rows
                .get_or_create(&step_labels(kind, namespace, name, step))
                .inc_by(rows);
        }
    }

    /// Counts the seconds a step waited for its Sync.
    pub(crate) fn sync_waited(
        &self,
        (kind, namespace, name): (&str, &str, &str),
        step: &str,
        seconds: f64,
    ) {
        self.namespace_step_sync_wait
            .get_or_create(&namespace_labels(kind, namespace))
            .inc_by(seconds);
        if self.per_object.covers(namespace) {
            self.step_sync_wait
                .get_or_create(&step_labels(kind, namespace, name, step))
                .inc_by(seconds);
        }
    }

    /// Counts a request to the webhook endpoint.
    pub(crate) fn webhook_delivery(&self, namespace: &str, name: &str, outcome: &str) {
        self.namespace_webhook_deliveries
            .get_or_create(&NamespaceDeliveryLabels {
                namespace: namespace.into(),
                outcome: outcome.into(),
            })
            .inc();
        if self.per_object.covers(namespace) {
            self.webhook_deliveries
                .get_or_create(&DeliveryLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    outcome: outcome.into(),
                })
                .inc();
        }
    }

    /// Records how long a reconcile waited for its place.
    pub(crate) fn admitted(&self, kind: &str, priority: &str, waited: std::time::Duration) {
        self.reconcile_admission_wait
            .get_or_create(&AdmissionLabels {
                kind: kind.into(),
                priority: priority.into(),
            })
            .observe(waited.as_secs_f64());
    }

    /// Notes when a Job was first seen finished.
    pub(crate) fn job_finished(&self, job: &str) {
        let mut seen = self.finished_seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 50_000 {
            seen.retain(|_, at| at.elapsed().as_secs() < 600);
        }
        seen.entry(job.to_string()).or_insert_with(Instant::now);
    }

    /// Records a hand-off: the Job after `previous` was just created.
    pub(crate) fn handoff(&self, previous: &str) {
        let seen = self
            .finished_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(previous);
        if let Some(at) = seen {
            self.step_handoff.observe(at.elapsed().as_secs_f64());
        }
    }
}

fn namespace_labels(kind: &str, namespace: &str) -> NamespaceLabels {
    NamespaceLabels {
        kind: kind.into(),
        namespace: namespace.into(),
    }
}

fn step_labels(kind: &str, namespace: &str, name: &str, step: &str) -> StepLabels {
    StepLabels {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
        step: step.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the metric families a shipped file queries (a histogram's by its buckets).
    fn queried(file: &str) -> Vec<&str> {
        let mut names: Vec<&str> = file
            .match_indices("syncseq_")
            .map(|(i, _)| {
                let rest = &file[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let name = &rest[..end];
                name.strip_suffix("_bucket").unwrap_or(name)
            })
            .filter(|name| *name != "syncseq_")
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether `text` has a sample of `family`, a plain series or a histogram's buckets.
    fn has_sample(text: &str, family: &str) -> bool {
        text.lines().any(|line| {
            line.strip_prefix(family).is_some_and(|rest| {
                let rest = rest.strip_prefix("_bucket").unwrap_or(rest);
                rest.starts_with(['{', ' '])
            })
        })
    }

    /// A scheduled sequence whose one run succeeded, in the caches the object metrics read.
    fn one_sequence_in_the_caches(metrics: &Metrics) {
        use crate::api::{RunSummary, TriggerKind};
        use crate::engine::fixtures::{self, t0};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        use kube::runtime::{reflector::store::Writer, watcher::Event};

        let mut seq = fixtures::sequence(vec![fixtures::step("accounts")]);
        seq.spec.scheduling.schedule = Some("0 * * * *".into());
        let mut status = crate::api::SyncSequenceStatus::default();
        status.book.last_successful_time = Some(Time(t0()));
        status.book.runs = vec![RunSummary {
            id: 1,
            scheduled_time: None,
            trigger: TriggerKind::Manual,
            upstream: None,
            retry_of: None,
            phase: RunPhase::Succeeded,
            start_time: Time(t0()),
            completion_time: Some(Time(t0())),
            failed_step: None,
            message: None,
            succeeded_steps: None,
        }];
        seq.status = Some(status);
        let (mut sequences, syncs) = (Writer::default(), Writer::<Sync>::default());
        sequences.apply_watcher_event(&Event::Apply(seq));
        metrics.objects.watch(Stores {
            sequences: sequences.as_reader(),
            syncs: syncs.as_reader(),
            owns_sync: Box::new(|_| true),
        });
    }

    /// The families `--metrics-per-object=false` turns off: those with a `name` label.
    const PER_OBJECT: [&str; 11] = [
        "syncseq_last_success_timestamp_seconds",
        "syncseq_last_run_outcome",
        "syncseq_last_run_duration_seconds",
        "syncseq_run_in_progress",
        "syncseq_suspended",
        "syncseq_schedule_interval_seconds",
        "syncseq_runs_total",
        "syncseq_step_failures_total",
        "syncseq_step_rejected_rows_total",
        "syncseq_step_sync_wait_seconds_total",
        "syncseq_webhook_deliveries_total",
    ];

    /// /metrics once the controller knows one object (and one webhook delivery), before
    /// anything else has happened to count.
    fn scrape(per_object: PerObject) -> String {
        let metrics = Metrics::new(Scope {
            per_object,
            ..Scope::default()
        });
        one_sequence_in_the_caches(&metrics);
        metrics.object_seen("SyncSequence", "revops", "crm", ["accounts"]);
        metrics.webhook_delivery("revops", "github", "accepted");
        metrics.encode(Format::Prometheus)
    }

    /// The families the chart's PrometheusRule and Grafana dashboard query.
    fn shipped() -> (Vec<&'static str>, Vec<&'static str>) {
        let rules = include_str!("../../charts/syncseq/files/prometheus-rules.yaml");
        let dashboard = include_str!("../../charts/syncseq/files/grafana-dashboard.json");
        let (rules, dashboard) = (queried(rules), queried(dashboard));
        assert!(
            rules.len() >= 7 && dashboard.len() > 10,
            "{rules:?} {dashboard:?}"
        );
        (rules, dashboard)
    }

    /// Every series the chart's PrometheusRule and Grafana dashboard query has a sample once
    /// the controller knows one object, before anything has happened to count.
    #[test]
    fn the_shipped_rules_and_dashboard_query_series_that_exist_before_any_event() {
        let text = scrape(PerObject::All);
        let (rules, dashboard) = shipped();
        for family in rules.into_iter().chain(dashboard) {
            assert!(
                has_sample(&text, family),
                "a shipped rule or panel queries {family}, which /metrics lacks:\n{text}"
            );
        }
        for family in PER_OBJECT {
            assert!(has_sample(&text, family), "{family} in:\n{text}");
        }
    }

    /// With per-object series off, every family the rules and dashboard query that is not
    /// per-object detail has a sample, the per-object families have none, and what the alerts
    /// and panels need of the objects is there in the aggregates.
    #[test]
    fn with_per_object_series_off_the_shipped_files_query_the_aggregates() {
        let text = scrape(PerObject::Off);
        let (rules, dashboard) = shipped();
        for family in PER_OBJECT {
            assert!(!has_sample(&text, family), "{family} in:\n{text}");
        }
        for family in rules.iter().chain(&dashboard) {
            assert!(
                PER_OBJECT.contains(family) || has_sample(&text, family),
                "a shipped rule or panel queries {family}, which /metrics lacks:\n{text}"
            );
        }
        // The two alerts on objects' state have their aggregate twins, and the counters the
        // dashboard's panels plot are the aggregates.
        for family in ["syncseq_objects_stale", "syncseq_objects_last_run_failed"] {
            assert!(rules.contains(&family), "{family} not in {rules:?}");
        }
        for family in [
            "syncseq_objects",
            "syncseq_objects_run_in_progress",
            "syncseq_objects_suspended",
            "syncseq_namespace_runs_total",
            "syncseq_namespace_step_failures_total",
            "syncseq_namespace_step_rejected_rows_total",
            "syncseq_namespace_step_sync_wait_seconds_total",
        ] {
            assert!(dashboard.contains(&family), "{family} not in {dashboard:?}");
        }
        for series in [
            r#"syncseq_objects{kind="SyncSequence",namespace="revops"} 1"#,
            r#"syncseq_objects_stale{kind="SyncSequence",namespace="revops"} 1"#,
            r#"syncseq_objects_last_run_failed{kind="SyncSequence",namespace="revops"} 0"#,
            r#"syncseq_namespace_runs_total{kind="SyncSequence",namespace="revops",outcome="Failed"} 0"#,
            r#"syncseq_namespace_step_failures_total{kind="SyncSequence",namespace="revops"} 0"#,
            r#"syncseq_namespace_webhook_deliveries_total{namespace="revops",outcome="accepted"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
        }
    }

    /// An allowlist of namespaces bounds the per-object series; every namespace counts in the
    /// aggregates.
    #[test]
    fn per_object_series_only_for_the_namespaces_allowed() {
        let metrics = Metrics::new(Scope {
            per_object: PerObject::from_flags(true, &["revops".into()]).unwrap(),
            ..Scope::default()
        });
        for namespace in ["revops", "finance"] {
            metrics.object_seen("SyncSequence", namespace, "crm", ["accounts"]);
            metrics.run_finished("SyncSequence", namespace, "crm", RunPhase::Failed);
            metrics.step_failed(("SyncSequence", namespace, "crm"), "accounts");
            metrics.rows_rejected(("SyncSequence", namespace, "crm"), "accounts", 7);
            metrics.sync_waited(("SyncSequence", namespace, "crm"), "accounts", 1.5);
        }
        let text = metrics.encode(Format::Prometheus);
        let of = |ns: &str| format!(r#"kind="SyncSequence",namespace="{ns}""#);
        for ns in ["revops", "finance"] {
            for series in [
                format!(
                    "syncseq_namespace_runs_total{{{},outcome=\"Failed\"}} 1",
                    of(ns)
                ),
                format!(
                    "syncseq_namespace_runs_total{{{},outcome=\"Succeeded\"}} 0",
                    of(ns)
                ),
                format!("syncseq_namespace_step_failures_total{{{}}} 1", of(ns)),
                format!("syncseq_namespace_step_rejected_rows_total{{{}}} 7", of(ns)),
                format!(
                    "syncseq_namespace_step_sync_wait_seconds_total{{{}}} 1.5",
                    of(ns)
                ),
            ] {
                assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
            }
        }
        let revops = of("revops");
        for series in [
            format!("syncseq_runs_total{{{revops},name=\"crm\",outcome=\"Failed\"}} 1"),
            format!("syncseq_step_failures_total{{{revops},name=\"crm\",step=\"accounts\"}} 1"),
            format!(
                "syncseq_step_rejected_rows_total{{{revops},name=\"crm\",step=\"accounts\"}} 7"
            ),
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
        }
        assert!(
            !text
                .lines()
                .any(|l| l.contains(r#"namespace="finance",name="#)),
            "{text}"
        );
    }

    #[test]
    fn the_flags_make_one_scope() {
        assert_eq!(PerObject::from_flags(true, &[]), Ok(PerObject::All));
        assert_eq!(PerObject::from_flags(false, &[]), Ok(PerObject::Off));
        assert_eq!(
            PerObject::from_flags(true, &["a".into(), " b ".into(), "".into()]),
            Ok(PerObject::Namespaces(["a".into(), "b".into()].into()))
        );
        let refused = PerObject::from_flags(false, &["a".into()]).unwrap_err();
        assert!(refused.contains("--metrics-per-object=false"), "{refused}");
        assert!(!PerObject::Off.covers("a"));
        assert!(PerObject::All.covers("a"));
    }

    /// Shards tell their leaders apart by Lease, so that an alert can name the shard without one.
    #[test]
    fn the_leader_series_names_the_lease() {
        let metrics = Metrics::new(Scope {
            lease: "syncseq-0a1b2c3d4e".into(),
            ..Scope::default()
        });
        let text = metrics.encode(Format::Prometheus);
        assert!(
            text.lines()
                .any(|l| l == r#"syncseq_leader{lease="syncseq-0a1b2c3d4e"} 0"#),
            "{text}"
        );
        metrics.leader.set(1);
        let text = metrics.encode(Format::Prometheus);
        assert!(
            text.lines()
                .any(|l| l == r#"syncseq_leader{lease="syncseq-0a1b2c3d4e"} 1"#),
            "{text}"
        );
    }

    /// The series labelled by kind, priority and alert channel exist at 0 from the start.
    #[test]
    fn a_fresh_controller_has_every_per_kind_series_at_0() {
        let text = Metrics::default().encode(Format::Prometheus);
        let has = |series: String| {
            assert!(
                text.lines().any(|l| l == format!("{series} 0")),
                "{series} not at 0 in:\n{text}"
            )
        };
        for kind in ["SyncSequence", "Sync"] {
            has(format!("syncseq_reconciles_total{{kind=\"{kind}\"}}"));
            has(format!("syncseq_reconcile_errors_total{{kind=\"{kind}\"}}"));
            has(format!(
                "syncseq_reconcile_duration_seconds_count{{kind=\"{kind}\"}}"
            ));
            for priority in ["due", "other"] {
                has(format!(
                    "syncseq_reconcile_admission_wait_seconds_count{{kind=\"{kind}\",priority=\"{priority}\"}}"
                ));
            }
        }
        for provider in ["JSON", "Slack", "Teams", "GoogleChat", "PagerDuty"] {
            for result in ["delivered", "failed", "abandoned"] {
                has(format!(
                    "syncseq_alert_deliveries_total{{provider=\"{provider}\",result=\"{result}\"}}"
                ));
            }
        }
        // Nothing per object before an object is seen.
        assert!(!has_sample(&text, "syncseq_runs_total"), "{text}");
        assert!(!has_sample(&text, "syncseq_step_failures_total"), "{text}");
    }

    /// An object's run and step series exist at 0 once it is seen, and seeing it again keeps
    /// what they counted.
    #[test]
    fn an_object_seen_has_its_run_and_step_series_at_0() {
        let metrics = Metrics::default();
        metrics.object_seen("SyncSequence", "revops", "crm", ["accounts", "contacts"]);
        let step = |step: &str| StepLabels {
            kind: "SyncSequence".into(),
            namespace: "revops".into(),
            name: "crm".into(),
            step: step.into(),
        };
        metrics.step_failures.get_or_create(&step("contacts")).inc();
        metrics.object_seen("SyncSequence", "revops", "crm", ["accounts", "contacts"]);
        let text = metrics.encode(Format::Prometheus);
        let of_crm = r#"kind="SyncSequence",namespace="revops",name="crm""#;
        for outcome in ["Succeeded", "SucceededWithErrors", "Failed", "Cancelled"] {
            let series = format!("syncseq_runs_total{{{of_crm},outcome=\"{outcome}\"}} 0");
            assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
        }
        for series in [
            format!("syncseq_step_failures_total{{{of_crm},step=\"accounts\"}} 0"),
            format!("syncseq_step_failures_total{{{of_crm},step=\"contacts\"}} 1"),
            format!("syncseq_step_rejected_rows_total{{{of_crm},step=\"accounts\"}} 0"),
            format!("syncseq_step_rejected_rows_total{{{of_crm},step=\"contacts\"}} 0"),
            format!("syncseq_step_sync_wait_seconds_total{{{of_crm},step=\"accounts\"}} 0.0"),
            format!("syncseq_step_sync_wait_seconds_total{{{of_crm},step=\"contacts\"}} 0.0"),
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
        }
    }

    /// The strings a type's JSON schema allows (its enum's values).
    fn values(schema: &serde_json::Value, out: &mut Vec<String>) {
        match schema {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("const", serde_json::Value::String(s)) => out.push(s.clone()),
                        ("enum", serde_json::Value::Array(all)) => {
                            out.extend(all.iter().filter_map(|v| v.as_str().map(String::from)))
                        }
                        _ => values(value, out),
                    }
                }
            }
            serde_json::Value::Array(all) => all.iter().for_each(|v| values(v, out)),
            _ => {}
        }
    }

    /// A run phase or webhook format added to the API has its series from the start too.
    #[test]
    fn every_outcome_and_alert_channel_is_known() {
        let mut phases = Vec::new();
        values(schemars::schema_for!(RunPhase).as_value(), &mut phases);
        let mut outcomes: Vec<String> = OUTCOMES.iter().map(|o| format!("{o:?}")).collect();
        outcomes.push("Running".into());
        phases.sort();
        outcomes.sort();
        assert_eq!(phases, outcomes);
        let mut formats = Vec::new();
        values(
            schemars::schema_for!(WebhookFormat).as_value(),
            &mut formats,
        );
        let mut known: Vec<String> = FORMATS.iter().map(|f| f.name().to_string()).collect();
        formats.sort();
        known.sort();
        assert_eq!(formats, known);
    }

    #[test]
    fn scrapers_get_openmetrics_and_everyone_else_prometheus_text() {
        let accept =
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4";
        assert_eq!(Format::from_accept(Some(accept)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        let metrics = Metrics::default();
        metrics
            .runs
            .get_or_create(&RunLabels {
                kind: "SyncSequence".into(),
                namespace: "revops".into(),
                name: "crm-hourly".into(),
                outcome: "Succeeded".into(),
            })
            .inc();
        let open = metrics.encode(Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"), "{open}");
        // In Prometheus' format the help and type name the sample's own name, as promtool
        // wants them.
        let text = metrics.encode(Format::Prometheus);
        assert!(text.contains("# HELP syncseq_runs_total "), "{text}");
        assert!(text.contains(
            "syncseq_runs_total{kind=\"SyncSequence\",namespace=\"revops\",name=\"crm-hourly\",outcome=\"Succeeded\"} 1"
        ));
        let build = format!(
            "syncseq_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
    }
}
