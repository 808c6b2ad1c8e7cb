//! Scenario and property tests of alert semantics and bodies.

use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::Value;

use super::pagerduty::dedup_key;
use super::slack::escape_fit;
use super::*;
use crate::api::{
    Alert, AlertHealth, AlertState, AlertStep, AlertTrigger, RunPhase, SecretKeyRef, TriggerKind,
    Webhook, WebhookFormat,
};

fn now() -> Timestamp {
    "2026-01-05T10:00:00Z".parse().unwrap()
}

fn subject() -> Subject<'static> {
    Subject {
        namespace: "revops",
        sequence: "crm",
        uid: "6d3e0c1a-uid",
        now: now(),
    }
}

fn alert(name: &str, when: &[AlertTrigger], format: WebhookFormat) -> Alert {
    Alert {
        name: name.into(),
        when: when.to_vec(),
        webhook: Webhook {
            url_secret_ref: SecretKeyRef {
                name: "hook".into(),
                key: "url".into(),
            },
            format,
            routing_key_secret_ref: None,
            signing_secret_ref: None,
        },
    }
}

const ALL: [AlertTrigger; 4] = [
    AlertTrigger::RunFailed,
    AlertTrigger::StepFailed,
    AlertTrigger::RejectedRows,
    AlertTrigger::Recovered,
];

fn run(id: i64) -> RunRef {
    RunRef {
        id,
        trigger: TriggerKind::Schedule,
        upstream: None,
    }
}

fn info(name: &str, message: &str) -> AlertStep {
    AlertStep {
        name: name.into(),
        sync: name.into(),
        message: Some(message.into()),
        rows_synced: Some(950),
        rows_rejected: Some(50),
    }
}

fn step(id: i64, name: &str, outcome: StepOutcome) -> Happening {
    Happening::Step {
        run: run(id),
        step: info(name, "boom (exit code 1)"),
        outcome,
    }
}

/// Run `id` ended in `phase`; `failed` are its failed steps, in step order.
fn finished(id: i64, phase: RunPhase, failed: &[&str]) -> Happening {
    Happening::Run {
        run: run(id),
        phase,
        message: Some(match failed.first() {
            Some(s) => format!("step {s} failed: boom (exit code 1)"),
            None => "all steps succeeded".into(),
        }),
        failed_steps: failed
            .iter()
            .map(|s| info(s, "boom (exit code 1)"))
            .collect(),
    }
}

/// A run whose step `load` fails and stops it.
fn failed_run(id: i64) -> Vec<Happening> {
    vec![
        step(id, "load", StepOutcome::Failed),
        finished(id, RunPhase::Failed, &["load"]),
    ]
}

fn good_run(id: i64) -> Vec<Happening> {
    vec![
        step(id, "load", StepOutcome::Succeeded),
        finished(id, RunPhase::Succeeded, &[]),
    ]
}

/// Feeds run after run through `evaluate`, carrying the states like status does.
fn play(alerts: &[Alert], runs: &[Vec<Happening>]) -> (Vec<Notification>, Vec<AlertState>) {
    let mut states = vec![];
    let mut all = vec![];
    for r in runs {
        let (n, s) = evaluate(alerts, &states, r, &subject());
        all.extend(n);
        states = s;
    }
    (all, states)
}

fn kinds(n: &[Notification]) -> Vec<(String, AlertTrigger, i64)> {
    n.iter()
        .map(|n| (n.alert.clone(), n.event.kind, n.event.run))
        .collect()
}

#[test]
fn three_failed_runs_notify_once_and_a_success_recovers_once() {
    let alerts = [alert(
        "oncall",
        &[AlertTrigger::RunFailed, AlertTrigger::Recovered],
        WebhookFormat::Slack,
    )];
    let (n, states) = play(&alerts, &[failed_run(1), failed_run(2), failed_run(3)]);
    assert_eq!(
        kinds(&n),
        vec![("oncall".into(), AlertTrigger::RunFailed, 1)]
    );
    assert_eq!(states[0].state, AlertHealth::Failing);
    assert!(states[0].run_failed);
    assert_eq!(states[0].failing_since_run, Some(1));
    assert_eq!(n[0].event.step.as_ref().unwrap().name, "load");

    let (n2, states) = evaluate(&alerts, &states, &good_run(4), &subject());
    assert_eq!(
        kinds(&n2),
        vec![("oncall".into(), AlertTrigger::Recovered, 4)]
    );
    assert_eq!(n2[0].event.failing_since_run, Some(1));
    assert_eq!(
        states[0],
        AlertState {
            name: "oncall".into(),
            ..AlertState::default()
        }
    );
    // Healthy again: the next success says nothing, the next failure notifies again.
    let (n3, states) = evaluate(&alerts, &states, &good_run(5), &subject());
    assert!(n3.is_empty());
    let (n4, _) = evaluate(&alerts, &states, &failed_run(6), &subject());
    assert_eq!(
        kinds(&n4),
        vec![("oncall".into(), AlertTrigger::RunFailed, 6)]
    );
}

