//! Retrying what the API server says may pass: 429 (API priority and fairness, or a rate limit
//! in between), 503 and 504. `Retry-After` is honoured, but never beyond [`MAX_WAIT`]: a
//! misbehaving server or proxy asking for an hour must not hold a reconcile in silence. After
//! [`MAX_RETRIES`] the answer goes back to the caller, and a failed reconcile is reported and
//! retried with the object's backoff, where it shows.
//!
//! Timeouts and connection errors are not retried here: a write whose answer was lost may have
//! taken effect, and only the reconcile, which looks at the cluster again, can tell.

use std::time::Duration;

use http::{Request, Response, header};
use kube::client::Body;
use tower::BoxError;
use tower::retry::Policy;

/// Retries of one request.
pub(crate) const MAX_RETRIES: u32 = 5;
/// The longest wait between two attempts, whatever `Retry-After` says.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10);
/// The wait after the first answer without `Retry-After`; doubled after each further one.
const FIRST_WAIT: Duration = Duration::from_millis(200);

/// The retry policy; a fresh copy (attempt 0) is used for every request.
#[derive(Clone, Default)]
pub(crate) struct Throttled {
    retries: u32,
}

/// The wait before retry `retry` (1-based), given the answer's `Retry-After` (seconds).
pub(crate) fn wait(retry_after: Option<&http::HeaderValue>, retry: u32) -> Duration {
    let backoff = FIRST_WAIT.saturating_mul(1 << retry.saturating_sub(1).min(16));
    let asked = retry_after
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    asked.unwrap_or(backoff).min(MAX_WAIT)
}

impl<B> Policy<Request<Body>, Response<B>, BoxError> for Throttled {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<Body>,
        result: &mut Result<Response<B>, BoxError>,
    ) -> Option<Self::Future> {
        let answer = result.as_ref().ok()?;
        if !matches!(answer.status().as_u16(), 429 | 503 | 504) || self.retries >= MAX_RETRIES {
            return None;
        }
        self.retries += 1;
        let pause = wait(answer.headers().get(header::RETRY_AFTER), self.retries);
        tracing::debug!(status = answer.status().as_u16(), retry = self.retries, wait = ?pause, "API server asked to retry");
        Some(tokio::time::sleep(pause))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        // Only bodies held in memory can be sent again; the controller sends no other kind.
        let body = req.body().try_clone()?;
        let mut copy = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(body)
            .ok()?;
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use http::HeaderValue;
    use tower::{Layer, ServiceExt};

    use super::*;

    #[test]
    fn retry_after_is_honoured_up_to_the_cap_and_backoff_doubles_without_it() {
        let secs = |v: &str, retry| wait(Some(&HeaderValue::from_str(v).unwrap()), retry);
        assert_eq!(secs("2", 1), Duration::from_secs(2));
        assert_eq!(secs("3600", 1), MAX_WAIT, "an hour is cut to the cap");
        assert_eq!(secs(&u64::MAX.to_string(), 1), MAX_WAIT);
        // An HTTP date or garbage: the backoff.
        assert_eq!(
            secs("Wed, 21 Oct 2026 07:28:00 GMT", 2),
            Duration::from_millis(400)
        );
        let waits: Vec<_> = (1..=8).map(|r| wait(None, r).as_millis()).collect();
        assert_eq!(waits, vec![200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(wait(None, u32::MAX), MAX_WAIT);
    }

    /// Answers `status` (with `Retry-After: 3600`) to every request; counts them.
    async fn send(status: u16, calls: Arc<AtomicU32>) -> u16 {
        let inner = tower::service_fn(move |_: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, BoxError>(
                    Response::builder()
                        .status(status)
                        .header(header::RETRY_AFTER, "3600")
                        .body(())
                        .unwrap(),
                )
            }
        });
        let svc = tower::retry::RetryLayer::new(Throttled::default()).layer(inner);
        let req = Request::builder()
            .method("PATCH")
            .body(Body::from(b"{}".to_vec()))
            .unwrap();
        svc.oneshot(req).await.unwrap().status().as_u16()
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_requests_are_retried_a_bounded_number_of_times_with_bounded_waits() {
        let calls = Arc::new(AtomicU32::new(0));
        let started = tokio::time::Instant::now();
        assert_eq!(
            send(429, calls.clone()).await,
            429,
            "the last answer reaches the caller"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1 + MAX_RETRIES);
        assert_eq!(started.elapsed(), MAX_WAIT * MAX_RETRIES);
    }

    #[tokio::test(start_paused = true)]
    async fn other_answers_are_not_retried() {
        for status in [200, 409, 500, 422] {
            let calls = Arc::new(AtomicU32::new(0));
            assert_eq!(send(status, calls.clone()).await, status);
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{status}");
        }
    }
}
