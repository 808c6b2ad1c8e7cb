//! The decision for one SyncSequence: cancel, advance the current run, archive it, take
//! triggers, start the next run, and report it all in status and conditions.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::conditions::{self, Desired};
use super::run::{RunContext, advance, cancel_run, new_run};
use super::triggers::{self, Trigger};
use super::{Action, Event, JobOwner, Observed, Plan, earliest};
use crate::api::{
    ConcurrencyPolicy, QueuedRun, RunPhase, RunStatus, RunSummary, StepPhase, SyncSequenceStatus,
    TriggerKind,
};

/// Decides what happens next for one sequence. Pure: the same observation gives the same plan,
/// and replaying an observation whose decisions are already recorded in status creates nothing.
pub fn decide(obs: &Observed) -> Plan {
    let seq = obs.sequence;
    let now = obs.now;
    let old = seq.status.clone().unwrap_or_default();
    let generation = seq.metadata.generation;

    // Status leads Jobs (it is written first), so a Job of a run status does not know yet means
    // the cached sequence is older than our last write. Wait for the fresher copy.
    let known = old.last_run_number.unwrap_or(0);
    if obs.jobs.iter().any(|j| j.run > known) {
        return Plan {
            status: old,
            actions: vec![],
            wake_at: Some(now + jiff::SignedDuration::from_secs(1)),
        };
    }

    let mut st = old.clone();
    let mut actions = Vec::new();
    let owner = owner_of(seq);
    let ctx = RunContext { obs, owner: &owner };
    let settings = triggers::schedule_settings!(seq.spec);
    let schedule = triggers::parse_schedule(&settings);

    if triggers::cancel_requested(&seq.metadata, &mut st.last_handled_cancel_at) {
        match st.current_run.as_mut() {
            Some(run) if run.phase == RunPhase::Running => {
                cancel_run(run, "cancelled by request", obs.jobs, &mut actions, now)
            }
            _ => actions.push(Event::normal(
                "CancelIgnored",
                "CancelRun",
                "cancel requested, but no run is in progress",
            )),
        }
    }

    let mut wake = None;
    if let Some(run) = st.current_run.as_mut()
        && run.phase == RunPhase::Running
    {
        wake = earliest(wake, advance(run, &ctx, &mut actions));
    }
    archive_finished(&mut st, history_limit(seq));

    // Triggers: manual first, then the schedule; each subject to the concurrency policy.
    let mut incoming: Vec<Trigger> = Vec::new();
    incoming.extend(triggers::manual(
        &seq.metadata,
        &mut st.last_handled_request_at,
    ));
    let state = triggers::schedule_state!(st);
    let (scheduled, next_fire) = triggers::scheduled(
        &settings,
        &schedule,
        &seq.metadata,
        state,
        now,
        &mut actions,
    );
    incoming.extend(scheduled);
    wake = earliest(wake, next_fire);

    for trigger in incoming {
        let busy = st
            .current_run
            .as_ref()
            .is_some_and(|r| r.phase == RunPhase::Running);
        if !busy {
            start_run(&mut st, trigger, &ctx, &mut actions, &mut wake);
            continue;
        }
        match seq.spec.concurrency_policy {
            ConcurrencyPolicy::Forbid => skip_trigger(
                &mut st,
                trigger,
                "a run is in progress and concurrencyPolicy is Forbid",
                &mut actions,
            ),
            ConcurrencyPolicy::Queue if st.queued_run.is_none() => {
                st.queued_run = Some(QueuedRun {
                    trigger: trigger.kind,
                    scheduled_time: trigger.scheduled.map(Time),
                });
                actions.push(Event::normal(
                    "RunQueued",
                    "QueueRun",
                    format!(
                        "{} run queued behind the run in progress",
                        trigger_name(trigger.kind)
                    ),
                ));
            }
            ConcurrencyPolicy::Queue => skip_trigger(
                &mut st,
                trigger,
                "a run is in progress and one is already queued",
                &mut actions,
            ),
            ConcurrencyPolicy::Replace => {
                if let Some(run) = st.current_run.as_mut() {
                    cancel_run(run, "replaced by a newer run", obs.jobs, &mut actions, now);
                }
                archive_finished(&mut st, history_limit(seq));
                start_run(&mut st, trigger, &ctx, &mut actions, &mut wake);
            }
        }
    }
    if st.current_run.is_none()
        && let Some(q) = st.queued_run.take()
    {
        let trigger = Trigger {
            kind: q.trigger,
            scheduled: q.scheduled_time.map(|t| t.0),
        };
        start_run(&mut st, trigger, &ctx, &mut actions, &mut wake);
    }

    delete_expired_jobs(&st, obs, &mut actions);
    set_conditions(
        &mut st,
        &old,
        obs,
        schedule.error.as_deref(),
        generation,
        &mut actions,
    );
    super::alerting::notify(&old, &mut st, obs, &mut actions);
    st.observed_generation = generation;
    Plan {
        status: st,
        actions,
        wake_at: wake,
    }
}

fn owner_of(seq: &crate::api::SyncSequence) -> JobOwner {
    JobOwner {
        api_version: "syncseq.dev/v1alpha1".into(),
        kind: "SyncSequence".into(),
        name: seq.name_any(),
        uid: seq.metadata.uid.clone().unwrap_or_default(),
        namespace: seq.namespace().unwrap_or_default(),
    }
}

