//! Advancing one run: every step whose parents met its `runWhen` rule starts, up to
//! `maxParallel`, and each step's failure policy is applied. Shared by both kinds: a Sync's own
//! run is a one-step run.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::graph;
use super::reasons::{self, CREATE_REFUSED, JOB_DELETED};
use super::{
    Action, Event, Holder, JobIdentity, JobOutcome, JobOwner, JobView, POD_RESULT_GRACE, Report,
    RunFacts, build_job, earliest, job_name,
};
use crate::api::{
    AttemptFailure, FailurePolicy, RunPhase, RunStatus, Step, StepPhase, StepStatus, Sync,
};
use crate::schedule::ScheduleSet;

/// What advancing a run looks at besides the run itself.
pub(super) struct RunContext<'a> {
    pub owner: &'a JobOwner,
    /// The steps as the spec has them now (a step removed mid-run is skipped).
    pub steps: &'a [Step],
    /// Syncs of the namespace, by name (at least the referenced ones).
    pub syncs: &'a BTreeMap<String, Sync>,
    /// The Jobs this object controls (matched by owner UID).
    pub jobs: &'a [JobView],
    /// For each Sync, what holds it now, across the namespace.
    pub holders: &'a BTreeMap<String, Vec<Holder>>,
    /// `spec.maxParallel`: the most attempts of one run in flight at once.
    pub max_parallel: Option<usize>,
    /// `spec.failFast`: after a Stop failure, start nothing new.
    pub fail_fast: bool,
    /// The schedule, when the spec has a valid one: its Jobs' data intervals come from it.
    pub schedule: Option<&'a (ScheduleSet, TimeZone)>,
    /// `spec.jitterSeconds`' offset of this object: how long after its fire time a scheduled
    /// run starts.
    pub jitter: jiff::SignedDuration,
    pub now: Timestamp,
}

/// A fresh run with every step Pending.
pub(super) fn new_run(
    id: i64,
    steps: &[Step],
    trigger: &super::triggers::Trigger,
    now: Timestamp,
) -> RunStatus {
    RunStatus {
        id,
        trigger: trigger.kind,
        scheduled_time: trigger.scheduled.map(Time),
        upstream: trigger.upstream.clone(),
        retry_of: trigger.retry_of,
        start_time: Time(now),
        completion_time: None,
        phase: RunPhase::Running,
        stopped_by: None,
        progress: format!("0/{}", steps.len()),
        steps: steps
            .iter()
            .map(|s| StepStatus::pending(&s.name, &s.sync_ref.name))
            .collect(),
        message: None,
    }
}

