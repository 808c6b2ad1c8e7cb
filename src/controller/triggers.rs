//! Which watch events wake a reconcile: those that change what the engine reads. A Job is
//! updated several times while it runs (start time, active and ready counts, success criteria
//! met) and a Pod more often; only a Job's appearance, its outcome, its deletion and a Pod's
//! result can change a decision. The caches take every event and keep only what the engine
//! reads (`compact`), so an event matters when it changed its object's entry: the cache is its
//! own fingerprint, and no second table of them is kept per object. A Sync's status changes
//! with every step that runs it, and only its spec, appearance and deletion matter to the
//! sequences that run it ([`spec_version`]).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::compact::{JobEntry, PodEntry, pod_terminated};
use super::freshness::{self, Freshness};
use super::index::{Cache, Change, IndexKey, SyncRefs, waits_for};
use super::observe::holding;
use crate::api::{Sync, SyncSequence, WebhookReceiver, labels};
use crate::engine::{JobOutcome, job_outcome};

/// Whether a sequence's current run waits for a Sync that nothing holds now. Only sequences
/// that wait for a Sync are woken when it becomes free (the index's `WaitingFor`), and the
/// status write saying a step waits may land after the holder's last event, which then found
/// nobody waiting: the event of that write wakes the sequence instead.
pub(crate) fn waits_for_a_free_sync(
    seq: &SyncSequence,
    jobs: &Cache<JobEntry>,
    pods: &Cache<PodEntry>,
) -> bool {
    let ns = seq.namespace().unwrap_or_default();
    waits_for(seq)
        .iter()
        .any(|sync| holding(jobs, pods, &ns, sync).is_empty())
}

/// Whether a sequence's own watch event (one that changed it) wakes its reconcile: not the
/// event of the controller's own status write (`freshness`), unless that write says it waits for
/// a Sync nothing holds any more.
pub(crate) fn sequence_event_wakes(
    seq: &SyncSequence,
    own_writes: &Freshness,
    jobs: &Cache<JobEntry>,
    pods: &Cache<PodEntry>,
) -> bool {
    let key = freshness::key(
        "SyncSequence",
        &seq.namespace().unwrap_or_default(),
        &seq.name_any(),
    );
    own_writes.wakes(&key, seq.resource_version().as_deref())
        || waits_for_a_free_sync(seq, jobs, pods)
}

/// Whom a Job, Pod or Sync event wakes: the sequences to reconcile, and the Sync to wake
/// through the Sync controller's channel.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Wakes {
    pub(crate) sync: Option<ObjectRef<Sync>>,
    pub(crate) sequences: Vec<ObjectRef<SyncSequence>>,
}

/// Whom a Job event wakes, and whether the Job has finished (which the hand-off metric
/// records).
#[derive(Debug, PartialEq)]
pub(crate) struct JobWakes {
    pub(crate) finished: bool,
    pub(crate) wakes: Wakes,
}

/// A Job event wakes its owning sequence and its Sync; its end, or its deletion, every sequence
/// that waits for the same Sync (not those that merely run it).
pub(crate) fn woken_by_job(
    job: &Job,
    own_writes: &Freshness,
    sequences_by_sync: &Cache<SyncRefs>,
) -> JobWakes {
    let finished = job_outcome(job).0 != JobOutcome::Active;
    let deleting = job.metadata.deletion_timestamp.is_some();
    let mut sequences = Vec::new();
    let mut spares_sync = false;
    if let (Some(seq), Some(ns)) = (job.labels().get(labels::SEQUENCE), job.namespace()) {
        // The first event of a Job this process just created, still running: the
        // reconcile that created it records it in status (`freshness`), and its claim
        // recorded it on the Sync (`claim`).
        let just_created = own_writes
            .first_event_of_created_job(&ns, &job.name_any())
            .filter(|_| !finished && !deleting);
        spares_sync = just_created.is_some_and(|c| c.spares_sync());
        if just_created.is_none() {
            sequences.push(ObjectRef::new(seq).within(&ns));
        }
    }
    let sync = if spares_sync {
        None
    } else {
        sync_of(&job.metadata)
    };
    if (finished || deleting)
        && let Some(sync) = job.labels().get(labels::SYNC)
    {
        sequences.extend(sequences_found(
            sequences_by_sync,
            job.namespace().as_deref(),
            &IndexKey::WaitingFor(sync.clone()),
        ));
    }
    JobWakes {
        finished,
        wakes: Wakes { sync, sequences },
    }
}

