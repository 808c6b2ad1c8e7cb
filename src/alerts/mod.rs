//! Alerts: who hears about what, once per change of state.
//!
//! This module is pure. [`evaluate`] turns what just happened to a sequence (steps and runs that
//! reached a final phase, as [`Happening`]s) and the alert states kept in status into the
//! [`Notification`]s to send and the new states; [`render`] builds the webhook body of a
//! notification in the alert's format. The engine calls `evaluate` while deciding, and emits one
//! `Action::Notify` per notification; the controller delivers them (`controller::notify`), off
//! the reconcile path. `docs/alerts.md` documents the semantics and both body formats.

mod body;
mod state;

#[cfg(test)]
mod tests;

use jiff::Timestamp;

use crate::api::{AlertTrigger, TriggerKind, Webhook};

pub use body::{json_body, render, slack_body, summary};
pub use state::{Happening, RunRef, StepInfo, StepOutcome, Subject, evaluate};

/// The condition the delivery worker sets on a sequence: `True` when every alert's last
/// notification was delivered, `False` (with the reason) when one was not. It is written under
/// its own field manager, so the reconciler never writes (or removes) it.
pub const ALERTS_DELIVERED: &str = "AlertsDelivered";

/// One notification to deliver to one alert's webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The alert's name.
    pub alert: String,
    /// Where to deliver it (the Secret holding the URL) and in which format.
    pub webhook: Webhook,
    /// What it is about.
    pub event: AlertEvent,
}

impl Notification {
    /// Identifies the notification among all others of the same sequence: at most one
    /// notification of a kind per alert, run and step exists, so a second one with the same key
    /// is a duplicate (a decision replayed on a stale cache).
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{:?}/{}/{}",
            self.event.namespace,
            self.event.sequence,
            self.alert,
            self.event.kind,
            self.event.run,
            self.event.step.as_ref().map_or("", |s| s.name.as_str())
        )
    }
}

/// What a notification says.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// Which change of state this is.
    pub kind: AlertTrigger,
    pub namespace: String,
    pub sequence: String,
    /// The run it is about (for `Recovered`: the run that succeeded).
    pub run: i64,
    /// What started that run.
    pub trigger: TriggerKind,
    /// Phase of the run (`RunFailed`, `Recovered`) or of the step (`StepFailed`,
    /// `RejectedRows`), as shown in status.
    pub phase: &'static str,
    /// The step it is about: the failed step, or the step that stopped a failed run.
    pub step: Option<StepInfo>,
    /// The error text (the run's or the step's message from status).
    pub message: String,
    /// For `Recovered`: the run whose notified failure started the failing period.
    pub failing_since_run: Option<i64>,
    /// When the controller decided it.
    pub time: Timestamp,
}
