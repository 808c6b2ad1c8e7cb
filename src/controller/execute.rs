//! Executing a plan: status first (server-side apply), then Jobs, then Events.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, Resource, ResourceExt};

use super::Context;
use crate::engine::Action;

/// Field manager of everything syncseq writes.
pub const FIELD_MANAGER: &str = "syncseq";

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("writing status of {0}: {1}")]
    Status(String, #[source] kube::Error),
    #[error("creating job {0}: {1}")]
    CreateJob(String, #[source] kube::Error),
    #[error("deleting job {0}: {1}")]
    DeleteJob(String, #[source] kube::Error),
}

/// Executes a plan for a sequence or a Sync: status (server-side apply), Jobs, then Events in
/// the background. With `status_first`, status is written before any Job call: if the
/// controller dies in between, the next reconcile sees the recorded attempt and creates the Job.
/// Returns the resourceVersion the status write produced, when status was written.
pub async fn execute<K, S>(
    obj: &K,
    status: Option<&S>,
    status_first: bool,
    actions: &[Action],
    ctx: &Context,
) -> Result<Option<String>, ExecuteError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize,
{
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let reference = obj.object_ref(&());
    let write_status = async {
        let Some(status) = status else {
            return Ok(None);
        };
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let written = api
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| ExecuteError::Status(name.clone(), e))?;
        Ok(written.resource_version())
    };
    let apply_jobs = async {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        for action in actions {
            match action {
                Action::CreateJob(job) => create_job(&jobs, job, &ns, &name, ctx).await?,
                Action::DeleteJob { name: job_name } => {
                    let params = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Background),
                        ..Default::default()
                    };
                    match jobs.delete(job_name, &params).await {
                        Ok(_) => tracing::info!(object = %name, job = %job_name, "deleted job"),
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
                // Queued once the status recording them is written, below.
                Action::Notify(_) => {}
            }
        }
        Ok::<(), ExecuteError>(())
    };
    // A plan that starts a new run writes status first: its Jobs carry a run number that only
    // status knows, and the engine treats a Job of an unknown run as a stale cache. Within a
    // run, Job names are deterministic and the engine adopts an existing Job, so the status
    // write and the Job calls run together — the next step's Job need not wait for status.
    let new_version = if status_first {
        let version = write_status.await?;
        apply_jobs.await?;
        version
    } else {
        let (version, jobs) = tokio::join!(write_status, apply_jobs);
        jobs?;
        version?
    };
    // Alert notifications are queued now that the status recording them is written: queueing
    // never waits, and a failed write above returned before queueing anything.
    for action in actions {
        if let Action::Notify(n) = action {
            ctx.notifier.enqueue(&reference, n);
        }
    }
    // Events are recorded off the reconcile path, in order: the next step's Job must not wait
    // for them, and an Event that cannot be recorded must not stop the run.
    let events: Vec<crate::engine::Event> = actions
        .iter()
        .filter_map(|a| {
            if let Action::Event(e) = a {
                Some(e.clone())
            } else {
                None
            }
        })
        .collect();
    if !events.is_empty() {
        let (client, reporter) = (ctx.client.clone(), ctx.reporter.clone());
        tokio::spawn(async move {
            for ev in &events {
                if let Err(e) = super::events::publish(&client, &reporter, &reference, ev).await {
                    tracing::warn!(object = %name, error = %e, "failed to record event");
                }
            }
        });
    }
    Ok(new_version)
}

/// Creates a step's Job after claiming its Sync. `AlreadyExists` is success: names are
/// deterministic, so the Job is this plan's own from an earlier attempt.
async fn create_job(
    jobs: &Api<Job>,
    job: &Job,
    ns: &str,
    owner: &str,
    ctx: &Context,
) -> Result<(), ExecuteError> {
    let job_name = job.name_any();
    let sync = job
        .labels()
        .get(crate::api::labels::SYNC)
        .cloned()
        .unwrap_or_default();
    if let Err(holder) = ctx.sync_gate.claim(&ctx.jobs, ns, &sync, &job_name) {
        // Another reconciler started this Sync a moment ago; the holder's completion wakes us
        // again, and the engine then reports the wait.
        tracing::info!(object = %owner, job = %job_name, %holder, "sync is busy; not creating job yet");
        return Ok(());
    }
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match jobs.create(&params, job).await {
        Ok(_) => tracing::info!(object = %owner, job = %job_name, "created job"),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            ctx.sync_gate.release(ns, &sync, &job_name);
            return Err(ExecuteError::CreateJob(job_name, e));
        }
    }
    Ok(())
}
