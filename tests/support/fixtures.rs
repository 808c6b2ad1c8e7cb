//! Manifests and helpers for syncseq resources in integration tests.
#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use syncseq::api::{RunBook, RunPhase, Sync, SyncSequence};

use super::{TestNamespace, wait_for_object};

/// A Sync whose simulated container runs for `duration`, then exits with `exit_code` after
/// writing `message` as its termination message (see hack/kwok/stages.yaml).
pub fn sync_yaml(name: &str, duration: &str, exit_code: i32, message: Option<&str>) -> String {
    let message = message
        .map(|m| {
            format!(
                "            sim.syncseq.dev/message: '{}'\n",
                m.replace('\'', "''")
            )
        })
        .unwrap_or_default();
    format!(
        r#"apiVersion: syncseq.dev/v1alpha1
kind: Sync
metadata:
  name: {name}
spec:
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        metadata:
          annotations:
            sim.syncseq.dev/duration: "{duration}"
            sim.syncseq.dev/exit-code: "{exit_code}"
{message}        spec:
          restartPolicy: Never
          containers:
          - name: sync
            image: registry.example.com/warehouse-sync:1.4
"#
    )
}

/// A manual-only sequence over the given steps; `extra` is spliced into each step (YAML lines
/// indented by four spaces, e.g. "    onFailure: Continue\n"), keyed by step name.
pub fn sequence_yaml(name: &str, steps: &[(&str, &str)], spec_extra: &str) -> String {
    let mut out = format!(
        "apiVersion: syncseq.dev/v1alpha1\nkind: SyncSequence\nmetadata:\n  name: {name}\nspec:\n{spec_extra}  steps:\n"
    );
    for (step, extra) in steps {
        out.push_str(&format!(
            "  - name: {step}\n    syncRef: {{name: {step}}}\n{extra}"
        ));
    }
    out
}

/// The CRM example's shape: Syncs `accounts`, `workspaces` and `contacts` whose containers run
/// for `duration`, and a sequence `crm` over them in that order (`spec_extra` as in
/// [`sequence_yaml`]).
pub fn apply_crm(ns: &TestNamespace, duration: &str, spec_extra: &str) {
    for s in CRM_STEPS {
        ns.kubectl_apply(&sync_yaml(s, duration, 0, None));
    }
    let steps: Vec<(&str, &str)> = CRM_STEPS.iter().map(|s| (*s, "")).collect();
    ns.kubectl_apply(&sequence_yaml("crm", &steps, spec_extra));
}

/// The `alerts:` of a sequence spec: (name, when, Secret holding the URL under `url`, format).
pub fn alerts_yaml(alerts: &[(&str, &str, &str, &str)]) -> String {
    let mut out = String::from("  alerts:\n");
    for (name, when, secret, format) in alerts {
        out.push_str(&format!(
            "  - name: {name}\n    when: [{when}]\n    webhook: {{urlSecretRef: {{name: {secret}, key: url}}, format: {format}}}\n"
        ));
    }
    out
}

/// The steps of [`apply_crm`]'s sequence, in order.
pub const CRM_STEPS: [&str; 3] = ["accounts", "workspaces", "contacts"];

/// Sets the manual-request annotation to a new value.
pub async fn trigger(ns: &TestNamespace, sequence: &str, value: &str) {
    annotate(ns, sequence, syncseq::api::annotations::REQUESTED_AT, value).await;
}

