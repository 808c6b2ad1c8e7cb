//! Executing a plan: claim the Syncs it starts, write status (server-side apply) and Jobs,
//! record refusals, then record Events.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, Resource, ResourceExt};

use super::Context;
use super::claim::{Claimant, Claimed, claim};
use super::freshness;
use crate::engine::Action;
use crate::failpoints::{self, crash_point};
use kube::runtime::reflector::ObjectRef;

/// Field manager of everything syncseq writes.
pub(super) const FIELD_MANAGER: &str = "syncseq";

#[derive(Debug, thiserror::Error)]
pub(super) enum ExecuteError {
    #[error("writing status of {0}: {1}")]
    Status(String, #[source] kube::Error),
    #[error("creating job {0}: {1}")]
    CreateJob(String, #[source] kube::Error),
    #[error("deleting job {0}: {1}")]
    DeleteJob(String, #[source] kube::Error),
    #[error("claiming sync {0}: {1}")]
    Claim(String, #[source] kube::Error),
    /// The object changed since the copy the plan was decided on: nothing of the plan's status
    /// was written, and it is decided again on the newer copy.
    #[error("status of {0} changed since it was read")]
    Superseded(String),
    #[error("reading jobs: {0}")]
    Read(#[source] kube::Error),
    /// A bug: the reconcile of one object panicked. Caught so that every other object goes on.
    #[error("reconcile panicked: {0}")]
    Panicked(String),
}

/// What executing a plan came to.
#[derive(Debug, Default)]
pub(super) struct Executed {
    /// The resourceVersions the plan's writes to the object produced, in order: a Sync
    /// claiming itself for its own run moves its version by the claim, a new run writes
    /// status twice.
    pub written: Vec<String>,
    /// A Sync the plan would start could not be claimed: nothing was written, and the
    /// reconcile is retried shortly. Says who holds it.
    pub deferred: Option<String>,
    /// The API server refused a create for good, and the status written records the refusal:
    /// what follows from it (a retry, the step failed) is decided next, and that write's watch
    /// event, the controller's own, wakes no one.
    pub refused: bool,
}

/// Executes a plan for a sequence or a Sync.
///
/// 1. Claims the Sync of every Job the plan creates (compare-and-swap in the API server). If a
///    claim is refused nothing at all is written — no status that says a step runs a Job that
///    will not exist, no Event — and the caller requeues.
/// 2. Creates and deletes Jobs and writes status (server-side apply). With `status_first`,
///    status is written before any Job call: a plan that starts a new run names Jobs by a run
///    number only status knows. Within a run the Jobs go first and status after, so the next
///    step's Job waits for no status write, and the one status write records what the creates
///    came to. (A controller that dies in between finds the Job by its deterministic name
///    and adopts it.)
/// 3. What the creates came to is recorded through `settle`, which returns the status to write
///    instead of the planned one, or None when there is nothing to add: the UID of each
///    created Job, and for a create the API server refused (invalid, forbidden, over quota,
///    denied by admission, or a Job of that name that is not ours) the server's message,
///    which fails the attempt. After a `status_first` write it is written as a second one.
/// 4. Records Events in the background; an Event announcing a Job that was not created is
///    dropped. (Alert notifications travel in the status written: see `notify`.)
pub(super) async fn execute<K, S>(
    obj: &K,
    status: Option<&S>,
    status_first: bool,
    actions: &[Action],
    ctx: &Context,
    settle: impl Fn(&Creations) -> Option<S>,
) -> Result<Executed, ExecuteError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    S: serde::Serialize,
{
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let reference = obj.object_ref(&());
    let owner_uid = obj.meta().uid.clone().unwrap_or_default();

    // Every status write is conditional on the resourceVersion it was decided on, so a
    // decision made on a copy someone has changed since — a stale cache, or a paused leader
    // whose write left before its fence closed and arrives after a standby took over — is
    // refused with 409 and made again instead of landing over newer status.
    let mut decided_on = obj.meta().resource_version.clone();
    let is_sync = K::kind(&()) == crate::api::Sync::kind(&());
    // No claim of this plan is older than this: how long a created Job's first event may take
    // and still find its Sync as the claim left it (`Freshness::created_job`).
    let claims_began = std::time::Instant::now();
    for action in actions {
        if let Action::CreateJob(job) = action {
            let sync = job
                .labels()
                .get(crate::api::labels::SYNC)
                .cloned()
                .unwrap_or_default();
            let claimant = claimant(K::kind(&()).as_ref(), &name, job);
            tracing::trace!(
                target: "syncseq::trace",
                namespace = %ns,
                name = %name,
                job = job.metadata.name.as_deref().unwrap_or_default(),
                "claim_start"
            );
            let claimed = claim(ctx, &ns, &sync, &claimant)
                .await
                .map_err(|e| ExecuteError::Claim(sync.clone(), e))?;
            tracing::trace!(
                target: "syncseq::trace",
                namespace = %ns,
                name = %name,
                job = job.metadata.name.as_deref().unwrap_or_default(),
                claimed = matches!(claimed, Claimed::Yes(_)),
                "claim_done"
            );
            match claimed {
                Claimed::Yes(Some(swap)) => {
                    // The claim changes nothing the Sync's reconciler reads: its watch event
                    // need not wake it.
                    let sync_key = freshness::key(&crate::api::Sync::kind(&()), &ns, &sync);
                    let produced: Vec<String> = swap.to.iter().cloned().collect();
                    ctx.freshness
                        .wrote(&sync_key, swap.from.as_deref(), &produced);
                    // A Sync claiming itself for its own run moved its own version.
                    if is_sync && sync == name && swap.from == decided_on {
                        decided_on = swap.to;
                    }
                }
                Claimed::Yes(None) => {}
                Claimed::Refused(holder) => {
                    tracing::info!(object = %name, %sync, %holder, "sync is held; deciding again shortly");
                    return Ok(Executed {
                        written: Vec::new(),
                        deferred: Some(holder),
                        refused: false,
                    });
                }
            }
        }
    }

    let write_status = |status: Option<&S>, version: Option<String>| {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        let body = status.map(|status| {
            let mut body = serde_json::json!({
                "apiVersion": K::api_version(&()),
                "kind": K::kind(&()),
                "status": status,
            });
            // (An apply with `resourceVersion: null` is invalid; without one it is unconditional.)
            if let Some(version) = version {
                body["metadata"] = serde_json::json!({ "resourceVersion": version });
            }
            body
        });
        let name = name.clone();
        async move {
            let Some(body) = body else {
                return Ok(None);
            };
            failpoints::pause_point(failpoints::BEFORE_STATUS_WRITE, || {
                format!("writing the status of {} {name}", K::kind(&()))
            })
            .await;
            let written = api
                .patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 409 => ExecuteError::Superseded(name.clone()),
                    e => ExecuteError::Status(name.clone(), e),
                })?;
            tracing::trace!(
                target: "syncseq::trace",
                kind = %K::kind(&()),
                namespace = written.meta().namespace.as_deref().unwrap_or_default(),
                name = %name,
                "status_written"
            );
            crash_point(failpoints::STATUS_WRITTEN);
            Ok::<_, ExecuteError>(Some(written))
        }
    };
    // A write that records Job calls already made cannot simply be decided again: the Events
    // announcing those Jobs would be lost, and the engine would wait for status to catch up
    // with Jobs it does not know of. When the object changed only where others write (a
    // condition of another field manager, the alert worker's fields, the claim, the spec or
    // metadata), the facts this write records still hold: it is sent again on the fresh
    // version. When this reconciler's own status changed too (another replica), it is not.
    let write_recording = async |status: Option<&S>, basis: &K, version: Option<String>| {
        let own_types = status
            .and_then(|s| serde_json::to_value(s).ok())
            .map(|s| condition_types(&s))
            .unwrap_or_default();
        let mut version = version;
        for _ in 0..RECORD_TRIES {
            match write_status(status, version).await {
                Err(ExecuteError::Superseded(_)) => {}
                written => return written,
            }
            let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
            let fresh = api
                .get_opt(&name)
                .await
                .map_err(|e| ExecuteError::Status(name.clone(), e))?;
            let Some(fresh) = fresh.filter(|f| f.meta().uid.as_deref() == Some(&owner_uid)) else {
                break;
            };
            if own_status(&fresh, &own_types) != own_status(basis, &own_types) {
                break;
            }
            tracing::info!(
                object = %name,
                "the object changed, not in the status only this reconciler writes; writing it again"
            );
            version = fresh.resource_version();
        }
        Err(ExecuteError::Superseded(name.clone()))
    };
    let apply_jobs = async {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        let mut creations = Creations::default();
        for action in actions {
            match action {
                Action::CreateJob(job) => {
                    match create_job(
                        &jobs,
                        job,
                        (&owner_uid, &name),
                        &ctx.freshness,
                        claims_began,
                    )
                    .await?
                    {
                        Created::Refused(why) => creations.refused.push((job.name_any(), why)),
                        Created::Ours(uid) => {
                            crash_point(failpoints::JOB_CREATED);
                            if let Some(uid) = uid {
                                creations.created.push((job.name_any(), uid));
                            }
                        }
                    }
                }
                Action::DeleteJob { name: job_name } => {
                    // Foreground: the Job stays, marked as being deleted, until its Pods are
                    // gone, so the caches go on seeing it hold its Sync.
                    let params = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Foreground),
                        ..Default::default()
                    };
                    match jobs.delete(job_name, &params).await {
                        Ok(_) => {
                            tracing::info!(object = %name, job = %job_name, "deleted job");
                            crash_point(failpoints::JOB_DELETED);
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(ExecuteError::DeleteJob(job_name.clone(), e)),
                    }
                }
                Action::Event(ev) if ev.warning => {
                    tracing::warn!(object = %name, reason = ev.reason, "{}", ev.note)
                }
                Action::Event(ev) => {
                    tracing::info!(object = %name, reason = ev.reason, "{}", ev.note)
                }
            }
        }
        Ok::<_, ExecuteError>(creations)
    };
    let (written, creations) = if status_first {
        let first = write_status(status, decided_on.clone()).await?;
        // Its watch event arrives while the Jobs are created: known now, it wakes nobody (the
        // reconcile records every write it made once it is done, this one included).
        if let Some(v) = first.as_ref().and_then(|w| w.resource_version())
            && decided_on.as_deref() != Some(v.as_str())
        {
            let key = freshness::key(&K::kind(&()), &ns, &name);
            ctx.freshness.wrote(&key, decided_on.as_deref(), &[v]);
        }
        let creations = apply_jobs.await?;
        match settle(&creations) {
            Some(settled) => {
                let basis = first.as_ref().unwrap_or(obj);
                let on = basis.resource_version();
                let second = write_recording(Some(&settled), basis, on).await?;
                (vec![first, second], creations)
            }
            None => (vec![first], creations),
        }
    } else {
        let creations = apply_jobs.await?;
        let settled = settle(&creations);
        if !creations.created.is_empty() {
            failpoints::pause_point(failpoints::BEFORE_STATUS_WRITE_AFTER_JOBS, || {
                format!("recording the jobs of {} {name}", K::kind(&()))
            })
            .await;
        }
        let status = settled.as_ref().or(status);
        let written = if creations.created.is_empty() && creations.refused.is_empty() {
            write_status(status, decided_on).await?
        } else {
            write_recording(status, obj, decided_on).await?
        };
        (vec![written], creations)
    };
    let written = written
        .into_iter()
        .flatten()
        .filter_map(|w| w.resource_version())
        .collect();
    let refusals = &creations.refused;
    let mut events: Vec<crate::engine::Event> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e)
                if !e
                    .job
                    .as_ref()
                    .is_some_and(|j| refusals.iter().any(|(r, _)| r == j)) =>
            {
                Some(e.clone())
            }
            _ => None,
        })
        .collect();
    if !refusals.is_empty() {
        // A refused Job's claim wrote a running record on its Sync, which no Job event will
        // now correct: the Sync's reconcile does (once the claim is no longer young).
        for action in actions {
            if let Action::CreateJob(job) = action
                && refusals.iter().any(|(r, _)| *r == job.name_any())
                && let Some(sync) = job.labels().get(crate::api::labels::SYNC)
            {
                let _ = ctx.wake_sync.send(ObjectRef::new(sync).within(&ns));
            }
        }
        for (job, why) in refusals {
            events.push(crate::engine::Event {
                warning: true,
                reason: crate::engine::reasons::JOB_CREATE_REFUSED,
                action: "CreateJob",
                note: format!("the API server refused to create job {job}: {why}"),
                job: None,
            });
        }
    }
    let events = crate::cluster::events::fold(events);
    // Events are recorded off the reconcile path, in order: the next step's Job must not wait
    // for them, and an Event that cannot be recorded must not stop the run.
    if !events.is_empty() {
        let (client, reporter) = (ctx.client.clone(), ctx.reporter.clone());
        tokio::spawn(async move {
            for ev in &events {
                if let Err(e) =
                    crate::cluster::events::publish(&client, &reporter, &reference, ev).await
                {
                    tracing::warn!(object = %name, error = %e, "failed to record event");
                }
            }
        });
    }
    Ok(Executed {
        written,
        deferred: None,
        refused: !refusals.is_empty(),
    })
}

