//! Prometheus metrics (`/metrics`), in the OpenMetrics text format: the controller's own work
//! (reconciles, hand-offs, deliveries) counted as it happens, and each object's state read from
//! the caches at scrape time (`objects`). Series are labelled by `namespace` and `name` (and
//! `step`), never by Job, so their number is bounded by the objects'.

mod objects;

pub(crate) use objects::Objects;
pub(crate) use objects::Stores;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

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
    /// The webhook format: `Slack` or `JSON`.
    pub provider: String,
    /// `delivered`, `failed` (retried) or `abandoned` (refused for good).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
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
    /// Finished sequence runs, by sequence and outcome.
    pub runs: Family<RunLabels, Counter>,
    /// Steps that ended failed (timed out, or over their rejected-rows limit, included).
    pub step_failures: Family<StepLabels, Counter>,
    /// Rows the steps' containers reported rejected.
    pub step_rejected_rows: Family<StepLabels, Counter>,
    /// Seconds steps waited for their Sync (busy with another run, or missing) before their
    /// first Job: how much a shared Sync delays each sequence.
    pub step_sync_wait: Family<StepLabels, Counter<f64, AtomicU64>>,
    /// Alert delivery attempts, by channel and result.
    pub alert_deliveries: Family<AlertLabels, Counter>,
    /// 1 while this replica leads (always, without leader election).
    pub leader: Gauge,
    /// Each object's state, read from the caches at scrape time.
    pub objects: Arc<Objects>,
    pub step_duration: Histogram,
    pub step_handoff: Histogram,
    /// Alert notifications the delivery queue had no room for (they stay pending in status and
    /// are offered again).
    pub alert_queue_dropped: Counter,
    /// Requests to the webhook endpoint, by receiver and outcome.
    pub webhook_deliveries: Family<DeliveryLabels, Counter>,
    /// When the controller saw each Job finish, for the hand-off histogram. Entries are taken
    /// when the next step starts and dropped after a while otherwise.
    finished_seen: Mutex<HashMap<String, Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
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
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads and reconciles",
            leader.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("build_info", "The controller's version", build_info);
        let objects = Arc::new(Objects::default());
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
        Metrics {
            registry,
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

    /// The metrics in the OpenMetrics text format, or in Prometheus' text format (0.0.4) for
    /// clients that do not ask for OpenMetrics (`promtool check metrics`, curl, older scrapers).
    pub(crate) fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        out
    }

    /// Counts a request to the webhook endpoint.
    pub(crate) fn webhook_delivery(&self, namespace: &str, name: &str, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&DeliveryLabels {
                namespace: namespace.into(),
                name: name.into(),
                outcome: outcome.into(),
            })
            .inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every series the chart's Grafana dashboard queries is one the controller exports: the
    /// event families once they have a sample, the per-object families always.
    #[test]
    fn the_grafana_dashboard_queries_only_exported_series() {
        let metrics = Metrics::new();
        let step = StepLabels {
            kind: "SyncSequence".into(),
            namespace: "revops".into(),
            name: "crm".into(),
            step: "load".into(),
        };
        metrics.step_failures.get_or_create(&step).inc();
        metrics.step_rejected_rows.get_or_create(&step).inc();
        metrics.step_sync_wait.get_or_create(&step).inc_by(1.5);
        let kind = KindLabel {
            kind: "SyncSequence".into(),
        };
        metrics.reconcile_errors.get_or_create(&kind).inc();
        metrics
            .runs
            .get_or_create(&RunLabels {
                kind: "SyncSequence".into(),
                namespace: "revops".into(),
                name: "crm".into(),
                outcome: "Failed".into(),
            })
            .inc();
        metrics
            .alert_deliveries
            .get_or_create(&AlertLabels {
                provider: "Slack".into(),
                result: "delivered".into(),
            })
            .inc();
        let text = metrics.encode(Format::Prometheus);
        let dashboard = include_str!("../../charts/syncseq/files/grafana-dashboard.json");
        let mut queried: Vec<&str> = dashboard
            .match_indices("syncseq_")
            .map(|(i, _)| {
                let rest = &dashboard[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .filter(|name| *name != "syncseq_")
            .collect();
        queried.sort_unstable();
        queried.dedup();
        assert!(queried.len() > 10, "{queried:?}");
        for series in queried {
            let family = series.strip_suffix("_bucket").unwrap_or(series);
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "the dashboard queries {series}, which /metrics does not export"
            );
        }
    }

    #[test]
    fn scrapers_get_openmetrics_and_everyone_else_prometheus_text() {
        let accept =
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4";
        assert_eq!(Format::from_accept(Some(accept)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        let metrics = Metrics::new();
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
