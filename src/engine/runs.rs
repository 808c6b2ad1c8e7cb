//! The one run engine, for both kinds: cancel requests, advancing the current run, archiving
//! it, triggers under the concurrency policy, starting the next run, and deleting every Job
//! that the runs no longer account for. A sequence's runs have its steps; a Sync's own runs
//! have one step that runs the Sync itself.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};

use super::reasons;
use super::run::{RunContext, advance, cancel_run, new_run};
use super::triggers::{self, Trigger};
use super::upstream::{self, Upstreams};
use super::{Action, Event, Holder, JobOwner, JobView, Plan, earliest};
use crate::api::{
    ConcurrencyPolicy, RunBook, RunPhase, RunStatus, RunSummary, ScheduleSpec, ScheduleStatus,
    Step, StepPhase, Sync,
};

/// How long a Job that status does not know may be taken for a cache that lags behind our own
/// status write. Past it, status is taken to be behind (restored from a backup, a lost write)
/// and the Job is adopted into it.
pub(super) const STALE_LIMIT: SignedDuration = SignedDuration::from_secs(30);

/// How often an object whose `spec.after` makes a cycle looks again.
const CYCLE_RECHECK: SignedDuration = SignedDuration::from_secs(60);

/// The object whose runs the engine drives.
pub(super) struct Runner<'a> {
    pub owner: JobOwner,
    pub meta: &'a ObjectMeta,
    pub scheduling: &'a ScheduleSpec,
    pub concurrency: ConcurrencyPolicy,
    pub steps: &'a [Step],
    pub history_limit: usize,
    /// `spec.maxParallel` (None for a Sync's own one-step runs).
    pub max_parallel: Option<usize>,
    pub fail_fast: bool,
    /// The last finished run with every step's outcome, which a retry reuses (None for a
    /// Sync, whose own runs have one step: it has nothing to reuse).
    pub last_run: Option<&'a RunStatus>,
}

/// What the runs see of the cluster.
#[derive(Clone, Copy)]
pub(super) struct Cluster<'a> {
    pub syncs: &'a BTreeMap<String, Sync>,
    /// The Jobs the object controls.
    pub jobs: &'a [JobView],
    pub holders: &'a BTreeMap<String, Vec<Holder>>,
    /// The upstreams of `spec.after`.
    pub upstreams: &'a Upstreams,
    pub now: Timestamp,
}

/// The result of driving the runs one reconcile further, for an object whose status is `S`.
/// (Made once per decision and taken apart at once: the size of a variant costs nothing worth
/// a box.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Driven<S> {
    /// The cache holds a Job that status does not know yet: our own status write is on its
    /// way. This is the decision's whole plan: the status as read, only the deletes that
    /// cannot wait for status, and a look again in a second.
    Stale(Plan<S>),
    Done(Done),
}

