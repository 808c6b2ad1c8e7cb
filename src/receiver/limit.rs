//! Each receiver's rate limit: a token bucket per receiver (governor's GCRA), in this
//! replica's memory. It protects the controller and the API server from a flood, which only
//! needs to be approximately right; what must be exact (each delivery once) is in the API
//! server.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use kube::runtime::reflector::ObjectRef;

use crate::api::WebhookReceiver;

/// Deliveries per second, sustained, and how many may come at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

pub(crate) struct Limiter {
    buckets: DefaultKeyedRateLimiter<ObjectRef<WebhookReceiver>>,
    clock: DefaultClock,
}

impl Limiter {
    pub(crate) fn new(rate: Rate) -> Self {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        Limiter {
            buckets: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one delivery of `receiver`, or says how long until the next one is taken.
    pub(crate) fn check(&self, receiver: &ObjectRef<WebhookReceiver>) -> Result<(), Duration> {
        self.buckets
            .check_key(receiver)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the buckets that are full again, so deleted receivers cost nothing.
    pub(crate) fn forget_idle(&self) {
        self.buckets.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_limit_is_refused_for_that_receiver_only() {
        let limiter = Limiter::new(Rate {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(5).unwrap(),
        });
        let a = ObjectRef::new("a").within("ns");
        let b = ObjectRef::new("b").within("ns");
        let taken = (0..100).filter(|_| limiter.check(&a).is_ok()).count();
        assert_eq!(taken, 5);
        let wait = limiter.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check(&b).is_ok());
    }
}