fn start_run(
    st: &mut SyncSequenceStatus,
    trigger: Trigger,
    ctx: &RunContext,
    actions: &mut Vec<Action>,
    wake: &mut Option<Timestamp>,
) {
    let id = st.last_run_number.unwrap_or(0) + 1;
    st.last_run_number = Some(id);
    let mut run = new_run(
        id,
        &ctx.obs.sequence.spec.steps,
        trigger.kind,
        trigger.scheduled,
        ctx.obs.now,
    );
    let what = match trigger.scheduled {
        Some(t) => format!("run {id} started by the schedule (for {t})"),
        None => format!("run {id} started by {}", trigger_name(trigger.kind)),
    };
    actions.push(Event::normal("RunStarted", "StartRun", what));
    *wake = earliest(*wake, advance(&mut run, ctx, actions));
    st.current_run = Some(run);
    archive_finished(st, history_limit(ctx.obs.sequence));
}

fn skip_trigger(
    st: &mut SyncSequenceStatus,
    trigger: Trigger,
    why: &str,
    actions: &mut Vec<Action>,
) {
    st.skipped_triggers = Some(st.skipped_triggers.unwrap_or(0) + 1);
    actions.push(Event::warning(
        "TriggerSkipped",
        "SkipRun",
        format!("{} trigger skipped: {why}", trigger_name(trigger.kind)),
    ));
}

fn trigger_name(kind: TriggerKind) -> &'static str {
    match kind {
        TriggerKind::Schedule => "schedule",
        TriggerKind::Manual => "manual request",
        TriggerKind::Upstream => "upstream",
    }
}

/// Moves a finished current run into the history, newest first, cut to `historyLimit`.
fn archive_finished(st: &mut SyncSequenceStatus, limit: usize) {
    let Some(run) = st.current_run.take_if(|r| r.phase.is_finished()) else {
        return;
    };
    let summary = summarize(&run);
    if run.phase == RunPhase::Succeeded {
        st.last_successful_time = run.completion_time.clone();
    }
    st.last_run_result = Some(run.phase);
    st.runs.retain(|r| r.id != summary.id);
    st.last_run = Some(run);
    st.runs.insert(0, summary);
    st.runs.truncate(limit);
}

fn summarize(run: &RunStatus) -> RunSummary {
    RunSummary {
        id: run.id,
        trigger: run.trigger,
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

fn history_limit(seq: &crate::api::SyncSequence) -> usize {
    usize::try_from(seq.spec.history_limit.max(1)).unwrap_or(1)
}

/// Jobs of runs that are neither current nor in the kept history are deleted.
fn delete_expired_jobs(st: &SyncSequenceStatus, obs: &Observed, actions: &mut Vec<Action>) {
    let limit = history_limit(obs.sequence);
    let kept: Vec<i64> = st
        .current_run
        .iter()
        .map(|r| r.id)
        .chain(st.runs.iter().take(limit).map(|r| r.id))
        .collect();
    for job in obs
        .jobs
        .iter()
        .filter(|j| !j.deleting && !kept.contains(&j.run))
    {
        actions.push(Action::DeleteJob {
            name: job.name.clone(),
        });
    }
}

fn set_conditions(
    st: &mut SyncSequenceStatus,
    old: &SyncSequenceStatus,
    obs: &Observed,
    spec_error: Option<&str>,
    generation: Option<i64>,
    actions: &mut Vec<Action>,
) {
    let now = obs.now;
    let conds = &mut st.conditions;
    let missing: Vec<&str> = obs
        .sequence
        .spec
        .steps
        .iter()
        .map(|s| s.sync_ref.name.as_str())
        .filter(|n| !obs.syncs.contains_key(*n))
        .collect();

    let not_ready = (!missing.is_empty()).then(|| {
        (
            "SyncNotFound",
            format!("waiting for Sync(s) not found: {}", missing.join(", ")),
        )
    });
    conditions::set_spec_health(
        conds,
        &old.conditions,
        spec_error,
        not_ready,
        "spec is valid and every Sync exists",
        generation,
        now,
        actions,
    );

    match st.current_run.as_ref() {
        Some(run) => {
            let current = run.steps.iter().find(|s| !s.phase.is_final());
            let message = match current {
                Some(s) => format!(
                    "run {} step {} ({}): {}",
                    run.id,
                    run.progress,
                    s.name,
                    s.message
                        .clone()
                        .unwrap_or_else(|| format!("{:?}", s.phase))
                ),
                None => format!("run {}", run.id),
            };
            conditions::set(
                conds,
                Desired {
                    type_: conditions::RUNNING,
                    status: true,
                    reason: "RunInProgress",
                    message,
                },
                generation,
                now,
            );
        }
        None => conditions::set(
            conds,
            Desired {
                type_: conditions::RUNNING,
                status: false,
                reason: "Idle",
                message: "no run in progress".into(),
            },
            generation,
            now,
        ),
    }
    match st.runs.first() {
        Some(last) => {
            let ok = matches!(last.phase, RunPhase::Succeeded);
            let reason = match last.phase {
                RunPhase::Succeeded => "Succeeded",
                RunPhase::SucceededWithErrors => "SucceededWithErrors",
                RunPhase::Failed => "Failed",
                RunPhase::Cancelled => "Cancelled",
                RunPhase::Running => "Running",
            };
            let message = format!(
                "run {}: {}",
                last.id,
                last.message.clone().unwrap_or_default()
            );
            conditions::set(
                conds,
                Desired {
                    type_: conditions::LAST_RUN_SUCCEEDED,
                    status: ok,
                    reason,
                    message,
                },
                generation,
                now,
            );
        }
        None => conditions::set_unknown(
            conds,
            conditions::LAST_RUN_SUCCEEDED,
            "NoRunYet",
            "no run has finished yet",
            generation,
            now,
        ),
    }
}