/// What driving the runs leaves to the kind's own decision.
pub(super) struct Done {
    /// The run that finished last in this decision, with all its steps.
    pub archived: Option<RunStatus>,
    /// An invalid schedule or unknown time zone, or a cycle of upstreams: the reason and the
    /// message of the `Stalled` condition.
    pub spec_error: Option<(&'static str, String)>,
    /// Upstreams of `spec.after` that do not exist.
    pub missing_upstreams: Vec<String>,
    pub wake: Option<Timestamp>,
}

/// Drives the object's runs: updates `schedule`, `book` and the `StatusRecovered` condition
/// (parts of the object's status, read as `old`) and pushes the actions.
pub(super) fn drive<S: Clone>(
    runner: &Runner,
    cluster: Cluster,
    old: &S,
    schedule: &mut ScheduleStatus,
    book: &mut RunBook,
    conditions: &mut Vec<Condition>,
    actions: &mut Vec<Action>,
) -> Driven<S> {
    let now = cluster.now;
    let recovered = match unknown_job(book, cluster.jobs) {
        Some(job) if job.created.is_none_or(|at| now < at + STALE_LIMIT) => {
            delete_jobs_of_finished_runs(book, cluster.jobs, actions);
            return Driven::Stale(Plan {
                status: old.clone(),
                actions: std::mem::take(actions),
                wake_at: Some(now + SignedDuration::from_secs(1)),
            });
        }
        Some(_) => Some(adopt_unknown_jobs(
            book,
            runner.steps,
            cluster.jobs,
            actions,
        )),
        None => None,
    };
    let ctx = RunContext {
        owner: &runner.owner,
        steps: runner.steps,
        syncs: cluster.syncs,
        jobs: cluster.jobs,
        holders: cluster.holders,
        max_parallel: runner.max_parallel,
        fail_fast: runner.fail_fast,
        now,
    };
    let parsed = triggers::parse_schedule(
        runner.scheduling,
        runner.meta.creation_timestamp.as_ref().map(|t| t.0),
    );
    let mut archived = None;

    if triggers::cancel_requested(runner.meta, &mut book.last_handled_cancel_at) {
        match book.current_run.as_mut() {
            Some(run) if run.phase == RunPhase::Running => {
                cancel_run(run, "cancelled by request", cluster.jobs, actions, now)
            }
            _ => actions.push(Event::normal(
                reasons::CANCEL_IGNORED,
                "CancelRun",
                "cancel requested, but no run is in progress",
            )),
        }
    }

    let mut wake = None;
    if let Some(run) = book.current_run.as_mut()
        && run.phase == RunPhase::Running
    {
        wake = earliest(wake, advance(run, &ctx, actions));
    }
    archive_finished(book, runner.history_limit, &mut archived);

    // The queued run goes first, before triggers that arrive now (which then queue behind it).
    start_queued(book, runner, &ctx, actions, &mut wake, &mut archived);

    // Triggers: manual first, then the schedule; each subject to the concurrency policy.
    let mut incoming: Vec<Trigger> = Vec::new();
    incoming.extend(triggers::manual(
        runner.meta,
        &mut book.last_handled_request_at,
    ));
    match triggers::retry(runner.meta, &mut book.last_handled_retry_at) {
        Some(Ok(mut t)) => match retry_base(archived.as_ref().or(runner.last_run), t.retry_of) {
            Ok(base) => {
                t.retry_of = Some(base.id);
                incoming.push(t);
            }
            Err(why) => skip_trigger(book, t, &why, actions),
        },
        Some(Err(why)) => {
            let t = Trigger {
                kind: crate::api::TriggerKind::Retry,
                scheduled: None,
                upstream: None,
                retry_of: None,
            };
            skip_trigger(book, t, &why, actions);
        }
        None => {}
    }
    let upstream = upstream::ask(
        runner.scheduling.after.as_ref(),
        &mut book.upstreams,
        cluster.upstreams,
    );
    match upstream.trigger.clone() {
        // Suspended, an upstream run is taken into account and starts nothing (schedules
        // stop too; requests do not).
        Some(t) if runner.scheduling.suspend => {
            skip_trigger(book, t, "the object is suspended (spec.suspend)", actions)
        }
        t => incoming.extend(t),
    }
    let (scheduled, next_fire) = triggers::scheduled(
        runner.scheduling,
        &parsed,
        runner.meta,
        schedule,
        now,
        actions,
    );
    incoming.extend(scheduled);
    wake = earliest(wake, next_fire);

    for trigger in incoming {
        let busy = book
            .current_run
            .as_ref()
            .is_some_and(|r| r.phase == RunPhase::Running);
        if !busy {
            start_run(
                book,
                runner,
                trigger,
                false,
                &ctx,
                actions,
                &mut wake,
                &mut archived,
            );
            continue;
        }
        match runner.concurrency {
            ConcurrencyPolicy::Forbid => skip_trigger(
                book,
                trigger,
                "a run is in progress and concurrencyPolicy is Forbid",
                actions,
            ),
            ConcurrencyPolicy::Queue if book.queued_run.is_none() => {
                book.queued_run = Some(trigger.queued());
                actions.push(Event::normal(
                    reasons::RUN_QUEUED,
                    "QueueRun",
                    format!(
                        "{} run queued behind the run in progress",
                        trigger.describe()
                    ),
                ));
            }
            ConcurrencyPolicy::Queue => skip_trigger(
                book,
                trigger,
                "a run is in progress and one is already queued",
                actions,
            ),
            ConcurrencyPolicy::Replace => {
                if let Some(run) = book.current_run.as_mut() {
                    cancel_run(run, "replaced by a newer run", cluster.jobs, actions, now);
                }
                archive_finished(book, runner.history_limit, &mut archived);
                start_run(
                    book,
                    runner,
                    trigger,
                    false,
                    &ctx,
                    actions,
                    &mut wake,
                    &mut archived,
                );
            }
        }
    }
    // A run started above may have finished at once (every step skipped): the queue moves on.
    start_queued(book, runner, &ctx, actions, &mut wake, &mut archived);
    drop_unaccounted_creates(book, actions);
    cleanup(book, runner.history_limit, cluster.jobs, actions);
    super::conditions::set_recovered(
        conditions,
        recovered,
        archived.is_some(),
        runner.meta.generation,
        now,
    );
    let spec_error = match (parsed.error, &cluster.upstreams.cycle) {
        (Some(e), _) => Some((reasons::INVALID_SCHEDULE, e)),
        (None, Some(cycle)) => Some((
            reasons::UPSTREAM_CYCLE,
            format!(
                "spec.after makes a cycle ({cycle}): upstream runs start nothing until it is broken"
            ),
        )),
        (None, None) => None,
    };
    if cluster.upstreams.cycle.is_some() {
        // A cycle can be broken by an object further upstream, whose change wakes only its
        // direct downstreams: look again at this bound.
        wake = earliest(wake, Some(now + CYCLE_RECHECK));
    }
    Driven::Done(Done {
        archived,
        spec_error,
        missing_upstreams: upstream.missing,
        wake,
    })
}

/// A Job of ours that status does not account for: of a newer run than status has started, or
/// of a later attempt of a current step than status records. Status is written before a run's
/// first Job, and within a run together with its Jobs, so this is normally a cache that has
/// not yet seen our own status write.
fn unknown_job<'a>(book: &RunBook, jobs: &'a [JobView]) -> Option<&'a JobView> {
    let known = book.last_run_number.unwrap_or(0);
    jobs.iter().find(|j| {
        j.run > known
            || book.current_run.as_ref().is_some_and(|run| {
                run.id == j.run
                    && run
                        .steps
                        .iter()
                        .any(|s| s.name == j.step && s.attempts < j.attempt)
            })
    })
}

