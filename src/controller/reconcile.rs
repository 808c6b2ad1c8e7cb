//! The one reconciler shape, for both kinds: observe (caches, owner-matched Jobs), decide
//! (the pure engine), execute (claim, status, Jobs, Events), requeue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::Context;
use super::execute::{ExecuteError, execute};
use super::freshness::{self, Met};
use super::observe::{confirm_missing, holders, owned_jobs};
use super::priority::priority;
use super::upstream;
use crate::admission::{self, Admission};
use crate::api::{
    RunBook, RunStatus, ScheduleStatus, Sync, SyncSequence, SyncSequenceStatus, SyncStatus,
    UpstreamKind, UpstreamRef,
};
use crate::engine::reasons::RECONCILE_FAILED;
use crate::engine::{
    JobView, Observed, Plan, SyncObserved, decide, decide_sync, record_created, record_refusal,
};
use crate::metrics::{KindLabel, Metrics};

/// What the reconciler needs to know of a kind.
pub(super) trait Subject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + std::marker::Sync
    + 'static
{
    type Status: serde::Serialize + Clone + PartialEq + Default + Send;

    fn status(&self) -> Option<&Self::Status>;
    fn book(status: &Self::Status) -> &RunBook;
    fn book_mut(status: &mut Self::Status) -> &mut RunBook;
    /// The engine's decision on what the caches show and the Jobs this object controls.
    fn decide(&self, ctx: &Context, jobs: &[JobView], now: jiff::Timestamp) -> Plan<Self::Status>;
    /// Whether the planned status differs from the current one in what this reconciler writes.
    fn changed(current: Option<&Self::Status>, planned: &Self::Status) -> bool {
        current != Some(planned)
    }
    /// The status as this reconciler applies it (without fields other writers own).
    fn for_apply(status: &Self::Status) -> Self::Status {
        status.clone()
    }
    /// The names of its steps, which label its step series (none: it has no runs of its own).
    fn steps(&self) -> Vec<&str>;
    /// Metrics read from what the plan changed.
    fn record(&self, _metrics: &Metrics, _plan: &Plan<Self::Status>) {}
    /// Hands the alert notifications `status` holds pending to the delivery worker.
    fn offer_alerts(&self, _ctx: &Context, _status: &Self::Status) {}
    /// This object as the cache holds it now.
    fn cached(ctx: &Context, obj: &Self) -> Option<Arc<Self>>;
    /// The schedule part of the status.
    fn schedule(status: &Self::Status) -> &ScheduleStatus;
    /// Where this kind's reconciles wait for a place.
    fn admission(ctx: &Context) -> &Admission;
}

impl Subject for SyncSequence {
    type Status = SyncSequenceStatus;

    fn status(&self) -> Option<&SyncSequenceStatus> {
        self.status.as_ref()
    }
    fn book(status: &SyncSequenceStatus) -> &RunBook {
        &status.book
    }
    fn book_mut(status: &mut SyncSequenceStatus) -> &mut RunBook {
        &mut status.book
    }
    fn decide(&self, ctx: &Context, jobs: &[JobView], now: jiff::Timestamp) -> Plan {
        let ns = self.namespace().unwrap_or_default();
        let syncs: BTreeMap<String, Sync> = self
            .spec
            .steps
            .iter()
            .filter_map(|step| {
                ctx.syncs
                    .get(&ObjectRef::new(&step.sync_ref.name).within(&ns))
            })
            .map(|s| (s.name_any(), s.as_ref().clone()))
            .collect();
        let steps = self.spec.steps.iter().map(|s| s.sync_ref.name.as_str());
        let me = UpstreamRef {
            kind: UpstreamKind::SyncSequence,
            name: self.name_any(),
        };
        decide(&Observed {
            sequence: self,
            syncs: &syncs,
            jobs,
            holders: &holders(ctx, &ns, steps),
            upstreams: &upstream::observe(ctx, &ns, me, self.spec.scheduling.after.as_ref()),
            now,
        })
    }
    fn changed(current: Option<&SyncSequenceStatus>, planned: &SyncSequenceStatus) -> bool {
        !super::notify::status_unchanged(current, planned)
    }
    fn steps(&self) -> Vec<&str> {
        self.spec.steps.iter().map(|s| s.name.as_str()).collect()
    }
    fn record(&self, metrics: &Metrics, plan: &Plan) {
        let (namespace, name) = (self.namespace().unwrap_or_default(), self.name_any());
        record_progress(
            metrics,
            ("SyncSequence", &namespace, &name),
            self.status
                .as_ref()
                .map(|s| (&s.book, s.last_run.as_deref())),
            (&plan.status.book, plan.status.last_run.as_deref()),
        );
    }
    fn offer_alerts(&self, ctx: &Context, status: &SyncSequenceStatus) {
        if status.pending_alerts.is_empty() {
            return;
        }
        let known = |key: &str| {
            self.status
                .iter()
                .flat_map(|s| &s.pending_alerts)
                .any(|p| p.key == key)
        };
        if status.pending_alerts.iter().any(|p| !known(&p.key)) {
            // Written, not handed over yet: a crash here is what the outbox is for.
            crate::failpoints::crash_point(crate::failpoints::BEFORE_NOTIFY);
        }
        ctx.notifier.offer(self, status);
    }
    fn cached(ctx: &Context, obj: &Self) -> Option<Arc<Self>> {
        ctx.sequences.get(&ObjectRef::from(obj))
    }
    fn schedule(status: &SyncSequenceStatus) -> &ScheduleStatus {
        &status.schedule
    }
    fn admission(ctx: &Context) -> &Admission {
        &ctx.admission.sequences
    }
}

