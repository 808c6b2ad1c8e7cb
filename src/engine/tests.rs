//! Scenario and property tests of the engine, driven through a small in-memory simulator:
//! the simulator plays the API server (applies status, creates Jobs) and the Job controller
//! (finishes Jobs as the test says), and the engine decides.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

use super::fixtures::{created, creates, deletes, sequence, step, sync, t0};
use super::*;
use crate::api::*;

/// Plays the cluster around the engine.
struct World {
    seq: SyncSequence,
    syncs: BTreeMap<String, Sync>,
    jobs: Vec<JobView>,
    holders: BTreeMap<String, Vec<Holder>>,
    upstreams: Upstreams,
    now: Timestamp,
    events: Vec<Event>,
    created: Vec<String>,
}

impl World {
    fn new(steps: Vec<Step>) -> Self {
        let syncs = steps
            .iter()
            .map(|s| (s.sync_ref.name.clone(), sync(&s.sync_ref.name)))
            .collect();
        World {
            seq: sequence(steps),
            syncs,
            jobs: vec![],
            holders: BTreeMap::new(),
            upstreams: Upstreams::default(),
            now: t0(),
            events: vec![],
            created: vec![],
        }
    }

    fn plan(&self) -> Plan {
        decide(&Observed {
            sequence: &self.seq,
            syncs: &self.syncs,
            jobs: &self.jobs,
            holders: &self.holders,
            upstreams: &self.upstreams,
            now: self.now,
        })
    }

    /// Decides and applies the plan; returns the Jobs it created.
    fn reconcile(&mut self) -> Vec<String> {
        let plan = self.plan();
        self.seq.status = Some(plan.status);
        let mut new = vec![];
        for a in plan.actions {
            match a {
                Action::CreateJob(job) => {
                    let name = job.metadata.name.clone().unwrap();
                    if self.jobs.iter().any(|j| j.name == name) {
                        continue;
                    }
                    self.jobs.push(created(&job, self.now));
                    self.created.push(name.clone());
                    new.push(name);
                }
                Action::DeleteJob { name } => self.jobs.retain(|j| j.name != name),
                Action::Event(e) => self.events.push(e),
            }
        }
        new
    }

    fn annotate(&mut self, key: &str, value: &str) {
        self.seq
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }

    fn trigger(&mut self, value: &str) -> Vec<String> {
        self.annotate(annotations::REQUESTED_AT, value);
        self.reconcile()
    }

    fn active_job(&self) -> Option<&JobView> {
        self.jobs.iter().find(|j| j.outcome == JobOutcome::Active)
    }

    /// Finishes the active Job with a report, and advances the clock a little.
    fn finish(&mut self, outcome: JobOutcome, report: Report) {
        self.now += SignedDuration::from_secs(1);
        let now = self.now;
        let job = self
            .jobs
            .iter_mut()
            .find(|j| j.outcome == JobOutcome::Active)
            .expect("an active job");
        job.outcome = outcome;
        job.finished_at = Some(now);
        job.report = Some(report);
    }

    fn succeed(&mut self, synced: i64, rejected: i64) {
        self.finish(
            JobOutcome::Succeeded,
            Report {
                rows_synced: Some(synced),
                rows_rejected: Some(rejected),
                message: None,
                exit_code: Some(0),
            },
        );
    }

    fn fail(&mut self, message: &str) {
        self.finish(
            JobOutcome::Failed {
                timed_out: false,
                reason: "BackoffLimitExceeded".into(),
            },
            Report {
                message: Some(message.into()),
                exit_code: Some(1),
                ..Default::default()
            },
        );
    }

    fn status(&self) -> &SyncSequenceStatus {
        self.seq.status.as_ref().unwrap()
    }

    fn last_run(&self) -> &RunSummary {
        &self.status().book.runs[0]
    }

    fn phases(&self) -> Vec<StepPhase> {
        self.status()
            .book
            .current_run
            .as_ref()
            .unwrap()
            .steps
            .iter()
            .map(|s| s.phase)
            .collect()
    }

    fn condition(&self, type_: &str) -> String {
        self.status()
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }
}

