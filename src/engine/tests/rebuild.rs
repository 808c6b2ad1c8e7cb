//! A run rebuilt from its Jobs when status is behind them (restored from a backup, a lost
//! write): on a diamond, each step follows the Job it has, and only a step whose Job is gone
//! is closed; no attempt that had a Job gets a second one.

use jiff::SignedDuration;

use crate::api::*;
use crate::engine::fixtures::{Apply, Object, SimJob, World, creates, deletes, step, step_after};
use crate::engine::{Action, JobOutcome, Report, reasons};

/// accounts (one retry) → workspaces ‖ deals → contacts, and a second root, audit; at most
/// two steps in flight.
fn diamond() -> World {
    let mut w = World::sequence(vec![
        Step {
            retries: 1,
            ..step("accounts")
        },
        step_after("workspaces", &["accounts"]),
        step_after("deals", &["accounts"]),
        step_after("contacts", &["workspaces", "deals"]),
        step_after("audit", &[] as &[&str]),
    ]);
    w.seq.spec.max_parallel = Some(2);
    w
}

/// What happens in the cluster after the status that comes back was written.
#[derive(Clone, Copy)]
enum Ev {
    /// The running Job of this step ends: success (true) or failure.
    End(&'static str, bool),
    /// The engine decides, and its plan is carried out.
    Decide,
    /// The clock moves on this many seconds.
    Clock(i64),
    /// This attempt's Job is deleted (a TTL, by hand) and its Pod is gone.
    Gone(&'static str, i32),
}
use Ev::*;

struct Case {
    name: &'static str,
    /// After the first decision (accounts and audit Running), whose status comes back.
    script: &'static [Ev],
    /// Each step's phase, attempts and reason after the rebuild's decision.
    want: &'static [(&'static str, StepPhase, i32, Option<&'static str>)],
}

const BEHIND: Option<&str> = Some(reasons::SKIP_STATUS_BEHIND_JOBS);

fn end(w: &mut World, step: &str, ok: bool) {
    w.now += SignedDuration::from_secs(1);
    let outcome = match ok {
        true => JobOutcome::Succeeded,
        false => JobOutcome::Failed {
            timed_out: false,
            reason: "BackoffLimitExceeded".into(),
        },
    };
    let report = Report {
        rows_synced: Some(10),
        rows_rejected: Some(0),
        exit_code: Some(if ok { 0 } else { 1 }),
        message: None,
    };
    w.end_job(|j| j.view.step == step, outcome, report)
        .unwrap_or_else(|| panic!("no running job of step {step}"));
}

#[test]
fn a_run_behind_its_jobs_follows_each_steps_job_and_closes_only_steps_without_one() {
    use StepPhase::*;
    let cases = [
        Case {
            name: "a child started: its parent's Job tells how it ended, a root runs on",
            script: &[End("accounts", true), Decide],
            want: &[
                ("accounts", Succeeded, 1, None),
                ("workspaces", Running, 1, None),
                // audit and workspaces hold both places.
                ("deals", Pending, 0, None),
                ("contacts", Pending, 0, None),
                ("audit", Running, 1, None),
            ],
        },
        Case {
            name: "a child started and its parent's Job is gone: the parent is closed",
            script: &[End("accounts", true), Decide, Gone("accounts", 1)],
            want: &[
                ("accounts", Skipped, 1, BEHIND),
                ("workspaces", Running, 1, None),
                ("deals", Pending, 0, None),
                ("contacts", Pending, 0, None),
                ("audit", Running, 1, None),
            ],
        },
        Case {
            name: "the parent's retry succeeded: its later attempt is followed",
            script: &[
                End("accounts", false),
                Decide,
                Clock(10),
                Decide,
                End("accounts", true),
                Decide,
            ],
            want: &[
                ("accounts", Succeeded, 2, None),
                ("workspaces", Running, 1, None),
                ("deals", Pending, 0, None),
                ("contacts", Pending, 0, None),
                ("audit", Running, 1, None),
            ],
        },
        Case {
            name: "the parent's retry is gone, its failed attempt is not: closed, not retried",
            script: &[
                End("accounts", false),
                Decide,
                Clock(10),
                Decide,
                End("accounts", true),
                Decide,
                Gone("accounts", 2),
            ],
            want: &[
                ("accounts", Skipped, 1, BEHIND),
                ("workspaces", Running, 1, None),
                ("deals", Pending, 0, None),
                ("contacts", Pending, 0, None),
                ("audit", Running, 1, None),
            ],
        },
        Case {
            name: "a join started: both branches' Jobs are read, one that is gone is closed",
            script: &[
                End("accounts", true),
                End("audit", true),
                Decide,
                End("workspaces", true),
                End("deals", true),
                Decide,
                Gone("deals", 1),
            ],
            want: &[
                ("accounts", Succeeded, 1, None),
                ("workspaces", Succeeded, 1, None),
                // Which attempt let contacts start went with its Job: none that status knows.
                ("deals", Skipped, 0, BEHIND),
                ("contacts", Running, 1, None),
                ("audit", Succeeded, 1, None),
            ],
        },
        Case {
            name: "both branches run: they stay Running, within maxParallel",
            script: &[End("accounts", true), End("audit", true), Decide],
            want: &[
                ("accounts", Succeeded, 1, None),
                ("workspaces", Running, 1, None),
                ("deals", Running, 1, None),
                ("contacts", Pending, 0, None),
                ("audit", Succeeded, 1, None),
            ],
        },
    ];
    for case in cases {
        let name = case.name;
        let mut w = diamond();
        w.trigger("1");
        let behind = w.status().clone();
        for ev in case.script {
            match *ev {
                End(step, ok) => end(&mut w, step, ok),
                Decide => {
                    w.reconcile();
                }
                Clock(secs) => w.now += SignedDuration::from_secs(secs),
                Gone(step, attempt) => w
                    .jobs
                    .retain(|j| !(j.view.step == step && j.view.attempt == attempt)),
            }
        }
        // Status comes back as it was, longer ago than a cache can lag.
        w.seq.status = Some(behind);
        w.now += SignedDuration::from_secs(31);
        let plan = w.plan();
        assert!(
            plan.actions
                .iter()
                .any(|a| matches!(a, Action::Event(e) if e.reason == reasons::STATUS_BEHIND_JOBS)),
            "{name}: rebuilt from the Jobs"
        );
        let run = plan.status.book.current_run.as_deref().expect("the run");
        let got: Vec<_> = run
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.phase, s.attempts, s.reason.as_deref()))
            .collect();
        assert_eq!(got, case.want, "{name}");
        for s in &run.steps {
            match s.phase {
                Skipped => assert_eq!(
                    s.message.as_deref(),
                    Some(match s.name.as_str() {
                        "deals" =>
                            "skipped: status was behind its Jobs, which show step contacts had started",
                        _ =>
                            "skipped: status was behind its Jobs, which show step workspaces had started",
                    }),
                    "{name}"
                ),
                Running => {
                    let job = w.jobs.iter().find(|j| {
                        j.view.step == s.name && j.view.attempt == s.attempts && j.exists
                    });
                    assert_eq!(
                        s.job_name.as_deref(),
                        job.map(|j| j.view.name.as_str()),
                        "{name}: {} follows its Job",
                        s.name
                    );
                }
                _ => {}
            }
        }
        // No attempt that ever had a Job gets another, now or until the run ends.
        let had_a_job =
            |created: &[String], w: &World| created.iter().find(|c| w.created.contains(c)).cloned();
        let first = creates(&plan.actions);
        assert_eq!(had_a_job(&first, &w), None, "{name}: {first:?}");
        w.apply(&Object::Sequence, &plan, Apply::ALL);
        for _ in 0..10 {
            let Some(step) = w.active_job().map(|j| j.step.clone()) else {
                break;
            };
            end(&mut w, &step, true);
            let plan = w.plan();
            let created = creates(&plan.actions);
            assert_eq!(had_a_job(&created, &w), None, "{name}: {created:?}");
            w.apply(&Object::Sequence, &plan, Apply::ALL);
        }
        assert!(
            w.status().book.current_run.is_none(),
            "{name}: the run ends"
        );
    }
}

