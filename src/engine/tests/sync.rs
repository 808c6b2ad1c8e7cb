//! A Sync's own runs, one-step runs of the same engine a sequence's runs use, and its
//! `lastRun`, whoever ran it; a sequence's claim of it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::test_runner::FileFailurePersistence;

use crate::api::{RunPhase, StepPhase, SyncStatus, TriggerKind, annotations, labels};
use crate::engine::fixtures::{self, SimJob, World, step, t0};
use crate::engine::sync::SyncPlan;
use crate::engine::{
    Action, CLAIM_YOUNG, JobOutcome, JobView, Report, STANDALONE_STEP, conditions, job_name,
};

/// The Sync the tests run.
const ACCOUNTS: &str = "accounts";

/// A world around Sync `accounts`, which sequence `crm` runs in a step of its own.
fn accounts() -> World {
    World::sequence(vec![step(ACCOUNTS)])
}

/// The name of the Job of the Sync's own run 1.
fn own_run_1_job(w: &World) -> String {
    let uid = w.syncs[ACCOUNTS].metadata.uid.as_deref().unwrap();
    job_name("Sync", ACCOUNTS, uid, 1, STANDALONE_STEP, 1)
}

/// Decides for the Sync and carries out the whole plan; returns the plan and the Jobs it
/// asks to create.
fn reconcile(w: &mut World) -> (SyncPlan, Vec<String>) {
    let plan = w.reconcile_sync(ACCOUNTS);
    let created = fixtures::creates(&plan.actions);
    (plan, created)
}

/// The Sync's own running Job ends, a second on.
fn finish_own(w: &mut World, outcome: JobOutcome) {
    w.now += jiff::SignedDuration::from_secs(1);
    w.end_job(|j| j.sequence.is_none(), outcome, report())
        .unwrap();
}

fn report() -> Report {
    Report {
        rows_synced: Some(7),
        rows_rejected: Some(1),
        message: Some("ok".into()),
        exit_code: Some(0),
    }
}

/// Sequence `crm`'s Job of the Sync in run 3.
fn sequence_job(outcome: JobOutcome) -> SimJob {
    SimJob::new(
        JobView {
            name: "crm-3-accounts-1-x".into(),
            uid: "uid-seq-job".into(),
            run: 3,
            step: "accounts".into(),
            sync: "accounts".into(),
            attempt: 1,
            finished_at: (outcome != JobOutcome::Active).then(t0),
            outcome,
            report: Some(report()),
            deleting: false,
            created: Some(t0()),
        },
        Some("crm"),
    )
}

#[test]
fn a_request_starts_one_owned_one_step_run_and_is_echoed() {
    let mut w = accounts();
    w.annotate_sync(ACCOUNTS, annotations::REQUESTED_AT, "r1");
    let (plan, created) = reconcile(&mut w);
    assert_eq!(created, vec![own_run_1_job(&w)]);
    let Some(Action::CreateJob(new_job)) = plan
        .actions
        .iter()
        .find(|a| matches!(a, Action::CreateJob(_)))
    else {
        panic!()
    };
    let owner = &new_job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Sync", "uid-sync-accounts")
    );
    assert!(
        !new_job
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key(labels::SEQUENCE)
    );
    let st = &plan.status;
    assert_eq!(st.book.last_handled_request_at.as_deref(), Some("r1"));
    assert_eq!(st.book.last_run_number, Some(1));
    let run = st.book.current_run.as_deref().unwrap();
    assert_eq!((run.trigger, run.steps.len()), (TriggerKind::Manual, 1));
    // Replaying with the written status starts nothing new.
    assert!(reconcile(&mut w).1.is_empty());
    finish_own(&mut w, JobOutcome::Succeeded);
    let (plan, created) = reconcile(&mut w);
    assert!(created.is_empty());
    assert_eq!(plan.status.book.runs[0].phase, RunPhase::Succeeded);
    let last = plan.status.last_run.unwrap();
    assert_eq!(
        (last.trigger, last.outcome, last.rows_synced),
        (
            Some(TriggerKind::Manual),
            Some(StepPhase::Succeeded),
            Some(7)
        )
    );
}

