//! Delivering alert notifications, off the reconcile path, at least once.
//!
//! The engine puts every notification in the outbox of the status it writes
//! (`status.pendingAlerts`), in the same write as the change it announces. The reconciler
//! offers what the written status holds to [`Notifier::offer`], which queues it and returns at
//! once: a slow or failing webhook never holds up a reconcile. A dispatcher task skips what is
//! already queued or in flight, then routes each notification to a lane per (sequence, alert),
//! so one alert's notifications arrive in the order they were decided while different alerts
//! deliver concurrently.
//!
//! A delivery reads the webhook URL from the named Secret at every attempt (a Secret fixed
//! during the retries is picked up) and POSTs the body with an `Idempotency-Key` that is the
//! same on every attempt and across restarts. Network errors, timeouts, 408, 429, 5xx answers
//! and unreadable Secrets are retried with exponential backoff (1 s doubling to a minute) for
//! as long as the notification is still pending in status: a receiver that is down for ten
//! minutes gets it when it comes back. Other 4xx answers and refused addresses are final.
//! Once the delivery is over its key goes into `status.handledAlerts` (see `record`), and the
//! reconciler removes it from the outbox. A crash between delivering and recording delivers
//! again after the restart, with the same key: at least once, never lost.
//!
//! Deliveries in flight are bounded overall and per namespace, so one tenant's receivers that
//! accept connections and never answer cannot hold up another tenant's alerts by more than
//! one attempt's timeout. The queue is bounded; what it drops is counted
//! (`syncseq_alert_queue_dropped_total`) and offered again by the next reconcile.

mod connect;
mod record;
mod webhook;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{Mutex, Semaphore, mpsc};

use super::egress::EgressPolicy;
use crate::alerts::{self, Notification};
use crate::api::{SyncSequence, SyncSequenceStatus};
use crate::cluster::events::Reporter;
use crate::metrics::Metrics;

use connect::Http;
pub(crate) use connect::{Transport, read_ca_bundle};
pub(super) use record::status_unchanged;
use record::{Outcome, Progress};

/// Field manager of what the delivery worker writes.
pub(super) const FIELD_MANAGER: &str = "syncseq-alerts";

/// Notifications waiting for the dispatcher; beyond this, new ones are dropped (counted, and
/// offered again by the next reconcile).
const QUEUE_CAPACITY: usize = 1024;
/// Deliveries in flight at once, across all lanes.
const MAX_IN_FLIGHT: usize = 16;
/// Deliveries in flight at once for one namespace: the rest stays free for the others.
const NAMESPACE_IN_FLIGHT: usize = 4;
/// A lane with nothing to do for this long ends; the next notification starts a new one.
const LANE_IDLE: Duration = Duration::from_secs(60);
/// How many handled keys the worker remembers, so that an offer made before the reconciler
/// pruned its outbox does not deliver again.
const RECENT_KEYS: usize = 4096;

/// Backoff and timeout of deliveries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Wait after the first failed attempt; doubled after each further one, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long one request may take, answer included.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): 1 s, 2 s, 4 s, … up to the cap.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        (self.first_backoff * factor).min(self.max_backoff)
    }
}

/// One notification for one sequence, as queued.
struct Delivery {
    regarding: ObjectReference,
    notification: Notification,
}

/// The reconciler's handle on delivery. Cloning is cheap.
#[derive(Clone)]
pub(crate) struct Notifier {
    tx: mpsc::Sender<Delivery>,
    metrics: Arc<Metrics>,
}

struct Shared {
    client: Client,
    /// Where webhooks may connect (checked again on every resolution by `http`).
    egress: Arc<EgressPolicy>,
    reporter: Reporter,
    http: Http,
    policy: RetryPolicy,
    in_flight: Semaphore,
    /// Per namespace, its share of the deliveries in flight.
    namespaces: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Keys queued or being delivered.
    active: std::sync::Mutex<HashSet<String>>,
    /// Keys whose delivery is over (delivered, or refused for good).
    handled: std::sync::Mutex<RecentKeys>,
    /// Per sequence (namespace, name): each alert's last delivery outcome, for the condition.
    /// The lock also serialises the worker's status writes.
    outcomes: Mutex<HashMap<(String, String), std::collections::BTreeMap<String, Outcome>>>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Starts the dispatcher; must be called within the Tokio runtime.
    pub(crate) fn start(
        client: Client,
        reporter: Reporter,
        transport: Transport,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::start_with(client, reporter, transport, metrics, RetryPolicy::default())
    }

