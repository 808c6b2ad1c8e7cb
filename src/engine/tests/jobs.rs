//! The Jobs themselves: a lost create redone, a vanished or refused Job, a Job the status
//! does not know adopted, a run's Job across a change of the name's recipe, history and its
//! Jobs cut, what a Job carries (the run context in its containers too).

use std::collections::BTreeMap;

use jiff::SignedDuration;

use super::crm;
use crate::api::*;
use crate::engine::fixtures::{Apply, Object, World, creates, deletes, sequence, step, t0};
use crate::engine::*;

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
    let mut w = World::sequence(steps);
    let first = w.trigger("1");
    w.reconcile(); // the Job is seen: its UID goes into status
    let st = &w.status().book.current_run.as_deref().unwrap().steps[0];
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
    let step = &plan.status.book.current_run.as_deref().unwrap().steps[0];
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
    let uid = w.jobs[0].view.uid.clone();
    let mut st = w.status().clone();
    assert!(record_created(
        st.book.current_run.as_deref_mut(),
        &created[0],
        &uid
    ));
    assert!(
        !record_created(st.book.current_run.as_deref_mut(), &created[0], &uid),
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
        st.book.current_run.as_deref_mut(),
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
    w.jobs[0].view.deleting = true;
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
    let run = plan.status.book.current_run.as_deref().unwrap();
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

/// A short Job name as the releases before the owner's UID went into the hash made it.
fn name_without_uid(kind: &str, owner: &str, run: i64, step: &str, attempt: i32) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{kind}\n{owner}\n{run}\n{step}\n{attempt}").as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{owner}-{run}-{step}-{attempt}-{hash}")
}

#[test]
fn a_run_in_progress_across_the_job_name_change_keeps_its_job() {
    // Whether the previous release had seen the Job (its UID in status) or only created it.
    for recorded in [false, true] {
        let mut w = crm();
        w.trigger("1");
        // As the previous release left it: step accounts running a Job of the old-style name.
        let old = name_without_uid("SyncSequence", "crm", 1, "accounts", 1);
        assert_ne!(
            w.jobs[0].view.name, old,
            "the name changed (else this proves nothing)"
        );
        w.jobs[0].view.name = old.clone();
        w.jobs[0].view.uid = "uid-old".into();
        let mut st = w.status().clone();
        let step = &mut st.book.current_run.as_deref_mut().unwrap().steps[0];
        step.job_name = Some(old.clone());
        step.job_uid = recorded.then(|| "uid-old".to_string());
        w.seq.status = Some(st);

        let plan = w.plan();
        assert!(
            creates(&plan.actions).is_empty() && deletes(&plan.actions).is_empty(),
            "recorded {recorded}: {:?}",
            plan.actions
        );
        w.reconcile();
        let step = &w.status().book.current_run.as_deref().unwrap().steps[0];
        assert_eq!(
            (step.job_name.as_deref(), step.job_uid.as_deref()),
            (Some(old.as_str()), Some("uid-old"))
        );

        // It completes from that Job; the next step's Job has the new-style name.
        w.succeed(5, 0);
        let created = w.reconcile();
        let run = w.status().book.current_run.as_deref().unwrap();
        assert_eq!(run.steps[0].phase, StepPhase::Succeeded);
        assert_eq!(run.steps[0].rows_synced, Some(5));
        assert_eq!(run.steps[0].job_name.as_deref(), Some(old.as_str()));
        let uid = w.seq.metadata.uid.as_deref().unwrap();
        assert_eq!(
            created,
            [job_name("SyncSequence", "crm", uid, 1, "workspaces", 1)]
        );
        assert!(
            w.events
                .iter()
                .any(|e| e.reason == "StepSucceeded" && e.note.contains(&format!("(job {old})"))),
            "{:?}",
            w.events
        );
        assert!(w.jobs.iter().any(|j| j.view.name == old), "never deleted");
    }
}