pub async fn annotate(ns: &TestNamespace, sequence: &str, key: &str, value: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    ns.api::<SyncSequence>()
        .patch(sequence, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
}

/// Sets an annotation of a Sync (a run or cancel request).
pub async fn annotate_sync(ns: &TestNamespace, name: &str, key: &str, value: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    ns.api::<syncseq::api::Sync>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate sync");
}

/// The objects whose status keeps a run book: both kinds.
pub trait HasRuns:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + 'static
{
    fn book(&self) -> Option<&RunBook>;
}

impl HasRuns for SyncSequence {
    fn book(&self) -> Option<&RunBook> {
        self.status.as_ref().map(|s| &s.book)
    }
}

impl HasRuns for Sync {
    fn book(&self) -> Option<&RunBook> {
        self.status.as_ref().map(|s| &s.book)
    }
}

/// Waits until the named sequence or Sync has finished its own run `run` (or a later one);
/// returns the object.
pub async fn wait_for_run_of<K: HasRuns>(
    ns: &TestNamespace,
    name: &str,
    run: i64,
    deadline: Duration,
) -> K {
    wait_for_object(
        &ns.api::<K>(),
        name,
        deadline,
        &format!("run {run} of {name} to finish"),
        move |o: &K| {
            o.book()
                .and_then(|b| b.runs.first())
                .is_some_and(|r| r.id >= run)
        },
    )
    .await
}

/// Waits until the sequence has finished the given run; returns the sequence.
pub async fn wait_for_run(
    ns: &TestNamespace,
    sequence: &str,
    run: i64,
    deadline: Duration,
) -> SyncSequence {
    wait_for_run_of(ns, sequence, run, deadline).await
}

pub fn last_phase(seq: &SyncSequence) -> Option<RunPhase> {
    seq.status.as_ref()?.book.runs.first().map(|r| r.phase)
}

/// The step label of every Job in the namespace, sorted: one entry per step means one Job each.
pub async fn job_steps(ns: &TestNamespace) -> Vec<String> {
    let jobs = ns
        .api::<Job>()
        .list(&Default::default())
        .await
        .expect("list jobs")
        .items;
    let mut steps: Vec<String> = jobs
        .iter()
        .filter_map(|j| j.metadata.labels.as_ref()?.get("syncseq.dev/step").cloned())
        .collect();
    steps.sort();
    steps
}

/// What a Job watch saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    Created(String),
    Finished(String),
}