/// Moves a running run forward as far as the observed Jobs allow. Returns when to wake up.
///
/// Two passes over the steps, in order. The first follows every attempt in flight (its Job
/// finished, failed, vanished), which frees places under `maxParallel` and Syncs. The second
/// starts, waits or skips every other step by its `runWhen` rule over its parents. Parents are
/// always listed earlier, so one pass in order sees every step that became ready during it, and
/// one decision starts every step that can start: a fan-out of k children is one plan.
pub(super) fn advance(
    run: &mut RunStatus,
    ctx: &RunContext,
    actions: &mut Vec<Action>,
) -> Option<Timestamp> {
    let mut wake = None;
    let now = ctx.now;
    let mut pass = Pass::of(run, ctx);
    // Attempts whose Job exists (or ended without one) first, then those status recorded but
    // whose Job was never created: a Stop failure found in the first sweep then keeps, under
    // failFast, the second from creating anything.
    let unseen = |run: &RunStatus, i: usize| {
        let step = &run.steps[i];
        step.job_uid.is_none()
            && step
                .attempt_failure
                .as_ref()
                .is_none_or(|f| f.attempt != step.attempts)
            && !ctx
                .jobs
                .iter()
                .any(|j| j.run == run.id && j.step == step.name && j.attempt == step.attempts)
    };
    let order: Vec<usize> = (0..run.steps.len())
        .filter(|&i| !unseen(run, i))
        .chain((0..run.steps.len()).filter(|&i| unseen(run, i)))
        .collect();
    for i in order {
        if run.steps[i].phase != StepPhase::Running {
            continue;
        }
        pass.release(&run.steps[i]);
        let Some(spec) = ctx.steps.iter().find(|s| s.name == run.steps[i].name) else {
            // Removed from the spec mid-run: its Job, accounted for no more, is deleted. Until
            // the delete is under way it still holds its place.
            removed(&mut run.steps[i], now);
            pass.take(run.id, &run.steps[i], ctx);
            continue;
        };
        let at = follow(run, i, spec, ctx, &mut pass, actions);
        wake = earliest(wake, at);
    }
    pass.following = false;
    let mut skipped: Vec<usize> = Vec::new();
    for i in 0..run.steps.len() {
        if run.steps[i].phase.is_final() || run.steps[i].phase == StepPhase::Running {
            continue;
        }
        let spec = ctx.steps.iter().find(|s| s.name == run.steps[i].name);
        let parents: Vec<(&str, Option<graph::Ended>)> = parents_in_run(run, ctx.steps, i)
            .into_iter()
            .map(|p| {
                let step = &run.steps[p];
                // A Failed parent whose failure was under `Stop` skips an `AllSucceeded`
                // child at once, in the pass it failed in; so in a later decision a Failed
                // parent with a child still pending failed under `Continue`, unless it is the
                // failure the run records.
                let stopped = run.stopped_by.as_deref() == Some(step.name.as_str())
                    || pass.stopped.contains(&p);
                (step.name.as_str(), graph::ended(step, stopped))
            })
            .collect();
        let rule = spec.map(|s| s.run_when).unwrap_or_default();
        // A step that started met its rule then; its parents have not changed since.
        let verdict = match run.steps[i].attempts {
            0 => graph::verdict(rule, &parents),
            _ => graph::Verdict::Run,
        };
        let step = &mut run.steps[i];
        match verdict {
            graph::Verdict::Wait(on) => {
                if step.phase == StepPhase::Pending {
                    step.message = Some(format!("waiting for {}", on.join(", ")));
                }
                continue;
            }
            graph::Verdict::Skip { reason, because } => {
                let why = match reason {
                    reasons::SKIP_UPSTREAM_SUCCEEDED => {
                        "skipped: runWhen is AnyFailed and no step it depends on failed".into()
                    }
                    // The step that failed, the same for every descendant: a chain of skips
                    // names the cause, not the skipped step before it.
                    _ => format!("skipped: step {} failed", cause(run, &because)),
                };
                let step = &mut run.steps[i];
                skip(step, reason, why, now);
                skipped.push(i);
                continue;
            }
            graph::Verdict::Run => {}
        }
        let Some(spec) = spec else {
            // Removed from the spec while the run was in progress: skipped when its turn
            // comes, and the steps after it go on as if it had run.
            removed(&mut run.steps[i], now);
            continue;
        };
        if let Some(stopper) = pass.fail_fast_after.clone() {
            let step = &mut run.steps[i];
            if fail_fast(step, &stopper, step.attempts == 0, now, actions) {
                skipped.push(i);
            }
            continue;
        }
        let at = follow(run, i, spec, ctx, &mut pass, actions);
        wake = earliest(wake, at);
    }
    run.progress = progress(run);
    let ended = run.steps.iter().all(|s| s.phase.is_final());
    if !ended {
        // Skips that the run's own end does not explain (other steps go on) are announced.
        for &i in &skipped {
            let step = &run.steps[i];
            actions.push(Event::warning(
                reasons::STEP_SKIPPED,
                "SkipStep",
                format!(
                    "step {} skipped ({}): {}",
                    step.name,
                    step.reason.as_deref().unwrap_or_default(),
                    step.message
                        .as_deref()
                        .unwrap_or_default()
                        .trim_start_matches("skipped: ")
                ),
            ));
        }
        return wake;
    }
    finish_run(run, now, actions);
    wake
}

/// With `failFast`, after step `stopper` failed under `Stop`, a step starts nothing: one that
/// never started is Skipped (returns true), one between attempts keeps its failed attempt and
/// ends Failed, with a Warning.
fn fail_fast(
    step: &mut StepStatus,
    stopper: &str,
    never_started: bool,
    now: Timestamp,
    actions: &mut Vec<Action>,
) -> bool {
    if never_started {
        skip(
            step,
            reasons::SKIP_FAIL_FAST,
            format!("skipped: step {stopper} failed and failFast is set"),
            now,
        );
        return true;
    }
    actions.push(Event::warning(
        reasons::STEP_FAILED,
        "FailStep",
        format!(
            "step {} not retried: step {stopper} failed and failFast is set",
            step.name
        ),
    ));
    let last = step.message.clone().unwrap_or_default();
    finish_step(
        step,
        StepPhase::Failed,
        Some(format!(
            "not retried (failFast after step {stopper} failed): {last}"
        )),
        now,
    );
    false
}

/// A step removed from the spec while the run was in progress is skipped.
fn removed(step: &mut StepStatus, now: Timestamp) {
    skip(
        step,
        reasons::SKIP_STEP_REMOVED,
        "skipped: step removed from the sequence".into(),
        now,
    );
}

