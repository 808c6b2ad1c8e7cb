//! What a notification says, in the words every format shares: the one-line summary, and for
//! chat messages the title, the lead, the facts and the error text; and the JSON format's flat
//! object, which PagerDuty events carry as their details. The formats (`slack`, `chat`,
//! `pagerduty`) build on this module and it on none of them; each is documented in
//! docs/alerts.md, and tests pin the shapes.

use serde_json::{Value, json};

use super::Notification;
use crate::api::{AlertEvent, AlertStep, AlertTrigger, TriggerKind};

/// The longest error text quoted in a one-line summary, and kept per step in a `RunFailed`
/// notification's list of failed steps.
const SUMMARY_MESSAGE_MAX: usize = 300;

/// The most failed steps a summary or a lead names one by one; the rest are counted, so that a
/// run of 32 failed steps still makes a line a person can read.
const NAMED_STEPS_MAX: usize = 5;

/// A failed step's message as a `RunFailed` notification's list keeps it.
pub(super) fn cut_step_message(message: &str) -> String {
    cut(message, SUMMARY_MESSAGE_MAX)
}

/// The steps a `RunFailed` notification names as failed: every failed step of the run, or, in
/// a notification decided before the list existed, its one step. None for other kinds.
pub(super) fn failed_steps(e: &AlertEvent) -> Vec<&AlertStep> {
    if e.kind != AlertTrigger::RunFailed {
        return Vec::new();
    }
    match e.failed_steps.is_empty() {
        true => e.step.iter().collect(),
        false => e.failed_steps.iter().collect(),
    }
}

/// `a`, `a and b`, `a, b and c`; past [`NAMED_STEPS_MAX`] names, `a, b, c, d, e and 3 more`.
fn and_list(names: &[String]) -> String {
    let (named, more) = names.split_at(names.len().min(NAMED_STEPS_MAX));
    match (named, more.len()) {
        ([], _) => String::new(),
        ([one], 0) => one.clone(),
        (_, 0) => format!(
            "{} and {}",
            named[..named.len() - 1].join(", "),
            named[named.len() - 1]
        ),
        (_, more) => format!("{} and {more} more", named.join(", ")),
    }
}

/// One line a person can read in a notification list:
/// `revops/crm-hourly: run 12 failed: step workspaces failed: …`; when several steps failed,
/// `revops/crm-hourly: run 12 failed: steps deals and workspaces failed: …`.
pub(crate) fn summary(n: &Notification) -> String {
    let e = &n.event;
    let what = match e.kind {
        AlertTrigger::RunFailed => match failed_steps(e).as_slice() {
            several @ [_, _, ..] => format!(
                "run {} failed: steps {} failed",
                e.run,
                and_list(&several.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            ),
            _ => format!("run {} failed", e.run),
        },
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

/// A step's rows as the JSON format says them: `null` when the step reported none.
fn rows(s: &AlertStep) -> Value {
    match s.rows_synced.is_some() || s.rows_rejected.is_some() {
        true => json!({"synced": s.rows_synced, "rejected": s.rows_rejected}),
        false => Value::Null,
    }
}

/// The JSON format: one flat object, every key always present (`null` when not applicable).
/// `step`, `sync` and `rows` are those of the one step (for `RunFailed`: the first failed
/// step); `failedSteps` lists every failed step of a failed run.
pub(crate) fn json_body(n: &Notification) -> Value {
    let e = &n.event;
    let step = e.step.as_ref();
    let failed = (e.kind == AlertTrigger::RunFailed).then(|| {
        failed_steps(e)
            .into_iter()
            .map(|s| {
                json!({
                    "step": s.name,
                    "sync": s.sync,
                    "message": s.message.as_deref().map(cut_step_message),
                    "rows": rows(s),
                })
            })
            .collect::<Vec<_>>()
    });
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
        "rows": step.map_or(Value::Null, rows),
        "failedSteps": failed,
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
        AlertTrigger::RunFailed => match failed_steps(e).as_slice() {
            [] => format!("Run {run} ({trigger}) failed."),
            [s] => format!("Run {run} ({trigger}) failed at step {}.", strong(&s.name)),
            several => {
                let names: Vec<String> = several.iter().map(|s| strong(&s.name)).collect();
                format!(
                    "Run {run} ({trigger}) failed at steps {}.",
                    and_list(&names)
                )
            }
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

/// The error text a failure notification quotes; none for a recovery. For a run whose steps
/// failed side by side: each failed step's own, one line each (the run's message names only
/// the first).
pub(super) fn error_text(n: &Notification) -> Option<String> {
    let e = &n.event;
    if let several @ [_, _, ..] = failed_steps(e).as_slice() {
        let lines: Vec<String> = several
            .iter()
            .map(|s| match s.message.as_deref() {
                Some(m) => format!("step {} failed: {}", s.name, cut_step_message(m)),
                None => format!("step {} failed", s.name),
            })
            .collect();
        return Some(lines.join("\n"));
    }
    (e.kind != AlertTrigger::Recovered && !e.message.is_empty()).then(|| e.message.clone())
}

/// The labelled facts of a chat message: sequence, run, step (or a failed run's failed
/// steps), rows, failing since.
pub(super) fn facts(n: &Notification) -> Vec<(&'static str, String)> {
    let e = &n.event;
    let mut facts = vec![
        ("Sequence", format!("{}/{}", n.namespace, n.sequence)),
        ("Run", format!("{} ({})", e.run, trigger_name(e.trigger))),
    ];
    if let several @ [_, _, ..] = failed_steps(e).as_slice() {
        let steps: Vec<String> = several
            .iter()
            .map(|s| format!("{} (sync {})", s.name, s.sync))
            .collect();
        facts.push(("Failed steps", steps.join(", ")));
    } else if let Some(s) = &e.step {
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
        TriggerKind::Backfill => "Backfill",
    }
}

fn trigger_text(t: TriggerKind) -> &'static str {
    match t {
        TriggerKind::Schedule => "scheduled",
        TriggerKind::Manual => "manual request",
        TriggerKind::Upstream => "upstream",
        TriggerKind::Retry => "retry",
        TriggerKind::Backfill => "backfill",
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
