//! Failure policies, row-level results, retries, timeouts and alerts on the real control plane
//! (issue: failure policies, row-level results, retries, timeouts and alerts).
//!
//! Alerts are delivered to a small HTTP receiver this test starts on 127.0.0.1; the controller
//! runs as a process on the same machine, so it reaches it directly.

use crate::support;

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::fixtures::*;
use support::receiver::{Received, Receiver, create_secret, create_secret_with};
use support::*;
use syncseq::api::{AlertHealth, RunPhase, StepPhase, Sync, SyncSequence};

const RUN_DEADLINE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The events.k8s.io Events about an object: (type, reason, note), oldest first.
async fn events_of(ns: &TestNamespace, name: &str) -> Vec<(String, String, String)> {
    let mut list = ns
        .api::<K8sEvent>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    list.into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until an Event with `reason` about `name` exists; returns the notes of all such.
async fn wait_for_events(
    ns: &TestNamespace,
    name: &str,
    reason: &str,
    count: usize,
) -> Vec<(String, String)> {
    eventually(
        Duration::from_secs(30),
        &format!("{count} {reason} Event(s) on {name}"),
        || async {
            let found: Vec<(String, String)> = events_of(ns, name)
                .await
                .into_iter()
                .filter(|(_, r, _)| r == reason)
                .map(|(t, _, n)| (t, n))
                .collect();
            (found.len() >= count).then_some(found)
        },
    )
    .await
}

/// Sets the exit code the Sync's simulated container ends with, for Jobs created from now on.
async fn set_exit_code(ns: &TestNamespace, sync: &str, code: i32) {
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"metadata": {
        "annotations": {"sim.syncseq.dev/exit-code": code.to_string()}
    }}}}}});
    ns.api::<Sync>()
        .patch(sync, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch sync");
}

async fn run_to_end(ns: &TestNamespace, seq: &str, run: i64) -> SyncSequence {
    trigger(ns, seq, &format!("run-{run}")).await;
    wait_for_run(ns, seq, run, RUN_DEADLINE).await
}

fn condition(seq: &SyncSequence, type_: &str) -> Option<(String, String, String)> {
    seq.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn jobs_by_attempt(jobs: &[Job]) -> Vec<String> {
    let mut attempts: Vec<String> = jobs
        .iter()
        .map(|j| j.metadata.labels.as_ref().unwrap()["syncseq.dev/attempt"].clone())
        .collect();
    attempts.sort();
    attempts
}

// ---------------------------------------------------------------------------------------------
// 1. Rejected rows.

#[tokio::test]
async fn rejected_rows_within_a_count_continue_and_over_a_percentage_stop() {
    install_crds().await;
    let ns = TestNamespace::new("fp-rows").await;
    let rows = r#"{"rowsSynced":950,"rowsRejected":50}"#;
    for s in ["accounts-a", "accounts-b"] {
        ns.kubectl_apply(&sync_yaml(s, "300ms", 0, Some(rows)));
    }
    for s in ["contacts-a", "contacts-b"] {
        ns.kubectl_apply(&sync_yaml(s, "300ms", 0, None));
    }
    ns.kubectl_apply(&sequence_yaml(
        "by-count",
        &[
            ("accounts-a", "    rejectedRows: {max: 100}\n"),
            ("contacts-a", ""),
        ],
        "",
    ));
    ns.kubectl_apply(&sequence_yaml(
        "by-share",
        &[
            ("accounts-b", "    rejectedRows: {maxPercent: 1}\n"),
            ("contacts-b", ""),
        ],
        "",
    ));
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "by-count", "1").await;
    trigger(&ns, "by-share", "1").await;

    let seq = wait_for_run(&ns, "by-count", 1, RUN_DEADLINE).await;
    let st = seq.status.unwrap();
    assert_eq!(
        st.book.runs[0].phase,
        RunPhase::Succeeded,
        "{:?}",
        st.book.runs[0]
    );
    let run = st.last_run.unwrap();
    let steps: Vec<_> = run
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.phase, s.rows_synced, s.rows_rejected))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("accounts-a", StepPhase::Succeeded, Some(950), Some(50)),
            ("contacts-a", StepPhase::Succeeded, None, None),
        ]
    );
    // The hand-off is one Event naming both steps; the last step's success is told with the run's.
    let ok = wait_for_events(&ns, "by-count", "StepSucceeded", 1).await;
    assert!(
        ok.iter()
            .any(|(_, n)| n.contains("step accounts-a succeeded")
                && n.contains("950 rows synced, 50 rejected (within the limit of 100)")
                && n.contains("; step contacts-a started: job ")),
        "{ok:?}"
    );
    let done = wait_for_events(&ns, "by-count", "RunSucceeded", 1).await;
    assert!(
        done.iter()
            .any(|(_, n)| n.starts_with("step contacts-a succeeded")
                && n.ends_with("; run 1 succeeded")),
        "{done:?}"
    );

    let seq = wait_for_run(&ns, "by-share", 1, RUN_DEADLINE).await;
    let st = seq.status.unwrap();
    assert_eq!(st.book.runs[0].phase, RunPhase::Failed);
    assert_eq!(st.book.runs[0].failed_step.as_deref(), Some("accounts-b"));
    let run = st.last_run.unwrap();
    assert_eq!(run.steps[0].phase, StepPhase::Failed);
    assert_eq!(
        run.steps[0].message.as_deref(),
        Some("50 of 1000 rows rejected (5.00%), more than the limit of 1%")
    );
    assert_eq!(
        (run.steps[0].rows_synced, run.steps[0].rows_rejected),
        (Some(950), Some(50))
    );
    assert_eq!(run.steps[1].phase, StepPhase::Skipped);
    assert_eq!(
        run.steps[1].message.as_deref(),
        Some("skipped: step accounts-b failed")
    );
    let breach = wait_for_events(&ns, "by-share", "RejectedRowsExceeded", 1).await;
    assert_eq!(breach[0].0, "Warning");
    assert_eq!(
        breach[0].1,
        "step accounts-b: 50 of 1000 rows rejected (5.00%), more than the limit of 1%; stopping the run"
    );
    let jobs = ns.api::<Job>().list(&ListParams::default()).await.unwrap();
    assert!(
        !jobs.items.iter().any(|j| j
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("by-share-1-contacts-b")),
        "the step after a stop must never get a Job"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Retries.

#[tokio::test]
async fn a_step_that_fails_twice_then_succeeds_within_two_retries() {
    install_crds().await;
    let ns = TestNamespace::new("fp-retry").await;
    ns.kubectl_apply(&sync_yaml(
        "flaky",
        "300ms",
        1,
        Some(r#"{"message":"CRM API said 503"}"#),
    ));
    ns.kubectl_apply(&sequence_yaml(
        "retry",
        &[("flaky", "    retries: 2\n    retryDelaySeconds: 3\n")],
        "",
    ));
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "retry", "1").await;

    // Attempts 1 and 2 fail; the next attempt starts 6 s after the second failure, so there is
    // ample time to make the Sync succeed before attempt 3's Job is built.
    eventually(RUN_DEADLINE, "two failed attempts", || async {
        let finished = log
            .events()
            .iter()
            .filter(|e| matches!(e, JobEvent::Finished(_)))
            .count();
        (finished >= 2).then_some(())
    })
    .await;
    assert_eq!(log.created().len(), 2, "{:?}", log.events());
    set_exit_code(&ns, "flaky", 0).await;

    let seq = wait_for_run(&ns, "retry", 1, RUN_DEADLINE).await;
    let st = seq.status.unwrap();
    assert_eq!(
        st.book.runs[0].phase,
        RunPhase::Succeeded,
        "{:?}",
        st.book.runs[0]
    );
    let step = &st.last_run.as_deref().unwrap().steps[0];
    assert_eq!(step.phase, StepPhase::Succeeded);
    assert_eq!(step.attempts, 3);
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(jobs_by_attempt(&jobs), vec!["1", "2", "3"]);
    assert_eq!(
        step.job_name.as_deref(),
        log.created().last().map(String::as_str)
    );

    let retries = wait_for_events(&ns, "retry", "StepRetrying", 2).await;
    // Distinct notes: a reconcile replayed on a stale cached sequence can repeat an Event.
    let mut notes: Vec<&str> = retries.iter().map(|(_, n)| n.as_str()).collect();
    notes.dedup();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].contains(
            "attempt 1 failed: CRM API said 503 (exit code 1); retrying in 3s (attempt 2 of 3)"
        ),
        "{notes:?}"
    );
    assert!(
        notes[1].contains(
            "attempt 2 failed: CRM API said 503 (exit code 1); retrying in 6s (attempt 3 of 3)"
        ),
        "{notes:?}"
    );
    assert!(retries.iter().all(|(t, _)| t == "Warning"));
}

