//! Sharding (`--shard-selector`, docs/sharding.md; issue 36, acceptance 6): two controller
//! processes with disjoint selectors, each electing its own leader, and a Sync shared by
//! sequences of both. Each reconciles only its own objects (read from their debug logs, whose
//! reconcile lines name the object), the shared Sync never has two live Pods (the claim in the
//! API server holds across shards), and killing one shard's controller leaves the other's run
//! to complete.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, SyncSequence};

const RUN_DEADLINE: Duration = Duration::from_secs(90);
const SHARD_LABEL: &str = "sharding.syncseq.dev/shard";

/// `yaml` (one object) labelled for `shard`.
fn in_shard(yaml: &str, shard: &str) -> String {
    yaml.replacen(
        "metadata:\n",
        &format!("metadata:\n  labels: {{{SHARD_LABEL}: {shard}}}\n"),
        1,
    )
}

/// The controller of shard `shard`, with leader election on (its own Lease).
fn shard_controller(ns: &TestNamespace, shard: &str) -> ControllerProcess {
    ControllerProcess::start_replica(
        &ns.name,
        &format!("shard-{shard}"),
        vec![(
            "SYNCSEQ_SHARD_SELECTOR".into(),
            format!("{SHARD_LABEL}={shard}"),
        )],
    )
}

/// The objects a controller's log shows it reconciled: `Kind/name` of every `decided` line.
fn reconciled(controller: &ControllerProcess) -> BTreeSet<String> {
    let log = std::fs::read_to_string(controller.log_path()).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(" decided "))
        .filter_map(|l| {
            let span = l.split("reconcile{").nth(1)?;
            let field = |key: &str| {
                span.split([' ', '}'])
                    .find_map(|f| f.strip_prefix(key))
                    .map(str::to_string)
            };
            Some(format!("{}/{}", field("kind=")?, field("name=")?))
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Waits until the controller holds a Lease; returns the Lease's name from its log.
async fn leading(controller: &ControllerProcess) -> String {
    let line = controller
        .wait_for_log("acquired the lease", Duration::from_secs(60))
        .await;
    line.split("lease=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the lease's name in the log line")
        .to_string()
}

#[tokio::test]
async fn two_shards_share_a_sync_without_running_it_twice_and_survive_each_others_death() {
    install_crds().await;
    let ns = TestNamespace::new("shard").await;
    ns.kubectl_apply(&in_shard(&sync_yaml("shared", "3s", 0, None), "b"));
    ns.kubectl_apply(&in_shard(&sync_yaml("only-a", "3s", 0, None), "a"));
    ns.kubectl_apply(&in_shard(&sync_yaml("only-b", "3s", 0, None), "b"));
    for (seq, own) in [("seq-a", "only-a"), ("seq-b", "only-b")] {
        let steps = [("shared", ""), (own, "")];
        // seq-a in shard a, seq-b in shard b.
        ns.kubectl_apply(&in_shard(&sequence_yaml(seq, &steps, ""), &seq[4..]));
    }
    let (jobs, pods) = (JobLog::start(&ns).await, PodLog::start(&ns).await);
    let mut a = shard_controller(&ns, "a");
    let b = shard_controller(&ns, "b");
    let (lease_a, lease_b) = (leading(&a).await, leading(&b).await);
    assert_ne!(lease_a, lease_b, "each shard elects its own leader");
    for (lease, who) in [(&lease_a, &a), (&lease_b, &b)] {
        let held: Lease = ns.api().get(lease).await.expect("the shard's Lease");
        assert_eq!(
            held.spec.and_then(|s| s.holder_identity),
            Some(who.identity())
        );
    }

    // Both requested at once: one sequence's step waits for the other's on the shared Sync.
    trigger(&ns, "seq-a", "1").await;
    trigger(&ns, "seq-b", "1").await;
    jobs.wait_created("seq-a-1-", Duration::from_secs(60)).await;
    a.kill();

    // Shard b's run completes without shard a: the shared Sync is freed by a's Job ending,
    // which b's Job watch sees, whoever started it.
    let seq_b = wait_for_run(&ns, "seq-b", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq_b), Some(RunPhase::Succeeded));
    let seq_a: SyncSequence = ns.api().get("seq-a").await.unwrap();
    assert!(
        seq_a.status.as_ref().is_none_or(|s| s.book.runs.is_empty()),
        "nobody finished shard a's run while its controller was down: {:?}",
        seq_a.status
    );

    a.restart();
    let seq_a = wait_for_run(&ns, "seq-a", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq_a), Some(RunPhase::Succeeded));

    let created = jobs.created();
    for step in [
        "seq-a-1-shared-",
        "seq-b-1-shared-",
        "seq-a-1-only-a-",
        "seq-b-1-only-b-",
    ] {
        assert_eq!(
            created.iter().filter(|j| j.starts_with(step)).count(),
            1,
            "one Job for {step}: {created:?}"
        );
    }
    assert_eq!(
        pods.max_alive().get("shared"),
        Some(&1),
        "the shared Sync never had two live Pods: {:?}",
        pods.max_alive()
    );

    let (by_a, by_b) = (reconciled(&a), reconciled(&b));
    assert!(
        by_a.is_subset(&set(&["SyncSequence/seq-a", "Sync/only-a"])),
        "shard a reconciled only its own: {by_a:?}"
    );
    assert!(by_a.contains("SyncSequence/seq-a"), "{by_a:?}");
    assert!(
        by_b.is_subset(&set(&["SyncSequence/seq-b", "Sync/shared", "Sync/only-b"])),
        "shard b reconciled only its own: {by_b:?}"
    );
    assert!(
        by_b.contains("SyncSequence/seq-b") && by_b.contains("Sync/shared"),
        "{by_b:?}"
    );
}

/// Moving a sequence between shards: relabelled while idle, the new shard runs it and the old
/// one, whose watch sees it leave, does not reconcile it again.
#[tokio::test]
async fn a_relabelled_sequence_moves_to_the_other_shard() {
    install_crds().await;
    let ns = TestNamespace::new("shard-move").await;
    ns.kubectl_apply(&in_shard(&sync_yaml("accounts", "1s", 0, None), "a"));
    ns.kubectl_apply(&in_shard(
        &sequence_yaml("crm", &[("accounts", "")], ""),
        "a",
    ));
    let a = shard_controller(&ns, "a");
    let b = shard_controller(&ns, "b");
    leading(&a).await;
    leading(&b).await;
    trigger(&ns, "crm", "1").await;
    wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    assert!(reconciled(&a).contains("SyncSequence/crm"));
    assert!(!reconciled(&b).contains("SyncSequence/crm"));

    let relabel = serde_json::json!({"metadata": {"labels": {SHARD_LABEL: "b"}}});
    let moved = ns
        .api::<SyncSequence>()
        .patch("crm", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .expect("relabel");
    // From here on, shard a's log may not name it: count its lines before the next run.
    let before = std::fs::read_to_string(a.log_path())
        .unwrap_or_default()
        .len();
    trigger(&ns, "crm", "2").await;
    let seq = wait_for_run(&ns, "crm", 2, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    assert!(
        reconciled(&b).contains("SyncSequence/crm"),
        "shard b runs it now"
    );
    let log = std::fs::read_to_string(a.log_path()).unwrap_or_default();
    let after: Vec<&str> = log[before..]
        .lines()
        .filter(|l| l.contains(" decided ") && l.contains("name=crm"))
        .collect();
    assert!(
        after.is_empty(),
        "shard a reconciled {} (resourceVersion {:?}) after it moved: {after:?}",
        moved.name_any(),
        moved.resource_version()
    );
}
