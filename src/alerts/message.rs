//! What a notification says, in the words every format shares: the one-line summary, and for
//! chat messages the title, the lead, the facts and the error text; and the JSON format's flat
//! object, which PagerDuty events carry as their details. The formats (`slack`, `chat`,
//! `pagerduty`) build on this module and it on none of them; each is documented in
//! docs/alerts.md, and tests pin the shapes.

use serde_json::{Value, json};

use super::Notification;
use crate::api::{AlertEvent, AlertTrigger, TriggerKind};

/// The longest error text quoted in a one-line summary.
const SUMMARY_MESSAGE_MAX: usize = 300;

/// One line a person can read in a notification list:
/// `revops/crm-hourly: run 12 failed: step workspaces failed: …`.
pub(crate) fn summary(n: &Notification) -> String {
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
pub(crate) fn json_body(n: &Notification) -> Value {
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
        TriggerKind::Retry => "Retry",
    }
}

fn trigger_text(t: TriggerKind) -> &'static str {
    match t {
        TriggerKind::Schedule => "scheduled",
        TriggerKind::Manual => "manual request",
        TriggerKind::Upstream => "upstream",
        TriggerKind::Retry => "retry",
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
