//! Attempts: retries, one Job each, after a backoff; timeouts.

use jiff::SignedDuration;

use crate::api::*;
use crate::engine::fixtures::{World, step};
use crate::engine::*;

#[test]
fn retries_create_one_job_per_attempt_with_backoff() {
    let mut steps = vec![step("accounts")];
    steps[0].retries = 2;
    steps[0].retry_delay_seconds = 10;
    let mut w = World::sequence(steps);
    w.trigger("1");
    w.fail("flaky");
    assert!(w.reconcile().is_empty(), "waits for the backoff");
    let plan = w.plan();
    assert_eq!(plan.wake_at, Some(w.now + SignedDuration::from_secs(10)));
    assert_eq!(w.phases(), vec![StepPhase::Waiting]);
    w.now += SignedDuration::from_secs(10);
    let created = w.reconcile();
    assert!(created[0].starts_with("crm-1-accounts-2-"), "{created:?}");
    w.fail("flaky again");
    w.reconcile();
    assert_eq!(
        w.plan().wake_at,
        Some(w.now + SignedDuration::from_secs(20)),
        "backoff doubles"
    );
    w.now += SignedDuration::from_secs(20);
    assert!(w.reconcile()[0].starts_with("crm-1-accounts-3-"));
    w.succeed(1, 0);
    w.reconcile();
    assert_eq!(w.last_run().phase, RunPhase::Succeeded);
    assert_eq!(w.created.len(), 3);
}

/// The retry is a decision with its Event even when nothing waits for it: the reconcile came
/// after the delay had passed (a busy controller), or there is no delay.
#[test]
fn a_retry_has_its_event_when_the_delay_is_already_past_or_zero() {
    for (delay, late) in [(1, 5), (0, 0)] {
        let mut steps = vec![step("accounts")];
        steps[0].retries = 1;
        steps[0].retry_delay_seconds = delay;
        let mut w = World::sequence(steps);
        w.trigger("1");
        w.fail("flaky");
        w.now += SignedDuration::from_secs(late);
        let created = w.reconcile();
        assert!(created[0].starts_with("crm-1-accounts-2-"), "{created:?}");
        let retried: Vec<_> = w
            .events
            .iter()
            .filter(|e| e.reason == "StepRetrying")
            .map(|e| e.note.as_str())
            .collect();
        assert_eq!(
            retried,
            vec![
                "step accounts attempt 1 failed: flaky (exit code 1); retrying now (attempt 2 of 2)"
            ],
            "delay {delay}s, reconciled {late}s late"
        );
    }
}

#[test]
fn a_timeout_is_reported_as_such() {
    let w = timed_out(Some(3));
    assert!(
        w.last_run()
            .message
            .as_ref()
            .unwrap()
            .contains("timed out after 3s")
    );
    assert!(w.events.iter().any(|e| e.reason == "StepTimedOut"));
}

#[test]
fn a_timeout_the_step_did_not_set_names_the_jobs_deadline_not_zero_seconds() {
    let message = timed_out(None).last_run().message.clone().unwrap();
    assert!(
        message.contains("timed out: the job ran past its activeDeadlineSeconds"),
        "{message}"
    );
    assert!(!message.contains("0s"), "{message}");
}

/// A one-step run whose Job hit its deadline; the step's `timeoutSeconds` is `limit`.
fn timed_out(limit: Option<i64>) -> World {
    let mut steps = vec![step("accounts")];
    steps[0].timeout_seconds = limit;
    let mut w = World::sequence(steps);
    w.trigger("1");
    w.finish(
        JobOutcome::Failed {
            timed_out: true,
            reason: "Job was active longer than specified deadline".into(),
        },
        Report::default(),
    );
    w.reconcile();
    w
}
