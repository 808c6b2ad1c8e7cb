//! Alerts in the decision: what changed between the status read and the status decided, as
//! [`Happening`]s; the notifications and alert states that follow ([`crate::alerts::evaluate`]).
//!
//! Transitions are read from the two statuses rather than collected along the way, so every
//! path that ends a step or a run (a failure, a timeout, a threshold, a cancel, a replace)
//! is seen the same way, and a decision replayed on a status that already records it finds
//! nothing new — the same guarantee Events rely on.

use super::Event;
use super::reasons;
use super::{Action, JobOutcome, JobView, Observed};
use crate::alerts::{self, Happening, RunRef, StepOutcome, Subject};
use crate::api::{AlertStep, RunStatus, StepPhase, StepStatus, SyncSequenceStatus};

/// Updates the alert states in `st` and the outbox (`st.pending_alerts`): notifications the
/// delivery worker has handled leave it, as do those of alerts no longer in the spec, and each
/// new notification joins it. The controller delivers what the written status holds, so a
/// notification is never lost between deciding and delivering.
///
/// The delivery worker's fields (`handledAlerts`, the `AlertsDelivered` condition) are its own
/// (field manager `syncseq-alerts`): they are left out of the status the reconciler applies,
/// so the two writers never fight over them.
pub(super) fn notify(
    old: &SyncSequenceStatus,
    st: &mut SyncSequenceStatus,
    obs: &Observed,
    actions: &mut Vec<Action>,
) {
    let seq = obs.sequence;
    let happenings = happenings(old, st, obs.jobs);
    let namespace = seq.metadata.namespace.clone().unwrap_or_default();
    let name = seq.metadata.name.clone().unwrap_or_default();
    let uid = seq.metadata.uid.clone().unwrap_or_default();
    let subject = Subject {
        namespace: &namespace,
        sequence: &name,
        uid: &uid,
        now: obs.now,
    };
    let (notifications, states) =
        alerts::evaluate(&seq.spec.alerts, &st.alert_states, &happenings, &subject);
    st.alert_states = states;
    let handled = std::mem::take(&mut st.handled_alerts);
    st.pending_alerts
        .retain(|p| !handled.contains(&p.key) && seq.spec.alerts.iter().any(|a| a.name == p.alert));
    for n in notifications {
        if !st.pending_alerts.iter().any(|p| p.key == n.key) {
            st.pending_alerts.push(n.pending());
        }
    }
    if let Some(excess) = st.pending_alerts.len().checked_sub(MAX_PENDING)
        && excess > 0
    {
        let dropped: Vec<String> = st
            .pending_alerts
            .drain(..excess)
            .map(|p| format!("alert {} {:?} run {}", p.alert, p.event.kind, p.event.run))
            .collect();
        actions.push(Event::warning(
            reasons::ALERTS_DROPPED,
            "Notify",
            format!(
                "more than {MAX_PENDING} notifications wait for delivery; dropped the oldest: {}",
                dropped.join(", ")
            ),
        ));
    }
    st.conditions
        .retain(|c| c.type_ != alerts::ALERTS_DELIVERED);
}

/// The most notifications a sequence's outbox keeps; a receiver down for long enough loses the
/// oldest (with a Warning Event) rather than growing the status without bound.
pub(crate) const MAX_PENDING: usize = 20;

/// Steps and runs that reached a final phase between `old` and `new`, oldest run first.
pub(super) fn happenings(
    old: &SyncSequenceStatus,
    new: &SyncSequenceStatus,
    jobs: &[JobView],
) -> Vec<Happening> {
    let mut runs: Vec<&RunStatus> = new
        .last_run
        .as_deref()
        .into_iter()
        .chain(new.book.current_run.as_deref())
        .collect();
    runs.sort_by_key(|r| r.id);
    runs.dedup_by_key(|r| r.id);
    let mut out = Vec::new();
    for run in runs {
        let before = old
            .book
            .current_run
            .as_deref()
            .into_iter()
            .chain(old.last_run.as_deref())
            .find(|r| r.id == run.id);
        match before {
            Some(b) if b == run || b.phase.is_finished() => continue,
            // A run the old status does not know is new only if its number is; otherwise the
            // old status lost it, and replaying its history would notify twice.
            None if run.id <= old.book.last_run_number.unwrap_or(0) => continue,
            _ => {}
        }
        let r = RunRef {
            id: run.id,
            trigger: run.trigger,
            upstream: run.upstream.clone(),
        };
        for step in &run.steps {
            let was = before
                .and_then(|b| b.steps.iter().find(|s| s.name == step.name))
                .map_or(StepPhase::Pending, |s| s.phase);
            if was.is_final() || !step.phase.is_final() {
                continue;
            }
            let outcome = match step.phase {
                StepPhase::Succeeded => StepOutcome::Succeeded,
                StepPhase::Failed => classify(run.id, step, jobs),
                _ => continue,
            };
            out.push(Happening::Step {
                run: r.clone(),
                step: info(step),
                outcome,
            });
        }
        if run.phase.is_finished() {
            out.push(Happening::Run {
                run: r,
                phase: run.phase,
                message: run.message.clone(),
                failed_steps: run
                    .steps
                    .iter()
                    .filter(|s| s.phase == StepPhase::Failed)
                    .map(info)
                    .collect(),
            });
        }
    }
    out
}

/// A Failed step whose last attempt's Job succeeded failed on its rejected rows; any other
/// failed step's Job failed (or timed out).
fn classify(run: i64, step: &StepStatus, jobs: &[JobView]) -> StepOutcome {
    let job = jobs
        .iter()
        .find(|j| j.run == run && j.step == step.name && j.attempt == step.attempts);
    match job.map(|j| &j.outcome) {
        Some(JobOutcome::Succeeded) => StepOutcome::RejectedRows,
        _ => StepOutcome::Failed,
    }
}

fn info(step: &StepStatus) -> AlertStep {
    AlertStep {
        name: step.name.clone(),
        sync: step.sync.clone(),
        message: step.message.clone(),
        rows_synced: step.rows_synced,
        rows_rejected: step.rows_rejected,
    }
}
