//! The one run engine, for both kinds: cancel requests, advancing the current run, archiving
//! it, triggers under the concurrency policy, starting the next run, and deleting every Job
//! that the runs no longer account for. A sequence's runs have its steps; a Sync's own runs
//! have one step that runs the Sync itself.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

use super::reasons;
use super::run::{RunContext, advance, cancel_run, new_run};
use super::triggers::{self, Trigger};
use super::upstream::{self, Upstreams};
use super::{Action, Event, Holder, JobOwner, JobView, Plan, earliest};
use crate::api::{
    ConcurrencyPolicy, FailureStreak, RunBook, RunPhase, RunStatus, RunSummary, ScheduleSpec,
    ScheduleStatus, Step, StepPhase, StepStatus, SucceededStep, Sync,
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

impl Runner<'_> {
    /// Whether its runs can be retried: a sequence's can; a Sync's own runs have one step,
    /// which a new run runs again, so they keep nothing for a retry.
    fn retries(&self) -> bool {
        self.owner.kind == "SyncSequence"
    }
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
    pub archived: Option<Box<RunStatus>>,
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
            now,
            actions,
        )),
        None => None,
    };
    let parsed = triggers::parse_schedule(
        runner.scheduling,
        runner.meta.creation_timestamp.as_ref().map(|t| t.0),
    );
    let jitter = crate::schedule::jitter_offset(
        runner.meta.uid.as_deref().unwrap_or_default(),
        runner.scheduling.jitter_seconds.unwrap_or(0),
    );
    let ctx = RunContext {
        owner: &runner.owner,
        steps: runner.steps,
        syncs: cluster.syncs,
        jobs: cluster.jobs,
        holders: cluster.holders,
        max_parallel: runner.max_parallel,
        fail_fast: runner.fail_fast,
        schedule: parsed.parsed.as_ref(),
        jitter,
        now,
    };
    let mut archived = None;

    if triggers::cancel_requested(runner.meta, &mut book.last_handled_cancel_at) {
        match book.current_run.as_deref_mut() {
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

    super::backfill::requests(runner.meta, book, &parsed, cluster.jobs, now, actions);

    // A resume starts the count of failed runs again (a schedule they stopped fires again);
    // a run that ends in this decision counts after it. The count is kept only while
    // `stopScheduleAfterFailures` is set: set again, it starts from zero.
    if triggers::resume_requested(runner.meta, &mut book.last_handled_resume_at)
        || runner.scheduling.stop_schedule_after_failures.is_none()
    {
        book.failure_streak = None;
    }

    let mut wake = None;
    if let Some(run) = book.current_run.as_deref_mut()
        && run.phase == RunPhase::Running
    {
        wake = earliest(wake, advance(run, &ctx, actions));
    }
    archive_finished(book, runner, &mut archived);

    // The queued run goes first, before triggers that arrive now (which then queue behind it).
    start_queued(book, runner, &ctx, actions, &mut wake, &mut archived);

    // Triggers: manual first, then the schedule; each subject to the concurrency policy.
    let mut incoming: Vec<Trigger> = Vec::new();
    incoming.extend(triggers::manual(
        runner.meta,
        &mut book.last_handled_request_at,
    ));
    match triggers::retry(runner.meta, &mut book.last_handled_retry_at) {
        Some(Ok(mut t)) => match retry_base(runner, book, archived.as_deref(), t.retry_of) {
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
    let stop = triggers::schedule_stop(runner.scheduling, book);
    let stopped = stop.as_ref().is_some_and(|(stopped, _)| *stopped);
    if !stopped && super::conditions::is_true(conditions, super::conditions::SCHEDULE_STOPPED) {
        // Restarted: the fire times that passed while it was stopped are not made up (a run
        // that succeeded restarts it, and has just synced; a resume may be followed by a
        // request), so it fires next at its first time after now.
        schedule.schedule_restart_time = Some(Time(now));
    }
    super::conditions::set_schedule_stopped(conditions, stop, runner.meta.generation, now, actions);
    let (scheduled, next_fire) = triggers::scheduled(
        runner.scheduling,
        &parsed,
        runner.meta,
        jitter,
        schedule,
        now,
        actions,
        stopped,
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
                book.queued_run = Some(Box::new(trigger.queued()));
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
                if let Some(run) = book.current_run.as_deref_mut() {
                    cancel_run(run, "replaced by a newer run", cluster.jobs, actions, now);
                }
                archive_finished(book, runner, &mut archived);
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
    // A backfill takes what is left: a decision with no run in progress or queued.
    super::backfill::go_on(
        book,
        parsed.parsed.as_ref(),
        now,
        actions,
        |book, at, actions| {
            let trigger = Trigger {
                kind: crate::api::TriggerKind::Backfill,
                scheduled: Some(at),
                upstream: None,
                retry_of: None,
            };
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
        },
    );
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
            || book.current_run.as_deref().is_some_and(|run| {
                run.id == j.run
                    && run
                        .steps
                        .iter()
                        .any(|s| s.name == j.step && s.attempts < j.attempt)
            })
    })
}

/// Status is behind its Jobs for longer than a cache can lag: take the Jobs' word for it.
/// Newer runs are counted (their Jobs, of no current run, are then cleaned up), and the current
/// run is rebuilt from its Jobs (see [`rebuild_from_jobs`]). Returns what it did.
fn adopt_unknown_jobs(
    book: &mut RunBook,
    steps: &[Step],
    jobs: &[JobView],
    now: Timestamp,
    actions: &mut Vec<Action>,
) -> String {
    let newest = jobs.iter().map(|j| j.run).max().unwrap_or(0);
    if newest > book.last_run_number.unwrap_or(0) {
        book.last_run_number = Some(newest);
    }
    if let Some(run) = book.current_run.as_deref_mut() {
        rebuild_from_jobs(run, steps, jobs, now);
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

/// Rebuilds a run whose status is behind its Jobs. A step with a Job of a later attempt than
/// status records started that attempt: it follows its newest Job (Running on that attempt,
/// whose outcome the first pass of `advance` then reads), and is never started again. Every
/// step it waits for, directly or not, must have finished for it to start. One that status
/// shows not final still has its say through its newest Job, if it has one: Running, it stays
/// Running (a branch beside is no reason to close it). Only one with no Job left (deleted, a
/// TTL), or whose newest Job failed with retries left (then the attempt after it, which let
/// the child start, is gone), is closed as Skipped.
fn rebuild_from_jobs(run: &mut RunStatus, steps: &[Step], jobs: &[JobView], now: Timestamp) {
    let id = run.id;
    // The newest Job of a step from attempt `from` on.
    let newest = |name: &str, from: i32| {
        jobs.iter()
            .filter(|j| j.run == id && j.step == name && j.attempt >= from)
            .max_by_key(|j| j.attempt)
    };
    let unknown: Vec<usize> = (0..run.steps.len())
        .filter(|&i| {
            let step = &run.steps[i];
            newest(&step.name, step.attempts.saturating_add(1)).is_some()
        })
        .collect();
    // Each ancestor of a step that started, with the first such step, which the closing
    // message names.
    let mut ancestors: BTreeMap<usize, String> = BTreeMap::new();
    for &k in &unknown {
        let mut stack = super::run::parents_in_run(run, steps, k);
        while let Some(p) = stack.pop() {
            if ancestors.contains_key(&p) {
                continue;
            }
            ancestors.insert(p, run.steps[k].name.clone());
            stack.extend(super::run::parents_in_run(run, steps, p));
        }
    }
    for i in 0..run.steps.len() {
        let started = ancestors.get(&i);
        let step = &mut run.steps[i];
        if !unknown.contains(&i) && (started.is_none() || step.phase.is_final()) {
            continue;
        }
        // Of a later attempt than status records if there is one, else of the recorded one.
        let job = newest(&step.name, step.attempts);
        let retries = steps
            .iter()
            .find(|s| s.name == step.name)
            .map_or(0, |s| s.retries);
        let retry_due = job.is_some_and(|j| {
            matches!(j.outcome, super::JobOutcome::Failed { .. }) && j.attempt <= retries
        });
        match (started.filter(|_| job.is_none() || retry_due), job) {
            (None, Some(job)) => follow_job(step, job),
            (Some(started), job) => {
                // What it did is not in status any more; it is closed, not run again. A Job
                // it has left is named, so that none of them is unknown to the next decision.
                if let Some(job) = job {
                    step.attempts = job.attempt;
                    step.job_name = Some(job.name.clone());
                }
                super::run::skip(
                    step,
                    reasons::SKIP_STATUS_BEHIND_JOBS,
                    format!(
                        "skipped: status was behind its Jobs, which show step {started} had started"
                    ),
                    now,
                );
            }
            // Unknown steps have a Job: a step without one is here only as an ancestor.
            (None, None) => {}
        }
    }
}

/// `step` follows `job`, its newest Job: Running on the Job's attempt.
fn follow_job(step: &mut StepStatus, job: &JobView) {
    if step.attempts != job.attempt {
        // A later attempt: what status had of the one before no longer applies.
        step.attempts = job.attempt;
        step.job_uid = None;
        step.attempt_failure = None;
    }
    step.job_name = Some(job.name.clone());
    step.phase = StepPhase::Running;
    step.start_time = step.start_time.take().or(job.created.map(Time));
    step.completion_time = None;
    step.message = None;
    step.reason = None;
}

/// Starts the queued run when no run is in progress.
fn start_queued(
    book: &mut RunBook,
    runner: &Runner,
    ctx: &RunContext,
    actions: &mut Vec<Action>,
    wake: &mut Option<Timestamp>,
    archived: &mut Option<Box<RunStatus>>,
) {
    if book.current_run.is_some() {
        return;
    }
    let Some(q) = book.queued_run.take() else {
        return;
    };
    let stopped = triggers::schedule_stop(runner.scheduling, book).filter(|(stopped, _)| *stopped);
    if let Some((_, why)) = stopped.filter(|_| q.trigger == crate::api::TriggerKind::Schedule) {
        // Queued before the run that stopped the schedule ended: the schedule fires no more.
        return skip_trigger(book, Trigger::from_queue(*q), &why, actions);
    }
    start_run(
        book,
        runner,
        Trigger::from_queue(*q),
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
    archived: &mut Option<Box<RunStatus>>,
) {
    let base = match trigger.kind {
        crate::api::TriggerKind::Retry => {
            match retry_base(runner, book, archived.as_deref(), trigger.retry_of) {
                Ok(base) => Some(base),
                // Queued behind runs that finished since (the last of which it may now name,
                // or which pushed its run out of the history): the skip says it came from the
                // queue (its request was handled when it was queued).
                Err(why) if from_queue => {
                    let why = format!("taken from the queue, {why}");
                    return skip_trigger(book, trigger, &why, actions);
                }
                // Behind the run it replaced, which is now the last one.
                Err(why) => return skip_trigger(book, trigger, &why, actions),
            }
        }
        _ => None,
    };
    let id = book.last_run_number.unwrap_or(0).saturating_add(1);
    book.last_run_number = Some(id);
    let mut run = new_run(id, runner.steps, &trigger, ctx.now);
    if let Some(base) = &base {
        // A retry re-syncs what the retried run was for: its Jobs get that run's fire time,
        // and so its data interval.
        run.scheduled_time = base.scheduled_time.clone();
    }
    let reused = base.map(|base| reuse(&mut run, &base)).unwrap_or_default();
    let what = match (from_queue, trigger.scheduled) {
        (true, _) => format!(
            "run {id} started from the queue (queued by {})",
            trigger.describe()
        ),
        (false, Some(t)) if trigger.kind == crate::api::TriggerKind::Backfill => {
            format!("run {id} started by the backfill, for {t}")
        }
        (false, Some(t)) => format!("run {id} started by the schedule (for {t})"),
        (false, None) => format!("run {id} started by {}", trigger.describe()),
    };
    let what = match reused.is_empty() {
        true => what,
        false => format!("{what}, reusing {}", reused.join(", ")),
    };
    actions.push(Event::normal(reasons::RUN_STARTED, "StartRun", what));
    *wake = earliest(*wake, advance(&mut run, ctx, actions));
    book.current_run = Some(Box::new(run));
    archive_finished(book, runner, archived);
}

/// What a retry reuses: the steps that succeeded in run `id`.
struct RetryBase {
    id: i64,
    scheduled_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    succeeded: Vec<StepStatus>,
}

/// The run a retry reuses: run `wanted`, or the last finished run when the request names none.
/// It is taken from `lastRun` (`last`: every step's outcome, messages too) or else from the
/// history (`book.runs`, which keeps the steps that succeeded of each run that did not). A run
/// in neither, a run that succeeded (nothing to retry: a new run is a request), and a run the
/// history recorded before it kept its steps are refused, and the reason says which.
fn retry_base(
    runner: &Runner,
    book: &RunBook,
    archived: Option<&RunStatus>,
    wanted: Option<i64>,
) -> Result<RetryBase, String> {
    if !runner.retries() {
        return Err(
            "a Sync's own run has one step, so there is nothing to reuse: request a run (syncseq.dev/requestedAt) to run it again"
                .into(),
        );
    }
    let last = archived.or(runner.last_run);
    let newest = last
        .map(|r| r.id)
        .into_iter()
        .chain(book.runs.iter().map(|r| r.id))
        .max();
    let Some(newest) = newest else {
        return Err("no run has finished yet, so there is nothing to retry".into());
    };
    let id = wanted.unwrap_or(newest);
    let succeeded = |id: i64| {
        format!(
            "run {id} Succeeded, so there is nothing to retry (request a run with syncseq.dev/requestedAt to run every step again)"
        )
    };
    if let Some(run) = last.filter(|r| r.id == id) {
        if run.phase == RunPhase::Succeeded {
            return Err(succeeded(id));
        }
        let succeeded = run
            .steps
            .iter()
            .filter(|s| s.phase == StepPhase::Succeeded)
            .cloned()
            .collect();
        return Ok(RetryBase {
            id,
            scheduled_time: run.scheduled_time.clone(),
            succeeded,
        });
    }
    let Some(summary) = book.runs.iter().find(|r| r.id == id) else {
        if book.current_run.as_deref().is_some_and(|r| r.id == id) {
            return Err(format!(
                "run {id} has not finished: a run can be retried once it has"
            ));
        }
        let kept: Vec<String> = book.runs.iter().map(|r| r.id.to_string()).collect();
        return Err(format!(
            "run {id} is neither the last finished run ({newest}) nor in the history, which keeps runs {} (spec.historyLimit)",
            match kept.is_empty() {
                true => "none".into(),
                false => kept.join(", "),
            }
        ));
    };
    if summary.phase == RunPhase::Succeeded {
        return Err(succeeded(id));
    }
    let Some(steps) = summary.succeeded_steps.as_ref() else {
        return Err(format!(
            "run {id} cannot be retried: the history recorded it before it kept the steps that succeeded, so only the last finished run ({newest}) can be"
        ));
    };
    let succeeded = steps.iter().map(SucceededStep::to_status).collect();
    Ok(RetryBase {
        id,
        scheduled_time: summary.scheduled_time.clone(),
        succeeded,
    })
}

/// Copies into a new run the steps that succeeded in `base`, as reused; returns their names.
/// A step reused by `base` itself keeps the run its Job belongs to.
fn reuse(run: &mut RunStatus, base: &RetryBase) -> Vec<String> {
    let mut reused = Vec::new();
    for step in run.steps.iter_mut() {
        let Some(done) = base
            .succeeded
            .iter()
            .find(|b| b.name == step.name && b.sync == step.sync)
        else {
            continue;
        };
        *step = StepStatus {
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

/// Moves a finished current run into the history, newest first, cut to the history limit.
fn archive_finished(book: &mut RunBook, runner: &Runner, archived: &mut Option<Box<RunStatus>>) {
    let Some(run) = book.current_run.take_if(|r| r.phase.is_finished()) else {
        return;
    };
    let summary = summarize(&run, runner.retries());
    if run.phase == RunPhase::Succeeded {
        book.last_successful_time = run.completion_time.clone();
    }
    if runner.scheduling.stop_schedule_after_failures.is_some() {
        count_failures(&mut book.failure_streak, &run);
    }
    super::backfill::count_finished(book.backfill.as_deref_mut(), &run);
    book.last_run_result = Some(run.phase);
    book.runs.retain(|r| r.id != summary.id);
    book.runs.insert(0, summary);
    book.runs.truncate(runner.history_limit);
    *archived = Some(run);
}

/// How many failed runs of the streak it names (the newest): enough to find them in the
/// history, small enough for status at thousands of objects.
const STREAK_RUNS: usize = 10;

/// A finished run's part in the failed runs in a row (`stopScheduleAfterFailures`), whatever
/// started it: a failure adds to it; a success, with errors or without, ends it; a cancelled
/// run (by request, or replaced) says nothing of the destination, and leaves it as it is.
fn count_failures(streak: &mut Option<FailureStreak>, run: &RunStatus) {
    match run.phase {
        RunPhase::Failed => {
            let s = streak.get_or_insert_with(Default::default);
            s.count = s.count.saturating_add(1);
            s.runs.push(run.id);
            let extra = s.runs.len().saturating_sub(STREAK_RUNS);
            s.runs.drain(..extra);
        }
        RunPhase::Succeeded | RunPhase::SucceededWithErrors => *streak = None,
        RunPhase::Cancelled | RunPhase::Running => {}
    }
}

/// A run's line in the history. With `retries`, a run that did not succeed keeps its steps
/// that did, for a retry of it once it is no longer the last finished run: at thousands of
/// sequences status is memory, so nothing more (no messages, no other steps, nothing for a
/// run that succeeded).
fn summarize(run: &RunStatus, retries: bool) -> RunSummary {
    let succeeded_steps = (retries && run.phase != RunPhase::Succeeded).then(|| {
        run.steps
            .iter()
            .filter(|s| s.phase == StepPhase::Succeeded)
            .map(SucceededStep::of)
            .collect()
    });
    RunSummary {
        id: run.id,
        trigger: run.trigger,
        scheduled_time: run.scheduled_time.clone(),
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
        succeeded_steps,
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
        .as_deref()
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
