//! Lease-based leader election (kube-lease-manager): only the leader reconciles.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease lasts without renewal; a standby takes over at most this long after
    /// the leader dies.
    pub duration: Duration,
}

/// A running election: tells when this replica leads, and when it stops leading.
pub struct Election {
    state: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Election {
    pub async fn start(client: Client, config: &LeaseConfig) -> anyhow::Result<Self> {
        let secs = config.duration.as_secs().max(2);
        let manager = LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(secs)
            .with_grace((secs / 3).max(1))
            .with_field_manager("syncseq-leader-election")
            .build()
            .await?;
        let (state, task) = manager.watch().await;
        Ok(Election { state, task })
    }

    /// Waits until this replica holds the lease.
    pub async fn acquired(&mut self) -> anyhow::Result<()> {
        self.state
            .wait_for(|leading| *leading)
            .await
            .map_err(|_| anyhow::anyhow!("leader election stopped"))?;
        Ok(())
    }

    /// Resolves when this replica no longer holds the lease.
    pub async fn lost(&mut self) {
        let _ = self.state.wait_for(|leading| !*leading).await;
    }

    /// Gives the lease up, so a standby can take over without waiting for it to expire.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the lease failed"),
            Err(e) => tracing::warn!(error = %e, "leader election task failed"),
        }
    }
}
