//! A run's steps go strictly in order, and how a step's end decides the run's: stop or
//! continue on failure, rejected-row thresholds, the last run's record.

use super::crm;
use crate::api::*;
use crate::engine::fixtures::{World, step};

#[test]
fn steps_run_strictly_in_order_and_the_run_succeeds() {
    let mut w = crm();
    let created = w.trigger("1");
    assert_eq!(created.len(), 1);
    assert!(created[0].starts_with("crm-1-accounts-1-"));
    assert_eq!(
        w.status().book.last_handled_request_at.as_deref(),
        Some("1")
    );
    assert_eq!(
        w.phases(),
        vec![StepPhase::Running, StepPhase::Pending, StepPhase::Pending]
    );
    assert_eq!(
        w.status().book.current_run.as_deref().unwrap().progress,
        "1/3"
    );
    assert_eq!(w.condition("Running"), "True");

    // Nothing new while step 1 runs, however often we reconcile.
    assert!(w.reconcile().is_empty());
    w.succeed(1200, 0);
    let created = w.reconcile();
    assert_eq!(created.len(), 1);
    assert!(created[0].starts_with("crm-1-workspaces-1-"));
    w.succeed(340, 2);
    assert!(w.reconcile()[0].starts_with("crm-1-contacts-1-"));
    w.succeed(15800, 12);
    assert!(w.reconcile().is_empty());

    let st = w.status();
    assert!(st.book.current_run.is_none());
    assert_eq!(st.book.runs.len(), 1);
    assert_eq!(st.book.runs[0].phase, RunPhase::Succeeded);
    assert_eq!(st.book.last_run_result, Some(RunPhase::Succeeded));
    assert!(st.book.last_successful_time.is_some());
    assert_eq!(w.condition("LastRunSucceeded"), "True");
    assert_eq!(w.condition("Running"), "False");
    assert_eq!(w.condition("Ready"), "True");
    assert_eq!(w.condition("Stalled"), "False");
    assert_eq!(w.created.len(), 3);
    assert!(
        w.events
            .iter()
            .any(|e| e.reason == "StepSucceeded"
                && e.note.contains("15800 rows synced, 12 rejected"))
    );
}

#[test]
fn a_failed_step_under_stop_skips_the_rest_and_fails_the_run_with_its_message() {
    let mut w = crm();
    w.trigger("1");
    w.succeed(10, 0);
    w.reconcile();
    w.fail("CRM API returned 401: invalid token");
    assert!(w.reconcile().is_empty(), "step 3 must never start");
    let run = w.last_run();
    assert_eq!(run.phase, RunPhase::Failed);
    assert_eq!(run.failed_step.as_deref(), Some("workspaces"));
    assert!(
        run.message
            .as_ref()
            .unwrap()
            .contains("CRM API returned 401: invalid token"),
        "{run:?}"
    );
    assert!(
        w.events
            .iter()
            .any(|e| e.warning && e.reason == "StepFailed" && e.note.contains("invalid token"))
    );
    assert_eq!(w.condition("LastRunSucceeded"), "False");
    assert_eq!(
        w.condition("Ready"),
        "True",
        "a failed data run does not make the spec unready"
    );
}

#[test]
fn a_failed_step_under_continue_goes_on_and_the_run_shows_the_partial_failure() {
    let mut steps = vec![step("accounts"), step("workspaces"), step("contacts")];
    steps[1].on_failure = FailurePolicy::Continue;
    let mut w = World::sequence(steps);
    w.trigger("1");
    w.succeed(10, 0);
    w.reconcile();
    w.fail("boom");
    assert_eq!(w.reconcile().len(), 1, "step 3 starts");
    w.succeed(5, 0);
    w.reconcile();
    assert_eq!(w.last_run().phase, RunPhase::SucceededWithErrors);
    assert_eq!(w.last_run().failed_step.as_deref(), Some("workspaces"));
}

#[test]
fn the_last_run_keeps_every_step_with_its_reason() {
    let mut w = crm();
    w.trigger("1");
    w.fail("bad credentials");
    w.reconcile();
    let run = w.status().last_run.as_deref().expect("lastRun");
    let phases: Vec<_> = run.steps.iter().map(|s| s.phase).collect();
    assert_eq!(
        phases,
        vec![StepPhase::Failed, StepPhase::Skipped, StepPhase::Skipped]
    );
    assert_eq!(
        run.steps[0].message.as_deref(),
        Some("bad credentials (exit code 1)")
    );
    assert_eq!(
        run.steps[2].message.as_deref(),
        Some("skipped: step accounts failed")
    );
    assert_eq!(run.progress, "3/3");
    assert!(w.events.iter().any(
        |e| e.reason == "RunFailed" && e.note.contains("step accounts failed: bad credentials")
    ));
}

#[test]
fn rejected_rows_thresholds_count_and_percent() {
    let mut steps = vec![step("accounts"), step("workspaces")];
    steps[0].rejected_rows = Some(RejectedRowsPolicy {
        max: Some(100),
        max_percent: None,
        on_exceeded: FailurePolicy::Stop,
    });
    let mut w = World::sequence(steps.clone());
    w.trigger("1");
    w.succeed(950, 50);
    assert_eq!(w.reconcile().len(), 1, "50 <= 100: continues");

    steps[0].rejected_rows = Some(RejectedRowsPolicy {
        max: None,
        max_percent: Some(1.0),
        on_exceeded: FailurePolicy::Stop,
    });
    let mut w = World::sequence(steps);
    w.trigger("1");
    w.succeed(950, 50);
    assert!(w.reconcile().is_empty(), "5% > 1%: stops");
    let run = w.last_run();
    assert_eq!(run.phase, RunPhase::Failed);
    let msg = run.message.as_ref().unwrap();
    assert!(
        msg.contains("50 of 1000 rows rejected (5.00%)") && msg.contains("1%"),
        "{msg}"
    );
}
