//! The local control plane is real: API server with RBAC, Job, CronJob and garbage-collector
//! controllers, scheduler, and kwok playing the kubelet (issue: local control plane).

use crate::support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::*;

fn job_manifest(name: &str, annotations: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "sync", "image": "example.com/sync:1"}]}
            }
        }
    }))
    .unwrap()
}

fn has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

async fn pods_of(ns: &TestNamespace, job: &str) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn readyz_and_batch_discovery() {
    let client = client().await;
    let readyz = client
        .request_text(http::Request::get("/readyz").body(vec![]).unwrap())
        .await
        .unwrap();
    assert_eq!(readyz.trim(), "ok");
    let batch = client.list_api_group_resources("batch/v1").await.unwrap();
    let names: Vec<&str> = batch.resources.iter().map(|r| r.name.as_str()).collect();
    assert!(
        names.contains(&"jobs") && names.contains(&"cronjobs"),
        "batch/v1 lists {names:?}"
    );
}

#[tokio::test]
async fn a_job_asked_to_succeed_completes() {
    let ns = TestNamespace::new("cp-ok").await;
    let jobs = ns.api::<Job>();
    jobs.create(&PostParams::default(), &job_manifest("ok", json!({})))
        .await
        .unwrap();
    wait_for_object(&jobs, "ok", Duration::from_secs(60), "Job Complete", |j| {
        has_condition(j, "Complete")
    })
    .await;
    let pods = pods_of(&ns, "ok").await;
    assert_eq!(pods.len(), 1);
    assert_eq!(
        pods[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
}

#[tokio::test]
async fn a_job_asked_to_fail_carries_exit_code_and_termination_message() {
    let ns = TestNamespace::new("cp-fail").await;
    let jobs = ns.api::<Job>();
    let message = r#"{"rowsSynced":5,"rowsRejected":2,"message":"boom"}"#;
    let job = job_manifest(
        "fail",
        json!({"sim.syncseq.dev/exit-code": "3", "sim.syncseq.dev/message": message}),
    );
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_for_object(&jobs, "fail", Duration::from_secs(60), "Job Failed", |j| {
        has_condition(j, "Failed")
    })
    .await;
    let pods = pods_of(&ns, "fail").await;
    let terminated = pods[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .expect("terminated state");
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.message.as_deref(), Some(message));
    assert_eq!(
        pods[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Failed")
    );
}

#[tokio::test]
async fn deleting_the_owner_garbage_collects_job_and_pods() {
    let ns = TestNamespace::new("cp-gc").await;
    let owner = ns
        .api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut job = job_manifest("owned", json!({"sim.syncseq.dev/duration": "1h"}));
    job.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "owner".into(),
            uid: owner.metadata.uid.clone().unwrap(),
            ..Default::default()
        },
    ]);
    let jobs = ns.api::<Job>();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let pods = ns.api::<Pod>();
    let pod = eventually(Duration::from_secs(30), "the Job's Pod running", || async {
        pods_of(&ns, "owned")
            .await
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    ns.api::<ConfigMap>()
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_deletion(&jobs, "owned", Duration::from_secs(60)).await;
    wait_for_deletion(&pods, &pod.metadata.name.unwrap(), Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_cronjob_creates_a_job_within_70_seconds() {
    let ns = TestNamespace::new("cp-cron").await;
    let cron: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "every-minute"},
        "spec": {"schedule": "* * * * *", "jobTemplate": serde_json::to_value(job_manifest("x", json!({}))).unwrap()}
    }))
    .unwrap();
    let started = std::time::Instant::now();
    ns.api::<CronJob>()
        .create(&PostParams::default(), &cron)
        .await
        .unwrap();
    let jobs = ns.api::<Job>();
    eventually(
        Duration::from_secs(70),
        "a Job created by the CronJob",
        || async {
            jobs.list(&ListParams::default())
                .await
                .ok()
                .filter(|l| !l.items.is_empty())
        },
    )
    .await;
    eprintln!(
        "cronjob created its first job after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn rbac_denies_a_service_account_without_roles() {
    let ns = TestNamespace::new("cp-rbac").await;
    let sas = ns.api::<ServiceAccount>();
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "nobody"}})).unwrap(),
    )
    .await
    .unwrap();
    let out = kubectl(&["create", "token", "nobody", "-n", &ns.name], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    // Authenticate with the token alone: no admin client certificate.
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let as_nobody = kube::Client::try_from(config).unwrap();
    let err = Api::<Job>::namespaced(as_nobody, &ns.name)
        .list(&ListParams::default())
        .await
        .expect_err("listing must be denied");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message
                    .contains(&format!("system:serviceaccount:{}:nobody", ns.name)),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}
