//! Sequences run on the real control plane: one Job per step, strictly in order, with status
//! and Events a person can debug from (issue: sequences run).

use crate::support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams};
use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, StepPhase, SyncSequence};

const RUN_DEADLINE: Duration = Duration::from_secs(90);

async fn crm(ns: &TestNamespace, workspaces_exit: i32, workspaces_extra: &str) {
    ns.kubectl_apply(&sync_yaml(
        "accounts",
        "1s",
        0,
        Some(r#"{"rowsSynced":1200,"rowsRejected":0}"#),
    ));
    ns.kubectl_apply(&sync_yaml(
        "workspaces",
        "1s",
        workspaces_exit,
        Some(r#"{"rowsSynced":340,"rowsRejected":2,"message":"CRM API said 400: owner missing"}"#),
    ));
    ns.kubectl_apply(&sync_yaml(
        "contacts",
        "1s",
        0,
        Some(r#"{"rowsSynced":15800,"rowsRejected":12}"#),
    ));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[
            ("accounts", ""),
            ("workspaces", workspaces_extra),
            ("contacts", ""),
        ],
        "",
    ));
}

fn job_of(names: &[String], step: &str) -> String {
    names
        .iter()
        .find(|n| n.starts_with(&format!("crm-1-{step}-")))
        .cloned()
        .unwrap_or_else(|| panic!("no job for {step} in {names:?}"))
}

#[tokio::test]
async fn crm_steps_run_strictly_in_order_with_rows_from_the_termination_message() {
    install_crds().await;
    let ns = TestNamespace::new("seq-order").await;
    crm(&ns, 0, "").await;
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "first").await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;

    // Order, from the watch: each Job is created only after the previous one finished.
    let created = log.created();
    assert_eq!(created.len(), 3, "{:?}", log.events());
    let (a, w, c) = (
        job_of(&created, "accounts"),
        job_of(&created, "workspaces"),
        job_of(&created, "contacts"),
    );
    let events = log.events();
    let at = |e: JobEvent| {
        events
            .iter()
            .position(|x| *x == e)
            .unwrap_or_else(|| panic!("{e:?} not in {events:?}"))
    };
    assert!(
        at(JobEvent::Finished(a.clone())) < at(JobEvent::Created(w.clone())),
        "{events:?}"
    );
    assert!(
        at(JobEvent::Finished(w.clone())) < at(JobEvent::Created(c.clone())),
        "{events:?}"
    );

    let st = seq.status.unwrap();
    assert_eq!(st.book.runs[0].phase, RunPhase::Succeeded);
    assert_eq!(st.book.last_handled_request_at.as_deref(), Some("first"));
    let run = st.last_run.unwrap();
    let rows: Vec<_> = run
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.phase, s.rows_synced, s.rows_rejected))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("accounts", StepPhase::Succeeded, Some(1200), Some(0)),
            ("workspaces", StepPhase::Succeeded, Some(340), Some(2)),
            ("contacts", StepPhase::Succeeded, Some(15800), Some(12)),
        ]
    );
    assert_eq!(run.steps[0].job_name.as_deref(), Some(a.as_str()));
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == "LastRunSucceeded" && c.status == "True")
    );
}

#[tokio::test]
async fn a_failed_step_stops_the_run_and_describe_shows_why() {
    install_crds().await;
    let ns = TestNamespace::new("seq-stop").await;
    crm(&ns, 2, "").await;
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    let st = seq.status.unwrap();
    assert_eq!(st.book.runs[0].phase, RunPhase::Failed);
    assert_eq!(st.book.runs[0].failed_step.as_deref(), Some("workspaces"));
    assert!(
        st.book.runs[0]
            .message
            .as_ref()
            .unwrap()
            .contains("CRM API said 400: owner missing"),
        "{:?}",
        st.book.runs[0]
    );
    let run = st.last_run.unwrap();
    assert_eq!(run.steps[2].phase, StepPhase::Skipped);
    assert_eq!(
        run.steps[2].message.as_deref(),
        Some("skipped: step workspaces failed")
    );
    assert!(
        !log.created().iter().any(|n| n.contains("-contacts-")),
        "step 3's Job must never exist"
    );

    let describe = eventually(
        Duration::from_secs(20),
        "the Warning Event in kubectl describe",
        || async {
            let out = kubectl(&["describe", "syncsequence", "crm", "-n", &ns.name], None);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (text.contains("Warning")
                && text.contains("StepFailed")
                && text.contains("CRM API said 400: owner missing"))
            .then_some(text)
        },
    )
    .await;
    assert!(describe.contains("exit code 2"), "{describe}");
}

