//! Backfill: one run per past fire time in `[from, to)`, oldest first, one at a time, each for
//! its own fire time; refused with the reason (the count, when too many); cancellable; it takes
//! the gaps between the object's own runs, which meet its runs under `concurrencyPolicy`. And a
//! property: the runs of a backfill of a random schedule and range are its fire times.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use crate::api::*;
use crate::engine::fixtures::World;
use crate::engine::tests::crm;
use crate::schedule::range;

/// `crm` on `0 * * * *`, decided once at t0 (10:00): its 10:00 fire is not due, as it was
/// created then.
fn hourly() -> World {
    let mut w = crm();
    w.seq.spec.scheduling.schedule = Some("0 * * * *".into());
    w.now += SignedDuration::from_mins(5);
    assert!(w.reconcile().is_empty());
    w
}

fn at(t: &str) -> Timestamp {
    format!("2026-01-05T{t}:00Z").parse().unwrap()
}

/// Requests a backfill of `range` as the `n`th request; returns the Jobs created.
fn backfill(w: &mut World, range: &str, n: usize) -> Vec<String> {
    w.annotate(annotations::BACKFILL, range);
    w.annotate(annotations::BACKFILL_REQUESTED_AT, &format!("b{n}"));
    w.reconcile()
}

fn status(w: &World) -> &BackfillStatus {
    w.status().book.backfill.as_deref().expect("a backfill")
}

/// The notes of the Events with this reason.
fn notes(w: &World, reason: &str) -> Vec<String> {
    w.events
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.note.clone())
        .collect()
}

/// Runs the three steps of the run in progress to success.
fn succeed_run(w: &mut World) {
    for _ in 0..3 {
        w.succeed(10, 0);
        w.reconcile();
    }
}

fn current(w: &World) -> Option<&RunStatus> {
    w.status().book.current_run.as_deref()
}

#[test]
fn three_hourly_fire_times_run_oldest_first_one_at_a_time() {
    let mut w = hourly();
    let created = backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T08:00:00Z", 1);
    assert_eq!(created.len(), 1, "one run at a time");
    assert!(created[0].starts_with("crm-1-accounts-1-"), "{created:?}");
    assert_eq!(
        notes(&w, "BackfillStarted"),
        vec![
            "backfill of 3 fire times from 2026-01-05T05:00:00Z to 2026-01-05T08:00:00Z, oldest first, one run at a time"
        ]
    );
    let bf = status(&w);
    assert_eq!(
        (bf.phase, bf.total, bf.started, bf.progress.as_str(), bf.run),
        (BackfillPhase::Running, 3, 1, "0/3", Some(1))
    );
    assert_eq!(bf.next_time.as_ref().map(|t| t.0), Some(at("06:00")));
    for (n, fire) in ["05:00", "06:00", "07:00"].into_iter().enumerate() {
        let run = current(&w).expect("its run");
        assert_eq!(run.trigger, TriggerKind::Backfill);
        assert_eq!(run.scheduled_time.as_ref().map(|t| t.0), Some(at(fire)));
        assert_eq!(run.id, i64::try_from(n).unwrap() + 1);
        succeed_run(&mut w);
        assert_eq!(
            status(&w).progress,
            format!("{}/3", n + 1),
            "counted as it ends"
        );
    }
    assert!(current(&w).is_none());
    let bf = status(&w);
    assert_eq!(
        (
            bf.phase,
            bf.succeeded,
            bf.failed,
            bf.next_time.clone(),
            bf.run
        ),
        (BackfillPhase::Succeeded, 3, 0, None, None)
    );
    assert_eq!(
        notes(&w, "BackfillSucceeded"),
        vec!["backfill finished: 3 of 3 runs succeeded"]
    );
    let starts = notes(&w, "RunStarted");
    assert_eq!(
        starts[0],
        "run 1 started by the backfill, for 2026-01-05T05:00:00Z"
    );
    // Done, it starts nothing more; the schedule goes on as before.
    assert_eq!(
        w.status().schedule.next_schedule_time.as_ref().map(|t| t.0),
        Some(at("11:00"))
    );
    assert!(w.reconcile().is_empty());
}

