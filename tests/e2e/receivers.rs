//! Runs started by signed webhooks (`WebhookReceiver`), on the local control plane with real
//! HTTP requests: deliveries signed exactly as dbt Cloud, Fivetran and a generic sender sign
//! them start one run each; replays, wrong signatures, other jobs and failed upstream runs
//! start none; big bodies and floods are refused while other receivers keep working (issue:
//! runs that start when something upstream finishes).

use crate::support;

use std::process::Command;
use std::time::Duration;

use support::fixtures::*;
use support::receiver::{Receiver, create_secret};
use support::sender::*;
use support::*;
use syncseq::api::{
    RunPhase, Sync, SyncSequence, TriggerKind, UpstreamKind, UpstreamRun, WebhookReceiver,
};

const DEADLINE: Duration = Duration::from_secs(90);
const TOKEN: &str = "whsec-8f1e6c0d";

/// `spec.after` on one receiver (indented for `spec:`), with `extra` lines after it.
fn after_receiver(name: &str) -> String {
    format!("  after:\n    upstreams:\n    - {{kind: WebhookReceiver, name: {name}}}\n")
}

/// The environment that turns the webhook endpoint on, on a free port.
fn endpoint_env() -> Vec<(String, String)> {
    vec![
        ("SYNCSEQ_RECEIVER_ADDRESS".into(), "127.0.0.1:0".into()),
        // Fewer than the 100 the flood test sends in a second, more than the others need.
        ("SYNCSEQ_RECEIVER_RATE".into(), "5".into()),
        ("SYNCSEQ_RECEIVER_BURST".into(), "20".into()),
    ]
}

