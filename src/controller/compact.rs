//! What the caches keep of each object: only what the engine and the triggers read. The watch
//! delivers whole objects; at a thousand sequences the parts nobody reads (managed fields,
//! specs, Pod and Job status counters, kubectl's copy of the last applied manifest) are most
//! of the controller's memory.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{Sync, SyncSequence};

/// `kubectl apply` keeps the whole manifest it applied in this annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// A Job: identity, labels, owners, deletion and its conditions (its outcome). No spec (the
/// whole Pod template), no annotations, no counters.
pub(crate) fn job(job: &mut Job) {
    meta(&mut job.metadata);
    job.metadata.annotations = None;
    job.spec = None;
    job.status = job.status.take().map(|s| JobStatus {
        conditions: s.conditions.map(|c| {
            c.into_iter()
                .filter(|c| c.status == "True")
                .map(|c| JobCondition {
                    last_probe_time: None,
                    ..c
                })
                .collect()
        }),
        ..JobStatus::default()
    });
}

/// A Pod: identity, labels, owners, deletion, phase, and the terminated state of its
/// containers (the result the engine reads from the termination message).
pub(crate) fn pod(pod: &mut Pod) {
    meta(&mut pod.metadata);
    pod.metadata.annotations = None;
    pod.spec = None;
    pod.status = pod.status.take().map(|s| PodStatus {
        phase: s.phase,
        container_statuses: s.container_statuses.map(|c| {
            c.into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    state: c
                        .state
                        .and_then(|st| st.terminated)
                        .map(|t| ContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code: t.exit_code,
                                finished_at: t.finished_at,
                                message: t.message,
                                ..ContainerStateTerminated::default()
                            }),
                            ..ContainerState::default()
                        }),
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
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
    use crate::engine::{job_outcome, pod_report};

    fn full_job(condition: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "crm-1-accounts-1-x", "uid": "u1", "resourceVersion": "9",
                "labels": {"syncseq.dev/sync": "accounts"},
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
    fn a_compact_job_has_the_same_outcome_and_trigger() {
        for condition in ["Complete", "Failed"] {
            let full = full_job(condition);
            let mut small = full.clone();
            job(&mut small);
            assert_eq!(job_outcome(&small), job_outcome(&full));
            assert_eq!(
                super::super::triggers::job(&small),
                super::super::triggers::job(&full)
            );
            assert_eq!(
                small.metadata.owner_references,
                full.metadata.owner_references
            );
            assert_eq!(small.metadata.labels, full.metadata.labels);
            assert!(small.spec.is_none() && small.metadata.managed_fields.is_none());
            assert!(small.metadata.annotations.is_none());
        }
    }

    #[test]
    fn a_compact_pod_has_the_same_result_and_trigger() {
        let full: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "p", "uid": "p1",
                "labels": {"syncseq.dev/sync": "accounts", "batch.kubernetes.io/job-name": "j"},
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
        let mut small = full.clone();
        pod(&mut small);
        let report = pod_report([&small]);
        assert_eq!(report, pod_report([&full]));
        assert_eq!(report.unwrap().rows_synced, Some(5));
        assert_eq!(
            super::super::triggers::pod(&small),
            super::super::triggers::pod(&full)
        );
        let status = small.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        assert!(status.conditions.is_none() && status.host_ip.is_none());
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
