//! Turning cached Jobs and Pods into the engine's view of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::Context;
use crate::api::TriggerKind;
use crate::api::labels;
use crate::engine::{Holder, JobView, SyncJob, job_outcome, pod_report};

/// The engine's view of the Jobs of one sequence, with their Pods' results.
pub fn sequence_jobs(ctx: &Context, namespace: &str, sequence: &str) -> Vec<JobView> {
    labelled_jobs(ctx, namespace, labels::SEQUENCE, sequence)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// Every Job that runs one Sync (from sequences and its own runs), with who started it.
pub fn sync_jobs(ctx: &Context, namespace: &str, sync: &str) -> Vec<SyncJob> {
    labelled_jobs(ctx, namespace, labels::SYNC, sync)
        .into_iter()
        .map(|(job, view)| {
            let l = job.labels();
            SyncJob {
                sequence: l.get(labels::SEQUENCE).cloned(),
                trigger: match l.get(labels::TRIGGER).map(String::as_str) {
                    Some("Manual") => Some(TriggerKind::Manual),
                    Some("Schedule") => Some(TriggerKind::Schedule),
                    _ => None,
                },
                view,
            }
        })
        .collect()
}

/// The Jobs of a namespace carrying `key=value`, with their Pods' results.
fn labelled_jobs(
    ctx: &Context,
    namespace: &str,
    key: &str,
    value: &str,
) -> Vec<(Arc<Job>, JobView)> {
    let matches = |m: &ObjectMeta| {
        m.namespace.as_deref() == Some(namespace)
            && m.labels
                .as_ref()
                .and_then(|l| l.get(key))
                .map(String::as_str)
                == Some(value)
    };
    let pods: Vec<_> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| matches(&p.metadata))
        .collect();
    ctx.jobs
        .state()
        .into_iter()
        .filter(|j| matches(&j.metadata))
        .filter_map(|job| {
            let uid = job.uid()?;
            let own_pods = pods
                .iter()
                .filter(|p| p.owner_references().iter().any(|o| o.uid == uid))
                .map(|p| p.as_ref());
            let view = job_view(&job, own_pods)?;
            Some((job, view))
        })
        .collect()
}

/// The engine's view of a syncseq Job, or None when its labels are not ours.
fn job_view<'a>(job: &Job, pods: impl IntoIterator<Item = &'a Pod>) -> Option<JobView> {
    let l = job.labels();
    let (outcome, finished_at) = job_outcome(job);
    Some(JobView {
        name: job.name_any(),
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

/// Jobs that hold a Sync in a namespace: unfinished ones, and ones still being deleted (their
/// Pod may still be running).
pub fn holders(ctx: &Context, namespace: &str) -> BTreeMap<String, Vec<Holder>> {
    let mut out: BTreeMap<String, Vec<Holder>> = BTreeMap::new();
    for job in ctx.jobs.state() {
        if job.namespace().as_deref() != Some(namespace) {
            continue;
        }
        let (outcome, _) = job_outcome(&job);
        let active = outcome == crate::engine::JobOutcome::Active
            || job.metadata.deletion_timestamp.is_some();
        let l = job.labels();
        let Some(sync) = l.get(labels::SYNC).filter(|_| active) else {
            continue;
        };
        let by = match (l.get(labels::SEQUENCE), l.get(labels::RUN)) {
            (Some(seq), Some(run)) => format!("sequence {seq} run {run}"),
            _ => format!("job {}", job.name_any()),
        };
        out.entry(sync.clone()).or_default().push(Holder {
            job: job.name_any(),
            by,
        });
    }
    out
}
