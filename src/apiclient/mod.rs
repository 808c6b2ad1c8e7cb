//! The controller's client for the API server: kube's stack, wrapped so that no request can
//! stall a reconcile in silence and every attempt of a write passes the leader fence.
//!
//! From the outside in: [`retry`] retries what the API server says may pass (429, 503, 504),
//! honouring `Retry-After` up to a cap; [`places`] holds requests beyond a number in flight,
//! due work first; [`deadline`] gives up on a request that got no answer in time (watches and
//! log streams excepted); the fence refuses writes when this replica may not act. Because the
//! fence is inside the retries, a write retried after a wait is checked again. kube's own retry
//! layer is off: it would wait as long as any `Retry-After` says, and inside the fence.
//!
//! The limit matters at scale: kube's client speaks HTTP/1.1, one connection per request in
//! flight, and a thousand runs triggered at once would otherwise open a thousand TLS
//! connections (each with its buffers: the controller went over 256 MiB that way) and ask the
//! API server to serve them all at once. A request holds its place until its answer's headers
//! arrive, so a watch holds one only while it starts.

mod deadline;
mod places;
mod retry;

use std::time::Duration;

use crate::leader::{Fence, FenceLayer};

/// How many requests may wait for the inner stack at once (the buffer that lets the retry
/// layer clone its service).
const BUFFER: usize = 1024;

/// How long requests may take and how many may be in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The deadline of a request other than a watch or a followed log.
    pub timeout: Duration,
    /// Requests in flight at once; more wait for a place.
    pub in_flight: usize,
}

/// Builds a client from `config` whose writes pass `fence`, named `instance` in User-Agent.
pub(crate) fn build(
    config: &kube::Config,
    fence: Fence,
    instance: &str,
    limits: Limits,
) -> Result<kube::Client, kube::Error> {
    let mut config = config.clone();
    config.default_retry = false;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::buffer::BufferLayer::new(BUFFER))
        .with_layer(&FenceLayer::new(fence, instance))
        .with_layer(&deadline::DeadlineLayer::new(limits.timeout))
        .with_layer(&places::PlacesLayer::new(limits.in_flight))
        .with_layer(&tower::retry::RetryLayer::new(retry::Throttled::default()))
        .build())
}