/// Status restored from a backup can give a run's number out again, and an older copy can come
/// back after it: the cluster then runs a Job of the run for a step the run does not have (the
/// spec renamed it in between). It is deleted, and holds its place under maxParallel until the
/// delete is under way.
#[test]
fn a_job_of_the_run_for_no_step_of_it_holds_its_place_until_it_is_deleted() {
    let mut w = diamond();
    w.trigger("1");
    let view = crate::engine::JobView {
        name: "crm-1-renamed-1-0000".into(),
        uid: "uid-stray".into(),
        step: "renamed".into(),
        sync: "renamed".into(),
        ..w.jobs[0].view.clone()
    };
    w.jobs.push(SimJob::new(view, Some("crm")));
    end(&mut w, "accounts", true);
    let plan = w.plan();
    assert!(
        creates(&plan.actions).is_empty(),
        "audit and the stray hold both places: {:?}",
        creates(&plan.actions)
    );
    assert_eq!(deletes(&plan.actions), ["crm-1-renamed-1-0000"]);
    w.apply(&Object::Sequence, &plan, Apply::ALL);
    // The delete is under way (the world's deletes take the Job at once): a place is free.
    let created = w.reconcile();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(created[0].starts_with("crm-1-workspaces-1-"), "{created:?}");
}

