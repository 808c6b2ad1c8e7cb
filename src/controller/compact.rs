//! What the caches keep of each object: only what the engine, the claim and the triggers read.
//! The watch delivers whole objects; at a thousand sequences and ten thousand Jobs the parts
//! nobody reads (managed fields, specs, status counters, label maps, kubectl's copy of the last
//! applied manifest) are most of the controller's memory. Jobs and Pods are kept as entries of
//! the controller's own ([`JobEntry`], [`PodEntry`]): their facts already read (outcome, result,
//! labels parsed), a few strings each. Syncs and sequences are kept whole, without the parts
//! above: a Sync's template makes the Jobs (and is itself held as compact JSON,
//! `api::JobTemplate`), a sequence's annotations carry requests.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use super::index::{IndexKey, Indexed};
use crate::api::{GROUP, Sync, SyncSequence, labels};
use crate::engine::{JobOutcome, PodResult, job_outcome, pod_result};

/// `kubectl apply` keeps the whole manifest it applied in this annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The label the Job controller puts on every Pod of a Job, naming it.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// The controller owner reference of an object, if any.
fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

fn meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// The syncseq labels on a Job and on its Pods: what step attempt it is, of what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StepLabels {
    pub(crate) sequence: Option<String>,
    pub(crate) sync: Option<String>,
    /// None when missing or not a number (anyone can write labels).
    pub(crate) run: Option<i64>,
    pub(crate) step: Option<String>,
    pub(crate) attempt: Option<i32>,
    /// Whether `app.kubernetes.io/managed-by` names syncseq.
    pub(crate) managed: bool,
}

impl StepLabels {
    fn of(meta: &ObjectMeta) -> Self {
        let get = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key));
        StepLabels {
            sequence: get(labels::SEQUENCE).cloned(),
            sync: get(labels::SYNC).cloned(),
            run: get(labels::RUN).and_then(|r| r.parse().ok()),
            step: get(labels::STEP).cloned(),
            attempt: get(labels::ATTEMPT).and_then(|a| a.parse().ok()),
            managed: get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER),
        }
    }

    /// Who runs the Job, for messages: "sequence crm run 4", "its own run 2".
    pub(crate) fn runner(&self, job: &str) -> String {
        match (&self.sequence, self.run) {
            (Some(seq), Some(run)) => crate::engine::sequence_runner(seq, run),
            (None, Some(run)) => format!("its own run {run}"),
            _ => format!("job {job}"),
        }
    }
}

/// The syncseq object (a SyncSequence or a Sync) that controls a Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// `SyncSequence` or `Sync`.
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    pub(crate) uid: String,
}

/// A cached Job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobEntry {
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    /// Its controller, when that is a syncseq object; Jobs of anything else never join a run
    /// or hold a Sync.
    pub(crate) owner: Option<Owner>,
    pub(crate) labels: StepLabels,
    pub(crate) outcome: JobOutcome,
    /// When it finished (its condition's transition time).
    pub(crate) finished_at: Option<Timestamp>,
    pub(crate) deleting: bool,
    pub(crate) created: Option<Timestamp>,
}