#[test]
fn a_backfill_job_carries_its_fire_time_and_interval() {
    let mut w = hourly();
    backfill(&mut w, "2026-01-05T05:30:00Z/2026-01-05T07:00:00Z", 1);
    let job = &w.jobs[0].view;
    assert_eq!(job.run, 1);
    let run = current(&w).unwrap();
    assert_eq!(run.scheduled_time.as_ref().map(|t| t.0), Some(at("06:00")));
    assert_eq!(status(&w).total, 1, "05:30 is no fire time; 06:00 is");
}

#[test]
fn refusals_say_why_and_start_nothing() {
    let max = "syncseq.dev/backfillMaxRuns";
    // (range, maxRuns, the refusal).
    let table: &[(&str, Option<&str>, &str)] = &[
        (
            "2025-12-01T00:00:00Z/2026-01-05T00:00:00Z",
            None,
            "the range from 2025-12-01T00:00:00Z to 2026-01-05T00:00:00Z has 840 fire times, more than the limit of 100 (syncseq.dev/backfillMaxRuns raises it, up to 10000)",
        ),
        (
            "2020-01-01T00:00:00Z/2026-01-05T00:00:00Z",
            None,
            "the range from 2020-01-01T00:00:00Z to 2026-01-05T00:00:00Z has 52704 fire times, more than the limit of 100 (syncseq.dev/backfillMaxRuns raises it, up to 10000)",
        ),
        (
            "2026-01-05T05:10:00Z/2026-01-05T05:50:00Z",
            None,
            "the schedule has no fire time from 2026-01-05T05:10:00Z to 2026-01-05T05:50:00Z",
        ),
        (
            "2026-01-05T05:00:00Z/2026-01-05T12:00:00Z",
            None,
            "the range has fire times that have not come yet, from 2026-01-05T11:00:00Z on: a backfill runs past fire times, and the schedule runs those to come (end the range by 2026-01-05T10:05:00Z)",
        ),
        (
            "2026-01-05T06:00:00Z/2026-01-05T05:00:00Z",
            None,
            "the range from 2026-01-05T06:00:00Z to 2026-01-05T05:00:00Z is empty: its start must be before its end",
        ),
        (
            "yesterday",
            None,
            "syncseq.dev/backfill is 'yesterday', not FROM/TO (two RFC 3339 times)",
        ),
        (
            "2026-01-05T05:00:00Z/2026-01-05T07:00:00Z",
            Some("0"),
            "syncseq.dev/backfillMaxRuns is '0', not a number from 1 to 10000",
        ),
    ];
    for (n, &(range, max_runs, why)) in table.iter().enumerate() {
        let mut w = hourly();
        w.annotate(max, max_runs.unwrap_or("100"));
        let created = backfill(&mut w, range, n);
        assert!(created.is_empty(), "row {n}");
        let bf = status(&w);
        assert_eq!(bf.phase, BackfillPhase::Refused, "row {n}");
        assert_eq!(
            bf.message.as_deref(),
            Some(&*format!("refused: {why}")),
            "row {n}"
        );
        assert_eq!(
            notes(&w, "BackfillRefused"),
            vec![format!("backfill refused: {why}")],
            "row {n}"
        );
        assert!(
            w.events
                .iter()
                .any(|e| e.warning && e.reason == "BackfillRefused")
        );
    }
    // The default limit is 1,000.
    let mut w = hourly();
    backfill(&mut w, "2025-11-01T00:00:00Z/2026-01-05T00:00:00Z", 1);
    assert_eq!(
        status(&w).message.as_deref(),
        Some(
            "refused: the range from 2025-11-01T00:00:00Z to 2026-01-05T00:00:00Z has 1560 fire times, more than the limit of 1000 (syncseq.dev/backfillMaxRuns raises it, up to 10000)"
        )
    );
    // Raised, the same range runs.
    w.annotate(max, "2000");
    backfill(&mut w, "2025-11-01T00:00:00Z/2026-01-05T00:00:00Z", 2);
    assert_eq!(status(&w).total, 1560);
    assert_eq!(status(&w).phase, BackfillPhase::Running);
}

#[test]
fn a_range_may_end_after_now_when_no_fire_time_in_it_has_yet_to_come() {
    let mut w = hourly();
    backfill(&mut w, "2026-01-05T08:00:00Z/2026-01-05T10:30:00Z", 1);
    let bf = status(&w);
    assert_eq!(
        (bf.phase, bf.total),
        (BackfillPhase::Running, 3),
        "08:00, 09:00, 10:00"
    );
}

