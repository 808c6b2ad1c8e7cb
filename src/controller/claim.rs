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
//!
//! A sequence's claim also carries the Sync's running record (`lastRun` and the `Running`
//! condition, as the Sync's own reconcile would write them once the Job is cached): the step's
//! start then costs the Sync no status write of its own, and its Job's first event need not
//! wake the Sync.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::Context;
use super::observe::holders;
use crate::api::{Sync, SyncClaim};
use crate::engine::JobOutcome;

/// Field manager of claim writes (separate from the status the Sync reconciler applies).
const CLAIM_MANAGER: &str = "syncseq-claim";

pub(super) use crate::engine::CLAIM_YOUNG;

/// Whether a claim was made.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claimed {
    /// The claim holds; the write that made it, when this call made it.
    Yes(Option<Swap>),
    /// Someone else holds the Sync, or claimed it a moment ago: who.
    Refused(String),
}

/// A claim's compare-and-swap write: the Sync's resourceVersion it was made on and the one it
/// produced. A Sync that claims itself for its own run writes its status next, conditional on
/// the version it decided on; `to` carries that condition across the claim only when `from`
/// is that version (nobody else wrote the Sync in between).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Swap {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Who claims a Sync: the Job it is about to create, and who runs that Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claimant {
    pub job: String,
    /// Who runs it, for messages: "sequence crm run 4", "its own run 2".
    pub by: String,
    /// For a sequence's Job: the sequence and its run. Its claim carries the Sync's running
    /// record (`engine::claimed`), which the Sync would otherwise write when the Job appears.
    pub sequence_run: Option<(String, i64)>,
}

/// Claims `sync` for `claimant`'s Job.
///
/// First from the cached Sync: when the cache is current (the usual case: a Sync was last
/// written when its previous run ended), one compare-and-swap write claims it, with no read. Whenever the cache could be
/// wrong to act on — its copy is stale (the write fails with 409), it shows a claim already
/// ours (which only a current copy may confirm), or it refuses — the Sync is read from the
/// API server and decided on again.
pub(super) async fn claim(
    ctx: &Context,
    namespace: &str,
    sync: &str,
    claimant: &Claimant,
) -> Result<Claimed, kube::Error> {
    let api: Api<Sync> = Api::namespaced(ctx.client.clone(), namespace);
    let cached = ctx.syncs.get(&ObjectRef::new(sync).within(namespace));
    if let Some(cached) = cached
        && let Decision::Write = decide(ctx, namespace, &cached, &claimant.job)
        && let claimed @ Claimed::Yes(_) = write(&api, &cached, claimant).await?
    {
        return Ok(claimed);
    }
    let Some(current) = api.get_opt(sync).await? else {
        return Ok(Claimed::Refused(format!("sync {sync} no longer exists")));
    };
    match decide(ctx, namespace, &current, &claimant.job) {
        Decision::Ours => Ok(Claimed::Yes(None)),
        Decision::Refused(who) => Ok(Claimed::Refused(who)),
        Decision::Write => write(&api, &current, claimant).await,
    }
}

/// What to do about a claim, on one copy of the Sync.
enum Decision {
    /// The copy shows the claim made already, for this Job.
    Ours,
    /// Someone else holds the Sync, or claimed it a moment ago: who.
    Refused(String),
    /// Free: claim it with compare-and-swap on this copy's resourceVersion.
    Write,
}

fn decide(ctx: &Context, namespace: &str, current: &Sync, job: &str) -> Decision {
    let sync = current.name_any();
    let held = holders(ctx, namespace, [sync.as_str()]);
    let cached_holders = held.get(&sync).map(Vec::as_slice).unwrap_or_default();
    if let Some(other) = cached_holders.iter().find(|h| h.job != job) {
        return Decision::Refused(other.by.clone());
    }
    if let Some(c) = current.status.as_ref().and_then(|s| s.claim.as_ref()) {
        if c.job == job {
            return Decision::Ours;
        }
        // Young claims hold unless the cache shows their Job finished. (Asking only whether
        // the Job is cached would race with the holders read above: a Job that reached the
        // cache in between, just created and running, would count as neither.)
        let finished = ctx
            .jobs
            .get(namespace, &c.job)
            .is_some_and(|j| j.outcome != JobOutcome::Active);
        if !finished && Timestamp::now() < c.time.0 + CLAIM_YOUNG {
            return Decision::Refused(c.by.clone());
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
    Decision::Write
}

/// The compare-and-swap write on `copy`'s resourceVersion: refused with 409 when the Sync
/// changed since. Since nobody else wrote in between, the running record and conditions it
/// carries for a sequence's Job replace those of `copy` safely.
async fn write(api: &Api<Sync>, copy: &Sync, claimant: &Claimant) -> Result<Claimed, kube::Error> {
    let sync = copy.name_any();
    let version = copy.resource_version();
    let now = Timestamp::now();
    let mut status = serde_json::json!({"claim": SyncClaim {
        job: claimant.job.clone(),
        by: claimant.by.clone(),
        time: Time(now),
    }});
    if let Some((sequence, run)) = &claimant.sequence_run {
        let running = crate::engine::claimed(copy, &claimant.job, sequence, *run, now);
        let before = copy.status.as_ref().and_then(|s| s.last_run.as_deref());
        status["lastRun"] = replacing(before, running.last_run.as_deref());
        status["conditions"] = serde_json::json!(running.conditions);
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": version},
        "status": status,
    });
    let params = PatchParams {
        field_manager: Some(CLAIM_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch_status(&sync, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(written) => Ok(Claimed::Yes(Some(Swap {
            from: version,
            to: written.resource_version(),
        }))),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Claimed::Refused(format!(
            "another reconciler (sync {sync} changed while it was being claimed)"
        ))),
        Err(e) => Err(e),
    }
}

/// A merge patch that replaces `before` with `after`: a merge patch keeps the fields it does
/// not name, so those of the old record the new one lacks (rows, message) are named null.
fn replacing<T: serde::Serialize>(before: Option<&T>, after: Option<&T>) -> serde_json::Value {
    let mut patch = serde_json::json!(after);
    if let (Some(serde_json::Value::Object(old)), serde_json::Value::Object(new)) =
        (before.map(|b| serde_json::json!(b)), &mut patch)
    {
        for key in old.keys() {
            new.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{StepPhase, SyncRunRecord};

    #[test]
    fn a_replacing_patch_names_null_what_the_new_record_lacks() {
        let old = SyncRunRecord {
            job_name: "old".into(),
            rows_synced: Some(10),
            message: Some("done".into()),
            outcome: Some(StepPhase::Succeeded),
            ..Default::default()
        };
        let new = SyncRunRecord {
            job_name: "new".into(),
            outcome: Some(StepPhase::Running),
            ..Default::default()
        };
        assert_eq!(
            replacing(Some(&old), Some(&new)),
            serde_json::json!({
                "jobName": "new",
                "outcome": "Running",
                "rowsSynced": null,
                "message": null,
            })
        );
        assert_eq!(
            replacing(None, Some(&new)),
            serde_json::json!({"jobName": "new", "outcome": "Running"})
        );
    }
}