/// Status is behind its Jobs for longer than a cache can lag: take the Jobs' word for it.
/// Newer runs are counted (their Jobs, of no current run, are then cleaned up) and a later
/// attempt of a current step becomes the step's attempt. Returns what it did.
fn adopt_unknown_jobs(
    book: &mut RunBook,
    steps: &[Step],
    jobs: &[JobView],
    actions: &mut Vec<Action>,
) -> String {
    let newest = jobs.iter().map(|j| j.run).max().unwrap_or(0);
    if newest > book.last_run_number.unwrap_or(0) {
        book.last_run_number = Some(newest);
    }
    if let Some(run) = book.current_run.as_mut() {
        // The steps the Jobs show started that status does not: each becomes a step in
        // progress, unless a later one of them waits for it; the steps they wait for, which
        // must have finished for them to start, are closed. (In a line: the latest step the
        // Jobs show, and every step before it.)
        let unknown: Vec<usize> = (0..run.steps.len())
            .filter(|&i| {
                let step = &run.steps[i];
                jobs.iter()
                    .any(|j| j.run == run.id && j.step == step.name && j.attempt > step.attempts)
            })
            .collect();
        let mut closed: BTreeMap<usize, String> = BTreeMap::new();
        for &k in unknown.iter().rev() {
            if closed.contains_key(&k) {
                continue;
            }
            let mut stack = super::run::parents_in_run(run, steps, k);
            while let Some(p) = stack.pop() {
                if closed.contains_key(&p) {
                    continue;
                }
                closed.insert(p, run.steps[k].name.clone());
                stack.extend(super::run::parents_in_run(run, steps, p));
            }
        }
        for (&i, name) in &closed {
            let step = &mut run.steps[i];
            if step.phase.is_final() {
                continue;
            }
            // What it did is not in status any more; it is closed, not run again. Its Job is
            // named, so that none of them is unknown to the next decision.
            if let Some(job) = jobs
                .iter()
                .filter(|j| j.run == run.id && j.step == step.name && j.attempt > step.attempts)
                .max_by_key(|j| j.attempt)
            {
                step.attempts = job.attempt;
                step.job_name = Some(job.name.clone());
            }
            step.phase = StepPhase::Skipped;
            step.reason = Some(reasons::SKIP_STATUS_BEHIND_JOBS.into());
            step.message = Some(format!(
                "skipped: status was behind its Jobs, which show step {name} had started"
            ));
        }
        for &k in unknown.iter().filter(|k| !closed.contains_key(k)) {
            let step = &mut run.steps[k];
            if let Some(job) = jobs
                .iter()
                .filter(|j| j.run == run.id && j.step == step.name)
                .max_by_key(|j| j.attempt)
            {
                step.attempts = job.attempt;
                step.job_name = Some(job.name.clone());
                step.job_uid = None;
                step.attempt_failure = None;
                step.phase = StepPhase::Running;
                step.completion_time = None;
                step.message = None;
            }
        }
    }
    let what = format!(
        "status did not account for Jobs older than {}s; took them into status (newest run {newest})",
        STALE_LIMIT.as_secs()
    );
    actions.push(Event::warning(
        reasons::STATUS_BEHIND_JOBS,
        "AdoptJobs",
        what.clone(),
    ));
    what
}