#[test]
fn recovered_needs_a_notified_failure() {
    // Only Recovered: nothing was ever notified, so nothing recovers.
    let alerts = [alert("r", &[AlertTrigger::Recovered], WebhookFormat::Json)];
    let (n, states) = play(&alerts, &[failed_run(1), good_run(2)]);
    assert!(n.is_empty());
    assert_eq!(states[0].state, AlertHealth::Healthy);
    // RunFailed without Recovered: the success clears the state silently.
    let alerts = [alert("f", &[AlertTrigger::RunFailed], WebhookFormat::Json)];
    let (n, states) = play(&alerts, &[failed_run(1), good_run(2), failed_run(3)]);
    assert_eq!(
        kinds(&n),
        vec![
            ("f".into(), AlertTrigger::RunFailed, 1),
            ("f".into(), AlertTrigger::RunFailed, 3)
        ]
    );
    assert_eq!(states[0].failing_since_run, Some(3));
}

#[test]
fn a_step_failure_that_stops_the_run_is_one_notification() {
    let alerts = [alert("all", &ALL, WebhookFormat::Json)];
    let (n, states) = play(&alerts, &[failed_run(1)]);
    assert_eq!(kinds(&n), vec![("all".into(), AlertTrigger::RunFailed, 1)]);
    // The step is still remembered as notified.
    assert_eq!(states[0].failed_steps, vec!["load".to_string()]);
    // A step-only alert hears about the step.
    let alerts = [alert(
        "steps",
        &[AlertTrigger::StepFailed],
        WebhookFormat::Json,
    )];
    let (n, _) = play(&alerts, &[failed_run(1), failed_run(2)]);
    assert_eq!(
        kinds(&n),
        vec![("steps".into(), AlertTrigger::StepFailed, 1)]
    );
}

#[test]
fn step_failures_are_keyed_per_step_and_clear_when_the_step_succeeds() {
    let alerts = [alert(
        "steps",
        &[AlertTrigger::StepFailed, AlertTrigger::Recovered],
        WebhookFormat::Json,
    )];
    // onFailure: Continue: runs finish SucceededWithErrors.
    let continued = |id, failing: &[&str], ok: &[&str]| {
        let mut h: Vec<Happening> = ok
            .iter()
            .map(|s| step(id, s, StepOutcome::Succeeded))
            .collect();
        h.extend(failing.iter().map(|s| step(id, s, StepOutcome::Failed)));
        h.push(finished(id, RunPhase::SucceededWithErrors, &[]));
        h
    };
    let (n, states) = play(
        &alerts,
        &[
            continued(1, &["a"], &["b"]),
            continued(2, &["a", "b"], &[]),
            continued(3, &["a"], &["b"]),
            continued(4, &["b"], &["a"]),
        ],
    );
    let steps: Vec<(i64, String)> = n
        .iter()
        .map(|n| (n.event.run, n.event.step.clone().unwrap().name))
        .collect();
    assert_eq!(
        steps,
        vec![(1, "a".into()), (2, "b".into()), (4, "b".into())],
        "b recovered in run 3, failed again in run 4"
    );
    assert_eq!(states[0].failed_steps, vec!["b".to_string()]);
    // A clean run recovers everything, once.
    let (n, states) = evaluate(&alerts, &states, &good_run(5), &subject());
    assert_eq!(
        kinds(&n),
        vec![("steps".into(), AlertTrigger::Recovered, 5)]
    );
    assert!(states[0].failed_steps.is_empty());
}

