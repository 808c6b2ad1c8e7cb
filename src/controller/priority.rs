//! Which reconciles are due work (`crate::admission`), read from the object's own status.

use std::time::Duration;

use jiff::Timestamp;

use crate::admission::{Admission, Priority};
use crate::api::{RunBook, RunPhase, ScheduleStatus};

/// How close a scheduled time must be to count as come: a requeue for it may fire a little
/// early, and a fire that early is still the one waited for.
const FIRE_AHEAD: Duration = Duration::from_secs(1);

/// Due: a run in progress, or a scheduled time that has come. A manual request for a new run
/// is other work: it is what arrives by the thousand at once.
pub(crate) fn priority(
    book: Option<&RunBook>,
    schedule: Option<&ScheduleStatus>,
    now: Timestamp,
) -> Priority {
    let running = book
        .and_then(|b| b.current_run.as_deref())
        .is_some_and(|r| r.phase == RunPhase::Running);
    let horizon = now.checked_add(FIRE_AHEAD).unwrap_or(Timestamp::MAX);
    let fire_due = schedule
        .and_then(|s| s.next_schedule_time.as_ref())
        .is_some_and(|t| t.0 <= horizon);
    match running || fire_due {
        true => Priority::Due,
        false => Priority::Other,
    }
}

/// The places of each kind's reconciles: each kind has its own, as it has its own queue.
pub(crate) struct Places {
    pub sequences: Admission,
    pub syncs: Admission,
}

impl Places {
    pub(crate) fn new(limit: u16) -> Self {
        Places {
            sequences: Admission::new(usize::from(limit)),
            syncs: Admission::new(usize::from(limit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RunStatus, TriggerKind};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn schedule(next: Timestamp) -> ScheduleStatus {
        ScheduleStatus {
            next_schedule_time: Some(Time(next)),
            ..Default::default()
        }
    }

    fn book(phase: Option<RunPhase>) -> RunBook {
        RunBook {
            current_run: phase.map(|phase| {
                Box::new(RunStatus {
                    id: 1,
                    trigger: TriggerKind::Manual,
                    scheduled_time: None,
                    upstream: None,
                    retry_of: None,
                    start_time: Time(at("2026-12-04T09:00:00Z")),
                    completion_time: None,
                    phase,
                    stopped_by: None,
                    progress: "1/1".into(),
                    steps: vec![],
                    message: None,
                })
            }),
            ..Default::default()
        }
    }

    #[test]
    fn due_work_is_a_run_in_progress_or_a_fire_whose_time_has_come() {
        let now = at("2026-12-04T10:00:00Z");
        let fire = |s: &str| Some(schedule(at(s)));
        let cases = [
            ("no status", None, None, Priority::Other),
            ("idle", Some(book(None)), None, Priority::Other),
            (
                "running",
                Some(book(Some(RunPhase::Running))),
                None,
                Priority::Due,
            ),
            (
                "finished run, fire later",
                Some(book(Some(RunPhase::Succeeded))),
                fire("2026-12-04T10:05:00Z"),
                Priority::Other,
            ),
            (
                "fire passed",
                None,
                fire("2026-12-04T09:59:59Z"),
                Priority::Due,
            ),
            (
                "fire now",
                None,
                fire("2026-12-04T10:00:00Z"),
                Priority::Due,
            ),
            (
                "requeued a little early",
                None,
                fire("2026-12-04T10:00:00.800Z"),
                Priority::Due,
            ),
            (
                "fire later",
                Some(book(None)),
                fire("2026-12-04T10:00:02Z"),
                Priority::Other,
            ),
        ];
        for (name, book, schedule, want) in cases {
            assert_eq!(
                priority(book.as_ref(), schedule.as_ref(), now),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn no_overflow_at_the_end_of_time() {
        let last = schedule(Timestamp::MAX);
        assert_eq!(priority(None, Some(&last), Timestamp::MAX), Priority::Due);
    }
}
