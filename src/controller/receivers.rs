//! The leader's reconcile of a WebhookReceiver: its webhook path and its `Ready` condition
//! (whether its Secret holds a signing secret) in status. The deliveries in status are the
//! endpoint's; this write leaves them alone.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Api, Resource, ResourceExt};

use super::Context;
use crate::api::WebhookReceiver;
use crate::cluster::events;
use crate::engine::Event;
use crate::engine::conditions::{self, Desired, READY};
use crate::engine::reasons;
use crate::receiver::{SecretProblem, read_secret, webhook_path};
use crate::text::printable;

/// How soon a receiver that is not ready is looked at again: a Secret created later is
/// noticed without a watch on every Secret of the cluster.
const NOT_READY_RECHECK: Duration = Duration::from_secs(30);
/// How soon a ready one is: a Secret deleted later is noticed too.
const READY_RECHECK: Duration = Duration::from_secs(300);

/// Why a receiver reconcile failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReceiverError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Secret(#[from] SecretProblem),
}

pub(crate) async fn reconcile(
    receiver: Arc<WebhookReceiver>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReceiverError> {
    let ns = receiver.namespace().unwrap_or_default();
    let name = receiver.name_any();
    let Some(uid) = receiver.uid() else {
        return Ok(Requeue::await_change());
    };
    let path = webhook_path(&uid);
    let (ready, reason, message) = match read_secret(&ctx.client, &ns, &receiver).await {
        Ok(_) => (
            true,
            reasons::READY,
            format!("deliveries are taken at {path}"),
        ),
        Err(e @ SecretProblem::NotFound(_)) => (
            false,
            reasons::SECRET_NOT_FOUND,
            format!("{e}: deliveries are refused until it exists"),
        ),
        Err(e @ SecretProblem::NoKey(..)) => (
            false,
            reasons::SECRET_KEY_MISSING,
            format!("{e}: deliveries are refused until it holds the signing secret"),
        ),
        Err(e @ SecretProblem::Forbidden(_)) => (
            false,
            reasons::SECRET_FORBIDDEN,
            format!("{e}: deliveries are refused until it may"),
        ),
        Err(e @ SecretProblem::Api(..)) => return Err(e.into()),
    };
    let desired = Desired {
        type_: READY,
        status: ready,
        reason,
        message: message.clone(),
    };
    let current = receiver.status.clone().unwrap_or_default();
    let before = current.conditions.iter().find(|c| c.type_ == READY);
    let newly_unready =
        !desired.status && before.is_none_or(|c| c.status != "False" || c.reason != desired.reason);
    let mut status = current.clone();
    let generation = receiver.meta().generation;
    conditions::set(
        &mut status.conditions,
        desired,
        generation,
        jiff::Timestamp::now(),
    );
    status.webhook_path = Some(path);
    status.observed_generation = generation;
    if status != current {
        let patch = serde_json::json!({ "status": {
            "webhookPath": status.webhook_path,
            "observedGeneration": status.observed_generation,
            "conditions": status.conditions,
        }});
        Api::<WebhookReceiver>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if newly_unready {
        let event = Event {
            warning: true,
            reason: reasons::NOT_READY,
            action: "Reconcile",
            note: printable(&message),
            job: None,
        };
        if let Err(e) = events::publish(
            &ctx.client,
            &ctx.reporter,
            &receiver.object_ref(&()),
            &event,
        )
        .await
        {
            tracing::warn!(namespace = %ns, receiver = %name, error = %e, "could not record an Event");
        }
    }
    Ok(Requeue::requeue(if ready {
        READY_RECHECK
    } else {
        NOT_READY_RECHECK
    }))
}

pub(crate) fn error_policy(
    receiver: Arc<WebhookReceiver>,
    error: &ReceiverError,
    _ctx: Arc<Context>,
) -> Requeue {
    tracing::warn!(namespace = ?receiver.namespace(), receiver = %receiver.name_any(), %error,
        "receiver reconcile failed; retrying");
    Requeue::requeue(NOT_READY_RECHECK)
}
