//! The controller's client for the API server: kube's stack, wrapped so that no request can
//! stall a reconcile in silence and every attempt of a write passes the leader fence.
//!
//! From the outside in: [`retry`] retries what the API server says may pass (429, 503, 504),
//! honouring `Retry-After` up to a cap; [`deadline`] gives up on a request that got no answer
//! in time (watches and log streams excepted); the fence refuses writes when this replica may
//! not act. Because the fence is inside the retries, a write retried after a wait is checked
//! again. kube's own retry layer is off: it would wait as long as any `Retry-After` says, and
//! inside the fence.

mod deadline;
mod retry;

use std::time::Duration;

use crate::leader::{Fence, FenceLayer};

/// How many requests may wait for the inner stack at once (the buffer that lets the retry
/// layer clone its service).
const BUFFER: usize = 1024;

/// Builds a client from `config` whose writes pass `fence`, named `instance` in User-Agent.
pub(crate) fn build(
    config: &kube::Config,
    fence: Fence,
    instance: &str,
    timeout: Duration,
) -> Result<kube::Client, kube::Error> {
    let mut config = config.clone();
    config.default_retry = false;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::buffer::BufferLayer::new(BUFFER))
        .with_layer(&FenceLayer::new(fence, instance))
        .with_layer(&deadline::DeadlineLayer::new(timeout))
        .with_layer(&tower::retry::RetryLayer::new(retry::Throttled::default()))
        .build())
}