/// A terminated Pod carries the result the engine reads; a terminated or deleted one may also
/// free its Sync for those waiting: it wakes its owning sequence, its Sync, and the sequences
/// waiting for that Sync. Pending and Running updates only cost, and so does a Pod that
/// terminated while its Job is still active: the engine reads the result with the Job's
/// outcome, and the Job's completion, which follows, wakes everyone and finds the result in the
/// cache (taken before this runs). The Job holds the Sync meanwhile. (The deletion of a Pod
/// that had terminated is filtered out with its event: [`pod_event_matters`].)
pub(crate) fn woken_by_pod(
    pod: &Pod,
    jobs: &Cache<JobEntry>,
    sequences_by_sync: &Cache<SyncRefs>,
) -> Wakes {
    let deleting = pod.metadata.deletion_timestamp.is_some();
    if !pod_terminated(pod) && !deleting {
        return Wakes::default();
    }
    if !deleting && job_runs_on(jobs, pod) {
        return Wakes::default();
    }
    let ns = pod.namespace();
    let mut sequences: Vec<_> = pod
        .labels()
        .get(labels::SEQUENCE)
        .cloned()
        .zip(ns.clone())
        .map(|(seq, ns)| ObjectRef::new(&seq).within(&ns))
        .into_iter()
        .collect();
    if let Some(sync) = pod.labels().get(labels::SYNC) {
        sequences.extend(sequences_found(
            sequences_by_sync,
            ns.as_deref(),
            &IndexKey::WaitingFor(sync.clone()),
        ));
    }
    Wakes {
        sync: sync_of(&pod.metadata),
        sequences,
    }
}

/// A Sync's own events wake the Sync controller, but not the event of the controller's own
/// write (`freshness`); the sequences that run it only when it appears, goes, or its spec
/// changes (`specs` remembers the spec last seen). Its status (its last run, its claim) changes
/// with every step and decides nothing for them: what holds it comes from Jobs and Pods.
pub(crate) fn woken_by_sync(
    sync: &Sync,
    own_writes: &Freshness,
    specs: &Seen,
    sequences_by_sync: &Cache<SyncRefs>,
) -> Wakes {
    let key = freshness::key(
        "Sync",
        &sync.namespace().unwrap_or_default(),
        &sync.name_any(),
    );
    let itself = own_writes
        .wakes(&key, sync.resource_version().as_deref())
        .then(|| ObjectRef::from(sync));
    let sequences = if specs.changed(sync, spec_version(&sync.metadata)) {
        sequences_found(
            sequences_by_sync,
            sync.namespace().as_deref(),
            &IndexKey::Sync(sync.name_any()),
        )
    } else {
        vec![]
    };
    Wakes {
        sync: itself,
        sequences,
    }
}

/// The Sync a Job or Pod is about (its `syncseq.dev/sync` label), in its namespace.
fn sync_of(meta: &ObjectMeta) -> Option<ObjectRef<Sync>> {
    let sync = meta.labels.as_ref().and_then(|l| l.get(labels::SYNC))?;
    Some(ObjectRef::new(sync).within(meta.namespace.as_ref()?))
}

/// Whether the Job that controls `pod` is in the cache, active and not being deleted.
fn job_runs_on(jobs: &Cache<JobEntry>, pod: &Pod) -> bool {
    let Some(owner) = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Job")
    else {
        return false;
    };
    let ns = pod.namespace().unwrap_or_default();
    jobs.get(&ns, &owner.name).is_some_and(|job| {
        job.uid.as_deref() == Some(owner.uid.as_str())
            && job.outcome == JobOutcome::Active
            && !job.deleting
    })
}

