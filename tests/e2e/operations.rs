//! Running syncseq like a product: two replicas with leader election, and metrics
//! (issue: run it like a product).

use crate::support;

use std::time::{Duration, Instant};

use support::fixtures::*;
use support::*;
use syncseq::api::RunPhase;

/// The standby stands by warm: its caches sync while the leader leads, it writes nothing until
/// it holds the Lease, and then its first write follows the Lease at once.
#[tokio::test]
async fn the_standby_takes_over_when_the_leader_is_killed_without_a_lost_or_doubled_step() {
    install_crds().await;
    let ns = TestNamespace::new("ha").await;
    apply_crm(&ns, "3s", "");
    let log = JobLog::start(&ns).await;
    let mut a = ControllerProcess::start_replica(&ns.name, "replica-a", vec![]);
    let leader_a = eventually(Duration::from_secs(30), "replica a to lead", || async {
        lease_holder(&ns)
            .await
            .filter(|h| h.starts_with("replica-a"))
    })
    .await;
    let b = ControllerProcess::start_replica(&ns.name, "replica-b", vec![]);
    // The standby serves and is Ready while it waits for the lease.
    let b_address = b.metrics_address().await;
    eventually(Duration::from_secs(20), "the standby Ready", || async {
        (http_get(&b_address, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    // A warm standby: its watches and caches are filled while it waits, so taking over costs
    // the Lease's expiry and not a cold start.
    b.wait_for_log("caches synced", Duration::from_secs(30))
        .await;
    trigger(&ns, "crm", "1").await;
    eventually(Duration::from_secs(60), "step 2's Job", || async {
        log.created()
            .iter()
            .any(|n| n.contains("-workspaces-"))
            .then_some(())
    })
    .await;

    let b_agent = format!("({})", b.identity());
    let before_kill = jiff::Timestamp::now();
    a.kill();
    let killed = Instant::now();
    eventually(
        Duration::from_secs(20),
        "replica b to take the lease",
        || async {
            lease_holder(&ns)
                .await
                .filter(|h| h.starts_with("replica-b"))
        },
    )
    .await;
    let takeover = killed.elapsed();
    assert!(
        takeover <= Duration::from_secs(6 + 2),
        "took over after {takeover:?}; the lease lasts 6 s (leader was {leader_a})"
    );

    let seq = wait_for_run(&ns, "crm", 1, Duration::from_secs(90)).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    let steps = job_steps(&ns).await;
    assert_eq!(
        steps,
        vec!["accounts", "contacts", "workspaces"],
        "exactly one Job per step"
    );
    assert_eq!(log.max_concurrent(|_| true), 1);

    let writes = audit::writes_by(&b_agent);
    // A standby campaigns by reading the Lease, so it writes nothing at all while another
    // replica leads; the writes after the kill show the audit log sees this replica.
    let decided: Vec<_> = writes.iter().filter(|w| w.received < before_kill).collect();
    assert!(
        decided.is_empty(),
        "the standby wrote while replica a led: {decided:#?}"
    );
    // From the Lease to its first decision: the caches are warm, so well under the lease.
    let acquired = writes
        .iter()
        .find(|w| {
            w.resource == "leases"
                && w.received >= before_kill
                && w.code.is_some_and(|c| (200..300).contains(&c))
        })
        .map(|w| w.received)
        .expect("the standby's winning Lease write");
    let first = writes
        .iter()
        .find(|w| w.resource != "leases" && w.received >= acquired)
        .unwrap_or_else(|| panic!("no write of the standby after it took the Lease: {writes:#?}"));
    let decided_after = first.received.duration_since(acquired);
    assert!(
        decided_after <= jiff::SignedDuration::from_secs(2),
        "the standby's first write came {decided_after:#} after it took the Lease: {first:#?}"
    );
    eprintln!(
        "standby took over {takeover:?} after the leader was killed, first wrote {decided_after:#} after the Lease"
    );
    drop(b);
}

#[tokio::test]
async fn metrics_show_runs_and_step_handoffs_after_a_run() {
    install_crds().await;
    let ns = TestNamespace::new("metrics").await;
    apply_crm(&ns, "300ms", "");
    let controller = ControllerProcess::start(&ns.name);
    let address = controller.metrics_address().await;
    assert_eq!(
        http_get(&address, "/healthz").await,
        (200, "ok".to_string())
    );
    eventually(
        Duration::from_secs(20),
        "/readyz after the caches synced",
        || async { (http_get(&address, "/readyz").await.0 == 200).then_some(()) },
    )
    .await;
    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, Duration::from_secs(60)).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    // Metrics are recorded once the reconcile that wrote the final status has finished, and
    // the per-object ones are read from the caches, which see that write a moment later.
    let finished_in_cache = format!(
        "syncseq_last_success_timestamp_seconds{{kind=\"SyncSequence\",namespace=\"{}\",name=\"crm\"}}",
        ns.name
    );
    // The last step's Sync records its end in its own reconcile, which may come after the
    // sequence's.
    let sync_finished_in_cache = format!(
        "syncseq_last_success_timestamp_seconds{{kind=\"Sync\",namespace=\"{}\",name=\"contacts\"}}",
        ns.name
    );
    // The run's count, which exists at 0 from the sequence's first reconcile on.
    let counted = format!(
        "syncseq_runs_total{{kind=\"SyncSequence\",namespace=\"{}\",name=\"crm\",outcome=\"Succeeded\"}} 1",
        ns.name
    );
    let body = eventually(
        Duration::from_secs(10),
        "the finished run in /metrics",
        || async {
            let (code, body) = http_get(&address, "/metrics").await;
            (code == 200
                && body.contains(&counted)
                && body.contains(&finished_in_cache)
                && body.contains(&sync_finished_in_cache))
            .then_some(body)
        },
    )
    .await;
    let value = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
    };
    let of_crm = |metric: &str, more: &str| {
        format!(
            "{metric}{{kind=\"SyncSequence\",namespace=\"{}\",name=\"crm\"{more}}}",
            ns.name
        )
    };
    assert_eq!(
        value(&of_crm("syncseq_runs_total", ",outcome=\"Succeeded\"")),
        1.0
    );
    // What the caches show of each object, at scrape time.
    let of = |metric: &str, kind: &str, name: &str, more: &str| {
        format!(
            "{metric}{{kind=\"{kind}\",namespace=\"{}\",name=\"{name}\"{more}}}",
            ns.name
        )
    };
    let finished = seq.status.as_ref().unwrap().book.runs[0].clone();
    assert_eq!(
        value(&of(
            "syncseq_last_success_timestamp_seconds",
            "SyncSequence",
            "crm",
            ""
        )),
        finished.completion_time.unwrap().0.as_millisecond() as f64 / 1000.0
    );
    assert_eq!(
        value(&of(
            "syncseq_last_run_outcome",
            "SyncSequence",
            "crm",
            ",outcome=\"Succeeded\""
        )),
        1.0
    );
    assert_eq!(
        value(&of("syncseq_run_in_progress", "SyncSequence", "crm", "")),
        0.0
    );
    assert!(
        value(&of(
            "syncseq_last_success_timestamp_seconds",
            "Sync",
            "contacts",
            ""
        )) > 0.0
    );
    assert_eq!(value("syncseq_leader"), 1.0);
    assert_eq!(
        value("syncseq_step_handoff_seconds_count"),
        2.0,
        "two hand-offs in a 3-step run"
    );
    assert!(value("syncseq_step_handoff_seconds_sum") < 2.0);
    assert!(value("syncseq_reconciles_total{kind=\"SyncSequence\"}") >= 3.0);
    assert_eq!(value("syncseq_step_duration_seconds_count"), 3.0);
    let p_handoff = value("syncseq_step_handoff_seconds_sum") / 2.0;
    eprintln!("mean step hand-off: {:.1} ms", p_handoff * 1000.0);
}

/// A controller whose credentials may not list anything (a ServiceAccount without roles):
/// `/readyz` stays false, since its caches never sync, and `/healthz` fails once the watches
/// have failed for the stall bound, naming the watch and the API server's refusal.
#[tokio::test]
async fn healthz_fails_and_says_why_when_the_watches_cannot_list() {
    install_crds().await;
    let ns = TestNamespace::new("health").await;
    let sa = "no-rights";
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(kubectl(
        &["create", "serviceaccount", sa, "-n", &ns.name],
        None,
    ));
    let token = ok(kubectl(
        &["create", "token", sa, "-n", &ns.name, "--duration", "1h"],
        None,
    ));
    let view = |path: &str| {
        ok(kubectl(
            &[
                "config",
                "view",
                "--raw",
                "--minify",
                "-o",
                &format!("jsonpath={{{path}}}"),
            ],
            None,
        ))
    };
    let kubeconfig = repo_root().join(format!(".cluster/logs/{}-{sa}.kubeconfig", ns.name));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority-data: \"{}\"}}}}]\nusers: [{{name: u, user: {{token: \"{}\"}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n",
            view(".clusters[0].cluster.server"),
            view(".clusters[0].cluster.certificate-authority-data"),
            token.trim()
        ),
    )
    .unwrap();
    let controller = ControllerProcess::start_replica(
        &ns.name,
        "no-rights",
        vec![
            ("KUBECONFIG".into(), kubeconfig.display().to_string()),
            ("SYNCSEQ_TEST_NO_LEADER_ELECTION".into(), "1".into()),
            ("SYNCSEQ_HEALTH_STALL_SECONDS".into(), "3".into()),
        ],
    );
    let address = controller.metrics_address().await;
    let (code, body) = eventually(Duration::from_secs(30), "/healthz to fail", || async {
        let (code, body) = http_get(&address, "/healthz").await;
        (code == 503).then_some((code, body))
    })
    .await;
    assert_eq!(code, 503);
    assert!(
        body.contains("watch has failed for") && body.contains("forbidden"),
        "{body}"
    );
    assert_eq!(
        http_get(&address, "/readyz").await.0,
        503,
        "caches never synced"
    );
    let log = std::fs::read_to_string(controller.log_path()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("watch failed")),
        "watch failures are logged at warn"
    );
}
