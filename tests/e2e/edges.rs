//! The three promises at Kubernetes' edges (issue: the guarantees hold at Kubernetes' edges):
//! Jobs deleted by hand, API refusals, names shared across kinds, cancelled holders, Pods that
//! outlive their Job, untrusted container output, and two controllers at once.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams};
use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, RunStatus, StepPhase, StepStatus, Sync, SyncSequence, annotations};

const DEADLINE: Duration = Duration::from_secs(90);

/// The step's state in the current run, or else in the last finished one.
fn step_of(seq: &SyncSequence, step: &str) -> Option<StepStatus> {
    let st = seq.status.as_ref()?;
    let runs: Vec<&RunStatus> = st
        .book
        .current_run
        .as_deref()
        .into_iter()
        .chain(st.last_run.as_deref())
        .collect();
    runs.into_iter()
        .flat_map(|r| r.steps.iter())
        .find(|s| s.name == step)
        .cloned()
}

fn current_step(seq: &SyncSequence, step: &str) -> Option<StepStatus> {
    seq.status
        .as_ref()?
        .book
        .current_run
        .as_ref()?
        .steps
        .iter()
        .find(|s| s.name == step)
        .cloned()
}

#[tokio::test]
async fn a_job_deleted_by_hand_fails_its_attempt_and_is_never_created_again() {
    install_crds().await;
    let ns = TestNamespace::new("edge-deleted").await;
    // The deleted Job's Pod runs on for 5 s: the retry must wait for it.
    ns.kubectl_apply(&sync_yaml_with_grace("accounts", "1h", "5s"));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("accounts", "    retries: 1\n    retryDelaySeconds: 0\n")],
        "",
    ));
    let log = JobLog::start(&ns).await;
    let pods = PodLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let seqs = ns.api::<SyncSequence>();
    let seen = wait_for_object(&seqs, "crm", DEADLINE, "the step's Job to be seen", |s| {
        current_step(s, "accounts").is_some_and(|st| st.job_uid.is_some())
    })
    .await;
    let first = current_step(&seen, "accounts").unwrap().job_name.unwrap();
    // `kubectl delete job`: background propagation, the Job object goes at once.
    ns.api::<Job>()
        .delete(&first, &DeleteParams::background())
        .await
        .unwrap();

    let retried = wait_for_object(&seqs, "crm", DEADLINE, "attempt 2 to run", |s| {
        current_step(s, "accounts")
            .is_some_and(|st| st.attempts == 2 && st.phase == StepPhase::Running)
    })
    .await;
    let step = current_step(&retried, "accounts").unwrap();
    assert_ne!(step.job_name.as_deref(), Some(first.as_str()));
    let notes = wait_event_notes(&ns, "crm", "JobDeleted", DEADLINE).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("job {first} was deleted before it finished"))),
        "{notes:?}"
    );
    // Attempt 2's Job exists; the deleted one was never created again.
    let second = step.job_name.unwrap();
    log.wait_created(&second, DEADLINE).await;
    ns.api::<Job>()
        .delete(&second, &DeleteParams::background())
        .await
        .unwrap();
    let done = wait_for_run(&ns, "crm", 1, DEADLINE).await;
    assert_eq!(last_phase(&done), Some(RunPhase::Failed));
    let step = step_of(&done, "accounts").unwrap();
    assert_eq!(step.phase, StepPhase::Failed);
    assert!(
        step.message
            .as_deref()
            .is_some_and(|m| m.contains("was deleted before it finished")),
        "{step:?}"
    );
    // A later wake-up (a new run) creates nothing for run 1 again.
    trigger(&ns, "crm", "2").await;
    log.wait_created("crm-2-accounts-1-", DEADLINE).await;
    let run1: Vec<String> = log
        .created()
        .into_iter()
        .filter(|n| n.starts_with("crm-1-"))
        .collect();
    assert_eq!(run1, vec![first.clone(), second]);
    assert!(
        ns.api::<Job>().get_opt(&first).await.unwrap().is_none(),
        "no Job was created again under the deleted one's name"
    );
    assert_eq!(
        pods.max_alive().get("accounts"),
        Some(&1),
        "a deleted Job's terminating Pod and the retry never ran at once"
    );
}

