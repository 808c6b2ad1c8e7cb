//! What asks for a new run: the schedule and the manual-request annotation (upstream runs are
//! `upstream.rs`). Shared by sequences and standalone Syncs, whose specs and statuses share
//! the schedule types.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::reasons;
use super::{Action, Event};
use crate::api::{
    QueuedRun, RunBook, ScheduleSpec, ScheduleStatus, TriggerKind, UpstreamRun, annotations,
};
use crate::schedule::{self, ScheduleSet};

/// A request for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Trigger {
    pub kind: TriggerKind,
    /// For a scheduled run: the fire time it is for.
    pub scheduled: Option<Timestamp>,
    /// For an upstream trigger: the upstream run.
    pub upstream: Option<UpstreamRun>,
    /// For a retry: the run whose succeeded steps the new run reuses.
    pub retry_of: Option<i64>,
}

impl Trigger {
    /// What started it, for Events: "the schedule", "upstream sequence a run 12".
    pub(super) fn describe(&self) -> String {
        match (self.kind, &self.upstream) {
            (TriggerKind::Upstream, Some(up)) => format!("upstream {up}"),
            (TriggerKind::Upstream, None) => "upstream".into(),
            (TriggerKind::Manual, _) => "manual request".into(),
            (TriggerKind::Schedule, _) => "schedule".into(),
            (TriggerKind::Backfill, _) => match self.scheduled {
                Some(at) => format!("backfill of {at}"),
                None => "backfill".into(),
            },
            (TriggerKind::Retry, _) => match self.retry_of {
                Some(run) => format!("retry of run {run}"),
                None => "retry".into(),
            },
        }
    }

    pub(super) fn queued(&self) -> QueuedRun {
        QueuedRun {
            trigger: self.kind,
            scheduled_time: self.scheduled.map(Time),
            upstream: self.upstream.clone(),
            retry_of: self.retry_of,
        }
    }

    pub(super) fn from_queue(q: QueuedRun) -> Self {
        Trigger {
            kind: q.trigger,
            scheduled: q.scheduled_time.map(|t| t.0),
            upstream: q.upstream,
            retry_of: q.retry_of,
        }
    }
}

/// The parsed schedule (`schedule`, or the set of `schedules`), or why it cannot be used.
pub(super) struct ParsedSchedule {
    pub parsed: Option<(ScheduleSet, jiff::tz::TimeZone)>,
    /// An invalid schedule or unknown time zone: the spec is stalled.
    pub error: Option<String>,
}

impl ParsedSchedule {
    /// The schedule (None: the spec has none), or why it cannot be used.
    pub(super) fn as_result(&self) -> Result<Option<&(ScheduleSet, jiff::tz::TimeZone)>, &str> {
        match &self.error {
            Some(e) => Err(e),
            None => Ok(self.parsed.as_ref()),
        }
    }
}

/// Parses `schedule` or `schedules`. In a set of several, `@every` schedules count from the
/// object's creation (`anchor`), which does not move as runs start.
pub(super) fn parse_schedule(settings: &ScheduleSpec, anchor: Option<Timestamp>) -> ParsedSchedule {
    let parsed = schedule::parse_set(
        settings.schedule.as_deref(),
        settings.schedules.as_deref(),
        settings.time_zone.as_deref(),
        anchor.unwrap_or(Timestamp::UNIX_EPOCH),
    );
    match parsed {
        Ok(parsed) => ParsedSchedule {
            parsed,
            error: None,
        },
        Err(e) => ParsedSchedule {
            parsed: None,
            error: Some(e.to_string()),
        },
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a String> {
    meta.annotations.as_ref()?.get(key)
}

/// The value of the manual-request annotation, when it differs from the one handled last.
pub(super) fn new_request<'a>(
    meta: &'a ObjectMeta,
    handled: &Option<String>,
) -> Option<&'a String> {
    annotation(meta, annotations::REQUESTED_AT).filter(|v| handled.as_ref() != Some(*v))
}

/// A new value of the retry annotation starts a run that retries what failed in the run
/// `syncseq.dev/retryRun` names, or in the last finished run when it names none. The value is
/// echoed in status. A `retryRun` that is no run number is refused here, with the reason.
pub(super) fn retry(
    meta: &ObjectMeta,
    handled: &mut Option<String>,
) -> Option<Result<Trigger, String>> {
    let value = annotation(meta, annotations::RETRY_REQUESTED_AT)
        .filter(|v| handled.as_ref() != Some(*v))?
        .clone();
    *handled = Some(value);
    let retry_of = match annotation(meta, annotations::RETRY_RUN) {
        None => None,
        Some(n) => match n.trim().parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Some(Err(format!(
                    "{} is '{}', not a run number",
                    annotations::RETRY_RUN,
                    crate::text::truncate(&crate::text::printable(n))
                )));
            }
        },
    };
    Some(Ok(Trigger {
        kind: TriggerKind::Retry,
        scheduled: None,
        upstream: None,
        retry_of,
    }))
}

/// A new value of the manual-request annotation starts one run; the value is echoed in status.
pub(super) fn manual(meta: &ObjectMeta, handled: &mut Option<String>) -> Option<Trigger> {
    let value = new_request(meta, handled)?.clone();
    *handled = Some(value);
    Some(Trigger {
        kind: TriggerKind::Manual,
        scheduled: None,
        upstream: None,
        retry_of: None,
    })
}

/// A new value of the cancel annotation: returns true once per value.
pub(super) fn cancel_requested(meta: &ObjectMeta, handled: &mut Option<String>) -> bool {
    once(meta, annotations::CANCEL_REQUESTED_AT, handled)
}

