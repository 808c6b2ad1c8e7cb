//! What the probes report, told truthfully: `/readyz` is false until the leader's caches hold
//! their initial lists, and `/healthz` fails when a watch has been failing (missing RBAC, a
//! missing CRD, an API server that refuses) or a reconcile has been running for longer than a
//! bound — a replica in either state does no useful work, and a restart at least makes that
//! visible (`CrashLoopBackOff`, restarts) instead of leaving it silently stuck.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a watch may fail without a success before the replica is unhealthy (the default
/// of `--health-stall-seconds`).
pub(crate) const WATCH_STALL: Duration = Duration::from_secs(60);

pub(crate) struct Health {
    /// How long a watch may fail without a success before the replica is unhealthy; a
    /// reconcile may run twice as long (its API calls have their own timeouts, so one this
    /// slow is stuck).
    stall: Duration,
    /// This replica holds the lease (always true without leader election).
    pub leading: AtomicBool,
    /// Leader election is running, so a standby is healthy while it waits.
    pub electing: AtomicBool,
    /// The leader's caches hold their initial lists.
    pub caches_synced: AtomicBool,
    /// Per watched kind: since when its watch has been failing, and the last error.
    watches: Mutex<BTreeMap<&'static str, Failing>>,
    /// Reconciles in flight, by token, with their start.
    reconciles: Mutex<BTreeMap<u64, Instant>>,
    next_token: AtomicU64,
}

struct Failing {
    since: Instant,
    error: String,
}

impl Default for Health {
    fn default() -> Self {
        Self::new(WATCH_STALL)
    }
}

impl Health {
    pub(crate) fn new(stall: Duration) -> Self {
        Health {
            stall,
            leading: AtomicBool::default(),
            electing: AtomicBool::default(),
            caches_synced: AtomicBool::default(),
            watches: Mutex::default(),
            reconciles: Mutex::default(),
            next_token: AtomicU64::default(),
        }
    }

    /// Ready: a standby that takes part in the election, or a leader whose caches have synced
    /// and that is live. Standbys must be Ready, or a rolling update and a PodDisruptionBudget
    /// would wait forever for the replica that cannot lead while the old leader holds the lease.
    pub(crate) fn ready(&self, now: Instant) -> bool {
        if self.leading.load(Ordering::SeqCst) {
            self.caches_synced.load(Ordering::SeqCst) && self.problem(now).is_none()
        } else {
            self.electing.load(Ordering::SeqCst)
        }
    }

    /// Why this replica is not live, if it is not.
    pub(crate) fn problem(&self, now: Instant) -> Option<String> {
        let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((kind, f)) = watches
            .iter()
            .find(|(_, f)| now.saturating_duration_since(f.since) >= self.stall)
        {
            return Some(format!(
                "the {kind} watch has failed for {}s: {}",
                now.saturating_duration_since(f.since).as_secs(),
                f.error
            ));
        }
        drop(watches);
        let reconciles = self.reconciles.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = reconciles.values().min()?;
        let running = now.saturating_duration_since(*oldest);
        (running >= self.stall * 2)
            .then(|| format!("a reconcile has been running for {}s", running.as_secs()))
    }

    /// Records what a watch of `kind` just yielded: an error starts (or continues) a failing
    /// spell, anything else ends it.
    pub(crate) fn watch_result(&self, kind: &'static str, error: Option<&dyn std::fmt::Display>) {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        match error {
            None => {
                watches.remove(kind);
            }
            Some(e) => {
                let error = crate::text::truncate(&e.to_string());
                watches
                    .entry(kind)
                    .and_modify(|f| f.error.clone_from(&error))
                    .or_insert(Failing {
                        since: Instant::now(),
                        error,
                    });
            }
        }
    }

    /// Tracks one reconcile from now until the guard drops.
    pub(crate) fn reconciling(&self) -> Reconciling<'_> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.reconciles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, Instant::now());
        Reconciling {
            health: self,
            token,
        }
    }
}

/// A reconcile in flight (see [`Health::reconciling`]).
pub(crate) struct Reconciling<'a> {
    health: &'a Health,
    token: u64,
}

impl Drop for Reconciling<'_> {
    fn drop(&mut self) {
        self.health
            .reconciles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> Health {
        let h = Health::default();
        h.leading.store(true, Ordering::SeqCst);
        h
    }

    #[test]
    fn a_leader_is_ready_once_its_caches_synced() {
        let h = leader();
        let now = Instant::now();
        assert!(!h.ready(now));
        h.caches_synced.store(true, Ordering::SeqCst);
        assert!(h.ready(now));
        // A standby taking part in the election is ready without caches.
        let standby = Health::default();
        assert!(!standby.ready(now));
        standby.electing.store(true, Ordering::SeqCst);
        assert!(standby.ready(now));
    }

    #[test]
    fn a_watch_failing_past_the_bound_makes_the_replica_unhealthy_until_it_recovers() {
        let h = leader();
        h.caches_synced.store(true, Ordering::SeqCst);
        h.watch_result("Job", Some(&"jobs.batch is forbidden"));
        let now = Instant::now();
        assert_eq!(h.problem(now), None, "a short outage is tolerated");
        let later = now + WATCH_STALL + Duration::from_secs(1);
        // Errors go on: the spell keeps its start, with the latest error.
        h.watch_result(
            "Job",
            Some(&"the server could not find the requested resource"),
        );
        let problem = h.problem(later).expect("unhealthy");
        assert!(
            problem.contains("Job watch") && problem.contains("could not find"),
            "{problem}"
        );
        assert!(!h.ready(later));
        h.watch_result("Job", None);
        assert_eq!(h.problem(later), None);
        assert!(h.ready(later));
    }

    #[test]
    fn a_reconcile_running_past_the_bound_makes_the_replica_unhealthy() {
        let h = leader();
        let now = Instant::now();
        {
            let _a = h.reconciling();
            let _b = h.reconciling();
            assert_eq!(h.problem(now), None);
            let later = now + WATCH_STALL * 2 + Duration::from_secs(1);
            assert!(h.problem(later).is_some_and(|p| p.contains("reconcile")));
        }
        let later = now + WATCH_STALL * 2 + Duration::from_secs(1);
        assert_eq!(h.problem(later), None, "finished reconciles are forgotten");
    }
}
