//! The HTTP endpoints next to the controller: `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::health::Health;
use crate::metrics::{Chunks, Format, Metrics};

struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds the address (port 0 picks a free port) and serves until the process ends. Returns the
/// bound address.
pub(crate) async fn serve(
    address: &str,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("binding {address}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(AppState { metrics, health }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

/// Streams the text as it is encoded (see `metrics::stream`), on a blocking thread: encoding
/// 10,000 objects' series takes tens of milliseconds, which would hold up a runtime worker.
async fn metrics_handler(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    let (sender, receiver) = tokio::sync::mpsc::channel(crate::metrics::CHUNKS_IN_FLIGHT);
    let metrics = state.metrics.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks::new(sender, runtime);
        // An error is the scraper gone (or stalled): the body ends short, which it sees.
        if metrics.encode_into(format, &mut out).is_ok() {
            let _ = out.finish();
        }
    });
    let chunks = futures::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), receiver))
    });
    (
        [(header::CONTENT_TYPE, format.content_type())],
        axum::body::Body::from_stream(chunks),
    )
}

async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.health.problem(Instant::now()) {
        None => (StatusCode::OK, "ok".to_string()),
        Some(problem) => (StatusCode::SERVICE_UNAVAILABLE, problem),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.health.ready(Instant::now()) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
