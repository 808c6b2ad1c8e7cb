//! The Sync reconciler: runs a standalone Sync on its own schedule or on request, and reports
//! its most recent run, whoever started it.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;

use super::Context;
use super::execute::{ExecuteError, execute};
use super::observe::sync_jobs;
use super::reconcile::requeue_at;
use crate::api::Sync;
use crate::engine::{SyncObserved, decide_sync};

pub async fn reconcile(sync: Arc<Sync>, ctx: Arc<Context>) -> Result<Requeue, ExecuteError> {
    ctx.caches_synced().await;
    let _timer = super::reconcile::ReconcileTimer::start(&ctx.metrics, "Sync");
    let key = format!(
        "Sync/{}/{}",
        sync.namespace().unwrap_or_default(),
        sync.name_any()
    );
    if sync.metadata.deletion_timestamp.is_some() {
        ctx.freshness.forget(&key);
        return Ok(Requeue::await_change());
    }
    // The watch event of our last status write is on its way; decide on that, not on this.
    if ctx
        .freshness
        .is_stale(&key, sync.metadata.resource_version.as_deref())
    {
        return Ok(Requeue::await_change());
    }
    let ns = sync.namespace().unwrap_or_default();
    let jobs = sync_jobs(&ctx, &ns, &sync.name_any());
    let now = jiff::Timestamp::now();
    let plan = decide_sync(&SyncObserved {
        sync: &sync,
        jobs: &jobs,
        now,
    });
    tracing::debug!(sync = %sync.name_any(), jobs = jobs.len(), actions = plan.actions.len(), wake_at = ?plan.wake_at, "decided");
    let changed = sync.status.as_ref() != Some(&plan.status);
    let written = execute(
        sync.as_ref(),
        changed.then_some(&plan.status),
        true,
        &plan.actions,
        &ctx,
    )
    .await?;
    // A write the server found to change nothing keeps the version (and sends no event).
    if written.is_some() && written.as_deref() != sync.metadata.resource_version.as_deref() {
        ctx.freshness
            .wrote(&key, sync.metadata.resource_version.as_deref());
    }
    Ok(requeue_at(plan.wake_at, now))
}

pub fn error_policy(sync: Arc<Sync>, error: &ExecuteError, ctx: Arc<Context>) -> Requeue {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::KindLabel {
            kind: "Sync".into(),
        })
        .inc();
    tracing::warn!(sync = %sync.name_any(), error = %error, "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(2))
}
