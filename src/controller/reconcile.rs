//! The SyncSequence reconciler: observe, decide (pure), execute.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use super::execute::{ExecuteError, execute};
use super::observe::{holders, sequence_jobs};
use crate::api::{SyncSequence, SyncSequenceStatus};
use crate::engine::{Observed, decide};
use crate::metrics::{KindLabel, Metrics, OutcomeLabel};

pub async fn reconcile(seq: Arc<SyncSequence>, ctx: Arc<Context>) -> Result<Requeue, ExecuteError> {
    ctx.caches_synced().await;
    let _timer = ReconcileTimer::start(&ctx.metrics, "SyncSequence");
    let key = format!(
        "SyncSequence/{}/{}",
        seq.namespace().unwrap_or_default(),
        seq.name_any()
    );
    if seq.metadata.deletion_timestamp.is_some() {
        ctx.freshness.forget(&key);
        return Ok(Requeue::await_change());
    }
    // The watch event of our last status write is on its way; decide on that, not on this.
    if ctx
        .freshness
        .is_stale(&key, seq.metadata.resource_version.as_deref())
    {
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
    let changed = !super::notify::status_unchanged(seq.status.as_ref(), &plan.status);
    let written = execute(
        seq.as_ref(),
        changed.then_some(&plan.status),
        plan.status.last_run_number != seq.status.as_ref().and_then(|s| s.last_run_number),
        &plan.actions,
        &ctx,
    )
    .await?;
    // A write the server found to change nothing keeps the version (and sends no event).
    if written.is_some() && written.as_deref() != seq.metadata.resource_version.as_deref() {
        ctx.freshness
            .wrote(&key, seq.metadata.resource_version.as_deref());
    }
    record_progress(&ctx.metrics, seq.status.as_ref(), &plan);
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

/// Run outcomes, step durations and hand-offs, read from what this plan changed.
fn record_progress(
    metrics: &Metrics,
    old: Option<&SyncSequenceStatus>,
    plan: &crate::engine::Plan,
) {
    let old_runs = old.and_then(|s| s.runs.first()).map(|r| r.id);
    if let Some(run) = plan.status.runs.first().filter(|r| Some(r.id) != old_runs) {
        metrics
            .runs
            .get_or_create(&OutcomeLabel {
                outcome: format!("{:?}", run.phase),
            })
            .inc();
    }
    let old_steps = |run: i64| {
        old.into_iter()
            .flat_map(|s| s.current_run.iter().chain(s.last_run.iter()))
            .filter(move |r| r.id == run)
            .flat_map(|r| r.steps.iter())
    };
    for run in plan
        .status
        .current_run
        .iter()
        .chain(plan.status.last_run.iter())
    {
        for (i, step) in run.steps.iter().enumerate() {
            let was = old_steps(run.id).find(|s| s.name == step.name);
            if step.phase.is_final()
                && was.is_some_and(|w| !w.phase.is_final())
                && let (Some(start), Some(end)) = (&step.start_time, &step.completion_time)
            {
                metrics
                    .step_duration
                    .observe(end.0.duration_since(start.0).as_secs_f64().max(0.0));
            }
            // A step's first Job was just created: time the hand-off from the previous step's Job.
            let started = step.attempts == 1 && was.is_some_and(|w| w.attempts == 0);
            if started
                && i > 0
                && let Some(previous) = &run.steps[i - 1].job_name
            {
                metrics.handoff(previous);
            }
        }
    }
}

/// Counts a reconciliation and times it.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    label: KindLabel,
    started: std::time::Instant,
}

impl<'a> ReconcileTimer<'a> {
    pub fn start(metrics: &'a Metrics, kind: &str) -> Self {
        let label = KindLabel {
            kind: kind.to_string(),
        };
        metrics.reconciles.get_or_create(&label).inc();
        metrics.reconciles_in_flight.inc();
        ReconcileTimer {
            metrics,
            label,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics.reconciles_in_flight.dec();
        self.metrics
            .reconcile_duration
            .get_or_create(&self.label)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

pub fn error_policy(seq: Arc<SyncSequence>, error: &ExecuteError, ctx: Arc<Context>) -> Requeue {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&KindLabel {
            kind: "SyncSequence".into(),
        })
        .inc();
    tracing::warn!(sequence = %seq.name_any(), error = %error, "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(2))
}
