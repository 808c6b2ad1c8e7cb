//! Advancing one run: step by step, strictly in order, applying each step's failure policy.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    Action, Event, JobIdentity, JobOutcome, JobOwner, JobView, Observed, POD_RESULT_GRACE, Report,
    build_job, earliest, job_name,
};
use crate::api::{FailurePolicy, RunPhase, RunStatus, Step, StepPhase, StepStatus};

/// The context `advance` needs besides the run itself.
pub(super) struct RunContext<'a> {
    pub obs: &'a Observed<'a>,
    pub owner: &'a JobOwner,
}

/// A fresh run with every step Pending.
pub(super) fn new_run(
    id: i64,
    steps: &[Step],
    trigger: crate::api::TriggerKind,
    scheduled: Option<Timestamp>,
    now: Timestamp,
) -> RunStatus {
    RunStatus {
        id,
        trigger,
        scheduled_time: scheduled.map(Time),
        start_time: Time(now),
        completion_time: None,
        phase: RunPhase::Running,
        progress: format!("0/{}", steps.len()),
        steps: steps
            .iter()
            .map(|s| StepStatus {
                name: s.name.clone(),
                sync: s.sync_ref.name.clone(),
                phase: StepPhase::Pending,
                job_name: None,
                attempts: 0,
                start_time: None,
                completion_time: None,
                rows_synced: None,
                rows_rejected: None,
                message: None,
            })
            .collect(),
        message: None,
    }
}

/// Moves a running run forward as far as the observed Jobs allow. Returns when to wake up.
pub(super) fn advance(
    run: &mut RunStatus,
    ctx: &RunContext,
    actions: &mut Vec<Action>,
) -> Option<Timestamp> {
    let mut wake = None;
    let now = ctx.obs.now;
    let steps_spec = &ctx.obs.sequence.spec.steps;
    let mut i = 0;
    while i < run.steps.len() && run.phase == RunPhase::Running {
        if run.steps[i].phase.is_final() {
            i += 1;
            continue;
        }
        let Some(spec) = steps_spec.iter().find(|s| s.name == run.steps[i].name) else {
            // The step was removed from the spec while the run was in progress.
            finish_step(
                &mut run.steps[i],
                StepPhase::Skipped,
                Some("skipped: step removed from the sequence".into()),
                now,
            );
            i += 1;
            continue;
        };
        match step_progress(run, i, spec, ctx, actions) {
            Progress::Blocked(at) => {
                wake = earliest(wake, at);
                break;
            }
            Progress::Done { stop: Some(reason) } => {
                stop_run(run, i, &reason, now);
                actions.push(Event::warning(
                    "RunFailed",
                    "StopRun",
                    run.message.clone().unwrap_or_default(),
                ));
                break;
            }
            Progress::Done { stop: None } => i += 1,
        }
    }
    run.progress = progress(run);
    if run.phase == RunPhase::Running && run.steps.iter().all(|s| s.phase.is_final()) {
        let failed: Vec<&str> = run
            .steps
            .iter()
            .filter(|s| s.phase == StepPhase::Failed)
            .map(|s| s.name.as_str())
            .collect();
        run.completion_time = Some(Time(now));
        if failed.is_empty() {
            run.phase = RunPhase::Succeeded;
            run.message = Some("all steps succeeded".into());
            actions.push(Event::normal(
                "RunSucceeded",
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
                "RunSucceededWithErrors",
                "CompleteRun",
                format!(
                    "run {} finished; failed steps: {}",
                    run.id,
                    failed.join(", ")
                ),
            ));
        }
    }
    wake
}

enum Progress {
    /// The step is not final; stop walking. Wake at the time, if any.
    Blocked(Option<Timestamp>),
    /// The step reached its final phase; `stop` carries the reason when the run must stop.
    Done { stop: Option<String> },
}

