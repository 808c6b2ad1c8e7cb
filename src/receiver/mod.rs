//! The webhook endpoint: signed deliveries from dbt Cloud, Fivetran or any sender with a
//! shared secret, recorded on their `WebhookReceiver`, whose status the objects that run
//! after it read (`spec.after`).
//!
//! It runs in every replica, standbys included, so that a Service can send a delivery to any
//! of them: recording it is a compare-and-swap on the receiver's status, safe from anywhere,
//! and starting the runs it asks for is the leader's work. Each request goes, in order:
//! 404 for a path no receiver has (503 while this replica has not listed the receivers yet);
//! 429 beyond the receiver's rate; 413 for a body over [`MAX_BODY_BYTES`] (408 for one that
//! takes over ten seconds to arrive); 503 while the receiver's Secret cannot be read; 401 for
//! a missing or wrong signature; 400 (and a Warning Event) for a body that cannot be read;
//! 200 "ignored" for one about something the receiver does not follow; then the delivery is
//! recorded, 200 "accepted" or "duplicate". The API server is never waited on longer than the
//! configured timeout (503, and the sender retries, which the duplicate check makes safe).
//! Neither the secret nor the body is ever logged.

mod limit;
mod payload;
mod record;
mod signature;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::{Readable, WebhookReceiver};
use crate::cluster::events::{self, Reporter};
use crate::engine::Event;
use crate::metrics::Metrics;

pub(crate) use limit::Rate;
// How a sender signs a delivery, for the senders outside the crate (the integration tests').

/// The largest body taken: dbt Cloud's and Fivetran's deliveries are a few hundred bytes.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a sender may take to send its body: a connection that trickles it is cut (408).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a receiver's deliveries are posted: `/hook/` and 32 hex digits of a hash of its UID,
/// which only those who may read the receiver know. Not derived from the secret, because dbt
/// Cloud makes the secret only after it has been given the URL.
pub fn webhook_path(uid: &str) -> String {
    format!("/hook/{}", digest(uid))
}

fn digest(uid: &str) -> String {
    let hash = Sha256::new()
        .chain_update(b"syncseq.dev/webhook/")
        .chain_update(uid.as_bytes())
        .finalize();
    hex::encode(&hash[..16])
}

/// Settings of the endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Where to listen (port 0 picks a free port).
    pub address: String,
    /// Serve only the receivers of this namespace; all namespaces when unset.
    pub namespace: Option<String>,
    /// Deliveries each receiver takes per second, sustained, and in a burst.
    pub rate: Rate,
    /// The longest a request waits on the API server.
    pub api_timeout: Duration,
}

struct Endpoint {
    client: Client,
    receivers: Store<WebhookReceiver>,
    /// The path digest of each receiver, from the watch.
    paths: RwLock<HashMap<String, ObjectRef<WebhookReceiver>>>,
    /// Whether the watch has listed every receiver: until then an unknown path may be one
    /// not seen yet, and is answered 503 (the sender retries) rather than 404.
    listed: AtomicBool,
    /// One recording at a time per receiver in this replica: concurrent deliveries would
    /// otherwise conflict on its resourceVersion and retry each other out.
    recording: std::sync::Mutex<HashMap<ObjectRef<WebhookReceiver>, Arc<tokio::sync::Mutex<()>>>>,
    limiter: limit::Limiter,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    api_timeout: Duration,
}

/// Starts watching the receivers and serving their deliveries until the process ends.
/// Returns the bound address.
pub(crate) async fn serve(
    client: Client,
    config: Config,
    reporter: Reporter,
    metrics: Arc<Metrics>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(&config.address)
        .await
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.address))?;
    let bound = listener.local_addr()?;
    let (store, writer) = reflector::store();
    let endpoint = Arc::new(Endpoint {
        client: client.clone(),
        receivers: store,
        paths: RwLock::default(),
        listed: AtomicBool::new(false),
        recording: Default::default(),
        limiter: limit::Limiter::new(config.rate),
        reporter,
        metrics,
        api_timeout: config.api_timeout,
    });
    // Receivers are read one by one: one this release cannot read is left out (the leader's
    // controller says so on it; this endpoint may run on a standby and writes nothing).
    let api: Api<Readable<WebhookReceiver>> = match &config.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let watched = endpoint.clone();
    let set_aside = crate::cluster::unreadable::SetAside::log_only();
    tokio::spawn(async move {
        watcher(api, watcher::Config::default())
            .default_backoff()
            .try_filter_map(set_aside.filter())
            .reflect(writer)
            .for_each(|event| {
                match event {
                    Ok(event) => watched.index(&event),
                    Err(e) => tracing::warn!(error = %e, "WebhookReceiver watch failed; retrying"),
                }
                futures::future::ready(())
            })
            .await;
    });
    let app = Router::new()
        .route("/hook/{digest}", post(deliver))
        .with_state(endpoint);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "webhook server stopped");
        }
    });
    Ok(bound)
}