/// Everything a pass over the steps shares: the places under `maxParallel`, the Syncs the
/// run's own attempts in flight hold, and the Stop failures it saw.
struct Pass {
    /// Steps with an attempt in flight: Running in status, or with an unfinished Job of this
    /// run in the cache (status may say otherwise: a partial write, a Job not yet seen).
    in_flight: BTreeSet<String>,
    limit: Option<usize>,
    /// Sync → the step of this run whose attempt in flight runs it.
    syncs: BTreeMap<String, String>,
    /// Steps that failed under `Stop` in this pass (the first is in `run.stopped_by`).
    stopped: Vec<usize>,
    /// With `failFast`, the step whose Stop failure starts nothing new (`run.stopped_by`).
    fail_fast_after: Option<String>,
    /// In the first pass, which follows the attempts in flight and starts nothing new.
    following: bool,
}

impl Pass {
    fn of(run: &RunStatus, ctx: &RunContext) -> Self {
        let mut pass = Pass {
            in_flight: BTreeSet::new(),
            limit: ctx.max_parallel,
            syncs: BTreeMap::new(),
            stopped: Vec::new(),
            fail_fast_after: run.stopped_by.clone().filter(|_| ctx.fail_fast),
            following: true,
        };
        for step in &run.steps {
            pass.take(run.id, step, ctx);
        }
        // A Job of the run for no step of it runs all the same (status restored from a backup
        // gave a run's number out again, then an older copy came back, of steps since renamed):
        // until its delete is under way, it holds its place.
        for job in ctx.jobs.iter().filter(|j| {
            j.run == run.id
                && !j.is_finished()
                && !j.deleting
                && run.steps.iter().all(|s| s.name != j.step)
        }) {
            pass.in_flight.insert(job.step.clone());
        }
        pass
    }

    /// Counts `step` as in flight if it is.
    fn take(&mut self, run: i64, step: &StepStatus, ctx: &RunContext) {
        let job = ctx
            .jobs
            .iter()
            .any(|j| j.run == run && j.step == step.name && !j.is_finished() && !j.deleting);
        if step.phase == StepPhase::Running || job {
            self.in_flight.insert(step.name.clone());
            self.syncs.insert(step.sync.clone(), step.name.clone());
        }
    }

    /// A step's attempt in flight is being looked at again: it gives its place and Sync back,
    /// and takes them again if it is still (or again) in flight.
    fn release(&mut self, step: &StepStatus) {
        self.in_flight.remove(&step.name);
        self.syncs.retain(|_, s| *s != step.name);
    }

    fn full(&self) -> bool {
        self.limit.is_some_and(|l| self.in_flight.len() >= l)
    }
}

/// Follows step `i` one decision further (its attempt in flight, or its start), applies the
/// outcome, and returns when to look again.
fn follow(
    run: &mut RunStatus,
    i: usize,
    spec: &Step,
    ctx: &RunContext,
    pass: &mut Pass,
    actions: &mut Vec<Action>,
) -> Option<Timestamp> {
    let progress = step_progress(run, i, spec, ctx, pass, actions);
    pass.take(run.id, &run.steps[i], ctx);
    match progress {
        Progress::Blocked(at) => at,
        Progress::Done { stop: Some(reason) } => {
            pass.stopped.push(i);
            if run.stopped_by.is_none() {
                run.stopped_by = Some(run.steps[i].name.clone());
                run.message = Some(reason);
                if ctx.fail_fast {
                    pass.fail_fast_after = run.stopped_by.clone();
                }
            }
            None
        }
        Progress::Done { stop: None } => None,
    }
}

/// Indexes into `run.steps` of the steps step `i` waits for: those its `dependsOn` names, or
/// the step before it in the run. The run's own order, not the spec's, is the default: a spec
/// edited mid-run (steps added, removed, moved) then changes no line of the run into branches.
pub(super) fn parents_in_run(run: &RunStatus, steps: &[Step], i: usize) -> Vec<usize> {
    let name = &run.steps[i].name;
    match steps.iter().position(|s| s.name == *name) {
        Some(at) if steps[at].depends_on.is_some() => graph::parents(steps, at)
            .into_iter()
            .filter_map(|p| run.steps[..i].iter().position(|s| s.name == p))
            .collect(),
        _ => i.checked_sub(1).into_iter().collect(),
    }
}

/// The step whose failure a skip goes back to: a skipped parent passes on its own cause.
fn cause(run: &RunStatus, parent: &str) -> String {
    let Some(step) = run.steps.iter().find(|s| s.name == parent) else {
        return parent.to_string();
    };
    match (step.phase, step.message.as_deref()) {
        (StepPhase::Skipped, Some(m)) => m
            .strip_prefix("skipped: step ")
            .and_then(|m| m.strip_suffix(" failed"))
            .map_or_else(|| parent.to_string(), str::to_string),
        _ => parent.to_string(),
    }
}