#[tokio::test]
async fn a_step_that_keeps_failing_fails_the_run_after_one_retry() {
    install_crds().await;
    let ns = TestNamespace::new("fp-retry1").await;
    ns.kubectl_apply(&sync_yaml("broken", "300ms", 4, None));
    ns.kubectl_apply(&sequence_yaml(
        "retry",
        &[("broken", "    retries: 1\n    retryDelaySeconds: 1\n")],
        "",
    ));
    let _controller = ControllerProcess::start(&ns.name);
    let seq = run_to_end(&ns, "retry", 1).await;
    let st = seq.status.unwrap();
    assert_eq!(st.book.runs[0].phase, RunPhase::Failed);
    let step = &st.last_run.as_deref().unwrap().steps[0];
    assert_eq!(step.phase, StepPhase::Failed);
    assert_eq!(step.attempts, 2);
    assert!(
        step.message.as_deref().unwrap().contains("exit code 4"),
        "{step:?}"
    );
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(jobs_by_attempt(&jobs), vec!["1", "2"]);
    let retried = wait_for_events(&ns, "retry", "StepRetrying", 1).await;
    // "now" when the controller reconciled the failure only after the 1 s had passed.
    assert!(
        [
            "retrying in 1s (attempt 2 of 2)",
            "retrying now (attempt 2 of 2)"
        ]
        .iter()
        .any(|want| retried[0].1.contains(want)),
        "{retried:?}"
    );
    let failed = wait_for_events(&ns, "retry", "StepFailed", 1).await;
    assert_eq!(failed[0].0, "Warning");
    assert!(failed[0].1.contains("exit code 4"), "{failed:?}");
    let retry_notes: std::collections::BTreeSet<String> = events_of(&ns, "retry")
        .await
        .into_iter()
        .filter(|(_, r, _)| r == "StepRetrying")
        .map(|(_, _, n)| n)
        .collect();
    assert_eq!(retry_notes.len(), 1, "one retry: {retry_notes:?}");
}

// ---------------------------------------------------------------------------------------------
// 3. Timeouts.

