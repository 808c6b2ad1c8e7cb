//! `stopScheduleAfterFailures`: failed runs in a row, whatever started them, stop the schedule
//! (and only the schedule), with the `ScheduleStopped` condition and one Warning; a run that
//! succeeds, a resume or the spec as it is now restarts it, at its next fire time.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::*;
use crate::engine::fixtures::{self, World, step, t0};
use crate::engine::*;

const STOPPED: &str = "ScheduleStopped";

/// Sequence `crm` (accounts, then contacts) on `* * * * *`, stopping after `limit` failed
/// runs in a row, after upstream `warehouse`, decided once at t0.
fn every_minute(limit: i32) -> World {
    let mut w = World::sequence(vec![step("accounts"), step("contacts")]);
    w.seq.spec.scheduling.schedule = Some("* * * * *".into());
    w.seq.spec.scheduling.stop_schedule_after_failures = Some(limit);
    w.seq.spec.scheduling.after = Some(AfterSpec {
        upstreams: vec![warehouse_ref()],
        when: UpstreamOutcome::Succeeded,
        require: UpstreamRequire::Any,
    });
    w.upstreams = warehouse(1);
    assert!(w.reconcile().is_empty());
    w
}

fn warehouse_ref() -> UpstreamRef {
    UpstreamRef {
        kind: UpstreamKind::SyncSequence,
        name: "warehouse".into(),
    }
}

/// Upstream `warehouse` with runs 1 to `runs` succeeded.
fn warehouse(runs: i64) -> Upstreams {
    let finished = (1..=runs)
        .rev()
        .map(|id| FinishedRun {
            id: id.to_string(),
            phase: RunPhase::Succeeded,
            completion: Some(t0() + SignedDuration::from_secs(id)),
        })
        .collect();
    Upstreams {
        views: BTreeMap::from([(
            warehouse_ref(),
            UpstreamView {
                uid: Some("uid-warehouse".into()),
                finished,
            },
        )]),
        cycle: None,
    }
}

/// What starts a run in a row of the table.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// The clock moves to the next fire time.
    Schedule,
    Manual,
    Retry,
    /// Upstream `warehouse` finishes one more run.
    Upstream,
}

/// How that run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// accounts fails under `Stop`: the run fails.
    Fail,
    Succeed,
    /// accounts fails under `Continue`, contacts succeeds.
    WithErrors,
    Cancel,
}

/// Starts a run as `how` says (the `n`th row: a new annotation value); asserts it started.
fn start(w: &mut World, how: Start, n: usize) {
    match how {
        Start::Schedule => {
            w.now = w.status().schedule.next_schedule_time.clone().unwrap().0;
        }
        Start::Manual => w.annotate(annotations::REQUESTED_AT, &format!("m{n}")),
        Start::Retry => w.annotate(annotations::RETRY_REQUESTED_AT, &format!("r{n}")),
        Start::Upstream => {
            let runs = w.upstreams.views[&warehouse_ref()].finished.len();
            w.upstreams = warehouse(i64::try_from(runs).unwrap() + 1);
        }
    }
    assert_eq!(w.reconcile().len(), 1, "row {n}: {how:?} starts a run");
}

/// Ends the run in progress as `how` says; returns its phase.
fn end(w: &mut World, how: End, n: usize) -> RunPhase {
    match how {
        End::Fail => {
            w.fail("the CRM refused the login");
            w.reconcile();
        }
        End::Succeed => {
            w.succeed(10, 0);
            w.reconcile();
            w.succeed(10, 0);
            w.reconcile();
        }
        End::WithErrors => {
            w.seq.spec.steps[0].on_failure = FailurePolicy::Continue;
            w.fail("3 accounts without owner");
            w.reconcile();
            w.succeed(10, 0);
            w.reconcile();
            w.seq.spec.steps[0].on_failure = FailurePolicy::Stop;
        }
        End::Cancel => {
            w.annotate(annotations::CANCEL_REQUESTED_AT, &format!("c{n}"));
            w.reconcile();
        }
    }
    assert!(
        w.status().book.current_run.is_none(),
        "row {n}: the run ended"
    );
    w.last_run().phase
}

fn streak(w: &World) -> (i64, Vec<i64>) {
    w.status()
        .book
        .failure_streak
        .as_ref()
        .map_or((0, vec![]), |s| (s.count, s.runs.clone()))
}