/// Every step is final: the run ends, `Failed` if a step failed under `Stop`, else
/// `Succeeded` or `SucceededWithErrors`.
fn finish_run(run: &mut RunStatus, now: Timestamp, actions: &mut Vec<Action>) {
    run.completion_time = Some(Time(now));
    if run.stopped_by.is_some() {
        run.phase = RunPhase::Failed;
        actions.push(Event::warning(
            reasons::RUN_FAILED,
            "StopRun",
            run.message.clone().unwrap_or_default(),
        ));
        return;
    }
    let failed: Vec<&str> = run
        .steps
        .iter()
        .filter(|s| s.phase == StepPhase::Failed)
        .map(|s| s.name.as_str())
        .collect();
    if failed.is_empty() {
        run.phase = RunPhase::Succeeded;
        run.message = Some("all steps succeeded".into());
        actions.push(Event::normal(
            reasons::RUN_SUCCEEDED,
            "CompleteRun",
            format!("run {} succeeded", run.id),
        ));
    } else {
        run.phase = RunPhase::SucceededWithErrors;
        run.message = Some(format!(
            "finished with failed steps (continued past them): {}",
            failed.join(", ")
        ));
        actions.push(Event::warning(
            reasons::RUN_SUCCEEDED_WITH_ERRORS,
            "CompleteRun",
            format!(
                "run {} finished; failed steps: {}",
                run.id,
                failed.join(", ")
            ),
        ));
    }
}

enum Progress {
    /// The step is not final yet. Wake at the time, if any.
    Blocked(Option<Timestamp>),
    /// The step reached its final phase; `stop` carries the reason when the run must stop.
    Done { stop: Option<String> },
}

fn step_progress(
    run: &mut RunStatus,
    i: usize,
    spec: &Step,
    ctx: &RunContext,
    pass: &Pass,
    actions: &mut Vec<Action>,
) -> Progress {
    let now = ctx.now;
    let run_id = run.id;
    let facts = RunFacts {
        trigger: run.trigger,
        scheduled: run.scheduled_time.as_ref().map(|t| t.0),
        upstream: run.upstream.as_ref(),
        schedule: ctx.schedule,
        jitter: ctx.jitter,
    };
    let step = &mut run.steps[i];
    if step.attempts == 0 {
        return try_start(run_id, &facts, step, spec, 1, ctx, pass, actions);
    }
    let attempt = step.attempts;
    let ended = match attempt_state(run_id, step, ctx, actions) {
        Attempt::NotCreated => {
            // Status records the attempt but its Job was never seen: the controller stopped
            // between writing status and creating the Job. Creating it (same name) is safe.
            return try_start(run_id, &facts, step, spec, attempt, ctx, pass, actions);
        }
        Attempt::Running => {
            step.phase = StepPhase::Running;
            return Progress::Blocked(None);
        }
        Attempt::AwaitingResult(at) => return Progress::Blocked(Some(at)),
        Attempt::Ended(ended) => ended,
    };
    let Ended {
        outcome,
        finished,
        report,
        job,
    } = ended;
    step.rows_synced = report.rows_synced;
    step.rows_rejected = report.rows_rejected;
    let (timed_out, reason) = match outcome {
        JobOutcome::Succeeded => return succeeded(step, spec, &report, &job, actions, now),
        JobOutcome::Failed { timed_out, reason } => (timed_out, reason),
        JobOutcome::Active => unreachable!("an ended attempt is not active"),
    };
    let why = failure_message(timed_out, &reason, &report, spec.timeout_seconds);
    if attempt <= spec.retries {
        let delay = retry_delay(spec, attempt);
        let due = finished + delay;
        // The decision to retry gets its Event whether the delay is still ahead or already past
        // (a late reconcile, or no delay): only a step already waiting has had it.
        if step.phase != StepPhase::Waiting {
            let when = if now < due {
                format!("retrying in {}s", delay.as_secs())
            } else {
                "retrying now".to_string()
            };
            actions.push(Event::warning(
                reasons::STEP_RETRYING,
                "RetryStep",
                format!(
                    "step {} attempt {attempt} failed: {why}; {when} (attempt {} of {})",
                    step.name,
                    attempt.saturating_add(1),
                    spec.retries.saturating_add(1)
                ),
            ));
        }
        // A retry due now waits for the second pass, like every other start: whether a place
        // is free must not depend on the order in which the attempts in flight were followed.
        if now < due || pass.following {
            step.phase = StepPhase::Waiting;
            step.message = Some(format!(
                "attempt {attempt} failed: {why}; retrying at {due}"
            ));
            return Progress::Blocked(Some(due));
        }
        return try_start(
            run_id,
            &facts,
            step,
            spec,
            attempt.saturating_add(1),
            ctx,
            pass,
            actions,
        );
    }
    let reason = if timed_out {
        reasons::STEP_TIMED_OUT
    } else {
        reasons::STEP_FAILED
    };
    actions.push(Event::warning(
        reason,
        "FailStep",
        format!("step {} failed: {why}", step.name),
    ));
    finish_step(step, StepPhase::Failed, Some(why.clone()), now);
    match spec.on_failure {
        FailurePolicy::Stop => Progress::Done {
            stop: Some(format!("step {} failed: {why}", step.name)),
        },
        FailurePolicy::Continue => Progress::Done { stop: None },
    }
}

