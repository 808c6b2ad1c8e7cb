//! The HTTP endpoints next to the controller: `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the probes report.
#[derive(Default)]
pub struct Health {
    /// This replica holds the lease (always true without leader election).
    pub leading: AtomicBool,
    /// Leader election is running, so a standby is healthy while it waits.
    pub electing: AtomicBool,
    /// The leader's caches hold their initial lists.
    pub caches_synced: Arc<AtomicBool>,
}

impl Health {
    /// Ready: a standby that takes part in the election, or a leader whose caches have synced.
    /// Standbys must be Ready, or a rolling update and a PodDisruptionBudget would wait forever
    /// for the replica that cannot lead while the old leader holds the lease.
    pub fn ready(&self) -> bool {
        if self.leading.load(Ordering::SeqCst) {
            self.caches_synced.load(Ordering::SeqCst)
        } else {
            self.electing.load(Ordering::SeqCst)
        }
    }
}

struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds the address (port 0 picks a free port) and serves until the process ends. Returns the
/// bound address.
pub async fn serve(
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
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(AppState { metrics, health }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.health.ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
