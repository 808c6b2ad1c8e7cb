//! Delivering alert notifications, off the reconcile path.
//!
//! The reconciler hands each `Action::Notify` to [`Notifier::enqueue`], which puts it on a
//! bounded queue and returns at once: a slow or failing webhook never holds up a reconcile. A
//! dispatcher task drops duplicates (a decision replayed on a stale cache), then routes each
//! notification to a lane per (sequence, alert), so one alert's notifications arrive in the
//! order they were decided while different alerts deliver concurrently.
//!
//! A delivery reads the webhook URL from the named Secret (a `get` of that one Secret, at every
//! attempt, so a Secret fixed during the retries is picked up) and POSTs the body, retrying
//! network errors, timeouts, 408, 429 and 5xx answers with exponential backoff (1 s, 2 s, 4 s,
//! 8 s: five attempts). Other 4xx answers are final. The outcome is recorded as an Event on
//! the sequence (`AlertSent`, or a Warning `AlertDeliveryFailed` with the reason) and as the
//! `AlertsDelivered` condition, applied under the field manager `syncseq-alerts` so the
//! reconciler's status apply (manager `syncseq`) neither removes nor overwrites it.
//!
//! The URL is a credential (a Slack webhook URL is its own token): it is never logged, never
//! put in status or Events, and error texts that could carry it are scrubbed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::{Mutex, Semaphore, mpsc};

use super::egress::{CheckedResolver, EgressPolicy, EgressRefused, refusal};
use super::events::{self, Reporter};
use crate::alerts::{self, ALERTS_DELIVERED, Notification};
use crate::api::{SecretKeyRef, SyncSequence, SyncSequenceStatus};
use crate::engine::Event;

/// Field manager of the `AlertsDelivered` condition.
pub const FIELD_MANAGER: &str = "syncseq-alerts";

/// Notifications waiting for the dispatcher; beyond this, new ones are dropped (and logged).
const QUEUE_CAPACITY: usize = 1024;
/// Deliveries in flight at once, across all lanes.
const MAX_IN_FLIGHT: usize = 16;
/// A lane with nothing to do for this long ends; the next notification starts a new one.
const LANE_IDLE: Duration = Duration::from_secs(60);
/// How many delivered keys the dispatcher remembers to drop duplicates.
const RECENT_KEYS: usize = 4096;

/// Retries and timeouts of one delivery.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub first_backoff: Duration,
    /// How long one request may take, answer included.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): 1 s, 2 s, 4 s, … capped at 5 minutes.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        (self.first_backoff * factor).min(Duration::from_secs(300))
    }
}

/// One notification for one sequence, as queued.
struct Delivery {
    regarding: ObjectReference,
    notification: Notification,
}

/// The reconciler's handle on delivery. Cloning is cheap.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Delivery>,
}

impl Notifier {
    /// Starts the dispatcher; must be called within the Tokio runtime.
    pub fn start(client: Client, reporter: Reporter, egress: EgressPolicy) -> Self {
        Self::start_with(client, reporter, egress, RetryPolicy::default())
    }

    pub fn start_with(
        client: Client,
        reporter: Reporter,
        egress: EgressPolicy,
        policy: RetryPolicy,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let egress = Arc::new(egress);
        let shared = Arc::new(Shared {
            client,
            reporter,
            http: http_client(egress.clone()),
            egress,
            policy,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            outcomes: Mutex::new(HashMap::new()),
        });
        tokio::spawn(dispatch(rx, shared));
        Notifier { tx }
    }

    /// Queues a notification and returns at once; never waits.
    pub fn enqueue(&self, regarding: &ObjectReference, notification: &Notification) {
        let delivery = Delivery {
            regarding: regarding.clone(),
            notification: notification.clone(),
        };
        match self.tx.try_send(delivery) {
            Ok(()) => {}
            Err(e) => {
                let d = match &e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                };
                tracing::error!(
                    namespace = %d.notification.event.namespace,
                    sequence = %d.notification.event.sequence,
                    alert = %d.notification.alert,
                    kind = ?d.notification.event.kind,
                    run = d.notification.event.run,
                    "alert queue unavailable ({}); notification dropped",
                    if matches!(e, mpsc::error::TrySendError::Full(_)) { "full" } else { "closed" }
                );
            }
        }
    }
}