fn warnings(w: &World) -> usize {
    w.events
        .iter()
        .filter(|e| e.warning && e.reason == "ConsecutiveFailures")
        .count()
}

#[test]
fn failed_runs_of_every_trigger_count_and_only_a_success_ends_the_streak() {
    use End::*;
    use Start::*;
    // (what starts the run, how it ends, its phase, the streak after it, stopped).
    let table: &[(Start, End, RunPhase, i64, bool)] = &[
        (Schedule, Fail, RunPhase::Failed, 1, false),
        (Manual, Fail, RunPhase::Failed, 2, false),
        // A cancelled run says nothing of the destination.
        (Manual, Cancel, RunPhase::Cancelled, 2, false),
        (Upstream, Fail, RunPhase::Failed, 3, true),
        // Stopped, the schedule fires no more; a retry still starts a run, and counts.
        (Retry, Fail, RunPhase::Failed, 4, true),
        (Manual, Cancel, RunPhase::Cancelled, 4, true),
        (Manual, WithErrors, RunPhase::SucceededWithErrors, 0, false),
        (Schedule, Fail, RunPhase::Failed, 1, false),
        (Upstream, Succeed, RunPhase::Succeeded, 0, false),
        (Schedule, Fail, RunPhase::Failed, 1, false),
    ];
    let mut w = every_minute(3);
    assert_eq!(w.condition(STOPPED), "False");
    for (n, &(how, ends, phase, count, stopped)) in table.iter().enumerate() {
        start(&mut w, how, n);
        assert_eq!(end(&mut w, ends, n), phase, "row {n}");
        assert_eq!(streak(&w).0, count, "row {n}: {how:?} {ends:?}");
        let want = if stopped { "True" } else { "False" };
        assert_eq!(w.condition(STOPPED), want, "row {n}");
        assert_eq!(
            w.status().schedule.next_schedule_time.is_none(),
            stopped,
            "row {n}: nextScheduleTime is unset exactly while stopped"
        );
        if n == 3 {
            assert_eq!(
                streak(&w).1,
                vec![1, 2, 4],
                "the cancelled run 3 is not one"
            );
            assert_eq!(
                w.condition_message(STOPPED),
                "the schedule stopped after 3 failed runs in a row (runs 1, 2, 4); a run that succeeds or `kubectl syncseq resume` restarts it"
            );
            let c = w.status().conditions.iter().find(|c| c.type_ == STOPPED);
            assert_eq!(c.unwrap().reason, "ConsecutiveFailures");
            // Not a spec that cannot work: kstatus and Argo CD read no more into it.
            assert_eq!(w.condition("Stalled"), "False");
            assert_eq!(w.condition("Ready"), "True");
        }
        if n == 4 {
            // Ten fire times go by: none starts a run, none is announced as missed.
            w.now += SignedDuration::from_mins(10);
            assert!(w.reconcile().is_empty());
            assert_eq!(w.plan().wake_at, None, "nothing to wake for");
        }
    }
    assert_eq!(
        warnings(&w),
        1,
        "one Warning, when it stopped: {:?}",
        w.events
    );
    assert!(
        !w.events
            .iter()
            .any(|e| e.reason.starts_with("MissedSchedule")),
        "the fire times that passed while stopped are not made up: {:?}",
        w.events
    );
}

#[test]
fn the_run_that_restarts_it_is_the_catch_up_and_the_schedule_fires_at_its_next_time() {
    let mut w = every_minute(1);
    start(&mut w, Start::Manual, 0);
    end(&mut w, End::Fail, 0);
    assert_eq!(w.condition(STOPPED), "True");
    w.now += SignedDuration::from_mins(30) + SignedDuration::from_secs(20);
    assert!(w.reconcile().is_empty(), "stopped");
    start(&mut w, Start::Manual, 1);
    end(&mut w, End::Succeed, 1);
    let restarted = w.now;
    assert_eq!(w.condition(STOPPED), "False");
    assert_eq!(
        w.status().schedule.schedule_restart_time,
        Some(Time(restarted))
    );
    let next = w.status().schedule.next_schedule_time.clone().unwrap().0;
    assert!(
        next > restarted && next.duration_since(restarted) <= SignedDuration::from_mins(1),
        "{next} is the first fire time after the restart at {restarted}"
    );
    assert_eq!(w.plan().wake_at, Some(next));
    start(&mut w, Start::Schedule, 2);
    assert_eq!(
        w.status().schedule.last_schedule_time,
        Some(Time(next)),
        "the schedule fires again"
    );
}

