//! Executing a plan: status first (server-side apply), then Jobs, then Events.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, Resource, ResourceExt};

use super::Context;
use crate::api::SyncSequence;
use crate::engine::{Action, Plan};

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

/// Executes a plan for a sequence. Status goes first: if the controller dies before the Jobs are
/// created, the next reconcile sees the recorded attempt and creates the Job then.
pub async fn execute(seq: &SyncSequence, plan: &Plan, ctx: &Context) -> Result<(), ExecuteError> {
    let ns = seq.namespace().unwrap_or_default();
    let name = seq.name_any();
    if seq.status.as_ref() != Some(&plan.status) {
        let sequences: Api<SyncSequence> = Api::namespaced(ctx.client.clone(), &ns);
        let body = serde_json::json!({
            "apiVersion": "syncseq.dev/v1alpha1",
            "kind": "SyncSequence",
            "status": plan.status,
        });
        sequences
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| ExecuteError::Status(name.clone(), e))?;
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let reference = seq.object_ref(&());
    for action in &plan.actions {
        match action {
            Action::CreateJob(job) => {
                let job_name = job.name_any();
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
                    Ok(_) => tracing::info!(sequence = %name, job = %job_name, "created job"),
                    // Deterministic names: the Job exists from an earlier attempt at this plan.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(ExecuteError::CreateJob(job_name, e)),
                }
            }
            Action::DeleteJob { name: job_name } => {
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                match jobs.delete(job_name, &params).await {
                    Ok(_) => tracing::info!(sequence = %name, job = %job_name, "deleted job"),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(ExecuteError::DeleteJob(job_name.clone(), e)),
                }
            }
            Action::Event(ev) => {
                if ev.warning {
                    tracing::warn!(sequence = %name, reason = ev.reason, "{}", ev.note);
                } else {
                    tracing::info!(sequence = %name, reason = ev.reason, "{}", ev.note);
                }
                // An Event that cannot be recorded must not stop the run.
                if let Err(e) =
                    super::events::publish(&ctx.client, &ctx.reporter, &reference, ev).await
                {
                    tracing::warn!(sequence = %name, error = %e, "failed to record event");
                }
            }
        }
    }
    Ok(())
}