#[tokio::test]
async fn a_step_that_runs_past_its_timeout_is_reported_as_timed_out() {
    install_crds().await;
    let ns = TestNamespace::new("fp-timeout").await;
    ns.kubectl_apply(&sync_yaml("slow", "1h", 0, None));
    ns.kubectl_apply(&sync_yaml("after", "300ms", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "deadline",
        &[("slow", "    timeoutSeconds: 3\n"), ("after", "")],
        "",
    ));
    let _controller = ControllerProcess::start(&ns.name);
    let started = Instant::now();
    let seq = run_to_end(&ns, "deadline", 1).await;
    assert!(started.elapsed() >= Duration::from_secs(3));
    let st = seq.status.unwrap();
    assert_eq!(st.book.runs[0].phase, RunPhase::Failed);
    let run = st.last_run.unwrap();
    assert_eq!(run.steps[0].phase, StepPhase::Failed);
    let message = run.steps[0].message.clone().unwrap();
    assert!(message.starts_with("timed out after 3s"), "{message}");
    assert_eq!(run.steps[1].phase, StepPhase::Skipped);
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].spec.as_ref().unwrap().active_deadline_seconds,
        Some(3)
    );
    let timed_out = wait_for_events(&ns, "deadline", "StepTimedOut", 1).await;
    assert_eq!(timed_out[0].0, "Warning");
    assert!(
        timed_out[0]
            .1
            .starts_with("step slow failed: timed out after 3s"),
        "{timed_out:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Alerts: once per change of state, in both formats.

#[tokio::test]
async fn three_failed_runs_notify_once_and_the_next_success_recovers_once() {
    install_crds().await;
    let ns = TestNamespace::new("fp-alerts").await;
    let receiver = Receiver::start().await;
    create_secret(
        &ns,
        "slack-hook",
        &receiver.url("/slack/T000/B000/tok-slack"),
    )
    .await;
    create_secret(&ns, "json-hook", &receiver.url("/json/tok-json")).await;
    create_secret(&ns, "steps-hook", &receiver.url("/steps/tok-steps")).await;
    ns.kubectl_apply(&sync_yaml(
        "load",
        "300ms",
        2,
        Some(r#"{"rowsSynced":10,"rowsRejected":1,"message":"CRM API said 503 <retry later> & again"}"#),
    ));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("load", "")],
        &alerts_yaml(&[
            (
                "oncall-slack",
                "RunFailed, Recovered",
                "slack-hook",
                "Slack",
            ),
            ("oncall-json", "RunFailed, Recovered", "json-hook", "JSON"),
            ("steps", "StepFailed", "steps-hook", "JSON"),
        ]),
    ));
    let controller = ControllerProcess::start(&ns.name);

    for run in 1..=3 {
        let seq = run_to_end(&ns, "crm", run).await;
        assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
        if run == 1 {
            eventually(
                Duration::from_secs(20),
                "the first failure notifications",
                || async { (receiver.requests("/").len() >= 3).then_some(()) },
            )
            .await;
        }
    }
    let seq = ns.api::<SyncSequence>().get("crm").await.unwrap();
    let states = seq.status.as_ref().unwrap().alert_states.clone();
    let slack_state = states.iter().find(|s| s.name == "oncall-slack").unwrap();
    assert_eq!(slack_state.state, AlertHealth::Failing);
    assert!(slack_state.run_failed);
    assert_eq!(slack_state.failing_since_run, Some(1));
    let steps_state = states.iter().find(|s| s.name == "steps").unwrap();
    assert_eq!(steps_state.failed_steps, vec!["load".to_string()]);

    set_exit_code(&ns, "load", 0).await;
    let seq = run_to_end(&ns, "crm", 4).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    eventually(
        Duration::from_secs(20),
        "the recovery notifications",
        || async {
            (receiver.requests("/slack").len() >= 2 && receiver.requests("/json").len() >= 2)
                .then_some(())
        },
    )
    .await;
    // Anything extra would have been sent right after its run; give it a moment anyway.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let slack = receiver.requests("/slack");
    let json = receiver.requests("/json");
    let steps = receiver.requests("/steps");
    assert_eq!(slack.len(), 2, "{slack:?}");
    assert_eq!(json.len(), 2, "{json:?}");
    assert_eq!(
        steps.len(),
        1,
        "one StepFailed for a step that kept failing: {steps:?}"
    );
    for r in slack.iter().chain(&json).chain(&steps) {
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }
    // The deliveries, the failed step and the rejected rows in /metrics.
    let (_, metrics) = http_get(&controller.metrics_address().await, "/metrics").await;
    let sample = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in /metrics:\n{metrics}"))
    };
    assert_eq!(
        sample("syncseq_alert_deliveries_total{provider=\"Slack\",result=\"delivered\"}"),
        2.0
    );
    assert_eq!(
        sample("syncseq_alert_deliveries_total{provider=\"JSON\",result=\"delivered\"}"),
        3.0
    );
    let step = format!(
        "{{kind=\"SyncSequence\",namespace=\"{}\",name=\"crm\",step=\"load\"}}",
        ns.name
    );
    assert_eq!(sample(&format!("syncseq_step_failures_total{step}")), 3.0);
    // Each of the four runs reported a rejected row, the successful one too.
    assert_eq!(
        sample(&format!("syncseq_step_rejected_rows_total{step}")),
        4.0
    );

    // JSON format: the documented plain object.
    let failed = json[0].json();
    assert_eq!(failed["source"], "syncseq");
    assert_eq!(failed["alert"], "oncall-json");
    assert_eq!(failed["kind"], "RunFailed");
    assert_eq!(failed["namespace"], ns.name.as_str());
    assert_eq!(failed["sequence"], "crm");
    assert_eq!(failed["run"], 1);
    assert_eq!(failed["trigger"], "Manual");
    assert_eq!(failed["phase"], "Failed");
    assert_eq!(failed["step"], "load");
    assert_eq!(failed["sync"], "load");
    assert_eq!(failed["rows"], json!({"synced": 10, "rejected": 1}));
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("CRM API said 503 <retry later> & again")
            && message.contains("exit code 2"),
        "{message}"
    );
    assert!(
        failed["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/crm: run 1 failed", ns.name))
    );
    assert!(
        failed["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    assert_eq!(failed["failingSinceRun"], Value::Null);
    let recovered = json[1].json();
    assert_eq!(recovered["kind"], "Recovered");
    assert_eq!(recovered["run"], 4);
    assert_eq!(recovered["phase"], "Succeeded");
    assert_eq!(recovered["failingSinceRun"], 1);
    assert_eq!(recovered["step"], Value::Null);

    // Slack format: text plus blocks, text escaped.
    let failed = slack[0].json();
    let text = failed["text"].as_str().unwrap();
    assert!(text.contains("run 1 failed"), "{text}");
    assert!(text.contains("&lt;retry later&gt; &amp; again"), "{text}");
    let blocks = failed["blocks"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["header", "section", "section", "context"]);
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], ":red_circle: crm: run 1 failed");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    let section = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(
        section.starts_with("Run *1* (manual request) failed at step *load*."),
        "{section}"
    );
    assert!(
        section.contains("```step load failed: CRM API said 503 &lt;retry later&gt; &amp; again"),
        "{section}"
    );
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&format!("*Sequence*\n{}/crm", ns.name).as_str()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"*Rows*\n10 synced, 1 rejected"),
        "{fields:?}"
    );
    let recovered = slack[1].json();
    assert_eq!(
        recovered["blocks"][0]["text"]["text"],
        ":large_green_circle: crm: recovered"
    );

    let step_failed = steps[0].json();
    assert_eq!(step_failed["kind"], "StepFailed");
    assert_eq!(step_failed["run"], 1);
    assert_eq!(step_failed["step"], "load");

    let seq = ns.api::<SyncSequence>().get("crm").await.unwrap();
    let st = seq.status.as_ref().unwrap();
    assert!(
        st.alert_states
            .iter()
            .filter(|s| s.name.starts_with("oncall"))
            .all(|s| s.state == AlertHealth::Healthy && !s.run_failed),
        "{:?}",
        st.alert_states
    );
    // The step-only alert has no Recovered in `when`: it clears silently.
    assert!(st.alert_states.iter().all(|s| s.failed_steps.is_empty()));
    let delivered = wait_for_object(
        &ns.api::<SyncSequence>(),
        "crm",
        Duration::from_secs(20),
        "AlertsDelivered=True",
        |s| condition(s, "AlertsDelivered").is_some_and(|c| c.0 == "True"),
    )
    .await;
    assert_eq!(
        condition(&delivered, "AlertsDelivered").unwrap().1,
        "Delivered"
    );
    let sent = wait_for_events(&ns, "crm", "AlertSent", 5).await;
    assert_eq!(sent.len(), 5, "{sent:?}");
}

