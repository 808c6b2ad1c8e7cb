//! The schedule: fire times, catch-up after downtime, the starting deadline, suspend.

use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::crm;
use crate::api::*;
use crate::engine::fixtures::{World, step, t0};
use crate::engine::*;

#[test]
fn an_invalid_schedule_stalls_with_a_warning_once() {
    let mut w = crm();
    w.seq.spec.scheduling.schedule = Some("61 * * * *".into());
    w.reconcile();
    assert_eq!(w.condition("Stalled"), "True");
    assert_eq!(w.condition("Ready"), "False");
    w.reconcile();
    assert_eq!(
        w.events
            .iter()
            .filter(|e| e.reason == "InvalidSchedule")
            .count(),
        1
    );
    // Manual runs still work.
    assert_eq!(w.trigger("1").len(), 1);
}

#[test]
fn the_schedule_starts_runs_and_wakes_at_the_next_fire_time() {
    let mut w = crm();
    w.seq.spec.scheduling.schedule = Some("*/5 * * * *".into());
    w.now = t0() + SignedDuration::from_secs(60);
    assert!(w.reconcile().is_empty());
    assert_eq!(w.plan().wake_at, Some(t0() + SignedDuration::from_mins(5)));
    assert_eq!(
        w.status().schedule.next_schedule_time,
        Some(Time(t0() + SignedDuration::from_mins(5)))
    );
    // Late, as when the controller was busy: the Job still says which fire it is for.
    w.now = t0() + SignedDuration::from_mins(5) + SignedDuration::from_millis(1500);
    let plan = w.plan();
    let jobs: Vec<_> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateJob(job) => Some(job),
            _ => None,
        })
        .collect();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].metadata.annotations.as_ref().unwrap()[annotations::SCHEDULED_TIMESTAMP],
        "2026-01-05T10:05:00Z"
    );
    assert_eq!(w.reconcile().len(), 1);
    let st = w.status();
    assert_eq!(
        st.book.current_run.as_deref().unwrap().trigger,
        TriggerKind::Schedule
    );
    assert_eq!(
        st.schedule.last_schedule_time,
        Some(Time(t0() + SignedDuration::from_mins(5)))
    );
}

#[test]
fn after_downtime_one_catch_up_run_or_none_past_the_deadline() {
    let mut w = World::sequence(vec![step("accounts")]);
    w.seq.spec.scheduling.schedule = Some("* * * * *".into());
    w.now = t0() + SignedDuration::from_mins(30);
    assert_eq!(
        w.reconcile().len(),
        1,
        "exactly one run for 30 missed times"
    );
    assert_eq!(
        w.status().schedule.last_schedule_time,
        Some(Time(t0() + SignedDuration::from_mins(30)))
    );
    assert!(w.events.iter().any(|e| e.reason == "MissedSchedules"));

    let mut w = World::sequence(vec![step("accounts")]);
    w.seq.spec.scheduling.schedule = Some("* * * * *".into());
    w.seq.spec.scheduling.starting_deadline_seconds = Some(5);
    w.now = t0() + SignedDuration::from_mins(30) + SignedDuration::from_secs(30);
    assert!(w.reconcile().is_empty());
    assert_eq!(w.status().schedule.missed_schedules, Some(1));
    assert!(
        w.events
            .iter()
            .any(|e| e.warning && e.reason == "MissedSchedule")
    );
    assert!(
        w.reconcile().is_empty(),
        "the same missed time is recorded once"
    );
    assert_eq!(w.status().schedule.missed_schedules, Some(1));
}

#[test]
fn suspend_stops_new_runs_but_not_the_running_one() {
    let mut w = World::sequence(vec![step("accounts"), step("contacts")]);
    w.seq.spec.scheduling.schedule = Some("* * * * *".into());
    w.now = t0() + SignedDuration::from_mins(1);
    w.reconcile();
    w.seq.spec.scheduling.suspend = true;
    w.succeed(1, 0);
    assert_eq!(w.reconcile().len(), 1, "the running run goes on");
    assert!(w.status().schedule.next_schedule_time.is_none());
    w.now += SignedDuration::from_mins(10);
    w.succeed(1, 0);
    w.reconcile();
    assert!(w.reconcile().is_empty());
    assert!(w.status().book.current_run.is_none());
}