fn step_progress(
    run: &mut RunStatus,
    i: usize,
    spec: &Step,
    ctx: &RunContext,
    actions: &mut Vec<Action>,
) -> Progress {
    let now = ctx.obs.now;
    let run_id = run.id;
    let step = &mut run.steps[i];
    if step.attempts == 0 {
        return try_start(run_id, step, spec, 1, ctx, actions);
    }
    let attempt = step.attempts;
    let Some(job) = ctx
        .obs
        .jobs
        .iter()
        .find(|j| j.run == run_id && j.step == step.name && j.attempt == attempt)
    else {
        // Status records the attempt but its Job is not there: the controller stopped between
        // writing status and creating the Job, or the Job was deleted. Creating it again is safe.
        return try_start(run_id, step, spec, attempt, ctx, actions);
    };
    match &job.outcome {
        JobOutcome::Active => {
            step.phase = StepPhase::Running;
            Progress::Blocked(None)
        }
        outcome => {
            let finished = job.finished_at.unwrap_or(now);
            if job.report.is_none() && now < finished + POD_RESULT_GRACE {
                return Progress::Blocked(Some(finished + POD_RESULT_GRACE));
            }
            let report = job.report.clone().unwrap_or_default();
            step.rows_synced = report.rows_synced;
            step.rows_rejected = report.rows_rejected;
            match outcome {
                JobOutcome::Succeeded => succeeded(step, spec, &report, job, actions, now),
                JobOutcome::Failed { timed_out, reason } => {
                    let why = failure_message(*timed_out, reason, &report, spec);
                    if attempt <= spec.retries {
                        let delay = retry_delay(spec, attempt);
                        let due = finished + delay;
                        if now < due {
                            if step.phase != StepPhase::Waiting {
                                actions.push(Event::warning(
                                    "StepRetrying",
                                    "RetryStep",
                                    format!(
                                        "step {} attempt {attempt} failed: {why}; retrying in {}s (attempt {} of {})",
                                        step.name,
                                        delay.as_secs(),
                                        attempt + 1,
                                        spec.retries + 1
                                    ),
                                ));
                            }
                            step.phase = StepPhase::Waiting;
                            step.message = Some(format!(
                                "attempt {attempt} failed: {why}; retrying at {due}"
                            ));
                            return Progress::Blocked(Some(due));
                        }
                        return try_start(run_id, step, spec, attempt + 1, ctx, actions);
                    }
                    let reason = if *timed_out {
                        "StepTimedOut"
                    } else {
                        "StepFailed"
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
                JobOutcome::Active => unreachable!("handled above"),
            }
        }
    }
}

fn succeeded(
    step: &mut StepStatus,
    spec: &Step,
    report: &Report,
    job: &JobView,
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
            "RejectedRowsExceeded",
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
        "StepSucceeded",
        "CompleteStep",
        format!("step {} succeeded (job {}){rows}", step.name, job.name),
    ));
    finish_step(step, StepPhase::Succeeded, report.message.clone(), now);
    Progress::Done { stop: None }
}

/// Starts attempt `attempt` of a step, unless its Sync is missing or busy elsewhere.
fn try_start(
    run_id: i64,
    step: &mut StepStatus,
    spec: &Step,
    attempt: i32,
    ctx: &RunContext,
    actions: &mut Vec<Action>,
) -> Progress {
    let obs = ctx.obs;
    let Some(sync) = obs.syncs.get(&spec.sync_ref.name) else {
        let message = format!(
            "waiting: sync {} not found in namespace",
            spec.sync_ref.name
        );
        if step.message.as_deref() != Some(message.as_str()) {
            actions.push(Event::warning(
                "SyncNotFound",
                "WaitForSync",
                format!("step {}: {message}", step.name),
            ));
        }
        step.phase = StepPhase::Waiting;
        step.message = Some(message);
        return Progress::Blocked(None);
    };
    let name = job_name(&ctx.owner.name, run_id, &step.name, attempt);
    let busy = obs
        .holders
        .get(&spec.sync_ref.name)
        .into_iter()
        .flatten()
        .find(|h| !obs.jobs.iter().any(|j| j.name == h.job && j.run == run_id));
    if let Some(holder) = busy {
        let message = format!(
            "waiting: sync {} is running for {}",
            spec.sync_ref.name, holder.by
        );
        if step.message.as_deref() != Some(message.as_str()) {
            actions.push(Event::normal(
                "StepWaiting",
                "WaitForSync",
                format!("step {}: {message}", step.name),
            ));
        }
        step.phase = StepPhase::Waiting;
        step.message = Some(message);
        return Progress::Blocked(None);
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
    ))));
    if step.attempts != attempt || step.phase != StepPhase::Running {
        actions.push(Event::normal(
            "StepStarted",
            "CreateJob",
            format!(
                "step {} started: job {name} (attempt {attempt} of {})",
                step.name,
                spec.retries + 1
            ),
        ));
    }
    step.phase = StepPhase::Running;
    step.attempts = attempt;
    step.job_name = Some(name);
    step.start_time.get_or_insert(Time(obs.now));
    step.message = None;
    Progress::Blocked(None)
}