/// Records Job creations and completions in a namespace, in watch order, until dropped.
pub struct JobLog {
    events: std::sync::Arc<std::sync::Mutex<Vec<JobEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl JobLog {
    pub async fn start(ns: &TestNamespace) -> Self {
        let api: Api<Job> = ns.api();
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut seen = std::collections::BTreeSet::new();
            let mut finished = std::collections::BTreeSet::new();
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                let Ok(ev) = ev else { continue };
                if let watcher::Event::InitDone = ev
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
                let (watcher::Event::Apply(job) | watcher::Event::InitApply(job)) = ev else {
                    continue;
                };
                let name = job.name_any();
                let mut log = sink.lock().unwrap();
                if seen.insert(name.clone()) {
                    log.push(JobEvent::Created(name.clone()));
                }
                let done = job
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                        })
                    });
                if done && finished.insert(name.clone()) {
                    log.push(JobEvent::Finished(name));
                }
            }
        });
        let _ = ready_rx.await;
        JobLog { events, task }
    }

    pub fn events(&self) -> Vec<JobEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn created(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| {
                if let JobEvent::Created(n) = e {
                    Some(n)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Waits until a Job whose name contains `fragment` was created; returns its name.
    pub async fn wait_created(&self, fragment: &str, deadline: Duration) -> String {
        super::eventually(
            deadline,
            &format!("a Job named *{fragment}* created"),
            || async { self.created().into_iter().find(|n| n.contains(fragment)) },
        )
        .await
    }

    /// Waits until a Job whose name contains `fragment` finished.
    pub async fn wait_finished(&self, fragment: &str, deadline: Duration) {
        super::eventually(
            deadline,
            &format!("a Job named *{fragment}* finished"),
            || async {
                self.events()
                    .iter()
                    .any(|e| matches!(e, JobEvent::Finished(n) if n.contains(fragment)))
                    .then_some(())
            },
        )
        .await
    }

    /// The most Jobs active at once among those whose name passes `filter`.
    pub fn max_concurrent(&self, filter: impl Fn(&str) -> bool) -> usize {
        let mut active = 0usize;
        let mut max = 0;
        for e in self.events() {
            match e {
                JobEvent::Created(n) if filter(&n) => active += 1,
                JobEvent::Finished(n) if filter(&n) => active -= 1,
                _ => {}
            }
            max = max.max(active);
        }
        max
    }
}

impl Drop for JobLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Sync whose Pods, once deleted, keep running for `grace` (a Go duration) before they go, as a
/// real kubelet's Pod runs out its termination grace period (see hack/kwok/stages.yaml).
pub fn sync_yaml_with_grace(name: &str, duration: &str, grace: &str) -> String {
    sync_yaml(name, duration, 0, None).replace(
        "            sim.syncseq.dev/duration:",
        &format!("            sim.syncseq.dev/termination-grace: \"{grace}\"\n            sim.syncseq.dev/duration:"),
    )
}

/// Watches the namespace's Pods and keeps, per Sync, the most Pods that existed at once without
/// having terminated (phase neither Succeeded nor Failed, deleted or not): "a Sync never runs
/// twice at once", counted as the promise counts it.
pub struct PodLog {
    max: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>,
    alive: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodLog {
    pub async fn start(ns: &TestNamespace) -> Self {
        use k8s_openapi::api::core::v1::Pod;
        let api: Api<Pod> = ns.api();
        let max = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        // Pod name -> Sync, for Pods that have not terminated.
        let alive = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let (max_sink, alive_sink) = (max.clone(), alive.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            // Backoff: the watch survives an API server restart without spinning.
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            // During a relist, the Pods listed so far: a Pod deleted while the watch was down
            // is not listed again, and is forgotten when the relist is done.
            let mut relisted: Option<std::collections::BTreeSet<String>> = None;
            while let Some(ev) = stream.next().await {
                let Ok(ev) = ev else { continue };
                let mut alive = alive_sink.lock().unwrap();
                if let (Some(seen), watcher::Event::InitApply(pod)) = (relisted.as_mut(), &ev) {
                    seen.insert(pod.name_any());
                }
                match ev {
                    watcher::Event::InitDone => {
                        if let Some(seen) = relisted.take() {
                            alive.retain(|pod, _| seen.contains(pod));
                        }
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    watcher::Event::Delete(pod) => {
                        alive.remove(&pod.name_any());
                    }
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                        let terminated = matches!(
                            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                            Some("Succeeded" | "Failed")
                        );
                        let sync = pod.labels().get("syncseq.dev/sync").cloned();
                        match (terminated, sync) {
                            (false, Some(sync)) => {
                                alive.insert(pod.name_any(), sync);
                            }
                            _ => {
                                alive.remove(&pod.name_any());
                            }
                        }
                    }
                    watcher::Event::Init => {
                        relisted = Some(Default::default());
                        continue;
                    }
                }
                let mut counts = std::collections::BTreeMap::<String, usize>::new();
                for sync in alive.values() {
                    *counts.entry(sync.clone()).or_default() += 1;
                }
                let mut max = max_sink.lock().unwrap();
                for (sync, n) in counts {
                    if n > 1 {
                        let pods: Vec<&String> = alive
                            .iter()
                            .filter(|(_, s)| **s == sync)
                            .map(|(p, _)| p)
                            .collect();
                        eprintln!("PodLog: {n} Pods of sync {sync} alive at once: {pods:?}");
                    }
                    let m: &mut usize = max.entry(sync).or_default();
                    *m = (*m).max(n);
                }
            }
        });
        let _ = ready_rx.await;
        PodLog { max, alive, task }
    }

    /// The most non-terminated Pods one Sync had at once, per Sync.
    pub fn max_alive(&self) -> std::collections::BTreeMap<String, usize> {
        self.max.lock().unwrap().clone()
    }

    /// How many Pods of the Sync have not terminated now.
    pub fn alive(&self, sync: &str) -> usize {
        self.alive
            .lock()
            .unwrap()
            .values()
            .filter(|s| *s == sync)
            .count()
    }
}

impl Drop for PodLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Pods of the namespace's Jobs, by step label: (step, pod name).
pub async fn step_pods(ns: &TestNamespace) -> Vec<(String, String)> {
    use k8s_openapi::api::core::v1::Pod;
    let pods = ns
        .api::<Pod>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let mut out: Vec<(String, String)> = pods
        .iter()
        .filter_map(|p| {
            let step = p.metadata.labels.as_ref()?.get("syncseq.dev/step")?.clone();
            Some((step, p.metadata.name.clone()?))
        })
        .collect();
    out.sort();
    out
}
