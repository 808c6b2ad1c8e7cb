//! The Slack format: an incoming-webhook message, `text` plus Block Kit `blocks`, saying what
//! every chat message says (`message`), escaped and cut to Slack's limits.

use serde_json::{Value, json};

use super::Notification;
use super::message::{cut, error_text, facts, kind_name, lead, summary, title, trigger_phrase};
use crate::api::AlertTrigger;

/// Slack limits (Block Kit reference): header text 150 characters, section text 3000, section
/// field text 2000.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;

/// The Slack format: `text` (the summary; the fallback Slack shows in notifications) and
/// `blocks`: a header, a section with what happened and the error text, a section of fields,
/// and a context line. Text is escaped (`&`, `<`, `>`) and cut to Block Kit's limits.
pub(crate) fn slack_body(n: &Notification) -> Value {
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

fn field(label: &str, value: &str) -> Value {
    let text = format!(
        "*{label}*\n{}",
        escape_fit(value, SLACK_FIELD_MAX - label.len() - 4)
    );
    json!({"type": "mrkdwn", "text": text})
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
