//! Steps as a graph: parents by `dependsOn`, branches side by side, joins, `runWhen`, failures
//! contained to their branch, `failFast`, `maxParallel`, two branches on one Sync.

use crate::api::*;
use crate::engine::JobOutcome;
use crate::engine::Report;
use crate::engine::fixtures::{World, step};

fn after(name: &str, deps: &[&str]) -> Step {
    Step {
        depends_on: Some(deps.iter().map(|d| d.to_string()).collect()),
        ..step(name)
    }
}

/// accounts → workspaces ‖ deals → contacts, and a second root, audit.
fn diamond() -> Vec<Step> {
    vec![
        step("accounts"),
        after("workspaces", &["accounts"]),
        after("deals", &["accounts"]),
        after("contacts", &["workspaces", "deals"]),
        after("audit", &[]),
    ]
}

fn created_steps(created: &[String]) -> Vec<String> {
    let mut steps: Vec<String> = created
        .iter()
        .map(|n| n.split('-').nth(2).unwrap_or_default().to_string())
        .collect();
    steps.sort();
    steps
}

fn end(w: &mut World, step: &str, ok: bool) {
    w.now += jiff::SignedDuration::from_secs(1);
    let (outcome, report) = if ok {
        (
            JobOutcome::Succeeded,
            Report {
                rows_synced: Some(10),
                rows_rejected: Some(0),
                exit_code: Some(0),
                message: None,
            },
        )
    } else {
        (
            JobOutcome::Failed {
                timed_out: false,
                reason: "BackoffLimitExceeded".into(),
            },
            Report {
                message: Some(format!("{step} API returned 500")),
                exit_code: Some(1),
                ..Report::default()
            },
        )
    };
    w.end_job(|j| j.view.step == step, outcome, report)
        .unwrap_or_else(|| panic!("no running job of step {step}"));
}

fn step_status<'a>(w: &'a World, name: &str) -> &'a StepStatus {
    let st = w.status();
    let run = st
        .book
        .current_run
        .as_deref()
        .or(st.last_run.as_deref())
        .expect("a run");
    run.steps.iter().find(|s| s.name == name).expect("the step")
}

#[test]
fn roots_start_together_and_a_fan_out_is_one_decision() {
    let mut w = World::sequence(diamond());
    assert_eq!(created_steps(&w.trigger("1")), ["accounts", "audit"]);
    assert_eq!(
        step_status(&w, "contacts").message.as_deref(),
        Some("waiting for workspaces, deals")
    );
    end(&mut w, "accounts", true);
    // Both children of accounts in one plan.
    assert_eq!(created_steps(&w.reconcile()), ["deals", "workspaces"]);
    end(&mut w, "workspaces", true);
    assert!(w.reconcile().is_empty(), "contacts waits for deals too");
    assert_eq!(
        step_status(&w, "contacts").message.as_deref(),
        Some("waiting for deals")
    );
    end(&mut w, "deals", true);
    assert_eq!(created_steps(&w.reconcile()), ["contacts"]);
    end(&mut w, "contacts", true);
    assert_eq!(w.condition("Running"), "True", "audit still runs");
    end(&mut w, "audit", true);
    w.reconcile();
    assert_eq!(w.last_run().phase, RunPhase::Succeeded);
    assert_eq!(w.created.len(), 5);
}

#[test]
fn max_parallel_caps_the_attempts_in_flight_and_says_what_a_step_waits_for() {
    let mut steps = diamond();
    steps.push(after("extra", &[]));
    let mut w = World::sequence(steps);
    w.seq.spec.max_parallel = Some(2);
    assert_eq!(created_steps(&w.trigger("1")), ["accounts", "audit"]);
    let extra = step_status(&w, "extra");
    assert_eq!(extra.phase, StepPhase::Pending);
    assert_eq!(
        extra.message.as_deref(),
        Some("waiting for a free place: maxParallel is 2, and 2 steps are running")
    );
    end(&mut w, "accounts", true);
    // One place came free: the first ready step in order takes it.
    assert_eq!(created_steps(&w.reconcile()), ["workspaces"]);
    end(&mut w, "audit", true);
    assert_eq!(created_steps(&w.reconcile()), ["deals"]);
    let mut most = 0;
    for _ in 0..10 {
        let running = w.jobs.iter().filter(|j| j.holds()).count();
        most = most.max(running);
        let Some(job) = w.active_job().map(|j| j.step.clone()) else {
            break;
        };
        end(&mut w, &job, true);
        w.reconcile();
    }
    assert!(most <= 2, "{most} Jobs at once");
    assert_eq!(w.last_run().phase, RunPhase::Succeeded);
    assert_eq!(w.created.len(), 6);
}

