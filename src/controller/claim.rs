//! The last line of "a Sync never runs twice at once", kept in the API server.
//!
//! The engine waits while the caches show something holding the Sync. Two reconcilers deciding
//! at the same instant — two sequences, a sequence and the Sync's own run, or two replicas
//! during a leader hand-over — could both see it free before either new Job reaches a cache.
//! So before a Job is created, its Sync is claimed in `status.claim` with compare-and-swap: a
//! merge patch that carries the resourceVersion just read, which the API server refuses with
//! 409 when anyone wrote the Sync in between. Exactly one claimant wins; the others requeue.
//!
//! A claim is never released by hand: it holds while its Job (or a Pod of it) runs, and for
//! [`CLAIM_YOUNG`] after it was made unless the cache shows its Job finished. So a claimant
//! killed between claiming and creating blocks the Sync for at most that long.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::Context;
use super::observe::holders;
use crate::api::{Sync, SyncClaim};
use crate::engine::{JobOutcome, job_outcome};

/// Field manager of claim writes (separate from the status the Sync reconciler applies).
const CLAIM_MANAGER: &str = "syncseq-claim";

/// How long a claim whose Job is not in the cache still holds.
pub const CLAIM_YOUNG: SignedDuration = SignedDuration::from_secs(30);

/// Whether a claim was made.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    Yes,
    /// Someone else holds the Sync, or claimed it a moment ago: who.
    Refused(String),
}

/// Claims `sync` for `job` (run by `by`).
pub async fn claim(
    ctx: &Context,
    namespace: &str,
    sync: &str,
    job: &str,
    by: &str,
) -> Result<Claimed, kube::Error> {
    let api: Api<Sync> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(current) = api.get_opt(sync).await? else {
        return Ok(Claimed::Refused(format!("sync {sync} no longer exists")));
    };
    let now = Timestamp::now();
    let held = holders(ctx, namespace, [sync]);
    let cached_holders = held.get(sync).map(Vec::as_slice).unwrap_or_default();
    if let Some(other) = cached_holders.iter().find(|h| h.job != job) {
        return Ok(Claimed::Refused(other.by.clone()));
    }
    if let Some(c) = current.status.as_ref().and_then(|s| s.claim.as_ref()) {
        if c.job == job {
            return Ok(Claimed::Yes);
        }
        // Young claims hold unless the cache shows their Job finished. (Asking only whether
        // the Job is cached would race with the holders read above: a Job that reached the
        // cache in between, just created and running, would count as neither.)
        let finished = ctx
            .jobs
            .get(namespace, &c.job)
            .is_some_and(|j| job_outcome(&j).0 != JobOutcome::Active);
        if !finished && now < c.time.0 + CLAIM_YOUNG {
            return Ok(Claimed::Refused(c.by.clone()));
        }
    }
    tracing::debug!(
        %sync,
        %job,
        claim = ?current.status.as_ref().and_then(|s| s.claim.as_ref()).map(|c| &c.job),
        version = ?current.resource_version(),
        holders = ?cached_holders.iter().map(|h| &h.job).collect::<Vec<_>>(),
        "claiming"
    );
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": current.resource_version()},
        "status": {"claim": SyncClaim {
            job: job.to_string(),
            by: by.to_string(),
            time: Time(now),
        }},
    });
    let params = PatchParams {
        field_manager: Some(CLAIM_MANAGER.into()),
        ..Default::default()
    };
    match api.patch_status(sync, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(Claimed::Yes),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Claimed::Refused(format!(
            "another reconciler (sync {sync} changed while it was being claimed)"
        ))),
        Err(e) => Err(e),
    }
}
