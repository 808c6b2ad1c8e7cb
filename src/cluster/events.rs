//! Recording events.k8s.io Events on an object: a sequence, a Sync, a receiver.
//!
//! kube-runtime's `Recorder` folds Events with the same reason and action into one series and
//! keeps the first note, so "step accounts started" would be shown again for workspaces and
//! contacts. Every syncseq Event carries different text (step, Job, rows, error), so each is
//! created as its own Event.
//!
//! A hand-off is one Event, not two: the reconcile that sees step n succeed and starts step
//! n+1 records "step n succeeded …; step n+1 started …" under `StepSucceeded` ([`fold`]). So a
//! run of three steps records four Events (one per transition of the run, each naming the step
//! transitions it carries) instead of eight, which halves the Event writes per step.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::engine::Event;
use crate::engine::reasons::{RUN_STARTED, RUN_SUCCEEDED, STEP_STARTED, STEP_SUCCEEDED};

/// Events carry at most 1 KiB of note.
const MAX_NOTE_BYTES: usize = 1024;

/// Who records Events.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    pub controller: String,
    pub instance: String,
}

/// Creates one Event about `regarding`.
pub(crate) async fn publish(
    client: &Client,
    reporter: &Reporter,
    regarding: &ObjectReference,
    ev: &Event,
) -> Result<(), kube::Error> {
    let ns = regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let now = Timestamp::now();
    let event = K8sEvent {
        metadata: ObjectMeta {
            // Unique per Event, readable in `kubectl get events`.
            name: Some(format!(
                "{}.{:x}",
                regarding.name.clone().unwrap_or_default(),
                now.as_nanosecond()
            )),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        action: Some(ev.action.into()),
        reason: Some(ev.reason.into()),
        note: Some(cut(&ev.note)),
        type_: Some(if ev.warning { "Warning" } else { "Normal" }.into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..K8sEvent::default()
    };
    Api::<K8sEvent>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
}

/// Folds the Normal Events of one reconcile that announce one moment of a run into one Event:
/// a run starting with its first step (`RunStarted`), a step succeeding with the next one
/// starting (`StepSucceeded`), the last step succeeding with the run (`RunSucceeded`). The
/// folded Event keeps the more telling reason, and both notes in order. Warnings are never
/// folded (each carries its own error text), and an Event is folded at most once.
pub(crate) fn fold(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    let mut folded_last = false;
    for ev in events {
        let into = match out.last() {
            Some(prev) if !folded_last && !prev.warning && !ev.warning => {
                folded_reason(prev.reason, ev.reason)
            }
            _ => None,
        };
        match (into, out.last_mut()) {
            (Some(keep_first), Some(prev)) => {
                prev.note = format!("{}; {}", prev.note, ev.note);
                if !keep_first {
                    prev.reason = ev.reason;
                    prev.action = ev.action;
                }
                prev.job = ev.job.or(prev.job.take());
                folded_last = true;
            }
            _ => {
                out.push(ev);
                folded_last = false;
            }
        }
    }
    out
}

/// Whether two Events in a row fold, and if so whether the first one's reason is kept.
fn folded_reason(first: &str, second: &str) -> Option<bool> {
    match (first, second) {
        (RUN_STARTED, STEP_STARTED) | (STEP_SUCCEEDED, STEP_STARTED) => Some(true),
        (STEP_SUCCEEDED, RUN_SUCCEEDED) => Some(false),
        _ => None,
    }
}

fn cut(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    let mut end = MAX_NOTE_BYTES - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reasons::{RUN_FAILED, STEP_FAILED};

    fn ev(warning: bool, reason: &'static str, note: &str) -> Event {
        Event {
            warning,
            reason,
            action: "Act",
            note: note.into(),
            job: (reason == STEP_STARTED).then(|| format!("job-{note}")),
        }
    }

    /// (warning, reason, note) of an Event, as `kubectl describe` shows it.
    type Shown<'a> = (bool, &'a str, &'a str);

    fn shown(events: &[Event]) -> Vec<Shown<'_>> {
        events
            .iter()
            .map(|e| (e.warning, e.reason, e.note.as_str()))
            .collect()
    }

    #[test]
    fn the_moments_of_a_run_fold_into_one_event_each() {
        let cases: &[(&[Event], &[Shown])] = &[
            (
                &[ev(false, RUN_STARTED, "r"), ev(false, STEP_STARTED, "a")],
                &[(false, RUN_STARTED, "r; a")],
            ),
            (
                &[ev(false, STEP_SUCCEEDED, "a"), ev(false, STEP_STARTED, "b")],
                &[(false, STEP_SUCCEEDED, "a; b")],
            ),
            (
                &[
                    ev(false, STEP_SUCCEEDED, "c"),
                    ev(false, RUN_SUCCEEDED, "r"),
                ],
                &[(false, RUN_SUCCEEDED, "c; r")],
            ),
            // A run ends and the queued one starts, in one reconcile: two Events.
            (
                &[
                    ev(false, STEP_SUCCEEDED, "c"),
                    ev(false, RUN_SUCCEEDED, "r1"),
                    ev(false, RUN_STARTED, "r2"),
                    ev(false, STEP_STARTED, "a"),
                ],
                &[
                    (false, RUN_SUCCEEDED, "c; r1"),
                    (false, RUN_STARTED, "r2; a"),
                ],
            ),
            // Warnings stand alone, and so does what follows them.
            (
                &[ev(true, STEP_FAILED, "x"), ev(false, STEP_STARTED, "b")],
                &[(true, STEP_FAILED, "x"), (false, STEP_STARTED, "b")],
            ),
            (
                &[ev(false, STEP_SUCCEEDED, "a"), ev(true, RUN_FAILED, "r")],
                &[(false, STEP_SUCCEEDED, "a"), (true, RUN_FAILED, "r")],
            ),
            // Pairs that are not one moment are kept apart.
            (
                &[ev(false, STEP_STARTED, "a"), ev(false, STEP_STARTED, "b")],
                &[(false, STEP_STARTED, "a"), (false, STEP_STARTED, "b")],
            ),
            (
                &[ev(false, RUN_STARTED, "r"), ev(false, STEP_SUCCEEDED, "a")],
                &[(false, RUN_STARTED, "r"), (false, STEP_SUCCEEDED, "a")],
            ),
            (&[], &[]),
        ];
        for (input, want) in cases {
            let got = fold(input.to_vec());
            assert_eq!(shown(&got), *want, "{input:?}");
        }
    }

    #[test]
    fn a_folded_event_names_the_job_it_announces_and_folds_no_further() {
        let got = fold(vec![
            ev(false, STEP_SUCCEEDED, "a"),
            ev(false, STEP_STARTED, "b"),
            ev(false, STEP_STARTED, "c"),
        ]);
        assert_eq!(
            shown(&got),
            [(false, STEP_SUCCEEDED, "a; b"), (false, STEP_STARTED, "c")]
        );
        assert_eq!(got[0].job.as_deref(), Some("job-b"));
    }
}