#[test]
fn a_stop_failure_skips_its_descendants_only_and_the_run_fails_when_nothing_more_can_run() {
    let mut steps = diamond();
    steps.push(Step {
        run_when: RunWhen::AllFinished,
        ..after("report", &["workspaces", "deals"])
    });
    steps.push(after("summary", &["contacts"]));
    let mut w = World::sequence(steps);
    w.trigger("1");
    end(&mut w, "accounts", true);
    w.reconcile();
    end(&mut w, "deals", false);
    assert!(w.reconcile().is_empty(), "report waits for workspaces");
    for (name, message) in [
        ("contacts", "skipped: step deals failed"),
        ("summary", "skipped: step deals failed"),
    ] {
        let s = step_status(&w, name);
        assert_eq!(s.phase, StepPhase::Skipped, "{name}");
        assert_eq!(s.reason.as_deref(), Some("UpstreamFailed"), "{name}");
        assert_eq!(s.message.as_deref(), Some(message), "{name}");
    }
    let run = w
        .status()
        .book
        .current_run
        .as_deref()
        .expect("still running");
    assert_eq!(run.stopped_by.as_deref(), Some("deals"));
    assert!(w.events.iter().any(|e| e.reason == "StepSkipped"
        && e.note == "step contacts skipped (UpstreamFailed): step deals failed"));
    end(&mut w, "workspaces", true);
    assert_eq!(created_steps(&w.reconcile()), ["report"]);
    end(&mut w, "report", true);
    end(&mut w, "audit", true);
    w.reconcile();
    let last = w.last_run();
    assert_eq!(last.phase, RunPhase::Failed);
    assert_eq!(last.failed_step.as_deref(), Some("deals"));
    assert_eq!(
        last.message.as_deref(),
        Some("step deals failed: deals API returned 500 (exit code 1)")
    );
    assert!(w.events.iter().any(|e| e.reason == "RunFailed"));
}

#[test]
fn a_failure_under_continue_counts_as_succeeded_for_the_steps_after_it() {
    let mut steps = diamond();
    steps[2].on_failure = FailurePolicy::Continue;
    let mut w = World::sequence(steps);
    w.trigger("1");
    end(&mut w, "accounts", true);
    w.reconcile();
    end(&mut w, "deals", false);
    end(&mut w, "workspaces", true);
    assert_eq!(created_steps(&w.reconcile()), ["contacts"]);
    end(&mut w, "contacts", true);
    end(&mut w, "audit", true);
    w.reconcile();
    assert_eq!(w.last_run().phase, RunPhase::SucceededWithErrors);
}

#[test]
fn any_failed_runs_a_compensating_step_only_after_a_failure() {
    for deals_ok in [false, true] {
        let mut w = World::sequence(vec![
            step("deals"),
            Step {
                run_when: RunWhen::AnyFailed,
                ..after("undo", &["deals"])
            },
        ]);
        w.trigger("1");
        end(&mut w, "deals", deals_ok);
        let created = w.reconcile();
        if deals_ok {
            assert!(created.is_empty());
            let s = step_status(&w, "undo");
            assert_eq!(s.reason.as_deref(), Some("UpstreamSucceeded"));
            assert_eq!(w.last_run().phase, RunPhase::Succeeded);
        } else {
            assert_eq!(created_steps(&created), ["undo"]);
            end(&mut w, "undo", true);
            w.reconcile();
            assert_eq!(
                w.last_run().phase,
                RunPhase::Failed,
                "deals failed under Stop"
            );
        }
    }
}