// ---------------------------------------------------------------------------------------------
// 5. Delivery: retries, never blocking, and failures shown on the sequence.

#[tokio::test]
async fn a_failing_receiver_gets_the_notification_once_and_reconciling_goes_on_meanwhile() {
    install_crds().await;
    let ns = TestNamespace::new("fp-deliver").await;
    let receiver = Receiver::start().await;
    receiver.fail_next(2);
    // Each answer takes 1.5 s: with the 1 s and 2 s backoffs, delivery takes about 7.5 s.
    receiver.delay(Duration::from_millis(1500));
    let token = "tok-Zq8sECRETvalue";
    create_secret(&ns, "hook", &receiver.url(&format!("/hooks/{token}"))).await;
    ns.kubectl_apply(&sync_yaml(
        "load",
        "300ms",
        3,
        Some("connection reset by CRM"),
    ));
    ns.kubectl_apply(&sync_yaml("other", "300ms", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("load", "")],
        &alerts_yaml(&[("oncall", "RunFailed, Recovered", "hook", "JSON")]),
    ));
    ns.kubectl_apply(&sequence_yaml("other", &[("other", "")], ""));
    let controller = ControllerProcess::start(&ns.name);

    let seq = run_to_end(&ns, "crm", 1).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
    // While the receiver answers 500 and the controller backs off, another sequence runs.
    trigger(&ns, "other", "go").await;
    let other = wait_for_run(&ns, "other", 1, RUN_DEADLINE).await;
    let other_done = Instant::now();
    assert_eq!(last_phase(&other), Some(RunPhase::Succeeded));

    let delivered = eventually(
        Duration::from_secs(40),
        "a 200-answered delivery",
        || async {
            receiver
                .requests("/hooks")
                .into_iter()
                .find(|r| r.status == 200)
        },
    )
    .await;
    assert!(
        other_done < delivered.answered_at,
        "the other sequence finished only after the delivery: reconciling was blocked"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = receiver.requests("/hooks");
    let answers: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(answers, vec![500, 500, 200], "three attempts, one delivery");
    assert!(requests.iter().all(|r| r.body == requests[0].body));
    assert_eq!(requests[0].json()["kind"], "RunFailed");

    let sent = wait_for_events(&ns, "crm", "AlertSent", 1).await;
    assert!(
        sent[0]
            .1
            .contains("alert oncall: RunFailed notification for run 1 delivered (attempt 3)"),
        "{sent:?}"
    );
    let seq = wait_for_object(
        &ns.api::<SyncSequence>(),
        "crm",
        Duration::from_secs(20),
        "AlertsDelivered=True",
        |s| condition(s, "AlertsDelivered").is_some_and(|c| c.0 == "True"),
    )
    .await;

    // The URL (and its token) appears nowhere: not in status, Events or the controller's log.
    let status = serde_json::to_string(&seq.status).unwrap();
    assert!(!status.contains(token));
    let events = events_of(&ns, "crm").await;
    assert!(
        events
            .iter()
            .all(|(_, _, n)| !n.contains(token) && !n.contains("127.0.0.1"))
    );
    let log = std::fs::read_to_string(controller.log_path()).unwrap();
    assert!(
        log.contains("alert notification delivered"),
        "the delivery is logged"
    );
    assert!(!log.contains(token), "the webhook URL leaked into the log");
}