#[test]
fn an_object_without_a_schedule_refuses_a_backfill() {
    let mut w = crm();
    backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T08:00:00Z", 1);
    assert_eq!(
        status(&w).message.as_deref(),
        Some(
            "refused: the object has no schedule (spec.schedule or spec.schedules) whose fire times to run"
        )
    );
}

#[test]
fn an_object_whose_schedule_cannot_be_used_says_why() {
    let mut w = hourly();
    w.seq.spec.scheduling.schedule = Some("61 * * * *".into());
    backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T08:00:00Z", 1);
    let message = status(&w).message.clone().unwrap_or_default();
    assert!(
        message.starts_with(
            "refused: the object's schedule cannot be used: invalid schedule \"61 * * * *\""
        ),
        "{message}"
    );
}

#[test]
fn a_request_during_a_backfill_is_refused_and_the_backfill_goes_on() {
    let mut w = hourly();
    backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T07:00:00Z", 1);
    assert!(backfill(&mut w, "2026-01-05T01:00:00Z/2026-01-05T02:00:00Z", 2).is_empty());
    assert_eq!(status(&w).requested_at, "b1");
    assert_eq!(status(&w).phase, BackfillPhase::Running);
    let refused = notes(&w, "BackfillRefused");
    assert_eq!(
        refused,
        vec![
            "backfill refused: the backfill requested at b1 is in progress (0/2 runs done); cancel it first"
        ]
    );
}

#[test]
fn a_failed_run_is_counted_and_the_backfill_goes_on() {
    let mut w = hourly();
    backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T07:00:00Z", 1);
    w.fail("the CRM is down");
    w.reconcile();
    let run = current(&w).expect("the next fire time's run");
    assert_eq!(run.scheduled_time.as_ref().map(|t| t.0), Some(at("06:00")));
    succeed_run(&mut w);
    let bf = status(&w);
    assert_eq!(
        (bf.phase, bf.succeeded, bf.failed, bf.failed_runs.clone()),
        (BackfillPhase::Failed, 1, 1, vec![1])
    );
    assert_eq!(
        notes(&w, "BackfillFailed"),
        vec!["backfill finished: 1 of 2 runs succeeded; runs that did not succeed: 1"]
    );
    assert!(
        w.events
            .iter()
            .any(|e| e.warning && e.reason == "BackfillFailed")
    );
}

#[test]
fn a_cancel_stops_the_backfill_and_its_run() {
    let mut w = hourly();
    backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T08:00:00Z", 1);
    w.succeed(10, 0);
    w.reconcile();
    w.annotate(annotations::CANCEL_BACKFILL_REQUESTED_AT, "c1");
    w.reconcile();
    assert!(current(&w).is_none(), "its run is cancelled");
    assert_eq!(w.last_run().phase, RunPhase::Cancelled);
    let bf = status(&w);
    assert_eq!(
        (bf.phase, bf.started, bf.failed, bf.next_time.clone()),
        (BackfillPhase::Cancelled, 1, 1, None)
    );
    assert_eq!(
        bf.message.as_deref(),
        Some("cancelled by request after 1 of 3 runs started; 2 fire times not run")
    );
    assert!(w.reconcile().is_empty(), "nothing more starts");
    // A second cancel finds none in progress.
    w.annotate(annotations::CANCEL_BACKFILL_REQUESTED_AT, "c2");
    w.reconcile();
    assert_eq!(
        notes(&w, "BackfillCancelled").last().map(String::as_str),
        Some("backfill cancel requested, but no backfill is in progress")
    );
}

#[test]
fn a_run_cancel_cancels_only_the_run_and_the_backfill_goes_on() {
    let mut w = hourly();
    backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T07:00:00Z", 1);
    w.annotate(annotations::CANCEL_REQUESTED_AT, "c1");
    w.reconcile();
    let run = current(&w).expect("the next fire time's run");
    assert_eq!(run.scheduled_time.as_ref().map(|t| t.0), Some(at("06:00")));
    assert_eq!(status(&w).failed, 1);
}