impl JobEntry {
    pub(crate) fn of(job: &Job) -> Self {
        let owner = controller_of(&job.metadata).and_then(|o| {
            let kind = match o.kind.as_str() {
                "SyncSequence" => "SyncSequence",
                "Sync" => "Sync",
                _ => return None,
            };
            (o.api_version.split('/').next() == Some(GROUP)).then(|| Owner {
                kind,
                name: o.name.clone(),
                uid: o.uid.clone(),
            })
        });
        let (outcome, finished_at) = job_outcome(job);
        JobEntry {
            name: job.name_any(),
            uid: job.uid(),
            owner,
            labels: StepLabels::of(&job.metadata),
            outcome,
            finished_at,
            deleting: job.metadata.deletion_timestamp.is_some(),
            created: job.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    /// Whether it holds its Sync: not finished, or being deleted (its Pods may still run).
    pub(crate) fn holds(&self) -> bool {
        self.outcome == JobOutcome::Active || self.deleting
    }
}

/// Jobs are found by their syncseq controller and by the Sync they run.
impl Indexed for JobEntry {
    fn keys(&self) -> Vec<IndexKey> {
        let owner = self.owner.as_ref().map(|o| IndexKey::Owner(o.uid.clone()));
        let sync = self.labels.sync.clone().map(IndexKey::Sync);
        owner.into_iter().chain(sync).collect()
    }
}

/// A cached Pod of a syncseq Job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodEntry {
    /// The Job it belongs to: its controller, or, for a Pod orphaned by
    /// `--cascade=orphan`, the Job the Job controller's label names.
    pub(crate) job: Option<String>,
    /// The UID of the Job that controls it; None for an orphan.
    pub(crate) job_uid: Option<String>,
    pub(crate) labels: StepLabels,
    /// Whether it reached `Succeeded` or `Failed`.
    pub(crate) terminated: bool,
    /// What its container reported, once it terminated.
    pub(crate) result: Option<PodResult>,
}

impl PodEntry {
    pub(crate) fn of(pod: &Pod) -> Self {
        let owner = controller_of(&pod.metadata).filter(|o| o.kind == "Job");
        PodEntry {
            job: owner
                .map(|o| o.name.clone())
                .or_else(|| pod.labels().get(JOB_NAME_LABEL).cloned()),
            job_uid: owner.map(|o| o.uid.clone()),
            labels: StepLabels::of(&pod.metadata),
            terminated: pod_terminated(pod),
            result: pod_result(pod),
        }
    }
}

/// Whether a Pod reached `Succeeded` or `Failed`.
pub(crate) fn pod_terminated(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Pods are found by the Job that controls them and by the Sync they run.
impl Indexed for PodEntry {
    fn keys(&self) -> Vec<IndexKey> {
        let owner = self.job_uid.clone().map(IndexKey::Owner);
        let sync = self.labels.sync.clone().map(IndexKey::Sync);
        owner.into_iter().chain(sync).collect()
    }
}

/// A Sync: all of it (its template makes the Jobs), but no managed fields or kubectl copy.
pub(crate) fn sync(sync: &mut Sync) {
    meta(&mut sync.metadata);
}

/// A sequence: all of it (annotations carry run requests), but no managed fields or kubectl
/// copy.
pub(crate) fn sequence(seq: &mut SyncSequence) {
    meta(&mut seq.metadata);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_job(condition: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "crm-1-accounts-1-x", "uid": "u1", "resourceVersion": "9",
                "creationTimestamp": "2026-01-05T10:00:00Z",
                "labels": {"syncseq.dev/sync": "accounts", "syncseq.dev/sequence": "crm",
                    "syncseq.dev/run": "1", "syncseq.dev/step": "accounts",
                    "syncseq.dev/attempt": "x"},
                "annotations": {LAST_APPLIED: "{...}", "sim.syncseq.dev/duration": "2s"},
                "managedFields": [{"manager": "kube-controller-manager"}],
                "ownerReferences": [{"apiVersion": "syncseq.dev/v1alpha1", "kind": "SyncSequence",
                    "name": "crm", "uid": "s1", "controller": true}],
            },
            "spec": {"template": {"spec": {"containers": [{"name": "sync", "image": "x"}]}}},
            "status": {
                "startTime": "2026-01-05T10:00:00Z", "completionTime": "2026-01-05T10:00:02Z",
                "succeeded": 1, "ready": 0,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True",
                     "lastTransitionTime": "2026-01-05T10:00:02Z"},
                    {"type": condition, "status": "True", "reason": "BackoffLimitExceeded",
                     "message": "Job has reached the specified backoff limit",
                     "lastTransitionTime": "2026-01-05T10:00:02Z",
                     "lastProbeTime": "2026-01-05T10:00:02Z"},
                    {"type": "Suspended", "status": "False"},
                ],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_job_entry_keeps_its_outcome_owner_and_labels() {
        for condition in ["Complete", "Failed"] {
            let full = full_job(condition);
            let entry = JobEntry::of(&full);
            assert_eq!(
                (entry.outcome.clone(), entry.finished_at),
                job_outcome(&full)
            );
            assert!(!entry.holds());
            assert_eq!(
                entry.owner,
                Some(Owner {
                    kind: "SyncSequence",
                    name: "crm".into(),
                    uid: "s1".into()
                })
            );
            assert_eq!(entry.labels.sync.as_deref(), Some("accounts"));
            assert_eq!(entry.labels.run, Some(1));
            // A label that is not a number is no attempt at all.
            assert_eq!(entry.labels.attempt, None);
            assert_eq!(entry.labels.runner(&entry.name), "sequence crm run 1");
            assert_eq!(
                entry.keys(),
                vec![
                    IndexKey::Owner("s1".into()),
                    IndexKey::Sync("accounts".into())
                ]
            );
        }
    }

    #[test]
    fn a_job_controlled_by_something_else_has_no_owner() {
        let mut job = full_job("Complete");
        job.metadata.owner_references.as_mut().unwrap()[0].api_version = "batch/v1".into();
        assert_eq!(JobEntry::of(&job).owner, None);
        job.metadata.owner_references.as_mut().unwrap()[0].api_version =
            "syncseq.dev/v1alpha1".into();
        job.metadata.owner_references.as_mut().unwrap()[0].kind = "CronJob".into();
        let entry = JobEntry::of(&job);
        assert_eq!(entry.owner, None);
        assert_eq!(entry.keys(), vec![IndexKey::Sync("accounts".into())]);
    }

    fn pod(owner: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "p", "uid": "p1",
                "labels": {"syncseq.dev/sync": "accounts", "batch.kubernetes.io/job-name": "j",
                    "app.kubernetes.io/managed-by": "syncseq"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                    "uid": "u1", "controller": true}],
            },
            "spec": {"containers": [{"name": "sync", "image": "x"}]},
            "status": {
                "phase": "Succeeded", "hostIP": "10.0.0.1", "qosClass": "BestEffort",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{
                    "name": "sync", "image": "x", "imageID": "x@sha256:0", "ready": false,
                    "restartCount": 0, "containerID": "c://1",
                    "state": {"terminated": {"exitCode": 3, "reason": "Error",
                        "finishedAt": "2026-01-05T10:00:02Z",
                        "startedAt": "2026-01-05T10:00:00Z",
                        "message": "{\"rowsSynced\":5,\"message\":\"boom\"}"}},
                }],
            },
        }))
        .unwrap();
        if !owner {
            pod.metadata.owner_references = None;
        }
        pod
    }

    #[test]
    fn a_pod_entry_keeps_its_job_and_result() {
        let entry = PodEntry::of(&pod(true));
        assert_eq!(entry.job.as_deref(), Some("j"));
        assert_eq!(entry.job_uid.as_deref(), Some("u1"));
        assert!(entry.terminated && entry.labels.managed);
        let result = entry.result.unwrap();
        assert_eq!(result.report.rows_synced, Some(5));
        assert_eq!(result.report.exit_code, Some(3));
        assert_eq!(result.report.message.as_deref(), Some("boom"));
        assert!(result.finished_at.is_some());
    }

    #[test]
    fn an_orphaned_pod_names_its_job_by_label_and_is_found_by_sync_only() {
        let entry = PodEntry::of(&pod(false));
        assert_eq!(entry.job.as_deref(), Some("j"));
        assert_eq!(entry.job_uid, None);
        assert_eq!(entry.keys(), vec![IndexKey::Sync("accounts".into())]);
    }

    #[test]
    fn a_sequence_keeps_its_requests_but_not_kubectls_copy() {
        let mut seq: SyncSequence = serde_json::from_value(serde_json::json!({
            "apiVersion": "syncseq.dev/v1alpha1", "kind": "SyncSequence",
            "metadata": {"name": "crm", "annotations": {
                LAST_APPLIED: "{...}", "syncseq.dev/requestedAt": "r1"},
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {"steps": [{"name": "a", "syncRef": {"name": "a"}}]},
        }))
        .unwrap();
        sequence(&mut seq);
        let annotations = seq.metadata.annotations.unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations["syncseq.dev/requestedAt"], "r1");
        assert!(seq.metadata.managed_fields.is_none());
    }
}