#[tokio::test]
async fn a_missing_secret_shows_on_the_sequence_until_a_later_delivery_succeeds() {
    install_crds().await;
    let ns = TestNamespace::new("fp-nosecret").await;
    let receiver = Receiver::start().await;
    ns.kubectl_apply(&sync_yaml("load", "300ms", 1, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("load", "")],
        &alerts_yaml(&[("oncall", "RunFailed, Recovered", "absent", "Slack")]),
    ));
    let _controller = ControllerProcess::start(&ns.name);
    let api = ns.api::<SyncSequence>();

    run_to_end(&ns, "crm", 1).await;
    let seq = wait_for_object(
        &api,
        "crm",
        Duration::from_secs(60),
        "AlertsDelivered=False",
        |s| condition(s, "AlertsDelivered").is_some_and(|c| c.0 == "False"),
    )
    .await;
    let (_, reason, message) = condition(&seq, "AlertsDelivered").unwrap();
    assert_eq!(reason, "SecretNotFound");
    assert!(
        message.contains("alert oncall (Secret absent, key url)"),
        "{message}"
    );
    assert!(
        message.contains("not delivered yet after 1 attempt (retrying until the receiver accepts it): Secret absent not found"),
        "{message}"
    );
    let pending = &seq.status.as_ref().unwrap().pending_alerts;
    assert_eq!(pending.len(), 1, "the notification waits in the outbox");
    let warning = wait_for_events(&ns, "crm", "AlertDeliveryFailed", 1).await;
    assert_eq!(warning[0].0, "Warning");
    assert!(
        warning[0].1.contains("Secret absent not found"),
        "{warning:?}"
    );

    // The reconciler's own status writes leave the condition alone.
    let seq = run_to_end(&ns, "crm", 2).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
    assert_eq!(
        condition(&seq, "AlertsDelivered").map(|c| c.0),
        Some("False".to_string()),
        "{:?}",
        seq.status
    );
    let fields = kubectl(
        &[
            "get",
            "syncsequence",
            "crm",
            "-n",
            &ns.name,
            "--show-managed-fields",
            "-o",
            "json",
        ],
        None,
    );
    let managed: Value = serde_json::from_slice(&fields.stdout).unwrap();
    let managers: Vec<&str> = managed["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"syncseq-alerts"), "{managers:?}");

    // Fixed: the failure still pending is delivered, once, and the condition turns True; the
    // next run's recovery follows it.
    create_secret(&ns, "absent", &receiver.url("/late")).await;
    eventually(
        Duration::from_secs(90),
        "the pending failure delivered",
        || async { (!receiver.requests("/late").is_empty()).then_some(()) },
    )
    .await;
    let seq = wait_for_object(
        &api,
        "crm",
        Duration::from_secs(30),
        "AlertsDelivered=True and an empty outbox",
        |s| {
            condition(s, "AlertsDelivered").is_some_and(|c| c.0 == "True")
                && s.status
                    .as_ref()
                    .is_some_and(|st| st.pending_alerts.is_empty())
        },
    )
    .await;
    assert_eq!(condition(&seq, "AlertsDelivered").unwrap().1, "Delivered");
    set_exit_code(&ns, "load", 0).await;
    let seq = run_to_end(&ns, "crm", 3).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    eventually(
        Duration::from_secs(30),
        "the recovery delivered",
        || async { (receiver.requests("/late").len() >= 2).then_some(()) },
    )
    .await;
    let late = receiver.requests("/late");
    let texts: Vec<String> = late
        .iter()
        .map(|r| {
            r.json()["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            ":red_circle: crm: run 1 failed",
            ":large_green_circle: crm: recovered"
        ],
        "each once, in order"
    );
}

/// A receiver that is down for a long outage (`SYNCSEQ_TEST_OUTAGE_SECONDS`, 60 s in CI; `make
/// soak` runs it at 600), with the controller restarted in the middle of it: the notification
/// arrives once after the receiver recovers, with the same idempotency key on every attempt.
#[tokio::test]
async fn a_notification_survives_a_receiver_outage_and_a_controller_restart() {
    let outage = std::env::var("SYNCSEQ_TEST_OUTAGE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_secs);
    install_crds().await;
    let ns = TestNamespace::new("fp-outage").await;
    let receiver = Receiver::start().await;
    receiver.down_for(outage);
    ns.kubectl_apply(&sync_yaml("load", "300ms", 1, None));
    create_secret(&ns, "hook", &receiver.url("/outage")).await;
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("load", "")],
        &alerts_yaml(&[("oncall", "RunFailed", "hook", "JSON")]),
    ));
    let mut controller = ControllerProcess::start(&ns.name);
    run_to_end(&ns, "crm", 1).await;
    eventually(
        Duration::from_secs(30),
        "a first refused attempt",
        || async { (!receiver.requests("/outage").is_empty()).then_some(()) },
    )
    .await;
    // Halfway through the outage the controller dies without a goodbye and comes back.
    let restart_at = receiver.requests("/outage")[0].answered_at + outage / 2;
    eventually(outage, "halfway through the outage", || async {
        (Instant::now() >= restart_at).then_some(())
    })
    .await;
    controller.restart();
    let seq = eventually(
        outage + Duration::from_secs(120),
        "the notification delivered and the outbox empty",
        || async {
            let seq = ns.api::<SyncSequence>().get("crm").await.ok()?;
            let st = seq.status.as_ref()?;
            let delivered = receiver.requests("/outage").iter().any(|r| r.status == 200);
            (delivered && st.pending_alerts.is_empty()).then_some(seq)
        },
    )
    .await;
    let requests = receiver.requests("/outage");
    let accepted: Vec<&Received> = requests.iter().filter(|r| r.status == 200).collect();
    assert_eq!(accepted.len(), 1, "delivered once: {requests:#?}");
    let keys: std::collections::BTreeSet<Option<String>> =
        requests.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 1, "one key on every attempt: {keys:?}");
    let key = keys
        .into_iter()
        .next()
        .flatten()
        .expect("an Idempotency-Key header");
    assert_eq!(accepted[0].json()["idempotencyKey"], key.as_str());
    let refused = requests.iter().filter(|r| r.status == 503).count();
    assert!(refused >= 2, "retried during the outage: {refused}");
    assert_eq!(
        condition(&seq, "AlertsDelivered").map(|c| c.0),
        Some("True".into())
    );
    // Nothing is sent again afterwards, across another restart.
    controller.restart();
    run_to_end(&ns, "crm", 2).await;
    assert_eq!(
        receiver
            .requests("/outage")
            .iter()
            .filter(|r| r.status == 200)
            .count(),
        1
    );
    eprintln!("outage {outage:?}: {refused} refused attempts, then one delivery");
}

