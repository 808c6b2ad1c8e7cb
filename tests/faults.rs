//! Under faults nothing is lost or doubled: a paused leader (issue: under faults nothing is
//! lost or doubled).

mod support;

use std::time::Duration;

use jiff::Timestamp;
use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, StepPhase, SyncSequence};

/// `SIGSTOP` the leader past its lease: the standby takes over and finishes a step; on
/// `SIGCONT` the old leader changes nothing (its fence closed on its own clock while it was
/// stopped; what it had already sent is refused by the API server) and exits. The audit log tells the replicas apart by User-Agent.
#[tokio::test]
async fn a_paused_leader_changes_nothing_after_the_standby_took_over_and_exits() {
    install_crds().await;
    let ns = TestNamespace::new("fence").await;
    apply_crm(&ns, "3s", "");
    let pods = PodLog::start(&ns).await;
    let mut a = ControllerProcess::start_replica(&ns.name, "replica-a", vec![]);
    let a_id = a.identity();
    eventually(Duration::from_secs(30), "replica a to lead", || async {
        lease(&ns)
            .await?
            .spec?
            .holder_identity
            .filter(|h| *h == a_id)
    })
    .await;
    let b = ControllerProcess::start_replica(&ns.name, "replica-b", vec![]);
    let b_id = b.identity();
    trigger(&ns, "crm", "1").await;
    let seqs = ns.api::<SyncSequence>();
    let step_phase = |seq: &SyncSequence, i: usize| {
        seq.status
            .as_ref()
            .and_then(|s| s.book.current_run.as_deref())
            .and_then(|r| r.steps.get(i))
            .map(|s| s.phase)
    };
    wait_for_object(
        &seqs,
        "crm",
        Duration::from_secs(30),
        "step 1 running",
        |s| step_phase(s, 0) == Some(StepPhase::Running),
    )
    .await;

    a.signal("STOP");
    let takeover = eventually(
        Duration::from_secs(30),
        "replica b to take the lease",
        || {
            let b_id = b_id.clone();
            let ns = &ns;
            async move {
                let spec = lease(ns).await?.spec?;
                (spec.holder_identity.as_deref() == Some(b_id.as_str()))
                    .then_some(spec.acquire_time?.0)
            }
        },
    )
    .await;
    // The standby finishes a step while the old leader is still stopped.
    wait_for_object(
        &seqs,
        "crm",
        Duration::from_secs(60),
        "step 1 finished by b",
        |s| step_phase(s, 0) == Some(StepPhase::Succeeded),
    )
    .await;

    a.signal("CONT");
    let resumed = Timestamp::now();
    let status = a.wait_exit(Duration::from_secs(15)).await;
    assert!(
        !status.success(),
        "a replica that lost its lease exits with an error"
    );

    let seq = wait_for_run(&ns, "crm", 1, Duration::from_secs(90)).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    assert_eq!(
        job_steps(&ns).await,
        vec!["accounts", "contacts", "workspaces"],
        "exactly one Job per step"
    );
    assert!(
        pods.max_alive().values().all(|n| *n <= 1),
        "{:?}",
        pods.max_alive()
    );

    let writes = audit::writes_by(&format!("({a_id})"));
    assert!(
        writes.iter().any(|w| w.received < takeover),
        "the audit log shows replica a's writes while it led (else this test sees nothing)"
    );
    // A request replica a had sent when it was stopped may still reach the API server after
    // the takeover: no client-side check can close that gap. What must hold is that none of
    // them changes anything — each status write is conditional on the version it was decided
    // on, which replica b has moved past, a claim is compare-and-swap, and a Job create finds
    // b's Job under the same name. Only Events, records of what a did before, may land.
    let late: Vec<_> = writes
        .iter()
        .filter(|w| w.received >= takeover && w.resource != "events")
        .collect();
    let landed: Vec<_> = late
        .iter()
        .filter(|w| w.code.is_some_and(|c| (200..300).contains(&c)))
        .collect();
    assert!(
        landed.is_empty(),
        "a write of replica a's landed after replica b took the lease at {takeover} (resumed at {resumed}): {landed:#?}"
    );
    assert!(
        late.len() <= 8,
        "replica a went on sending writes after it resumed at {resumed}: {late:#?}"
    );
    drop(b);
}