#[test]
fn rejected_rows_notify_once_per_step_with_the_numbers() {
    let alerts = [alert(
        "rows",
        &[AlertTrigger::RejectedRows, AlertTrigger::Recovered],
        WebhookFormat::Json,
    )];
    let breach = |id| {
        vec![
            Happening::Step {
                run: run(id),
                step: info(
                    "accounts",
                    "50 of 1000 rows rejected (5.00%), more than the limit of 1%",
                ),
                outcome: StepOutcome::RejectedRows,
            },
            finished(id, RunPhase::SucceededWithErrors, &[]),
        ]
    };
    let (n, states) = play(&alerts, &[breach(1), breach(2)]);
    assert_eq!(
        kinds(&n),
        vec![("rows".into(), AlertTrigger::RejectedRows, 1)]
    );
    assert_eq!(states[0].rejected_rows_steps, vec!["accounts".to_string()]);
    let body = json_body(&n[0]);
    assert_eq!(
        body["rows"],
        serde_json::json!({"synced": 950, "rejected": 50})
    );
    assert!(body["message"].as_str().unwrap().contains("50 of 1000"));
}

#[test]
fn cancelled_and_partial_runs_neither_fail_nor_recover_the_run() {
    let alerts = [alert(
        "oncall",
        &[AlertTrigger::RunFailed, AlertTrigger::Recovered],
        WebhookFormat::Json,
    )];
    let (n, states) = play(
        &alerts,
        &[
            failed_run(1),
            vec![finished(2, RunPhase::Cancelled, &[])],
            vec![finished(3, RunPhase::SucceededWithErrors, &[])],
            failed_run(4),
        ],
    );
    assert_eq!(
        kinds(&n),
        vec![("oncall".into(), AlertTrigger::RunFailed, 1)]
    );
    assert_eq!(states[0].state, AlertHealth::Failing);
}

#[test]
fn states_follow_the_spec() {
    let a = alert("a", &ALL, WebhookFormat::Json);
    let b = alert("b", &ALL, WebhookFormat::Json);
    let (_, states) = play(&[a.clone(), b.clone()], &[failed_run(1)]);
    assert_eq!(states.len(), 2);
    // b removed from the spec: its state goes; a keeps its own.
    let (n, states) = evaluate(&[a], &states, &[], &subject());
    assert!(n.is_empty());
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].name, "a");
    assert!(states[0].run_failed);
}

#[test]
fn json_body_has_the_documented_fields() {
    let alerts = [alert("oncall", &ALL, WebhookFormat::Json)];
    let (n, _) = play(&alerts, &[failed_run(7)]);
    let body = render(&n[0]);
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "alert",
        "failedSteps",
        "failingSinceRun",
        "idempotencyKey",
        "kind",
        "message",
        "namespace",
        "phase",
        "rows",
        "run",
        "sequence",
        "source",
        "step",
        "summary",
        "sync",
        "time",
        "trigger",
        "upstream",
    ];
    expected.sort();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, expected);
    assert_eq!(body["source"], "syncseq");
    assert_eq!(body["idempotencyKey"], n[0].key.as_str());
    assert_eq!(body["kind"], "RunFailed");
    assert_eq!(body["namespace"], "revops");
    assert_eq!(body["sequence"], "crm");
    assert_eq!(body["run"], 7);
    assert_eq!(body["trigger"], "Schedule");
    assert_eq!(body["phase"], "Failed");
    assert_eq!(body["step"], "load");
    assert_eq!(body["sync"], "load");
    assert_eq!(body["message"], "step load failed: boom (exit code 1)");
    assert_eq!(
        body["failedSteps"],
        serde_json::json!([{
            "step": "load",
            "sync": "load",
            "message": "boom (exit code 1)",
            "rows": {"synced": 950, "rejected": 50},
        }])
    );
    assert_eq!(body["failingSinceRun"], Value::Null);
    assert_eq!(body["time"], "2026-01-05T10:00:00Z");
    assert_eq!(
        body["summary"],
        "revops/crm: run 7 failed: step load failed: boom (exit code 1)"
    );
}

/// Run `id` of a graph: `accounts` succeeds, then `deals` and `workspaces` fail side by side
/// and stop it.
fn branches_failed_run(id: i64) -> Vec<Happening> {
    vec![
        step(id, "accounts", StepOutcome::Succeeded),
        step(id, "deals", StepOutcome::Failed),
        step(id, "workspaces", StepOutcome::Failed),
        finished(id, RunPhase::Failed, &["deals", "workspaces"]),
    ]
}