#[test]
fn fail_fast_starts_nothing_new_anywhere_and_lets_running_jobs_finish() {
    let mut w = World::sequence(vec![
        step("accounts"),
        after("workspaces", &["accounts"]),
        after("deals", &[]),
    ]);
    w.seq.spec.fail_fast = true;
    assert_eq!(created_steps(&w.trigger("1")), ["accounts", "deals"]);
    end(&mut w, "deals", false);
    assert!(w.reconcile().is_empty());
    assert_eq!(step_status(&w, "accounts").phase, StepPhase::Running);
    end(&mut w, "accounts", true);
    assert!(w.reconcile().is_empty(), "workspaces must not start");
    let s = step_status(&w, "workspaces");
    assert_eq!(s.phase, StepPhase::Skipped);
    assert_eq!(s.reason.as_deref(), Some("FailFast"));
    assert_eq!(
        s.message.as_deref(),
        Some("skipped: step deals failed and failFast is set")
    );
    assert_eq!(w.last_run().phase, RunPhase::Failed);
}

#[test]
fn two_branches_on_one_sync_take_turns() {
    let mut steps = diamond();
    steps[2].sync_ref.name = "workspaces".into();
    let mut w = World::sequence(steps);
    w.trigger("1");
    end(&mut w, "accounts", true);
    assert_eq!(created_steps(&w.reconcile()), ["workspaces"]);
    let deals = step_status(&w, "deals");
    assert_eq!(deals.phase, StepPhase::Waiting);
    assert_eq!(
        deals.message.as_deref(),
        Some("waiting: sync workspaces is running for step workspaces of this run")
    );
    assert!(
        w.condition_message("Running")
            .contains("deals (waiting: sync workspaces")
    );
    end(&mut w, "workspaces", true);
    assert_eq!(created_steps(&w.reconcile()), ["deals"]);
}

#[test]
fn cancel_stops_every_branch() {
    let mut w = World::sequence(diamond());
    w.trigger("1");
    end(&mut w, "accounts", true);
    w.reconcile();
    w.annotate(annotations::CANCEL_REQUESTED_AT, "c1");
    w.reconcile();
    let run = w.status().last_run.clone().expect("the cancelled run");
    let phase = |n: &str| run.steps.iter().find(|s| s.name == n).unwrap();
    for n in ["workspaces", "deals", "audit"] {
        assert_eq!(phase(n).phase, StepPhase::Cancelled, "{n}");
    }
    assert_eq!(phase("contacts").phase, StepPhase::Skipped);
    assert_eq!(phase("contacts").reason.as_deref(), Some("RunCancelled"));
    assert!(
        w.jobs
            .iter()
            .all(|j| !j.holds() || j.view.outcome != JobOutcome::Active),
        "every running branch's Job is deleted"
    );
}