/// A new value of the resume annotation (`kubectl syncseq resume`): returns true once per
/// value. The controller never writes `spec` (a GitOps tool would revert it), so a resume
/// that restarts a stopped schedule is a request, as a run is.
pub(super) fn resume_requested(meta: &ObjectMeta, handled: &mut Option<String>) -> bool {
    once(meta, annotations::RESUME_SCHEDULE_REQUESTED_AT, handled)
}

/// Whether annotation `key` has a value other than the one handled last, which it becomes.
fn once(meta: &ObjectMeta, key: &str, handled: &mut Option<String>) -> bool {
    match annotation(meta, key) {
        Some(v) if handled.as_ref() != Some(v) => {
            *handled = Some(v.clone());
            true
        }
        _ => false,
    }
}

/// What `spec.stopScheduleAfterFailures` makes of the failed runs in a row: None while it is
/// unset; else whether they stopped the schedule, and the `ScheduleStopped` message. It is
/// worked out from the spec as it is now, so raising the limit (or lowering it) takes effect
/// at once.
pub(super) fn schedule_stop(settings: &ScheduleSpec, book: &RunBook) -> Option<(bool, String)> {
    let limit = i64::from(settings.stop_schedule_after_failures?);
    let (count, runs) = book
        .failure_streak
        .as_ref()
        .map_or((0, &[][..]), |s| (s.count, s.runs.as_slice()));
    let listed = runs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let which = match (
        runs.len(),
        i64::try_from(runs.len()).unwrap_or(i64::MAX) < count,
    ) {
        (0, _) => String::new(),
        (1, false) => format!(" (run {listed})"),
        (_, false) => format!(" (runs {listed})"),
        (_, true) => format!(" (the last {}: runs {listed})", runs.len()),
    };
    let in_a_row = match count {
        1 => "1 failed run".to_string(),
        n => format!("{n} failed runs"),
    };
    Some(match count >= limit {
        true => (
            true,
            format!(
                "the schedule stopped after {in_a_row} in a row{which}; a run that succeeds or `kubectl syncseq resume` restarts it"
            ),
        ),
        false if count == 0 => (
            false,
            format!("no failed run in a row; the schedule stops after {limit}"),
        ),
        false => (
            false,
            format!("{in_a_row} in a row{which}; the schedule stops after {limit}"),
        ),
    })
}

/// CronJob semantics: at most one run, for the most recent unmet fire time, and only within
/// `startingDeadlineSeconds`; with `jitterSeconds`, each fire time a fixed offset later.
/// Updates the schedule fields of status; returns the trigger and when to wake for the next
/// fire (its time plus the object's jitter `offset`). Nothing while failed runs in a row
/// `stopped` the schedule.
#[allow(clippy::too_many_arguments)]
pub(super) fn scheduled(
    settings: &ScheduleSpec,
    spec: &ParsedSchedule,
    meta: &ObjectMeta,
    offset: jiff::SignedDuration,
    state: &mut ScheduleStatus,
    now: Timestamp,
    actions: &mut Vec<Action>,
    stopped: bool,
) -> (Option<Trigger>, Option<Timestamp>) {
    // `stopScheduleAfterFailures`: no fire time, and none to wake for; what restarts the
    // schedule (a run's end, a resume, a spec change) wakes the object anyway.
    if stopped {
        state.next_schedule_time = None;
        return (None, None);
    }
    let Some((sched, tz)) = &spec.parsed else {
        state.next_schedule_time = None;
        return (None, None);
    };
    if settings.suspend {
        state.next_schedule_time = None;
        return (None, None);
    }
    let earliest = [
        state.last_schedule_time.as_ref(),
        state.last_missed_schedule_time.as_ref(),
        state.schedule_restart_time.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|t| t.0)
    .max()
    .or(meta.creation_timestamp.as_ref().map(|t| t.0))
    .unwrap_or(now);
    // Jitter: a fire time has come once its offset has passed too, and it is late by
    // `startingDeadlineSeconds` counted from that delayed start; so the schedule is asked
    // about `now - offset`, and every time it answers stays nominal (status, the Job's
    // annotation) but the wake-up, which moves by the offset.
    let asked = now.checked_sub(offset).unwrap_or(Timestamp::MIN);
    let due = schedule::due_set(
        sched,
        tz,
        earliest,
        asked,
        settings.starting_deadline_seconds,
    );
    let wake = due
        .next
        .map(|next| next.checked_add(offset).unwrap_or(Timestamp::MAX));
    state.next_schedule_time = due.next.map(Time);
    if let Some(missed) = due.missed_past_deadline {
        state.last_missed_schedule_time = Some(Time(missed));
        state.missed_schedules = Some(state.missed_schedules.unwrap_or(0).saturating_add(1));
        actions.push(Event::warning(
            reasons::MISSED_SCHEDULE,
            "SkipSchedule",
            format!(
                "missed scheduled time {missed}: it is more than startingDeadlineSeconds ({}s) late",
                settings.starting_deadline_seconds.unwrap_or_default()
            ),
        ));
    }
    let trigger = due.run_for.map(|t| {
        if due.missed > 1 {
            actions.push(Event::warning(
                reasons::MISSED_SCHEDULES,
                "CatchUp",
                format!(
                    "{} scheduled times were missed; starting one run for the most recent, {t}",
                    due.missed
                ),
            ));
        }
        state.last_schedule_time = Some(Time(t));
        Trigger {
            kind: TriggerKind::Schedule,
            scheduled: Some(t),
            upstream: None,
            retry_of: None,
        }
    });
    (trigger, wake)
}