/// Starts the queued run when no run is in progress.
fn start_queued(
    book: &mut RunBook,
    runner: &Runner,
    ctx: &RunContext,
    actions: &mut Vec<Action>,
    wake: &mut Option<Timestamp>,
    archived: &mut Option<RunStatus>,
) {
    if book.current_run.is_some() {
        return;
    }
    let Some(q) = book.queued_run.take() else {
        return;
    };
    start_run(
        book,
        runner,
        Trigger::from_queue(q),
        true,
        ctx,
        actions,
        wake,
        archived,
    );
}

#[allow(clippy::too_many_arguments)]
fn start_run(
    book: &mut RunBook,
    runner: &Runner,
    trigger: Trigger,
    from_queue: bool,
    ctx: &RunContext,
    actions: &mut Vec<Action>,
    wake: &mut Option<Timestamp>,
    archived: &mut Option<RunStatus>,
) {
    let base = match trigger.kind {
        crate::api::TriggerKind::Retry => {
            match retry_base(archived.as_ref().or(runner.last_run), trigger.retry_of) {
                Ok(base) => Some(base.clone()),
                // Queued behind a run that finished since, and is now the last one.
                Err(why) => return skip_trigger(book, trigger, &why, actions),
            }
        }
        _ => None,
    };
    let id = book.last_run_number.unwrap_or(0).saturating_add(1);
    book.last_run_number = Some(id);
    let mut run = new_run(id, runner.steps, &trigger, ctx.now);
    let reused = base.map(|base| reuse(&mut run, &base)).unwrap_or_default();
    let what = match (from_queue, trigger.scheduled) {
        (true, _) => format!(
            "run {id} started from the queue (queued by {})",
            trigger.describe()
        ),
        (false, Some(t)) => format!("run {id} started by the schedule (for {t})"),
        (false, None) => format!("run {id} started by {}", trigger.describe()),
    };
    let what = match reused.is_empty() {
        true => what,
        false => format!("{what}, reusing {}", reused.join(", ")),
    };
    actions.push(Event::normal(reasons::RUN_STARTED, "StartRun", what));
    *wake = earliest(*wake, advance(&mut run, ctx, actions));
    book.current_run = Some(run);
    archive_finished(book, runner.history_limit, archived);
}

/// The run a retry reuses: the last finished run (`last`), which status keeps with every
/// step's outcome. `wanted` is the run the request named, if any.
fn retry_base(last: Option<&RunStatus>, wanted: Option<i64>) -> Result<&RunStatus, String> {
    let Some(last) = last else {
        return Err(
            "no finished run keeps its steps' outcomes, so there is nothing to retry".into(),
        );
    };
    match wanted {
        Some(n) if n != last.id => Err(format!(
            "run {n} cannot be retried: status keeps the steps' outcomes of the last finished run only (run {})",
            last.id
        )),
        _ => Ok(last),
    }
}

/// Copies into a new run the steps that succeeded in `base`, as reused; returns their names.
/// A step reused by `base` itself keeps the run its Job belongs to.
fn reuse(run: &mut RunStatus, base: &RunStatus) -> Vec<String> {
    let mut reused = Vec::new();
    for step in run.steps.iter_mut() {
        let Some(done) = base.steps.iter().find(|b| {
            b.name == step.name && b.sync == step.sync && b.phase == StepPhase::Succeeded
        }) else {
            continue;
        };
        *step = crate::api::StepStatus {
            reused_from: Some(done.reused_from.unwrap_or(base.id)),
            ..done.clone()
        };
        reused.push(step.name.clone());
    }
    reused
}

fn skip_trigger(book: &mut RunBook, trigger: Trigger, why: &str, actions: &mut Vec<Action>) {
    book.skipped_triggers = Some(book.skipped_triggers.unwrap_or(0).saturating_add(1));
    actions.push(Event::warning(
        reasons::TRIGGER_SKIPPED,
        "SkipRun",
        format!("{} trigger skipped: {why}", trigger.describe()),
    ));
}

/// Moves a finished current run into the history, newest first, cut to `limit`.
fn archive_finished(book: &mut RunBook, limit: usize, archived: &mut Option<RunStatus>) {
    let Some(run) = book.current_run.take_if(|r| r.phase.is_finished()) else {
        return;
    };
    let summary = summarize(&run);
    if run.phase == RunPhase::Succeeded {
        book.last_successful_time = run.completion_time.clone();
    }
    book.last_run_result = Some(run.phase);
    book.runs.retain(|r| r.id != summary.id);
    book.runs.insert(0, summary);
    book.runs.truncate(limit);
    *archived = Some(run);
}

