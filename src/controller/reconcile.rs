//! The SyncSequence reconciler: observe, decide (pure), execute.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use super::execute::{ExecuteError, execute};
use super::observe::{holders, sequence_jobs};
use crate::api::SyncSequence;
use crate::engine::{Observed, decide};

pub async fn reconcile(seq: Arc<SyncSequence>, ctx: Arc<Context>) -> Result<Requeue, ExecuteError> {
    ctx.caches_synced().await;
    if seq.metadata.deletion_timestamp.is_some() {
        return Ok(Requeue::await_change());
    }
    let ns = seq.namespace().unwrap_or_default();
    let name = seq.name_any();
    let syncs = seq
        .spec
        .steps
        .iter()
        .filter_map(|step| {
            ctx.syncs
                .get(&ObjectRef::new(&step.sync_ref.name).within(&ns))
        })
        .map(|s| (s.name_any(), s.as_ref().clone()))
        .collect();
    let jobs = sequence_jobs(&ctx, &ns, &name);
    let holders = holders(&ctx, &ns);
    let now = jiff::Timestamp::now();
    let plan = decide(&Observed {
        sequence: &seq,
        syncs: &syncs,
        jobs: &jobs,
        holders: &holders,
        now,
    });
    tracing::debug!(
        sequence = %name,
        jobs = jobs.len(),
        run = ?plan.status.current_run.as_ref().map(|r| (r.id, r.progress.as_str())),
        actions = plan.actions.len(),
        wake_at = ?plan.wake_at,
        "decided"
    );
    let changed = seq.status.as_ref() != Some(&plan.status);
    execute(
        seq.as_ref(),
        changed.then_some(&plan.status),
        &plan.actions,
        &ctx,
    )
    .await?;
    Ok(requeue_at(plan.wake_at, now))
}

/// Requeue at the engine's wake-up time, or wait for the next watch event.
pub fn requeue_at(wake_at: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Requeue {
    match wake_at {
        Some(at) => {
            let wait = at.duration_since(now).as_millis().max(0) as u64;
            Requeue::requeue(Duration::from_millis(wait))
        }
        None => Requeue::await_change(),
    }
}

pub fn error_policy(seq: Arc<SyncSequence>, error: &ExecuteError, _ctx: Arc<Context>) -> Requeue {
    tracing::warn!(sequence = %seq.name_any(), error = %error, "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(2))
}