    pub(crate) fn start_with(
        client: Client,
        reporter: Reporter,
        transport: Transport,
        metrics: Arc<Metrics>,
        policy: RetryPolicy,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            client,
            reporter,
            http: Http::new(&transport),
            egress: Arc::new(transport.egress),
            policy,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            namespaces: Default::default(),
            active: Default::default(),
            handled: Default::default(),
            outcomes: Mutex::new(HashMap::new()),
            metrics: metrics.clone(),
        });
        tokio::spawn(dispatch(rx, shared));
        Notifier { tx, metrics }
    }

    /// Offers the notifications `status` (the sequence's, as written) holds pending and not
    /// handled for delivery, to the webhooks its alerts have now. Never waits.
    pub(crate) fn offer(&self, seq: &SyncSequence, status: &SyncSequenceStatus) {
        let (namespace, name) = (seq.namespace().unwrap_or_default(), seq.name_any());
        let regarding = seq.object_ref(&());
        for pending in status
            .pending_alerts
            .iter()
            .filter(|p| !status.handled_alerts.contains(&p.key))
        {
            let Some(alert) = seq.spec.alerts.iter().find(|a| a.name == pending.alert) else {
                continue;
            };
            let delivery = Delivery {
                regarding: regarding.clone(),
                notification: Notification::from_pending(
                    pending,
                    &namespace,
                    &name,
                    &alert.webhook,
                ),
            };
            if let Err(e) = self.tx.try_send(delivery) {
                self.metrics.alert_queue_dropped.inc();
                tracing::warn!(
                    namespace = %namespace,
                    sequence = %name,
                    alert = %pending.alert,
                    "alert queue {}; the notification stays pending and is offered again",
                    if matches!(e, mpsc::error::TrySendError::Full(_)) { "full" } else { "closed" }
                );
            }
        }
    }
}