fn crm() -> World {
    World::new(vec![step("accounts"), step("workspaces"), step("contacts")])
}

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
        w.status().book.current_run.as_ref().unwrap().progress,
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
    let mut w = World::new(steps);
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
    let run = w.status().last_run.as_ref().expect("lastRun");
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
    let mut w = World::new(steps.clone());
    w.trigger("1");
    w.succeed(950, 50);
    assert_eq!(w.reconcile().len(), 1, "50 <= 100: continues");

    steps[0].rejected_rows = Some(RejectedRowsPolicy {
        max: None,
        max_percent: Some(1.0),
        on_exceeded: FailurePolicy::Stop,
    });
    let mut w = World::new(steps);
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

#[test]
fn retries_create_one_job_per_attempt_with_backoff() {
    let mut steps = vec![step("accounts")];
    steps[0].retries = 2;
    steps[0].retry_delay_seconds = 10;
    let mut w = World::new(steps);
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
        let mut w = World::new(steps);
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
    let mut w = World::new(steps);
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

#[test]
fn a_missing_sync_waits_with_a_message_and_recovers() {
    let mut w = crm();
    w.syncs.remove("workspaces");
    w.trigger("1");
    assert_eq!(w.condition("Ready"), "False");
    w.succeed(1, 0);
    assert!(w.reconcile().is_empty());
    let step = &w.status().book.current_run.as_ref().unwrap().steps[1];
    assert_eq!(step.phase, StepPhase::Waiting);
    assert!(
        step.message
            .as_ref()
            .unwrap()
            .contains("sync workspaces not found")
    );
    assert!(
        w.events
            .iter()
            .any(|e| e.warning && e.reason == "SyncNotFound")
    );
    w.syncs.insert("workspaces".into(), sync("workspaces"));
    assert_eq!(w.reconcile().len(), 1);
    assert_eq!(w.condition("Ready"), "True");
}

#[test]
fn a_busy_sync_waits_and_says_for_whom() {
    let mut w = crm();
    w.holders.insert(
        "accounts".into(),
        vec![Holder {
            job: "other-7-accounts-1-abcd".into(),
            by: "sequence crm-nightly run 7".into(),
        }],
    );
    assert!(w.trigger("1").is_empty());
    let step = &w.status().book.current_run.as_ref().unwrap().steps[0];
    assert_eq!(
        step.message.as_deref(),
        Some("waiting: sync accounts is running for sequence crm-nightly run 7")
    );
    w.holders.clear();
    assert_eq!(w.reconcile().len(), 1);
}

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
    assert_eq!(w.status().book.current_run.as_ref().unwrap().id, 2);
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
    assert_eq!(w.status().book.current_run.as_ref().unwrap().id, 2);
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
    assert_eq!(w.status().book.current_run.as_ref().unwrap().id, 3);
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
    assert!(!w.jobs.iter().any(|j| j.name == old), "old job deleted");
    assert_eq!(w.last_run().phase, RunPhase::Cancelled);
    assert_eq!(w.status().book.current_run.as_ref().unwrap().id, 2);
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

#[test]
fn a_lost_job_create_is_redone_under_the_same_name() {
    let mut w = crm();
    let created = w.trigger("1");
    // The controller died after writing status but before the Job existed.
    w.jobs.clear();
    let plan = w.plan();
    let names: Vec<_> = plan
        .actions
        .iter()
        .filter_map(|a| {
            if let Action::CreateJob(j) = a {
                j.metadata.name.clone()
            } else {
                None
            }
        })
        .collect();
    assert_eq!(names, created);
}

#[test]
fn a_seen_job_that_vanishes_fails_its_attempt_and_is_never_created_again() {
    let mut steps = vec![step("accounts")];
    steps[0].retries = 1;
    let mut w = World::new(steps);
    let first = w.trigger("1");
    w.reconcile(); // the Job is seen: its UID goes into status
    let st = &w.status().book.current_run.as_ref().unwrap().steps[0];
    assert_eq!(
        st.job_uid.as_deref(),
        Some(format!("uid-{}", first[0]).as_str())
    );
    w.jobs.clear(); // kubectl delete job
    let plan = w.plan();
    assert!(
        !creates(&plan.actions).contains(&first[0]),
        "never re-created"
    );
    let step = &plan.status.book.current_run.as_ref().unwrap().steps[0];
    assert_eq!(
        step.attempt_failure.as_ref().map(|f| f.reason.as_str()),
        Some("JobDeleted")
    );
    assert!(
        plan.actions.iter().any(|a| matches!(a, Action::Event(e)
        if e.warning && e.reason == "JobDeleted" && e.note.contains("deleted before it finished")))
    );
    // It counts against retries: after the backoff, attempt 2 starts under a new name.
    w.reconcile();
    w.now += SignedDuration::from_secs(10);
    let second = w.reconcile();
    assert_eq!(second.len(), 1);
    assert!(second[0].starts_with("crm-1-accounts-2-"), "{second:?}");
    // Attempt 2 vanishes too: no retries left, the step fails with the reason.
    w.reconcile();
    w.jobs.clear();
    w.reconcile();
    let run = w.last_run();
    assert_eq!(run.phase, RunPhase::Failed);
    assert!(
        run.message
            .as_ref()
            .unwrap()
            .contains("was deleted before it finished")
    );
}

#[test]
fn a_job_recorded_from_its_create_is_never_created_again_when_it_vanishes() {
    let mut w = crm();
    let created = w.trigger("1");
    // The controller writes status after the create, with the UID the create returned...
    let uid = w.jobs[0].uid.clone();
    let mut st = w.status().clone();
    assert!(record_created(
        st.book.current_run.as_mut(),
        &created[0],
        &uid
    ));
    assert!(
        !record_created(st.book.current_run.as_mut(), &created[0], &uid),
        "recorded once"
    );
    // ...and the Job is deleted before the watch ever shows it.
    w.seq.status = Some(st);
    w.jobs.clear();
    assert!(w.reconcile().is_empty(), "never created a second time");
    assert!(
        w.events.iter().any(|e| e.reason == "JobDeleted"),
        "{:?}",
        w.events
    );
}

#[test]
fn a_refused_create_fails_the_attempt_with_the_servers_message() {
    let mut w = crm();
    let created = w.trigger("1");
    w.jobs.clear(); // the API server refused it
    let mut st = w.status().clone();
    assert!(record_refusal(
        st.book.current_run.as_mut(),
        &created[0],
        "jobs.batch \"x\" is forbidden: exceeded quota: no-jobs\u{1b}[0m",
        w.now
    ));
    w.seq.status = Some(st);
    assert!(w.reconcile().is_empty(), "retries 0: no second create");
    let run = w.last_run();
    assert_eq!(run.phase, RunPhase::Failed);
    let message = run.message.as_ref().unwrap();
    assert!(
        message.contains("the API server refused to create job")
            && message.contains("exceeded quota"),
        "{message}"
    );
    assert!(!message.contains('\u{1b}'));
}

#[test]
fn a_cancelled_runs_job_is_deleted_on_every_reconcile_until_it_goes() {
    let mut w = crm();
    let created = w.trigger("1");
    w.annotate(annotations::CANCEL_REQUESTED_AT, "c");
    let plan = w.plan();
    assert_eq!(deletes(&plan.actions), created);
    // The delete was lost (the controller died): the next reconcile deletes again.
    w.seq.status = Some(plan.status);
    assert_eq!(deletes(&w.plan().actions), created);
    // Once it is being deleted, it is left to go.
    w.jobs[0].deleting = true;
    assert!(deletes(&w.plan().actions).is_empty());
}

#[test]
fn a_job_the_status_does_not_know_waits_a_bounded_time_then_is_adopted() {
    let mut w = crm();
    w.trigger("1");
    let before = w.status().clone();
    w.succeed(1, 0);
    w.reconcile(); // step 2 starts
    // The cached sequence is older than the Job of step 2.
    w.seq.status = Some(before);
    let plan = w.plan();
    assert!(
        plan.actions.is_empty() && plan.wake_at.is_some(),
        "waits for a fresher copy"
    );
    w.now += SignedDuration::from_secs(31);
    let plan = w.plan();
    let run = plan.status.book.current_run.as_ref().unwrap();
    assert_eq!(run.steps[1].phase, StepPhase::Running);
    assert_eq!(run.steps[1].attempts, 1);
    assert!(run.steps[0].phase.is_final());
    assert!(
        creates(&plan.actions).is_empty() && deletes(&plan.actions).is_empty(),
        "{:?}",
        plan.actions
    );
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Event(e) if e.reason == "StatusBehindJobs"))
    );
    let recovered = |st: &crate::api::SyncSequenceStatus| {
        st.conditions
            .iter()
            .find(|c| c.type_ == "StatusRecovered")
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(
        recovered(&plan.status),
        Some(("True".into(), "StatusBehindJobs".into()))
    );
    // It stays while the recovered run goes on, and goes once that run has finished.
    w.seq.status = Some(plan.status);
    w.reconcile();
    assert!(recovered(w.status()).is_some());
    w.succeed(1, 1);
    w.reconcile();
    w.succeed(1, 2);
    w.reconcile();
    assert!(w.status().book.current_run.is_none());
    assert_eq!(recovered(w.status()), None);
}

