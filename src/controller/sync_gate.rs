//! The last line of "a Sync never runs twice at once".
//!
//! The engine waits while the Job cache shows another active Job of the same Sync. Two
//! reconcilers deciding at the same instant (two sequences, or a sequence and the Sync's own
//! schedule) could both see the Sync free before either new Job reaches the cache, so each
//! Job create first claims the Sync here. A claim lasts until its Job shows up in the cache,
//! which from then on is the source of truth.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::api::labels;
use crate::engine::{JobOutcome, job_outcome};

/// A claim whose Job never appeared (its create failed) stops blocking after this long.
const CLAIM_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct SyncGate {
    claims: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl SyncGate {
    /// Claims `sync` for `job`; on refusal returns the Job that holds it.
    pub fn claim(
        &self,
        jobs: &Store<Job>,
        namespace: &str,
        sync: &str,
        job: &str,
    ) -> Result<(), String> {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let held_in_cache = jobs.state().into_iter().find(|j| {
            j.namespace().as_deref() == Some(namespace)
                && j.labels().get(labels::SYNC).map(String::as_str) == Some(sync)
                && j.name_any() != job
                && (job_outcome(j).0 == JobOutcome::Active
                    || j.metadata.deletion_timestamp.is_some())
        });
        if let Some(holder) = held_in_cache {
            return Err(holder.name_any());
        }
        let key = (namespace.to_string(), sync.to_string());
        if let Some((other, at)) = claims.get(&key)
            && other != job
            && at.elapsed() < CLAIM_TTL
            && !jobs
                .state()
                .iter()
                .any(|j| j.namespace().as_deref() == Some(namespace) && &j.name_any() == other)
        {
            return Err(other.clone());
        }
        claims.insert(key, (job.to_string(), Instant::now()));
        Ok(())
    }

    /// Drops a claim whose Job could not be created.
    pub fn release(&self, namespace: &str, sync: &str, job: &str) {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), sync.to_string());
        if claims.get(&key).is_some_and(|(j, _)| j == job) {
            claims.remove(&key);
        }
    }
}
