//! Rolling back and forward: the previous release's controller and this one take over each
//! other's runs on the same objects, and an object a newer release wrote (a status value this
//! release does not know) is set aside without stopping the others. A binary of its own: the
//! second test relaxes the SyncSequence CRD for a while, which no other test may see.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, StepPhase, SyncSequence};

/// The previous release's `syncseq`: `SYNCSEQ_PREVIOUS_BIN`, which `make test-integration`
/// sets from hack/previous-release.sh (run it once by hand to run this test alone).
fn previous_release() -> PathBuf {
    let path = std::env::var_os("SYNCSEQ_PREVIOUS_BIN")
        .map(PathBuf::from)
        .expect(
            "SYNCSEQ_PREVIOUS_BIN names the previous release's syncseq: \
         SYNCSEQ_PREVIOUS_BIN=$(hack/previous-release.sh) cargo test --test rollback",
        );
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// The tests of this binary one at a time: a change of the CRD ends the watches on its kind,
/// the other test's included.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn this_release() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_syncseq"))
}

/// Waits until run `run` of the CRM sequence is on its second step: the first one's Job has
/// finished and the second one's is running.
async fn wait_mid_run(ns: &TestNamespace, run: i64) {
    wait_for_object(
        &ns.api::<SyncSequence>(),
        "crm",
        Duration::from_secs(60),
        &format!("run {run} of crm on its second step"),
        move |s: &SyncSequence| {
            let Some(current) = s
                .status
                .as_ref()
                .and_then(|st| st.book.current_run.as_deref())
            else {
                return false;
            };
            current.id == run
                && current.steps[0].phase == StepPhase::Succeeded
                && current.steps[1].phase == StepPhase::Running
        },
    )
    .await;
}

#[tokio::test]
async fn the_previous_release_and_this_one_take_over_each_others_runs() {
    let _alone = ONE_AT_A_TIME.lock().await;
    install_crds().await;
    let previous = previous_release();
    let ns = TestNamespace::new("rollback").await;
    apply_crm(&ns, "3s", "");
    let mut controller = ControllerProcess::start(&ns.name);

    // Rolled back in the middle of run 1: the previous release finishes what this one started.
    trigger(&ns, "crm", "1").await;
    wait_mid_run(&ns, 1).await;
    controller.restart_as(&previous);
    let seq = wait_for_run(&ns, "crm", 1, Duration::from_secs(90)).await;
    assert_eq!(
        last_phase(&seq),
        Some(RunPhase::Succeeded),
        "{:?}",
        seq.status
    );

    // Upgraded again in the middle of run 2: this release finishes what the previous started.
    trigger(&ns, "crm", "2").await;
    wait_mid_run(&ns, 2).await;
    controller.restart_as(&this_release());
    let seq = wait_for_run(&ns, "crm", 2, Duration::from_secs(90)).await;
    let book = &seq.status.as_ref().unwrap().book;
    assert_eq!(
        book.runs
            .iter()
            .map(|r| (r.id, r.phase))
            .collect::<Vec<_>>(),
        [(2, RunPhase::Succeeded), (1, RunPhase::Succeeded)]
    );
    let last = seq.status.as_ref().unwrap().last_run.as_deref().unwrap();
    assert!(
        last.steps.iter().all(|s| s.attempts == 1),
        "one attempt per step: {last:?}"
    );

    // Exactly one Job per step of each run, across both hand-overs.
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut per_step: Vec<String> = jobs
        .iter()
        .map(|j| {
            let l = j.labels();
            format!("{}/{}", l["syncseq.dev/run"], l["syncseq.dev/step"])
        })
        .collect();
    per_step.sort();
    assert_eq!(
        per_step,
        [
            "1/accounts",
            "1/contacts",
            "1/workspaces",
            "2/accounts",
            "2/contacts",
            "2/workspaces"
        ]
    );
}

/// The SyncSequence CRD as a newer release might serve it: `status.lastRunResult` takes values
/// this release does not know. Put back as this release has it when dropped.
struct NewerCrd;

const SEQUENCES_CRD: &str = "syncsequences.syncseq.dev";

