//! Recording an accepted delivery in the receiver's status: the one write a delivery makes.
//!
//! The write replaces the status under the resourceVersion it was read at, so two replicas
//! that receive the same delivery at once (a sender's retry reaching the other one) record it
//! once: the second one's write conflicts, it reads again, finds the id, and answers
//! "duplicate". The objects that run after the receiver read the deliveries from there, so a
//! delivery accepted while no replica leads still starts its run later.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::payload::Incoming;
use crate::api::{Delivery, MAX_DELIVERIES, WebhookReceiver, WebhookReceiverStatus};

/// What recording did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// The delivery is new: the objects after the receiver will start on it.
    New,
    /// Its id was recorded already: a replay, or the sender's retry of one answered late.
    Duplicate,
}

/// Why a delivery could not be recorded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("the receiver was deleted or recreated meanwhile")]
    Gone,
    #[error("the receiver kept changing under five writes in a row")]
    Contended,
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Adds `incoming` to the front of `status.deliveries` unless its id is there already,
/// keeping the newest [`MAX_DELIVERIES`]. Its time is never before the newest one's: replicas'
/// clocks differ a little, and the objects after the receiver read a delivery older than the
/// one they handled last as one they have seen.
pub(crate) fn add(
    status: &mut WebhookReceiverStatus,
    incoming: &Incoming,
    now: Timestamp,
) -> Recorded {
    if status.deliveries.iter().any(|d| d.id == incoming.id) {
        return Recorded::Duplicate;
    }
    let newest = status.deliveries.first().map(|d| d.received_time.0);
    status.deliveries.insert(
        0,
        Delivery {
            id: incoming.id.clone(),
            phase: incoming.phase,
            received_time: Time(newest.map_or(now, |t| t.max(now))),
            summary: Some(incoming.summary.clone()).filter(|s| !s.is_empty()),
        },
    );
    status.deliveries.truncate(MAX_DELIVERIES);
    Recorded::New
}

/// How many times a conflicting write is read and tried again.
const ATTEMPTS: usize = 5;

/// Records `incoming` on the receiver `name` (of `api`'s namespace) whose UID is `uid`.
pub(crate) async fn record(
    api: &Api<WebhookReceiver>,
    name: &str,
    uid: &str,
    incoming: &Incoming,
) -> Result<Recorded, RecordError> {
    for _ in 0..ATTEMPTS {
        let mut receiver = match api.get_status(name).await {
            Ok(r) => r,
            Err(kube::Error::Api(e)) if e.code == 404 => return Err(RecordError::Gone),
            Err(e) => return Err(e.into()),
        };
        if receiver.uid().as_deref() != Some(uid) {
            return Err(RecordError::Gone);
        }
        let status = receiver.status.get_or_insert_with(Default::default);
        if add(status, incoming, Timestamp::now()) == Recorded::Duplicate {
            return Ok(Recorded::Duplicate);
        }
        // The object carries the resourceVersion it was read at: a write in between conflicts.
        match api
            .replace_status(name, &PostParams::default(), &receiver)
            .await
        {
            Ok(_) => return Ok(Recorded::New),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return Err(RecordError::Gone),
            Err(e) => return Err(e.into()),
        }
    }
    Err(RecordError::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RunPhase;

    fn incoming(id: &str) -> Incoming {
        Incoming {
            id: id.into(),
            phase: RunPhase::Succeeded,
            summary: format!("run {id}"),
        }
    }

    #[test]
    fn a_delivery_is_recorded_once_newest_first_within_the_window() {
        assert_eq!(MAX_DELIVERIES, 50, "status.deliveries' description says 50");
        let mut status = WebhookReceiverStatus::default();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(add(&mut status, &incoming("a"), now), Recorded::New);
        assert_eq!(add(&mut status, &incoming("a"), now), Recorded::Duplicate);
        assert_eq!(add(&mut status, &incoming("b"), now), Recorded::New);
        assert_eq!(status.deliveries[0].id, "b");
        // A replica whose clock is behind still records it as the newest.
        let behind = now - jiff::SignedDuration::from_secs(3);
        add(&mut status, &incoming("c"), behind);
        assert_eq!(status.deliveries[0].received_time.0, now);
        for i in 0..2 * MAX_DELIVERIES {
            add(&mut status, &incoming(&format!("n{i}")), now);
        }
        assert_eq!(status.deliveries.len(), MAX_DELIVERIES);
        assert_eq!(
            status.deliveries[0].id,
            format!("n{}", 2 * MAX_DELIVERIES - 1)
        );
    }
}