impl Endpoint {
    /// Keeps the path index in step with the watch (the store has applied the event already).
    fn index(&self, event: &watcher::Event<WebhookReceiver>) {
        let mut paths = self.paths.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(r) | watcher::Event::InitApply(r) => {
                if let Some(uid) = r.uid() {
                    paths.insert(digest(&uid), ObjectRef::from(r));
                }
            }
            watcher::Event::Delete(r) => {
                if let Some(uid) = r.uid() {
                    paths.remove(&digest(&uid));
                }
                self.recording_lock().remove(&ObjectRef::from(r));
            }
            watcher::Event::InitDone => {
                // A relist: receivers deleted while the watch was down are gone from the store.
                paths.retain(|_, at| self.receivers.get(at).is_some());
                self.recording_lock()
                    .retain(|at, _| self.receivers.get(at).is_some());
                self.limiter.forget_idle();
                self.listed.store(true, Ordering::SeqCst);
            }
            watcher::Event::Init => {}
        }
    }

    fn recording_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<WebhookReceiver>, Arc<tokio::sync::Mutex<()>>>>
    {
        self.recording.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock that orders the recordings of one receiver in this replica.
    fn recording_of(&self, receiver: &ObjectRef<WebhookReceiver>) -> Arc<tokio::sync::Mutex<()>> {
        self.recording_lock()
            .entry(receiver.clone())
            .or_default()
            .clone()
    }

    fn count(&self, receiver: Option<&WebhookReceiver>, outcome: &'static str) {
        self.metrics.webhook_delivery(
            receiver
                .and_then(|r| r.namespace())
                .as_deref()
                .unwrap_or(""),
            receiver.map(|r| r.name_any()).as_deref().unwrap_or(""),
            outcome,
        );
    }

    /// Records an Event about `receiver` in the background: the sender's answer does not wait.
    fn publish(&self, receiver: &WebhookReceiver, event: Event) {
        let (client, reporter) = (self.client.clone(), self.reporter.clone());
        let regarding = receiver.object_ref(&());
        let timeout = self.api_timeout;
        tokio::spawn(async move {
            let sent = events::publish(&client, &reporter, &regarding, &event);
            let error = match tokio::time::timeout(timeout, sent).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_string(),
            };
            tracing::warn!(receiver = ?regarding.name, %error, "could not record an Event");
        });
    }
}

/// An answer: a status and a one-line JSON body (`{"result": ..., "detail": ...}`).
fn answer(code: StatusCode, result: &str, detail: &str) -> Response {
    let body = serde_json::json!({ "result": result, "detail": detail });
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn deliver(
    State(endpoint): State<Arc<Endpoint>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let found = endpoint
        .paths
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&digest)
        .cloned()
        .and_then(|at| endpoint.receivers.get(&at));
    let Some(receiver) = found else {
        if !endpoint.listed.load(Ordering::SeqCst) {
            endpoint.count(None, "unavailable");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "starting: the receivers are not listed yet; retry",
            );
        }
        endpoint.count(None, "not_found");
        return answer(
            StatusCode::NOT_FOUND,
            "not_found",
            "no receiver has this path",
        );
    };
    let key = ObjectRef::from(receiver.as_ref());
    if let Err(wait) = endpoint.limiter.check(&key) {
        endpoint.count(Some(&receiver), "rate_limited");
        let mut refused = answer(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many deliveries to this receiver; retry later",
        );
        refused.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            wait.as_secs().max(1).into(),
        );
        return refused;
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES))
        .await
    {
        Ok(Ok(b)) => b,
        Err(_) => {
            endpoint.count(Some(&receiver), "timed_out");
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                "timed_out",
                "the body did not arrive in time",
            );
        }
        Ok(Err(_)) => {
            endpoint.count(Some(&receiver), "too_large");
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("the body is over {MAX_BODY_BYTES} bytes, or was cut off"),
            );
        }
    };
    let work = accept(&endpoint, &receiver, &headers, &body);
    match tokio::time::timeout(endpoint.api_timeout, work).await {
        Ok(response) => response,
        Err(_) => {
            endpoint.count(Some(&receiver), "unavailable");
            tracing::warn!(namespace = ?receiver.namespace(), receiver = %receiver.name_any(),
                "the API server did not answer in time; the sender will retry");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the delivery could not be recorded in time; retry",
            )
        }
    }
}