#[test]
fn a_run_whose_branches_fail_side_by_side_names_every_failed_step() {
    let alerts = [alert("all", &ALL, WebhookFormat::Json)];
    let (n, states) = play(&alerts, &[branches_failed_run(3)]);
    // Both step failures are folded into the one RunFailed, which names them both.
    assert_eq!(kinds(&n), vec![("all".into(), AlertTrigger::RunFailed, 3)]);
    assert_eq!(
        states[0].failed_steps,
        vec!["deals".to_string(), "workspaces".to_string()]
    );
    let body = render(&n[0]);
    assert_eq!(
        body["summary"],
        "revops/crm: run 3 failed: steps deals and workspaces failed: step deals failed: boom (exit code 1)"
    );
    // The first stays the primary step, so the flat fields keep their meaning.
    assert_eq!(body["step"], "deals");
    assert_eq!(body["sync"], "deals");
    assert_eq!(body["message"], "step deals failed: boom (exit code 1)");
    let listed: Vec<(&str, &str, &str)> = body["failedSteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap(),
                s["sync"].as_str().unwrap(),
                s["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("deals", "deals", "boom (exit code 1)"),
            ("workspaces", "workspaces", "boom (exit code 1)")
        ]
    );

    // A step-only alert hears about each step on its own.
    let steps = [alert(
        "steps",
        &[AlertTrigger::StepFailed],
        WebhookFormat::Json,
    )];
    let (n, _) = play(&steps, &[branches_failed_run(3)]);
    let named: Vec<String> = n
        .iter()
        .map(|n| n.event.step.clone().unwrap().name)
        .collect();
    assert_eq!(named, ["deals", "workspaces"]);
}