/// Skips what is queued or in flight already and routes each notification to its lane.
async fn dispatch(mut rx: mpsc::Receiver<Delivery>, shared: Arc<Shared>) {
    let mut lanes: HashMap<(String, String, String), mpsc::UnboundedSender<Delivery>> =
        HashMap::new();
    while let Some(d) = rx.recv().await {
        let n = &d.notification;
        if !lock(&shared.active).insert(n.key.clone()) {
            continue;
        }
        let lane = (n.namespace.clone(), n.sequence.clone(), n.alert.clone());
        let d = match lanes.get(&lane) {
            Some(tx) => match tx.send(d) {
                Ok(()) => continue,
                // The lane ended (idle); start a new one.
                Err(mpsc::error::SendError(d)) => d,
            },
            None => d,
        };
        lanes.retain(|_, tx| !tx.is_closed());
        let (tx, lane_rx) = mpsc::unbounded_channel();
        let _ = tx.send(d);
        lanes.insert(lane, tx);
        tokio::spawn(run_lane(lane_rx, shared.clone()));
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Delivers one alert's notifications in order; ends after [`LANE_IDLE`] without work.
async fn run_lane(mut rx: mpsc::UnboundedReceiver<Delivery>, shared: Arc<Shared>) {
    loop {
        match tokio::time::timeout(LANE_IDLE, rx.recv()).await {
            Ok(Some(d)) => deliver(&shared, d).await,
            Ok(None) => return,
            Err(_) => {
                // Refuse new work, then finish what was sent before the close.
                rx.close();
                while let Ok(d) = rx.try_recv() {
                    deliver(&shared, d).await;
                }
                return;
            }
        }
    }
}

/// Delivers one notification, retrying for as long as it is pending in status.
async fn deliver(shared: &Shared, d: Delivery) {
    let n = &d.notification;
    let key = n.key.clone();
    if lock(&shared.handled).contains(&key) {
        // Handled by this process, but offered again: the record of it did not land.
        let mut outcomes = shared.outcomes.lock().await;
        let seq = (n.namespace.clone(), n.sequence.clone());
        if let Err(e) = record::write(&shared.client, &seq, &mut outcomes, Some(&key)).await {
            tracing::warn!(sequence = %n.sequence, error = %e, "failed to write the delivery status");
        }
    } else {
        attempts(shared, &d).await;
    }
    lock(&shared.active).remove(&key);
}

async fn attempts(shared: &Shared, d: &Delivery) {
    let n = &d.notification;
    let body = alerts::render(n);
    let mut attempt: u32 = 0;
    loop {
        if !still_pending(shared, n).await {
            tracing::debug!(sequence = %n.sequence, alert = %n.alert, "notification no longer pending");
            return;
        }
        attempt = attempt.saturating_add(1);
        let outcome = {
            let slot = namespace_slot(shared, &n.namespace);
            let _mine = slot.acquire().await;
            let _any = shared.in_flight.acquire().await;
            webhook::attempt(
                &shared.client,
                &shared.http,
                &shared.egress,
                &n.namespace,
                &n.webhook,
                &n.key,
                &body,
                shared.policy.request_timeout,
            )
            .await
        };
        let progress = match &outcome {
            Ok(()) => Progress::Delivered,
            Err(e) if !e.retry => Progress::Abandoned(e),
            Err(e) => Progress::Retrying(e),
        };
        let result = match &progress {
            Progress::Delivered => crate::metrics::DELIVERED,
            Progress::Abandoned(_) => crate::metrics::ABANDONED,
            Progress::Retrying(_) => crate::metrics::FAILED,
        };
        shared
            .metrics
            .alert_deliveries
            .get_or_create(&crate::metrics::AlertLabels {
                provider: n.webhook.format.name().into(),
                result: result.into(),
            })
            .inc();
        let over = !matches!(progress, Progress::Retrying(_));
        if over {
            lock(&shared.handled).insert(n.key.clone());
        }
        // The first failure is reported at once; later ones only in the log, until it ends.
        if over || attempt == 1 {
            record::record(shared, d, attempt, progress).await;
        } else if let Err(e) = &outcome {
            tracing::debug!(sequence = %n.sequence, alert = %n.alert, attempt, error = %e.message, "alert delivery attempt failed; retrying");
        }
        if over {
            return;
        }
        // A receiver's Retry-After is honoured when it asks for longer than the backoff.
        let wait = match &outcome {
            Err(e) => e.retry_after.unwrap_or_default(),
            Ok(()) => Duration::ZERO,
        };
        tokio::time::sleep(shared.policy.backoff(attempt).max(wait)).await;
    }
}

/// Whether the sequence still holds the notification pending (and not handled). When the
/// sequence cannot be read, it is taken to be: a failed read must not lose a notification.
async fn still_pending(shared: &Shared, n: &Notification) -> bool {
    let api: Api<SyncSequence> = Api::namespaced(shared.client.clone(), &n.namespace);
    match api.get_opt(&n.sequence).await {
        Ok(Some(seq)) => seq.status.is_some_and(|s| {
            s.pending_alerts.iter().any(|p| p.key == n.key) && !s.handled_alerts.contains(&n.key)
        }),
        Ok(None) => false,
        Err(e) => {
            tracing::debug!(sequence = %n.sequence, error = %e, "reading the sequence before a delivery failed");
            true
        }
    }
}

fn namespace_slot(shared: &Shared, namespace: &str) -> Arc<Semaphore> {
    lock(&shared.namespaces)
        .entry(namespace.to_string())
        .or_insert_with(|| Arc::new(Semaphore::new(NAMESPACE_IN_FLIGHT)))
        .clone()
}

/// The most recent keys seen, bounded.
#[derive(Default)]
struct RecentKeys {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentKeys {
    fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    /// False when the key was seen recently.
    fn insert(&mut self, key: String) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= RECENT_KEYS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(key.clone());
        self.set.insert(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (1..=8).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(
            waits,
            vec![1, 2, 4, 8, 16, 32, 60, 60],
            "capped at a minute"
        );
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn recent_keys_forget_the_oldest() {
        let mut r = RecentKeys::default();
        assert!(r.insert("a".into()));
        assert!(!r.insert("a".into()));
        for i in 0..RECENT_KEYS {
            r.insert(i.to_string());
        }
        assert!(r.insert("a".into()));
    }
}