impl Subject for Sync {
    type Status = SyncStatus;

    fn status(&self) -> Option<&SyncStatus> {
        self.status.as_ref()
    }
    fn book(status: &SyncStatus) -> &RunBook {
        &status.book
    }
    fn book_mut(status: &mut SyncStatus) -> &mut RunBook {
        &mut status.book
    }
    fn decide(&self, ctx: &Context, jobs: &[JobView], now: jiff::Timestamp) -> Plan<SyncStatus> {
        let (ns, name) = (self.namespace().unwrap_or_default(), self.name_any());
        let me = UpstreamRef {
            kind: UpstreamKind::Sync,
            name: name.clone(),
        };
        decide_sync(&SyncObserved {
            sync: self,
            own: jobs,
            all: &super::observe::sync_jobs(ctx, &ns, &name),
            holders: &holders(ctx, &ns, [name.as_str()]),
            upstreams: &upstream::observe(ctx, &ns, me, self.spec.scheduling.after.as_ref()),
            now,
        })
    }
    fn changed(current: Option<&SyncStatus>, planned: &SyncStatus) -> bool {
        current.map(Self::for_apply) != Some(Self::for_apply(planned))
    }
    /// Its own runs have the one step; a Sync that only runs as sequences' steps (no schedule,
    /// no `after`, no run of its own yet) has none to count, and no series: most Syncs of a
    /// large installation are such, and the series would make most of `/metrics`.
    fn steps(&self) -> Vec<&str> {
        let scheduling = &self.spec.scheduling;
        let own_runs = scheduling.schedule.is_some()
            || scheduling.schedules.is_some()
            || scheduling.after.is_some()
            || self
                .status
                .as_ref()
                .is_some_and(|s| s.book.last_run_number.is_some());
        match own_runs {
            true => vec![crate::engine::STANDALONE_STEP],
            false => vec![],
        }
    }
    fn cached(ctx: &Context, obj: &Self) -> Option<Arc<Self>> {
        ctx.syncs.get(&ObjectRef::from(obj))
    }
    fn schedule(status: &SyncStatus) -> &ScheduleStatus {
        &status.schedule
    }
    fn admission(ctx: &Context) -> &Admission {
        &ctx.admission.syncs
    }
    /// The claim is written by compare-and-swap alone (see `claim.rs`), never applied.
    fn for_apply(status: &SyncStatus) -> SyncStatus {
        SyncStatus {
            claim: None,
            ..status.clone()
        }
    }
    /// The Sync's own runs. A step's end is seen only while its run is in progress: a Sync
    /// keeps no finished run with its steps, so a one-step run that ends in the same write
    /// counts in `runs` alone.
    fn record(&self, metrics: &Metrics, plan: &Plan<SyncStatus>) {
        let (namespace, name) = (self.namespace().unwrap_or_default(), self.name_any());
        record_progress(
            metrics,
            ("Sync", &namespace, &name),
            self.status.as_ref().map(|s| (&s.book, None)),
            (&plan.status.book, None),
        );
    }
}