#[test]
fn chat_bodies_name_every_failed_step_with_its_error_text() {
    let slack = [alert("oncall", &ALL, WebhookFormat::Slack)];
    let (n, _) = play(&slack, &[branches_failed_run(3)]);
    let body = render(&n[0]);
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        ":red_circle: crm: run 3 failed"
    );
    assert_eq!(
        body["blocks"][1]["text"]["text"],
        "Run *3* (scheduled) failed at steps *deals* and *workspaces*.\n\
         ```step deals failed: boom (exit code 1)\nstep workspaces failed: boom (exit code 1)```"
    );
    let fields: Vec<&str> = body["blocks"][2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "*Sequence*\nrevops/crm",
            "*Run*\n3 (Schedule)",
            "*Failed steps*\ndeals (sync deals), workspaces (sync workspaces)",
        ]
    );

    let teams = [alert("oncall", &ALL, WebhookFormat::Teams)];
    let (n, _) = play(&teams, &[branches_failed_run(3)]);
    let card = &render(&n[0])["attachments"][0]["content"];
    assert_eq!(
        card["body"][1]["inlines"][0]["text"],
        "Run 3 (scheduled) failed at steps deals and workspaces."
    );
    assert_eq!(
        card["body"][3]["inlines"][0]["text"],
        "step deals failed: boom (exit code 1)\nstep workspaces failed: boom (exit code 1)"
    );

    let chat = [alert("oncall", &ALL, WebhookFormat::GoogleChat)];
    let (n, _) = play(&chat, &[branches_failed_run(3)]);
    let text = render(&n[0])["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with(
            "*crm: run 3 failed*\nRun *3* (scheduled) failed at steps *deals* and *workspaces*.\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("Failed steps: deals (sync deals), workspaces (sync workspaces)\n"),
        "{text}"
    );

    let pager = [alert("oncall", &ALL, WebhookFormat::PagerDuty)];
    let (n, _) = play(&pager, &[branches_failed_run(3)]);
    let body = render(&n[0]);
    assert_eq!(body["payload"]["component"], "crm/deals");
    assert_eq!(
        body["payload"]["custom_details"]["failedSteps"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn many_failed_steps_are_counted_past_five_and_their_messages_cut() {
    let failed: Vec<AlertStep> = (1..=7)
        .map(|i| info(&format!("s{i}"), &"x".repeat(1000)))
        .collect();
    let mut h: Vec<Happening> = failed
        .iter()
        .map(|s| Happening::Step {
            run: run(1),
            step: s.clone(),
            outcome: StepOutcome::Failed,
        })
        .collect();
    h.push(Happening::Run {
        run: run(1),
        phase: RunPhase::Failed,
        message: Some("step s1 failed: boom".into()),
        failed_steps: failed,
    });
    let alerts = [alert("all", &ALL, WebhookFormat::Json)];
    let (n, _) = evaluate(&alerts, &[], &h, &subject());
    assert_eq!(kinds(&n), vec![("all".into(), AlertTrigger::RunFailed, 1)]);
    let body = render(&n[0]);
    assert_eq!(
        body["summary"],
        "revops/crm: run 1 failed: steps s1, s2, s3, s4, s5 and 2 more failed: step s1 failed: boom"
    );
    let listed = body["failedSteps"].as_array().unwrap();
    assert_eq!(listed.len(), 7, "the list has them all");
    for s in listed {
        assert_eq!(s["message"].as_str().unwrap().chars().count(), 300);
    }
    // The outbox keeps the list cut too; the primary step keeps its whole message.
    assert!(
        n[0].event
            .failed_steps
            .iter()
            .all(|s| s.message.as_ref().is_some_and(|m| m.chars().count() == 300))
    );
    assert_eq!(
        n[0].event
            .step
            .as_ref()
            .unwrap()
            .message
            .as_ref()
            .unwrap()
            .len(),
        1000
    );
}

#[test]
fn a_notification_from_before_the_list_names_its_one_step() {
    let alerts = [alert("oncall", &ALL, WebhookFormat::Json)];
    let (mut n, _) = play(&alerts, &[branches_failed_run(3)]);
    // As an outbox entry decided by an older controller reads back: no list.
    n[0].event.failed_steps.clear();
    let body = render(&n[0]);
    assert_eq!(body["failedSteps"].as_array().unwrap().len(), 1);
    assert_eq!(body["failedSteps"][0]["step"], "deals");
    assert_eq!(
        body["summary"],
        "revops/crm: run 3 failed: step deals failed: boom (exit code 1)"
    );
    let pending: crate::api::PendingAlert = serde_json::from_value(serde_json::json!({
        "key": "k",
        "alert": "oncall",
        "event": {
            "kind": "RunFailed", "run": 3, "trigger": "Schedule", "phase": "Failed",
            "step": {"name": "deals", "sync": "deals"}, "message": "m",
            "time": "2026-01-05T10:00:00Z",
        },
    }))
    .expect("an outbox entry without failedSteps still parses");
    assert!(pending.event.failed_steps.is_empty());
}

#[test]
fn slack_body_has_text_and_blocks() {
    let alerts = [alert("oncall", &ALL, WebhookFormat::Slack)];
    let (n, states) = play(&alerts, &[failed_run(3)]);
    let body = render(&n[0]);
    assert!(body["text"].as_str().unwrap().contains("run 3 failed"));
    let blocks = body["blocks"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["header", "section", "section", "context"]);
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], ":red_circle: crm: run 3 failed");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    let section = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(section.starts_with("Run *3* (scheduled) failed at step *load*."));
    assert!(section.contains("```step load failed: boom (exit code 1)```"));
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec![
            "*Sequence*\nrevops/crm",
            "*Run*\n3 (Schedule)",
            "*Step*\nload (sync load)",
            "*Rows*\n950 synced, 50 rejected",
        ]
    );
    let (r, _) = evaluate(&alerts, &states, &good_run(4), &subject());
    let body = render(&r[0]);
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        ":large_green_circle: crm: recovered"
    );
    assert_eq!(
        body["text"],
        "revops/crm: recovered: run 4 succeeded (failing since run 3)"
    );
}

#[test]
fn slack_text_is_escaped_and_cut() {
    assert_eq!(escape_fit("a<b>&c", 100), "a&lt;b&gt;&amp;c");
    assert_eq!(escape_fit("&&&&", 11), "&amp;&amp;…");
    assert_eq!(escape_fit("abcdef", 4), "abc…");
}

