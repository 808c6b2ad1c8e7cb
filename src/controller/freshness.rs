//! Skipping decisions on a cached object older than our own last status write.
//!
//! After the controller writes a status, a Job or Pod event can start the next reconcile
//! before the watch has delivered that write, so the cache still holds the object the previous
//! decision was made on. Deciding again on it would repeat that decision's Events. The
//! resourceVersion a decision was made on is remembered after a successful write; a reconcile
//! that meets the same resourceVersion again waits for the watch event of the write instead.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Freshness {
    decided_on: Mutex<HashMap<String, String>>,
}

impl Freshness {
    /// Whether the cached object (`key`, `resource_version`) is the one the last written
    /// decision was already made on.
    pub fn is_stale(&self, key: &str, resource_version: Option<&str>) -> bool {
        let map = self.decided_on.lock().unwrap_or_else(|e| e.into_inner());
        resource_version.is_some_and(|rv| map.get(key).is_some_and(|seen| seen == rv))
    }

    /// Records that a decision made on `resource_version` was written.
    pub fn wrote(&self, key: &str, resource_version: Option<&str>) {
        let mut map = self.decided_on.lock().unwrap_or_else(|e| e.into_inner());
        match resource_version {
            Some(rv) => {
                map.insert(key.to_string(), rv.to_string());
            }
            None => {
                map.remove(key);
            }
        }
    }

    /// Forgets a deleted object.
    pub fn forget(&self, key: &str) {
        self.decided_on
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_version_a_written_decision_was_made_on_is_stale() {
        let f = Freshness::default();
        assert!(!f.is_stale("ns/a", Some("1")));
        f.wrote("ns/a", Some("1"));
        assert!(f.is_stale("ns/a", Some("1")));
        assert!(
            !f.is_stale("ns/a", Some("2")),
            "the write's own watch event brings a newer version"
        );
        assert!(!f.is_stale("ns/b", Some("1")));
        f.forget("ns/a");
        assert!(!f.is_stale("ns/a", Some("1")));
    }
}