#[tokio::test]
async fn a_failed_step_under_continue_runs_the_rest_and_shows_partial_failure() {
    install_crds().await;
    let ns = TestNamespace::new("seq-cont").await;
    crm(&ns, 2, "    onFailure: Continue\n").await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    let st = seq.status.unwrap();
    assert_eq!(st.book.runs[0].phase, RunPhase::SucceededWithErrors);
    let phases: Vec<_> = st.last_run.unwrap().steps.iter().map(|s| s.phase).collect();
    assert_eq!(
        phases,
        vec![
            StepPhase::Succeeded,
            StepPhase::Failed,
            StepPhase::Succeeded
        ]
    );
}

/// Behaviour chosen for a missing Sync: the step waits (phase Waiting, message naming the
/// Sync, Ready=False with reason SyncNotFound, a Warning Event) and resumes when it appears.
#[tokio::test]
async fn a_missing_sync_waits_then_recovers_when_created() {
    install_crds().await;
    let ns = TestNamespace::new("seq-missing").await;
    ns.kubectl_apply(&sync_yaml("accounts", "300ms", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("accounts", ""), ("workspaces", "")],
        "",
    ));
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let api = ns.api::<SyncSequence>();
    let seq = wait_for_object(
        &api,
        "crm",
        RUN_DEADLINE,
        "step 2 waiting for its Sync",
        |s| {
            s.status
                .as_ref()
                .and_then(|st| st.book.current_run.as_deref())
                .is_some_and(|r| r.steps[1].phase == StepPhase::Waiting)
        },
    )
    .await;
    let st = seq.status.unwrap();
    assert_eq!(
        st.book.current_run.unwrap().steps[1].message.as_deref(),
        Some("waiting: sync workspaces not found in namespace")
    );
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "SyncNotFound")
    );

    ns.kubectl_apply(&sync_yaml("workspaces", "300ms", 0, None));
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
}

#[tokio::test]
async fn a_killed_controller_resumes_with_exactly_one_job_per_step() {
    install_crds().await;
    let ns = TestNamespace::new("seq-kill").await;
    apply_crm(&ns, "3s", "");
    let log = JobLog::start(&ns).await;
    let mut controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;

    // Point 1: while step 1's Job runs.
    log.wait_created("-accounts-", RUN_DEADLINE).await;
    controller.restart();
    // Point 2: down while step 2's Job finishes; the restarted controller must start step 3.
    log.wait_created("-workspaces-", RUN_DEADLINE).await;
    controller.kill();
    log.wait_finished("-workspaces-", RUN_DEADLINE).await;
    controller.restart();
    // Point 3: right as step 3 starts.
    log.wait_created("-contacts-", RUN_DEADLINE).await;
    controller.restart();

    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    let steps = job_steps(&ns).await;
    assert_eq!(
        steps,
        vec!["accounts", "contacts", "workspaces"],
        "exactly one Job per step"
    );
    assert_eq!(log.created().len(), 3);
}