fn finish_step(step: &mut StepStatus, phase: StepPhase, message: Option<String>, now: Timestamp) {
    step.phase = phase;
    step.message = message;
    step.completion_time = Some(Time(now));
}

/// Stops the run at step `failed`: every later step is Skipped with the reason.
fn stop_run(run: &mut RunStatus, failed: usize, reason: &str, now: Timestamp) {
    let failed_name = run.steps[failed].name.clone();
    for step in run.steps.iter_mut().skip(failed + 1) {
        if !step.phase.is_final() {
            finish_step(
                step,
                StepPhase::Skipped,
                Some(format!("skipped: step {failed_name} failed")),
                now,
            );
        }
    }
    run.phase = RunPhase::Failed;
    run.completion_time = Some(Time(now));
    run.message = Some(reason.to_string());
    run.progress = progress(run);
}

/// Cancels a run: its running Job is deleted, that step is Cancelled, later steps Skipped.
pub(super) fn cancel_run(
    run: &mut RunStatus,
    why: &str,
    jobs: &[JobView],
    actions: &mut Vec<Action>,
    now: Timestamp,
) {
    for step in run.steps.iter_mut().filter(|s| !s.phase.is_final()) {
        let active: Vec<&JobView> = jobs
            .iter()
            .filter(|j| j.run == run.id && j.step == step.name && !j.is_finished() && !j.deleting)
            .collect();
        for job in &active {
            actions.push(Action::DeleteJob {
                name: job.name.clone(),
            });
        }
        if step.phase == StepPhase::Running || !active.is_empty() {
            finish_step(
                step,
                StepPhase::Cancelled,
                Some(format!("cancelled: {why}")),
                now,
            );
        } else {
            finish_step(
                step,
                StepPhase::Skipped,
                Some(format!("skipped: run {why}")),
                now,
            );
        }
    }
    run.phase = RunPhase::Cancelled;
    run.completion_time = Some(Time(now));
    run.message = Some(format!("run {why}"));
    run.progress = progress(run);
    actions.push(Event::normal(
        "RunCancelled",
        "CancelRun",
        format!("run {} {why}", run.id),
    ));
}

/// `current/total`: the first step not yet final, or the total when all are.
fn progress(run: &RunStatus) -> String {
    let total = run.steps.len();
    let current = run
        .steps
        .iter()
        .position(|s| !s.phase.is_final())
        .map_or(total, |i| i + 1);
    format!("{current}/{total}")
}

/// Exponential backoff: `retryDelaySeconds`, doubled for each further attempt, capped at an hour.
fn retry_delay(spec: &Step, failed_attempt: i32) -> SignedDuration {
    let base = i64::from(spec.retry_delay_seconds.max(0));
    let factor = 1i64 << (failed_attempt - 1).clamp(0, 12);
    SignedDuration::from_secs((base * factor).min(3600))
}

/// The error text of a failed attempt: what the container said, else what the Job says.
fn failure_message(timed_out: bool, reason: &str, report: &Report, spec: &Step) -> String {
    let exit = report
        .exit_code
        .map(|c| format!(" (exit code {c})"))
        .unwrap_or_default();
    let base = if timed_out {
        format!(
            "timed out after {}s",
            spec.timeout_seconds.unwrap_or_default()
        )
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
        let total = synced + rejected;
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
    let total = report.rows_synced.unwrap_or(0) + rejected;
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