#[test]
fn it_waits_for_the_run_in_progress_and_the_queue() {
    let mut w = hourly();
    w.seq.spec.concurrency_policy = ConcurrencyPolicy::Queue;
    w.trigger("m1");
    assert_eq!(current(&w).unwrap().trigger, TriggerKind::Manual);
    assert!(backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T07:00:00Z", 1).is_empty());
    assert_eq!(
        status(&w).message.as_deref(),
        Some(
            "0 of 2 runs done; the next, for 2026-01-05T05:00:00Z, starts once run 1 (Manual) ends"
        )
    );
    // A request during the manual run queues, and goes before the backfill.
    w.annotate(annotations::REQUESTED_AT, "m2");
    w.reconcile();
    succeed_run(&mut w);
    assert_eq!(
        current(&w).unwrap().trigger,
        TriggerKind::Manual,
        "the queued run"
    );
    succeed_run(&mut w);
    let run = current(&w).unwrap();
    assert_eq!((run.id, run.trigger), (3, TriggerKind::Backfill));
    // The schedule fires during the backfill's run: queued behind it, it goes first next.
    w.now = at("11:00");
    w.reconcile();
    assert!(w.status().book.queued_run.is_some());
    succeed_run(&mut w);
    let run = current(&w).unwrap();
    assert_eq!((run.id, run.trigger), (4, TriggerKind::Schedule));
    succeed_run(&mut w);
    let run = current(&w).unwrap();
    assert_eq!(
        (
            run.id,
            run.trigger,
            run.scheduled_time.as_ref().map(|t| t.0)
        ),
        (5, TriggerKind::Backfill, Some(at("06:00")))
    );
    succeed_run(&mut w);
    assert_eq!(status(&w).phase, BackfillPhase::Succeeded);
}

#[test]
fn under_forbid_a_fire_during_the_backfills_run_is_skipped() {
    let mut w = hourly();
    backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T07:00:00Z", 1);
    w.now = at("11:00");
    w.reconcile();
    assert_eq!(w.status().book.skipped_triggers, Some(1));
    assert_eq!(current(&w).unwrap().trigger, TriggerKind::Backfill);
}

#[test]
fn suspended_it_goes_on() {
    let mut w = hourly();
    w.seq.spec.scheduling.suspend = true;
    let created = backfill(&mut w, "2026-01-05T05:00:00Z/2026-01-05T06:00:00Z", 1);
    assert_eq!(created.len(), 1);
    assert_eq!(current(&w).unwrap().trigger, TriggerKind::Backfill);
}

#[test]
fn a_sync_backfills_its_own_schedule() {
    let mut w = crm();
    let sync = w.syncs.get_mut("accounts").unwrap();
    sync.spec.scheduling.schedule = Some("0 * * * *".into());
    w.now += SignedDuration::from_mins(5);
    w.reconcile_sync("accounts");
    w.annotate_sync(
        "accounts",
        annotations::BACKFILL,
        "2026-01-05T05:00:00Z/2026-01-05T07:00:00Z",
    );
    w.annotate_sync("accounts", annotations::BACKFILL_REQUESTED_AT, "b1");
    let plan = w.reconcile_sync("accounts");
    assert_eq!(crate::engine::fixtures::creates(&plan.actions).len(), 1);
    let book = &w.syncs["accounts"].status.as_ref().unwrap().book;
    let run = book.current_run.as_deref().unwrap();
    assert_eq!(run.trigger, TriggerKind::Backfill);
    assert_eq!(run.scheduled_time.as_ref().map(|t| t.0), Some(at("05:00")));
    assert_eq!(book.backfill.as_ref().unwrap().total, 2);
}

/// A schedule to backfill: `spec.schedule`, or `spec.schedules` of two.
fn arb_schedule() -> impl Strategy<Value = (Option<String>, Option<Vec<String>>)> {
    let cron = (
        prop_oneof![
            (1u32..=30).prop_map(|k| format!("*/{k}")),
            (0u32..60).prop_map(|m| m.to_string()),
            (0u32..60, 0u32..60).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        ],
        prop_oneof![
            Just("*".to_string()),
            (1u32..=6).prop_map(|k| format!("*/{k}")),
        ],
    )
        .prop_map(|(m, h)| format!("{m} {h} * * *"));
    let member = prop_oneof![
        3 => cron,
        1 => (120u64..14_400).prop_map(|s| format!("@every {s}s")),
    ];
    prop_oneof![
        2 => member.clone().prop_map(|one| (Some(one), None)),
        1 => proptest::collection::vec(member, 2).prop_map(|v| (None, Some(v))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A backfill of a random schedule and range, its runs succeeding or failing at random:
    /// its runs are for the schedule's fire times in the range, oldest first, one each, and
    /// its counters and phase say how they went; past `backfillMaxRuns`, or with no fire time,
    /// it is refused with the count and starts nothing.
    #[test]
    fn a_backfill_runs_the_fire_times_of_its_range_and_counts_them(
        (schedule, schedules) in arb_schedule(),
        back in 1i64..(2 * 86_400),
        len in prop_oneof![3 => 1i64..7_200, 1 => 1i64..86_400],
        oks in proptest::collection::vec(any::<bool>(), 100),
    ) {
        let mut w = crm();
        w.seq.spec.scheduling.schedule = schedule;
        w.seq.spec.scheduling.schedules = schedules;
        // Suspended, the schedule starts no run of its own; the backfill runs all the same.
        w.seq.spec.scheduling.suspend = true;
        w.now += SignedDuration::from_mins(5);
        prop_assert!(w.reconcile().is_empty());
        let from = w.now - SignedDuration::from_secs(back);
        let to = (from + SignedDuration::from_secs(len)).min(w.now);
        let sc = &w.seq.spec.scheduling;
        let created = w.seq.metadata.creation_timestamp.as_ref().unwrap().0;
        let (set, tz) = crate::schedule::parse_set(
            sc.schedule.as_deref(),
            sc.schedules.as_deref(),
            None,
            created,
        )
        .unwrap()
        .unwrap();
        let want: Vec<Timestamp> = range::fire_times(&set, &tz, from, to).collect();
        w.annotate(annotations::BACKFILL_MAX_RUNS, "20");
        backfill(&mut w, &format!("{from}/{to}"), 1);
        if want.is_empty() || want.len() > 20 {
            prop_assert!(current(&w).is_none());
            let why = match want.len() {
                0 => format!("the schedule has no fire time from {from} to {to}"),
                n => format!("the range from {from} to {to} has {n} fire times, more than the limit of 20 (syncseq.dev/backfillMaxRuns raises it, up to 10000)"),
            };
            prop_assert_eq!(status(&w).phase, BackfillPhase::Refused);
            prop_assert_eq!(status(&w).message.clone(), Some(format!("refused: {why}")));
            return Ok(());
        }
        // Each run's fire time, and how it ended.
        let mut ran: Vec<(i64, Timestamp)> = Vec::new();
        let mut failed: Vec<i64> = Vec::new();
        let mut oks = oks.into_iter().cycle();
        while let Some(run) = current(&w).cloned() {
            prop_assert!(ran.len() <= want.len(), "more runs than fire times: {:?}", ran);
            prop_assert_eq!(run.trigger, TriggerKind::Backfill);
            if ran.last().is_none_or(|(id, _)| *id != run.id) {
                ran.push((run.id, run.scheduled_time.as_ref().unwrap().0));
                prop_assert_eq!(status(&w).run, Some(run.id));
            }
            // Its steps succeed until one fails, which ends the run.
            if oks.next().unwrap() {
                w.succeed(10, 0);
            } else {
                w.fail("the CRM is down");
                failed.push(run.id);
            }
            w.reconcile();
        }
        let at: Vec<Timestamp> = ran.iter().map(|(_, t)| *t).collect();
        prop_assert_eq!(at, want.clone());
        let ids: Vec<i64> = ran.iter().map(|(id, _)| *id).collect();
        let numbered: Vec<i64> = (1..).take(want.len()).collect();
        prop_assert_eq!(ids, numbered, "numbered in order");
        let bf = status(&w);
        let n = i64::try_from(want.len()).unwrap();
        let f = i64::try_from(failed.len()).unwrap();
        prop_assert_eq!(
            (bf.total, bf.started, bf.succeeded, bf.failed, bf.run, bf.next_time.clone()),
            (n, n, n - f, f, None, None)
        );
        // The newest ten that failed.
        prop_assert_eq!(&bf.failed_runs, &failed[failed.len().saturating_sub(10)..]);
        prop_assert_eq!(&bf.progress, &format!("{n}/{n}"));
        let phase = if failed.is_empty() { BackfillPhase::Succeeded } else { BackfillPhase::Failed };
        prop_assert_eq!(bf.phase, phase);
        prop_assert_eq!(bf.last_started_time.as_ref().map(|t| t.0), want.last().copied());
        prop_assert!(w.reconcile().is_empty(), "nothing more starts");
    }
}
