//! Per-object exponential backoff for failed reconciles.
//!
//! Only a delay lives here: losing it on a restart costs one early retry, never a decision.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(crate) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key` after one more failure: 1 s, 2 s, 4 s, ... up to 5 min.
    pub(crate) fn next(&self, key: &str) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        let delay = FIRST.saturating_mul(1u32 << (*n).min(16)).min(MAX);
        *n = n.saturating_add(1);
        delay
    }

    /// A reconcile of `key` succeeded.
    pub(crate) fn reset(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_object_up_to_the_cap_and_resets() {
        let b = Backoff::default();
        let delays: Vec<u64> = (0..12).map(|_| b.next("a").as_secs()).collect();
        assert_eq!(&delays[..4], &[1, 2, 4, 8]);
        assert_eq!(*delays.last().unwrap(), 300);
        assert_eq!(
            b.next("b").as_secs(),
            1,
            "another object has its own backoff"
        );
        b.reset("a");
        assert_eq!(b.next("a").as_secs(), 1);
    }
}
