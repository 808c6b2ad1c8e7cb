//! The soak (issue: under faults nothing is lost or doubled): sequences that share Syncs, with
//! retries, `Continue` steps and alerts, run by two replicas with leader election while the
//! leader is killed (`SIGKILL`) again and again — `SYNCSEQ_SOAK_KILLS` times, 20 in CI and 100
//! in `make soak` (bench/SOAK.md has the counts). Afterwards every run has finished, no Job
//! was created twice, a Pod watch never saw two Pods of one Sync alive at once, and every
//! alert was delivered, with one idempotency key per change of state.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::fixtures::*;
use support::receiver::{Receiver, create_secret};
use support::*;
use syncseq::api::{RunPhase, SyncSequence};

const SEQUENCES: [&str; 4] = ["s1", "s2", "s3", "s4"];

#[tokio::test]
async fn the_promises_hold_while_the_leader_is_killed_again_and_again() {
    let kills: usize = std::env::var("SYNCSEQ_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    install_crds().await;
    let ns = TestNamespace::new("soak").await;
    let receiver = Receiver::start().await;
    create_secret(&ns, "hook", &receiver.url("/soak")).await;
    for s in ["a", "b", "c", "d"] {
        ns.kubectl_apply(&sync_yaml(s, "1s", 0, None));
    }
    // `c` fails (its step continues); `broken` fails until the end (its run stops).
    ns.kubectl_apply(&sync_yaml("c", "500ms", 2, None));
    ns.kubectl_apply(&sync_yaml("broken", "500ms", 3, None));
    let queue = "  concurrencyPolicy: Queue\n";
    ns.kubectl_apply(&sequence_yaml(
        "s1",
        &[
            ("a", ""),
            ("b", "    retries: 1\n    retryDelaySeconds: 1\n"),
            ("c", "    onFailure: Continue\n"),
        ],
        queue,
    ));
    ns.kubectl_apply(&sequence_yaml("s2", &[("b", ""), ("d", "")], queue));
    ns.kubectl_apply(&sequence_yaml("s3", &[("a", ""), ("d", "")], queue));
    ns.kubectl_apply(&sequence_yaml(
        "s4",
        &[("broken", "")],
        &format!(
            "{queue}  alerts:\n  - name: oncall\n    when: [RunFailed, Recovered]\n    webhook: {{urlSecretRef: {{name: hook, key: url}}, format: JSON}}\n"
        ),
    ));
    let pods = PodLog::start(&ns).await;
    let jobs = JobLog::start(&ns).await;
    let mut replicas = BTreeMap::from([
        (
            "a",
            ControllerProcess::start_replica(&ns.name, "replica-a", vec![]),
        ),
        (
            "b",
            ControllerProcess::start_replica(&ns.name, "replica-b", vec![]),
        ),
    ]);
    let ids: BTreeMap<&str, String> = replicas.iter().map(|(k, p)| (*k, p.identity())).collect();
    let leader = |h: &str| ids.iter().find(|(_, id)| *id == h).map(|(k, _)| *k);

    let started = Instant::now();
    let mut takeovers = 0;
    for i in 0..kills {
        for seq in SEQUENCES {
            trigger(&ns, seq, &format!("k{i}")).await;
        }
        let current = eventually(Duration::from_secs(30), "a leader", || async {
            lease_holder(&ns).await.as_deref().and_then(leader)
        })
        .await;
        // Let it work a little (0.5 to 3 s), then kill it mid-flight.
        let pause = Duration::from_millis(500 + (i as u64 * 733) % 2500);
        let until = Instant::now() + pause;
        eventually(pause + Duration::from_secs(1), "the pause", || async {
            (Instant::now() >= until).then_some(())
        })
        .await;
        let victim = replicas.get_mut(current).unwrap();
        victim.kill();
        if i % 3 == 0 {
            // The standby takes over before the killed replica comes back.
            let other = if current == "a" { "b" } else { "a" };
            eventually(
                Duration::from_secs(30),
                "the standby to take over",
                || async {
                    (lease_holder(&ns).await.as_deref().and_then(leader) == Some(other))
                        .then_some(())
                },
            )
            .await;
            takeovers += 1;
        }
        replicas.get_mut(current).unwrap().restart();
    }
    let killing = started.elapsed();

    // The broken Sync is fixed: the next run of s4 recovers.
    ns.kubectl_apply(&sync_yaml("broken", "500ms", 0, None));
    let all_idle = || async {
        let mut done = Vec::new();
        for seq in SEQUENCES {
            let s = ns.api::<SyncSequence>().get(seq).await.ok()?;
            let st = s.status.clone()?;
            (st.book.current_run.is_none() && st.book.queued_run.is_none()).then_some(())?;
            done.push(s);
        }
        Some(done)
    };
    eventually(Duration::from_secs(300), "every run finished", all_idle).await;
    trigger(&ns, "s4", "recover").await;
    wait_for_object(
        &ns.api::<SyncSequence>(),
        "s4",
        Duration::from_secs(120),
        "s4's recovery run",
        |s| last_phase(s) == Some(RunPhase::Succeeded),
    )
    .await;
    let finished = eventually(Duration::from_secs(300), "every run finished", all_idle).await;

    // Never twice at once, counted in Pods.
    let max_alive = pods.max_alive();
    assert!(max_alive.values().all(|n| *n <= 1), "{max_alive:?}");
    // Never a second Job for an attempt: Job names are the attempt's identity.
    let created = jobs.created();
    let unique: BTreeSet<&String> = created.iter().collect();
    assert_eq!(unique.len(), created.len(), "a Job created twice");
    // Every run started was finished and accounted for.
    let runs: i64 = finished
        .iter()
        .map(|s| s.status.as_ref().unwrap().book.last_run_number.unwrap_or(0))
        .sum();
    assert!(runs >= SEQUENCES.len() as i64, "runs ran: {runs}");
    for s in &finished {
        let st = s.status.as_ref().unwrap();
        let running = st.conditions.iter().find(|c| c.type_ == "Running");
        assert!(running.is_some_and(|c| c.status == "False"), "{running:?}");
    }
    // Alerts: the failure and the recovery of s4, each delivered, one key each.
    let alerts = eventually(
        Duration::from_secs(120),
        "both alerts delivered",
        || async {
            let accepted: Vec<_> = receiver
                .requests("/soak")
                .into_iter()
                .filter(|r| r.status == 200)
                .collect();
            let kinds: BTreeSet<String> = accepted
                .iter()
                .map(|r| r.json()["kind"].as_str().unwrap_or_default().to_string())
                .collect();
            (kinds.len() == 2).then_some(accepted)
        },
    )
    .await;
    let keys: BTreeMap<String, String> = alerts
        .iter()
        .map(|r| {
            (
                r.json()["kind"].as_str().unwrap().to_string(),
                r.idempotency_key.clone().unwrap_or_default(),
            )
        })
        .collect();
    let distinct: BTreeSet<Option<String>> =
        alerts.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(distinct.len(), 2, "one key per change of state: {keys:?}");
    eprintln!(
        "soak: {kills} leader kills ({takeovers} standby take-overs) in {killing:?}; {runs} runs; \
         {} Jobs, none twice; at most {} Pod(s) of a Sync alive at once; {} alert deliveries \
         for 2 changes of state",
        created.len(),
        max_alive.values().max().unwrap_or(&0),
        alerts.len()
    );
}
