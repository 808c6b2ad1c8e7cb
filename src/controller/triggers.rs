//! Which watch events wake a reconcile: those that change what the engine reads. A Job is
//! updated several times while it runs (start time, active and ready counts, success criteria
//! met) and a Pod more often; only a Job's appearance, its outcome, its deletion and a Pod's
//! result can change a decision. The caches take every event; these fingerprints filter the
//! triggers only (kube-runtime's `predicate_filter` passes an event when its object's
//! fingerprint differs from the last one it passed). A Sync's status changes with every step
//! that runs it, and only its spec, appearance and deletion matter to the sequences that run
//! it ([`spec_version`]).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher;

use super::compact::{PodEntry, pod_terminated};
use crate::api::{Sync, SyncSequence, WebhookReceiver, labels};
use crate::engine::{JobOutcome, job_outcome, pod_result};

/// What every fingerprint covers: the object's identity, the labels the engine reads, and its
/// deletion. An object being deleted passes every event, its final delete included (which
/// carries a new resourceVersion): there are few, and each may free a Sync.
fn common(meta: &ObjectMeta, h: &mut DefaultHasher) {
    meta.uid.hash(h);
    for key in [
        labels::SEQUENCE,
        labels::SYNC,
        labels::RUN,
        labels::STEP,
        labels::ATTEMPT,
    ] {
        meta.labels.as_ref().and_then(|l| l.get(key)).hash(h);
    }
    if meta.deletion_timestamp.is_some() {
        meta.resource_version.hash(h);
    }
}

/// A Job's fingerprint: identity, labels, deletion and outcome.
pub(crate) fn job(job: &Job) -> Option<u64> {
    let mut h = DefaultHasher::new();
    common(&job.metadata, &mut h);
    let (outcome, finished_at) = job_outcome(job);
    match outcome {
        JobOutcome::Active => 0u8.hash(&mut h),
        JobOutcome::Succeeded => 1u8.hash(&mut h),
        JobOutcome::Failed { timed_out, reason } => {
            2u8.hash(&mut h);
            timed_out.hash(&mut h);
            reason.hash(&mut h);
        }
    }
    finished_at.map(|t| t.as_millisecond()).hash(&mut h);
    Some(h.finish())
}

/// A Pod's fingerprint: identity, labels, deletion, whether it terminated, and its result.
pub(crate) fn pod(pod: &Pod) -> Option<u64> {
    let mut h = DefaultHasher::new();
    common(&pod.metadata, &mut h);
    pod_terminated(pod).hash(&mut h);
    pod_result(pod).hash(&mut h);
    Some(h.finish())
}

/// Whether a Pod event can change a decision, given the entry the cache held for the Pod
/// before it. The deletion of a Pod that had already terminated cannot: it held no Sync, and
/// its result was there to be read since it terminated (removing it only takes that away).
/// Kubernetes' Pod garbage collector deletes the oldest terminated Pods beyond
/// `--terminated-pod-gc-threshold` (12,500 by default), so where many finished Jobs are kept
/// these deletions are a steady stream, each of which would wake the Pod's owner, its Sync and
/// every sequence that runs that Sync. A Pod deleted before it terminated still wakes them
/// all: it holds its Sync until it is gone.
pub(crate) fn pod_event_matters(event: &watcher::Event<Pod>, before: Option<&PodEntry>) -> bool {
    let had_terminated = before.is_some_and(|b| b.terminated);
    match event {
        watcher::Event::Delete(_) => !had_terminated,
        watcher::Event::Apply(pod) if pod.metadata.deletion_timestamp.is_some() => {
            !(had_terminated && pod_terminated(pod))
        }
        _ => true,
    }
}

/// The fingerprint last seen of each object of a kind, to tell the changes that matter to
/// someone (a spec, an upstream's finished runs) from the rest (a status write).
#[derive(Default)]
pub(crate) struct Seen(Mutex<HashMap<NamespacedName, u64>>);

/// (namespace, name)
type NamespacedName = (String, String);

impl Seen {
    /// Whether `obj` is new, deleted, or has another `fingerprint` than when last seen.
    pub(crate) fn changed<K: Resource>(&self, obj: &K, fingerprint: u64) -> bool {
        let meta = obj.meta();
        let key = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if meta.deletion_timestamp.is_some() {
            seen.remove(&key);
            return true;
        }
        seen.insert(key, fingerprint) != Some(fingerprint)
    }
}

