//! Which watch events of an object are worth a reconcile, given the controller's own writes.
//!
//! After the controller writes a status, two kinds of reconcile would only repeat work:
//!
//! - one that meets a version the last written decision was made on, or one the controller's
//!   own writes passed on the way (a new run's first status write, a claim written just
//!   before): a Job or Pod event can start it before the watch has delivered the write, and
//!   deciding again would repeat that decision's Events. It waits for the watch event of the
//!   write instead, and this makes sure that event wakes it.
//! - one woken by the watch event of the write itself: the decision it records was made
//!   already, and a plan applied in full leaves nothing for the next decision unless it asked
//!   to be woken (the engine's model test checks that). That event updates the cache and
//!   wakes nobody — unless a reconcile of the first kind is waiting for it.
//!
//! Likewise the first watch event of a Job a sequence's reconcile just created: that reconcile
//! records the Job in the status it writes next, and its claim recorded it on its Sync — which
//! holds while the claim is young, so the Sync is spared that event only when it comes soon
//! after the claim ([`Created::spares_sync`]).
//!
//! All of it lives in this process only: after a restart, or for another replica, every event
//! wakes its reconcile, which costs a reconcile and decides nothing twice (status writes are
//! conditional on the version they were decided on).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many passed versions are kept per object.
const BEHIND_KEPT: usize = 4;

#[derive(Default)]
pub(crate) struct Freshness {
    entries: Mutex<HashMap<String, Entry>>,
    /// Jobs of sequences this process created, until their first watch event: the reconcile
    /// that created one records it in status, so that event need not wake its owner.
    created: Mutex<HashMap<(String, String), Instant>>,
}

/// The first watch event of a Job this process created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Created {
    /// When the Sync was claimed for it (at the latest).
    claimed: Instant,
}

/// How long after its claim a created Job's first event still finds the Sync as the claim
/// left it: the Sync's reconcile keeps the claim's running record for `CLAIM_YOUNG`, and after
/// that decides from the Jobs it sees. Five seconds short of that, for the reconcile in flight.
const SPARES_SYNC_FOR: Duration = Duration::from_secs(25);

impl Created {
    /// Whether the event need not wake the Job's Sync.
    pub(crate) fn spares_sync(&self) -> bool {
        self.claimed.elapsed() < SPARES_SYNC_FOR
    }
}

/// At most this many created Jobs are remembered (a Job whose events never came is
/// forgotten with the rest: its owner is woken once more than needed).
const CREATED_KEPT: usize = 10_000;

#[derive(Default, Debug)]
struct Entry {
    /// Versions older than `written` that a decision was made on or that the controller's own
    /// writes produced on the way, newest last.
    behind: Vec<String>,
    /// The version the controller's last write produced.
    written: Option<String>,
    /// A reconcile met a version in `behind` and waits for the watch event of `written`.
    owed: bool,
}

/// What a reconcile met.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Met {
    /// A version to decide on.
    Current,
    /// A version already decided on or passed: the watch event of the newer one will wake it.
    Behind,
    /// A version already passed, while the cache has moved on since this reconcile's copy was
    /// taken: decide again now, on the newer copy.
    Moved,
}

impl Freshness {
    /// Records the controller's writes to the object `key`, made on `from` and producing the
    /// versions `produced`, in order.
    pub(crate) fn wrote(&self, key: &str, from: Option<&str>, produced: &[String]) {
        let Some((last, between)) = produced.split_last() else {
            return;
        };
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(key.to_string()).or_default();
        let continues = from.is_some_and(|from| {
            entry.written.as_deref() == Some(from) || entry.behind.iter().any(|b| b == from)
        });
        let passed = entry.written.take().filter(|_| continues);
        if !continues {
            entry.behind.clear();
        }
        // (A write recorded again — a new run's first write is recorded as soon as it lands,
        // and again with the rest — is not behind itself.)
        for version in passed
            .iter()
            .map(String::as_str)
            .chain(from)
            .chain(between.iter().map(String::as_str))
        {
            if version != last && !entry.behind.iter().any(|b| b == version) {
                entry.behind.push(version.to_string());
            }
        }
        let excess = entry.behind.len().saturating_sub(BEHIND_KEPT);
        entry.behind.drain(..excess);
        entry.written = Some(last.clone());
    }

    /// What a reconcile of `key` on `version` meets. `cached` reads the version the cache
    /// holds now: the watch event of a newer one may already have passed [`Freshness::wakes`].
    pub(crate) fn met(
        &self,
        key: &str,
        version: Option<&str>,
        cached: impl FnOnce() -> Option<String>,
    ) -> Met {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some((entry, version)) = map.get_mut(key).zip(version) else {
            return Met::Current;
        };
        if !entry.behind.iter().any(|b| b == version) {
            return Met::Current;
        }
        // Read under the lock: `wakes` runs after the cache took the event, so either it sees
        // `owed` or this sees the newer version.
        match cached() {
            Some(now) if now != version => Met::Moved,
            _ => {
                entry.owed = true;
                Met::Behind
            }
        }
    }

    /// Whether the watch event of `key` at `version` (already in the cache) wakes its
    /// reconcile: not when it is the controller's own last write and no reconcile waits for it.
    pub(crate) fn wakes(&self, key: &str, version: Option<&str>) -> bool {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = map.get_mut(key) else {
            return true;
        };
        if version.is_some() && version == entry.written.as_deref() && !entry.owed {
            return false;
        }
        entry.owed = false;
        true
    }

