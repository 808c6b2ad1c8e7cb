//! Once per change of state: which notifications a batch of happenings causes.
//!
//! Each alert remembers, in `status.alertStates`, what it notified that has not recovered yet:
//! whether a run failure was notified (`runFailed`), which steps' failures were
//! (`failedSteps`) and which steps' rejected-rows breaches were (`rejectedRowsSteps`).
//!
//! - `RunFailed`: a run ends `Failed` and the alert has no run failure outstanding. Further
//!   failed runs notify nothing; a run that ends `Succeeded` clears it.
//! - `StepFailed`: a step's Job fails for good (after its retries, timeouts included) and the
//!   step has no failure outstanding. The step's next `Succeeded` clears it, silently.
//! - `RejectedRows`: a step exceeds its rejected-rows limit and has no breach outstanding. The
//!   step's next `Succeeded` (within the limit) clears it, silently.
//! - `Recovered`: a run ends `Succeeded` while anything is outstanding; everything clears.
//!
//! `SucceededWithErrors` and `Cancelled` runs change nothing at the run level: they are neither
//! a new failure of the run nor a recovery. When a step failure stops the run and the alert
//! sends `RunFailed` for that run, the step notifications of that run are folded into it (the
//! `RunFailed` body names every failed step of the run and carries their messages: a graph's
//! branches can fail side by side), so one incident is one message.
//! Only triggers listed in the alert's `when` notify or become outstanding, so `Recovered`
//! follows only a failure that was notified.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Notification;
use crate::api::{
    Alert, AlertEvent, AlertHealth, AlertState, AlertStep, AlertTrigger, RunPhase, TriggerKind,
    UpstreamRun,
};

/// The sequence the happenings belong to, and when they were decided.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub namespace: &'a str,
    pub sequence: &'a str,
    /// The sequence's UID, part of every notification's key.
    pub uid: &'a str,
    pub now: Timestamp,
}

/// A run, as happenings refer to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunRef {
    pub id: i64,
    pub trigger: TriggerKind,
    /// The upstream run that started it, if one did.
    pub upstream: Option<UpstreamRun>,
}

/// How a step ended, as far as alerts care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepOutcome {
    /// Succeeded, rejected rows (if any) within the limit or ignored.
    Succeeded,
    /// Its Job failed (after retries), or timed out.
    Failed,
    /// Its Job succeeded but the rejected rows exceeded the limit.
    RejectedRows,
}

/// Something that happened to a sequence in one decision, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Happening {
    /// A step reached a final phase.
    Step {
        run: RunRef,
        step: AlertStep,
        outcome: StepOutcome,
    },
    /// A run ended.
    Run {
        run: RunRef,
        phase: RunPhase,
        message: Option<String>,
        /// Every failed step, in step order.
        failed_steps: Vec<AlertStep>,
    },
}

/// The notifications the happenings cause, and every alert's new state (in the order of
/// `alerts`; states of alerts no longer in the spec are dropped). Pure and deterministic;
/// with no happenings it sends nothing and changes no state.
pub(crate) fn evaluate(
    alerts: &[Alert],
    states: &[AlertState],
    happenings: &[Happening],
    subject: &Subject,
) -> (Vec<Notification>, Vec<AlertState>) {
    let mut notifications = Vec::new();
    let mut new_states = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let mut st = states
            .iter()
            .find(|s| s.name == alert.name)
            .cloned()
            .unwrap_or_else(|| AlertState {
                name: alert.name.clone(),
                ..AlertState::default()
            });
        let mut events = Vec::new();
        for h in happenings {
            apply(alert, &mut st, h, subject, &mut events);
        }
        fold_into_run_failed(&mut events);
        st.state = if outstanding(&st) {
            AlertHealth::Failing
        } else {
            st.failing_since_run = None;
            AlertHealth::Healthy
        };
        notifications.extend(events.into_iter().map(|event| Notification {
            namespace: subject.namespace.to_string(),
            sequence: subject.sequence.to_string(),
            alert: alert.name.clone(),
            key: super::key(
                subject.uid,
                &alert.name,
                event.kind,
                event.run,
                event.step.as_ref().map(|s| s.name.as_str()),
            ),
            webhook: alert.webhook.clone(),
            event,
        }));
        new_states.push(st);
    }
    (notifications, new_states)
}