/// Reconciles one object of either kind, once admitted (`admission`).
pub(super) async fn reconcile<K: Subject>(
    obj: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Requeue, ExecuteError> {
    ctx.caches_synced().await;
    ctx.leading().await;
    let priority = priority(
        obj.status().map(K::book),
        obj.status().map(K::schedule),
        jiff::Timestamp::now(),
    );
    let asked = std::time::Instant::now();
    let _ticket = K::admission(&ctx).enter(priority).await;
    ctx.metrics
        .admitted(&K::kind(&()), priority.label(), asked.elapsed());
    // The copy this reconcile was started with may have waited: decide on the cache's. An
    // object the cache no longer holds is gone, and there is nothing to decide.
    let Some(obj) = K::cached(&ctx, &obj) else {
        return Ok(Requeue::await_change());
    };
    // Boxed: a reconcile waiting for its place holds only this function's few locals, not
    // the whole reconcile's state.
    admission::with_priority(priority, Box::pin(reconcile_admitted(obj, ctx.clone()))).await
}

async fn reconcile_admitted<K: Subject>(
    obj: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Requeue, ExecuteError> {
    let key = freshness::key(
        &K::kind(&()),
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
    );
    // Every line logged while reconciling names the object (and, once decided, its run).
    let span = tracing::info_span!(
        "reconcile",
        kind = %K::kind(&()),
        namespace = %obj.namespace().unwrap_or_default(),
        name = %obj.name_any(),
        run = tracing::field::Empty,
    );
    let result = isolated(reconcile_object(obj, &key, ctx.clone()))
        .instrument(span)
        .await;
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

/// Runs one object's reconcile so that a panic in it (a bug, or input nobody foresaw) fails
/// only that reconcile, which is retried with backoff: the controller runs every reconcile on
/// one task, and an unwinding panic would otherwise stop it for every object in the cluster.
pub(super) async fn isolated<F>(reconcile: F) -> Result<Requeue, ExecuteError>
where
    F: std::future::Future<Output = Result<Requeue, ExecuteError>>,
{
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(reconcile).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ExecuteError::Panicked(text))
        }
    }
}