    /// Records that this process created the Job `name` of a sequence, claimed at `claimed`.
    pub(crate) fn created_job(&self, namespace: &str, name: &str, claimed: Instant) {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if created.len() >= CREATED_KEPT {
            created.clear();
        }
        created.insert((namespace.to_string(), name.to_string()), claimed);
    }

    /// Some when the Job `name` was created by this process and this is the first of its
    /// watch events since (every later one wakes its owner).
    pub(crate) fn first_event_of_created_job(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Created> {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), name.to_string()))
            .map(|claimed| Created { claimed })
    }

    /// Forgets a deleted object.
    pub(crate) fn forget(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The key of an object in [`Freshness`]: kind, namespace and name.
pub(super) fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_decided_on_version_waits_and_the_written_one_wakes_nobody() {
        let f = Freshness::default();
        assert_eq!(f.met("a", Some("1"), || None), Met::Current);
        assert!(f.wakes("a", Some("1")));
        f.wrote("a", Some("1"), &versions(&["2"]));
        assert!(!f.wakes("a", Some("2")), "the write's own event");
        assert_eq!(f.met("a", Some("2"), || Some("2".into())), Met::Current);
        assert!(f.wakes("a", Some("3")), "someone else's write");
        assert!(f.wakes("b", Some("2")));
    }

    #[test]
    fn a_write_recorded_twice_is_not_behind_itself() {
        let f = Freshness::default();
        // A new run's first write, recorded as it lands and again when the reconcile is done
        // (with the write that recorded its Jobs, or alone when none was created).
        f.wrote("a", Some("1"), &versions(&["2"]));
        f.wrote("a", Some("1"), &versions(&["2"]));
        assert_eq!(
            f.met("a", Some("2"), || Some("2".into())),
            Met::Current,
            "a reconcile on the written version decides (it used to wait for ever)"
        );
        assert_eq!(f.met("a", Some("1"), || Some("1".into())), Met::Behind);
        f.wrote("a", Some("1"), &versions(&["2", "3"]));
        assert_eq!(f.met("a", Some("2"), || Some("2".into())), Met::Behind);
        assert_eq!(f.met("a", Some("3"), || Some("3".into())), Met::Current);
    }

    #[test]
    fn a_reconcile_that_met_an_old_version_is_woken_by_the_write() {
        let f = Freshness::default();
        f.wrote("a", Some("1"), &versions(&["2"]));
        assert_eq!(f.met("a", Some("1"), || Some("1".into())), Met::Behind);
        assert!(f.wakes("a", Some("2")), "owed to the waiting reconcile");
        assert!(!f.wakes("a", Some("2")), "once");
    }

    #[test]
    fn a_reconcile_on_an_old_copy_after_the_cache_moved_decides_now() {
        let f = Freshness::default();
        f.wrote("a", Some("1"), &versions(&["2"]));
        assert!(!f.wakes("a", Some("2")));
        assert_eq!(f.met("a", Some("1"), || Some("2".into())), Met::Moved);
    }

    #[test]
    fn versions_passed_on_the_way_wait_too() {
        let f = Freshness::default();
        // A claim (1 → 2), then a new run's two status writes on it (2 → 3 → 4).
        f.wrote("a", Some("1"), &versions(&["2"]));
        f.wrote("a", Some("2"), &versions(&["3", "4"]));
        for old in ["1", "2", "3"] {
            assert_eq!(
                f.met("a", Some(old), || Some(old.into())),
                Met::Behind,
                "{old}"
            );
        }
        assert_eq!(f.met("a", Some("4"), || Some("4".into())), Met::Current);
        // A write on a version not in the chain starts a new one.
        f.wrote("a", Some("9"), &versions(&["10"]));
        assert_eq!(f.met("a", Some("3"), || Some("3".into())), Met::Current);
        assert_eq!(f.met("a", Some("9"), || Some("9".into())), Met::Behind);
    }

    #[test]
    fn only_the_first_event_of_a_created_job_is_known() {
        let f = Freshness::default();
        f.created_job("ns", "crm-1-a-1-x", Instant::now());
        assert!(
            f.first_event_of_created_job("other", "crm-1-a-1-x")
                .is_none()
        );
        let first = f.first_event_of_created_job("ns", "crm-1-a-1-x").unwrap();
        assert!(first.spares_sync());
        assert!(f.first_event_of_created_job("ns", "crm-1-a-1-x").is_none());
        // Long after its claim, the event wakes the Sync: its reconcile may have let the
        // claim's record go meanwhile.
        let long_ago = Instant::now().checked_sub(SPARES_SYNC_FOR).unwrap();
        f.created_job("ns", "crm-2-a-1-x", long_ago);
        assert!(
            !f.first_event_of_created_job("ns", "crm-2-a-1-x")
                .unwrap()
                .spares_sync()
        );
    }

    #[test]
    fn forgetting_wakes_everything_again() {
        let f = Freshness::default();
        f.wrote("a", Some("1"), &versions(&["2"]));
        f.forget("a");
        assert!(f.wakes("a", Some("2")));
        assert_eq!(f.met("a", Some("1"), || None), Met::Current);
        f.wrote("a", Some("1"), &[]);
        assert!(f.wakes("a", Some("1")), "no write, nothing recorded");
    }
}
