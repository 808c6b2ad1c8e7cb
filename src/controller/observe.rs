//! Turning cached Jobs and Pods into the engine's view of them.
//!
//! A Job belongs to the object that controls it (its controller owner reference, by UID):
//! labels say what a Job is about, but anyone can write labels, and an object deleted and
//! recreated under the same name has a new UID. Jobs with forged labels, or orphans of an
//! earlier object of the same name, never join a run.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Api, ResourceExt};

use super::Context;
use super::index::{IndexKey, controller_of};
use crate::api::{GROUP, RunStatus, labels};
use crate::engine::{Holder, JobOutcome, JobView, SyncJob, job_outcome, pod_report};

/// The label the Job controller puts on every Pod of a Job, naming it.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Whether a Job is controlled by a syncseq object (a SyncSequence or a Sync).
fn syncseq_controlled(meta: &ObjectMeta) -> Option<&OwnerReference> {
    controller_of(meta).filter(|o| {
        o.api_version.split('/').next() == Some(GROUP)
            && matches!(o.kind.as_str(), "SyncSequence" | "Sync")
    })
}

/// The Jobs of a namespace that `owner_uid` controls, with their Pods' results.
pub fn owned_jobs(ctx: &Context, namespace: &str, owner_uid: &str) -> Vec<JobView> {
    let jobs = ctx
        .jobs
        .find(namespace, &IndexKey::Owner(owner_uid.to_string()));
    with_pods(ctx, namespace, jobs.iter().map(|j| j.as_ref()))
}

/// Views of the given Jobs, each with the results of the Pods it controls.
fn with_pods<'a>(
    ctx: &Context,
    namespace: &str,
    jobs: impl Iterator<Item = &'a Job>,
) -> Vec<JobView> {
    jobs.filter_map(|job| {
        let pods = ctx.pods.find(namespace, &IndexKey::Owner(job.uid()?));
        job_view(job, pods.iter().map(|p| p.as_ref()))
    })
    .collect()
}

/// Every Job that runs one Sync and is controlled by a syncseq object, with who started it.
pub fn sync_jobs(ctx: &Context, namespace: &str, sync: &str) -> Vec<SyncJob> {
    let jobs: Vec<_> = ctx
        .jobs
        .find(namespace, &IndexKey::Sync(sync.to_string()))
        .into_iter()
        .filter(|j| syncseq_controlled(&j.metadata).is_some())
        .collect();
    jobs.iter()
        .filter_map(|job| {
            let view = with_pods(ctx, namespace, std::iter::once(job.as_ref())).pop()?;
            let sequence = syncseq_controlled(&job.metadata)
                .filter(|o| o.kind == "SyncSequence")
                .map(|o| o.name.clone());
            Some(SyncJob { view, sequence })
        })
        .collect()
}

/// The engine's view of a syncseq Job, or None when its labels are not ours.
fn job_view<'a>(job: &Job, pods: impl IntoIterator<Item = &'a Pod>) -> Option<JobView> {
    let l = job.labels();
    let (outcome, finished_at) = job_outcome(job);
    Some(JobView {
        name: job.name_any(),
        uid: job.uid()?,
        run: l.get(labels::RUN)?.parse().ok()?,
        step: l.get(labels::STEP)?.clone(),
        sync: l.get(labels::SYNC)?.clone(),
        attempt: l.get(labels::ATTEMPT)?.parse().ok()?,
        outcome,
        finished_at,
        report: pod_report(pods),
        deleting: job.metadata.deletion_timestamp.is_some(),
        created: job.metadata.creation_timestamp.as_ref().map(|t| t.0),
    })
}

/// A step's Job that status saw but the cache does not hold: the cache may lag behind (a
/// second replica, a watch that reconnects), so before the engine calls the Job deleted, ask
/// the API server. Only reads when a seen Job is missing, which is rare.
pub async fn confirm_missing(
    ctx: &Context,
    namespace: &str,
    run: Option<&RunStatus>,
    jobs: &mut Vec<JobView>,
) -> Result<(), kube::Error> {
    let Some(run) = run else { return Ok(()) };
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    for step in run.steps.iter().filter(|s| !s.phase.is_final()) {
        let (Some(name), Some(uid)) = (&step.job_name, &step.job_uid) else {
            continue;
        };
        if jobs.iter().any(|j| &j.uid == uid) {
            continue;
        }
        if let Some(job) = api.get_opt(name).await?
            && job.uid().as_ref() == Some(uid)
        {
            jobs.extend(with_pods(ctx, namespace, std::iter::once(&job)));
        }
    }
    Ok(())
}

/// What holds each of the given Syncs of a namespace: Jobs controlled by a syncseq object that
/// have not finished or are being deleted, and Pods of syncseq Jobs that have not terminated —
/// after a background delete the Job is gone while its Pod runs out its grace period.
pub fn holders<'a>(
    ctx: &Context,
    namespace: &str,
    syncs: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Vec<Holder>> {
    let mut out: BTreeMap<String, Vec<Holder>> = BTreeMap::new();
    let by = |meta: &ObjectMeta, job: &str| {
        let l = meta.labels.as_ref();
        match (
            l.and_then(|l| l.get(labels::SEQUENCE)),
            l.and_then(|l| l.get(labels::RUN)),
        ) {
            (Some(seq), Some(run)) => format!("sequence {seq} run {run}"),
            (None, Some(run)) => format!("its own run {run}"),
            _ => format!("job {job}"),
        }
    };
    for sync in syncs {
        if out.contains_key(sync) {
            continue;
        }
        let key = IndexKey::Sync(sync.to_string());
        let mut held = Vec::new();
        for job in ctx.jobs.find(namespace, &key) {
            if syncseq_controlled(&job.metadata).is_none() {
                continue;
            }
            let active = job_outcome(&job).0 == JobOutcome::Active
                || job.metadata.deletion_timestamp.is_some();
            if active {
                let name = job.name_any();
                held.push(Holder {
                    by: by(&job.metadata, &name),
                    job: name,
                });
            }
        }
        for pod in ctx.pods.find(namespace, &key) {
            let terminated = matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            // A Pod whose Job was deleted with `--cascade=orphan` has no owner left, and runs
            // on: it still holds its Sync. The Job controller's label names its Job.
            let owner = controller_of(&pod.metadata).filter(|o| o.kind == "Job");
            let Some(job) = owner
                .map(|o| o.name.clone())
                .or_else(|| pod.labels().get(JOB_NAME_LABEL).cloned())
            else {
                continue;
            };
            let managed =
                pod.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER);
            if terminated || !managed || held.iter().any(|h: &Holder| h.job == job) {
                continue;
            }
            let what = if owner.is_some() {
                "is still terminating"
            } else {
                "was orphaned and is still running"
            };
            held.push(Holder {
                by: format!("{} (a Pod of job {job} {what})", by(&pod.metadata, &job)),
                job,
            });
        }
        if !held.is_empty() {
            out.insert(sync.to_string(), held);
        }
    }
    out
}
