//! Webhook bodies: a plain JSON object and a Slack incoming-webhook message (`text` plus Block
//! Kit `blocks`) here, Teams and Google Chat messages in `chat`, PagerDuty events in
//! `pagerduty`; what a message says (title, lead, facts) is shared by every chat format. Each
//! format is documented in docs/alerts.md; tests pin the shapes.

use serde_json::{Value, json};

use super::Notification;
use crate::api::{AlertEvent, AlertTrigger, TriggerKind, WebhookFormat};

/// Slack limits (Block Kit reference): header text 150 characters, section text 3000, section
/// field text 2000.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;
/// The longest error text quoted in a one-line summary.
const SUMMARY_MESSAGE_MAX: usize = 300;

/// The body of a notification, in its webhook's format.
pub fn render(n: &Notification) -> Value {
    match n.webhook.format {
        WebhookFormat::Json => json_body(n),
        WebhookFormat::Slack => slack_body(n),
        WebhookFormat::Teams => super::chat::teams_body(n),
        WebhookFormat::GoogleChat => super::chat::google_chat_body(n),
        WebhookFormat::PagerDuty => super::pagerduty::event_body(n),
    }
}

/// One line a person can read in a notification list:
/// `revops/crm-hourly: run 12 failed: step workspaces failed: …`.
pub fn summary(n: &Notification) -> String {
    let e = &n.event;
    let what = match e.kind {
        AlertTrigger::RunFailed => format!("run {} failed", e.run),
        AlertTrigger::StepFailed => format!("step {} failed in run {}", step_name(e), e.run),
        AlertTrigger::RejectedRows => format!(
            "step {} rejected too many rows in run {}",
            step_name(e),
            e.run
        ),
        AlertTrigger::Recovered => match e.failing_since_run {
            Some(since) => format!(
                "recovered: run {} succeeded (failing since run {since})",
                e.run
            ),
            None => format!("recovered: run {} succeeded", e.run),
        },
    };
    let mut line = format!("{}/{}: {what}", n.namespace, n.sequence);
    if e.kind != AlertTrigger::Recovered && !e.message.is_empty() {
        line.push_str(": ");
        line.push_str(&cut(&e.message.replace('\n', " "), SUMMARY_MESSAGE_MAX));
    }
    line
}

/// The JSON format: one flat object, every key always present (`null` when not applicable).
pub fn json_body(n: &Notification) -> Value {
    let e = &n.event;
    let step = e.step.as_ref();
    let rows = step
        .filter(|s| s.rows_synced.is_some() || s.rows_rejected.is_some())
        .map(|s| json!({"synced": s.rows_synced, "rejected": s.rows_rejected}));
    json!({
        "source": "syncseq",
        "idempotencyKey": n.key,
        "alert": n.alert,
        "kind": kind_name(e.kind),
        "summary": summary(n),
        "namespace": n.namespace,
        "sequence": n.sequence,
        "run": e.run,
        "trigger": trigger_name(e.trigger),
        "upstream": e.upstream,
        "phase": e.phase,
        "step": step.map(|s| s.name.as_str()),
        "sync": step.map(|s| s.sync.as_str()),
        "message": e.message,
        "rows": rows,
        "failingSinceRun": e.failing_since_run,
        "time": e.time.0.to_string(),
    })
}

/// The Slack format: `text` (the summary; the fallback Slack shows in notifications) and
/// `blocks`: a header, a section with what happened and the error text, a section of fields,
/// and a context line. Text is escaped (`&`, `<`, `>`) and cut to Block Kit's limits.
pub fn slack_body(n: &Notification) -> Value {
    let e = &n.event;
    let emoji = match e.kind {
        AlertTrigger::RunFailed => ":red_circle:",
        AlertTrigger::StepFailed | AlertTrigger::RejectedRows => ":warning:",
        AlertTrigger::Recovered => ":large_green_circle:",
    };
    let lead = lead(n, &escape_fit(&trigger_phrase(n), 300), |s| {
        format!("*{}*", escape_fit(s, 200))
    });
    // The error text goes in a code block; ``` inside it would end the block early.
    let quoted = match error_text(n) {
        None => String::new(),
        Some(message) => {
            let budget = SLACK_SECTION_MAX - lead.chars().count() - 8;
            format!(
                "\n```{}```",
                escape_fit(&message.replace("```", "'''"), budget)
            )
        }
    };
    let fields: Vec<Value> = facts(n)
        .iter()
        .map(|(label, value)| field(label, value))
        .collect();
    let title = title(n);

    json!({
        "text": escape_fit(&summary(n), SLACK_SECTION_MAX),
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": cut(&format!("{emoji} {title}"), SLACK_HEADER_MAX),
                    "emoji": true,
                },
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("{lead}{quoted}")},
            },
            {"type": "section", "fields": fields},
            {
                "type": "context",
                "elements": [{
                    "type": "mrkdwn",
                    "text": escape_fit(
                        &format!("syncseq alert {} · {} · {}", n.alert, kind_name(e.kind), e.time.0),
                        SLACK_FIELD_MAX,
                    ),
                }],
            },
        ],
    })
}

