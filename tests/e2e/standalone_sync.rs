//! A standalone Sync runs on request, can be cancelled, reports its last run whoever started
//! it, and never runs twice at once (issue: sequences run — the second reconciler).

use crate::support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use support::fixtures::*;
use support::*;
use syncseq::api::{StepPhase, Sync, TriggerKind, annotations};

const DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_requested_sync_runs_once_and_reports_its_rows() {
    install_crds().await;
    let ns = TestNamespace::new("sync-run").await;
    ns.kubectl_apply(&sync_yaml(
        "accounts",
        "300ms",
        0,
        Some(r#"{"rowsSynced":42,"rowsRejected":1,"message":"done"}"#),
    ));
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    annotate_sync(&ns, "accounts", annotations::REQUESTED_AT, "now").await;
    let sync = wait_for_object(
        &ns.api::<Sync>(),
        "accounts",
        DEADLINE,
        "the run to succeed",
        |s| {
            s.status
                .as_ref()
                .and_then(|st| st.last_run.as_deref())
                .is_some_and(|r| r.outcome == Some(StepPhase::Succeeded))
        },
    )
    .await;
    let st = sync.status.unwrap();
    let run = st.last_run.unwrap();
    assert_eq!(st.book.last_handled_request_at.as_deref(), Some("now"));
    assert_eq!(
        (
            run.trigger,
            run.rows_synced,
            run.rows_rejected,
            run.message.as_deref()
        ),
        (Some(TriggerKind::Manual), Some(42), Some(1), Some("done"))
    );
    let job = ns.api::<Job>().get(&run.job_name).await.unwrap();
    assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "Sync");
    assert_eq!(log.created().len(), 1);
}

#[tokio::test]
async fn cancelling_a_standalone_run_deletes_its_job() {
    install_crds().await;
    let ns = TestNamespace::new("sync-cancel").await;
    ns.kubectl_apply(&sync_yaml("accounts", "1h", 0, None));
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    annotate_sync(&ns, "accounts", annotations::REQUESTED_AT, "1").await;
    let job = eventually(DEADLINE, "the run's Job", || async {
        log.created().first().cloned()
    })
    .await;
    annotate_sync(&ns, "accounts", annotations::CANCEL_REQUESTED_AT, "stop").await;
    wait_for_deletion(&ns.api::<Job>(), &job, Duration::from_secs(30)).await;
    let sync = ns.api::<Sync>().get("accounts").await.unwrap();
    assert_eq!(
        sync.status.unwrap().book.last_handled_cancel_at.as_deref(),
        Some("stop")
    );
}

#[tokio::test]
async fn a_request_s_run_waits_while_a_sequence_runs_the_sync_and_the_sync_reports_the_upstream_run()
 {
    install_crds().await;
    let ns = TestNamespace::new("sync-busy").await;
    ns.kubectl_apply(&sync_yaml("accounts", "3s", 0, None));
    ns.kubectl_apply(&sequence_yaml("crm", &[("accounts", "")], ""));
    let log = JobLog::start(&ns).await;
    let controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    eventually(DEADLINE, "the sequence's Job", || async {
        log.created().first().cloned()
    })
    .await;
    let api = ns.api::<Sync>();
    let sync = wait_for_object(
        &api,
        "accounts",
        DEADLINE,
        "lastRun from the sequence",
        |s| {
            s.status
                .as_ref()
                .and_then(|st| st.last_run.as_deref())
                .is_some_and(|r| r.sequence_run.is_some())
        },
    )
    .await;
    let run = sync.status.unwrap().last_run.unwrap();
    assert_eq!(
        (run.trigger, run.sequence_run.as_deref()),
        (Some(TriggerKind::Upstream), Some("crm/1"))
    );

    annotate_sync(&ns, "accounts", annotations::REQUESTED_AT, "mine").await;
    // The request starts the Sync's own one-step run at once; its step waits for the sequence.
    wait_for_object(
        &api,
        "accounts",
        DEADLINE,
        "its own run's step to wait",
        |s| {
            s.status.as_ref().is_some_and(|st| {
                st.book.current_run.as_deref().is_some_and(|r| {
                    r.steps[0].phase == StepPhase::Waiting
                        && r.steps[0].message.as_deref()
                            == Some("waiting: sync accounts is running for sequence crm run 1")
                }) && st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Running" && c.message.contains("waiting: sync accounts"))
            })
        },
    )
    .await;
    wait_for_object(&api, "accounts", DEADLINE, "its own run to succeed", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_run.as_deref())
            .is_some_and(|r| {
                r.trigger == Some(TriggerKind::Manual) && r.outcome == Some(StepPhase::Succeeded)
            })
    })
    .await;
    assert_eq!(log.created().len(), 2);
    assert_eq!(
        log.max_concurrent(|_| true),
        1,
        "never two Jobs of the Sync at once: {:?}",
        log.events()
    );
    // The wait is counted against the Sync's own run's step, and only there.
    let (_, metrics) = http_get(&controller.metrics_address().await, "/metrics").await;
    // A Sync's own run has one step, `run`; the sequence's step is named after its Sync.
    let waited = |kind: &str, name: &str, step: &str| -> Option<f64> {
        let series = format!(
            "syncseq_step_sync_wait_seconds_total{{kind=\"{kind}\",namespace=\"{}\",name=\"{name}\",step=\"{step}\"}} ",
            ns.name
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .map(|v| v.trim().parse().unwrap())
    };
    let wait = waited("Sync", "accounts", "run")
        .unwrap_or_else(|| panic!("no wait series of the Sync's run in:\n{metrics}"));
    assert!(
        (0.5..60.0).contains(&wait),
        "waited {wait}s behind a 3 s Job"
    );
    assert_eq!(
        waited("SyncSequence", "crm", "accounts"),
        Some(0.0),
        "the sequence's step never waited"
    );
}