/// Status recorded a step's attempt whose Job was never created, and is behind the Jobs that
/// took the places since: that step waits for a place (not Running, and nothing created), and
/// its attempt's Job is created once a place is free.
#[test]
fn a_recorded_attempt_without_its_job_waits_for_a_place_the_jobs_took() {
    let mut w = diamond();
    w.trigger("1");
    end(&mut w, "accounts", true);
    // The decision that records workspaces' attempt is written; its create is lost.
    let plan = w.plan();
    assert_eq!(creates(&plan.actions).len(), 1, "workspaces starts");
    w.seq.status = Some(plan.status);
    // Meanwhile deals runs, as a newer status (since lost) had it.
    let uid = w.seq.metadata.uid.clone().unwrap();
    let deals = crate::engine::job_name("SyncSequence", "crm", &uid, 1, "deals", 1);
    let view = crate::engine::JobView {
        name: deals,
        uid: "uid-deals".into(),
        step: "deals".into(),
        sync: "deals".into(),
        outcome: JobOutcome::Active,
        finished_at: None,
        report: None,
        created: Some(w.now),
        ..w.jobs[0].view.clone()
    };
    w.jobs.push(SimJob::new(view, Some("crm")));
    w.now += SignedDuration::from_secs(31);
    let plan = w.plan();
    let run = plan.status.book.current_run.as_deref().unwrap();
    let phase = |name: &str| run.steps.iter().find(|s| s.name == name).unwrap();
    assert_eq!(phase("deals").phase, StepPhase::Running);
    assert_eq!(phase("audit").phase, StepPhase::Running);
    let workspaces = phase("workspaces");
    assert_eq!(
        (workspaces.phase, workspaces.attempts),
        (StepPhase::Waiting, 1)
    );
    assert_eq!(
        workspaces.message.as_deref(),
        Some("waiting for a free place: maxParallel is 2, and 2 steps are running")
    );
    assert!(
        creates(&plan.actions).is_empty(),
        "{:?}",
        creates(&plan.actions)
    );
    w.apply(&Object::Sequence, &plan, Apply::ALL);
    end(&mut w, "audit", true);
    let created = w.reconcile();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(created[0].starts_with("crm-1-workspaces-1-"), "{created:?}");
}
