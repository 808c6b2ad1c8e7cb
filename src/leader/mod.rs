//! Lease-based leader election with fencing: only the leader reconciles, and a leader that
//! cannot renew its lease in time stops writing before a standby can take the lease over.
//!
//! The algorithm is client-go's `leaderelection`: a replica takes the Lease when it is free,
//! its own, or unchanged for `leaseDurationSeconds` as measured on the replica's own clock from
//! when it saw the record change (so clock skew between machines does not matter); writes use
//! the Lease's resourceVersion, so of two replicas only one wins. A leader renews every
//! `retry` and may act only until `renew_deadline` after the start of its last successful
//! renewal — the [`Fence`] closes then on its own, shorter than the lease by a third, so the
//! old leader has stopped sending writes before a standby can acquire (one it had sent when it
//! was stopped may still arrive; its precondition has it refused). A leader that finds its fence
//! closed (a renewal failed or hung, the process was paused) has lost the lease for good and
//! the process exits; it restarts as a standby.

mod fence;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};

pub(crate) use fence::{Fence, FenceLayer};

/// Leader election settings.
#[derive(Debug, Clone)]
pub(crate) struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease lasts without renewal; a standby takes over at most this long after
    /// the leader stops renewing.
    pub duration: Duration,
}

/// The timings derived from the lease duration, in client-go's default proportions (a 15 s
/// lease, a 10 s renew deadline, a 2 s retry period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub lease: Duration,
    /// How long after the start of its last successful renewal a leader may act.
    pub renew_deadline: Duration,
    /// How often a leader renews and a standby tries to acquire.
    pub retry: Duration,
}

impl Timing {
    pub(crate) fn of(lease: Duration) -> Timing {
        let lease = lease.max(Duration::from_secs(2));
        Timing {
            lease,
            renew_deadline: lease * 2 / 3,
            retry: (lease / 7).max(Duration::from_millis(200)),
        }
    }
}

const FIELD_MANAGER: &str = "syncseq-leader-election";

/// The Lease of an instance that reconciles one shard (`--shard-selector`): `base` and a short
/// stable hash of the normalised selector, so that each shard elects its own leader and the
/// replicas of one shard, however its selector is spelled, elect the same one. Unsharded, the
/// name is `base` itself, as before sharding existed (an upgrade keeps its Lease).
pub(crate) fn lease_name(base: &str, shard_selector: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match shard_selector {
        None => base.to_string(),
        Some(selector) => {
            let digest = Sha256::digest(selector.as_bytes());
            format!("{base}-{}", &hex::encode(digest)[..10])
        }
    }
}

/// A running election: tells when this replica leads and when it stops leading, and fences
/// the writes of the controller's client.
pub(crate) struct Election {
    state: watch::Receiver<bool>,
    fence: Fence,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Starts campaigning. `client` is used for the Lease only; the controller's client must be
    /// built with [`Election::fence`] (see [`FenceLayer`]).
    pub(crate) async fn start(client: Client, config: &LeaseConfig) -> anyhow::Result<Self> {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        // Fail fast on what would make every attempt fail (no RBAC for Leases, say).
        api.get_opt(&config.name)
            .await
            .map_err(|e| anyhow::anyhow!("reading Lease {}: {e}", config.name))?;
        let fence = Fence::closed();
        let (state_tx, state) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let campaign = Campaign {
            api,
            config: config.clone(),
            timing: Timing::of(config.duration),
            fence: fence.clone(),
            state: state_tx,
            observed: None,
        };
        let task = tokio::spawn(campaign.run(stop_rx));
        Ok(Election {
            state,
            fence,
            stop: Some(stop),
            task,
        })
    }

    /// The fence of the controller's writes.
    pub(crate) fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Waits until this replica holds the lease.
    pub(crate) async fn acquired(&mut self) -> anyhow::Result<()> {
        self.state
            .wait_for(|leading| *leading)
            .await
            .map_err(|_| anyhow::anyhow!("leader election stopped"))?;
        Ok(())
    }

    /// Resolves when this replica no longer holds the lease (it never holds it again).
    pub(crate) async fn lost(&mut self) {
        let _ = self.state.wait_for(|leading| !*leading).await;
    }

    /// Stops campaigning and gives the lease up if this replica still holds it, so a standby
    /// can take over without waiting for it to expire.
    pub(crate) async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::warn!(error = %e, "leader election task failed");
        }
    }
}

/// The record a standby watches for change: holder, renew time, transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renewed: Option<Timestamp>,
    transitions: Option<i32>,
}

/// A record and when this replica first saw it.
struct Observed {
    record: Record,
    at: Instant,
}

struct Campaign {
    api: Api<Lease>,
    config: LeaseConfig,
    timing: Timing,
    fence: Fence,
    state: watch::Sender<bool>,
    observed: Option<Observed>,
}