#[test]
fn teams_body_is_an_adaptive_card_message() {
    let alerts = [alert("oncall", &ALL, WebhookFormat::Teams)];
    let (n, states) = play(&alerts, &[failed_run(3)]);
    let body = render(&n[0]);
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    let blocks = card["body"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "TextBlock",
            "RichTextBlock",
            "FactSet",
            "RichTextBlock",
            "TextBlock"
        ]
    );
    assert_eq!(blocks[0]["text"], "crm: run 3 failed");
    assert_eq!(blocks[0]["color"], "Attention");
    assert_eq!(
        blocks[1]["inlines"][0]["text"],
        "Run 3 (scheduled) failed at step load."
    );
    assert_eq!(blocks[2]["facts"][0]["title"], "Sequence");
    assert_eq!(blocks[2]["facts"][0]["value"], "revops/crm");
    // The error text is a TextRun, which Teams never reads as Markdown.
    assert_eq!(
        blocks[3]["inlines"][0]["text"],
        "step load failed: boom (exit code 1)"
    );
    assert_eq!(blocks[3]["inlines"][0]["fontType"], "Monospace");
    let (r, _) = evaluate(&alerts, &states, &good_run(4), &subject());
    let card = &render(&r[0])["attachments"][0]["content"];
    assert_eq!(card["body"][0]["text"], "crm: recovered");
    assert_eq!(card["body"][0]["color"], "Good");
    assert_eq!(card["body"].as_array().unwrap().len(), 4, "no error text");
}

#[test]
fn google_chat_body_is_one_text_with_the_error_in_a_code_block() {
    let alerts = [alert("oncall", &ALL, WebhookFormat::GoogleChat)];
    let (mut n, _) = play(&alerts, &[failed_run(3)]);
    let text = render(&n[0])["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("*crm: run 3 failed*\nRun *3* (scheduled) failed at step *load*.\n"),
        "{text}"
    );
    assert!(text.contains("Sequence: revops/crm\n"), "{text}");
    assert!(
        text.ends_with("```step load failed: boom (exit code 1)```"),
        "{text}"
    );
    // A sender's delivery id cannot mention everyone, and ``` cannot end the block early.
    n[0].event.upstream = Some(crate::api::UpstreamRun {
        kind: crate::api::UpstreamKind::WebhookReceiver,
        name: "dbt".into(),
        run: "<users/all>".into(),
    });
    n[0].event.message = format!("bad ```row``` {}", "x".repeat(10_000));
    let text = render(&n[0])["text"].as_str().unwrap().to_string();
    assert!(!text.contains("<users/all>"), "{text}");
    assert_eq!(text.matches("```").count(), 2, "{text}");
    assert!(text.chars().count() <= 4096);
}

#[test]
fn pagerduty_failure_triggers_and_recovery_resolves_under_one_dedup_key() {
    let alerts = [alert("oncall", &ALL, WebhookFormat::PagerDuty)];
    let (n, states) = play(&alerts, &[failed_run(3)]);
    assert!(!n.is_empty());
    for failure in &n {
        let body = render(failure);
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["dedup_key"], "syncseq/revops/crm/oncall");
        let payload = &body["payload"];
        for field in ["summary", "source", "severity", "timestamp", "component"] {
            assert!(payload[field].is_string(), "payload.{field}: {body}");
        }
        assert_eq!(payload["severity"], "error");
        assert_eq!(payload["source"], "revops/crm");
        assert_eq!(payload["component"], "crm/load");
        assert_eq!(payload["custom_details"]["run"], 3);
        assert!(body.get("routing_key").is_none(), "added at delivery");
    }
    let (r, _) = evaluate(&alerts, &states, &good_run(4), &subject());
    let body = render(&r[0]);
    assert_eq!(
        body,
        serde_json::json!({"event_action": "resolve", "dedup_key": "syncseq/revops/crm/oncall"})
    );
    assert_eq!(dedup_key(&r[0]), dedup_key(&n[0]));
}

#[test]
fn keys_distinguish_alert_kind_run_and_step() {
    let alerts = [
        alert("a", &ALL, WebhookFormat::Json),
        alert("b", &ALL, WebhookFormat::Json),
    ];
    let (n, _) = play(&alerts, &[failed_run(1), good_run(2)]);
    let keys: std::collections::BTreeSet<String> = n.iter().map(|n| n.key.clone()).collect();
    assert_eq!(keys.len(), n.len());
}