#[test]
fn its_run_waits_while_a_sequence_runs_the_sync_and_starts_when_it_is_free() {
    let mut w = accounts();
    w.jobs.push(sequence_job(JobOutcome::Active));
    w.annotate_sync(ACCOUNTS, annotations::REQUESTED_AT, "r1");
    let (plan, created) = reconcile(&mut w);
    assert!(created.is_empty());
    let step = &plan.status.book.current_run.as_deref().unwrap().steps[0];
    assert_eq!(step.phase, StepPhase::Waiting);
    assert_eq!(
        step.message.as_deref(),
        Some("waiting: sync accounts is running for sequence crm run 3")
    );
    assert!(
        plan.wake_at.is_some(),
        "a waiting step has a bounded requeue"
    );
    let running = plan
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Running")
        .unwrap();
    assert!(
        running
            .message
            .contains("waiting: sync accounts is running for sequence crm run 3")
    );
    let last = plan.status.last_run.as_deref().unwrap();
    assert_eq!(
        (last.trigger, last.sequence_run.as_deref()),
        (Some(TriggerKind::Upstream), Some("crm/3"))
    );
    assert_eq!(
        (last.outcome, last.rows_synced, last.message.as_deref()),
        (Some(StepPhase::Running), None, None),
        "the Pod's result waits for the Job's outcome: one status write, not two"
    );
    w.jobs.retain(|j| j.sequence.is_none());
    w.jobs.push(sequence_job(JobOutcome::Succeeded));
    let (plan, created) = reconcile(&mut w);
    assert_eq!(created.len(), 1, "starts once the Sync is free");
    let last = plan.status.last_run.as_deref().unwrap();
    assert_eq!(
        (last.outcome, last.rows_synced, last.message.as_deref()),
        (Some(StepPhase::Succeeded), Some(7), Some("ok"))
    );
}

#[test]
fn cancel_deletes_only_its_own_running_job_and_again_if_the_delete_was_lost() {
    let mut w = accounts();
    w.jobs.push(sequence_job(JobOutcome::Active));
    w.annotate_sync(ACCOUNTS, annotations::REQUESTED_AT, "r1");
    w.jobs.retain(|j| j.sequence.is_none());
    reconcile(&mut w);
    w.jobs.push(sequence_job(JobOutcome::Active));
    w.annotate_sync(ACCOUNTS, annotations::CANCEL_REQUESTED_AT, "c1");
    let plan = w.sync_plan(ACCOUNTS);
    let own = own_run_1_job(&w);
    assert_eq!(fixtures::deletes(&plan.actions), vec![own.clone()]);
    assert_eq!(
        plan.status.book.last_handled_cancel_at.as_deref(),
        Some("c1")
    );
    assert_eq!(plan.status.book.runs[0].phase, RunPhase::Cancelled);
    // The delete was lost: the next reconcile deletes again (level-triggered).
    w.syncs.get_mut(ACCOUNTS).unwrap().status = Some(plan.status);
    let again = w.sync_plan(ACCOUNTS);
    assert_eq!(fixtures::deletes(&again.actions), vec![own]);
}

#[test]
fn its_own_schedule_runs_it() {
    let mut w = accounts();
    w.syncs.get_mut(ACCOUNTS).unwrap().spec.scheduling.schedule = Some("*/5 * * * *".into());
    w.now = "2026-01-05T10:10:00Z".parse().unwrap();
    let (plan, created) = reconcile(&mut w);
    assert_eq!(created.len(), 1);
    assert_eq!(plan.status.schedule.last_schedule_time, Some(Time(w.now)));
    assert_eq!(
        plan.wake_at,
        Some(w.now + jiff::SignedDuration::from_mins(5))
    );
}