#[tokio::test]
async fn cancel_during_step_2_deletes_its_job_and_skips_step_3() {
    install_crds().await;
    let ns = TestNamespace::new("seq-cancel").await;
    ns.kubectl_apply(&sync_yaml("accounts", "300ms", 0, None));
    ns.kubectl_apply(&sync_yaml("workspaces", "1h", 0, None));
    ns.kubectl_apply(&sync_yaml("contacts", "300ms", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("accounts", ""), ("workspaces", ""), ("contacts", "")],
        "",
    ));
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let api = ns.api::<SyncSequence>();
    wait_for_object(&api, "crm", RUN_DEADLINE, "step 2 running", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.book.current_run.as_deref())
            .is_some_and(|r| r.steps[1].phase == StepPhase::Running)
    })
    .await;
    // Status is written before the Job is created: wait for the Job itself.
    let job = eventually(RUN_DEADLINE, "step 2's Job", || async {
        log.created()
            .into_iter()
            .find(|n| n.contains("-workspaces-"))
    })
    .await;
    annotate(
        &ns,
        "crm",
        syncseq::api::annotations::CANCEL_REQUESTED_AT,
        "stop-it",
    )
    .await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    let st = seq.status.unwrap();
    assert_eq!(st.book.runs[0].phase, RunPhase::Cancelled);
    let phases: Vec<_> = st.last_run.unwrap().steps.iter().map(|s| s.phase).collect();
    assert_eq!(
        phases,
        vec![
            StepPhase::Succeeded,
            StepPhase::Cancelled,
            StepPhase::Skipped
        ]
    );
    wait_for_deletion(&ns.api::<Job>(), &job, Duration::from_secs(30)).await;
    assert!(!log.created().iter().any(|n| n.contains("-contacts-")));
}

#[tokio::test]
async fn deleting_the_sequence_garbage_collects_its_jobs() {
    install_crds().await;
    let ns = TestNamespace::new("seq-gc").await;
    ns.kubectl_apply(&sync_yaml("accounts", "1h", 0, None));
    ns.kubectl_apply(&sequence_yaml("crm", &[("accounts", "")], ""));
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    eventually(RUN_DEADLINE, "the step's Job", || async {
        log.created().first().cloned()
    })
    .await;
    let job = log.created()[0].clone();
    ns.api::<SyncSequence>()
        .delete("crm", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_deletion(&ns.api::<Job>(), &job, Duration::from_secs(60)).await;
}

/// What must stay the same of an orphaned Job: its name, UID, resourceVersion (nothing wrote
/// it), owners (none) and whether it succeeded.
fn orphan_facts(job: &Job) -> (String, String, String, usize, Option<i32>) {
    (
        job.name_any(),
        job.uid().unwrap_or_default(),
        job.resource_version().unwrap_or_default(),
        job.owner_references().len(),
        job.status.as_ref().and_then(|s| s.succeeded),
    )
}

#[tokio::test]
async fn a_sequence_created_again_after_an_orphaning_delete_runs_beside_the_orphans() {
    install_crds().await;
    let ns = TestNamespace::new("seq-orphans").await;
    apply_crm(&ns, "1s", "");
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let before = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&before), Some(RunPhase::Succeeded));

    // A GitOps migration: the object goes, its Jobs stay, ownerless.
    let out = kubectl(
        &[
            "delete",
            "-n",
            &ns.name,
            "syncsequence",
            "crm",
            "--cascade=orphan",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_deletion(&ns.api::<SyncSequence>(), "crm", Duration::from_secs(30)).await;
    let jobs = ns.api::<Job>();
    let orphans = eventually(Duration::from_secs(30), "three ownerless Jobs", || async {
        let list = jobs.list(&ListParams::default()).await.ok()?.items;
        (list.len() == 3 && list.iter().all(|j| j.owner_references().is_empty()))
            .then(|| list.iter().map(orphan_facts).collect::<Vec<_>>())
    })
    .await;
    assert!(orphans.iter().all(|o| o.4 == Some(1)), "{orphans:?}");

    // Applied again under the same name: a new object, whose run 1 is its first.
    apply_crm(&ns, "1s", "");
    let after = ns.api::<SyncSequence>().get("crm").await.unwrap();
    assert_ne!(after.uid(), before.uid());
    trigger(&ns, "crm", "1").await;
    let after = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    let book = &after.status.as_ref().unwrap().book;
    assert_eq!(
        book.runs
            .iter()
            .map(|r| (r.id, r.phase))
            .collect::<Vec<_>>(),
        [(1, RunPhase::Succeeded)],
        "{:?}",
        after.status
    );

    // Its Jobs: one per step, controlled by the new object, the same readable names as the
    // orphans' and other hashes; the orphans as they were.
    let list = jobs.list(&ListParams::default()).await.unwrap().items;
    let new_uid = after.uid().unwrap();
    let mut own: Vec<String> = list
        .iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| o.uid == new_uid && o.controller == Some(true))
        })
        .map(|j| j.name_any())
        .collect();
    own.sort();
    let mut orphan_names: Vec<String> = orphans.iter().map(|o| o.0.clone()).collect();
    orphan_names.sort();
    let readable = |n: &String| n[..n.rfind('-').unwrap()].to_string();
    assert_eq!(
        own.iter().map(readable).collect::<Vec<_>>(),
        orphan_names.iter().map(readable).collect::<Vec<_>>()
    );
    assert!(own.iter().all(|n| !orphan_names.contains(n)), "{own:?}");
    let mut left: Vec<_> = list
        .iter()
        .filter(|j| orphan_names.contains(&j.name_any()))
        .map(orphan_facts)
        .collect();
    left.sort();
    let mut orphans = orphans;
    orphans.sort();
    assert_eq!(left, orphans, "the orphans are untouched");
    assert_eq!(
        list.len(),
        6,
        "{:?}",
        list.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn fifty_sequences_triggered_at_once_all_complete() {
    install_crds().await;
    let ns = TestNamespace::new("seq-fifty").await;
    // Each sequence needs its own Syncs, or they would (rightly) wait for each other.
    let mut manifest = String::new();
    for i in 0..50 {
        for s in ["accounts", "workspaces", "contacts"] {
            manifest.push_str(&sync_yaml(&format!("{s}-{i}"), "200ms", 0, None));
            manifest.push_str("---\n");
        }
        let steps: Vec<(String, &str)> = ["accounts", "workspaces", "contacts"]
            .iter()
            .map(|s| (format!("{s}-{i}"), ""))
            .collect();
        let steps: Vec<(&str, &str)> = steps.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        manifest.push_str(&sequence_yaml(&format!("seq-{i}"), &steps, ""));
        manifest.push_str("---\n");
    }
    ns.kubectl_apply(&manifest);
    let _controller = ControllerProcess::start(&ns.name);
    let api = ns.api::<SyncSequence>();
    for i in 0..50 {
        trigger(&ns, &format!("seq-{i}"), "go").await;
    }
    eventually(
        Duration::from_secs(240),
        "all 50 sequences finished",
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .all(|s| s.status.as_ref().is_some_and(|st| !st.book.runs.is_empty()))
                .then_some(())
        },
    )
    .await;
    let list = api.list(&ListParams::default()).await.unwrap();
    for s in &list.items {
        assert_eq!(last_phase(s), Some(RunPhase::Succeeded), "{:?}", s.status);
    }
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(jobs.len(), 150, "one Job per step, 3 steps x 50 sequences");
}