/// What one attempt to acquire or renew found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// The Lease is ours, renewed as of the attempt's start.
    Held,
    /// Another replica holds it.
    Taken,
}

impl Campaign {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        // The start of the last successful renewal, while leading.
        let mut renewed: Option<Instant> = None;
        loop {
            if let Some(at) = renewed
                && at.elapsed() >= self.timing.renew_deadline
            {
                self.lose("the lease was not renewed within the renew deadline");
                return;
            }
            let started = Instant::now();
            // A leader's attempt must finish before its fence closes; a standby's within a retry.
            let budget = match renewed {
                Some(at) => self.timing.renew_deadline.saturating_sub(at.elapsed()),
                None => self.timing.renew_deadline,
            };
            match tokio::time::timeout(budget, self.attempt(renewed.is_some())).await {
                Ok(Ok(Attempt::Held)) => {
                    self.fence.open_until(started + self.timing.renew_deadline);
                    if renewed.is_none() {
                        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "acquired the lease");
                        self.state.send_replace(true);
                    }
                    renewed = Some(started);
                }
                Ok(Ok(Attempt::Taken)) if renewed.is_some() => {
                    self.lose("another replica holds the lease");
                    return;
                }
                Ok(Ok(Attempt::Taken)) => {}
                Ok(Err(e)) if renewed.is_some() => {
                    tracing::warn!(error = %e, "renewing the lease failed")
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "acquiring the lease failed"),
                Err(_) => tracing::warn!(
                    leading = renewed.is_some(),
                    "the lease request did not answer within {budget:?}"
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry) => {}
                _ = &mut stop => {
                    if renewed.is_some() && self.fence.allows() {
                        self.release().await;
                    }
                    self.fence.close();
                    self.state.send_replace(false);
                    return;
                }
            }
        }
    }

    fn lose(&self, why: &str) {
        self.fence.close();
        tracing::error!(lease = %self.config.name, "lost the lease: {why}; writes are fenced");
        self.state.send_replace(false);
    }

    /// Reads the Lease and takes or renews it when it is free, ours, or expired.
    async fn attempt(&mut self, leading: bool) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let me = self.config.identity.as_str();
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, Some(now), 0)),
            };
            return match self.api.create(&post_params(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Taken),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let record = Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renewed: spec.renew_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions,
        };
        let seen_at = match &self.observed {
            Some(o) if o.record == record => o.at,
            _ => {
                let at = Instant::now();
                self.observed = Some(Observed {
                    record: record.clone(),
                    at,
                });
                at
            }
        };
        let ours = record.holder.as_deref() == Some(me);
        if leading && !ours {
            return Ok(Attempt::Taken);
        }
        if !ours && record.holder.is_some() {
            let lasts = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.timing.lease, Duration::from_secs);
            if seen_at.elapsed() < lasts {
                return Ok(Attempt::Taken);
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let (acquired, transitions) = if ours {
            (spec.acquire_time.map(|t| t.0), transitions)
        } else {
            (Some(now), transitions.saturating_add(1))
        };
        let mut lease = current;
        lease.metadata.managed_fields = None;
        lease.spec = Some(self.spec(now, acquired, transitions));
        match self
            .api
            .replace(&self.config.name, &post_params(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Taken),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, now: Timestamp, acquired: Option<Timestamp>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.timing.lease.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: acquired.map(MicroTime),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Empties the holder (as client-go does on release), if the Lease is still ours.
    async fn release(&self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            lease.metadata.managed_fields = None;
            self.api
                .replace(&self.config.name, &post_params(), &lease)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(self.timing.retry.max(Duration::from_secs(2)), result).await {
            Ok(Ok(())) => tracing::info!("lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the lease failed"),
            Err(_) => tracing::warn!("releasing the lease timed out"),
        }
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shard_has_a_lease_of_its_own_and_the_unsharded_keeps_its_name() {
        assert_eq!(lease_name("syncseq-controller", None), "syncseq-controller");
        let a = lease_name("syncseq-controller", Some("sharding.syncseq.dev/shard=a"));
        let b = lease_name("syncseq-controller", Some("sharding.syncseq.dev/shard=b"));
        assert_ne!(a, b);
        // Pinned: a new release must not move a shard's replicas to another Lease.
        assert_eq!(a, "syncseq-controller-f62d5a33d4");
    }

    #[test]
    fn the_fence_closes_a_third_of_the_lease_before_a_standby_may_acquire() {
        let t = Timing::of(Duration::from_secs(15));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert!(
            t.retry * 3 < t.renew_deadline,
            "several renewals fit in the deadline"
        );
        let t = Timing::of(Duration::from_secs(0));
        assert_eq!(t.lease, Duration::from_secs(2), "a lease is at least 2 s");
        assert!(t.renew_deadline < t.lease && t.retry >= Duration::from_millis(200));
    }
}