#[test]
fn the_last_succeeded_and_failed_runs_stay_when_newer_runs_start_and_old_jobs_go() {
    let mut w = accounts();
    w.jobs.push(sequence_job(JobOutcome::Succeeded));
    reconcile(&mut w);
    let st = w.syncs[ACCOUNTS].status.clone().unwrap();
    let ok = st.last_succeeded_run.clone().unwrap();
    assert_eq!(ok.job_name, "crm-3-accounts-1-x");
    assert_eq!(ok.sequence_run.as_deref(), Some("crm/3"));
    assert!(st.last_failed_run.is_none());

    // A newer run starts (its Job is active), and the finished Job is deleted: lastRun
    // follows the new Job, the last success stays.
    w.now += jiff::SignedDuration::from_secs(60);
    w.jobs.retain(|j| j.sequence.is_none());
    w.annotate_sync(ACCOUNTS, annotations::REQUESTED_AT, "r1");
    reconcile(&mut w);
    reconcile(&mut w);
    let st = w.syncs[ACCOUNTS].status.clone().unwrap();
    assert_eq!(st.last_run.unwrap().outcome, Some(StepPhase::Running));
    assert_eq!(st.last_succeeded_run, Some(ok.clone()));

    finish_own(
        &mut w,
        JobOutcome::Failed {
            timed_out: false,
            reason: "BackoffLimitExceeded".into(),
        },
    );
    reconcile(&mut w);
    let st = w.syncs[ACCOUNTS].status.clone().unwrap();
    assert_eq!(st.last_succeeded_run, Some(ok));
    let failed = st.last_failed_run.unwrap();
    assert_eq!(failed.outcome, Some(StepPhase::Failed));
    assert_eq!(failed.trigger, Some(crate::api::TriggerKind::Manual));
}

/// The Sync as a sequence's claim for `job` leaves it (the write the claim makes).
fn claim_for_sequence(w: &mut World, job: &SimJob) {
    w.write_claim(&job.view, job.sequence.as_deref());
}

fn running(st: &SyncStatus) -> (&str, &str) {
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::RUNNING)
        .unwrap();
    (c.status.as_str(), c.message.as_str())
}

#[test]
fn a_sequences_claim_writes_what_the_sync_would_once_the_job_is_cached() {
    let mut w = accounts();
    reconcile(&mut w);
    // The claim is made a moment before the Job's creation time, in another second.
    let job = {
        let mut j = sequence_job(JobOutcome::Active);
        j.view.created = Some(t0() + jiff::SignedDuration::from_secs(1));
        j
    };
    claim_for_sequence(&mut w, &job);
    let claimed = w.syncs[ACCOUNTS].status.clone().unwrap();
    let record = claimed.last_run.clone().unwrap();
    assert_eq!(record.outcome, Some(StepPhase::Running));
    assert_eq!(record.sequence_run.as_deref(), Some("crm/3"));
    assert_eq!(
        running(&claimed),
        ("True", "running for sequence crm run 3")
    );

    // Before the Job is cached, and once it is: nothing left to write.
    assert_eq!(w.sync_plan(ACCOUNTS).status, claimed);
    w.jobs.push(job.clone());
    assert_eq!(
        w.sync_plan(ACCOUNTS).status,
        claimed,
        "the Job's first event changes nothing"
    );

    // Its end is the Sync's one write of the step.
    let job = &mut w.jobs[0];
    job.view.outcome = JobOutcome::Succeeded;
    job.view.finished_at = Some(t0() + jiff::SignedDuration::from_secs(3));
    job.pod = fixtures::PodState::Done;
    let done = w.sync_plan(ACCOUNTS).status;
    let last = done.last_run.clone().unwrap();
    assert_eq!(last.outcome, Some(StepPhase::Succeeded));
    assert_eq!(
        last.start_time, record.start_time,
        "the claim's start time stays"
    );
    assert_eq!(running(&done).0, "False");
}

#[test]
fn a_claimed_job_never_created_stops_showing_once_the_claim_is_old() {
    let mut w = accounts();
    w.jobs.push(sequence_job(JobOutcome::Succeeded));
    reconcile(&mut w);
    let before = w.syncs[ACCOUNTS].status.clone().unwrap().last_run;
    let mut never = sequence_job(JobOutcome::Active);
    never.view.name = "crm-4-accounts-1-y".into();
    never.view.run = 4;
    claim_for_sequence(&mut w, &never);

    // Young: the record stands, the claim holds, and the Sync looks again when it is old.
    let plan = w.sync_plan(ACCOUNTS);
    assert_eq!(
        plan.status.last_run.as_deref().unwrap().job_name,
        never.view.name
    );
    assert_eq!(
        running(&plan.status),
        ("True", "running for sequence crm run 4")
    );
    assert_eq!(plan.wake_at, Some(w.now + CLAIM_YOUNG));

    // Old (its create was refused, or its claimant died): the Jobs decide again.
    w.now += CLAIM_YOUNG;
    let plan = w.sync_plan(ACCOUNTS);
    assert_eq!(plan.status.last_run, before);
    assert_eq!(running(&plan.status).0, "False");
}

