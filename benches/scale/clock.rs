//! The benchmark's own watch on the namespace's Jobs: when each Job's creation and its finish
//! arrived here, independent of any controller. Every figure of hand-off and firing delay is
//! taken from these arrival times, for syncseq, the floor and CronJob alike.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// What the watch saw of one Job.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When the first event of the Job arrived.
    pub created: Timestamp,
    /// When the first event showing it Complete or Failed arrived.
    pub finished: Option<Timestamp>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

pub struct JobClock {
    jobs: Arc<Mutex<HashMap<String, Seen>>>,
    /// Watch (re)starts after the first: Jobs created while the watch was down are timed late.
    restarts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// Whether the Job has one of the given conditions with status True (`Complete`, `Failed`).
pub fn has_condition(job: &Job, types: &[&str]) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| types.contains(&c.type_.as_str()) && c.status == "True")
        })
}

impl JobClock {
    /// Starts watching; returns once the initial list is in.
    pub async fn start(api: Api<Job>) -> Self {
        let jobs: Arc<Mutex<HashMap<String, Seen>>> = Default::default();
        let restarts = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (sink, inits) = (jobs.clone(), restarts.clone());
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = stream.next().await {
                let now = Timestamp::now();
                let job = match event {
                    Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => job,
                    Ok(watcher::Event::Init) => {
                        if ready.is_none() {
                            inits.fetch_add(1, Ordering::SeqCst);
                        }
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(watcher::Event::Delete(_)) | Err(_) => continue,
                };
                let Some(name) = job.metadata.name.clone() else {
                    continue;
                };
                let mut jobs = sink.lock().unwrap();
                let seen = jobs.entry(name).or_insert_with(|| Seen {
                    created: now,
                    finished: None,
                    labels: job.metadata.labels.clone().unwrap_or_default(),
                    annotations: job.metadata.annotations.clone().unwrap_or_default(),
                });
                if seen.finished.is_none() && has_condition(&job, &["Complete", "Failed"]) {
                    seen.finished = Some(now);
                }
            }
        });
        let _ = ready_rx.await;
        JobClock {
            jobs,
            restarts,
            task,
        }
    }

    pub fn snapshot(&self) -> HashMap<String, Seen> {
        self.jobs.lock().unwrap().clone()
    }

    /// How many Jobs seen so far satisfy `f`, without copying them (cheap enough to ask every
    /// second at tens of thousands of Jobs).
    pub fn count(&self, f: impl Fn(&Seen) -> bool) -> usize {
        self.jobs.lock().unwrap().values().filter(|j| f(j)).count()
    }

    pub fn restarts(&self) -> usize {
        self.restarts.load(Ordering::SeqCst)
    }
}

impl Drop for JobClock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds from `a` to `b`.
pub fn seconds(a: Timestamp, b: Timestamp) -> f64 {
    b.duration_since(a).as_secs_f64()
}
