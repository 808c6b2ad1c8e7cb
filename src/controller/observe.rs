//! Turning cached Jobs and Pods into the engine's view of them.
//!
//! A Job belongs to the object that controls it (its controller owner reference, by UID):
//! labels say what a Job is about, but anyone can write labels, and an object deleted and
//! recreated under the same name has a new UID. Jobs with forged labels, or orphans of an
//! earlier object of the same name, never join a run.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use kube::{Api, ResourceExt};

use super::Context;
use super::compact::{JobEntry, PodEntry};
use super::index::{Cache, IndexKey};
use crate::api::RunStatus;
use crate::engine::{Holder, JobView, SyncJob, latest_report};

/// The Jobs of a namespace that `owner_uid` controls, with their Pods' results.
pub(super) fn owned_jobs(ctx: &Context, namespace: &str, owner_uid: &str) -> Vec<JobView> {
    ctx.jobs
        .find(namespace, &IndexKey::Owner(owner_uid.to_string()))
        .iter()
        .filter_map(|job| job_view(ctx, namespace, job))
        .collect()
}

/// Every Job that runs one Sync and is controlled by a syncseq object, with who started it.
pub(super) fn sync_jobs(ctx: &Context, namespace: &str, sync: &str) -> Vec<SyncJob> {
    ctx.jobs
        .find(namespace, &IndexKey::Sync(sync.to_string()))
        .iter()
        .filter_map(|job| {
            let owner = job.owner.as_ref()?;
            Some(SyncJob {
                view: job_view(ctx, namespace, job)?,
                sequence: (owner.kind == "SyncSequence").then(|| owner.name.clone()),
            })
        })
        .collect()
}

/// The engine's view of a syncseq Job with the results of the Pods it controls, or None when
/// its labels are not ours.
fn job_view(ctx: &Context, namespace: &str, job: &JobEntry) -> Option<JobView> {
    let uid = job.uid.clone()?;
    let pods = ctx.pods.find(namespace, &IndexKey::Owner(uid.clone()));
    let l = &job.labels;
    Some(JobView {
        name: job.name.clone(),
        uid,
        run: l.run?,
        step: l.step.clone()?,
        sync: l.sync.clone()?,
        attempt: l.attempt?,
        outcome: job.outcome.clone(),
        finished_at: job.finished_at,
        report: latest_report(pods.iter().filter_map(|p| p.result.as_ref())),
        deleting: job.deleting,
        created: job.created,
    })
}

/// A step's Job that status saw but the cache does not hold: the cache may lag behind (a
/// second replica, a watch that reconnects), so before the engine calls the Job deleted, ask
/// the API server. Only reads when a seen Job is missing, which is rare.
pub(super) async fn confirm_missing(
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
            jobs.extend(job_view(ctx, namespace, &JobEntry::of(&job)));
        }
    }
    Ok(())
}

/// What holds each of the given Syncs of a namespace (see [`holding`]); Syncs held by nothing
/// are left out.
pub(super) fn holders<'a>(
    ctx: &Context,
    namespace: &str,
    syncs: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Vec<Holder>> {
    let mut out: BTreeMap<String, Vec<Holder>> = BTreeMap::new();
    for sync in syncs {
        if out.contains_key(sync) {
            continue;
        }
        let held = holding(&ctx.jobs, &ctx.pods, namespace, sync);
        if !held.is_empty() {
            out.insert(sync.to_string(), held);
        }
    }
    out
}

/// What holds a Sync of a namespace, as the caches show it: Jobs controlled by a syncseq
/// object that have not finished or are being deleted, and Pods of syncseq Jobs that have not
/// terminated — after a background delete the Job is gone while its Pod runs out its grace
/// period.
pub(crate) fn holding(
    jobs: &Cache<JobEntry>,
    pods: &Cache<PodEntry>,
    namespace: &str,
    sync: &str,
) -> Vec<Holder> {
    let key = IndexKey::Sync(sync.to_string());
    let mut held: Vec<Holder> = jobs
        .find(namespace, &key)
        .iter()
        .filter(|job| job.owner.is_some() && job.holds())
        .map(|job| Holder {
            by: job.labels.runner(&job.name),
            job: job.name.clone(),
        })
        .collect();
    for pod in pods.find(namespace, &key) {
        // A Pod whose Job was deleted with `--cascade=orphan` has no owner left, and runs
        // on: it still holds its Sync.
        let Some(job) = &pod.job else { continue };
        if pod.terminated || !pod.labels.managed || held.iter().any(|h| &h.job == job) {
            continue;
        }
        let what = if pod.job_uid.is_some() {
            "is still terminating"
        } else {
            "was orphaned and is still running"
        };
        held.push(Holder {
            by: format!("{} (a Pod of job {job} {what})", pod.labels.runner(job)),
            job: job.clone(),
        });
    }
    held
}
