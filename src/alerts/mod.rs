//! Alerts: who hears about what, once per change of state.
//!
//! This module is pure. [`evaluate`] turns what just happened to a sequence (steps and runs that
//! reached a final phase, as [`Happening`]s) and the alert states kept in status into the
//! [`Notification`]s to send and the new states; [`render`] builds the webhook body of a
//! notification in the alert's format (JSON, Slack, Teams, Google Chat or PagerDuty). The
//! engine calls `evaluate` while deciding and puts each notification in the outbox of the
//! status it writes (`status.pendingAlerts`); the controller delivers what the written status
//! holds (`controller::notify`), off the reconcile path. `docs/alerts.md` documents the
//! semantics and every body format.

mod chat;
mod message;
mod pagerduty;
mod slack;
mod state;

#[cfg(test)]
mod tests;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::{AlertEvent, AlertTrigger, PendingAlert, Webhook, WebhookFormat};

pub(crate) use chat::{google_chat_body, teams_body};
pub(crate) use message::json_body;
pub(crate) use pagerduty::event_body as pagerduty_body;
pub(crate) use slack::slack_body;
pub(crate) use state::{Happening, RunRef, StepOutcome, Subject, evaluate};

/// The condition the delivery worker sets on a sequence: `True` when every alert's last
/// notification was delivered, `False` (with the reason) when one was not. It is written under
/// its own field manager, so the reconciler never writes (or removes) it.
pub(crate) const ALERTS_DELIVERED: &str = "AlertsDelivered";

/// The body of a notification, in its webhook's format.
pub(crate) fn render(n: &Notification) -> Value {
    match n.webhook.format {
        WebhookFormat::Json => json_body(n),
        WebhookFormat::Slack => slack_body(n),
        WebhookFormat::Teams => teams_body(n),
        WebhookFormat::GoogleChat => google_chat_body(n),
        WebhookFormat::PagerDuty => pagerduty_body(n),
    }
}

/// One notification to deliver to one alert's webhook.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Notification {
    pub namespace: String,
    pub sequence: String,
    /// The alert's name.
    pub alert: String,
    /// Identifies the notification for good (see [`key`]).
    pub key: String,
    /// Where to deliver it (the Secret holding the URL) and in which format.
    pub webhook: Webhook,
    /// What it is about.
    pub event: AlertEvent,
}

impl Notification {
    /// The notification as the outbox in status keeps it.
    pub(crate) fn pending(&self) -> PendingAlert {
        PendingAlert {
            key: self.key.clone(),
            alert: self.alert.clone(),
            event: self.event.clone(),
        }
    }

    /// A notification from the outbox, to the webhook the alert has now.
    pub(crate) fn from_pending(
        pending: &PendingAlert,
        namespace: &str,
        sequence: &str,
        webhook: &Webhook,
    ) -> Self {
        Notification {
            namespace: namespace.to_string(),
            sequence: sequence.to_string(),
            alert: pending.alert.clone(),
            key: pending.key.clone(),
            webhook: webhook.clone(),
            event: pending.event.clone(),
        }
    }
}

/// The key of a notification: at most one notification of a kind per alert, run and step of
/// one sequence (by UID, so a sequence deleted and recreated under its name starts afresh)
/// exists, so the key names it for good — receivers can de-duplicate on it.
pub(crate) fn key(
    sequence_uid: &str,
    alert: &str,
    kind: AlertTrigger,
    run: i64,
    step: Option<&str>,
) -> String {
    let name = format!(
        "{sequence_uid}/{alert}/{kind:?}/{run}/{}",
        step.unwrap_or("")
    );
    let digest = Sha256::digest(name.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}
