//! What the delivery worker writes: an Event per outcome, and — under its own field manager
//! `syncseq-alerts`, so the reconciler's status apply (manager `syncseq`) neither removes nor
//! overwrites them — the `AlertsDelivered` condition and `status.handledAlerts`, the keys of
//! the outbox's notifications it is done with.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use super::webhook::AttemptError;
use super::{Delivery, FIELD_MANAGER, Shared};
use crate::alerts::ALERTS_DELIVERED;
use crate::api::{SyncSequence, SyncSequenceStatus};
use crate::engine::Event;
use crate::engine::reasons;

/// An alert's last delivery outcome, for the condition.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    Delivered {
        what: String,
    },
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// Where a delivery stands, as recorded.
pub(super) enum Progress<'a> {
    /// The receiver accepted it.
    Delivered,
    /// It failed and is retried until the receiver accepts it.
    Retrying(&'a AttemptError),
    /// It failed for good (a final answer, a refused address): it leaves the outbox.
    Abandoned(&'a AttemptError),
}

/// Records a delivery's progress: a log line, an Event, the condition and, once the delivery
/// is over, its key in `handledAlerts`.
pub(super) async fn record(shared: &Shared, d: &Delivery, attempts: u32, progress: Progress<'_>) {
    let n = &d.notification;
    let e = &n.event;
    let kind = format!("{:?}", e.kind);
    let secret = &n.webhook.url_secret_ref;
    let over = !matches!(progress, Progress::Retrying(_));
    let (event, outcome) = match progress {
        Progress::Delivered => {
            tracing::info!(
                namespace = %n.namespace,
                sequence = %n.sequence,
                alert = %n.alert,
                secret = %secret.name,
                kind = %kind,
                run = e.run,
                attempts,
                "alert notification delivered"
            );
            let what = format!("{kind} notification for run {}", e.run);
            (
                Event {
                    warning: false,
                    reason: reasons::ALERT_SENT,
                    action: "Notify",
                    note: format!("alert {}: {what} delivered (attempt {attempts})", n.alert),
                    job: None,
                },
                Outcome::Delivered { what },
            )
        }
        Progress::Retrying(err) | Progress::Abandoned(err) => {
            let retrying = !over;
            tracing::warn!(
                namespace = %n.namespace,
                sequence = %n.sequence,
                alert = %n.alert,
                secret = %secret.name,
                kind = %kind,
                run = e.run,
                attempts,
                reason = err.reason,
                error = %err.message,
                retrying,
                "alert notification not delivered"
            );
            let plural = if attempts == 1 { "" } else { "s" };
            let state = if retrying {
                format!(
                    "not delivered yet after {attempts} attempt{plural} (retrying until the receiver accepts it)"
                )
            } else {
                format!("not delivered after {attempts} attempt{plural}")
            };
            let message = format!(
                "alert {} (Secret {}, key {}): {kind} notification for run {} {state}: {}",
                n.alert, secret.name, secret.key, e.run, err.message
            );
            (
                Event {
                    warning: true,
                    reason: reasons::ALERT_DELIVERY_FAILED,
                    action: "Notify",
                    note: message.clone(),
                    job: None,
                },
                Outcome::Failed {
                    reason: err.reason,
                    message,
                },
            )
        }
    };
    if let Err(err) =
        crate::cluster::events::publish(&shared.client, &shared.reporter, &d.regarding, &event)
            .await
    {
        tracing::warn!(sequence = %n.sequence, error = %err, "failed to record event");
    }
    let done = over.then_some(n.key.as_str());
    let key = (n.namespace.clone(), n.sequence.clone());
    let mut outcomes = shared.outcomes.lock().await;
    outcomes
        .entry(key.clone())
        .or_default()
        .insert(n.alert.clone(), outcome);
    if let Err(err) = write(&shared.client, &key, &mut outcomes, done).await {
        tracing::warn!(sequence = %n.sequence, error = %err, "failed to write the delivery status");
    }
}

/// The condition for a sequence's alerts: False while any alert's last delivery failed.
fn condition_for(alerts: &BTreeMap<String, Outcome>) -> (bool, &'static str, String) {
    let failed: Vec<(&'static str, &str)> = alerts
        .values()
        .filter_map(|o| match o {
            Outcome::Failed { reason, message } => Some((*reason, message.as_str())),
            Outcome::Delivered { .. } => None,
        })
        .collect();
    match failed.as_slice() {
        [] => {
            let delivered: Vec<String> = alerts
                .iter()
                .map(|(alert, o)| match o {
                    Outcome::Delivered { what } => format!("alert {alert}: {what} delivered"),
                    Outcome::Failed { .. } => unreachable!(),
                })
                .collect();
            (true, reasons::DELIVERED, delivered.join("; "))
        }
        [(reason, message)] => (false, reason, message.to_string()),
        [(reason, message), rest @ ..] => (
            false,
            reason,
            format!("{message} (and {} more alert(s) failing)", rest.len()),
        ),
    }
}

/// Applies the worker's fields: the `AlertsDelivered` condition the recorded outcomes of the
/// sequence's alerts call for (alerts no longer in the spec are forgotten first), and
/// `handledAlerts` with `done` added, cut to the keys still pending. Called with the outcomes
/// locked, which also serialises the writes, so an older outcome never lands last.
///
/// Conditional on the resourceVersion read, like every status write (see `execute`): when the
/// reconciler writes in between, the sequence is read and the fields worked out again.
pub(super) async fn write(
    client: &Client,
    key: &(String, String),
    outcomes: &mut HashMap<(String, String), BTreeMap<String, Outcome>>,
    done: Option<&str>,
) -> Result<(), kube::Error> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        match write_once(client, key, outcomes, done).await {
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < ATTEMPTS => attempt += 1,
            written => return written,
        }
    }
}