/// Waits until a receiver is Ready with its path in status; returns the path.
async fn ready_path(ns: &TestNamespace, name: &str) -> String {
    let r = wait_for_object(
        &ns.api::<WebhookReceiver>(),
        name,
        DEADLINE,
        "the receiver to be Ready with a webhook path",
        |r| {
            r.status.as_ref().is_some_and(|s| {
                s.webhook_path.is_some()
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        },
    )
    .await;
    let path = r.status.unwrap().webhook_path.unwrap();
    assert_eq!(
        path,
        syncseq::webhook_path(r.metadata.uid.as_deref().unwrap()),
        "the path is derived from the receiver's UID"
    );
    path
}

/// Waits until the controller recorded the upstreams of a sequence (its baseline).
async fn wait_baseline<K>(ns: &TestNamespace, name: &str)
where
    K: HasRuns,
{
    wait_for_object(
        &ns.api::<K>(),
        name,
        DEADLINE,
        "the upstreams to be recorded",
        |o: &K| o.book().is_some_and(|b| !b.upstreams.is_empty()),
    )
    .await;
}

fn history(ns: &TestNamespace, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_syncseq"))
        .arg("plugin")
        .args(args)
        .args(["-n", &ns.name, "--kubeconfig"])
        .arg(kubeconfig_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn a_dbt_cloud_delivery_to_any_replica_starts_one_run_and_replays_start_none() {
    install_crds().await;
    let ns = TestNamespace::new("hooks-dbt").await;
    create_token_secret(&ns, "dbt-hook", TOKEN).await;
    ns.kubectl_apply(&receiver_yaml(
        "dbt-models",
        "DbtCloud",
        "dbt-hook",
        "  dbtCloud: {jobIds: [\"42\"]}\n",
    ));
    apply_crm(&ns, "300ms", &after_receiver("dbt-models"));
    // Two replicas; the delivery goes to the one that does not lead.
    let leader = ControllerProcess::start_replica(&ns.name, "replica-a", endpoint_env());
    eventually(DEADLINE, "replica-a to lead", || async {
        (lease_holder(&ns).await? == leader.identity()).then_some(())
    })
    .await;
    let standby = ControllerProcess::start_replica(&ns.name, "replica-b", endpoint_env());
    let path = ready_path(&ns, "dbt-models").await;
    wait_baseline::<SyncSequence>(&ns, "crm").await;
    let to = standby.receiver_address().await;
    wait_serving(&to, &path).await;

    let success = dbt_body("job.run.completed", "42", "9101", "Success");
    // A wrong signature, a missing one, and a body changed after signing: 401.
    let wrong = post(
        &to,
        &path,
        &signed("DbtCloud", "not-the-secret", &success),
        &success,
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.result().as_str()),
        (401, "bad_signature"),
        "{wrong:?}"
    );
    let unsigned = post(&to, &path, &[], &success).await;
    assert_eq!(unsigned.status, 401, "{unsigned:?}");
    let tampered = dbt_body("job.run.completed", "42", "9102", "Success");
    let changed = post(&to, &path, &signed("DbtCloud", TOKEN, &success), &tampered).await;
    assert_eq!(changed.status, 401, "{changed:?}");
    // A path no receiver has: 404.
    let unknown = post(&to, "/hook/00000000000000000000000000000000", &[], &success).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    // Another job, and a start event: acknowledged, ignored.
    for body in [
        dbt_body("job.run.completed", "43", "9103", "Success"),
        dbt_body("job.run.started", "42", "9104", "Running"),
    ] {
        let a = post(&to, &path, &signed("DbtCloud", TOKEN, &body), &body).await;
        assert_eq!((a.status, a.result().as_str()), (200, "ignored"), "{a:?}");
    }
    // An errored run is recorded as a failed delivery, once for both of its events; it
    // starts nothing (the sequence follows successes).
    let errored = dbt_body("job.run.errored", "42", "9100", "Error");
    let a = post(&to, &path, &signed("DbtCloud", TOKEN, &errored), &errored).await;
    assert_eq!((a.status, a.result().as_str()), (200, "accepted"), "{a:?}");
    let completed_error = dbt_body("job.run.completed", "42", "9100", "Error");
    let a = post(
        &to,
        &path,
        &signed("DbtCloud", TOKEN, &completed_error),
        &completed_error,
    )
    .await;
    assert_eq!(a.result(), "duplicate", "{a:?}");

    // The successful run: accepted once; the same delivery again is a duplicate.
    let a = post(&to, &path, &signed("DbtCloud", TOKEN, &success), &success).await;
    assert_eq!((a.status, a.result().as_str()), (200, "accepted"), "{a:?}");
    let again = post(&to, &path, &signed("DbtCloud", TOKEN, &success), &success).await;
    assert_eq!(
        (again.status, again.result().as_str()),
        (200, "duplicate"),
        "{again:?}"
    );

    let crm = wait_for_run(&ns, "crm", 1, DEADLINE).await;
    let st = crm.status.unwrap();
    let run = &st.book.runs[0];
    let by = UpstreamRun {
        kind: UpstreamKind::WebhookReceiver,
        name: "dbt-models".into(),
        run: "dbt-job-42-run-9101".into(),
    };
    assert_eq!(
        (run.id, run.trigger, run.phase, run.upstream.clone()),
        (
            1,
            TriggerKind::Upstream,
            RunPhase::Succeeded,
            Some(by.clone())
        )
    );
    assert_eq!(
        st.book.last_run_number,
        Some(1),
        "the failed dbt run started nothing"
    );
    assert!(st.book.current_run.is_none() && st.book.queued_run.is_none());
    let entry = &st.book.upstreams[0];
    assert_eq!(entry.handled_run.as_deref(), Some("dbt-job-42-run-9101"));

    let receiver = ns.api::<WebhookReceiver>().get("dbt-models").await.unwrap();
    let ids: Vec<_> = receiver
        .status
        .unwrap()
        .deliveries
        .iter()
        .map(|d| (d.id.clone(), d.phase))
        .collect();
    assert_eq!(
        ids,
        [
            ("dbt-job-42-run-9101".to_string(), RunPhase::Succeeded),
            ("dbt-job-42-run-9100".to_string(), RunPhase::Failed)
        ]
    );
    // The trigger with the upstream's identity: in Events on both objects and in history.
    let accepted = wait_event_notes(&ns, "dbt-models", "DeliveryAccepted", DEADLINE).await;
    assert!(
        accepted
            .iter()
            .any(|n| n.contains("dbt Cloud job 42 (Build CRM models) run 9101: Success")),
        "{accepted:?}"
    );
    let started = wait_event_notes(&ns, "crm", "RunStarted", DEADLINE).await;
    // With its first step, which starts in the same moment (one Event).
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(
        started[0].starts_with(
            "run 1 started by upstream webhook receiver dbt-models delivery dbt-job-42-run-9101; step "
        ),
        "{started:?}"
    );
    let table = history(&ns, &["history", "crm"]);
    assert!(table.contains(&by.to_string()), "{table}");
    let status = history(&ns, &["status", "crm"]);
    assert!(
        status.contains("runs after WebhookReceiver/dbt-models"),
        "{status}"
    );

    // The leader dies; a delivery that comes while nobody leads is recorded by the standby
    // and starts its run once the standby has taken over.
    let mut leader = leader;
    leader.kill();
    let next = dbt_body("job.run.completed", "42", "9102", "Success");
    let a = post(&to, &path, &signed("DbtCloud", TOKEN, &next), &next).await;
    assert_eq!(a.result(), "accepted", "{a:?}");
    let crm = wait_for_run(&ns, "crm", 2, DEADLINE).await;
    let book = crm.status.unwrap().book;
    assert_eq!(
        book.runs[0].upstream.as_ref().map(|u| u.run.as_str()),
        Some("dbt-job-42-run-9102")
    );
    assert_eq!(book.last_run_number, Some(2));
    assert_eq!(lease_holder(&ns).await, Some(standby.identity()));
}

#[tokio::test]
async fn fivetran_and_generic_deliveries_start_runs_and_reach_the_alert_body() {
    install_crds().await;
    let ns = TestNamespace::new("hooks-ft").await;
    let alerts = Receiver::start().await;
    create_secret(&ns, "json-hook", &alerts.url("/json/tok")).await;
    create_token_secret(&ns, "fivetran-hook", TOKEN).await;
    create_token_secret(&ns, "ci-hook", "another-secret").await;
    ns.kubectl_apply(&receiver_yaml(
        "salesforce",
        "Fivetran",
        "fivetran-hook",
        "  fivetran: {connectorIds: [mystified_presiding]}\n",
    ));
    ns.kubectl_apply(&receiver_yaml("ci", "Generic", "ci-hook", ""));
    // A sequence after the Fivetran connector whose one step fails, alerting as JSON.
    ns.kubectl_apply(&sync_yaml(
        "load",
        "300ms",
        2,
        Some(r#"{"message":"CRM said no"}"#),
    ));
    ns.kubectl_apply(&sequence_yaml(
        "after-fivetran",
        &[("load", "")],
        &format!(
            "{}{}",
            after_receiver("salesforce"),
            alerts_yaml(&[("oncall", "RunFailed", "json-hook", "JSON")])
        ),
    ));
    // A standalone Sync after the generic receiver.
    let report = sync_yaml("report", "300ms", 0, None).replace(
        "spec:\n  jobTemplate:",
        &format!("spec:\n{}  jobTemplate:", after_receiver("ci")),
    );
    ns.kubectl_apply(&report);
    let controller = ControllerProcess::start_with_env(&ns.name, endpoint_env());
    let salesforce = ready_path(&ns, "salesforce").await;
    let ci = ready_path(&ns, "ci").await;
    wait_baseline::<SyncSequence>(&ns, "after-fivetran").await;
    wait_baseline::<Sync>(&ns, "report").await;
    let to = controller.receiver_address().await;
    wait_serving(&to, &salesforce).await;

    // Fivetran: the test event it sends when the webhook is created must get a 2xx; a
    // wrong signature 401; another connector is ignored; a sync_end of the connector counts.
    let test_event = br#"{"event":"test_event","created":"timestamp","connector_type":"_connector_type","connector_id":"_connector_1","group_id":"_destination_1"}"#;
    let a = post(
        &to,
        &salesforce,
        &signed("Fivetran", TOKEN, test_event),
        test_event,
    )
    .await;
    assert_eq!((a.status, a.result().as_str()), (200, "ignored"), "{a:?}");
    let end = fivetran_body("sync_end", "mystified_presiding", "3cdc0a9b", "SUCCESSFUL");
    let a = post(&to, &salesforce, &signed("Fivetran", "wrong", &end), &end).await;
    assert_eq!(a.status, 401, "{a:?}");
    let other = fivetran_body("sync_end", "other_connector", "77", "SUCCESSFUL");
    let a = post(&to, &salesforce, &signed("Fivetran", TOKEN, &other), &other).await;
    assert_eq!(a.result(), "ignored", "{a:?}");
    // A failed sync of the connector is recorded and starts nothing (the sequence follows
    // successes): the run below is the successful sync's.
    let failed = fivetran_body("sync_end", "mystified_presiding", "3cdc0a9a", "FAILURE");
    let a = post(
        &to,
        &salesforce,
        &signed("Fivetran", TOKEN, &failed),
        &failed,
    )
    .await;
    assert_eq!(a.result(), "accepted", "{a:?}");
    let a = post(&to, &salesforce, &signed("Fivetran", TOKEN, &end), &end).await;
    assert_eq!((a.status, a.result().as_str()), (200, "accepted"), "{a:?}");
    let a = post(&to, &salesforce, &signed("Fivetran", TOKEN, &end), &end).await;
    assert_eq!(a.result(), "duplicate", "{a:?}");

    let seq = wait_for_run(&ns, "after-fivetran", 1, DEADLINE).await;
    let book = seq.status.unwrap().book;
    assert_eq!(
        book.last_run_number,
        Some(1),
        "the failed Fivetran sync started nothing"
    );
    let run = &book.runs[0];
    assert_eq!(run.phase, RunPhase::Failed);
    let by = serde_json::json!({
        "kind": "WebhookReceiver", "name": "salesforce",
        "run": "fivetran-mystified_presiding-3cdc0a9b",
    });
    assert_eq!(serde_json::to_value(&run.upstream).unwrap(), by);
    // The alert about the failed run says which delivery started it.
    let body = eventually(DEADLINE, "the RunFailed alert", || async {
        alerts.requests("/json").first().map(|r| r.json())
    })
    .await;
    assert_eq!(body["upstream"], by, "{body}");

    // Generic: a body without an id is a clear 400 and a Warning Event; a signed delivery
    // with an id starts the Sync once.
    let no_id = br#"{"status": "Succeeded"}"#;
    let a = post(&to, &ci, &signed("Generic", "another-secret", no_id), no_id).await;
    assert_eq!(
        (a.status, a.result().as_str()),
        (400, "bad_payload"),
        "{a:?}"
    );
    assert!(a.body.contains("X-Delivery-Id"), "{a:?}");
    let warned = wait_event_notes(&ns, "ci", "BadPayload", DEADLINE).await;
    assert!(warned[0].contains("no delivery id"), "{warned:?}");
    let failed = br#"{"id": "dagster-run-5f29", "status": "Failed"}"#;
    let a = post(&to, &ci, &signed("Generic", "wrong-secret", failed), failed).await;
    assert_eq!(
        (a.status, a.result().as_str()),
        (401, "bad_signature"),
        "{a:?}"
    );
    let a = post(
        &to,
        &ci,
        &signed("Generic", "another-secret", failed),
        failed,
    )
    .await;
    assert_eq!(a.result(), "accepted", "{a:?}");
    let done = br#"{"summary": "dagster asset crm_models materialized"}"#;
    let mut headers = signed("Generic", "another-secret", done);
    headers.push(("X-Delivery-Id", "dagster-run-5f2a".into()));
    let a = post(&to, &ci, &headers, done).await;
    assert_eq!((a.status, a.result().as_str()), (200, "accepted"), "{a:?}");
    let a = post(&to, &ci, &headers, done).await;
    assert_eq!(a.result(), "duplicate", "{a:?}");
    let report = wait_for_run_of::<Sync>(&ns, "report", 1, DEADLINE).await;
    let book = &report.status.unwrap().book;
    assert_eq!(
        book.runs[0].upstream,
        Some(UpstreamRun {
            kind: UpstreamKind::WebhookReceiver,
            name: "ci".into(),
            run: "dagster-run-5f2a".into(),
        })
    );
    assert_eq!(
        book.last_run_number,
        Some(1),
        "the failed delivery started nothing"
    );
}

#[tokio::test]
async fn big_bodies_and_floods_are_refused_and_other_receivers_keep_working() {
    install_crds().await;
    let ns = TestNamespace::new("hooks-flood").await;
    create_token_secret(&ns, "hook", TOKEN).await;
    ns.kubectl_apply(&receiver_yaml("flooded", "Generic", "hook", ""));
    ns.kubectl_apply(&receiver_yaml("quiet", "Generic", "hook", ""));
    // A receiver whose Secret does not exist: not Ready, with a Warning, and deliveries 503.
    ns.kubectl_apply(&receiver_yaml("unready", "Generic", "missing-hook", ""));
    let controller = ControllerProcess::start_with_env(&ns.name, endpoint_env());
    let flooded = ready_path(&ns, "flooded").await;
    let quiet = ready_path(&ns, "quiet").await;
    let to = controller.receiver_address().await;
    wait_serving(&to, &flooded).await;

    let unready = wait_for_object(
        &ns.api::<WebhookReceiver>(),
        "unready",
        DEADLINE,
        "the receiver without a Secret to say so",
        |r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Ready" && c.status == "False" && c.reason == "SecretNotFound"
                })
            })
        },
    )
    .await;
    let warned = wait_event_notes(&ns, "unready", "NotReady", DEADLINE).await;
    assert!(
        warned[0].contains("Secret missing-hook not found"),
        "{warned:?}"
    );
    let path = unready.status.unwrap().webhook_path.unwrap();
    let a = post(&to, &path, &signed("Generic", TOKEN, b"{}"), b"{}").await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(
        !a.body.contains("missing-hook"),
        "the sender learns nothing of Secrets: {a:?}"
    );

    // 1 MiB: 413, before anything is read into memory beyond the limit.
    let big = vec![b' '; 1024 * 1024];
    let a = post(&to, &flooded, &signed("Generic", TOKEN, &big), &big).await;
    assert_eq!((a.status, a.result().as_str()), (413, "too_large"), "{a:?}");

    // 100 requests within a second: beyond the burst (20) and the rate (5/s), 429 with a
    // Retry-After; none of them is lost silently.
    let started = std::time::Instant::now();
    let answers = futures::future::join_all((0..100).map(|i| {
        let (to, path) = (to.clone(), flooded.clone());
        async move {
            let body = format!(r#"{{"id": "flood-{i}"}}"#).into_bytes();
            post(&to, &path, &signed("Generic", TOKEN, &body), &body).await
        }
    }))
    .await;
    let elapsed = started.elapsed();
    let count = |status: u16| answers.iter().filter(|a| a.status == status).count();
    let (accepted, limited) = (count(200), count(429));
    eprintln!("flood: {accepted} accepted, {limited} refused with 429 in {elapsed:?}");
    assert_eq!(accepted + limited, 100, "{answers:?}");
    assert!(
        limited >= 100 - 20 - 5 * (elapsed.as_secs() as usize + 1),
        "{accepted} accepted in {elapsed:?}"
    );
    assert!(
        answers
            .iter()
            .filter(|a| a.status == 429)
            .all(|a| a.retry_after.is_some())
    );
    let recorded = ns
        .api::<WebhookReceiver>()
        .get("flooded")
        .await
        .unwrap()
        .status
        .unwrap()
        .deliveries
        .len();
    assert_eq!(recorded, accepted, "every accepted delivery is recorded");

    // The other receiver and the controller are unaffected.
    let body = br#"{"id": "quiet-1"}"#;
    let a = post(&to, &quiet, &signed("Generic", TOKEN, body), body).await;
    assert_eq!((a.status, a.result().as_str()), (200, "accepted"), "{a:?}");
    let metrics = controller.metrics_address().await;
    let (health, _) = http_get(&metrics, "/healthz").await;
    assert_eq!(health, 200);
    let (_, text) = http_get(&metrics, "/metrics").await;
    let line = format!(
        "syncseq_webhook_deliveries_total{{namespace=\"{}\",name=\"flooded\",outcome=\"rate_limited\"}} {limited}",
        ns.name
    );
    assert!(text.contains(&line), "{line} not in\n{text}");
}