/// The title of a chat message: `crm-hourly: run 12 failed`.
pub(super) fn title(n: &Notification) -> String {
    let e = &n.event;
    match e.kind {
        AlertTrigger::RunFailed => format!("{}: run {} failed", n.sequence, e.run),
        AlertTrigger::StepFailed => format!("{}: step {} failed", n.sequence, step_name(e)),
        AlertTrigger::RejectedRows => format!(
            "{}: step {} rejected too many rows",
            n.sequence,
            step_name(e)
        ),
        AlertTrigger::Recovered => format!("{}: recovered", n.sequence),
    }
}

/// What started the run, as a chat message says it: `scheduled`, or `after upstream …`.
pub(super) fn trigger_phrase(n: &Notification) -> String {
    match &n.event.upstream {
        Some(up) => format!("after upstream {up}"),
        None => trigger_text(n.event.trigger).to_string(),
    }
}

/// The lead sentence of a chat message, with run numbers and step names marked by `strong`
/// in the provider's markup (which also escapes them).
pub(super) fn lead(n: &Notification, trigger: &str, strong: impl Fn(&str) -> String) -> String {
    let e = &n.event;
    let run = strong(&e.run.to_string());
    let step = strong(step_name(e));
    match e.kind {
        AlertTrigger::RunFailed => match &e.step {
            Some(s) => format!("Run {run} ({trigger}) failed at step {}.", strong(&s.name)),
            None => format!("Run {run} ({trigger}) failed."),
        },
        AlertTrigger::StepFailed => format!("Step {step} failed in run {run} ({trigger})."),
        AlertTrigger::RejectedRows => format!(
            "Step {step} rejected more rows than its limit allows in run {run} ({trigger})."
        ),
        AlertTrigger::Recovered => match e.failing_since_run {
            Some(since) => format!("Run {run} ({trigger}) succeeded; failing since run {since}."),
            None => format!("Run {run} ({trigger}) succeeded."),
        },
    }
}

/// The error text a failure notification quotes; none for a recovery.
pub(super) fn error_text(n: &Notification) -> Option<&str> {
    let e = &n.event;
    (e.kind != AlertTrigger::Recovered && !e.message.is_empty()).then_some(e.message.as_str())
}

/// The labelled facts of a chat message: sequence, run, step, rows, failing since.
pub(super) fn facts(n: &Notification) -> Vec<(&'static str, String)> {
    let e = &n.event;
    let mut facts = vec![
        ("Sequence", format!("{}/{}", n.namespace, n.sequence)),
        ("Run", format!("{} ({})", e.run, trigger_name(e.trigger))),
    ];
    if let Some(s) = &e.step {
        facts.push(("Step", format!("{} (sync {})", s.name, s.sync)));
        if s.rows_synced.is_some() || s.rows_rejected.is_some() {
            facts.push((
                "Rows",
                format!(
                    "{} synced, {} rejected",
                    s.rows_synced.unwrap_or(0),
                    s.rows_rejected.unwrap_or(0)
                ),
            ));
        }
    }
    if let Some(since) = e.failing_since_run {
        facts.push(("Failing since", format!("run {since}")));
    }
    facts
}

fn field(label: &str, value: &str) -> Value {
    let text = format!(
        "*{label}*\n{}",
        escape_fit(value, SLACK_FIELD_MAX - label.len() - 4)
    );
    json!({"type": "mrkdwn", "text": text})
}

pub(super) fn step_name(e: &AlertEvent) -> &str {
    e.step.as_ref().map_or("?", |s| s.name.as_str())
}

pub(super) fn kind_name(k: AlertTrigger) -> &'static str {
    match k {
        AlertTrigger::RunFailed => "RunFailed",
        AlertTrigger::StepFailed => "StepFailed",
        AlertTrigger::RejectedRows => "RejectedRows",
        AlertTrigger::Recovered => "Recovered",
    }
}

pub(super) fn trigger_name(t: TriggerKind) -> &'static str {
    match t {
        TriggerKind::Schedule => "Schedule",
        TriggerKind::Manual => "Manual",
        TriggerKind::Upstream => "Upstream",
    }
}

fn trigger_text(t: TriggerKind) -> &'static str {
    match t {
        TriggerKind::Schedule => "scheduled",
        TriggerKind::Manual => "manual request",
        TriggerKind::Upstream => "upstream",
    }
}

/// Cuts to at most `max` characters, marking the cut with `…`.
pub(super) fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escapes Slack's control characters (`&`, `<`, `>`) and cuts the result to at most `max`
/// characters without splitting an escape, marking a cut with `…`.
pub(super) fn escape_fit(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut len = 0;
    let total: usize = s.chars().map(escaped_len).sum();
    let budget = if total <= max {
        max
    } else {
        max.saturating_sub(1)
    };
    for c in s.chars() {
        let piece_len = escaped_len(c);
        if len + piece_len > budget {
            out.push('…');
            return out;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
        len += piece_len;
    }
    out
}

fn escaped_len(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}