/// The sequences of a namespace found by `key` in the sequence cache: those with a step that
/// runs a Sync (`IndexKey::Sync`), or those whose current run waits for it
/// (`IndexKey::WaitingFor`).
fn sequences_found(
    index: &Cache<SyncRefs>,
    namespace: Option<&str>,
    key: &IndexKey,
) -> Vec<ObjectRef<SyncSequence>> {
    let ns = namespace.unwrap_or_default();
    index
        .names(ns, key)
        .iter()
        .map(|name| ObjectRef::new(name).within(ns))
        .collect()
}

/// Whether a Job event can change a decision, given what it did to the Job's entry in the
/// cache: the Job appeared, went, or has another identity, owner, step labels or outcome.
/// Running updates (start time, active and ready counts, success criteria met) leave the entry
/// as it was. A Job being deleted passes every event, its final delete included: there are few,
/// and each may free a Sync.
pub(crate) fn job_event_matters(event: &watcher::Event<Job>, change: &Change<JobEntry>) -> bool {
    match event {
        watcher::Event::Delete(_) => true,
        _ => change.changed() || change.after.as_ref().is_some_and(|j| j.deleting),
    }
}

/// Whether a Pod event can change a decision, given what it did to the Pod's entry in the
/// cache: the Pod appeared, terminated, or its result, owner or step labels changed; Pending
/// and Running updates leave the entry as it was.
///
/// The deletion of a Pod that had already terminated cannot: it held no Sync, and its result
/// was there to be read since it terminated (removing it only takes that away). Kubernetes'
/// Pod garbage collector deletes the oldest terminated Pods beyond
/// `--terminated-pod-gc-threshold` (12,500 by default), so where many finished Jobs are kept
/// these deletions are a steady stream, each of which would wake the Pod's owner, its Sync and
/// every sequence that runs that Sync. A Pod deleted before it terminated still wakes them
/// all, with every event until it is gone: it holds its Sync until then.
pub(crate) fn pod_event_matters(event: &watcher::Event<Pod>, change: &Change<PodEntry>) -> bool {
    let had_terminated = change.before.as_ref().is_some_and(|b| b.terminated);
    match event {
        watcher::Event::Delete(_) => !had_terminated,
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)
            if pod.metadata.deletion_timestamp.is_some() =>
        {
            !(had_terminated && pod_terminated(pod))
        }
        _ => change.changed(),
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
        job(st.and_then(|s| s.last_succeeded_run.as_deref())),
        job(st.and_then(|s| s.last_failed_run.as_deref())),
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
    use crate::api::labels;
    use crate::controller::index::Cache;

    fn job_with(status: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "crm-1-accounts-1", "uid": "u1", "resourceVersion": "7",
                "labels": {labels::SYNC: "accounts", labels::RUN: "1"},
            },
            "status": status,
        }))
        .unwrap()
    }

    /// Applies each event to a fresh cache in turn, as the watch streams do: whether each
    /// woke anyone.
    fn woken<K: Resource, T: crate::controller::index::Indexed>(
        events: Vec<watcher::Event<K>>,
        project: fn(&K) -> T,
        matters: fn(&watcher::Event<K>, &Change<T>) -> bool,
    ) -> Vec<bool> {
        let cache = Cache::<T>::default();
        events
            .iter()
            .map(|e| matters(e, &cache.apply(e, project)))
            .collect()
    }

    fn jobs_woken(events: Vec<watcher::Event<Job>>) -> Vec<bool> {
        woken(events, JobEntry::of, job_event_matters)
    }

    fn pods_woken(events: Vec<watcher::Event<Pod>>) -> Vec<bool> {
        woken(events, PodEntry::of, pod_event_matters)
    }

    fn deleting<K: Resource>(mut obj: K) -> K {
        obj.meta_mut().deletion_timestamp =
            Some(serde_json::from_value(serde_json::json!("2026-12-01T10:01:00Z")).unwrap());
        obj
    }

    /// Sequence `crm` of namespace `revops` running `accounts` then `contacts`, its current run
    /// with the first step in the given phase.
    fn sequence_with_first_step(phase: &str) -> SyncSequence {
        use crate::engine::fixtures::{sequence, step};
        let mut seq = sequence(vec![step("accounts"), step("contacts")]);
        seq.status = serde_json::from_value(serde_json::json!({
            "currentRun": {"id": 1, "trigger": "Manual", "startTime": "2026-12-01T10:00:00Z",
                "phase": "Running", "progress": "0/2", "steps": [
                    {"name": "accounts", "sync": "accounts", "phase": phase, "attempts": 0},
                    {"name": "contacts", "sync": "contacts", "phase": "Pending", "attempts": 0},
                ]},
        }))
        .unwrap();
        seq
    }

    /// A Job of Sync `accounts` in `revops` that another sequence controls.
    fn holder_job(status: serde_json::Value) -> Job {
        let mut job = job_with(status);
        job.metadata.namespace = Some("revops".into());
        job.metadata.owner_references = Some(vec![
            serde_json::from_value(serde_json::json!({
                "apiVersion": "syncseq.dev/v1alpha1", "kind": "SyncSequence",
                "name": "other", "uid": "u-other", "controller": true,
            }))
            .unwrap(),
        ]);
        job
    }

    #[test]
    fn a_sequence_waiting_for_a_sync_is_woken_by_its_own_write_once_nothing_holds_the_sync() {
        let (jobs, pods) = (Cache::<JobEntry>::default(), Cache::<PodEntry>::default());
        let waiting = sequence_with_first_step("Waiting");
        assert!(
            waits_for_a_free_sync(&waiting, &jobs, &pods),
            "nothing holds accounts: the write saying it waits must wake it"
        );
        jobs.apply(
            &watcher::Event::Apply(holder_job(serde_json::json!({"active": 1}))),
            JobEntry::of,
        );
        assert!(
            !waits_for_a_free_sync(&waiting, &jobs, &pods),
            "accounts is held: not its own write but the holder's end wakes it"
        );
        jobs.apply(
            &watcher::Event::Apply(holder_job(serde_json::json!({"conditions": [
                {"type": "Complete", "status": "True",
                    "lastTransitionTime": "2026-12-01T10:00:05Z"}]}))),
            JobEntry::of,
        );
        assert!(
            waits_for_a_free_sync(&waiting, &jobs, &pods),
            "the holder ended before the write landed"
        );
        for phase in ["Running", "Pending", "Succeeded"] {
            assert!(
                !waits_for_a_free_sync(&sequence_with_first_step(phase), &jobs, &pods),
                "a step {phase} waits for nothing"
            );
        }
    }

    #[test]
    fn running_updates_of_a_job_do_not_wake_but_its_outcome_and_deletion_do() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let created = job_with(serde_json::json!({}));
        let started = job_with(
            serde_json::json!({"startTime": "2026-12-01T10:00:00Z", "active": 1, "ready": 1}),
        );
        let complete = job_with(
            serde_json::json!({"conditions": [{"type": "Complete", "status": "True",
                "lastTransitionTime": "2026-12-01T10:00:05Z"}]}),
        );
        let mut recreated = complete.clone();
        recreated.metadata.uid = Some("u2".into());
        let gone = deleting(complete.clone());
        let mut gone_later = gone.clone();
        gone_later.metadata.resource_version = Some("8".into());
        assert_eq!(
            jobs_woken(vec![
                Apply(created),
                Apply(started.clone()),
                Apply(complete.clone()),
                Apply(complete.clone()),
                // A relist brings back what the cache holds: nothing changed.
                Init,
                InitApply(complete.clone()),
                InitDone,
                // The same name under a new UID is another Job.
                Apply(recreated),
                Apply(gone.clone()),
                Apply(gone_later),
                Delete(gone.clone()),
                // A delete of a Job never seen wakes too: it may have held a Sync.
                Delete(gone),
            ]),
            [
                true, false, true, false, false, false, false, true, true, true, true, true
            ],
            "created wakes, started does not, completion does, deletion always does"
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
        use watcher::Event::{Apply, InitApply};
        assert_eq!(
            pods_woken(vec![
                Apply(pod_with("Pending", None)),
                Apply(pod_with("Running", None)),
                Apply(pod_with("Succeeded", Some(r#"{"rowsSynced":5}"#))),
                Apply(pod_with("Succeeded", Some(r#"{"rowsSynced":6}"#))),
                Apply(pod_with("Succeeded", Some(r#"{"rowsSynced":6}"#))),
                InitApply(pod_with("Succeeded", Some(r#"{"rowsSynced":6}"#))),
            ]),
            [true, false, true, true, false, false]
        );
    }

    #[test]
    fn deleting_a_pod_that_had_terminated_wakes_no_one_but_deleting_a_running_one_does() {
        use watcher::Event::{Apply, Delete};
        let running = || pod_with("Running", None);
        let done = || pod_with("Succeeded", Some(r#"{"rowsSynced":5}"#));
        // Terminated before, deleted now (the Pod garbage collector): nothing changes.
        assert_eq!(
            pods_woken(vec![
                Apply(done()),
                Apply(deleting(done())),
                Delete(deleting(done()))
            ]),
            [true, false, false]
        );
        // Deleted while it ran: it holds its Sync until it terminates or is gone.
        assert_eq!(
            pods_woken(vec![
                Apply(running()),
                Apply(deleting(running())),
                Apply(deleting(running())),
                Delete(deleting(running()))
            ]),
            [true, true, true, true]
        );
        // Terminating during its grace period, deleted at the end of it: the termination frees
        // the Sync, the final delete then changes nothing.
        let ended = || deleting(pod_with("Failed", None));
        assert_eq!(
            pods_woken(vec![Apply(running()), Apply(ended()), Delete(ended())]),
            [true, true, false]
        );
        // Not known before (a first sight): it wakes.
        assert_eq!(pods_woken(vec![Delete(deleting(done()))]), [true]);
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

    /// The sequence cache of namespace `revops`: `crm` waits for `accounts`, `runner` runs
    /// `accounts` too but waits for nothing.
    fn sequences_by_sync() -> Cache<SyncRefs> {
        let cache = Cache::<SyncRefs>::default();
        let mut runner = sequence_with_first_step("Running");
        runner.metadata.name = Some("runner".into());
        for seq in [sequence_with_first_step("Waiting"), runner] {
            cache.apply(&watcher::Event::Apply(seq), SyncRefs::of);
        }
        cache
    }

    fn seq_ref(name: &str) -> ObjectRef<SyncSequence> {
        ObjectRef::new(name).within("revops")
    }

    fn accounts() -> Option<ObjectRef<Sync>> {
        Some(ObjectRef::new("accounts").within("revops"))
    }

    /// A Job of sequence `owner` running Sync `accounts` in `revops`.
    fn step_job(status: serde_json::Value) -> Job {
        let mut job = job_with(status);
        job.metadata.namespace = Some("revops".into());
        job.metadata
            .labels
            .get_or_insert_default()
            .insert(labels::SEQUENCE.into(), "owner".into());
        job
    }

    fn complete() -> serde_json::Value {
        serde_json::json!({"conditions": [{"type": "Complete", "status": "True",
            "lastTransitionTime": "2026-12-01T10:00:05Z"}]})
    }

    #[test]
    fn the_first_event_of_a_job_this_process_created_spares_its_owner_and_a_young_claims_sync() {
        let (own_writes, index) = (Freshness::default(), sequences_by_sync());
        let running = step_job(serde_json::json!({"active": 1}));
        own_writes.created_job("revops", &running.name_any(), std::time::Instant::now());
        assert_eq!(
            woken_by_job(&running, &own_writes, &index),
            JobWakes {
                finished: false,
                wakes: Wakes::default()
            },
            "its reconcile records it in status, its claim recorded it on the Sync"
        );
        assert_eq!(
            woken_by_job(&running, &own_writes, &index).wakes,
            Wakes {
                sync: accounts(),
                sequences: vec![seq_ref("owner")]
            },
            "every later event wakes its owner and its Sync"
        );
        // Claimed longer ago than a claim stays young: its Sync may have let the claim's
        // record go, so the Sync is woken; the owner is still spared.
        let claimed_long_ago = std::time::Instant::now()
            .checked_sub(std::time::Duration::from_secs(60))
            .unwrap();
        own_writes.created_job("revops", &running.name_any(), claimed_long_ago);
        assert_eq!(
            woken_by_job(&running, &own_writes, &index).wakes,
            Wakes {
                sync: accounts(),
                sequences: vec![]
            }
        );
    }

    #[test]
    fn a_finished_job_wakes_its_owner_its_sync_and_the_sequences_waiting_for_it() {
        let (own_writes, index) = (Freshness::default(), sequences_by_sync());
        let done = step_job(complete());
        // Not even the first event of a Job this process created spares anyone once it ended.
        own_writes.created_job("revops", &done.name_any(), std::time::Instant::now());
        assert_eq!(
            woken_by_job(&done, &own_writes, &index),
            JobWakes {
                finished: true,
                wakes: Wakes {
                    sync: accounts(),
                    sequences: vec![seq_ref("owner"), seq_ref("crm")]
                }
            },
            "runner only runs accounts: it waits for nothing"
        );
        let running = step_job(serde_json::json!({"active": 1}));
        assert_eq!(
            woken_by_job(&running, &own_writes, &index),
            JobWakes {
                finished: false,
                wakes: Wakes {
                    sync: accounts(),
                    sequences: vec![seq_ref("owner")]
                }
            },
            "a running Job frees nothing for those waiting"
        );
        // A Sync's own run: no owning sequence.
        let mut own_run = done.clone();
        own_run.labels_mut().remove(labels::SEQUENCE);
        assert_eq!(
            woken_by_job(&own_run, &own_writes, &index).wakes,
            Wakes {
                sync: accounts(),
                sequences: vec![seq_ref("crm")]
            }
        );
    }

    #[test]
    fn a_deleted_job_wakes_its_owner_its_sync_and_the_sequences_waiting_for_it() {
        let (own_writes, index) = (Freshness::default(), sequences_by_sync());
        let gone = deleting(step_job(serde_json::json!({"active": 1})));
        own_writes.created_job("revops", &gone.name_any(), std::time::Instant::now());
        assert_eq!(
            woken_by_job(&gone, &own_writes, &index),
            JobWakes {
                finished: false,
                wakes: Wakes {
                    sync: accounts(),
                    sequences: vec![seq_ref("owner"), seq_ref("crm")]
                }
            }
        );
    }

    /// A Pod of the Job `crm-1-accounts-1` (UID `u1`) of sequence `owner`, in `revops`.
    fn step_pod(phase: &str, message: Option<&str>) -> Pod {
        let mut pod = pod_with(phase, message);
        pod.metadata.namespace = Some("revops".into());
        pod.labels_mut()
            .insert(labels::SEQUENCE.into(), "owner".into());
        pod.metadata.owner_references = Some(vec![
            serde_json::from_value(serde_json::json!({
                "apiVersion": "batch/v1", "kind": "Job", "name": "crm-1-accounts-1",
                "uid": "u1", "controller": true,
            }))
            .unwrap(),
        ]);
        pod
    }

    fn everyone() -> Wakes {
        Wakes {
            sync: accounts(),
            sequences: vec![seq_ref("owner"), seq_ref("crm")],
        }
    }

    #[test]
    fn a_pending_or_running_pod_wakes_nobody() {
        let (jobs, index) = (Cache::<JobEntry>::default(), sequences_by_sync());
        for phase in ["Pending", "Running"] {
            assert_eq!(
                woken_by_pod(&step_pod(phase, None), &jobs, &index),
                Wakes::default(),
                "{phase}"
            );
        }
    }

    #[test]
    fn a_terminated_pod_wakes_nobody_while_its_job_is_active_and_everyone_after() {
        let (jobs, index) = (Cache::<JobEntry>::default(), sequences_by_sync());
        let done = step_pod("Succeeded", Some(r#"{"rowsSynced":5}"#));
        assert_eq!(
            woken_by_pod(&done, &jobs, &index),
            everyone(),
            "its Job is not in the cache"
        );
        let apply = |status| {
            jobs.apply(&watcher::Event::Apply(step_job(status)), JobEntry::of);
        };
        apply(serde_json::json!({"active": 1}));
        assert_eq!(
            woken_by_pod(&done, &jobs, &index),
            Wakes::default(),
            "the Job's completion, which follows, wakes everyone"
        );
        assert_eq!(
            woken_by_pod(&deleting(step_pod("Running", None)), &jobs, &index),
            everyone(),
            "a Pod deleted while it runs may free its Sync, whatever its Job"
        );
        apply(complete());
        assert_eq!(
            woken_by_pod(&done, &jobs, &index),
            everyone(),
            "its Job ended"
        );
        let mut recreated = step_job(serde_json::json!({"active": 1}));
        recreated.metadata.uid = Some("u2".into());
        jobs.apply(&watcher::Event::Apply(recreated), JobEntry::of);
        assert_eq!(
            woken_by_pod(&done, &jobs, &index),
            everyone(),
            "the active Job of that name is another one"
        );
    }

    fn sync_at(generation: i64, version: &str) -> Sync {
        let mut sync = crate::engine::fixtures::sync("accounts");
        sync.metadata.uid = Some("s1".into());
        sync.metadata.generation = Some(generation);
        sync.metadata.resource_version = Some(version.into());
        sync
    }

    #[test]
    fn a_sync_wakes_the_sequences_that_run_it_when_its_spec_changes_not_its_status() {
        let (own_writes, specs, index) =
            (Freshness::default(), Seen::default(), sequences_by_sync());
        let runs_it = vec![seq_ref("crm"), seq_ref("runner")];
        assert_eq!(
            woken_by_sync(&sync_at(1, "5"), &own_writes, &specs, &index),
            Wakes {
                sync: accounts(),
                sequences: runs_it.clone()
            },
            "it appears"
        );
        assert_eq!(
            woken_by_sync(&sync_at(1, "6"), &own_writes, &specs, &index),
            Wakes {
                sync: accounts(),
                sequences: vec![]
            },
            "a status write of someone else wakes the Sync only"
        );
        assert_eq!(
            woken_by_sync(&sync_at(2, "7"), &own_writes, &specs, &index),
            Wakes {
                sync: accounts(),
                sequences: runs_it
            },
            "its spec changed"
        );
    }

    #[test]
    fn the_event_of_the_controllers_own_sync_write_does_not_wake_the_sync() {
        let (own_writes, specs, index) =
            (Freshness::default(), Seen::default(), sequences_by_sync());
        woken_by_sync(&sync_at(1, "5"), &own_writes, &specs, &index);
        let key = freshness::key("Sync", "revops", "accounts");
        own_writes.wrote(&key, Some("5"), &["6".to_string()]);
        assert_eq!(
            woken_by_sync(&sync_at(1, "6"), &own_writes, &specs, &index),
            Wakes::default()
        );
        assert_eq!(
            woken_by_sync(&sync_at(1, "7"), &own_writes, &specs, &index).sync,
            accounts(),
            "a later write of someone else wakes it"
        );
    }

    #[test]
    fn the_event_of_the_controllers_own_sequence_write_wakes_it_only_if_it_waits_for_a_free_sync() {
        let (jobs, pods) = (Cache::<JobEntry>::default(), Cache::<PodEntry>::default());
        let own_writes = Freshness::default();
        let key = freshness::key("SyncSequence", "revops", "crm");
        let at = |phase: &str, version: &str| {
            let mut seq = sequence_with_first_step(phase);
            seq.metadata.resource_version = Some(version.into());
            seq
        };
        assert!(
            sequence_event_wakes(&at("Running", "5"), &own_writes, &jobs, &pods),
            "someone else's write"
        );
        own_writes.wrote(&key, Some("5"), &["6".to_string()]);
        assert!(!sequence_event_wakes(
            &at("Running", "6"),
            &own_writes,
            &jobs,
            &pods
        ));
        own_writes.wrote(&key, Some("6"), &["7".to_string()]);
        assert!(
            sequence_event_wakes(&at("Waiting", "7"), &own_writes, &jobs, &pods),
            "nothing holds accounts any more"
        );
    }
}