#[test]
fn a_retry_reuses_what_succeeded_and_runs_the_failed_and_skipped_steps() {
    let mut w = World::sequence(diamond());
    w.trigger("1");
    end(&mut w, "accounts", true);
    w.reconcile();
    end(&mut w, "deals", false);
    end(&mut w, "workspaces", true);
    end(&mut w, "audit", true);
    w.reconcile();
    assert_eq!(w.last_run().phase, RunPhase::Failed);
    let first_jobs = w.created.len();

    w.annotate(annotations::RETRY_REQUESTED_AT, "r1");
    let created = w.reconcile();
    assert_eq!(
        created_steps(&created),
        ["deals"],
        "only the failed step starts"
    );
    let run = w.status().book.current_run.clone().expect("the retry");
    assert_eq!(run.trigger, TriggerKind::Retry);
    assert_eq!(run.retry_of, Some(1));
    assert_eq!(w.status().book.last_handled_retry_at.as_deref(), Some("r1"));
    for name in ["accounts", "workspaces", "audit"] {
        let s = run.steps.iter().find(|s| s.name == name).unwrap();
        assert_eq!(s.phase, StepPhase::Succeeded, "{name}");
        assert_eq!(s.reused_from, Some(1), "{name}");
        assert_eq!(s.rows_synced, Some(10), "{name} keeps its rows");
        assert!(
            s.job_name.as_deref().unwrap().contains("-1-"),
            "{name}: run 1's Job"
        );
    }
    assert!(w.events.iter().any(|e| e.reason == "RunStarted"
        && e.note == "run 2 started by retry of run 1, reusing accounts, workspaces, audit"));
    end(&mut w, "deals", true);
    assert_eq!(created_steps(&w.reconcile()), ["contacts"]);
    end(&mut w, "contacts", true);
    w.reconcile();
    assert_eq!(w.last_run().phase, RunPhase::Succeeded);
    assert_eq!(
        w.created.len(),
        first_jobs + 2,
        "new Jobs for deals and contacts only"
    );

    // Run 1 is no longer the last finished run, but the history kept what succeeded in it,
    // and only that: a run that succeeded keeps nothing.
    let history = w.status().book.runs.clone();
    let kept = |id: i64| history.iter().find(|r| r.id == id).unwrap();
    let one: Vec<&str> = kept(1)
        .succeeded_steps
        .iter()
        .flatten()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(one, ["accounts", "workspaces", "audit"]);
    assert_eq!(kept(2).succeeded_steps, None);
    let second = w.status().last_run.clone().expect("run 2");
    w.annotate(annotations::RETRY_RUN, "1");
    w.annotate(annotations::RETRY_REQUESTED_AT, "r2");
    assert_eq!(
        created_steps(&w.reconcile()),
        ["deals"],
        "run 1 again: its failed step, with what succeeded in it reused"
    );
    let third = w
        .status()
        .book
        .current_run
        .clone()
        .expect("the retry of run 1");
    assert_eq!(
        (third.trigger, third.retry_of),
        (TriggerKind::Retry, Some(1))
    );
    for name in ["accounts", "workspaces", "audit"] {
        let from_history = third.steps.iter().find(|s| s.name == name).unwrap();
        let from_last_run = second.steps.iter().find(|s| s.name == name).unwrap();
        // As the retry of the last finished run reused it, but the message (and the Job's
        // UID), which the history does not keep.
        assert_eq!(
            *from_history,
            StepStatus {
                message: None,
                job_uid: None,
                ..from_last_run.clone()
            },
            "{name}"
        );
    }
    end(&mut w, "deals", true);
    assert_eq!(created_steps(&w.reconcile()), ["contacts"]);
    end(&mut w, "contacts", true);
    w.reconcile();
    assert_eq!(w.last_run().phase, RunPhase::Succeeded);

    // Refused, each saying why: a run that succeeded (the last finished run, or one of the
    // history), a run in neither, and a run the history recorded without its steps.
    let refused = |w: &mut World, run: &str, value: &str, why: &str| {
        w.annotate(annotations::RETRY_RUN, run);
        w.annotate(annotations::RETRY_REQUESTED_AT, value);
        assert!(w.reconcile().is_empty(), "retry of run {run}");
        assert!(
            w.events.iter().any(|e| e.reason == "TriggerSkipped"
                && e.note == format!("retry of run {run} trigger skipped: {why}")),
            "retry of run {run}: {:?}",
            w.events.last()
        );
    };
    refused(
        &mut w,
        "3",
        "r3",
        "run 3 Succeeded, so there is nothing to retry (request a run with syncseq.dev/requestedAt to run every step again)",
    );
    refused(
        &mut w,
        "2",
        "r4",
        "run 2 Succeeded, so there is nothing to retry (request a run with syncseq.dev/requestedAt to run every step again)",
    );
    refused(
        &mut w,
        "9",
        "r5",
        "run 9 is neither the last finished run (3) nor in the history, which keeps runs 3, 2, 1 (spec.historyLimit)",
    );
    let st = w.seq.status.as_mut().unwrap();
    st.book
        .runs
        .iter_mut()
        .for_each(|r| r.succeeded_steps = None);
    refused(
        &mut w,
        "1",
        "r6",
        "run 1 cannot be retried: the history recorded it before it kept the steps that succeeded, so only the last finished run (3) can be",
    );
    assert_eq!(
        w.status().book.skipped_triggers,
        Some(4),
        "each refusal is counted"
    );
    w.annotate(annotations::RETRY_RUN, "two");
    w.annotate(annotations::RETRY_REQUESTED_AT, "r7");
    assert!(w.reconcile().is_empty());
    assert!(w.events.iter().any(|e| {
        e.reason == "TriggerSkipped"
            && e.note
                .contains("syncseq.dev/retryRun is 'two', not a run number")
    }));
}