#[tokio::test]
async fn names_that_cannot_be_label_values_are_refused_at_apply() {
    install_crds().await;
    let ns = TestNamespace::new("edge-names").await;
    let long = "a".repeat(64);
    for yaml in [
        sync_yaml(&long, "1s", 0, None),
        sequence_yaml(&long, &[("accounts", "")], ""),
    ] {
        let out = kubectl(&["apply", "-n", &ns.name, "-f", "-"], Some(&yaml));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("metadata.name must be at most 63 characters"),
            "{stderr}"
        );
    }
    // 63 is fine.
    ns.kubectl_apply(&sync_yaml(&"a".repeat(63), "1s", 0, None));
}

#[tokio::test]
async fn a_job_create_refused_by_quota_fails_the_step_with_the_api_message() {
    install_crds().await;
    let ns = TestNamespace::new("edge-quota").await;
    ns.kubectl_apply(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: no-jobs\nspec:\n  hard:\n    count/jobs.batch: \"0\"\n",
    );
    ns.kubectl_apply(&sync_yaml("accounts", "1s", 0, None));
    ns.kubectl_apply(&sequence_yaml("crm", &[("accounts", "")], ""));
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
    let step = step_of(&seq, "accounts").unwrap();
    let message = step.message.clone().unwrap_or_default();
    assert!(
        message.contains("the API server refused to create job") && message.contains("quota"),
        "{step:?}"
    );
    assert_eq!(
        step.attempt_failure.map(|f| f.reason).as_deref(),
        Some("CreateRefused")
    );
    let refused = wait_event_notes(&ns, "crm", "JobCreateRefused", DEADLINE).await;
    assert!(refused.iter().any(|n| n.contains("quota")), "{refused:?}");
    let started = event_notes(&ns, "crm", "RunStarted").await;
    assert!(
        event_notes(&ns, "crm", "StepStarted").await.is_empty()
            && !started.is_empty()
            && started.iter().all(|n| !n.contains("started: job")),
        "no Event announces a Job that was never created: {started:?}"
    );
    assert!(
        ns.api::<Job>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // The claim wrote the Sync's running record for the Job that was refused; once the claim
    // is old (30 s) the Sync says again that nothing runs it, with no Job event to wake it.
    // No Job of this Sync ever ran: its lastRun says so.
    wait_for_object(
        &ns.api::<Sync>(),
        "accounts",
        DEADLINE,
        "the refused Job's running record to go",
        |s| {
            s.status.as_ref().is_some_and(|st| {
                st.last_run.as_deref().is_some_and(|r| {
                    r.outcome == Some(StepPhase::Failed)
                        && r.message
                            .as_deref()
                            .is_some_and(|m| m.contains("never created"))
                }) && st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Running" && c.status == "False")
            })
        },
    )
    .await;
}

#[tokio::test]
async fn a_sync_and_a_sequence_of_the_same_name_each_run_their_own_jobs() {
    install_crds().await;
    let ns = TestNamespace::new("edge-samename").await;
    ns.kubectl_apply(&sync_yaml("x", "300ms", 0, None));
    // Sequence `x`, step `run`: the readable Job name of the Sync's own run 1 as well.
    ns.kubectl_apply(
        "apiVersion: syncseq.dev/v1alpha1\nkind: SyncSequence\nmetadata:\n  name: x\nspec:\n  steps:\n  - name: run\n    syncRef: {name: x}\n",
    );
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    annotate_sync(&ns, "x", annotations::REQUESTED_AT, "1").await;
    wait_for_object(&ns.api::<Sync>(), "x", DEADLINE, "its own run", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.book
                .runs
                .first()
                .is_some_and(|r| r.phase == RunPhase::Succeeded)
        })
    })
    .await;
    trigger(&ns, "x", "1").await;
    let seq = wait_for_run(&ns, "x", 1, DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    let created = log.created();
    assert_eq!(created.len(), 2, "{created:?}");
    assert_ne!(created[0], created[1]);
}