async fn reconcile_object<K: Subject>(
    obj: Arc<K>,
    key: &str,
    ctx: Arc<Context>,
) -> Result<Requeue, ExecuteError> {
    let _timer = ReconcileTimer::start(&ctx.metrics, &K::kind(&()));
    tracing::trace!(
        target: "syncseq::trace",
        kind = %K::kind(&()),
        namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
        name = obj.meta().name.as_deref().unwrap_or_default(),
        "reconcile_start"
    );
    let _tracked = ctx.health.reconciling();
    if obj.meta().deletion_timestamp.is_some() {
        ctx.freshness.forget(key);
        return Ok(Requeue::await_change());
    }
    // Its run and step counters exist at 0 from its first reconcile on (if it has runs to
    // count: see `Subject::steps`).
    let ns = obj.namespace().unwrap_or_default();
    let steps = obj.steps();
    if !steps.is_empty() {
        ctx.metrics
            .object_seen(&K::kind(&()), &ns, &obj.name_any(), steps);
    }
    // The watch event of our last status write is on its way; decide on that, not on this.
    let version = obj.meta().resource_version.as_deref();
    match ctx.freshness.met(key, version, || {
        K::cached(&ctx, &obj).and_then(|o| o.resource_version())
    }) {
        Met::Current => {}
        Met::Behind => return Ok(Requeue::await_change()),
        Met::Moved => return Ok(Requeue::requeue(Duration::ZERO)),
    }
    // What status already holds is written: its pending notifications go out (again, after a
    // restart or a lost queue entry; the worker skips what it has queued or handled).
    if let Some(status) = obj.status() {
        obj.offer_alerts(&ctx, status);
    }
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let mut jobs = owned_jobs(&ctx, &ns, &uid);
    let current = obj.status().map(K::book);
    confirm_missing(
        &ctx,
        &ns,
        current.and_then(|b| b.current_run.as_deref()),
        &mut jobs,
    )
    .await
    .map_err(ExecuteError::Read)?;
    let now = jiff::Timestamp::now();
    let plan = obj.decide(&ctx, &jobs, now);
    if let Some(run) = K::book(&plan.status).current_run.as_deref() {
        tracing::Span::current().record("run", run.id);
    }
    tracing::debug!(
        object = %key,
        jobs = jobs.len(),
        actions = plan.actions.len(),
        wake_at = ?plan.wake_at,
        "decided"
    );
    let changed = K::changed(obj.status(), &plan.status);
    let new_run = K::book(&plan.status).last_run_number != current.and_then(|b| b.last_run_number);
    let apply = K::for_apply(&plan.status);
    let executed = execute(
        obj.as_ref(),
        changed.then_some(&apply),
        new_run,
        &plan.actions,
        &ctx,
        |creations| {
            let mut settled = plan.status.clone();
            let mut any = false;
            let book = K::book_mut(&mut settled);
            for (job, uid) in &creations.created {
                any |= record_created(book.current_run.as_deref_mut(), job, uid);
            }
            for (job, why) in &creations.refused {
                any |= record_refusal(book.current_run.as_deref_mut(), job, why, now);
            }
            any.then(|| K::for_apply(&settled))
        },
    )
    .await;
    let executed = match executed {
        // Someone wrote the object since this copy: its watch event brings the newer copy to
        // decide on; this is the bound.
        Err(ExecuteError::Superseded(_)) => {
            tracing::debug!(object = %key, "status changed while deciding; deciding again");
            return Ok(Requeue::requeue(DECIDE_AGAIN));
        }
        executed => executed?,
    };
    if executed.deferred.is_some() {
        // Someone else just claimed the Sync. Decide again shortly: their Job then holds it, the
        // step says it waits, and the Job's end wakes us.
        return Ok(Requeue::requeue(DECIDE_AGAIN));
    }
    let decide_next = executed.refused.then_some(Requeue::requeue(Duration::ZERO));
    // A write the server found to change nothing keeps the version (and sends no event).
    if executed.written.last().map(String::as_str) != version {
        ctx.freshness.wrote(key, version, &executed.written);
    }
    obj.record(&ctx.metrics, &plan);
    // The notifications the written status added.
    if changed {
        obj.offer_alerts(&ctx, &plan.status);
    }
    Ok(decide_next.unwrap_or_else(|| requeue_at(plan.wake_at, now)))
}

/// When to decide again after a refused claim or a superseded status write, if no watch event
/// comes first.
const DECIDE_AGAIN: Duration = Duration::from_secs(2);

