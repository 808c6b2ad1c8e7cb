//! One controller for every namespace, as the chart installs it (issue: under faults nothing
//! is lost or doubled — per-namespace fairness of alert delivery). This binary holds one test
//! only: its controller acts on the objects of every namespace, and cargo runs test binaries
//! one at a time.

mod support;

use std::time::{Duration, Instant};

use support::fixtures::*;
use support::receiver::{Receiver, Tarpit, create_secret};
use support::*;
use syncseq::api::RunPhase;

/// How long one delivery attempt may take (the notifier's request timeout).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight at once across all namespaces, and for one namespace.
const IN_FLIGHT: usize = 16;
const NAMESPACE_SHARE: usize = 4;

#[tokio::test]
async fn one_namespaces_tarpit_receivers_do_not_delay_another_namespaces_alerts() {
    install_crds().await;
    let noisy = TestNamespace::new("tarpit").await;
    let quiet = TestNamespace::new("fair").await;
    let tarpit = Tarpit::start().await;
    let receiver = Receiver::start().await;
    create_secret(&noisy, "tarpit", &tarpit.url()).await;
    create_secret(&quiet, "hook", &receiver.url("/quiet")).await;
    for ns in [&noisy, &quiet] {
        ns.kubectl_apply(&sync_yaml("load", "1s", 1, Some("warehouse unreachable")));
    }
    // More alerts than may be in flight overall (two sequences, as one holds at most 10):
    // without a share per namespace, the tarpit would hold every delivery slot for an attempt
    // timeout, again and again.
    let names: Vec<String> = (0..IN_FLIGHT + 2).map(|i| format!("page-{i}")).collect();
    let noisy_sequences = ["crm-a", "crm-b"];
    for (sequence, names) in noisy_sequences.iter().zip(names.chunks(names.len() / 2)) {
        let alerts: Vec<_> = names
            .iter()
            .map(|n| (n.as_str(), "RunFailed", "tarpit", "JSON"))
            .collect();
        noisy.kubectl_apply(&sequence_yaml(
            sequence,
            &[("load", "")],
            &alerts_yaml(&alerts),
        ));
    }
    quiet.kubectl_apply(&sequence_yaml(
        "crm",
        &[("load", "")],
        &alerts_yaml(&[("oncall", "RunFailed", "hook", "JSON")]),
    ));
    let _controller = ControllerProcess::start_cluster_wide(&quiet.name);

    for sequence in noisy_sequences {
        trigger(&noisy, sequence, "1").await;
    }
    eventually(
        Duration::from_secs(60),
        "the tarpit to hold the noisy namespace's deliveries",
        || async { (tarpit.open() >= NAMESPACE_SHARE).then_some(()) },
    )
    .await;
    trigger(&quiet, "crm", "1").await;
    let seq = wait_for_run(&quiet, "crm", 1, Duration::from_secs(60)).await;
    let failed = Instant::now();
    assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
    let delivered = eventually(
        Duration::from_secs(30),
        "the quiet namespace's alert",
        || async { receiver.requests("/quiet").first().map(|r| r.answered_at) },
    )
    .await;
    // No tarpit attempt can have ended before the first one timed out. Had the quiet
    // namespace's delivery waited for a slot the tarpit held, it would come after that.
    let first_tarpit_timeout = tarpit.first_accepted().unwrap() + ATTEMPT_TIMEOUT;
    eprintln!(
        "delivered {:?} after the run failed; the tarpit held up to {} connections at once",
        delivered.saturating_duration_since(failed),
        tarpit.most_open()
    );
    assert!(
        delivered < first_tarpit_timeout,
        "the quiet namespace's alert waited for the tarpit: delivered {:?} after the run failed, \
         {:?} after the first tarpit attempt could time out",
        delivered.saturating_duration_since(failed),
        delivered.saturating_duration_since(first_tarpit_timeout)
    );
    assert!(
        tarpit.most_open() <= NAMESPACE_SHARE,
        "one namespace had {} deliveries in flight at once, more than its share",
        tarpit.most_open()
    );
}
