//! What asks for a new run: the schedule and the manual-request annotation.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Action, Event};
use crate::api::{SyncSequence, SyncSequenceStatus, TriggerKind, annotations};
use crate::schedule::{self, Schedule};

/// A request for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Trigger {
    pub kind: TriggerKind,
    /// For a scheduled run: the fire time it is for.
    pub scheduled: Option<Timestamp>,
}

/// The parsed schedule, or why it cannot be used.
pub(super) struct ScheduleSpec {
    pub parsed: Option<(Schedule, jiff::tz::TimeZone)>,
    /// An invalid schedule or unknown time zone: the spec is stalled.
    pub error: Option<String>,
}

pub(super) fn parse_schedule(seq: &SyncSequence) -> ScheduleSpec {
    let Some(expr) = seq.spec.schedule.as_deref() else {
        return ScheduleSpec {
            parsed: None,
            error: None,
        };
    };
    let parsed = Schedule::parse(expr)
        .and_then(|s| Ok((s, schedule::parse_time_zone(seq.spec.time_zone.as_deref())?)));
    match parsed {
        Ok(p) => ScheduleSpec {
            parsed: Some(p),
            error: None,
        },
        Err(e) => ScheduleSpec {
            parsed: None,
            error: Some(e.to_string()),
        },
    }
}

/// A new value of the manual-request annotation starts one run; the value is echoed in status.
pub(super) fn manual(seq: &SyncSequence, status: &mut SyncSequenceStatus) -> Option<Trigger> {
    let value = seq
        .metadata
        .annotations
        .as_ref()?
        .get(annotations::REQUESTED_AT)?;
    if status.last_handled_request_at.as_ref() == Some(value) {
        return None;
    }
    status.last_handled_request_at = Some(value.clone());
    Some(Trigger {
        kind: TriggerKind::Manual,
        scheduled: None,
    })
}

/// A new value of the cancel annotation: returns true once per value.
pub(super) fn cancel_requested(seq: &SyncSequence, status: &mut SyncSequenceStatus) -> bool {
    let Some(value) = seq
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::CANCEL_REQUESTED_AT))
    else {
        return false;
    };
    if status.last_handled_cancel_at.as_ref() == Some(value) {
        return false;
    }
    status.last_handled_cancel_at = Some(value.clone());
    true
}

/// CronJob semantics: at most one run, for the most recent unmet fire time, and only within
/// `startingDeadlineSeconds`. Updates the schedule fields of status; returns the trigger and
/// the next fire time to wake at.
pub(super) fn scheduled(
    seq: &SyncSequence,
    spec: &ScheduleSpec,
    status: &mut SyncSequenceStatus,
    now: Timestamp,
    actions: &mut Vec<Action>,
) -> (Option<Trigger>, Option<Timestamp>) {
    let Some((sched, tz)) = &spec.parsed else {
        status.next_schedule_time = None;
        return (None, None);
    };
    if seq.spec.suspend {
        status.next_schedule_time = None;
        return (None, None);
    }
    let created = seq
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let earliest = [
        status.last_schedule_time.as_ref(),
        status.last_missed_schedule_time.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|t| t.0)
    .max()
    .unwrap_or(created);
    let due = schedule::due(sched, tz, earliest, now, seq.spec.starting_deadline_seconds);
    status.next_schedule_time = due.next.map(Time);
    if let Some(missed) = due.missed_past_deadline {
        status.last_missed_schedule_time = Some(Time(missed));
        status.missed_schedules = Some(status.missed_schedules.unwrap_or(0) + 1);
        actions.push(Event::warning(
            "MissedSchedule",
            "SkipSchedule",
            format!(
                "missed scheduled time {missed}: it is more than startingDeadlineSeconds ({}s) late",
                seq.spec.starting_deadline_seconds.unwrap_or_default()
            ),
        ));
    }
    let trigger = due.run_for.map(|t| {
        if due.missed > 1 {
            actions.push(Event::warning(
                "MissedSchedules",
                "CatchUp",
                format!(
                    "{} scheduled times were missed; starting one run for the most recent, {t}",
                    due.missed
                ),
            ));
        }
        status.last_schedule_time = Some(Time(t));
        Trigger {
            kind: TriggerKind::Schedule,
            scheduled: Some(t),
        }
    });
    (trigger, due.next)
}