/// Where the latest attempt of a started step stands.
enum Attempt {
    /// Its Job was never seen: create it.
    NotCreated,
    /// Its Job exists and has not finished.
    Running,
    /// Its Job finished; its Pod's result may still be on its way until then.
    AwaitingResult(Timestamp),
    Ended(Ended),
}

/// A finished attempt.
struct Ended {
    outcome: JobOutcome,
    finished: Timestamp,
    report: Report,
    /// Its Job's name.
    job: String,
}

/// Reads the latest attempt from its Job, or from status when it ended without one. Records the
/// Job's UID once seen, so that a Job that disappears is never created again.
fn attempt_state(
    run_id: i64,
    step: &mut StepStatus,
    ctx: &RunContext,
    actions: &mut Vec<Action>,
) -> Attempt {
    let now = ctx.now;
    let attempt = step.attempts;
    let job_name = step.job_name.clone().unwrap_or_default();
    if let Some(failure) = step
        .attempt_failure
        .as_ref()
        .filter(|f| f.attempt == attempt)
    {
        return Attempt::Ended(Ended {
            outcome: JobOutcome::Failed {
                timed_out: false,
                reason: failure.reason.clone(),
            },
            finished: failure.time.0,
            report: Report {
                message: Some(failure.message.clone()),
                ..Report::default()
            },
            job: job_name,
        });
    }
    let job = ctx.jobs.iter().find(|j| {
        j.run == run_id
            && j.step == step.name
            && j.attempt == attempt
            && step.job_uid.as_ref().is_none_or(|uid| *uid == j.uid)
    });
    let Some(job) = job else {
        if step.job_uid.is_none() {
            return Attempt::NotCreated;
        }
        // Seen before and gone now (deleted by hand, a TTL, lost with its namespace's quota...):
        // the attempt fails, and counts against retries. Never created again.
        let message = format!("job {job_name} was deleted before it finished");
        actions.push(Event::warning(
            JOB_DELETED,
            "FailAttempt",
            format!("step {} attempt {attempt}: {message}", step.name),
        ));
        step.attempt_failure = Some(AttemptFailure {
            attempt,
            reason: JOB_DELETED.into(),
            message: message.clone(),
            time: Time(now),
        });
        return Attempt::Ended(Ended {
            outcome: JobOutcome::Failed {
                timed_out: false,
                reason: JOB_DELETED.into(),
            },
            finished: now,
            report: Report {
                message: Some(message),
                ..Report::default()
            },
            job: job_name,
        });
    };
    if step.job_uid.is_none() {
        step.job_uid = Some(job.uid.clone());
    }
    if job.outcome == JobOutcome::Active {
        return Attempt::Running;
    }
    let finished = job.finished_at.unwrap_or(now);
    if job.report.is_none() && now < finished + POD_RESULT_GRACE {
        return Attempt::AwaitingResult(finished + POD_RESULT_GRACE);
    }
    Attempt::Ended(Ended {
        outcome: job.outcome.clone(),
        finished,
        report: job.report.clone().unwrap_or_default(),
        job: job.name.clone(),
    })
}

fn succeeded(
    step: &mut StepStatus,
    spec: &Step,
    report: &Report,
    job: &str,
    actions: &mut Vec<Action>,
    now: Timestamp,
) -> Progress {
    let rows = format!("{}{}", rows_text(report), within_limit(spec, report));
    if let Some(exceeded) = rejected_rows_exceeded(spec, report) {
        let policy = spec
            .rejected_rows
            .as_ref()
            .map(|p| p.on_exceeded)
            .unwrap_or_default();
        let note = format!("step {}: {exceeded}", step.name);
        let decision = match policy {
            FailurePolicy::Stop => "stopping the run",
            FailurePolicy::Continue => "continuing (onExceeded: Continue)",
        };
        actions.push(Event::warning(
            reasons::REJECTED_ROWS_EXCEEDED,
            "CheckRejectedRows",
            format!("{note}; {decision}"),
        ));
        finish_step(
            step,
            StepPhase::Failed,
            Some(with_sync_message(&exceeded, report)),
            now,
        );
        return match policy {
            FailurePolicy::Stop => Progress::Done { stop: Some(note) },
            FailurePolicy::Continue => Progress::Done { stop: None },
        };
    }
    actions.push(Event::normal(
        reasons::STEP_SUCCEEDED,
        "CompleteStep",
        format!("step {} succeeded (job {job}){rows}", step.name),
    ));
    finish_step(step, StepPhase::Succeeded, report.message.clone(), now);
    Progress::Done { stop: None }
}