fn summarize(run: &RunStatus) -> RunSummary {
    RunSummary {
        id: run.id,
        trigger: run.trigger,
        upstream: run.upstream.clone(),
        retry_of: run.retry_of,
        phase: run.phase,
        start_time: run.start_time.clone(),
        completion_time: run.completion_time.clone(),
        failed_step: run
            .steps
            .iter()
            .find(|s| s.phase == StepPhase::Failed)
            .map(|s| s.name.clone()),
        message: run.message.clone(),
    }
}

/// Whether a Job is the current attempt of a step in progress of the running run.
fn accounted(
    running: Option<&RunStatus>,
    run: i64,
    step: &str,
    attempt: i32,
    uid: Option<&str>,
) -> bool {
    running.is_some_and(|r| {
        r.id == run
            && r.steps.iter().any(|s| {
                s.name == step
                    && !s.phase.is_final()
                    && s.attempts == attempt
                    && s.job_uid.as_deref().is_none_or(|u| Some(u) == uid)
            })
    })
}

fn running(book: &RunBook) -> Option<&RunStatus> {
    book.current_run
        .as_ref()
        .filter(|r| r.phase == RunPhase::Running)
}

/// A plan never creates a Job its own status does not account for: a create decided for a run
/// that the same decision then cancelled (a `Replace`, a cancel request) is dropped, with the
/// Event announcing it. Otherwise the cancelled run's Job would start beside the new run's.
fn drop_unaccounted_creates(book: &RunBook, actions: &mut Vec<Action>) {
    let running = running(book);
    let mut dropped: Vec<String> = Vec::new();
    actions.retain(|a| {
        let Action::CreateJob(job) = a else {
            return true;
        };
        let l = job.metadata.labels.as_ref();
        let label = |k: &str| l.and_then(|l| l.get(k)).cloned().unwrap_or_default();
        let keep = accounted(
            running,
            label(crate::api::labels::RUN).parse().unwrap_or(-1),
            &label(crate::api::labels::STEP),
            label(crate::api::labels::ATTEMPT).parse().unwrap_or(-1),
            None,
        );
        if !keep {
            dropped.extend(job.metadata.name.clone());
        }
        keep
    });
    actions.retain(
        |a| !matches!(a, Action::Event(e) if e.job.as_ref().is_some_and(|j| dropped.contains(j))),
    );
}

/// Level-triggered cleanup, on every reconcile: a Job that has not finished is deleted unless
/// it is the current attempt of a step in progress (so the Jobs of a cancelled, replaced or
/// failed run, of a removed step, or a stranger recreated under an attempt's name go, even
/// when an earlier delete was lost); a finished Job is deleted once its run has left the kept
/// history. Jobs already being deleted are left to finish.
fn cleanup(book: &RunBook, limit: usize, jobs: &[JobView], actions: &mut Vec<Action>) {
    let running = running(book);
    let kept: Vec<i64> = running
        .iter()
        .map(|r| r.id)
        .chain(book.runs.iter().take(limit).map(|r| r.id))
        .collect();
    for job in jobs.iter().filter(|j| !j.deleting) {
        let delete = if job.is_finished() {
            !kept.contains(&job.run)
        } else {
            !accounted(running, job.run, &job.step, job.attempt, Some(&job.uid))
        };
        if delete {
            actions.push(Action::DeleteJob {
                name: job.name.clone(),
            });
        }
    }
}

/// While status waits to catch up with its Jobs, the unfinished Jobs of runs that it already
/// shows as over still go (a cancelled run's, a replaced run's): no newer status can bring such
/// a run back, since runs never resume and their numbers only grow. Jobs of the running run or
/// of a run status does not know yet wait for status, whose word on them is not in.
fn delete_jobs_of_finished_runs(book: &RunBook, jobs: &[JobView], actions: &mut Vec<Action>) {
    let over = |run: i64| match running(book) {
        Some(current) => run < current.id,
        None => book.last_run_number.is_some_and(|n| run <= n),
    };
    for job in jobs
        .iter()
        .filter(|j| !j.deleting && !j.is_finished() && over(j.run))
    {
        actions.push(Action::DeleteJob {
            name: job.name.clone(),
        });
    }
}

/// The history limit as a count.
pub(super) fn history_limit(limit: i32) -> usize {
    usize::try_from(limit.max(1)).unwrap_or(1)
}