#[test]
fn history_is_cut_to_the_limit_and_old_jobs_are_deleted() {
    let mut w = World::new(vec![step("accounts")]);
    for i in 1..=5 {
        w.trigger(&i.to_string());
        w.succeed(1, 0);
        w.reconcile();
    }
    let ids: Vec<i64> = w.status().book.runs.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![5, 4, 3]);
    let mut runs: Vec<i64> = w.jobs.iter().map(|j| j.run).collect();
    runs.sort();
    assert_eq!(runs, vec![3, 4, 5]);
}

#[test]
fn jobs_carry_labels_owner_and_timeout() {
    let mut steps = vec![step("accounts")];
    steps[0].timeout_seconds = Some(60);
    let w = World {
        seq: {
            let mut s = sequence(steps);
            s.metadata.annotations =
                Some([(annotations::REQUESTED_AT.to_string(), "x".to_string())].into());
            s
        },
        ..crm()
    };
    let plan = w.plan();
    let Action::CreateJob(job) = plan
        .actions
        .iter()
        .find(|a| matches!(a, Action::CreateJob(_)))
        .unwrap()
    else {
        unreachable!()
    };
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["syncseq.dev/sequence"], "crm");
    assert_eq!(labels["syncseq.dev/run"], "1");
    assert_eq!(labels["syncseq.dev/step"], "accounts");
    assert_eq!(labels["syncseq.dev/sync"], "accounts");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("SyncSequence", Some(true))
    );
    assert!(
        job.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key(annotations::SCHEDULED_TIMESTAMP)),
        "a manual run has no fire time"
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(60));
    assert_eq!(
        spec.template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap()["syncseq.dev/sequence"],
        "crm"
    );
}

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
        st.book.current_run.as_ref().unwrap().trigger,
        TriggerKind::Schedule
    );
    assert_eq!(
        st.schedule.last_schedule_time,
        Some(Time(t0() + SignedDuration::from_mins(5)))
    );
}