#[test]
fn history_is_cut_to_the_limit_and_old_jobs_are_deleted() {
    let mut w = World::sequence(vec![step("accounts")]);
    for i in 1..=5 {
        w.trigger(&i.to_string());
        w.succeed(1, 0);
        w.reconcile();
    }
    let ids: Vec<i64> = w.status().book.runs.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![5, 4, 3]);
    let mut runs: Vec<i64> = w.jobs.iter().map(|j| j.view.run).collect();
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

/// The run context of the Job a plan creates (the first one), by name.
fn run_context(plan: &Plan) -> BTreeMap<String, String> {
    let job = plan
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreateJob(job) => Some(job),
            _ => None,
        })
        .expect("a Job created");
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .filter(|e| e.name.starts_with("SYNCSEQ_"))
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn a_scheduled_runs_jobs_carry_its_window_and_a_retry_of_it_the_same() {
    let mut w = crm();
    w.seq.spec.scheduling.schedule = Some("*/5 * * * *".into());
    w.now = t0() + SignedDuration::from_mins(5) + SignedDuration::from_secs(2);
    let plan = w.plan();
    let window = [
        ("SYNCSEQ_SCHEDULED_TIME", "2026-01-05T10:05:00Z"),
        ("SYNCSEQ_INTERVAL_START", "2026-01-05T10:00:00Z"),
        ("SYNCSEQ_INTERVAL_END", "2026-01-05T10:05:00Z"),
    ];
    let want = |trigger: &str, step: &str, attempt: &str| -> BTreeMap<String, String> {
        [
            ("SYNCSEQ_RUN", if trigger == "Retry" { "2" } else { "1" }),
            ("SYNCSEQ_STEP", step),
            ("SYNCSEQ_ATTEMPT", attempt),
            ("SYNCSEQ_TRIGGER", trigger),
        ]
        .into_iter()
        .chain(window)
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    };
    assert_eq!(run_context(&plan), want("Schedule", "accounts", "1"));
    w.apply(&Object::Sequence, &plan, Apply::ALL);
    w.succeed(10, 0);
    // The next step starts a minute later, and still gets the run's window.
    w.now += SignedDuration::from_mins(1);
    let plan = w.plan();
    assert_eq!(run_context(&plan), want("Schedule", "workspaces", "1"));
    w.apply(&Object::Sequence, &plan, Apply::ALL);
    w.fail("destination down");
    w.reconcile();
    assert_eq!(w.last_run().phase, RunPhase::Failed);

    // Retried before the next fire: the retry re-syncs 10:00 to 10:05.
    w.annotate(annotations::RETRY_REQUESTED_AT, "r1");
    let plan = w.plan();
    assert_eq!(run_context(&plan), want("Retry", "workspaces", "1"));
    let run = plan.status.book.current_run.as_deref().unwrap();
    assert_eq!(
        run.scheduled_time
            .as_ref()
            .map(|t| t.0.to_string())
            .as_deref(),
        Some("2026-01-05T10:05:00Z")
    );

    // Run 2 fails too; run 1, now in the history only, keeps its fire time there, and a
    // retry of it still re-syncs its window.
    w.apply(&Object::Sequence, &plan, Apply::ALL);
    w.fail("destination still down");
    w.reconcile();
    assert_eq!(w.last_run().id, 2);
    w.annotate(annotations::RETRY_RUN, "1");
    w.annotate(annotations::RETRY_REQUESTED_AT, "r2");
    let plan = w.plan();
    let run = plan.status.book.current_run.as_deref().unwrap();
    assert_eq!((run.id, run.retry_of), (3, Some(1)));
    assert_eq!(
        run_context(&plan)
            .get("SYNCSEQ_INTERVAL_START")
            .map(String::as_str),
        Some("2026-01-05T10:00:00Z")
    );
    assert_eq!(
        run.scheduled_time
            .as_ref()
            .map(|t| t.0.to_string())
            .as_deref(),
        Some("2026-01-05T10:05:00Z")
    );
}
