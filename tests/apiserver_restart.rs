//! kube-apiserver restarts in the middle of a run (issue: under faults nothing is lost or
//! doubled). This binary holds one test only: the restart interrupts every client of the
//! control plane, and cargo runs test binaries one at a time.

mod support;

use std::process::Command;
use std::time::Duration;

use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, StepPhase, SyncSequence};

#[tokio::test]
async fn a_run_goes_on_after_the_api_server_restarts_in_its_middle() {
    install_crds().await;
    let ns = TestNamespace::new("apirestart").await;
    apply_crm(&ns, "4s", "");
    let pods = PodLog::start(&ns).await;
    let mut controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let seqs = ns.api::<SyncSequence>();
    wait_for_object(
        &seqs,
        "crm",
        Duration::from_secs(60),
        "step 2 running",
        |s| {
            s.status
                .as_ref()
                .and_then(|s| s.book.current_run.as_deref())
                .and_then(|r| r.steps.get(1))
                .is_some_and(|s| s.phase == StepPhase::Running)
        },
    )
    .await;

    let restart = Command::new(repo_root().join("hack/cluster-restart.sh"))
        .arg("kube-apiserver")
        .output()
        .expect("hack/cluster-restart.sh");
    assert!(
        restart.status.success(),
        "restarting kube-apiserver failed: {}",
        String::from_utf8_lossy(&restart.stderr)
    );
    // While the API server was down the controller could not renew its lease. If it lost it,
    // it exited, as it should; its Deployment would start it again, and so does the test.
    if controller.exited() {
        eprintln!("the controller exited while the API server was down; starting it again");
        controller.restart();
    }

    let seq = wait_for_run(&ns, "crm", 1, Duration::from_secs(180)).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded), "{seq:#?}");
    let mut expected: Vec<_> = CRM_STEPS.to_vec();
    expected.sort();
    assert_eq!(job_steps(&ns).await, expected, "exactly one Job per step");
    assert!(
        pods.max_alive().values().all(|n| *n <= 1),
        "{:?}",
        pods.max_alive()
    );
}