/// One generated run: each of three steps' outcome, whether a failure stops the run
/// (`onFailure: Stop`), and whether the steps are a line (a Stop failure skips the steps after
/// it) or three independent roots of a graph (the others run on, and may fail too).
#[derive(Debug, Clone)]
struct GenRun {
    outcomes: [StepOutcome; 3],
    stop: bool,
    roots: bool,
    cancelled: bool,
}

fn gen_run() -> impl Strategy<Value = GenRun> {
    let outcome = prop_oneof![
        3 => Just(StepOutcome::Succeeded),
        1 => Just(StepOutcome::Failed),
        1 => Just(StepOutcome::RejectedRows),
    ];
    (
        [outcome.clone(), outcome.clone(), outcome],
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(outcomes, stop, roots, cancelled)| GenRun {
            outcomes,
            stop,
            roots,
            cancelled,
        })
}

const STEPS: [&str; 3] = ["a", "b", "c"];

/// The happenings of a generated run, and its phase.
fn happenings_of(id: i64, r: &GenRun) -> (Vec<Happening>, RunPhase) {
    let mut h = vec![];
    if r.cancelled {
        return (
            vec![finished(id, RunPhase::Cancelled, &[])],
            RunPhase::Cancelled,
        );
    }
    let mut failed = vec![];
    for (i, outcome) in r.outcomes.iter().enumerate() {
        h.push(step(id, STEPS[i], *outcome));
        if *outcome != StepOutcome::Succeeded {
            failed.push(STEPS[i]);
            if r.stop && !r.roots {
                break;
            }
        }
    }
    let phase = match (failed.is_empty(), r.stop) {
        (true, _) => RunPhase::Succeeded,
        (false, true) => RunPhase::Failed,
        (false, false) => RunPhase::SucceededWithErrors,
    };
    h.push(finished(id, phase, &failed));
    (h, phase)
}

