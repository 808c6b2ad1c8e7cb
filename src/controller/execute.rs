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

/// Executes a plan for a sequence or a Sync. Status goes first: if the controller dies before
/// the Jobs are created, the next reconcile sees the recorded attempt and creates the Job then.
/// Returns the resourceVersion the status write produced, when status was written.
pub async fn execute<K, S>(
    obj: &K,
    status: Option<&S>,
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
    // The resourceVersion our status write produced, if it wrote one.
    let mut new_version = None;
    if let Some(status) = status {
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
        new_version = written.resource_version();
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let reference = obj.object_ref(&());
    // Alert notifications are queued now that the status recording them is written: queueing
    // never waits, and a later failing action cannot lose them.
    for action in actions {
        if let Action::Notify(n) = action {
            ctx.notifier.enqueue(&reference, n);
        }
    }
    for action in actions {
        match action {
            Action::CreateJob(job) => {
                let job_name = job.name_any();
                let sync = job
                    .labels()
                    .get(crate::api::labels::SYNC)
                    .cloned()
                    .unwrap_or_default();
                if let Err(holder) = ctx.sync_gate.claim(&ctx.jobs, &ns, &sync, &job_name) {
                    // Another reconciler started this Sync a moment ago; the holder's
                    // completion wakes us again, and the engine then reports the wait.
                    tracing::info!(object = %name, job = %job_name, %holder, "sync is busy; not creating job yet");
                    continue;
                }
                match jobs
                    .create(
                        &PostParams {
                            field_manager: Some(FIELD_MANAGER.into()),
                            ..Default::default()
                        },
                        job,
                    )
                    .await
                {
                    Ok(_) => tracing::info!(object = %name, job = %job_name, "created job"),
                    // Deterministic names: the Job exists from an earlier attempt at this plan.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => {
                        ctx.sync_gate.release(&ns, &sync, &job_name);
                        return Err(ExecuteError::CreateJob(job_name, e));
                    }
                }
            }
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
            Action::Event(ev) => {
                if ev.warning {
                    tracing::warn!(object = %name, reason = ev.reason, "{}", ev.note);
                } else {
                    tracing::info!(object = %name, reason = ev.reason, "{}", ev.note);
                }
                // An Event that cannot be recorded must not stop the run.
                if let Err(e) =
                    super::events::publish(&ctx.client, &ctx.reporter, &reference, ev).await
                {
                    tracing::warn!(object = %name, error = %e, "failed to record event");
                }
            }
            // Queued before this loop, right after the status write.
            Action::Notify(_) => {}
        }
    }
    Ok(new_version)
}