/// Requeue at the engine's wake-up time, or wait for the next watch event.
pub(super) fn requeue_at(wake_at: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Requeue {
    match wake_at {
        Some(at) => {
            let wait = at.duration_since(now).as_millis().max(0) as u64;
            Requeue::requeue(Duration::from_millis(wait))
        }
        None => Requeue::await_change(),
    }
}

/// What a status holds of runs: the run book and the last finished run with its steps (a
/// sequence keeps it; a Sync's finished runs are summaries only).
type Runs<'a> = (&'a RunBook, Option<&'a RunStatus>);

/// Run outcomes, step failures, waits, durations and hand-offs, read from what this plan
/// changed (`old` is the status before it).
fn record_progress(
    metrics: &Metrics,
    (kind, namespace, name): (&str, &str, &str),
    old: Option<Runs<'_>>,
    new: Runs<'_>,
) {
    let old_runs = old.and_then(|(b, _)| b.runs.first()).map(|r| r.id);
    if let Some(run) = new.0.runs.first().filter(|r| Some(r.id) != old_runs) {
        metrics.run_finished(kind, namespace, name, run.phase);
    }
    let old_steps = |run: i64| {
        old.into_iter()
            .flat_map(|(b, last)| b.current_run.as_deref().into_iter().chain(last))
            .filter(move |r| r.id == run)
            .flat_map(|r| r.steps.iter())
    };
    let object = (kind, namespace, name);
    for run in new.0.current_run.as_deref().into_iter().chain(new.1) {
        for (i, step) in run.steps.iter().enumerate() {
            let was = old_steps(run.id).find(|s| s.name == step.name);
            let ended = step.phase.is_final() && was.is_some_and(|w| !w.phase.is_final());
            if ended {
                if step.phase == crate::api::StepPhase::Failed {
                    metrics.step_failed(object, &step.name);
                }
                if let Some(rejected) = step.rows_rejected.filter(|r| *r > 0) {
                    metrics.rows_rejected(object, &step.name, rejected.unsigned_abs());
                }
            }
            if ended && let (Some(start), Some(end)) = (&step.start_time, &step.completion_time) {
                metrics
                    .step_duration
                    .observe(end.0.duration_since(start.0).as_secs_f64().max(0.0));
            }
            // A step's first Job was just created: time the hand-off from the previous step's Job.
            let started = step.attempts == 1 && was.is_some_and(|w| w.attempts == 0);
            // After waiting for its Sync: the wait ran from when the step could have started
            // (the previous step's end, or the run's start) to its Job.
            let ready = match i {
                0 => Some(&run.start_time),
                _ => run.steps[i - 1].completion_time.as_ref(),
            };
            if started
                && was.is_some_and(|w| w.phase == crate::api::StepPhase::Waiting)
                && let (Some(ready), Some(start)) = (ready, &step.start_time)
            {
                let waited = start.0.duration_since(ready.0).as_secs_f64();
                metrics.sync_waited(object, &step.name, waited.max(0.0));
            }
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
pub(super) struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    label: KindLabel,
    started: std::time::Instant,
}

impl<'a> ReconcileTimer<'a> {
    pub(super) fn start(metrics: &'a Metrics, kind: &str) -> Self {
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

/// A failed reconcile is retried with per-object exponential backoff (1 s doubling to 5 min),
/// so an object the API server keeps refusing costs little and others are not held up.
pub(super) fn error_policy<K: Subject>(
    obj: Arc<K>,
    error: &ExecuteError,
    ctx: Arc<Context>,
) -> Requeue {
    let kind = K::kind(&()).to_string();
    ctx.metrics
        .reconcile_errors
        .get_or_create(&KindLabel { kind: kind.clone() })
        .inc();
    let key = format!(
        "{kind}/{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    );
    let delay = ctx.backoff.next(&key);
    tracing::warn!(
        kind = %kind,
        namespace = %obj.namespace().unwrap_or_default(),
        name = %obj.name_any(),
        error = %error,
        retry_in = ?delay,
        "reconcile failed; retrying"
    );
    // Said on the object too, where `kubectl describe` shows it: a reconcile that keeps
    // failing (the API server refusing, throttling or not answering) is a stall. The backoff
    // spaces these Events out like the retries.
    let event = crate::engine::Event {
        warning: true,
        reason: RECONCILE_FAILED,
        action: "Reconcile",
        note: crate::text::printable(&format!(
            "reconcile failed, retrying in {} s: {error}",
            delay.as_secs()
        )),
        job: None,
    };
    let (client, reporter, regarding) = (
        ctx.client.clone(),
        ctx.reporter.clone(),
        obj.object_ref(&()),
    );
    tokio::spawn(async move {
        if let Err(e) =
            crate::cluster::events::publish(&client, &reporter, &regarding, &event).await
        {
            tracing::debug!(object = %key, error = %e, "failed to record the ReconcileFailed event");
        }
    });
    Requeue::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns: a future's size is that of its largest state.
    fn returned_size<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_reconcile_waiting_for_its_place_is_small() {
        // Every object can be waiting at once (4,000 after a start at 1,000 sequences).
        for (kind, waiting, admitted) in [
            (
                "SyncSequence",
                returned_size(reconcile::<SyncSequence>),
                returned_size(reconcile_admitted::<SyncSequence>),
            ),
            (
                "Sync",
                returned_size(reconcile::<Sync>),
                returned_size(reconcile_admitted::<Sync>),
            ),
        ] {
            assert!(waiting <= 512, "{kind}: {waiting} bytes waiting");
            assert!(admitted > 4 * waiting, "{kind}: {admitted} bytes admitted");
        }
    }
}