fn gen_when() -> impl Strategy<Value = Vec<AlertTrigger>> {
    prop::sample::subsequence(ALL.to_vec(), 1..=4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Once per change of state, whatever the history. The test keeps its own record of what
    /// was notified, from the notifications alone, and checks every run against it: a run
    /// failure notifies once per failing period; a step notifies again only after it succeeded;
    /// `Recovered` comes exactly when a clean run ends a period that notified something; nothing
    /// outside `when` is sent; re-evaluating with nothing new changes nothing.
    #[test]
    fn once_per_change_of_state(runs in prop::collection::vec(gen_run(), 1..40), when in gen_when()) {
        let alerts = [alert("x", &when, WebhookFormat::Json)];
        let wants = |t: AlertTrigger| when.contains(&t);
        let mut states: Vec<AlertState> = vec![];
        let mut run_failed = false;
        let mut failed_steps = std::collections::BTreeSet::<String>::new();
        let mut rejected_steps = std::collections::BTreeSet::<String>::new();
        for (i, r) in runs.iter().enumerate() {
            let id = i as i64 + 1;
            let (h, phase) = happenings_of(id, r);
            let (n, s) = evaluate(&alerts, &states, &h, &subject());

            let (again, same) = evaluate(&alerts, &s, &[], &subject());
            prop_assert!(again.is_empty());
            prop_assert_eq!(&same, &s);

            let keys: std::collections::BTreeSet<String> = n.iter().map(|n| n.key.clone()).collect();
            prop_assert_eq!(keys.len(), n.len(), "one notification per alert, kind, run and step");
            for note in &n {
                prop_assert!(wants(note.event.kind), "{:?} is not in {:?}", note.event.kind, when);
                prop_assert_eq!(note.event.run, id);
            }
            let count = |k| n.iter().filter(|x| x.event.kind == k).count();
            let was_failing = run_failed || !failed_steps.is_empty() || !rejected_steps.is_empty();

            // Run level.
            let run_failed_now = phase == RunPhase::Failed && wants(AlertTrigger::RunFailed) && !run_failed;
            prop_assert_eq!(count(AlertTrigger::RunFailed), usize::from(run_failed_now));
            // What the run's failure notification names: every step that failed in the run.
            let named: Vec<String> = n.iter()
                .filter(|x| x.event.kind == AlertTrigger::RunFailed)
                .flat_map(|x| x.event.failed_steps.iter().map(|s| s.name.clone()))
                .collect();
            if run_failed_now {
                let failed: Vec<String> = h.iter()
                    .filter_map(|x| match x {
                        Happening::Step { step, outcome, .. } if *outcome != StepOutcome::Succeeded => Some(step.name.clone()),
                        _ => None,
                    })
                    .collect();
                prop_assert_eq!(&named, &failed, "RunFailed names every failed step, in order");
            }
            run_failed |= run_failed_now;

            // Step level, in order within the run.
            for x in &h {
                let Happening::Step { step, outcome, .. } = x else { continue };
                let (trigger, set) = match outcome {
                    StepOutcome::Succeeded => {
                        failed_steps.remove(&step.name);
                        rejected_steps.remove(&step.name);
                        continue;
                    }
                    StepOutcome::Failed => (AlertTrigger::StepFailed, &mut failed_steps),
                    StepOutcome::RejectedRows => (AlertTrigger::RejectedRows, &mut rejected_steps),
                };
                let notified = n.iter().any(|x| x.event.kind == trigger
                    && x.event.step.as_ref().is_some_and(|s| s.name == step.name));
                let new = wants(trigger) && !set.contains(&step.name);
                if new {
                    // Notified on its own, or folded into the run's failure notification.
                    prop_assert!(notified != named.contains(&step.name),
                        "step {} {:?}: notified {} named by RunFailed {:?}", step.name, outcome, notified, named);
                    set.insert(step.name.clone());
                } else {
                    prop_assert!(!notified, "step {} notified while outstanding", step.name);
                }
            }

            // Recovery.
            let recovered_now = phase == RunPhase::Succeeded && was_failing && wants(AlertTrigger::Recovered);
            prop_assert_eq!(count(AlertTrigger::Recovered), usize::from(recovered_now));
            if phase == RunPhase::Succeeded {
                run_failed = false;
                failed_steps.clear();
                rejected_steps.clear();
            }
            let failing = run_failed || !failed_steps.is_empty() || !rejected_steps.is_empty();
            prop_assert_eq!(s[0].state == AlertHealth::Failing, failing);
            prop_assert_eq!(s[0].run_failed, run_failed);
            prop_assert_eq!(s[0].failed_steps.iter().cloned().collect::<std::collections::BTreeSet<_>>(), failed_steps.clone());
            prop_assert_eq!(s[0].rejected_rows_steps.iter().cloned().collect::<std::collections::BTreeSet<_>>(), rejected_steps.clone());
            prop_assert_eq!(s[0].failing_since_run.is_some(), failing);
            states = s;
        }
    }

    /// Whatever the message, bodies are valid, within Slack's limits and free of raw `<`, `>`.
    #[test]
    fn slack_bodies_stay_within_limits(message in "\\PC{0,5000}", step_name in "[a-z][a-z0-9-]{0,62}") {
        let alerts = [alert("oncall", &ALL, WebhookFormat::Slack)];
        let h = vec![
            Happening::Step {
                run: run(1),
                step: AlertStep { name: step_name.clone(), sync: step_name.clone(), message: Some(message.clone()), rows_synced: None, rows_rejected: Some(3) },
                outcome: StepOutcome::Failed,
            },
            Happening::Run {
                run: run(1),
                phase: RunPhase::SucceededWithErrors,
                message: Some(message.clone()),
                failed_steps: vec![],
            },
        ];
        let (n, _) = evaluate(&alerts, &[], &h, &subject());
        prop_assert_eq!(n.len(), 1);
        let body = slack_body(&n[0]);
        let text = body["text"].as_str().unwrap();
        prop_assert!(text.chars().count() <= 3000);
        let blocks = body["blocks"].as_array().unwrap();
        prop_assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        let section = blocks[1]["text"]["text"].as_str().unwrap();
        prop_assert!(section.chars().count() <= 3000);
        prop_assert!(!section.contains('<') && !section.contains('>'));
        let fields = blocks[2]["fields"].as_array().unwrap();
        prop_assert!(fields.len() <= 10);
        for f in fields {
            prop_assert!(f["text"].as_str().unwrap().chars().count() <= 2000);
        }
        let json = json_body(&n[0]);
        prop_assert_eq!(json["message"].as_str().unwrap(), message.as_str());
        prop_assert!(json["summary"].as_str().unwrap().chars().count() < 500);
    }
}