/// Starts attempt `attempt` of a step, unless its Sync is missing or busy, or the run has
/// `maxParallel` attempts in flight.
#[allow(clippy::too_many_arguments)]
fn try_start(
    run_id: i64,
    facts: &RunFacts,
    step: &mut StepStatus,
    spec: &Step,
    attempt: i32,
    ctx: &RunContext,
    pass: &Pass,
    actions: &mut Vec<Action>,
) -> Progress {
    if let Some(stopper) = &pass.fail_fast_after {
        // An attempt status recorded but whose Job was never created, or a retry due: with
        // failFast, neither starts after a Stop failure.
        fail_fast(step, stopper, attempt == 1, ctx.now, actions);
        return Progress::Done { stop: None };
    }
    if let Some(other) = pass
        .syncs
        .get(&spec.sync_ref.name)
        .filter(|other| **other != step.name)
    {
        // Two steps of one run on one Sync take turns. The other step's Job may not be in
        // the cache yet, so this is read from the run, not from the holders.
        let message = format!(
            "waiting: sync {} is running for step {other} of this run",
            spec.sync_ref.name
        );
        return wait(step, reasons::SYNC_BUSY, message, ctx.now, actions);
    }
    let Some(sync) = ctx.syncs.get(&spec.sync_ref.name) else {
        let message = format!(
            "waiting: sync {} not found in namespace",
            spec.sync_ref.name
        );
        return wait(step, reasons::SYNC_NOT_FOUND, message, ctx.now, actions);
    };
    let name = job_name(
        &ctx.owner.kind,
        &ctx.owner.name,
        &ctx.owner.uid,
        run_id,
        &step.name,
        attempt,
    );
    // Anything that holds the Sync blocks, this attempt's own name included: when the attempt's
    // Job is not there to be read but still holds the Sync, it was deleted before it was seen
    // and its Pod is still terminating.
    let busy = ctx
        .holders
        .get(&spec.sync_ref.name)
        .into_iter()
        .flatten()
        .next();
    if let Some(holder) = busy {
        let message = format!(
            "waiting: sync {} is running for {}",
            spec.sync_ref.name, holder.by
        );
        return wait(step, reasons::SYNC_BUSY, message, ctx.now, actions);
    }
    // Checked after the Sync: what a step waits for must not depend on the order in which
    // the steps before and after it took the places, or its message would change from one
    // decision to the next with nothing else changed.
    if pass.full() {
        // A wait the run's own Jobs end: their events wake it, and the bounded recheck guards
        // against a missed one. It is no stall, so it has a message and no Warning.
        let limit = pass.limit.unwrap_or_default();
        // An attempt status recorded but whose Job was never created waits like the others,
        // and is not Running: its place went to steps whose Jobs run (status rebuilt from the
        // Jobs after it fell behind them).
        if step.phase == StepPhase::Running {
            step.phase = StepPhase::Waiting;
        }
        step.message = Some(format!(
            "waiting for a free place: maxParallel is {limit}, and {limit} steps are running"
        ));
        return Progress::Blocked(Some(ctx.now + WAIT_RECHECK));
    }
    let id = JobIdentity {
        name: name.clone(),
        run: run_id,
        step: step.name.clone(),
        sync: spec.sync_ref.name.clone(),
        attempt,
    };
    actions.push(Action::CreateJob(Box::new(build_job(
        ctx.owner,
        &id,
        sync,
        spec.timeout_seconds,
        facts,
    ))));
    if step.attempts != attempt || step.phase != StepPhase::Running {
        actions.push(Action::Event(Event {
            warning: false,
            reason: reasons::STEP_STARTED,
            action: "CreateJob",
            note: format!(
                "step {} started: job {name} (attempt {attempt} of {})",
                step.name,
                spec.retries.saturating_add(1)
            ),
            job: Some(name.clone()),
        }));
    }
    if step.attempts != attempt {
        // A new attempt: what was seen of the previous one no longer applies.
        step.job_uid = None;
        step.attempt_failure = None;
    }
    step.phase = StepPhase::Running;
    step.attempts = attempt;
    step.job_name = Some(name);
    step.start_time.get_or_insert(Time(ctx.now));
    step.message = None;
    Progress::Blocked(None)
}

