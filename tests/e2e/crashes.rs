//! Crash points (issue: under faults nothing is lost or doubled). The controller is built with
//! the `failpoints` feature for these tests: `FAILPOINTS=<name>=1*return` makes the process
//! abort the first time it reaches the named point, as a controller killed at that line would.
//! Each test lets it die there, starts it again without the failpoint, and checks the run:
//! exactly one Job per step attempt, nothing lost, nothing run twice, never two Pods of a Sync.

use crate::support;

use std::time::Duration;

use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, StepPhase, SyncSequence, annotations};

const RUN_DEADLINE: Duration = Duration::from_secs(90);

/// A controller that aborts the first time it reaches `point`.
fn crashing_at(ns: &TestNamespace, point: &str) -> ControllerProcess {
    ControllerProcess::start_with_env(
        &ns.name,
        vec![("FAILPOINTS".into(), format!("{point}=1*return"))],
    )
}

/// Waits for the controller to abort at its crash point, then starts it again without it.
async fn dies_then_restarts(controller: &mut ControllerProcess, ns: &TestNamespace) {
    let status = controller.wait_exit(Duration::from_secs(60)).await;
    assert!(
        !status.success(),
        "the controller aborted at its crash point"
    );
    *controller = ControllerProcess::start(&ns.name);
}

/// Exactly one Job per step attempt: every creation the Job watch saw has a name of its own,
/// and there are as many as the runs' steps' attempts say.
fn assert_once_per_attempt(log: &JobLog, seq: &SyncSequence, runs: usize) {
    let created = log.created();
    let unique: std::collections::BTreeSet<&String> = created.iter().collect();
    assert_eq!(
        unique.len(),
        created.len(),
        "a Job created twice: {created:?}"
    );
    let attempts: i32 = seq
        .status
        .iter()
        .flat_map(|s| s.last_run.iter())
        .flat_map(|r| &r.steps)
        .map(|s| s.attempts)
        .sum();
    assert_eq!(attempts, 3, "the last run's steps ran once each");
    assert_eq!(
        created.len(),
        3 * runs,
        "one Job per step and run: {created:?}"
    );
}

/// Runs the CRM sequence once with the controller dying at `point` during the run.
async fn a_run_survives_a_crash_at(prefix: &str, point: &str) {
    install_crds().await;
    let ns = TestNamespace::new(prefix).await;
    apply_crm(&ns, "1s", "");
    let (jobs, pods) = (JobLog::start(&ns).await, PodLog::start(&ns).await);
    let mut controller = crashing_at(&ns, point);
    trigger(&ns, "crm", "1").await;
    dies_then_restarts(&mut controller, &ns).await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    assert_once_per_attempt(&jobs, &seq, 1);
    assert!(pods.max_alive().values().all(|n| *n <= 1));
}

#[tokio::test]
async fn killed_right_after_writing_a_new_runs_status() {
    a_run_survives_a_crash_at("crash-status", "status-written").await;
}

#[tokio::test]
async fn killed_right_after_creating_a_job() {
    a_run_survives_a_crash_at("crash-create", "job-created").await;
}

/// In the middle of a cancel: status says Cancelled and the Job delete went out, then the
/// controller dies. After the restart the Job is gone, nothing is recreated, and the next run
/// runs every step once.
#[tokio::test]
async fn killed_in_the_middle_of_a_cancel() {
    install_crds().await;
    let ns = TestNamespace::new("crash-cancel").await;
    apply_crm(&ns, "30s", "");
    let (jobs, pods) = (JobLog::start(&ns).await, PodLog::start(&ns).await);
    let mut controller = crashing_at(&ns, "job-deleted");
    trigger(&ns, "crm", "1").await;
    jobs.wait_created("-accounts-", Duration::from_secs(30))
        .await;
    annotate(&ns, "crm", annotations::CANCEL_REQUESTED_AT, "c1").await;
    dies_then_restarts(&mut controller, &ns).await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Cancelled));
    let steps = &seq
        .status
        .as_ref()
        .unwrap()
        .last_run
        .as_ref()
        .unwrap()
        .steps;
    assert_eq!(steps[0].phase, StepPhase::Cancelled);
    eventually(
        Duration::from_secs(60),
        "the cancelled run's Job gone",
        || async { job_steps(&ns).await.is_empty().then_some(()) },
    )
    .await;
    assert_eq!(
        jobs.created().len(),
        1,
        "nothing recreated: {:?}",
        jobs.created()
    );
    for s in ["accounts", "workspaces", "contacts"] {
        ns.kubectl_apply(&sync_yaml(s, "1s", 0, None));
    }
    trigger(&ns, "crm", "2").await;
    let seq = wait_for_run(&ns, "crm", 2, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    assert_eq!(jobs.created().len(), 4, "{:?}", jobs.created());
    assert!(pods.max_alive().values().all(|n| *n <= 1));
}

/// In the middle of history trimming: with `historyLimit: 1`, finishing run 2 deletes run 1's
/// Jobs; the controller dies after the first delete. After the restart the trimming is
/// finished and no Job of a kept run is touched.
#[tokio::test]
async fn killed_in_the_middle_of_history_trimming() {
    install_crds().await;
    let ns = TestNamespace::new("crash-trim").await;
    apply_crm(&ns, "1s", "  historyLimit: 1\n");
    let jobs = JobLog::start(&ns).await;
    let mut controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    controller.kill();
    let mut controller = crashing_at(&ns, "job-deleted");
    trigger(&ns, "crm", "2").await;
    dies_then_restarts(&mut controller, &ns).await;
    let seq = wait_for_run(&ns, "crm", 2, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    let run_labels = || async {
        let list = ns
            .api::<k8s_openapi::api::batch::v1::Job>()
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        let mut runs: Vec<String> = list
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .filter_map(|j| j.metadata.labels.as_ref()?.get("syncseq.dev/run").cloned())
            .collect();
        runs.sort();
        runs
    };
    eventually(
        Duration::from_secs(60),
        "only run 2's Jobs kept",
        || async { (run_labels().await == vec!["2", "2", "2"]).then_some(()) },
    )
    .await;
    assert_once_per_attempt(&jobs, &seq, 2);
}

/// Between writing the status that holds a new notification and handing it to the delivery
/// worker: after the restart the outbox in status delivers it, once.
#[tokio::test]
async fn killed_between_deciding_a_notification_and_handing_it_over() {
    install_crds().await;
    let ns = TestNamespace::new("crash-notify").await;
    let receiver = support::receiver::Receiver::start().await;
    support::receiver::create_secret(&ns, "hook", &receiver.url("/crash")).await;
    ns.kubectl_apply(&sync_yaml("load", "300ms", 1, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("load", "")],
        "  alerts:\n  - name: oncall\n    when: [RunFailed]\n    webhook: {urlSecretRef: {name: hook, key: url}, format: JSON}\n",
    ));
    let mut controller = crashing_at(&ns, "before-notify");
    trigger(&ns, "crm", "1").await;
    // It dies right after writing the status that holds the RunFailed notification.
    dies_then_restarts(&mut controller, &ns).await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
    let delivered = eventually(
        Duration::from_secs(60),
        "the notification delivered",
        || async {
            let ok: Vec<_> = receiver
                .requests("/crash")
                .into_iter()
                .filter(|r| r.status == 200)
                .collect();
            (!ok.is_empty()).then_some(ok)
        },
    )
    .await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].json()["kind"], "RunFailed");
}
