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

/// Streams the text as it is encoded (see `metrics::stream`).
async fn metrics_handler(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        axum::body::Body::from_stream(encoded(state.metrics.clone(), format)),
    )
}

/// The text in chunks, encoded on a blocking thread: encoding 10,000 objects' series takes
/// tens of milliseconds, which would hold up a runtime worker.
fn encoded(
    metrics: Arc<Metrics>,
    format: Format,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks::new(sender);
        // An error is the scraper gone: nothing is left to send to.
        if metrics.encode_into(format, &mut out).is_ok() {
            let _ = out.finish();
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok(chunk), receiver))
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A scrape that nobody reads yet while reconciles create series: the encoder holds a
    /// family's lock as it writes it, and every runtime worker (here the one) waits for that
    /// lock in `object_seen`. An encoder that waited for the body, which needs a worker, held
    /// them all until its send timed out, the scrape cut short (here after 5 s; in a
    /// controller, for good); this one runs to its end. Timed by a thread of its own, as a
    /// runtime that hangs fires no timers.
    #[test]
    fn a_scrape_not_read_yet_never_holds_up_reconciles_that_create_series() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let text = runtime.block_on(async {
                let metrics = Arc::new(Metrics::default());
                for i in 0..10_000 {
                    metrics.object_seen("SyncSequence", "revops", &format!("seq-{i}"), ["a"]);
                }
                let body = encoded(metrics.clone(), Format::OpenMetrics);
                // New objects' first reconciles, on the worker, while the body waits.
                for i in 0..2_000 {
                    metrics.object_seen("SyncSequence", "revops", &format!("new-{i}"), ["a"]);
                }
                let chunks: Vec<_> = futures::StreamExt::collect(body).await;
                let text: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap()).collect();
                String::from_utf8(text).unwrap()
            });
            let _ = done.send(text);
        });
        let text = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the scrape and the reconciles finish; the runtime hung");
        assert!(text.len() > 10 * 64 * 1024, "{}", text.len());
        assert!(text.ends_with("# EOF\n"), "{}", &text[text.len() - 200..]);
    }

    /// The streamed body is the whole text, ending as OpenMetrics ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_served_whole() {
        let metrics = Arc::new(Metrics::default());
        for i in 0..2_000 {
            metrics.object_seen("SyncSequence", "revops", &format!("seq-{i}"), ["a", "b"]);
        }
        let health = Arc::new(Health::new(std::time::Duration::from_secs(60)));
        let address = serve("127.0.0.1:0", metrics.clone(), health).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\naccept: application/openmetrics-text\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response);
        tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .unwrap()
            .unwrap();
        let response = String::from_utf8(response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{}", &response[..200]);
        assert!(
            response.contains("transfer-encoding: chunked"),
            "{}",
            &response[..300]
        );
        // Over 64 KB: sent in several chunks, each framed with its size, then a last empty one.
        let expected = metrics.encode(Format::OpenMetrics);
        assert!(expected.len() > 3 * 64 * 1024, "{}", expected.len());
        assert!(response.contains("# EOF\n"));
        let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
        let mut unchunked = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                break;
            }
            unchunked.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        assert_eq!(unchunked, expected);
    }
}