#[test]
fn a_resume_restarts_the_schedule_once_per_value_and_the_count_starts_again() {
    let mut w = every_minute(2);
    for n in 0..2 {
        start(&mut w, Start::Manual, n);
        end(&mut w, End::Fail, n);
    }
    assert_eq!(w.condition(STOPPED), "True");
    w.now += SignedDuration::from_mins(5);
    assert!(w.reconcile().is_empty());

    w.annotate(annotations::RESUME_SCHEDULE_REQUESTED_AT, "resume-1");
    assert!(
        w.reconcile().is_empty(),
        "no catch-up run for the fire times it missed"
    );
    assert_eq!(w.condition(STOPPED), "False");
    assert_eq!(
        w.condition_message(STOPPED),
        "no failed run in a row; the schedule stops after 2"
    );
    assert_eq!(
        w.status().book.last_handled_resume_at.as_deref(),
        Some("resume-1")
    );
    assert!(w.status().schedule.next_schedule_time.is_some());

    // The same value again is handled already: it does not reset the count.
    start(&mut w, Start::Schedule, 2);
    end(&mut w, End::Fail, 2);
    w.reconcile();
    assert_eq!(streak(&w), (1, vec![3]));
    assert_eq!(
        w.condition_message(STOPPED),
        "1 failed run in a row (run 3); the schedule stops after 2"
    );
    start(&mut w, Start::Schedule, 3);
    end(&mut w, End::Fail, 3);
    assert_eq!(
        w.condition(STOPPED),
        "True",
        "the next 2 failures stop it again"
    );
    assert_eq!(warnings(&w), 2);

    // A resume while a run is in progress: that run's failure counts after it.
    start(&mut w, Start::Manual, 4);
    w.annotate(annotations::RESUME_SCHEDULE_REQUESTED_AT, "resume-2");
    w.reconcile();
    assert_eq!(w.condition(STOPPED), "False");
    end(&mut w, End::Fail, 4);
    assert_eq!(streak(&w), (1, vec![5]));
}

#[test]
fn the_limit_is_the_spec_as_it_is_now() {
    let mut w = every_minute(2);
    for n in 0..2 {
        start(&mut w, Start::Manual, n);
        end(&mut w, End::Fail, n);
    }
    // (the limit now, the condition after a decision, the streak kept, Warnings so far).
    let table: &[(Option<i32>, &str, i64, usize)] = &[
        (Some(3), "False", 2, 1),
        (Some(2), "True", 2, 2),
        (Some(1), "True", 2, 2),
        // Unset: nothing is counted, and the condition goes.
        (None, "", 0, 2),
        (Some(2), "False", 0, 2),
    ];
    for (n, &(limit, condition, count, warned)) in table.iter().enumerate() {
        w.seq.spec.scheduling.stop_schedule_after_failures = limit;
        w.seq.metadata.generation = Some(2 + i64::try_from(n).unwrap());
        w.now += SignedDuration::from_secs(5);
        w.reconcile();
        assert_eq!(w.condition(STOPPED), condition, "row {n}: {limit:?}");
        assert_eq!(streak(&w).0, count, "row {n}");
        assert_eq!(warnings(&w), warned, "row {n}");
        assert_eq!(
            w.status().schedule.next_schedule_time.is_none(),
            condition == "True",
            "row {n}"
        );
    }
}

#[test]
fn a_scheduled_run_queued_before_the_stop_does_not_start() {
    let mut w = every_minute(1);
    w.seq.spec.concurrency_policy = ConcurrencyPolicy::Queue;
    start(&mut w, Start::Manual, 0);
    w.now = w.status().schedule.next_schedule_time.clone().unwrap().0;
    assert!(w.reconcile().is_empty());
    assert_eq!(
        w.status().book.queued_run.as_deref().map(|q| q.trigger),
        Some(TriggerKind::Schedule)
    );
    end(&mut w, End::Fail, 0);
    let st = w.status();
    assert!(st.book.queued_run.is_none() && st.book.current_run.is_none());
    assert_eq!(w.condition(STOPPED), "True");
    assert!(
        w.events.iter().any(|e| e.reason == "TriggerSkipped"
            && e.note
                .starts_with("schedule trigger skipped: the schedule stopped after 1")),
        "{:?}",
        w.events
    );
}