async fn write_once(
    client: &Client,
    (namespace, name): &(String, String),
    outcomes: &mut HashMap<(String, String), BTreeMap<String, Outcome>>,
    done: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<SyncSequence> = Api::namespaced(client.clone(), namespace);
    let Some(seq) = api.get_opt(name).await? else {
        outcomes.remove(&(namespace.clone(), name.clone()));
        return Ok(());
    };
    let status = seq.status.clone().unwrap_or_default();
    let pending: Vec<&str> = status
        .pending_alerts
        .iter()
        .map(|p| p.key.as_str())
        .collect();
    let mut handled: Vec<String> = status
        .handled_alerts
        .iter()
        .map(String::as_str)
        .chain(done)
        .filter(|k| pending.contains(k))
        .map(str::to_string)
        .collect();
    handled.sort();
    handled.dedup();
    let alerts = outcomes
        .entry((namespace.clone(), name.clone()))
        .or_default();
    alerts.retain(|alert, _| seq.spec.alerts.iter().any(|a| a.name == *alert));
    let current = status
        .conditions
        .iter()
        .find(|c| c.type_ == ALERTS_DELIVERED);
    let condition = (!alerts.is_empty()).then(|| {
        let (ok, reason, message) = condition_for(alerts);
        let state = if ok { "True" } else { "False" };
        let since = match current {
            Some(c) if c.status == state => c.last_transition_time.clone(),
            _ => Time(jiff::Timestamp::now()),
        };
        Condition {
            type_: ALERTS_DELIVERED.into(),
            status: state.into(),
            reason: reason.into(),
            message,
            observed_generation: seq.metadata.generation,
            last_transition_time: since,
        }
    });
    let unchanged_condition = match (&condition, current) {
        (Some(new), Some(old)) => {
            new.status == old.status && new.reason == old.reason && new.message == old.message
        }
        (None, _) => true,
        (Some(_), None) => false,
    };
    if unchanged_condition && handled == status.handled_alerts {
        return Ok(());
    }
    // Both fields in every apply: a field this manager applied before and leaves out now
    // would be removed.
    let conditions = condition.or_else(|| current.cloned());
    let mut body = serde_json::json!({
        "apiVersion": "syncseq.dev/v1alpha1",
        "kind": "SyncSequence",
        "status": {"conditions": conditions.into_iter().collect::<Vec<_>>(), "handledAlerts": handled},
    });
    if let Some(version) = &seq.metadata.resource_version {
        body["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}

/// Whether the status the reconciler would apply is already in place, leaving aside what the
/// delivery worker writes and the reconciler never does: the `AlertsDelivered` condition and
/// `handledAlerts`.
pub(crate) fn status_unchanged(
    current: Option<&SyncSequenceStatus>,
    planned: &SyncSequenceStatus,
) -> bool {
    let Some(current) = current else {
        return false;
    };
    if current.handled_alerts.is_empty()
        && current
            .conditions
            .iter()
            .all(|c| c.type_ != ALERTS_DELIVERED)
    {
        return current == planned;
    }
    let mut current = current.clone();
    current.conditions.retain(|c| c.type_ != ALERTS_DELIVERED);
    current.handled_alerts.clear();
    &current == planned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_is_false_while_any_alert_fails() {
        let mut alerts = BTreeMap::new();
        alerts.insert(
            "a".to_string(),
            Outcome::Delivered {
                what: "RunFailed notification for run 1".into(),
            },
        );
        assert!(condition_for(&alerts).0);
        alerts.insert(
            "b".to_string(),
            Outcome::Failed {
                reason: "SecretNotFound",
                message: "Secret x not found".into(),
            },
        );
        let (ok, reason, message) = condition_for(&alerts);
        assert!(!ok);
        assert_eq!(reason, "SecretNotFound");
        assert_eq!(message, "Secret x not found");
    }

    #[test]
    fn status_comparison_ignores_the_alerts_condition() {
        let planned = SyncSequenceStatus::default();
        let mut current = planned.clone();
        current.conditions.push(Condition {
            type_: ALERTS_DELIVERED.into(),
            status: "True".into(),
            reason: "Delivered".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(jiff::Timestamp::now()),
        });
        assert!(status_unchanged(Some(&current), &planned));
        current.book.last_run_number = Some(1);
        assert!(!status_unchanged(Some(&current), &planned));
        assert!(!status_unchanged(None, &planned));
    }

    #[test]
    fn status_comparison_ignores_the_handled_keys() {
        let planned = SyncSequenceStatus::default();
        let current = SyncSequenceStatus {
            handled_alerts: vec!["k".into()],
            ..planned.clone()
        };
        assert!(status_unchanged(Some(&current), &planned));
    }
}
