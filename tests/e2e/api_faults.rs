//! The API server misbehaves between the controller and kube-apiserver (a fault-injecting proxy,
//! tests/support/proxy.rs): server errors, throttling, hangs, lost answers, dropped watches and
//! 410 Gone. Under each, the run finishes with exactly one Job per step and no Sync runs two
//! Pods at once (issue: under faults nothing is lost or doubled).

use crate::support;

use std::time::Duration;

use support::fixtures::*;
use support::proxy::{Fault, FaultProxy, Match};
use support::*;
use syncseq::api::RunPhase;

/// Requests the controller makes give up after this long (`--api-timeout-seconds`).
const API_TIMEOUT_SECONDS: u64 = 4;

struct Setup {
    ns: TestNamespace,
    proxy: FaultProxy,
    pods: PodLog,
}

/// A namespace with the CRM sequence (1 s steps) and a proxy; the controller is not started,
/// so that each test injects its faults first.
async fn setup(prefix: &str) -> Setup {
    install_crds().await;
    let ns = TestNamespace::new(prefix).await;
    apply_crm(&ns, "1s", "");
    let proxy = FaultProxy::start(&ns.name).await;
    let pods = PodLog::start(&ns).await;
    Setup { ns, proxy, pods }
}

impl Setup {
    fn controller(&self) -> ControllerProcess {
        ControllerProcess::start_through(
            &self.ns.name,
            self.proxy.kubeconfig(),
            vec![(
                "SYNCSEQ_API_TIMEOUT_SECONDS".into(),
                API_TIMEOUT_SECONDS.to_string(),
            )],
        )
    }

    /// The path of a namespaced collection of this test, e.g. `jobs` in `batch/v1`.
    fn path(&self, group_version: &str, resource: &str) -> String {
        format!("{group_version}/namespaces/{}/{resource}", self.ns.name)
    }

    /// Triggers a run and checks the promises once it finished: it succeeded, exactly one Job
    /// per step, never two Pods of a Sync at once.
    async fn run_exactly_once(&self) {
        trigger(&self.ns, "crm", "1").await;
        let seq = wait_for_run(&self.ns, "crm", 1, Duration::from_secs(120)).await;
        assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded), "{seq:#?}");
        let mut expected: Vec<_> = CRM_STEPS.to_vec();
        expected.sort();
        assert_eq!(
            job_steps(&self.ns).await,
            expected,
            "exactly one Job per step"
        );
        assert!(
            self.pods.max_alive().values().all(|n| *n <= 1),
            "{:?}",
            self.pods.max_alive()
        );
    }

    /// Asserts the proxy answered `n` requests with a fault (else the test saw nothing).
    fn assert_faulted(&self, n: usize) {
        let faulted = self.proxy.faulted();
        assert_eq!(faulted.len(), n, "faults injected: {faulted:#?}");
    }
}

#[tokio::test]
async fn job_creates_answered_with_server_errors_are_retried_and_reported() {
    let s = setup("api500").await;
    s.proxy.inject(
        Match::new("POST", s.path("batch/v1", "jobs")),
        Fault::Status(500),
        2,
    );
    let _c = s.controller();
    s.run_exactly_once().await;
    s.assert_faulted(2);
    let notes = wait_event_notes(&s.ns, "crm", "ReconcileFailed", Duration::from_secs(30)).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("500") || n.contains("injected")),
        "the Warning Event says what failed: {notes:?}"
    );
}

/// Answers the first `times` status writes with 429 and `Retry-After: retry_after_secs`, runs
/// the sequence, and returns how long after the first 429 its retry came.
async fn retry_after_throttled_status_writes(
    prefix: &str,
    retry_after_secs: u64,
    times: usize,
) -> Duration {
    let s = setup(prefix).await;
    let status = format!(
        "{}/crm/status",
        s.path("syncseq.dev/v1alpha1", "syncsequences")
    );
    s.proxy.inject(
        Match::new("PATCH", status.clone()),
        Fault::TooManyRequests { retry_after_secs },
        times,
    );
    let _c = s.controller();
    s.run_exactly_once().await;
    s.assert_faulted(times);
    let writes: Vec<_> = s
        .proxy
        .seen()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.uri.contains(&status))
        .collect();
    let first = writes.iter().position(|w| w.fault.is_some()).unwrap();
    writes[first + 1].at - writes[first].at
}

#[tokio::test]
async fn throttled_status_writes_wait_as_long_as_retry_after_says() {
    let gap = retry_after_throttled_status_writes("api429", 2, 2).await;
    assert!(
        gap >= Duration::from_millis(1900),
        "the retry came {gap:?} after a 429 that said Retry-After: 2"
    );
}

#[tokio::test]
async fn a_retry_after_of_an_hour_holds_a_write_for_seconds_only() {
    let gap = retry_after_throttled_status_writes("api429long", 3600, 1).await;
    assert!(
        gap <= Duration::from_secs(12),
        "the retry came {gap:?} after a 429 that said Retry-After: 3600"
    );
}

#[tokio::test]
async fn a_hung_status_write_is_abandoned_and_retried() {
    let s = setup("apihang").await;
    let status = format!(
        "{}/crm/status",
        s.path("syncseq.dev/v1alpha1", "syncsequences")
    );
    s.proxy.inject(Match::new("PATCH", status), Fault::Hang, 1);
    let _c = s.controller();
    s.run_exactly_once().await;
    s.assert_faulted(1);
}

#[tokio::test]
async fn a_job_create_whose_answer_is_lost_is_not_repeated() {
    let s = setup("apilost").await;
    s.proxy.inject(
        Match::new("POST", s.path("batch/v1", "jobs")),
        Fault::LoseAnswer,
        1,
    );
    let _c = s.controller();
    s.run_exactly_once().await;
    s.assert_faulted(1);
}

#[tokio::test]
async fn dropped_job_watches_reconnect_without_losing_a_step() {
    let s = setup("apidrop").await;
    let jobs = s.path("batch/v1", "jobs");
    s.proxy
        .inject(Match::watch(jobs.clone()), Fault::DropWatch, 3);
    let _c = s.controller();
    s.run_exactly_once().await;
    s.assert_faulted(3);
    let watches = s
        .proxy
        .seen()
        .into_iter()
        .filter(|r| r.watch && r.uri.contains(&jobs))
        .count();
    assert!(
        watches > 3,
        "the controller watched the Jobs again after each cut ({watches} watches)"
    );
}

#[tokio::test]
async fn a_job_watch_answered_410_gone_relists() {
    let s = setup("apigone").await;
    let jobs = s.path("batch/v1", "jobs");
    s.proxy.inject(Match::watch(jobs.clone()), Fault::Gone, 2);
    let _c = s.controller();
    s.run_exactly_once().await;
    s.assert_faulted(2);
    let seen = s.proxy.seen();
    let gone = seen.iter().position(|r| r.fault.is_some()).unwrap();
    assert!(
        seen[gone..]
            .iter()
            .any(|r| r.method == "GET" && !r.watch && r.uri.contains(&jobs)),
        "the controller listed the Jobs again after the 410"
    );
}