impl NewerCrd {
    fn serve() -> Self {
        let patch = r#"[{"op": "remove", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/lastRunResult/enum"}]"#;
        let out = kubectl(
            &["patch", "crd", SEQUENCES_CRD, "--type=json", "-p", patch],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        NewerCrd
    }
}

impl Drop for NewerCrd {
    fn drop(&mut self) {
        let crds = repo_root().join("crds/syncseq.dev_crds.yaml");
        let out = kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=syncseq-tests",
                "-f",
                crds.to_str().unwrap(),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The sequence as the API server has it, whatever this release can read of it.
async fn raw(ns: &TestNamespace, name: &str) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client().await,
        &ns.name,
        &ApiResource::erase::<SyncSequence>(&()),
    );
    api.get(name).await.expect("get the sequence")
}

fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let c = obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

/// Requests a run of a sequence this release may not be able to read.
async fn request_run(ns: &TestNamespace, name: &str, value: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client().await,
        &ns.name,
        &ApiResource::erase::<SyncSequence>(&()),
    );
    let patch =
        json!({"metadata": {"annotations": {syncseq::api::annotations::REQUESTED_AT: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("annotate the sequence");
}

async fn set_last_run_result(ns: &TestNamespace, name: &str, value: serde_json::Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client().await,
        &ns.name,
        &ApiResource::erase::<SyncSequence>(&()),
    );
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"lastRunResult": value}})),
    )
    .await
    .expect("write the sequence's status");
}

#[tokio::test]
async fn an_object_a_newer_release_wrote_is_set_aside_and_the_others_run() {
    let _alone = ONE_AT_A_TIME.lock().await;
    install_crds().await;
    let ns = TestNamespace::new("newer-status").await;
    apply_crm(&ns, "300ms", "");
    ns.kubectl_apply(&sync_yaml("ads", "300ms", 0, None));
    ns.kubectl_apply(&sequence_yaml("ads-daily", &[("ads", "")], ""));
    let _crd = NewerCrd::serve();
    let _controller = ControllerProcess::start(&ns.name);
    wait_for_object(
        &ns.api::<SyncSequence>(),
        "ads-daily",
        Duration::from_secs(30),
        "ads-daily Ready",
        |s: &SyncSequence| {
            s.status
                .as_ref()
                .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "Ready"))
        },
    )
    .await;

    // What a newer syncseq might write: a run result this release has no name for.
    set_last_run_result(&ns, "ads-daily", json!("Paused")).await;
    let said = eventually(
        Duration::from_secs(30),
        "ads-daily Stalled with ObjectUnreadable",
        || async {
            let obj = raw(&ns, "ads-daily").await;
            condition(&obj, "Stalled")
                .filter(|(status, reason, _)| status == "True" && reason == "ObjectUnreadable")
        },
    )
    .await;
    assert!(
        said.2.contains("status: unknown variant `Paused`"),
        "{said:?}"
    );
    let obj = raw(&ns, "ads-daily").await;
    assert_eq!(
        condition(&obj, "Ready").map(|(s, r, _)| (s, r)),
        Some(("False".into(), "ObjectUnreadable".into()))
    );
    assert_eq!(
        obj.data["status"]["lastRunResult"], "Paused",
        "the newer release's status is left as it was"
    );
    let notes = wait_event_notes(
        &ns,
        "ads-daily",
        "ObjectUnreadable",
        Duration::from_secs(30),
    )
    .await;
    assert!(notes[0].contains("unknown variant `Paused`"), "{notes:?}");

    // Left alone: a request starts nothing. The other sequence runs meanwhile.
    request_run(&ns, "ads-daily", "1").await;
    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, Duration::from_secs(60)).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    let ads_jobs = ns
        .api::<Job>()
        .list(&ListParams::default().labels("syncseq.dev/sequence=ads-daily"))
        .await
        .unwrap()
        .items;
    assert!(ads_jobs.is_empty(), "no Job for the unreadable sequence");

    // The plugin lists both, the unreadable one with why.
    let out = std::process::Command::new(this_release())
        .args(["plugin", "status", "-n", &ns.name])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("run the plugin");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = listing
        .lines()
        .find(|l| l.starts_with("syncsequence/ads-daily"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        line.contains("Unreadable") && line.contains("unknown variant `Paused`"),
        "{listing}"
    );
    assert!(
        listing.lines().any(|l| l.starts_with("syncsequence/crm ")),
        "{listing}"
    );

    // Readable again (the newer release rolled back its write, or this one was upgraded): it
    // is taken back, the request that waited is handled, and the stall is over.
    set_last_run_result(&ns, "ads-daily", serde_json::Value::Null).await;
    let seq = wait_for_run(&ns, "ads-daily", 1, Duration::from_secs(60)).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    let stalled = seq
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .cloned();
    assert_eq!(stalled.map(|c| c.status), Some("False".into()));
}