#[test]
fn a_claimed_job_never_created_is_recorded_as_ended_when_no_job_ran_before() {
    let mut w = accounts();
    reconcile(&mut w);
    claim_for_sequence(&mut w, &sequence_job(JobOutcome::Active));
    assert!(
        w.sync_plan(ACCOUNTS).status.last_run.is_some(),
        "young: the record stands"
    );
    w.now += CLAIM_YOUNG;
    let plan = w.sync_plan(ACCOUNTS);
    let last = plan.status.last_run.clone().unwrap();
    assert_eq!(
        last.outcome,
        Some(StepPhase::Failed),
        "a Job that never ran is not running"
    );
    assert!(last.message.unwrap().contains("never created"));
    assert_eq!(running(&plan.status).0, "False");
    // And that is settled: deciding again changes nothing.
    w.syncs.get_mut(ACCOUNTS).unwrap().status = Some(plan.status.clone());
    assert_eq!(w.sync_plan(ACCOUNTS).status, plan.status);
}

#[derive(Debug, Clone)]
enum SyncOp {
    /// Decide and apply the plan in full.
    Reconcile,
    /// A sequence claims the free Sync for a Job it is about to create.
    Claim,
    /// The claimed Job reaches the cache, created this many seconds after the claim.
    Appear(u8),
    /// A sequence's running Job ends.
    FinishSequence(bool),
    /// The Sync's own running Job ends.
    FinishOwn(bool),
    /// A person asks the Sync for a run of its own.
    Request,
    Clock(u8),
}

fn sync_op() -> impl Strategy<Value = SyncOp> {
    prop_oneof![
        3 => Just(SyncOp::Reconcile),
        2 => Just(SyncOp::Claim),
        2 => (0u8..3).prop_map(SyncOp::Appear),
        2 => any::<bool>().prop_map(SyncOp::FinishSequence),
        1 => any::<bool>().prop_map(SyncOp::FinishOwn),
        1 => Just(SyncOp::Request),
        1 => (1u8..40).prop_map(SyncOp::Clock),
    ]
}

use proptest::prelude::*;