fn outstanding(st: &AlertState) -> bool {
    st.run_failed || !st.failed_steps.is_empty() || !st.rejected_rows_steps.is_empty()
}

fn apply(
    alert: &Alert,
    st: &mut AlertState,
    h: &Happening,
    subject: &Subject,
    events: &mut Vec<AlertEvent>,
) {
    let wants = |t: AlertTrigger| alert.when.contains(&t);
    let event =
        |kind, run: &RunRef, phase: &str, step: Option<&AlertStep>, message: String| AlertEvent {
            kind,
            run: run.id,
            trigger: run.trigger,
            upstream: run.upstream.clone(),
            phase: phase.to_string(),
            step: step.cloned(),
            failed_steps: Vec::new(),
            message,
            failing_since_run: None,
            time: Time(subject.now),
        };
    match h {
        Happening::Step {
            step,
            outcome: StepOutcome::Succeeded,
            ..
        } => {
            st.failed_steps.retain(|s| *s != step.name);
            st.rejected_rows_steps.retain(|s| *s != step.name);
        }
        Happening::Step { run, step, outcome } => {
            let (trigger, list) = match outcome {
                StepOutcome::Failed => (AlertTrigger::StepFailed, &mut st.failed_steps),
                _ => (AlertTrigger::RejectedRows, &mut st.rejected_rows_steps),
            };
            if !wants(trigger) || list.contains(&step.name) {
                return;
            }
            list.push(step.name.clone());
            if st.failing_since_run.is_none() {
                st.failing_since_run = Some(run.id);
            }
            let message = step.message.clone().unwrap_or_else(|| match outcome {
                StepOutcome::Failed => "step failed".into(),
                _ => "rejected rows exceeded the limit".into(),
            });
            events.push(event(trigger, run, "Failed", Some(step), message));
        }
        Happening::Run {
            run,
            phase: RunPhase::Failed,
            message,
            failed_steps,
        } => {
            if !wants(AlertTrigger::RunFailed) || st.run_failed {
                return;
            }
            st.run_failed = true;
            if st.failing_since_run.is_none() {
                st.failing_since_run = Some(run.id);
            }
            let message = message.clone().unwrap_or_else(|| "run failed".into());
            let mut e = event(
                AlertTrigger::RunFailed,
                run,
                "Failed",
                failed_steps.first(),
                message,
            );
            // The list sits in the outbox in status beside the first step's full record: its
            // messages are cut, as the summary cuts them, so that 32 failed steps stay small.
            e.failed_steps = failed_steps
                .iter()
                .map(|s| AlertStep {
                    message: s.message.as_deref().map(super::message::cut_step_message),
                    ..s.clone()
                })
                .collect();
            events.push(e);
        }
        Happening::Run {
            run,
            phase: RunPhase::Succeeded,
            message,
            ..
        } => {
            // The run's own step successes (earlier in this batch) may have cleared step
            // failures already; `failing_since_run` still says whether the alert was failing.
            let since = st.failing_since_run;
            let was_failing = since.is_some() || outstanding(st);
            st.run_failed = false;
            st.failed_steps.clear();
            st.rejected_rows_steps.clear();
            st.failing_since_run = None;
            if was_failing && wants(AlertTrigger::Recovered) {
                let message = message
                    .clone()
                    .unwrap_or_else(|| "all steps succeeded".into());
                let mut e = event(AlertTrigger::Recovered, run, "Succeeded", None, message);
                e.failing_since_run = since;
                events.push(e);
            }
        }
        // SucceededWithErrors, Cancelled: neither a new run failure nor a recovery.
        Happening::Run { .. } => {}
    }
}

/// Drops a step notification when a `RunFailed` notification of the same run names that step
/// among its failed steps.
fn fold_into_run_failed(events: &mut Vec<AlertEvent>) {
    let stopped: Vec<(i64, String)> = events
        .iter()
        .filter(|e| e.kind == AlertTrigger::RunFailed)
        .flat_map(|e| {
            super::message::failed_steps(e)
                .into_iter()
                .map(|s| (e.run, s.name.clone()))
        })
        .collect();
    events.retain(|e| {
        !matches!(
            e.kind,
            AlertTrigger::StepFailed | AlertTrigger::RejectedRows
        ) || !e
            .step
            .as_ref()
            .is_some_and(|s| stopped.contains(&(e.run, s.name.clone())))
    });
}