fn hash(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// A spec's version: the object's UID and generation.
pub(crate) fn spec_version(meta: &ObjectMeta) -> u64 {
    hash((&meta.uid, meta.generation))
}

/// What downstream objects (`spec.after`) read of a sequence: its newest finished run, and its
/// spec (whose `after` may make or break a cycle).
pub(crate) fn sequence_finished(seq: &SyncSequence) -> u64 {
    let newest = seq.status.as_ref().and_then(|s| s.book.runs.first());
    hash((spec_version(&seq.metadata), newest.map(|r| r.id)))
}

/// What downstream objects read of a Sync: its newest runs that succeeded and failed, and its
/// spec.
pub(crate) fn sync_finished(sync: &Sync) -> u64 {
    let st = sync.status.as_ref();
    let job = |r: Option<&crate::api::SyncRunRecord>| r.map(|r| r.job_name.clone());
    hash((
        spec_version(&sync.metadata),
        job(st.and_then(|s| s.last_succeeded_run.as_ref())),
        job(st.and_then(|s| s.last_failed_run.as_ref())),
    ))
}

/// What downstream objects read of a webhook receiver: its newest delivery.
pub(crate) fn receiver_delivered(receiver: &WebhookReceiver) -> u64 {
    let newest = receiver
        .status
        .as_ref()
        .and_then(|s| s.deliveries.first())
        .map(|d| &d.id);
    hash(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_with(status: serde_json::Value, deleting: Option<&str>) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "crm-1-accounts-1", "uid": "u1", "resourceVersion": "7",
                "labels": {labels::SYNC: "accounts", labels::RUN: "1"},
                "deletionTimestamp": deleting,
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn running_updates_of_a_job_do_not_wake_but_its_outcome_and_deletion_do() {
        let created = job(&job_with(serde_json::json!({}), None));
        let started = job(&job_with(
            serde_json::json!({"startTime": "2026-12-01T10:00:00Z", "active": 1, "ready": 1}),
            None,
        ));
        assert_eq!(
            created, started,
            "start time and active counts change no decision"
        );
        let complete = job(&job_with(
            serde_json::json!({"conditions": [{"type": "Complete", "status": "True",
                "lastTransitionTime": "2026-12-01T10:00:05Z"}]}),
            None,
        ));
        assert_ne!(started, complete);
        let deleting = job(&job_with(
            serde_json::json!({}),
            Some("2026-12-01T10:01:00Z"),
        ));
        assert_ne!(created, deleting);
        let mut gone = job_with(serde_json::json!({}), Some("2026-12-01T10:01:00Z"));
        gone.metadata.resource_version = Some("8".into());
        assert_ne!(
            deleting,
            job(&gone),
            "the final delete of a deleting Job wakes too"
        );
    }

    fn pod_with(phase: &str, message: Option<&str>) -> Pod {
        let terminated = message.map(|m| {
            serde_json::json!([{"name": "sync", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": m}}}])
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "p1", "labels": {labels::SYNC: "accounts"}},
            "status": {"phase": phase, "containerStatuses": terminated},
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_wakes_when_it_terminates_or_its_result_changes_not_while_it_runs() {
        assert_eq!(
            pod(&pod_with("Pending", None)),
            pod(&pod_with("Running", None))
        );
        let done = pod(&pod_with("Succeeded", Some(r#"{"rowsSynced":5}"#)));
        assert_ne!(pod(&pod_with("Running", None)), done);
        assert_ne!(
            done,
            pod(&pod_with("Succeeded", Some(r#"{"rowsSynced":6}"#)))
        );
    }

    #[test]
    fn deleting_a_pod_that_had_terminated_wakes_no_one_but_deleting_a_running_one_does() {
        use watcher::Event::{Apply, Delete, InitApply};
        let entry = |pod: &Pod| PodEntry::of(pod);
        let running = pod_with("Running", None);
        let done = pod_with("Succeeded", Some(r#"{"rowsSynced":5}"#));
        let deleting = |mut pod: Pod| {
            pod.metadata.deletion_timestamp =
                Some(serde_json::from_value(serde_json::json!("2026-12-01T10:01:00Z")).unwrap());
            pod
        };
        // Terminated before, deleted now (the Pod garbage collector): nothing changes.
        let gc = deleting(done.clone());
        assert!(!pod_event_matters(&Apply(gc.clone()), Some(&entry(&done))));
        assert!(!pod_event_matters(&Delete(gc), Some(&entry(&done))));
        // Deleted while it ran: it holds its Sync until it terminates or is gone.
        let killed = deleting(running.clone());
        assert!(pod_event_matters(
            &Apply(killed.clone()),
            Some(&entry(&running))
        ));
        assert!(pod_event_matters(&Delete(killed), Some(&entry(&running))));
        // Terminating during its grace period, deleted at the end of it: the termination frees
        // the Sync, the final delete then changes nothing.
        let ended = deleting(pod_with("Failed", None));
        assert!(pod_event_matters(
            &Apply(ended.clone()),
            Some(&entry(&running))
        ));
        assert!(!pod_event_matters(
            &Delete(ended.clone()),
            Some(&entry(&ended))
        ));
        // Not known before (a first sight, a relist): it wakes.
        assert!(pod_event_matters(&Delete(deleting(done.clone())), None));
        assert!(pod_event_matters(
            &InitApply(done.clone()),
            Some(&entry(&done))
        ));
        // Updates of a Pod that is not being deleted are for the fingerprint to judge.
        assert!(pod_event_matters(&Apply(done.clone()), Some(&entry(&done))));
    }

    #[test]
    fn a_spec_change_appearance_or_deletion_wakes_but_a_status_write_does_not() {
        let sync = |uid: &str, generation: i64, deleting: bool| -> Sync {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "syncseq.dev/v1alpha1", "kind": "Sync",
                "metadata": {"name": "accounts", "namespace": "ns", "uid": uid,
                    "generation": generation,
                    "deletionTimestamp": deleting.then_some("2026-01-05T10:00:00Z")},
                "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}},
            }))
            .unwrap()
        };
        let seen = Seen::default();
        let changed = |s: &Sync| seen.changed(s, spec_version(&s.metadata));
        assert!(changed(&sync("u1", 1, false)), "appears");
        assert!(!changed(&sync("u1", 1, false)), "a status write");
        assert!(changed(&sync("u1", 2, false)), "its spec changed");
        assert!(changed(&sync("u1", 2, true)), "deleted");
        assert!(
            changed(&sync("u2", 1, false)),
            "recreated under the same name"
        );
        assert!(!changed(&sync("u2", 1, false)));
    }
}