proptest! {
    // The recorded cases are this test's from when it lived in `engine/sync.rs`.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/engine/sync.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// What the wake-up filter relies on for Syncs: a plan applied in full leaves nothing
    /// for the next decision (unless it asked to be woken by now), and a sequence's claim
    /// wrote what the Sync decides once the claimed Job is cached, so that Job's first event
    /// need not wake it.
    #[test]
    fn a_sync_settles_and_a_claimed_job_appearing_changes_nothing(
        ops in proptest::collection::vec(sync_op(), 1..40)
    ) {
        let mut w = accounts();
        let mut unseen: Option<SimJob> = None;
        let mut runs = 0i64;
        let mut requests = 0;
        for op in ops {
            match op {
                SyncOp::Reconcile => {
                    let (plan, created) = reconcile(&mut w);
                    // (The first event of a Job of its own run does wake the Sync, which
                    // then records it in `lastRun`.)
                    if created.is_empty() && plan.wake_at.is_none_or(|at| at > w.now) {
                        let again = w.sync_plan(ACCOUNTS);
                        prop_assert_eq!(Some(&again.status), w.syncs[ACCOUNTS].status.as_ref());
                        prop_assert!(
                            !again.actions.iter().any(|a| matches!(a, Action::CreateJob(_))),
                            "{:?}", again.actions
                        );
                    }
                }
                SyncOp::Claim => {
                    let claim_holds = w.syncs[ACCOUNTS].status.as_ref()
                        .and_then(|s| s.claim.as_ref())
                        .is_some_and(|c| w.now < c.time.0 + CLAIM_YOUNG
                            && !w.jobs.iter().any(|j| j.exists && j.view.name == c.job && j.view.is_finished()));
                    if w.held().is_empty() && !claim_holds {
                        runs += 1;
                        let mut job = sequence_job(JobOutcome::Active);
                        job.view.name = format!("crm-{runs}-accounts-1-x");
                        job.view.run = runs;
                        job.view.report = None;
                        job.view.finished_at = None;
                        claim_for_sequence(&mut w, &job);
                        unseen = Some(job);
                    }
                }
                // Only while the claim is young: a Job whose first event comes later
                // wakes the Sync (`Freshness::created_job`).
                SyncOp::Appear(late) => {
                    let young = w.syncs[ACCOUNTS].status.as_ref().and_then(|s| s.claim.as_ref())
                        .is_some_and(|c| w.now + jiff::SignedDuration::from_secs(late.into())
                            < c.time.0 + CLAIM_YOUNG);
                    if let Some(mut job) = unseen.take().filter(|_| young) {
                        let claimed_at = w.syncs[ACCOUNTS].status.as_ref()
                            .and_then(|s| s.claim.as_ref()).map(|c| c.time.0);
                        job.view.created = claimed_at
                            .map(|t| t + jiff::SignedDuration::from_secs(late.into()));
                        // Created after its claim, and not in the future.
                        w.now = w.now.max(job.view.created.unwrap_or(w.now));
                        // The decision is the same with the Job cached as without it.
                        let before = w.sync_plan(ACCOUNTS).status;
                        w.jobs.push(job);
                        prop_assert_eq!(
                            w.sync_plan(ACCOUNTS).status,
                            before,
                            "the claimed Job's first event changed the Sync's status"
                        );
                    }
                }
                SyncOp::FinishSequence(ok) => {
                    w.now += jiff::SignedDuration::from_secs(1);
                    w.end_job(
                        |j| j.sequence.is_some(),
                        if ok {
                            JobOutcome::Succeeded
                        } else {
                            JobOutcome::Failed { timed_out: false, reason: "BackoffLimitExceeded".into() }
                        },
                        report(),
                    );
                }
                SyncOp::FinishOwn(ok) => {
                    if w.jobs.iter().any(|j| j.sequence.is_none() && !j.view.is_finished()) {
                        finish_own(&mut w, if ok {
                            JobOutcome::Succeeded
                        } else {
                            JobOutcome::Failed { timed_out: false, reason: "BackoffLimitExceeded".into() }
                        });
                    }
                }
                SyncOp::Request => {
                    requests += 1;
                    w.annotate_sync(ACCOUNTS, annotations::REQUESTED_AT, &format!("r{requests}"));
                }
                SyncOp::Clock(secs) => w.now += jiff::SignedDuration::from_secs(secs.into()),
            }
        }
    }
}

#[test]
fn its_own_runs_keep_nothing_for_a_retry_and_a_retry_request_says_to_run_it() {
    let mut w = accounts();
    w.annotate_sync(ACCOUNTS, annotations::REQUESTED_AT, "r1");
    reconcile(&mut w);
    finish_own(
        &mut w,
        JobOutcome::Failed {
            timed_out: false,
            reason: "BackoffLimitExceeded".into(),
        },
    );
    reconcile(&mut w);
    let st = w.syncs[ACCOUNTS].status.clone().unwrap();
    assert_eq!(st.book.runs.len(), 1);
    assert_eq!(st.book.runs[0].phase, RunPhase::Failed);
    assert_eq!(st.book.runs[0].succeeded_steps, None);

    w.annotate_sync(ACCOUNTS, annotations::RETRY_REQUESTED_AT, "x1");
    let (_, created) = reconcile(&mut w);
    assert!(created.is_empty());
    assert!(w.events.iter().any(|e| e.reason == "TriggerSkipped"
        && e.note
            == "retry trigger skipped: a Sync's own run has one step, so there is nothing to reuse: request a run (syncseq.dev/requestedAt) to run it again"));
}
