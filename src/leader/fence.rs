//! The fence: every write this process makes to the API server passes through it, and it lets
//! writes through only while this replica may act — always without leader election, and with
//! it only until the renew deadline of the last successful lease renewal. A leader that was
//! paused (`SIGSTOP`, a long GC-like stall, a frozen VM) or cut off from the API server
//! therefore stops writing on its own clock, before a standby can acquire the lease.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Method, Request, header};
use tower::{BoxError, Layer, Service};

/// What a fenced write fails with.
#[derive(Debug, thiserror::Error)]
#[error("write refused: this replica does not hold the leader lease (lost or not renewed in time)")]
pub(crate) struct Fenced;

/// Whether this process may write now. Cloned handles share one state.
#[derive(Clone)]
pub(crate) struct Fence(Arc<State>);

struct State {
    /// The monotonic clock's origin for `until`. A monotonic clock runs on while the process
    /// is stopped, so a paused leader finds its fence closed when it resumes.
    origin: Instant,
    /// Nanoseconds after `origin` until which writes pass; [`CLOSED`] or [`ALWAYS`].
    until: AtomicU64,
}

const CLOSED: u64 = 0;
/// Closed by [`Fence::close`]: unlike [`CLOSED`] it is never opened again.
const CLOSED_FOR_GOOD: u64 = u64::MAX - 1;
const ALWAYS: u64 = u64::MAX;

impl Fence {
    /// Writes always pass (no leader election).
    pub(crate) fn open() -> Self {
        Self::with(ALWAYS)
    }

    /// Writes pass once [`Fence::open_until`] is called (a replica waiting for the lease).
    pub(crate) fn closed() -> Self {
        Self::with(CLOSED)
    }

    fn with(until: u64) -> Self {
        Fence(Arc::new(State {
            origin: Instant::now(),
            until: AtomicU64::new(until),
        }))
    }

    /// Lets writes pass until `deadline` (never moves an earlier close back open: once closed
    /// it stays closed).
    pub(crate) fn open_until(&self, deadline: Instant) {
        let nanos = deadline
            .saturating_duration_since(self.0.origin)
            .as_nanos()
            .clamp(1, u128::from(CLOSED_FOR_GOOD - 1));
        let nanos = u64::try_from(nanos).unwrap_or(CLOSED_FOR_GOOD - 1);
        let _ = self
            .0
            .until
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u != CLOSED_FOR_GOOD && u != ALWAYS).then_some(nanos.max(u))
            });
    }

    /// Stops all writes for good: the lease is lost or released.
    pub(crate) fn close(&self) {
        self.0.until.store(CLOSED_FOR_GOOD, Ordering::SeqCst);
    }

    /// Whether a write may go out now.
    pub(crate) fn allows(&self) -> bool {
        self.allows_at(Instant::now())
    }

    fn allows_at(&self, now: Instant) -> bool {
        match self.0.until.load(Ordering::SeqCst) {
            ALWAYS => true,
            CLOSED | CLOSED_FOR_GOOD => false,
            until => now.saturating_duration_since(self.0.origin).as_nanos() < u128::from(until),
        }
    }
}

/// A tower layer for the kube client: refuses writes the fence does not allow, and names the
/// replica in `User-Agent`, so the API server's audit log tells replicas apart.
#[derive(Clone)]
pub(crate) struct FenceLayer {
    fence: Fence,
    user_agent: HeaderValue,
}

impl FenceLayer {
    pub(crate) fn new(fence: Fence, instance: &str) -> Self {
        let agent = format!("syncseq/{} ({instance})", env!("CARGO_PKG_VERSION"));
        let user_agent =
            HeaderValue::from_str(&agent).unwrap_or_else(|_| HeaderValue::from_static("syncseq"));
        FenceLayer { fence, user_agent }
    }
}

impl<S> Layer<S> for FenceLayer {
    type Service = FencedService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FencedService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct FencedService<S> {
    inner: S,
    layer: FenceLayer,
}

/// Reads never change the cluster; everything else is a write.
fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S, B> Service<Request<B>> for FencedService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.headers_mut()
            .insert(header::USER_AGENT, self.layer.user_agent.clone());
        // Checked as the request enters the client stack; the fence closes a third of a lease
        // before a standby may acquire, which covers the time it takes to go out — unless the
        // process is stopped in between. What then arrives late is refused by the API server:
        // the writes that matter carry preconditions (see `controller::execute`).
        if is_write(req.method()) && !self.layer.fence.allows() {
            return Box::pin(std::future::ready(Err(Box::new(Fenced) as BoxError)));
        }
        let call = self.inner.call(req);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::ServiceExt;

    use super::*;

    fn request(method: Method) -> Request<()> {
        Request::builder()
            .method(method)
            .uri("/x")
            .body(())
            .unwrap()
    }

    /// The inner service answers with the User-Agent it was sent.
    async fn send(layer: &FenceLayer, method: Method) -> Result<String, BoxError> {
        let inner = tower::service_fn(|req: Request<()>| async move {
            Ok::<_, BoxError>(
                req.headers()[header::USER_AGENT]
                    .to_str()
                    .unwrap()
                    .to_string(),
            )
        });
        layer.layer(inner).oneshot(request(method)).await
    }

    #[tokio::test]
    async fn writes_pass_only_while_the_fence_is_open_and_reads_always() {
        let fence = Fence::closed();
        let layer = FenceLayer::new(fence.clone(), "replica-a");
        assert!(send(&layer, Method::GET).await.is_ok(), "a standby reads");
        let refused = send(&layer, Method::PATCH).await.unwrap_err();
        assert!(refused.is::<Fenced>(), "{refused}");

        fence.open_until(Instant::now() + Duration::from_secs(60));
        let agent = send(&layer, Method::POST).await.unwrap();
        assert!(
            agent.starts_with("syncseq/") && agent.ends_with("(replica-a)"),
            "{agent}"
        );

        fence.close();
        assert!(send(&layer, Method::DELETE).await.is_err());
        // Closed for good: a late renewal result does not reopen it.
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(!fence.allows());
        assert!(send(&layer, Method::PUT).await.is_err());
    }

    #[test]
    fn the_fence_closes_on_its_own_clock_at_the_deadline() {
        let fence = Fence::closed();
        let deadline = Instant::now() + Duration::from_secs(10);
        fence.open_until(deadline);
        assert!(fence.allows());
        assert!(fence.allows_at(deadline - Duration::from_millis(1)));
        assert!(
            !fence.allows_at(deadline),
            "at the deadline without a renewal"
        );
        assert!(
            !fence.allows_at(deadline + Duration::from_secs(600)),
            "resumed after a pause"
        );
        // A deadline in the past never opens it.
        let fence = Fence::closed();
        fence.open_until(Instant::now() - Duration::from_secs(1));
        assert!(!fence.allows());
        assert!(Fence::open().allows());
    }

    #[test]
    fn a_renewal_never_moves_the_deadline_back() {
        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(60));
        fence.open_until(Instant::now());
        assert!(fence.allows());
    }

    #[test]
    fn an_instance_name_that_is_not_a_header_value_still_gives_an_agent() {
        let layer = FenceLayer::new(Fence::open(), "bad\nname");
        assert_eq!(layer.user_agent, "syncseq");
    }
}