/// Teams, Google Chat, PagerDuty and signed JSON, each checked by the receiver for what its
/// provider requires: a failed run notifies each, the next success recovers each, PagerDuty's
/// recovery resolves the incident its failure triggered (one dedup key, the routing key from
/// its own Secret), and every signed delivery verifies against the shared secret.
#[tokio::test]
async fn each_provider_gets_the_body_it_documents_and_pagerduty_resolves_what_it_triggered() {
    install_crds().await;
    let ns = TestNamespace::new("fp-providers").await;
    let receiver = Receiver::start().await;
    create_secret(&ns, "teams-hook", &receiver.url("/teams/workflow-tok")).await;
    create_secret(&ns, "chat-hook", &receiver.url("/chat/space?key=tok")).await;
    create_secret_with(
        &ns,
        "pd-hook",
        &[
            ("url", &receiver.url("/pagerduty/v2/enqueue")),
            ("routingKey", "R0UT1NGKEY0000000000000000000000"),
        ],
    )
    .await;
    let shared_secret = "s3cret-shared-with-the-receiver";
    create_secret_with(
        &ns,
        "signed-hook",
        &[("url", &receiver.url("/signed")), ("secret", shared_secret)],
    )
    .await;
    ns.kubectl_apply(&sync_yaml("load", "300ms", 2, None));
    let alerts = "  alerts:\n\
        \x20 - {name: teams, when: [RunFailed, Recovered], webhook: {urlSecretRef: {name: teams-hook, key: url}, format: Teams}}\n\
        \x20 - {name: chat, when: [RunFailed, Recovered], webhook: {urlSecretRef: {name: chat-hook, key: url}, format: GoogleChat}}\n\
        \x20 - {name: pd, when: [RunFailed, Recovered], webhook: {urlSecretRef: {name: pd-hook, key: url}, format: PagerDuty, routingKeySecretRef: {name: pd-hook, key: routingKey}}}\n\
        \x20 - {name: signed, when: [RunFailed, Recovered], webhook: {urlSecretRef: {name: signed-hook, key: url}, signingSecretRef: {name: signed-hook, key: secret}}}\n";
    ns.kubectl_apply(&sequence_yaml("crm", &[("load", "")], alerts));
    let _controller = ControllerProcess::start(&ns.name);

    let seq = run_to_end(&ns, "crm", 1).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
    set_exit_code(&ns, "load", 0).await;
    let seq = run_to_end(&ns, "crm", 2).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    let all = eventually(
        Duration::from_secs(30),
        "a failure and a recovery for each of the four alerts",
        || async {
            let all = receiver.requests("/");
            (all.len() >= 8).then_some(all)
        },
    )
    .await;
    assert_eq!(all.len(), 8, "{all:?}");
    let of = |prefix: &str| -> Vec<Value> {
        all.iter()
            .filter(|r| r.path.starts_with(prefix))
            .map(Received::json)
            .collect()
    };

    let teams = of("/teams");
    assert_eq!(teams.len(), 2);
    for (body, title) in teams.iter().zip(["crm: run 1 failed", "crm: recovered"]) {
        assert_eq!(body["type"], "message", "{body}");
        let attachment = &body["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert!(card["version"].is_string());
        assert_eq!(card["body"][0]["type"], "TextBlock");
        assert_eq!(card["body"][0]["text"], title);
    }

    let chat = of("/chat");
    assert_eq!(chat.len(), 2);
    assert!(
        chat[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("*crm: run 1 failed*")
    );
    assert!(
        chat[1]["text"]
            .as_str()
            .unwrap()
            .starts_with("*crm: recovered*")
    );

    let pd = of("/pagerduty");
    assert_eq!(pd.len(), 2);
    assert_eq!(pd[0]["event_action"], "trigger");
    assert_eq!(pd[1]["event_action"], "resolve");
    for event in &pd {
        assert_eq!(event["routing_key"], "R0UT1NGKEY0000000000000000000000");
        assert_eq!(event["dedup_key"], pd[0]["dedup_key"], "{event}");
    }
    let payload = &pd[0]["payload"];
    for field in ["summary", "source", "severity", "timestamp"] {
        assert!(payload[field].is_string(), "payload.{field} in {}", pd[0]);
    }
    assert_eq!(payload["severity"], "error");
    assert_eq!(payload["source"], format!("{}/crm", ns.name));

    let signed: Vec<&Received> = all.iter().filter(|r| r.path == "/signed").collect();
    assert_eq!(signed.len(), 2);
    for r in signed {
        let timestamp = r.header("x-syncseq-timestamp").expect("a timestamp header");
        let age = jiff::Timestamp::now().as_second() - timestamp.parse::<i64>().unwrap();
        assert!(
            (0..120).contains(&age),
            "timestamp {timestamp} is {age}s old"
        );
        let mut signed_text = format!("{timestamp}.").into_bytes();
        signed_text.extend_from_slice(&r.body);
        let expected = format!(
            "sha256={}",
            syncseq::sign(shared_secret.as_bytes(), &signed_text)
        );
        assert_eq!(r.header("x-syncseq-signature"), Some(expected));
        assert_eq!(r.json()["source"], "syncseq");
    }
    // Unsigned formats carry no signature.
    let unsigned = all.iter().find(|r| r.path.starts_with("/teams")).unwrap();
    assert_eq!(unsigned.header("x-syncseq-signature"), None);
}

/// Behind an egress proxy with a private CA: with HTTPS_PROXY set, an HTTPS webhook goes
/// through the proxy as a CONNECT tunnel, TLS inside it verifies against the CA bundle
/// (`SYNCSEQ_WEBHOOK_CA_BUNDLE`), and the API server (in NO_PROXY) is still reached directly.
#[tokio::test]
async fn webhooks_go_through_the_https_proxy_and_trust_the_ca_bundle() {
    install_crds().await;
    let ns = TestNamespace::new("fp-proxy").await;
    let ca = support::tls::TestCa::new(&ns.name);
    let receiver = Receiver::start_tls(&ca).await;
    let proxy = support::tunnel::ConnectProxy::start().await;
    create_secret(&ns, "proxied-hook", &receiver.https_url("/hook/tok")).await;
    ns.kubectl_apply(&sync_yaml("load", "300ms", 2, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("load", "")],
        &alerts_yaml(&[("oncall", "RunFailed", "proxied-hook", "JSON")]),
    ));
    let ca_path = ca.ca_path().display().to_string();
    let _controller = ControllerProcess::start_with_env(
        &ns.name,
        vec![
            ("HTTPS_PROXY".into(), proxy.url()),
            ("NO_PROXY".into(), "127.0.0.1".into()),
            ("SYNCSEQ_WEBHOOK_CA_BUNDLE".into(), ca_path),
        ],
    );
    let seq = run_to_end(&ns, "crm", 1).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
    let delivered = eventually(
        Duration::from_secs(30),
        "the notification through the proxy",
        || async { receiver.requests("/hook").into_iter().next() },
    )
    .await;
    assert_eq!(delivered.json()["kind"], "RunFailed");
    assert_eq!(
        proxy.targets(),
        vec![format!("localhost:{}", receiver.port)],
        "the webhook, and only the webhook, went through the proxy"
    );
    wait_for_object(
        &ns.api::<SyncSequence>(),
        "crm",
        Duration::from_secs(20),
        "AlertsDelivered True",
        |s| condition(s, "AlertsDelivered").is_some_and(|c| c.0 == "True"),
    )
    .await;
}

/// A webhook URL is a tenant's input: by default it may not reach loopback, link-local (cloud
/// metadata) or unspecified addresses, whether written as an address or as a name that
/// resolves to one. Each refusal is final, says why, and reaches the condition and an Event.
#[tokio::test]
async fn webhooks_to_loopback_or_metadata_addresses_are_refused_by_default() {
    install_crds().await;
    let ns = TestNamespace::new("fp-egress").await;
    let receiver = Receiver::start().await;
    ns.kubectl_apply(&sync_yaml("load", "300ms", 1, None));
    let hooks = [
        ("v4", receiver.url("/v4/tok")),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data".to_string(),
        ),
        ("v6", "http://[::1]:9/x".to_string()),
        (
            "named",
            format!("http://localhost:{}/named/tok", receiver.port),
        ),
    ];
    for (name, url) in &hooks {
        create_secret(&ns, &format!("{name}-hook"), url).await;
    }
    let alerts: Vec<(String, String)> = hooks
        .iter()
        .map(|(name, _)| (name.to_string(), format!("{name}-hook")))
        .collect();
    let alerts: Vec<(&str, &str, &str, &str)> = alerts
        .iter()
        .map(|(a, s)| (a.as_str(), "RunFailed", s.as_str(), "JSON"))
        .collect();
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("load", "")],
        &alerts_yaml(&alerts),
    ));
    // The harness allows 127.0.0.1 for the other tests' receiver; this controller has the default.
    let _controller = ControllerProcess::start_with_env(
        &ns.name,
        vec![("SYNCSEQ_WEBHOOK_ALLOW".into(), String::new())],
    );
    run_to_end(&ns, "crm", 1).await;

    let refused = wait_for_events(&ns, "crm", "AlertDeliveryFailed", hooks.len()).await;
    for (name, kind) in [
        ("v4", "127.0.0.1, a loopback"),
        ("metadata", "169.254.169.254, a link-local"),
        ("v6", "::1, a loopback"),
        ("named", "a loopback"),
    ] {
        let note = refused
            .iter()
            .map(|(_, n)| n)
            .find(|n| n.starts_with(&format!("alert {name} ")))
            .unwrap_or_else(|| panic!("no refusal for {name}: {refused:?}"));
        assert!(
            note.contains(kind)
                && note.contains("after 1 attempt:")
                && note.contains("(not retried)"),
            "{name}: {note}"
        );
        assert!(!note.contains("tok"), "the URL leaked: {note}");
    }
    let seq = wait_for_object(
        &ns.api::<SyncSequence>(),
        "crm",
        Duration::from_secs(30),
        "AlertsDelivered=False",
        |s| condition(s, "AlertsDelivered").is_some_and(|c| c.0 == "False"),
    )
    .await;
    let (_, reason, message) = condition(&seq, "AlertsDelivered").unwrap();
    assert_eq!(reason, "EgressRefused", "{message}");
    assert!(message.contains("--webhook-allow"), "{message}");
    assert!(
        receiver.requests("/").is_empty(),
        "nothing reached the receiver"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Garbage termination messages.

/// About 10 KiB of text that is not JSON: tabs, a byte-order mark, replacement and private-use
/// characters, broken JSON. (kwok renders the message into YAML and refuses other C0 control
/// characters, so those are covered by the unit tests of `engine::result`.)
fn garbage() -> String {
    let piece = "\t\u{feff}\u{fffd}\u{e000}{\"rowsSynced\": [[\tÿþ\\x00\u{1F4A5}";
    let mut s = String::new();
    while s.len() < 10 * 1024 {
        s.push_str(piece);
    }
    s
}

async fn garbage_sync(ns: &TestNamespace, name: &str, exit_code: i32) {
    let sync: Sync = serde_json::from_value(json!({
        "apiVersion": "syncseq.dev/v1alpha1",
        "kind": "Sync",
        "metadata": {"name": name},
        "spec": {"jobTemplate": {"spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {
                    "sim.syncseq.dev/duration": "300ms",
                    "sim.syncseq.dev/exit-code": exit_code.to_string(),
                    "sim.syncseq.dev/message": garbage(),
                }},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "sync", "image": "registry.example.com/warehouse-sync:1.4"}]},
            },
        }}},
    }))
    .unwrap();
    ns.api::<Sync>()
        .create(&PostParams::default(), &sync)
        .await
        .expect("create sync");
}

