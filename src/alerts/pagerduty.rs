//! PagerDuty Events API v2 bodies. A failure (`RunFailed`, `StepFailed`, `RejectedRows`)
//! triggers an event and a recovery resolves it; all of one alert of one sequence share one
//! `dedup_key`, so PagerDuty folds repeated failures into one incident and the recovery
//! closes that incident.

use serde_json::{Value, json};

use super::Notification;
use super::message::{cut, json_body, kind_name, step_name, summary};
use crate::api::AlertTrigger;

/// PagerDuty truncates `payload.summary` at 1,024 characters.
const SUMMARY_MAX: usize = 1024;

/// The key PagerDuty de-duplicates on: the same for every notification of one alert of one
/// sequence, failure and recovery alike (at most 2 × 63 + 253 + 10 characters, below
/// PagerDuty's 255 only because sequence names are at most 63: see `name_rule`).
pub(crate) fn dedup_key(n: &Notification) -> String {
    format!("syncseq/{}/{}/{}", n.namespace, n.sequence, n.alert)
}

/// The event, without `routing_key`: the routing key is a credential, read from its Secret
/// and added at delivery, like the URL, so that it never sits in status or in a log.
pub(crate) fn event_body(n: &Notification) -> Value {
    let e = &n.event;
    if e.kind == AlertTrigger::Recovered {
        return json!({
            "event_action": "resolve",
            "dedup_key": dedup_key(n),
        });
    }
    let severity = match e.kind {
        AlertTrigger::RejectedRows => "warning",
        _ => "error",
    };
    let component = match &e.step {
        Some(_) => format!("{}/{}", n.sequence, step_name(e)),
        None => n.sequence.clone(),
    };
    json!({
        "event_action": "trigger",
        "dedup_key": dedup_key(n),
        "payload": {
            "summary": cut(&summary(n), SUMMARY_MAX),
            "source": format!("{}/{}", n.namespace, n.sequence),
            "severity": severity,
            "timestamp": e.time.0.to_string(),
            "component": component,
            "group": n.namespace,
            "class": kind_name(e.kind),
            "custom_details": json_body(n),
        },
        "client": "syncseq",
    })
}
