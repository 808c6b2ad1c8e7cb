//! Several schedules (`schedules`) and `jitterSeconds`, for a sequence and a Sync's own runs.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::crm;
use crate::api::*;
use crate::engine::fixtures::{World, step, t0};
use crate::engine::*;
use crate::schedule::jitter_offset;

fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

fn scheduled_jobs(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateJob(job) => Some(
                job.metadata.annotations.as_ref().unwrap()[annotations::SCHEDULED_TIMESTAMP]
                    .clone(),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn two_every_schedules_both_fire_and_a_shared_fire_starts_one_run() {
    let mut w = World::sequence(vec![step("accounts")]);
    w.seq.spec.scheduling.schedules = Some(vec!["@every 20s".into(), "@every 30s".into()]);
    w.now = at(1);
    assert!(w.reconcile().is_empty());
    assert_eq!(w.plan().wake_at, Some(at(20)));
    // Both chains from the creation (t0): 20, 30, 40, 60 (both: one run), 80, 90.
    for (fire, next) in [(20, 30), (30, 40), (40, 60), (60, 80), (80, 90)] {
        w.now = at(fire);
        assert_eq!(w.reconcile().len(), 1, "one run for {fire}s");
        let st = w.status();
        assert_eq!(st.schedule.last_schedule_time, Some(Time(at(fire))));
        assert_eq!(st.schedule.next_schedule_time, Some(Time(at(next))));
        w.succeed(1, 0);
        assert!(w.reconcile().is_empty());
        assert_eq!(w.plan().wake_at, Some(at(next)));
    }
    assert_eq!(w.status().book.last_run_number, Some(5));
    assert!(
        w.status()
            .book
            .runs
            .iter()
            .all(|r| r.trigger == TriggerKind::Schedule)
    );
}

#[test]
fn after_downtime_the_union_catches_up_once_for_its_most_recent_fire() {
    let mut w = World::sequence(vec![step("accounts")]);
    w.seq.spec.scheduling.schedules = Some(vec!["0 6 * * *".into(), "0 18 * * *".into()]);
    // t0 is 10:00 on 5 January; down until 19:00 the next day: 18:00, 06:00, 18:00 missed.
    w.now = "2026-01-06T19:00:00Z".parse().unwrap();
    assert_eq!(scheduled_jobs(&w.plan()), ["2026-01-06T18:00:00Z"]);
    w.reconcile();
    assert!(
        w.events.iter().any(|e| e.reason == "MissedSchedules"
            && e.note.starts_with("3 scheduled times were missed"))
    );
    assert_eq!(
        w.status().schedule.next_schedule_time,
        Some(Time("2026-01-07T06:00:00Z".parse().unwrap()))
    );
}

#[test]
fn schedule_and_schedules_together_stall_with_the_reason() {
    let mut w = crm();
    w.seq.spec.scheduling.schedule = Some("@hourly".into());
    w.seq.spec.scheduling.schedules = Some(vec!["@daily".into()]);
    w.now = at(7200);
    assert!(w.reconcile().is_empty());
    assert_eq!(w.condition("Stalled"), "True");
    assert!(
        w.condition_message("Stalled")
            .contains("set either schedule or schedules, not both"),
        "{}",
        w.condition_message("Stalled")
    );
    assert!(w.status().schedule.next_schedule_time.is_none());
}

/// `uid-1`'s offset in a 120 s window is 62.269 s: more than the deadline below, so that what
/// the jitter changes shows.
fn offset() -> SignedDuration {
    let o = jitter_offset("uid-1", 120);
    assert_eq!(o, SignedDuration::from_millis(62_269));
    o
}

#[test]
fn jitter_starts_the_run_its_offset_after_the_fire_time_which_status_keeps() {
    let mut w = World::sequence(vec![step("accounts")]);
    w.seq.spec.scheduling.schedule = Some("*/5 * * * *".into());
    w.seq.spec.scheduling.jitter_seconds = Some(120);
    let fire = at(300);
    w.now = at(60);
    assert!(w.reconcile().is_empty());
    assert_eq!(w.plan().wake_at, Some(fire + offset()));
    assert_eq!(w.status().schedule.next_schedule_time, Some(Time(fire)));
    // Never earlier than the offset, even just before it.
    w.now = fire + offset() - SignedDuration::from_millis(1);
    assert!(w.reconcile().is_empty());
    assert_eq!(w.plan().wake_at, Some(fire + offset()));
    w.now = fire + offset();
    assert_eq!(scheduled_jobs(&w.plan()), ["2026-01-05T10:05:00Z"]);
    w.reconcile();
    let st = w.status();
    assert_eq!(st.schedule.last_schedule_time, Some(Time(fire)));
    assert_eq!(st.schedule.next_schedule_time, Some(Time(at(600))));
    assert_eq!(
        st.book.current_run.as_deref().unwrap().scheduled_time,
        Some(Time(fire))
    );
    // The same offset at the next fire.
    w.succeed(1, 0);
    w.reconcile();
    assert_eq!(w.plan().wake_at, Some(at(600) + offset()));
}

#[test]
fn the_starting_deadline_counts_from_the_jittered_start() {
    let world = |late: i64| {
        let mut w = World::sequence(vec![step("accounts")]);
        w.seq.spec.scheduling.schedule = Some("*/5 * * * *".into());
        w.seq.spec.scheduling.jitter_seconds = Some(120);
        w.seq.spec.scheduling.starting_deadline_seconds = Some(5);
        w.now = at(300) + offset() + SignedDuration::from_secs(late);
        w
    };
    // 65 s after the fire time but 3 s after its start: not late.
    let mut w = world(3);
    assert_eq!(w.reconcile().len(), 1);
    // 6 s after its start: missed, and recorded with its nominal time.
    let mut w = world(6);
    assert!(w.reconcile().is_empty());
    let st = w.status();
    assert_eq!(st.schedule.missed_schedules, Some(1));
    assert_eq!(st.schedule.last_missed_schedule_time, Some(Time(at(300))));
}

#[test]
fn a_syncs_own_schedules_and_jitter_work_the_same() {
    let mut w = crm();
    let sync = &mut w.syncs.get_mut("accounts").unwrap().spec.scheduling;
    sync.schedules = Some(vec!["*/10 * * * *".into(), "5 * * * *".into()]);
    sync.jitter_seconds = Some(30);
    let o = jitter_offset("uid-sync-accounts", 30);
    assert!(o > SignedDuration::from_secs(1), "{o}");
    w.now = at(1);
    let plan = w.reconcile_sync("accounts");
    assert_eq!(
        plan.wake_at,
        Some(at(300) + o),
        "10:05, the second schedule"
    );
    w.now = at(300) + o;
    let plan = w.reconcile_sync("accounts");
    assert_eq!(plan.status.schedule.last_schedule_time, Some(Time(at(300))));
    assert_eq!(plan.status.schedule.next_schedule_time, Some(Time(at(600))));
    assert!(plan.status.book.current_run.is_some());
}