#[tokio::test]
async fn a_garbage_termination_message_still_gives_an_outcome_and_a_truncated_message() {
    install_crds().await;
    let ns = TestNamespace::new("fp-garbage").await;
    garbage_sync(&ns, "junk-ok", 0).await;
    garbage_sync(&ns, "junk-fail", 3).await;
    ns.kubectl_apply(&sequence_yaml("ok", &[("junk-ok", "")], ""));
    ns.kubectl_apply(&sequence_yaml("bad", &[("junk-fail", "")], ""));
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "ok", "1").await;
    trigger(&ns, "bad", "1").await;

    // What arrived in the Pod's status (Kubernetes caps termination messages at 4 KiB on a
    // real kubelet; kwok copies the annotation as it is).
    let ok = wait_for_run(&ns, "ok", 1, RUN_DEADLINE).await;
    let bad = wait_for_run(&ns, "bad", 1, RUN_DEADLINE).await;
    let pods = ns
        .api::<k8s_openapi::api::core::v1::Pod>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let raw = pods
        .iter()
        .find_map(|p| {
            p.status.as_ref()?.container_statuses.as_ref()?[0]
                .state
                .as_ref()?
                .terminated
                .as_ref()?
                .message
                .clone()
        })
        .expect("a terminated container with a message");
    assert!(
        raw.len() > 10_000,
        "kwok passed the whole message: {} bytes",
        raw.len()
    );
    assert!(raw.contains('\t'));

    let check = |seq: &SyncSequence, phase: StepPhase| {
        let st = seq.status.as_ref().unwrap();
        let step = &st.last_run.as_deref().unwrap().steps[0];
        assert_eq!(step.phase, phase, "{step:?}");
        assert_eq!((step.rows_synced, step.rows_rejected), (None, None));
        let message = step.message.clone().unwrap();
        assert!(
            message.contains("termination message is not a syncseq result object: "),
            "{message}"
        );
        assert!(message.contains("(truncated)"), "{message}");
        assert!(
            message.chars().count() < 1200,
            "{} characters",
            message.chars().count()
        );
        assert!(
            !message.chars().any(|c| c.is_control() && c != '\n'),
            "control characters in {message:?}"
        );
        message
    };
    check(&ok, StepPhase::Succeeded);
    assert_eq!(last_phase(&ok), Some(RunPhase::Succeeded));
    let message = check(&bad, StepPhase::Failed);
    assert!(message.ends_with("(exit code 3)"), "{message}");
    assert_eq!(last_phase(&bad), Some(RunPhase::Failed));
    let failed = wait_for_events(&ns, "bad", "StepFailed", 1).await;
    assert!(failed[0].1.len() <= 1024, "Event notes stay within 1 KiB");
}
