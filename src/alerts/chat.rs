//! Chat bodies besides Slack's: a Microsoft Teams message carrying an Adaptive Card (what a
//! Teams *Workflows* webhook, "When a Teams webhook request is received", posts to a channel)
//! and a Google Chat incoming-webhook message. Both say what the Slack message says: the
//! title, the lead, the facts and the error text of `message`.
//!
//! Names in a notification are Kubernetes names (lower-case letters, digits, `-`, `.`) and
//! cannot carry markup; the error text and an upstream's delivery id come from containers and
//! senders, so they go where markup is not read (an Adaptive Card `TextRun`, a Chat code
//! block) or lose the characters that would make a mention.

use serde_json::{Value, json};

use super::Notification;
use super::message::{cut, error_text, facts, kind_name, lead, summary, title, trigger_phrase};
use crate::api::AlertTrigger;

/// Teams refuses messages above about 28 KB; the error text is cut well below that.
const TEAMS_ERROR_MAX: usize = 4000;
/// Google Chat's limit on a message's text is 4,096 characters.
const GOOGLE_CHAT_TEXT_MAX: usize = 4096;

/// The Teams format: a `message` whose one attachment is an Adaptive Card 1.4 with the title,
/// the lead, the facts, the error text in monospace, and a footer.
pub(crate) fn teams_body(n: &Notification) -> Value {
    let e = &n.event;
    let failed = e.kind != AlertTrigger::Recovered;
    let plain = |text: String| json!({"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text}]});
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "text": title(n),
            "size": "Large",
            "weight": "Bolder",
            "style": "heading",
            "color": if failed { "Attention" } else { "Good" },
            "wrap": true,
        }),
        plain(lead(n, &cut(&trigger_phrase(n), 300), |s| s.to_string())),
        json!({
            "type": "FactSet",
            "facts": facts(n)
                .into_iter()
                .map(|(label, value)| json!({"title": label, "value": cut(&value, 500)}))
                .collect::<Vec<_>>(),
        }),
    ];
    if let Some(message) = error_text(n) {
        body.push(json!({
            "type": "RichTextBlock",
            "inlines": [{"type": "TextRun", "text": cut(&message, TEAMS_ERROR_MAX), "fontType": "Monospace"}],
        }));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": format!("syncseq alert {} · {} · {}", n.alert, kind_name(e.kind), e.time.0),
        "isSubtle": true,
        "size": "Small",
        "wrap": true,
    }));
    json!({
        "type": "message",
        "summary": cut(&summary(n), 300),
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "msteams": {"width": "Full"},
            },
        }],
    })
}

/// The Google Chat format: one `text` in Chat's markup (`*bold*`, ``` blocks): the title,
/// the lead, the facts and the error text in a code block.
pub(crate) fn google_chat_body(n: &Notification) -> Value {
    let trigger = no_mentions(&cut(&trigger_phrase(n), 300));
    let lead = lead(n, &trigger, |s| format!("*{s}*"));
    let mut text = format!("*{}*\n{lead}\n", title(n));
    for (label, value) in facts(n) {
        text.push_str(&format!("{label}: {}\n", cut(&value, 500)));
    }
    if let Some(message) = error_text(n) {
        // ``` inside the block would end it early.
        let budget = GOOGLE_CHAT_TEXT_MAX.saturating_sub(text.chars().count() + 6);
        text.push_str(&format!(
            "```{}```",
            cut(&message.replace("```", "'''"), budget)
        ));
    }
    json!({"text": cut(&text, GOOGLE_CHAT_TEXT_MAX)})
}

/// Google Chat reads `<users/all>` as a mention of everyone: untrusted text outside a code
/// block keeps no angle brackets.
fn no_mentions(s: &str) -> String {
    s.replace('<', "‹").replace('>', "›")
}