/// How many times a status write that records Job calls is sent on a fresh version before the
/// reconcile gives way (the object keeps changing under it).
const RECORD_TRIES: usize = 3;

/// The types of the conditions in a status (as JSON).
fn condition_types(status: &serde_json::Value) -> Vec<String> {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["type"].as_str().map(str::to_string))
        .collect()
}

/// The part of an object's status only the reconciler writes: all of it but the alert
/// worker's `handledAlerts`, the claim (compare-and-swap) and the conditions of types the
/// reconciler does not write (`types`).
fn own_status<K: serde::Serialize>(obj: &K, types: &[String]) -> serde_json::Value {
    let mut status = serde_json::to_value(obj)
        .ok()
        .and_then(|mut o| o.get_mut("status").map(serde_json::Value::take))
        .unwrap_or_default();
    if let Some(map) = status.as_object_mut() {
        map.remove("handledAlerts");
        map.remove("claim");
        if let Some(serde_json::Value::Array(conditions)) = map.get_mut("conditions") {
            conditions.retain(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|t| types.iter().any(|o| o == t))
            });
        }
    }
    status
}

/// Who a claim is for, as messages name it: "sequence crm run 4" or "its own run 2".
fn claimant(kind: &str, owner: &str, job: &Job) -> Claimant {
    let run = job
        .labels()
        .get(crate::api::labels::RUN)
        .and_then(|r| r.parse::<i64>().ok())
        .unwrap_or_default();
    let job = job.name_any();
    match kind {
        "SyncSequence" => Claimant {
            job,
            by: crate::engine::sequence_runner(owner, run),
            sequence_run: Some((owner.to_string(), run)),
        },
        _ => Claimant {
            job,
            by: format!("its own run {run}"),
            sequence_run: None,
        },
    }
}