/// Checks the signature, reads the body and records the delivery.
async fn accept(
    endpoint: &Endpoint,
    receiver: &WebhookReceiver,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let ns = receiver.namespace().unwrap_or_default();
    let name = receiver.name_any();
    let secret = match read_secret(&endpoint.client, &ns, receiver).await {
        Ok(secret) => secret,
        Err(problem) => {
            endpoint.count(Some(receiver), "unavailable");
            tracing::warn!(namespace = %ns, receiver = %name, %problem, "cannot check deliveries");
            // The sender learns nothing about the Secret.
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the receiver is not ready; see its Ready condition",
            );
        }
    };
    if let Err(refused) = signature::verify(receiver.spec.type_, headers, body, &secret) {
        endpoint.count(Some(receiver), "bad_signature");
        tracing::info!(namespace = %ns, receiver = %name, %refused, "delivery refused");
        return answer(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            &refused.to_string(),
        );
    }
    let incoming = match payload::read(&receiver.spec, headers, body) {
        Ok(payload::Reading::Delivery(incoming)) => incoming,
        Ok(payload::Reading::Ignored(why)) => {
            endpoint.count(Some(receiver), "ignored");
            tracing::debug!(namespace = %ns, receiver = %name, %why, "delivery ignored");
            return answer(StatusCode::OK, "ignored", &why);
        }
        Err(bad) => {
            endpoint.count(Some(receiver), "bad_payload");
            endpoint.publish(
                receiver,
                Event {
                    warning: true,
                    reason: crate::engine::reasons::BAD_PAYLOAD,
                    action: "Receive",
                    note: format!("a signed delivery was refused: {bad}"),
                    job: None,
                },
            );
            return answer(StatusCode::BAD_REQUEST, "bad_payload", &bad);
        }
    };
    let uid = receiver.uid().unwrap_or_default();
    let api = Api::<WebhookReceiver>::namespaced(endpoint.client.clone(), &ns);
    let order = endpoint.recording_of(&ObjectRef::from(receiver));
    let recorded = {
        let _turn = order.lock().await;
        record::record(&api, &name, &uid, &incoming).await
    };
    match recorded {
        Ok(record::Recorded::New) => {
            endpoint.count(Some(receiver), "accepted");
            tracing::info!(namespace = %ns, receiver = %name, delivery = %incoming.id, "delivery accepted");
            endpoint.publish(
                receiver,
                Event {
                    warning: false,
                    reason: crate::engine::reasons::DELIVERY_ACCEPTED,
                    action: "Receive",
                    note: format!(
                        "{} ({:?}): delivery {}",
                        incoming.summary, incoming.phase, incoming.id
                    ),
                    job: None,
                },
            );
            answer(StatusCode::OK, "accepted", &incoming.id)
        }
        Ok(record::Recorded::Duplicate) => {
            endpoint.count(Some(receiver), "duplicate");
            answer(StatusCode::OK, "duplicate", &incoming.id)
        }
        Err(record::RecordError::Gone) => {
            endpoint.count(Some(receiver), "not_found");
            answer(
                StatusCode::NOT_FOUND,
                "not_found",
                "no receiver has this path",
            )
        }
        Err(e) => {
            endpoint.count(Some(receiver), "unavailable");
            tracing::warn!(namespace = %ns, receiver = %name, error = %e, "could not record a delivery");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the delivery could not be recorded; retry",
            )
        }
    }
}

/// Why a receiver's secret cannot be used, for its Ready condition and the logs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretProblem {
    #[error("Secret {0} not found")]
    NotFound(String),
    #[error("Secret {0} has no key {1}, or it is empty")]
    NoKey(String, String),
    #[error("syncseq may not read Secret {0} (with the chart: list it in receiver.secrets)")]
    Forbidden(String),
    #[error("reading Secret {0}: {1}")]
    Api(String, kube::Error),
}

/// The signing secret of `receiver`, from a Secret of its own namespace. Surrounding
/// whitespace is dropped: a Secret made with `--from-file` often ends in a newline.
pub(crate) async fn read_secret(
    client: &Client,
    namespace: &str,
    receiver: &WebhookReceiver,
) -> Result<Vec<u8>, SecretProblem> {
    let r = &receiver.spec.secret_ref;
    let secret = match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&r.name)
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return Err(SecretProblem::NotFound(r.name.clone())),
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Err(SecretProblem::Forbidden(r.name.clone()));
        }
        Err(e) => return Err(SecretProblem::Api(r.name.clone(), e)),
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|v| v.0.trim_ascii().to_vec())
        .filter(|v| !v.is_empty());
    value.ok_or_else(|| SecretProblem::NoKey(r.name.clone(), r.key.clone()))
}