/// Whether the status the reconciler would apply is already in place, leaving aside the
/// `AlertsDelivered` condition, which this module writes and the reconciler never does.
pub fn status_unchanged(
    current: Option<&SyncSequenceStatus>,
    planned: &SyncSequenceStatus,
) -> bool {
    let Some(current) = current else {
        return false;
    };
    if current
        .conditions
        .iter()
        .all(|c| c.type_ != ALERTS_DELIVERED)
    {
        return current == planned;
    }
    let mut current = current.clone();
    current.conditions.retain(|c| c.type_ != ALERTS_DELIVERED);
    &current == planned
}

type Http = HttpClient<HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>;

struct Shared {
    client: Client,
    /// Where webhooks may connect (checked again on every resolution by `http`).
    egress: Arc<EgressPolicy>,
    reporter: Reporter,
    http: Http,
    policy: RetryPolicy,
    in_flight: Semaphore,
    /// Per sequence (namespace, name): each alert's last delivery outcome, for the condition.
    /// The lock also serialises condition writes, so an older outcome never lands last.
    outcomes: Mutex<HashMap<(String, String), BTreeMap<String, Outcome>>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Delivered {
        what: String,
    },
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// An HTTPS (rustls, platform verifier: the OS trust store) or plain-HTTP client that connects
/// only where the egress policy allows.
fn http_client(egress: Arc<EgressPolicy>) -> Http {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .and_then(|b| b.with_platform_verifier().map_err(|e| e.to_string()))
        .map(|b| b.with_no_client_auth())
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "no TLS trust store for alert webhooks; HTTPS deliveries will fail");
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    let mut http = HttpConnector::new_with_resolver(CheckedResolver { policy: egress });
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Drops duplicates and routes each notification to its lane.
async fn dispatch(mut rx: mpsc::Receiver<Delivery>, shared: Arc<Shared>) {
    let mut recent = RecentKeys::default();
    let mut lanes: HashMap<(String, String, String), mpsc::UnboundedSender<Delivery>> =
        HashMap::new();
    while let Some(d) = rx.recv().await {
        let n = &d.notification;
        let key = format!(
            "{}/{}",
            d.regarding.uid.as_deref().unwrap_or_default(),
            n.key()
        );
        if !recent.insert(key) {
            tracing::debug!(
                sequence = %n.event.sequence,
                alert = %n.alert,
                kind = ?n.event.kind,
                run = n.event.run,
                "duplicate alert notification dropped"
            );
            continue;
        }
        let lane = (
            n.event.namespace.clone(),
            n.event.sequence.clone(),
            n.alert.clone(),
        );
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

/// Why one attempt failed.
#[derive(Debug)]
struct AttemptError {
    /// CamelCase, for the condition's reason.
    reason: &'static str,
    message: String,
    retry: bool,
}

impl AttemptError {
    fn retry(reason: &'static str, message: String) -> Self {
        AttemptError {
            reason,
            message,
            retry: true,
        }
    }
}

async fn deliver(shared: &Shared, d: Delivery) {
    let n = &d.notification;
    let secret = &n.webhook.url_secret_ref;
    let body = Bytes::from(serde_json::to_vec(&alerts::render(n)).unwrap_or_default());
    let policy = shared.policy;
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let outcome = {
            let _permit = shared.in_flight.acquire().await;
            attempt_once(shared, &n.event.namespace, secret, body.clone()).await
        };
        match outcome {
            Ok(()) => break Ok(()),
            Err(e) if !e.retry || attempt >= policy.attempts => break Err(e),
            Err(e) => {
                let wait = policy.backoff(attempt);
                tracing::warn!(
                    namespace = %n.event.namespace,
                    sequence = %n.event.sequence,
                    alert = %n.alert,
                    secret = %secret.name,
                    attempt,
                    retry_in = ?wait,
                    error = %e.message,
                    "alert delivery attempt failed; retrying"
                );
                tokio::time::sleep(wait).await;
            }
        }
    };
    report(shared, &d, attempt, result).await;
}

/// Reads the URL from the Secret and POSTs the body once.
async fn attempt_once(
    shared: &Shared,
    namespace: &str,
    secret: &SecretKeyRef,
    body: Bytes,
) -> Result<(), AttemptError> {
    let url = webhook_url(&shared.client, namespace, secret).await?;
    shared.egress.check_literal(&url).map_err(refused)?;
    post(&shared.http, &url, body, shared.policy.request_timeout)
        .await
        .map_err(|mut e| {
            e.message = scrub(&e.message, &url.to_string());
            e
        })
}

async fn webhook_url(
    client: &Client,
    namespace: &str,
    r: &SecretKeyRef,
) -> Result<http::Uri, AttemptError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(AttemptError::retry(
                "SecretNotFound",
                format!("Secret {} not found", r.name),
            ));
        }
        Err(e) => {
            return Err(AttemptError::retry(
                "SecretUnreadable",
                format!("reading Secret {}: {e}", r.name),
            ));
        }
    };
    let Some(value) = secret.data.as_ref().and_then(|d| d.get(&r.key)) else {
        return Err(AttemptError::retry(
            "SecretKeyNotFound",
            format!("Secret {} has no key {}", r.name, r.key),
        ));
    };
    parse_url(&value.0).ok_or_else(|| {
        AttemptError::retry(
            "InvalidURL",
            format!(
                "key {} of Secret {} does not hold an http(s) URL",
                r.key, r.name
            ),
        )
    })
}