#[test]
fn without_the_limit_nothing_is_counted_or_shown() {
    let mut w = every_minute(1);
    w.seq.spec.scheduling.stop_schedule_after_failures = None;
    for n in 0..3 {
        start(&mut w, Start::Manual, n);
        end(&mut w, End::Fail, n);
    }
    assert_eq!(streak(&w).0, 0);
    assert!(w.status().book.failure_streak.is_none());
    assert_eq!(w.condition(STOPPED), "");
    assert!(w.status().schedule.next_schedule_time.is_some());
}

#[test]
fn the_condition_names_the_last_ten_runs_of_a_longer_streak() {
    let mut w = every_minute(12);
    for n in 0..12 {
        start(&mut w, Start::Manual, n);
        end(&mut w, End::Fail, n);
    }
    assert_eq!(streak(&w), (12, (3..=12).collect()));
    assert_eq!(
        w.condition_message(STOPPED),
        "the schedule stopped after 12 failed runs in a row (the last 10: runs 3, 4, 5, 6, 7, 8, 9, 10, 11, 12); a run that succeeds or `kubectl syncseq resume` restarts it"
    );
}

/// A Sync's own schedule: its own runs count (a sequence's run of it is the sequence's).
#[test]
fn a_syncs_own_schedule_stops_and_restarts_the_same_way() {
    const ACCOUNTS: &str = "accounts";
    let mut w = World::sequence(vec![step(ACCOUNTS)]);
    {
        let s = &mut w.syncs.get_mut(ACCOUNTS).unwrap().spec.scheduling;
        s.schedule = Some("* * * * *".into());
        s.stop_schedule_after_failures = Some(2);
    }
    let status = |w: &World| w.syncs[ACCOUNTS].status.clone().unwrap();
    let condition = |w: &World| {
        status(w)
            .conditions
            .iter()
            .find(|c| c.type_ == STOPPED)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    };
    let failed = JobOutcome::Failed {
        timed_out: false,
        reason: "BackoffLimitExceeded".into(),
    };
    let end_own = |w: &mut World, outcome: JobOutcome| {
        w.now += SignedDuration::from_secs(1);
        w.end_job(|j| j.sequence.is_none(), outcome, Report::default())
            .expect("the Sync's own Job");
        w.reconcile_sync(ACCOUNTS);
    };
    w.reconcile_sync(ACCOUNTS);
    assert_eq!(condition(&w), "False");

    // The sequence's run of the Sync fails: not one of the Sync's own runs.
    w.trigger("seq-1");
    w.fail("boom");
    w.reconcile();
    w.reconcile_sync(ACCOUNTS);
    assert!(status(&w).book.failure_streak.is_none());

    for _ in 0..2 {
        w.now = status(&w).schedule.next_schedule_time.unwrap().0;
        let plan = w.reconcile_sync(ACCOUNTS);
        assert_eq!(fixtures::creates(&plan.actions).len(), 1, "a scheduled run");
        end_own(&mut w, failed.clone());
    }
    assert_eq!(condition(&w), "True");
    assert!(status(&w).schedule.next_schedule_time.is_none());
    w.now += SignedDuration::from_mins(5);
    let plan = w.reconcile_sync(ACCOUNTS);
    assert!(fixtures::creates(&plan.actions).is_empty(), "stopped");
    assert_eq!(
        w.events
            .iter()
            .filter(|e| e.reason == "ConsecutiveFailures")
            .count(),
        1
    );

    // A request still runs it; its success restarts the schedule.
    w.annotate_sync(ACCOUNTS, annotations::REQUESTED_AT, "1");
    let plan = w.reconcile_sync(ACCOUNTS);
    assert_eq!(fixtures::creates(&plan.actions).len(), 1);
    end_own(&mut w, JobOutcome::Succeeded);
    assert_eq!(condition(&w), "False");
    assert!(status(&w).book.failure_streak.is_none());
    assert!(status(&w).schedule.next_schedule_time.unwrap().0 > w.now);
}