/// A step that cannot start yet says why in its message (which the `Running` condition
/// repeats), with a Warning Event when the reason changes, and checks again after
/// [`WAIT_RECHECK`] even if no watch event wakes it.
fn wait(
    step: &mut StepStatus,
    reason: &'static str,
    message: String,
    now: Timestamp,
    actions: &mut Vec<Action>,
) -> Progress {
    if step.message.as_deref() != Some(message.as_str()) {
        actions.push(Event::warning(
            reason,
            "WaitForSync",
            format!("step {}: {message}", step.name),
        ));
    }
    step.phase = StepPhase::Waiting;
    step.message = Some(message);
    Progress::Blocked(Some(now + WAIT_RECHECK))
}

/// The bounded requeue of a waiting step. Watch events (the holder's Job or Pod finishing, the
/// Sync appearing) wake it sooner; this only guards against a missed one.
pub(crate) const WAIT_RECHECK: SignedDuration = SignedDuration::from_secs(60);

fn finish_step(step: &mut StepStatus, phase: StepPhase, message: Option<String>, now: Timestamp) {
    step.phase = phase;
    step.message = message;
    step.completion_time = Some(Time(now));
}

/// A step that will not run, with its reason (one of `reasons::SKIP_*`) and why.
pub(super) fn skip(step: &mut StepStatus, reason: &'static str, message: String, now: Timestamp) {
    finish_step(step, StepPhase::Skipped, Some(message), now);
    step.reason = Some(reason.to_string());
}

/// Cancels a run: the step in progress is Cancelled, later steps Skipped. Its Jobs are deleted
/// by the cleanup every reconcile runs (see `runs::cleanup`), so a delete that fails or is lost
/// is made again.
pub(super) fn cancel_run(
    run: &mut RunStatus,
    why: &str,
    jobs: &[JobView],
    actions: &mut Vec<Action>,
    now: Timestamp,
) {
    for step in run.steps.iter_mut().filter(|s| !s.phase.is_final()) {
        let active = jobs
            .iter()
            .any(|j| j.run == run.id && j.step == step.name && !j.is_finished());
        if step.phase == StepPhase::Running || active {
            finish_step(
                step,
                StepPhase::Cancelled,
                Some(format!("cancelled: {why}")),
                now,
            );
        } else {
            skip(
                step,
                reasons::SKIP_RUN_CANCELLED,
                format!("skipped: run {why}"),
                now,
            );
        }
    }
    run.phase = RunPhase::Cancelled;
    run.completion_time = Some(Time(now));
    run.message = Some(format!("run {why}"));
    run.progress = progress(run);
    actions.push(Event::normal(
        reasons::RUN_CANCELLED,
        "CancelRun",
        format!("run {} {why}", run.id),
    ));
}

/// Records the UID of a step attempt's Job as its create returned it, so that the status
/// written with the step's start already says the Job exists: one write instead of a second
/// one when the Job reaches the cache, and from then on a Job that vanishes is never created
/// again. Returns false when no attempt in progress has that Job without a UID.
pub(crate) fn record_created(run: Option<&mut RunStatus>, job: &str, uid: &str) -> bool {
    let Some(step) = run.filter(|r| r.phase == RunPhase::Running).and_then(|r| {
        r.steps.iter_mut().find(|s| {
            s.job_name.as_deref() == Some(job)
                && s.phase == StepPhase::Running
                && s.job_uid.is_none()
        })
    }) else {
        return false;
    };
    step.job_uid = Some(uid.to_string());
    true
}

/// Records that the API server refused to create a step attempt's Job: the attempt fails with
/// the server's message, and the step retries or fails under its policy on the next reconcile.
/// Returns false when no attempt in progress has that Job (nothing to record).
pub(crate) fn record_refusal(
    run: Option<&mut RunStatus>,
    job: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let Some(step) = run.filter(|r| r.phase == RunPhase::Running).and_then(|r| {
        r.steps
            .iter_mut()
            .find(|s| s.job_name.as_deref() == Some(job) && s.phase == StepPhase::Running)
    }) else {
        return false;
    };
    step.attempt_failure = Some(AttemptFailure {
        attempt: step.attempts,
        reason: CREATE_REFUSED.into(),
        message: format!(
            "the API server refused to create job {job}: {}",
            crate::text::printable(message)
        ),
        time: Time(now),
    });
    true
}

/// `current/total`: the steps that ended, plus one for the step in progress (the total when
/// all ended). In a line that is the position of the first step not yet final.
fn progress(run: &RunStatus) -> String {
    let total = run.steps.len();
    let ended = run.steps.iter().filter(|s| s.phase.is_final()).count();
    format!("{}/{total}", (ended + 1).min(total))
}

