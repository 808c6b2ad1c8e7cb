//! Prometheus metrics (`/metrics`), in the OpenMetrics text format.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `SyncSequence` or `Sync`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// A webhook receiver and what became of a delivery to it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub namespace: String,
    pub name: String,
    /// `accepted`, `duplicate`, `ignored`, `bad_signature`, `bad_payload`, `too_large`,
    /// `timed_out`, `rate_limited`, `unavailable` or `not_found` (with an empty name: no such
    /// path).
    pub outcome: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<KindLabel, Counter>,
    pub reconcile_errors: Family<KindLabel, Counter>,
    pub reconcile_duration: Family<KindLabel, Histogram>,
    pub reconciles_in_flight: Gauge,
    pub runs: Family<OutcomeLabel, Counter>,
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
    pub fn new() -> Self {
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
        let runs = Family::<OutcomeLabel, Counter>::default();
        registry.register("runs", "Finished sequence runs by outcome", runs.clone());
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
            runs,
            step_duration,
            step_handoff,
            finished_seen: Mutex::default(),
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a request to the webhook endpoint.
    pub fn webhook_delivery(&self, namespace: &str, name: &str, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&DeliveryLabels {
                namespace: namespace.into(),
                name: name.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Notes when a Job was first seen finished.
    pub fn job_finished(&self, job: &str) {
        let mut seen = self.finished_seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 50_000 {
            seen.retain(|_, at| at.elapsed().as_secs() < 600);
        }
        seen.entry(job.to_string()).or_insert_with(Instant::now);
    }

    /// Records a hand-off: the Job after `previous` was just created.
    pub fn handoff(&self, previous: &str) {
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