/// The URL in a Secret value: UTF-8, surrounding whitespace ignored, http or https with a host.
fn parse_url(raw: &[u8]) -> Option<http::Uri> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let uri: http::Uri = text.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    (scheme_ok && uri.host().is_some_and(|h| !h.is_empty())).then_some(uri)
}

async fn post(
    http: &Http,
    url: &http::Uri,
    body: Bytes,
    timeout: Duration,
) -> Result<(), AttemptError> {
    let request = http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("syncseq/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| AttemptError::retry("DeliveryFailed", e.to_string()))?;
    let exchange = async {
        let response = http.request(request).await.map_err(|e| match refusal(&e) {
            Some(r) => refused(r),
            None => AttemptError::retry("DeliveryFailed", error_chain(&e)),
        })?;
        let status = response.status();
        // Read the (small) answer so the connection can be reused. Its body is never quoted:
        // it is whatever answers at the tenant's URL chose to say, and would reach status and
        // Events; the status code is what counts.
        let _ = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        if status.is_success() {
            return Ok(());
        }
        let message = format!("HTTP {status}");
        let retry = status.is_server_error()
            || status == http::StatusCode::REQUEST_TIMEOUT
            || status == http::StatusCode::TOO_MANY_REQUESTS;
        Err(AttemptError {
            reason: "DeliveryFailed",
            message: if retry {
                message
            } else {
                format!("{message} (not retried)")
            },
            retry,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(AttemptError::retry(
                "DeliveryFailed",
                format!("no answer within {}s", timeout.as_secs()),
            ))
        })
}

/// A connection the egress policy refused: final, since retrying cannot change the answer.
fn refused(r: EgressRefused) -> AttemptError {
    AttemptError {
        reason: "EgressRefused",
        message: format!("{r} (not retried)"),
        retry: false,
    }
}

/// An error and its sources, as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Removes the URL from a text: the URL itself, its path and query (where webhook tokens
/// live), and anything else that looks like an http(s) URL.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "<webhook URL>");
    let trimmed = url.trim_end_matches('/');
    if !trimmed.is_empty() {
        out = out.replace(trimmed, "<webhook URL>");
    }
    if let Ok(uri) = url.parse::<http::Uri>()
        && let Some(pq) = uri.path_and_query()
        && pq.as_str().len() > 1
    {
        out = out.replace(pq.as_str(), "<path>");
        if let Some(q) = pq.query() {
            out = out.replace(q, "<query>");
        }
    }
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = ["http://", "https://"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        result.push_str(&rest[..i]);
        result.push_str("<URL>");
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>' | ')' | ','))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

/// Records the outcome: a log line, an Event, and the `AlertsDelivered` condition.
async fn report(shared: &Shared, d: &Delivery, attempts: u32, result: Result<(), AttemptError>) {
    let n = &d.notification;
    let e = &n.event;
    let kind = format!("{:?}", e.kind);
    let secret = &n.webhook.url_secret_ref;
    let (event, outcome) = match &result {
        Ok(_) => {
            tracing::info!(
                namespace = %e.namespace,
                sequence = %e.sequence,
                alert = %n.alert,
                secret = %secret.name,
                kind = %kind,
                run = e.run,
                attempts,
                "alert notification delivered"
            );
            let what = format!("{kind} notification for run {}", e.run);
            (
                Event {
                    warning: false,
                    reason: "AlertSent",
                    action: "Notify",
                    note: format!("alert {}: {what} delivered (attempt {attempts})", n.alert),
                    job: None,
                },
                Outcome::Delivered { what },
            )
        }
        Err(err) => {
            tracing::warn!(
                namespace = %e.namespace,
                sequence = %e.sequence,
                alert = %n.alert,
                secret = %secret.name,
                kind = %kind,
                run = e.run,
                attempts,
                reason = err.reason,
                error = %err.message,
                "alert notification not delivered"
            );
            let message = format!(
                "alert {} (Secret {}, key {}): {kind} notification for run {} not delivered after {attempts} attempt{}: {}",
                n.alert,
                secret.name,
                secret.key,
                e.run,
                if attempts == 1 { "" } else { "s" },
                err.message
            );
            (
                Event {
                    warning: true,
                    reason: "AlertDeliveryFailed",
                    action: "Notify",
                    note: message.clone(),
                    job: None,
                },
                Outcome::Failed {
                    reason: err.reason,
                    message,
                },
            )
        }
    };
    if let Err(err) = events::publish(&shared.client, &shared.reporter, &d.regarding, &event).await
    {
        tracing::warn!(sequence = %e.sequence, error = %err, "failed to record event");
    }
    let key = (e.namespace.clone(), e.sequence.clone());
    let mut outcomes = shared.outcomes.lock().await;
    outcomes
        .entry(key.clone())
        .or_default()
        .insert(n.alert.clone(), outcome);
    if let Err(err) = set_condition(&shared.client, &key, &mut outcomes).await {
        tracing::warn!(sequence = %e.sequence, error = %err, "failed to set the AlertsDelivered condition");
    }
}

/// The condition for a sequence's alerts: False while any alert's last delivery failed.
fn condition_for(alerts: &BTreeMap<String, Outcome>) -> (bool, &'static str, String) {
    let failed: Vec<(&'static str, &str)> = alerts
        .values()
        .filter_map(|o| match o {
            Outcome::Failed { reason, message } => Some((*reason, message.as_str())),
            Outcome::Delivered { .. } => None,
        })
        .collect();
    match failed.as_slice() {
        [] => {
            let delivered: Vec<String> = alerts
                .iter()
                .map(|(alert, o)| match o {
                    Outcome::Delivered { what } => format!("alert {alert}: {what} delivered"),
                    Outcome::Failed { .. } => unreachable!(),
                })
                .collect();
            (true, "Delivered", delivered.join("; "))
        }
        [(reason, message)] => (false, reason, message.to_string()),
        [(reason, message), rest @ ..] => (
            false,
            reason,
            format!("{message} (and {} more alert(s) failing)", rest.len()),
        ),
    }
}

/// Applies the `AlertsDelivered` condition that the recorded outcomes of the sequence's alerts
/// call for (alerts no longer in the spec are forgotten first). Called with the outcomes locked.
async fn set_condition(
    client: &Client,
    (namespace, name): &(String, String),
    outcomes: &mut HashMap<(String, String), BTreeMap<String, Outcome>>,
) -> Result<(), kube::Error> {
    let api: Api<SyncSequence> = Api::namespaced(client.clone(), namespace);
    let Some(seq) = api.get_opt(name).await? else {
        outcomes.remove(&(namespace.clone(), name.clone()));
        return Ok(());
    };
    let Some(alerts) = outcomes.get_mut(&(namespace.clone(), name.clone())) else {
        return Ok(());
    };
    alerts.retain(|alert, _| seq.spec.alerts.iter().any(|a| a.name == *alert));
    if alerts.is_empty() {
        return Ok(());
    }
    let (ok, reason, message) = condition_for(alerts);
    let status = if ok { "True" } else { "False" };
    let current = seq
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == ALERTS_DELIVERED));
    if current.is_some_and(|c| c.status == status && c.reason == reason && c.message == message) {
        return Ok(());
    }
    let since = match current {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(jiff::Timestamp::now()),
    };
    let condition = Condition {
        type_: ALERTS_DELIVERED.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: seq.metadata.generation,
        last_transition_time: since,
    };
    let body = serde_json::json!({
        "apiVersion": "syncseq.dev/v1alpha1",
        "kind": "SyncSequence",
        "status": {"conditions": [condition]},
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}

/// The most recent keys seen, bounded.
#[derive(Default)]
struct RecentKeys {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentKeys {
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
    fn backoff_doubles_from_one_second() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (1..=4).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8]);
        assert_eq!(p.backoff(40), Duration::from_secs(300));
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        assert!(parse_url(b" https://hooks.slack.com/services/T0/B0/xyz\n").is_some());
        assert!(parse_url(b"http://127.0.0.1:8080/hook").is_some());
        assert!(parse_url(b"ftp://example.com/x").is_none());
        assert!(parse_url(b"/just/a/path").is_none());
        assert!(parse_url(b"not a url").is_none());
        assert!(parse_url(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn scrub_removes_the_url_and_its_token() {
        let url = "https://hooks.slack.com/services/T000/B000/SECRET";
        let text = format!(
            "error sending request for url ({url}): connect to hooks.slack.com failed; retry /services/T000/B000/SECRET"
        );
        let s = scrub(&text, url);
        assert!(!s.contains("SECRET"), "{s}");
        assert!(!s.contains("https://"), "{s}");
        let s = scrub("see http://other.example/path?token=abc for details", url);
        assert_eq!(s, "see <URL> for details");
    }

    #[test]
    fn the_condition_is_false_while_any_alert_fails() {
        let mut alerts = BTreeMap::new();
        alerts.insert(
            "a".to_string(),
            Outcome::Delivered {
                what: "RunFailed notification for run 1".into(),
            },
        );
        assert!(condition_for(&alerts).0);
        alerts.insert(
            "b".to_string(),
            Outcome::Failed {
                reason: "SecretNotFound",
                message: "Secret x not found".into(),
            },
        );
        let (ok, reason, message) = condition_for(&alerts);
        assert!(!ok);
        assert_eq!(reason, "SecretNotFound");
        assert_eq!(message, "Secret x not found");
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

    #[test]
    fn status_comparison_ignores_the_alerts_condition() {
        let planned = SyncSequenceStatus::default();
        let mut current = planned.clone();
        current.conditions.push(Condition {
            type_: ALERTS_DELIVERED.into(),
            status: "True".into(),
            reason: "Delivered".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(jiff::Timestamp::now()),
        });
        assert!(status_unchanged(Some(&current), &planned));
        current.book.last_run_number = Some(1);
        assert!(!status_unchanged(Some(&current), &planned));
        assert!(!status_unchanged(None, &planned));
    }

    /// A POST against a local listener: 2xx is delivered, 5xx retried, 4xx final; the URL
    /// never shows in the error.
    #[tokio::test]
    async fn post_classifies_answers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable", "404 Not Found"] {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 65536];
                let mut got = 0;
                loop {
                    let n = sock.read(&mut buf[got..]).await.unwrap();
                    got += n;
                    let text = String::from_utf8_lossy(&buf[..got]);
                    if let Some(h) = text.find("\r\n\r\n") {
                        let len: usize = text[..h]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if got >= h + 4 + len || n == 0 {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: 13\r\nconnection: close\r\n\r\nno_such_token"
                );
                sock.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let http = http_client(Arc::new(EgressPolicy::parse(&["127.0.0.1"]).unwrap()));
        let url: http::Uri = format!("http://{addr}/hook/T0/SECRET").parse().unwrap();
        let t = Duration::from_secs(5);
        let body = Bytes::from_static(b"{}");
        assert!(post(&http, &url, body.clone(), t).await.is_ok());
        let e = post(&http, &url, body.clone(), t).await.unwrap_err();
        assert!(e.retry);
        assert_eq!(
            e.message, "HTTP 503 Service Unavailable",
            "the body is not quoted"
        );
        let e = post(&http, &url, body.clone(), t).await.unwrap_err();
        assert!(!e.retry);
        assert!(e.message.starts_with("HTTP 404 Not Found"), "{}", e.message);
        // Nothing listens any more: a connection error, scrubbed.
        let e = post(&http, &url, body, t).await.unwrap_err();
        assert!(e.retry);
        let scrubbed = scrub(&e.message, &url.to_string());
        assert!(!scrubbed.contains("SECRET"), "{scrubbed}");
    }
}