/// Exponential backoff: `retryDelaySeconds`, doubled for each further attempt, capped at an hour.
fn retry_delay(spec: &Step, failed_attempt: i32) -> SignedDuration {
    let base = i64::from(spec.retry_delay_seconds.max(0));
    let factor = 1i64 << failed_attempt.saturating_sub(1).clamp(0, 12);
    SignedDuration::from_secs((base * factor).min(3600))
}

/// The error text of a failed Job, for its step and for its Sync's `lastRun`: what the
/// container said, else what the Job says. `timeout_seconds` is the step's limit, if known.
pub(super) fn failure_message(
    timed_out: bool,
    reason: &str,
    report: &Report,
    timeout_seconds: Option<i64>,
) -> String {
    let exit = report
        .exit_code
        .map(|c| format!(" (exit code {c})"))
        .unwrap_or_default();
    let base = if timed_out {
        match timeout_seconds {
            Some(limit) => format!("timed out after {limit}s"),
            // No limit known: the Sync's own jobTemplate set activeDeadlineSeconds (the step
            // named none), or the text is for a Sync's `lastRun`, which does not see the step.
            None => "timed out: the job ran past its activeDeadlineSeconds".to_string(),
        }
    } else if let Some(m) = &report.message {
        return format!("{m}{exit}");
    } else if reason.is_empty() {
        "job failed".to_string()
    } else {
        format!("job failed: {reason}")
    };
    format!("{base}{exit}")
}

/// Describes the threshold breach, if the step's rejected rows exceed its limit.
pub(super) fn rejected_rows_exceeded(spec: &Step, report: &Report) -> Option<String> {
    let policy = spec.rejected_rows.as_ref()?;
    let rejected = report.rows_rejected.unwrap_or(0);
    let synced = report.rows_synced.unwrap_or(0);
    if let Some(max) = policy.max
        && rejected > max
    {
        return Some(format!(
            "{rejected} rows rejected, more than the limit of {max}"
        ));
    }
    if let Some(pct) = policy.max_percent {
        // Widened: a container can report any i64, and the sum must neither overflow nor wrap.
        let total = i128::from(synced) + i128::from(rejected);
        if total > 0 {
            let share = rejected as f64 * 100.0 / total as f64;
            if share > pct {
                return Some(format!(
                    "{rejected} of {total} rows rejected ({share:.2}%), more than the limit of {pct}%"
                ));
            }
        }
    }
    None
}

/// For the success Event of a step with a rejected-rows limit: the numbers against the limit.
fn within_limit(spec: &Step, report: &Report) -> String {
    let (Some(policy), Some(rejected)) = (spec.rejected_rows.as_ref(), report.rows_rejected) else {
        return String::new();
    };
    let total = i128::from(report.rows_synced.unwrap_or(0)) + i128::from(rejected);
    match (policy.max, policy.max_percent) {
        (Some(max), _) => format!(" (within the limit of {max})"),
        (None, Some(pct)) if total > 0 => format!(
            " ({:.2}%, within the limit of {pct}%)",
            rejected as f64 * 100.0 / total as f64
        ),
        _ => String::new(),
    }
}

fn with_sync_message(text: &str, report: &Report) -> String {
    match &report.message {
        Some(m) => format!("{text}: {m}"),
        None => text.to_string(),
    }
}

fn rows_text(report: &Report) -> String {
    match (report.rows_synced, report.rows_rejected) {
        (None, None) => String::new(),
        (s, r) => format!(
            ": {} rows synced, {} rejected",
            s.unwrap_or(0),
            r.unwrap_or(0)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_job_is_told_by_the_most_specific_text_at_hand() {
        let report = |message: Option<&str>, exit_code| Report {
            message: message.map(str::to_string),
            exit_code,
            ..Report::default()
        };
        let cases = [
            (
                true,
                "",
                report(None, Some(137)),
                Some(60),
                "timed out after 60s (exit code 137)",
            ),
            // A Sync's lastRun, or a step that set no limit: the Job's deadline is what ran out.
            (
                true,
                "",
                report(None, None),
                None,
                "timed out: the job ran past its activeDeadlineSeconds",
            ),
            (
                false,
                "BackoffLimitExceeded",
                report(Some("HTTP 500"), Some(1)),
                None,
                "HTTP 500 (exit code 1)",
            ),
            (
                false,
                "BackoffLimitExceeded",
                report(None, Some(2)),
                None,
                "job failed: BackoffLimitExceeded (exit code 2)",
            ),
            (false, "", report(None, None), None, "job failed"),
        ];
        for (timed_out, reason, report, limit, want) in cases {
            assert_eq!(failure_message(timed_out, reason, &report, limit), want);
        }
    }
}