/// Sequences `a` and `b`, each one step of Sync `s` (whose Pods run `duration`), watched by a
/// Job log and a Pod log, with a controller.
async fn two_sequences_of_one_sync(
    prefix: &str,
    duration: &str,
) -> (TestNamespace, JobLog, PodLog, ControllerProcess) {
    install_crds().await;
    let ns = TestNamespace::new(prefix).await;
    ns.kubectl_apply(&sync_yaml("s", duration, 0, None));
    ns.kubectl_apply(&sequence_yaml("a", &[("s", "")], ""));
    ns.kubectl_apply(&sequence_yaml("b", &[("s", "")], ""));
    let log = JobLog::start(&ns).await;
    let pods = PodLog::start(&ns).await;
    let controller = ControllerProcess::start(&ns.name);
    (ns, log, pods, controller)
}

#[tokio::test]
async fn a_sequence_waiting_for_a_sync_starts_when_the_holder_is_cancelled() {
    let (ns, log, pods, _controller) = two_sequences_of_one_sync("edge-waiter", "1h").await;
    trigger(&ns, "a", "1").await;
    log.wait_created("a-1-s-1-", DEADLINE).await;
    trigger(&ns, "b", "1").await;
    let seqs = ns.api::<SyncSequence>();
    let waiting = wait_for_object(&seqs, "b", DEADLINE, "b to wait for a", |s| {
        current_step(s, "s").is_some_and(|st| st.phase == StepPhase::Waiting)
    })
    .await;
    let step = current_step(&waiting, "s").unwrap();
    assert_eq!(
        step.message.as_deref(),
        Some("waiting: sync s is running for sequence a run 1")
    );
    assert_eq!(step.job_name, None, "a waiting step names no Job");
    let running = waiting
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Running")
        .unwrap()
        .message
        .clone();
    assert!(running.contains("waiting: sync s is running"), "{running}");
    wait_event_notes(&ns, "b", "SyncBusy", DEADLINE).await;

    annotate(&ns, "a", annotations::CANCEL_REQUESTED_AT, "stop").await;
    let b_job = log.wait_created("b-1-s-1-", DEADLINE).await;
    let started = wait_event_notes(&ns, "b", "StepStarted", DEADLINE).await;
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(started[0].contains(&b_job));
    assert_eq!(pods.max_alive().get("s"), Some(&1));
}

#[tokio::test]
async fn a_pod_that_outlives_its_job_by_20s_never_runs_beside_the_next_one() {
    install_crds().await;
    let ns = TestNamespace::new("edge-grace").await;
    ns.kubectl_apply(&sync_yaml_with_grace("s", "1h", "20s"));
    ns.kubectl_apply(&sequence_yaml(
        "a",
        &[("s", "")],
        "  concurrencyPolicy: Replace\n",
    ));
    let log = JobLog::start(&ns).await;
    let pods = PodLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    let seqs = ns.api::<SyncSequence>();

    trigger(&ns, "a", "1").await;
    log.wait_created("a-1-s-1-", DEADLINE).await;
    eventually(DEADLINE, "run 1's Pod to run", || async {
        (pods.alive("s") == 1).then_some(())
    })
    .await;
    // Replace: run 1 is cancelled and its Job deleted, but its Pod runs on for 20 s.
    trigger(&ns, "a", "2").await;
    let waiting = wait_for_object(&seqs, "a", DEADLINE, "run 2 to wait for run 1's Pod", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.book
                .current_run
                .as_ref()
                .is_some_and(|r| r.id == 2 && r.steps[0].phase == StepPhase::Waiting)
        })
    })
    .await;
    assert!(
        current_step(&waiting, "s")
            .and_then(|s| s.message)
            .is_some_and(|m| m.contains("running for sequence a run 1")),
        "{waiting:?}"
    );
    let started = std::time::Instant::now();
    log.wait_created("a-2-s-1-", DEADLINE).await;
    assert!(
        started.elapsed() > Duration::from_secs(10),
        "run 2 started {:?} after the replace, while run 1's Pod was still terminating",
        started.elapsed()
    );
    // Cancel: the same again, run 3 waits for run 2's Pod.
    eventually(DEADLINE, "run 2's Pod to run", || async {
        (pods.alive("s") == 1).then_some(())
    })
    .await;
    annotate(&ns, "a", annotations::CANCEL_REQUESTED_AT, "c").await;
    wait_for_run(&ns, "a", 2, DEADLINE).await;
    trigger(&ns, "a", "3").await;
    log.wait_created("a-3-s-1-", DEADLINE).await;
    assert_eq!(
        pods.max_alive().get("s"),
        Some(&1),
        "two Pods of one Sync ran at once"
    );
}