#[tokio::test]
async fn a_sync_shared_by_two_sequences_never_runs_twice_at_once() {
    install_crds().await;
    let ns = TestNamespace::new("seq-shared").await;
    ns.kubectl_apply(&sync_yaml("shared", "3s", 0, None));
    ns.kubectl_apply(&sequence_yaml("first", &[("shared", "")], ""));
    ns.kubectl_apply(&sequence_yaml("second", &[("shared", "")], ""));
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "first", "1").await;
    eventually(RUN_DEADLINE, "first's Job", || async {
        log.created().first().cloned()
    })
    .await;
    trigger(&ns, "second", "1").await;
    let api = ns.api::<SyncSequence>();
    let waiting = wait_for_object(
        &api,
        "second",
        RUN_DEADLINE,
        "second waiting for the shared Sync",
        |s| {
            s.status
                .as_ref()
                .and_then(|st| st.book.current_run.as_deref())
                .is_some_and(|r| r.steps[0].phase == StepPhase::Waiting)
        },
    )
    .await;
    let message = waiting.status.unwrap().book.current_run.unwrap().steps[0]
        .message
        .clone()
        .unwrap();
    assert_eq!(
        message,
        "waiting: sync shared is running for sequence first run 1"
    );
    let second = wait_for_run(&ns, "second", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&second), Some(RunPhase::Succeeded));
    assert_eq!(log.created().len(), 2);
    assert_eq!(
        log.max_concurrent(|_| true),
        1,
        "never two Jobs of the Sync at once: {:?}",
        log.events()
    );
}
