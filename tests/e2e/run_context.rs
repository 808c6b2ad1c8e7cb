//! The run context on the local control plane (issue 35, acceptance 1): the `SYNCSEQ_*`
//! variables in every container of a step's Job, for manual, upstream-started, scheduled and
//! retry runs and a Sync's own run, and a template's own `SYNCSEQ_STEP` kept.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, Patch, PatchParams};
use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, SyncSequence, annotations};

const DEADLINE: Duration = Duration::from_secs(90);

/// The first Job matching the label selector, once there is one.
async fn job(ns: &TestNamespace, selector: &str) -> Job {
    let api = ns.api::<Job>();
    eventually(DEADLINE, &format!("a Job with {selector}"), || {
        let api = api.clone();
        async move {
            let jobs = api
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            jobs.items.into_iter().next()
        }
    })
    .await
}

/// Every container's `SYNCSEQ_*` variables, by container name, init containers included.
/// Panics on a name a container's `env` has twice: Kubernetes would take the last one.
fn run_context(job: &Job) -> BTreeMap<String, BTreeMap<String, String>> {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let containers = pod.init_containers.iter().flatten().chain(&pod.containers);
    containers
        .map(|c| {
            let mut vars = BTreeMap::new();
            for e in c.env.iter().flatten() {
                let value = e.value.clone().unwrap_or_default();
                let twice = vars.insert(e.name.clone(), value).is_some();
                assert!(!twice, "{} twice in container {}", e.name, c.name);
            }
            vars.retain(|name, _| name.starts_with("SYNCSEQ_"));
            (c.name.clone(), vars)
        })
        .collect()
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// A Sync like [`sync_yaml`]'s whose Pod has an init container too, and whose container sets
/// `SYNCSEQ_STEP` itself.
fn sync_with_own_env(name: &str) -> String {
    sync_yaml(name, "200ms", 0, None).replace(
        "          containers:\n          - name: sync\n            image: registry.example.com/warehouse-sync:1.4\n",
        "          initContainers:\n          - name: wait\n            image: registry.example.com/wait:1\n          \
         containers:\n          - name: sync\n            image: registry.example.com/warehouse-sync:1.4\n            \
         env:\n            - {name: SYNCSEQ_STEP, value: from-the-template}\n",
    )
}

#[tokio::test]
async fn step_jobs_carry_the_run_context_and_the_templates_own_variables_win() {
    install_crds().await;
    let ns = TestNamespace::new("runctx").await;
    ns.kubectl_apply(&sync_with_own_env("accounts"));
    for sync in ["contacts", "load", "report", "solo"] {
        ns.kubectl_apply(&sync_yaml(sync, "200ms", 0, None));
    }
    ns.kubectl_apply(&sync_yaml("flaky", "200ms", 1, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("accounts", ""), ("contacts", "")],
        "",
    ));
    ns.kubectl_apply(&sequence_yaml("warehouse", &[("load", "")], ""));
    ns.kubectl_apply(&sequence_yaml(
        "downstream",
        &[("report", "")],
        "  after:\n    upstreams:\n    - {kind: SyncSequence, name: warehouse}\n",
    ));
    ns.kubectl_apply(&sequence_yaml(
        "every5s",
        &[("flaky", "")],
        "  schedule: \"@every 5s\"\n",
    ));
    let _controller = ControllerProcess::start(&ns.name);

    // Manual: the template's SYNCSEQ_STEP wins in its container, the init container gets ours.
    trigger(&ns, "crm", "1").await;
    let crm = wait_for_run(&ns, "crm", 1, DEADLINE).await;
    assert_eq!(last_phase(&crm), Some(RunPhase::Succeeded));
    let manual = |step: &str| {
        vars(&[
            ("SYNCSEQ_RUN", "1"),
            ("SYNCSEQ_STEP", step),
            ("SYNCSEQ_ATTEMPT", "1"),
            ("SYNCSEQ_TRIGGER", "Manual"),
        ])
    };
    let accounts = job(&ns, "syncseq.dev/sequence=crm,syncseq.dev/step=accounts").await;
    let mut own = manual("accounts");
    own.insert("SYNCSEQ_STEP".into(), "from-the-template".into());
    assert_eq!(
        run_context(&accounts),
        BTreeMap::from([
            ("wait".to_string(), manual("accounts")),
            ("sync".to_string(), own),
        ])
    );
    let contacts = job(&ns, "syncseq.dev/sequence=crm,syncseq.dev/step=contacts").await;
    assert_eq!(
        run_context(&contacts),
        BTreeMap::from([("sync".to_string(), manual("contacts"))])
    );

    // A Sync's own run: the step is the Sync.
    annotate_sync(&ns, "solo", annotations::REQUESTED_AT, "1").await;
    let solo = job(&ns, "syncseq.dev/sync=solo,!syncseq.dev/sequence").await;
    assert_eq!(run_context(&solo)["sync"], manual("solo"));

    // Upstream: what started the run.
    wait_for_object(
        &ns.api::<SyncSequence>(),
        "downstream",
        DEADLINE,
        "the upstream to be recorded",
        |s| {
            s.status
                .as_ref()
                .is_some_and(|st| !st.book.upstreams.is_empty())
        },
    )
    .await;
    trigger(&ns, "warehouse", "1").await;
    let report = job(&ns, "syncseq.dev/sequence=downstream").await;
    assert_eq!(
        run_context(&report)["sync"],
        vars(&[
            ("SYNCSEQ_RUN", "1"),
            ("SYNCSEQ_STEP", "report"),
            ("SYNCSEQ_ATTEMPT", "1"),
            ("SYNCSEQ_TRIGGER", "Upstream"),
            ("SYNCSEQ_UPSTREAM", "SyncSequence/warehouse/1"),
        ])
    );

    // Scheduled: the fire time (the Job's annotation says the same) and the interval back to
    // the schedule's fire before it.
    let first = job(&ns, "syncseq.dev/sequence=every5s,syncseq.dev/run=1").await;
    let fired =
        first.metadata.annotations.as_ref().unwrap()[annotations::SCHEDULED_TIMESTAMP].clone();
    let window = |at: &str| {
        let start = at.parse::<Timestamp>().unwrap() - SignedDuration::from_secs(5);
        [
            ("SYNCSEQ_SCHEDULED_TIME".to_string(), at.to_string()),
            ("SYNCSEQ_INTERVAL_START".to_string(), start.to_string()),
            ("SYNCSEQ_INTERVAL_END".to_string(), at.to_string()),
        ]
    };
    let mut scheduled = vars(&[
        ("SYNCSEQ_RUN", "1"),
        ("SYNCSEQ_STEP", "flaky"),
        ("SYNCSEQ_ATTEMPT", "1"),
        ("SYNCSEQ_TRIGGER", "Schedule"),
    ]);
    scheduled.extend(window(&fired));
    assert_eq!(run_context(&first)["sync"], scheduled);

    // A retry of a scheduled run re-syncs that run's window. Suspended, the schedule starts
    // nothing more, and the last finished run is the one retried.
    let patch = serde_json::json!({"spec": {"suspend": true}});
    ns.api::<SyncSequence>()
        .patch("every5s", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let idle = wait_for_object(
        &ns.api::<SyncSequence>(),
        "every5s",
        DEADLINE,
        "the suspended schedule's last run to end",
        |s| {
            s.status.as_ref().is_some_and(|st| {
                st.schedule.next_schedule_time.is_none()
                    && st.book.current_run.is_none()
                    && st.last_run.is_some()
            })
        },
    )
    .await;
    let st = idle.status.unwrap();
    let retried = st.last_run.unwrap();
    assert_eq!(retried.phase, RunPhase::Failed);
    let retried_at = retried
        .scheduled_time
        .expect("a scheduled run")
        .0
        .to_string();
    let retry_run = st.book.last_run_number.unwrap() + 1;
    annotate(&ns, "every5s", annotations::RETRY_REQUESTED_AT, "r1").await;
    let retry = job(
        &ns,
        &format!("syncseq.dev/sequence=every5s,syncseq.dev/run={retry_run}"),
    )
    .await;
    let mut want = vars(&[
        ("SYNCSEQ_STEP", "flaky"),
        ("SYNCSEQ_ATTEMPT", "1"),
        ("SYNCSEQ_TRIGGER", "Retry"),
    ]);
    want.insert("SYNCSEQ_RUN".into(), retry_run.to_string());
    want.extend(window(&retried_at));
    assert_eq!(run_context(&retry)["sync"], want);
    assert!(
        retry
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key(annotations::SCHEDULED_TIMESTAMP)),
        "a retry's Job is no fire: no scheduled-timestamp"
    );
}