#[test]
fn after_downtime_one_catch_up_run_or_none_past_the_deadline() {
    let mut w = World::new(vec![step("accounts")]);
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

    let mut w = World::new(vec![step("accounts")]);
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
    let mut w = World::new(vec![step("accounts"), step("contacts")]);
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

// ---- properties ----

#[derive(Debug, Clone)]
enum Outcome {
    Succeed { synced: i64, rejected: i64 },
    Fail,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (0i64..2000, 0i64..200)
            .prop_map(|(synced, rejected)| Outcome::Succeed { synced, rejected }),
        Just(Outcome::Fail),
    ]
}

fn policy() -> impl Strategy<Value = FailurePolicy> {
    prop_oneof![Just(FailurePolicy::Stop), Just(FailurePolicy::Continue)]
}

fn arb_step(i: usize) -> impl Strategy<Value = Step> {
    (
        policy(),
        proptest::option::of((0i64..150, policy())),
        0i32..3,
    )
        .prop_map(move |(on_failure, rows, retries)| Step {
            on_failure,
            rejected_rows: rows.map(|(max, on_exceeded)| RejectedRowsPolicy {
                max: Some(max),
                max_percent: None,
                on_exceeded,
            }),
            retries,
            retry_delay_seconds: 1,
            ..step(&format!("s{i}"))
        })
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    (1usize..6).prop_flat_map(|n| (0..n).map(arb_step).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Drives random runs to the end and checks the run invariants at every step.
    #[test]
    fn runs_respect_order_and_end_in_exactly_one_final_phase(steps in arb_steps(), outcomes in proptest::collection::vec(outcome(), 40), replays in proptest::collection::vec(any::<bool>(), 40)) {
        let n = steps.len();
        let mut w = World::new(steps.clone());
        w.trigger("go");
        let mut outcomes = outcomes.into_iter();
        let mut replays = replays.into_iter();
        for _ in 0..60 {
            // Never two steps of one run active at once.
            prop_assert!(w.jobs.iter().filter(|j| j.outcome == JobOutcome::Active).count() <= 1);
            let Some(run) = w.status().book.current_run.clone() else { break };
            // A step only starts after every earlier step is final.
            for (i, s) in run.steps.iter().enumerate() {
                if s.attempts > 0 {
                    prop_assert!(run.steps[..i].iter().all(|p| p.phase.is_final()), "step {i} started early: {run:?}");
                }
            }
            if w.active_job().is_some() {
                match outcomes.next().unwrap_or(Outcome::Succeed { synced: 1, rejected: 0 }) {
                    Outcome::Succeed { synced, rejected } => w.succeed(synced, rejected),
                    Outcome::Fail => w.fail("boom"),
                }
            } else {
                w.now += SignedDuration::from_secs(10);
            }
            w.reconcile();
            // Replaying the same observation creates nothing new.
            if replays.next().unwrap_or(false) {
                let before = w.created.len();
                w.reconcile();
                prop_assert_eq!(before, w.created.len());
            }
        }
        let st = w.status();
        prop_assert!(st.book.current_run.is_none(), "the run finished");
        let run = &st.book.runs[0];
        prop_assert!(run.phase.is_finished());
        // Every step of the finished run is in exactly one final phase, consistent with the run.
        let last = st.last_run.as_ref().unwrap();
        prop_assert_eq!(last.steps.len(), n);
        prop_assert!(last.steps.iter().all(|s| s.phase.is_final()), "{:?}", last.steps);
        let failed = last.steps.iter().filter(|s| s.phase == StepPhase::Failed).count();
        let skipped = last.steps.iter().filter(|s| s.phase == StepPhase::Skipped).count();
        match run.phase {
            RunPhase::Succeeded => prop_assert_eq!(failed + skipped, 0),
            RunPhase::SucceededWithErrors => prop_assert!(failed > 0 && skipped == 0),
            RunPhase::Failed => prop_assert!(failed > 0),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        // Skipped steps only ever follow the failed step that stopped the run.
        if let Some(first_skipped) = last.steps.iter().position(|s| s.phase == StepPhase::Skipped) {
            prop_assert_eq!(last.steps[first_skipped - 1].phase, StepPhase::Failed);
            prop_assert!(last.steps[first_skipped..].iter().all(|s| s.phase == StepPhase::Skipped));
        }
        // Each step of a finished run is final exactly once: check via the Jobs created.
        let mut per_step: BTreeMap<String, i32> = BTreeMap::new();
        for name in &w.created {
            let job = name.clone();
            let step = steps.iter().find(|s| job.starts_with(&format!("crm-1-{}-", s.name))).unwrap();
            *per_step.entry(step.name.clone()).or_default() += 1;
        }
        for s in &steps {
            prop_assert!(per_step.get(&s.name).copied().unwrap_or(0) <= s.retries + 1);
        }
        prop_assert!(per_step.len() <= n);
        if run.phase == RunPhase::Succeeded {
            prop_assert_eq!(per_step.len(), n);
        }
    }
}

proptest! {
    /// Whatever a user or a tool writes into the annotations and the schedule fields (the API
    /// server checks only their shape), deciding never panics, and a request is echoed as given.
    #[test]
    fn any_annotation_and_schedule_text_is_decided_without_a_panic(
        request in "\\PC{0,300}",
        cancel in "\\PC{0,40}",
        schedule in "@every [0-9]{1,25}(ns|s|m|h)|[0-9*/,?-]{1,6} [0-9*/,-]{1,6} [0-9*/,?LW#-]{1,6} [0-9A-Za-z*/,-]{1,6} [0-9A-Za-z*/,?L#-]{1,6}|\\PC{0,20}",
        zone in "[A-Za-z_/+-]{0,30}",
        deadline in proptest::option::of(any::<i64>().prop_map(|n| n.saturating_abs())),
        jump in 0i64..4_000_000_000,
    ) {
        let mut w = crm();
        w.seq.spec.scheduling = ScheduleSpec {
            schedule: Some(schedule),
            time_zone: Some(zone),
            starting_deadline_seconds: deadline,
            suspend: false,
            after: None,
        };
        w.annotate(annotations::REQUESTED_AT, &request);
        w.reconcile();
        prop_assert_eq!(w.status().book.last_handled_request_at.as_deref(), Some(request.as_str()));
        w.annotate(annotations::CANCEL_REQUESTED_AT, &cancel);
        w.now += SignedDuration::from_secs(jump);
        w.reconcile();
        w.reconcile();
    }
}

/// `warehouse`, upstream of the CRM sequence: its finished runs as `(id, phase)`, oldest
/// first, each finished a minute after the one before.
fn warehouse(uid: &str, runs: &[(i64, RunPhase)]) -> Upstreams {
    let up = UpstreamRef {
        kind: UpstreamKind::SyncSequence,
        name: "warehouse".into(),
    };
    let finished = runs
        .iter()
        .rev()
        .map(|(id, phase)| FinishedRun {
            id: id.to_string(),
            phase: *phase,
            completion: Some(t0() + SignedDuration::from_mins(*id)),
        })
        .collect();
    Upstreams {
        views: BTreeMap::from([(
            up,
            UpstreamView {
                uid: Some(uid.into()),
                finished,
            },
        )]),
        cycle: None,
    }
}

fn after_warehouse(w: &mut World) {
    w.seq.spec.scheduling.after = Some(AfterSpec {
        upstreams: vec![UpstreamRef {
            kind: UpstreamKind::SyncSequence,
            name: "warehouse".into(),
        }],
        when: UpstreamOutcome::Succeeded,
        require: UpstreamRequire::Any,
    });
}

#[test]
fn an_upstream_run_starts_one_run_recorded_with_the_upstream_and_its_run() {
    let mut w = crm();
    after_warehouse(&mut w);
    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded)]);
    assert!(
        w.reconcile().is_empty(),
        "what it finished before starts nothing"
    );
    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded), (2, RunPhase::Succeeded)]);
    let created = w.reconcile();
    assert_eq!(created.len(), 1);
    assert!(created[0].starts_with("crm-1-accounts-1-"));
    let run = w.status().book.current_run.clone().unwrap();
    assert_eq!(run.trigger, TriggerKind::Upstream);
    assert_eq!(
        run.upstream,
        Some(UpstreamRun {
            kind: UpstreamKind::SyncSequence,
            name: "warehouse".into(),
            run: "2".into()
        })
    );
    assert!(
        w.events.iter().any(|e| e.reason == "RunStarted"
            && e.note == "run 1 started by upstream sequence warehouse run 2"),
        "{:?}",
        w.events
    );
    // Reconciled again and again on the same upstream status: no second run.
    assert!(w.reconcile().is_empty());
    for _ in 0..3 {
        w.succeed(1, 0);
        w.reconcile();
    }
    assert_eq!(w.last_run().upstream, run.upstream, "kept in the history");
    assert!(w.reconcile().is_empty());
    assert_eq!(w.status().book.last_run_number, Some(1));
}