/// What creating a plan's Jobs came to.
#[derive(Debug, Default)]
pub(super) struct Creations {
    /// (Job, UID) of each Job created, or found already created by this object.
    pub created: Vec<(String, String)>,
    /// (Job, the API server's reason) of each create refused for good.
    pub refused: Vec<(String, String)>,
}

/// What one create came to.
enum Created {
    /// The Job exists and is ours (its UID when known; None when it was deleted since).
    Ours(Option<String>),
    /// Refused for good, with the API server's reason.
    Refused(String),
}

/// Creates a step's Job. Returns the API server's reason when it refuses the Job for good (the
/// attempt then fails); errors that may pass (throttling, a server error, the network) are
/// returned as errors and the reconcile is retried with backoff. `AlreadyExists` is success
/// only when the existing Job is controlled by this object: then it is this attempt's Job,
/// created by an earlier reconcile.
async fn create_job(
    jobs: &Api<Job>,
    job: &Job,
    (owner_uid, owner): (&str, &str),
    freshness: &freshness::Freshness,
    claimed: std::time::Instant,
) -> Result<Created, ExecuteError> {
    let job_name = job.name_any();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match jobs.create(&params, job).await {
        Ok(created) => {
            tracing::info!(object = %owner, job = %job_name, "created job");
            tracing::trace!(
                target: "syncseq::trace",
                namespace = created.meta().namespace.as_deref().unwrap_or_default(),
                name = %owner,
                job = %job_name,
                "job_created"
            );
            if job.labels().contains_key(crate::api::labels::SEQUENCE) {
                freshness.created_job(&job.namespace().unwrap_or_default(), &job_name, claimed);
            }
            Ok(Created::Ours(created.uid()))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = jobs
                .get_opt(&job_name)
                .await
                .map_err(|e| ExecuteError::CreateJob(job_name.clone(), e))?;
            let ours = existing.as_ref().is_some_and(|j| {
                j.owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && o.uid == owner_uid)
            });
            match existing {
                Some(_) if !ours => Ok(Created::Refused(format!(
                    "a Job named {job_name} already exists and is not controlled by {owner}"
                ))),
                // Ours, or deleted since: the engine looks again on the next reconcile.
                existing => Ok(Created::Ours(existing.and_then(|j| j.uid()))),
            }
        }
        Err(kube::Error::Api(s)) if refused_for_good(s.code) => {
            tracing::warn!(object = %owner, job = %job_name, code = s.code, reason = %s.message, "job create refused");
            // The message can quote what a user or an admission webhook wrote: made printable
            // and cut before it reaches status and Events.
            Ok(Created::Refused(crate::text::truncate(
                &crate::text::printable(&format!("{} ({})", s.message, s.code)),
            )))
        }
        Err(e) => Err(ExecuteError::CreateJob(job_name, e)),
    }
}

