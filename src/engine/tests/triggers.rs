//! Requests, cancels and the concurrency policies; a stale cache never starts a run twice.

use super::crm;
use crate::api::*;
use crate::engine::fixtures::World;
use crate::engine::*;

#[test]
fn cancel_deletes_the_running_job_and_skips_the_rest() {
    let mut w = crm();
    w.trigger("1");
    w.succeed(1, 0);
    let job = w.reconcile()[0].clone();
    w.annotate(annotations::CANCEL_REQUESTED_AT, "c1");
    let plan = w.plan();
    assert!(plan.actions.contains(&Action::DeleteJob { name: job }));
    w.reconcile();
    assert_eq!(w.last_run().phase, RunPhase::Cancelled);
    assert_eq!(
        w.status().book.last_handled_cancel_at.as_deref(),
        Some("c1")
    );
    // The same annotation value is handled once.
    assert!(w.trigger("2").len() == 1);
    assert_eq!(w.status().book.current_run.as_deref().unwrap().id, 2);
}

#[test]
fn concurrency_policies() {
    // Forbid: a second trigger during a run is dropped and counted.
    let mut w = crm();
    w.trigger("1");
    w.trigger("2");
    assert_eq!(w.status().book.skipped_triggers, Some(1));
    assert_eq!(
        w.status().book.last_handled_request_at.as_deref(),
        Some("2")
    );

    // Queue: one follow-up run starts when the current one ends.
    let mut w = crm();
    w.seq.spec.concurrency_policy = ConcurrencyPolicy::Queue;
    w.trigger("1");
    w.trigger("2");
    w.trigger("3");
    assert!(w.status().book.queued_run.is_some());
    assert_eq!(w.status().book.skipped_triggers, Some(1));
    for _ in 0..3 {
        w.succeed(1, 0);
        w.reconcile();
    }
    assert_eq!(w.status().book.current_run.as_deref().unwrap().id, 2);
    assert!(w.status().book.queued_run.is_none());
    // The queued run goes before a trigger that arrives as the run in progress ends, which
    // then queues behind it.
    w.succeed(1, 0);
    w.reconcile();
    w.succeed(1, 0);
    w.reconcile();
    w.trigger("4");
    w.succeed(1, 0);
    w.annotate(annotations::REQUESTED_AT, "5");
    w.reconcile();
    assert_eq!(w.status().book.current_run.as_deref().unwrap().id, 3);
    let started = w.events.iter().rev().find(|e| e.reason == "RunStarted");
    assert!(
        started.is_some_and(|e| e.note.contains("run 3 started from the queue")),
        "{started:?}"
    );
    assert!(w.status().book.queued_run.is_some());
    assert_eq!(w.status().book.skipped_triggers, Some(1));

    // Replace: the running run is cancelled; the new one waits for the old Job to be gone.
    let mut w = crm();
    w.seq.spec.concurrency_policy = ConcurrencyPolicy::Replace;
    w.trigger("1");
    let old = w.active_job().unwrap().name.clone();
    w.holders.insert(
        "accounts".into(),
        vec![Holder {
            job: old.clone(),
            by: "sequence crm run 1".into(),
        }],
    );
    w.trigger("2");
    assert!(
        !w.jobs.iter().any(|j| j.view.name == old),
        "old job deleted"
    );
    assert_eq!(w.last_run().phase, RunPhase::Cancelled);
    assert_eq!(w.status().book.current_run.as_deref().unwrap().id, 2);
    w.holders.clear();
    assert_eq!(w.reconcile().len(), 1);
}

#[test]
fn a_stale_cache_never_starts_a_run_twice() {
    let mut w = crm();
    let stale = w.seq.clone();
    w.trigger("1");
    // The cache still holds the sequence from before our status write, but the Job is visible.
    let mut replay = World {
        seq: stale,
        ..crm()
    };
    replay.annotate(annotations::REQUESTED_AT, "1");
    replay.jobs = w.jobs.clone();
    let plan = replay.plan();
    assert!(plan.actions.is_empty());
    assert!(plan.wake_at.is_some());
}