#[test]
fn an_upstream_run_goes_through_the_concurrency_policy() {
    let mut w = crm();
    after_warehouse(&mut w);
    w.upstreams = warehouse("u", &[]);
    w.reconcile();
    w.trigger("1");
    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded)]);
    assert!(w.reconcile().is_empty());
    assert_eq!(w.status().book.skipped_triggers, Some(1));
    assert!(w.events.iter().any(|e| {
        e.reason == "TriggerSkipped"
            && e.note
                .starts_with("upstream sequence warehouse run 1 trigger skipped")
    }));

    // Queued, it starts after the run in progress, still saying which upstream run it is for.
    let mut w = crm();
    after_warehouse(&mut w);
    w.seq.spec.concurrency_policy = ConcurrencyPolicy::Queue;
    w.upstreams = warehouse("u", &[]);
    w.reconcile();
    w.trigger("1");
    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded)]);
    w.reconcile();
    for _ in 0..3 {
        w.succeed(1, 0);
        w.reconcile();
    }
    let run = w.status().book.current_run.clone().unwrap();
    assert_eq!((run.id, run.trigger), (2, TriggerKind::Upstream));
    assert_eq!(run.upstream.map(|u| u.run), Some("1".into()));
}

#[test]
fn a_missing_upstream_or_a_cycle_is_reported_on_the_conditions() {
    let mut w = crm();
    after_warehouse(&mut w);
    w.reconcile();
    let ready = w
        .status()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "UpstreamNotFound")
    );
    assert!(ready.message.contains("SyncSequence/warehouse"));

    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded)]);
    w.upstreams.cycle = Some("SyncSequence/crm → SyncSequence/warehouse → SyncSequence/crm".into());
    w.reconcile();
    assert_eq!(w.condition("Stalled"), "True");
    assert!(
        w.events
            .iter()
            .any(|e| e.warning && e.reason == "UpstreamCycle")
    );
    w.upstreams.cycle = None;
    w.reconcile();
    assert_eq!(w.condition("Stalled"), "False");
    assert_eq!(w.condition("Ready"), "True");
}