/// Client errors that retrying the same request cannot fix: 400 (bad request), 403 (RBAC,
/// quota, admission), 404 (the namespace is gone), 422 (invalid). 408 and 429 may pass.
fn refused_for_good(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 408 | 409 | 429)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SyncSequence;

    fn sequence(status: serde_json::Value) -> SyncSequence {
        let mut seq = crate::engine::fixtures::sequence(vec![crate::engine::fixtures::step("a")]);
        seq.status = Some(serde_json::from_value(status).unwrap());
        seq
    }

    #[test]
    fn only_the_status_the_reconciler_writes_is_compared() {
        let ours = vec!["Ready".to_string()];
        let condition = |t: &str, s: &str| {
            serde_json::json!({"type": t, "status": s, "reason": "R", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"})
        };
        let basis = sequence(serde_json::json!({
            "conditions": [condition("Ready", "True")],
            "lastRunNumber": 3,
        }));
        let others_wrote = sequence(serde_json::json!({
            "conditions": [condition("Ready", "True"), condition("Probe", "True")],
            "lastRunNumber": 3,
            "handledAlerts": ["a"],
        }));
        assert_eq!(own_status(&basis, &ours), own_status(&others_wrote, &ours));
        for changed in [
            serde_json::json!({"conditions": [condition("Ready", "False")], "lastRunNumber": 3}),
            serde_json::json!({"conditions": [condition("Ready", "True")], "lastRunNumber": 4}),
            serde_json::json!({"lastRunNumber": 3}),
        ] {
            assert_ne!(
                own_status(&basis, &ours),
                own_status(&sequence(changed.clone()), &ours),
                "{changed}"
            );
        }
    }
}