/// Kubernetes' Pod garbage collector deletes the terminated Pods of finished Jobs once there are
/// more than `--terminated-pod-gc-threshold`. Such a deletion changes nothing: it wakes no
/// reconcile (neither the Pod's owner nor the other sequence that runs its Sync), and the runs
/// after it read their own Pods' results as before.
#[tokio::test]
async fn the_pod_garbage_collector_deleting_finished_pods_wakes_no_reconcile() {
    use k8s_openapi::api::core::v1::Pod;
    install_crds().await;
    let ns = TestNamespace::new("edge-podgc").await;
    ns.kubectl_apply(&sync_yaml(
        "s",
        "1s",
        0,
        Some(r#"{"rowsSynced":7,"rowsRejected":0}"#),
    ));
    ns.kubectl_apply(&sequence_yaml("a", &[("s", "")], ""));
    ns.kubectl_apply(&sequence_yaml("b", &[("s", "")], ""));
    let controller = ControllerProcess::start(&ns.name);
    // Run 1's Pod is the one collected; run 2 runs after it, so that whatever run 1's Pod
    // woke when it terminated was reconciled long before the collection.
    for run in 1..=2 {
        trigger(&ns, "a", &run.to_string()).await;
        wait_for_run(&ns, "a", run, DEADLINE).await;
    }
    let pods = ns.api::<Pod>();
    let collected: Vec<String> = step_pods(&ns)
        .await
        .into_iter()
        .map(|(_, name)| name)
        .filter(|name| name.starts_with("a-1-s-1-"))
        .collect();
    assert_eq!(collected.len(), 1, "{collected:?}");
    let before = std::fs::read_to_string(controller.log_path())
        .unwrap()
        .len();
    // As the collector does: no grace, the Pod has terminated.
    pods.delete(&collected[0], &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_for_deletion(&pods, &collected[0], DEADLINE).await;
    // Run 3's Pod comes after the deletion on the same Pod watch: once run 3 has read its
    // Pod's result, the controller has seen the deletion.
    trigger(&ns, "a", "3").await;
    let done = wait_for_run(&ns, "a", 3, DEADLINE).await;
    let step = step_of(&done, "s").unwrap();
    assert_eq!(
        (step.phase, step.rows_synced),
        (StepPhase::Succeeded, Some(7))
    );
    let log = std::fs::read_to_string(controller.log_path()).unwrap();
    let woken: Vec<&str> = log[before..]
        .lines()
        .filter(|l| l.contains("object.reason=") && l.contains(collected[0].as_str()))
        .collect();
    assert!(
        woken.is_empty(),
        "the collected Pod's deletion woke reconciles: {woken:#?}"
    );
}

#[tokio::test]
async fn a_job_ending_wakes_the_sequences_waiting_for_its_sync_and_not_those_that_only_run_it() {
    install_crds().await;
    let ns = TestNamespace::new("edge-wakes").await;
    ns.kubectl_apply(&sync_yaml("s", "4s", 0, None));
    for seq in ["a", "b", "c"] {
        ns.kubectl_apply(&sequence_yaml(seq, &[("s", "")], ""));
    }
    let log = JobLog::start(&ns).await;
    let controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "a", "1").await;
    let held = log.wait_created("a-1-s-1-", DEADLINE).await;
    trigger(&ns, "c", "1").await;
    let seqs = ns.api::<SyncSequence>();
    wait_for_object(&seqs, "c", DEADLINE, "c to wait for a", |s| {
        current_step(s, "s").is_some_and(|st| st.phase == StepPhase::Waiting)
    })
    .await;
    let before = std::fs::read_to_string(controller.log_path())
        .unwrap()
        .len();
    log.wait_finished(&held, DEADLINE).await;
    // Woken by the Job's end, c starts long before its waiting step looks again by itself
    // (after a minute): the deadline fails the test otherwise.
    log.wait_created("c-1-s-1-", Duration::from_secs(20)).await;
    wait_for_run(&ns, "c", 1, DEADLINE).await;
    let log = std::fs::read_to_string(controller.log_path()).unwrap();
    let reconciled = |seq: &str| -> Vec<String> {
        let of = format!("syncseq.dev/{seq}.{}", ns.name);
        log[before..]
            .lines()
            .filter(|l| l.contains("object.reason=") && l.contains(&of))
            .map(str::to_string)
            .collect()
    };
    assert!(
        !reconciled("c").is_empty(),
        "the log shows no reconcile of c: the check below would pass for nothing"
    );
    let b = reconciled("b");
    assert!(
        b.is_empty(),
        "b, idle, only runs the Sync and was woken: {b:#?}"
    );
}

#[tokio::test]
async fn a_pod_orphaned_by_deleting_its_job_keeps_its_sync_busy_until_it_ends() {
    let (ns, log, pods, _controller) = two_sequences_of_one_sync("edge-orphan", "20s").await;

    trigger(&ns, "a", "1").await;
    let job = log.wait_created("a-1-s-1-", DEADLINE).await;
    eventually(DEADLINE, "a's Pod to run", || async {
        (pods.alive("s") == 1).then_some(())
    })
    .await;
    // The Job goes, its Pod stays and runs on without an owner.
    let out = kubectl(
        &["delete", "job", &job, "-n", &ns.name, "--cascade=orphan"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod_api = ns.api::<k8s_openapi::api::core::v1::Pod>();
    eventually(DEADLINE, "the Pod to be orphaned", || async {
        let list = pod_api.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .all(|p| {
                p.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|o| o.is_empty())
            })
            .then_some(())
    })
    .await;

    trigger(&ns, "b", "1").await;
    let notes = wait_event_notes(&ns, "b", "SyncBusy", DEADLINE).await;
    assert!(
        notes.iter().any(|n| n.contains("orphaned")),
        "b waits and says for what: {notes:?}"
    );
    log.wait_created("b-1-s-1-", Duration::from_secs(90)).await;
    assert_eq!(
        pods.max_alive().get("s"),
        Some(&1),
        "b's Pod ran beside the orphaned one"
    );
}

#[tokio::test]
async fn rows_at_the_i64_edge_neither_panic_nor_wrap() {
    install_crds().await;
    let ns = TestNamespace::new("edge-rows").await;
    let max = i64::MAX;
    ns.kubectl_apply(&sync_yaml(
        "accounts",
        "300ms",
        0,
        Some(&format!(
            r#"{{"rowsSynced": {max}, "rowsRejected": {max}, "message": "ok\u001b[31m red\u202e"}}"#
        )),
    ));
    ns.kubectl_apply(&sync_yaml("contacts", "300ms", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[(
            "accounts",
            "    rejectedRows: {maxPercent: 10, onExceeded: Stop}\n",
        )],
        "",
    ));
    ns.kubectl_apply(&sequence_yaml("other", &[("contacts", "")], ""));
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
    let step = step_of(&seq, "accounts").unwrap();
    assert_eq!(step.rows_synced, Some(max));
    let message = step.message.unwrap();
    assert!(message.contains("(50.00%)"), "{message}");
    assert!(
        !message.contains('\u{1b}') && !message.contains('\u{202e}'),
        "{message:?}"
    );
    // The controller is still there for everyone else.
    trigger(&ns, "other", "1").await;
    let other = wait_for_run(&ns, "other", 1, DEADLINE).await;
    assert_eq!(last_phase(&other), Some(RunPhase::Succeeded));
}

#[tokio::test]
async fn two_controllers_at_once_for_30s_never_run_a_sync_twice_and_leave_nothing_stuck() {
    install_crds().await;
    let ns = TestNamespace::new("edge-two").await;
    ns.kubectl_apply(&sync_yaml("s1", "700ms", 0, None));
    ns.kubectl_apply(&sync_yaml("s2", "500ms", 0, None));
    ns.kubectl_apply(&sequence_yaml("p1", &[("s1", ""), ("s2", "")], ""));
    ns.kubectl_apply(
        "apiVersion: syncseq.dev/v1alpha1\nkind: SyncSequence\nmetadata:\n  name: p2\nspec:\n  concurrencyPolicy: Queue\n  steps:\n  - name: b\n    syncRef: {name: s2}\n  - name: a\n    syncRef: {name: s1}\n",
    );
    ns.kubectl_apply(&sequence_yaml(
        "p3",
        &[("s1", "")],
        "  schedule: \"@every 2s\"\n",
    ));
    let pods = PodLog::start(&ns).await;
    let log = JobLog::start(&ns).await;
    let _c1 = ControllerProcess::start_unelected(&ns.name, "replica-a");
    let _c2 = ControllerProcess::start_unelected(&ns.name, "replica-b");
    let patch = serde_json::json!({"spec": {"schedule": "@every 3s"}});
    ns.api::<Sync>()
        .patch("s2", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    // 30 s of triggers: manual requests on p1 and p2 every 1.5 s, on top of both schedules.
    let mut pace = tokio::time::interval(Duration::from_millis(1500));
    for i in 0..20 {
        pace.tick().await;
        trigger(&ns, "p1", &format!("r{i}")).await;
        trigger(&ns, "p2", &format!("r{i}")).await;
    }
    // Stop the schedules; every run must then come to an end.
    let suspend = serde_json::json!({"spec": {"suspend": true}});
    ns.api::<SyncSequence>()
        .patch("p3", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .unwrap();
    ns.api::<Sync>()
        .patch("s2", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .unwrap();
    let seqs = ns.api::<SyncSequence>();
    for name in ["p1", "p2", "p3"] {
        wait_for_object(
            &seqs,
            name,
            Duration::from_secs(120),
            "no run left in progress",
            |s| {
                s.status
                    .as_ref()
                    .is_some_and(|st| st.book.current_run.is_none() && st.book.queued_run.is_none())
            },
        )
        .await;
    }
    wait_for_object(
        &ns.api::<Sync>(),
        "s2",
        Duration::from_secs(120),
        "its own runs to end",
        |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.book.current_run.is_none())
        },
    )
    .await;
    let max = pods.max_alive();
    assert!(
        log.created().len() >= 10,
        "the test drove too few runs: {:?}",
        log.created()
    );
    for sync in ["s1", "s2"] {
        assert_eq!(max.get(sync), Some(&1), "{sync}: {max:?}");
    }
    // Every run that finished, finished as it should: each step succeeded.
    for name in ["p1", "p2", "p3"] {
        let seq = seqs.get(name).await.unwrap();
        let runs = &seq.status.unwrap().book.runs;
        assert!(!runs.is_empty(), "{name} never ran");
        for r in runs {
            assert_eq!(r.phase, RunPhase::Succeeded, "{name} run {r:?}");
        }
    }
}

/// A status decided on a copy that changes before the write reaches the API server (a stale
/// cache, a slow or stopped controller) is refused — every status write is conditional on the
/// resourceVersion it was decided on — and decided again on the newer copy, never written over
/// it. The controller pauses before its first status write while the test changes the spec.
#[tokio::test]
async fn a_status_decided_on_a_copy_changed_since_is_refused_and_decided_again() {
    install_crds().await;
    let ns = TestNamespace::new("superseded").await;
    ns.kubectl_apply(&sync_yaml("accounts", "1s", 0, None));
    let controller = ControllerProcess::start_with_env(
        &ns.name,
        vec![(
            "FAILPOINTS".into(),
            "before-status-write=1*return(4000)".into(),
        )],
    );
    controller
        .wait_for_log(
            "failpoint before-status-write: pausing 4000 ms before writing the status of Sync accounts",
            Duration::from_secs(30),
        )
        .await;
    let syncs = ns.api::<Sync>();
    syncs
        .patch(
            "accounts",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    let sync = wait_for_object(
        &syncs,
        "accounts",
        DEADLINE,
        "the status of generation 2",
        |s| s.status.as_ref().and_then(|st| st.observed_generation) == Some(2),
    )
    .await;
    assert_eq!(sync.metadata.generation, Some(2));

    let writes: Vec<_> = audit::writes_by(&format!("({})", controller.identity()))
        .into_iter()
        .filter(|w| {
            w.uri
                .contains(&format!("/namespaces/{}/syncs/accounts/status", ns.name))
        })
        .collect();
    let codes: Vec<_> = writes.iter().map(|w| w.code).collect();
    assert_eq!(
        codes.first(),
        Some(&Some(409)),
        "the write decided on generation 1 is refused, then generation 2's lands: {writes:#?}"
    );
    assert!(codes.iter().skip(1).any(|c| *c == Some(200)), "{writes:#?}");
}

/// A write to the sequence by someone else (here a condition of another field manager; in
/// life the alert worker, a run or cancel request, a spec edit) that lands between step 2's Job
/// create and the status write recording it makes that write's resourceVersion stale. The Job
/// cannot be taken back, so the write is sent again on the fresh version — the status only the
/// reconciler writes is unchanged — and the run goes on without waiting for status to catch up
/// (`StatusBehindJobs`) and without a second Job.
#[tokio::test]
async fn recording_a_step_job_survives_another_writers_change_to_the_sequence() {
    install_crds().await;
    let ns = TestNamespace::new("recording").await;
    ns.kubectl_apply(&sync_yaml("accounts", "1s", 0, None));
    ns.kubectl_apply(&sync_yaml("contacts", "1s", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("accounts", ""), ("contacts", "")],
        "",
    ));
    let log = JobLog::start(&ns).await;
    let controller = ControllerProcess::start_with_env(
        &ns.name,
        vec![(
            "FAILPOINTS".into(),
            "before-status-write-after-jobs=1*return(3000)".into(),
        )],
    );
    trigger(&ns, "crm", "1").await;
    controller
        .wait_for_log(
            "failpoint before-status-write-after-jobs: pausing 3000 ms before recording the jobs of SyncSequence crm",
            DEADLINE,
        )
        .await;
    let probe = serde_json::json!({
        "apiVersion": "syncseq.dev/v1alpha1",
        "kind": "SyncSequence",
        "status": {"conditions": [{
            "type": "Probe",
            "status": "True",
            "reason": "Test",
            "message": "written by another field manager",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]},
    });
    ns.api::<SyncSequence>()
        .patch_status(
            "crm",
            &PatchParams::apply("syncseq-test"),
            &Patch::Apply(&probe),
        )
        .await
        .unwrap();
    let done = wait_for_run(&ns, "crm", 1, DEADLINE).await;
    assert_eq!(last_phase(&done), Some(RunPhase::Succeeded), "{done:#?}");
    let conditions = &done.status.as_ref().unwrap().conditions;
    assert!(
        conditions.iter().all(|c| c.reason != "StatusBehindJobs"),
        "the status never fell behind the Jobs: {conditions:#?}"
    );
    assert!(
        conditions.iter().any(|c| c.type_ == "Probe"),
        "the other writer's condition stays: {conditions:#?}"
    );
    assert!(
        event_notes(&ns, "crm", "StatusBehindJobs").await.is_empty(),
        "no StatusBehindJobs Event"
    );
    assert_eq!(
        job_steps(&ns).await,
        vec!["accounts".to_string(), "contacts".to_string()],
        "one Job per step: {:?}",
        log.created()
    );
    controller
        .wait_for_log(
            "the object changed, not in the status only this reconciler writes; writing it again",
            Duration::from_secs(5),
        )
        .await;
}
