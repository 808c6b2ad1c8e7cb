//! The watches: one stream per resource kind, each feeding its cache on the way and yielding
//! the objects whose events wake someone.
//!
//! The caches keep only what the engine reads (`compact`): Jobs and Pods as small entries of
//! the controller's own, Syncs and sequences without managed fields; whole objects would
//! dominate memory at scale.
//! Deletions are watch events too (`touched_objects`): a Job or Pod that goes away must wake
//! its owner and whoever waits for its Sync. Only events that change what the engine reads
//! wake anyone (`triggers`: those that changed the object's cache entry), and none that only
//! bring back what the controller itself just wrote or created (`freshness`); the caches
//! take them all. A Pod that had terminated before it is deleted wakes no one.
//!
//! Sharded (`--shard-selector`, docs/sharding.md), the sequence watch carries the selector, so
//! the API server sends this shard's sequences only (and a Delete for one relabelled away).
//! Syncs and receivers are watched in full: a sequence runs any Sync as a step and claims it,
//! and runs after any Sync or receiver; which of them this instance reconciles is decided on
//! the cached object (`Context::owns`). Jobs and Pods are watched in full too: they hold the
//! Syncs every shard claims.
//!
//! Syncs, sequences and receivers are read one by one: one that this release cannot read
//! (a newer one wrote it) is set aside and said on the object, and the others go on.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client};

use super::downstream::Downstreams;
use super::{compact, freshness, index, triggers};
use crate::api::{Readable, Sync, SyncSequence, WebhookReceiver, labels};
use crate::cluster::unreadable::SetAside;
use crate::health::Health;

/// The caches the watches fill and the reconciles read.
pub(super) struct Caches {
    pub(super) jobs: Arc<index::Cache<compact::JobEntry>>,
    pub(super) pods: Arc<index::Cache<compact::PodEntry>>,
    pub(super) syncs: Store<Sync>,
    pub(super) sequences: Store<SyncSequence>,
    pub(super) receivers: Store<WebhookReceiver>,
    /// Which sequences run each Sync: who to wake when it becomes free or changes.
    pub(super) sequences_by_sync: Arc<index::Cache<index::SyncRefs>>,
    /// The controller's own writes: the watch event of its own status write wakes nobody
    /// (`freshness`).
    pub(super) own_writes: Arc<freshness::Freshness>,
    /// Whether the Sync store holds its first list. Not `Store::wait_until_ready`: the Sync
    /// controller waits on that, and the store wakes only one of several waiters.
    pub(super) syncs_listed: tokio::sync::watch::Receiver<bool>,
    /// Whether the receiver store holds its first list (or never will: no CRD).
    pub(super) receivers_listed: tokio::sync::watch::Receiver<bool>,
}

/// What fills the reflector stores of [`Caches`], and says when each holds its first list.
pub(super) struct Writers {
    pub(super) syncs: Writer<Sync>,
    pub(super) syncs_listed: tokio::sync::watch::Sender<bool>,
    pub(super) sequences: Writer<SyncSequence>,
    pub(super) receivers: Writer<WebhookReceiver>,
    pub(super) receivers_listed: tokio::sync::watch::Sender<bool>,
}

impl Caches {
    /// Empty caches, and the writers of those that are reflector stores.
    pub(super) fn new() -> (Caches, Writers) {
        let (syncs, syncs_writer) = reflector::store();
        let (syncs_listed_tx, syncs_listed) = tokio::sync::watch::channel(false);
        let (sequences, sequences_writer) = reflector::store();
        let (receivers, receivers_writer) = reflector::store();
        let (receivers_listed_tx, receivers_listed) = tokio::sync::watch::channel(false);
        let caches = Caches {
            jobs: Default::default(),
            pods: Default::default(),
            syncs,
            sequences,
            receivers,
            sequences_by_sync: Default::default(),
            own_writes: Default::default(),
            syncs_listed,
            receivers_listed,
        };
        let writers = Writers {
            syncs: syncs_writer,
            syncs_listed: syncs_listed_tx,
            sequences: sequences_writer,
            receivers: receivers_writer,
            receivers_listed: receivers_listed_tx,
        };
        (caches, writers)
    }
}

/// A watch stream of objects, as the controllers take them.
pub(super) type Objects<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// What every watch is built with: where it watches, and whom it reports to.
pub(super) struct Watches<'a> {
    pub(super) client: &'a Client,
    /// Watch only this namespace; all namespaces when None.
    pub(super) namespace: Option<&'a str>,
    pub(super) health: &'a Arc<Health>,
    pub(super) set_aside: &'a SetAside,
    /// Only this shard's sequences are watched; all when None.
    pub(super) shard: Option<&'a super::Shard>,
}

impl Watches<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        api(self.client, self.namespace)
    }

    /// The Jobs syncseq manages, into the Job cache; those whose event matters
    /// ([`triggers::job_event_matters`]).
    pub(super) fn jobs(&self, jobs: Arc<index::Cache<compact::JobEntry>>) -> Objects<Job> {
        let managed = watcher::Config::default().labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGER
        ));
        watcher(self.api::<Job>(), managed)
            .default_backoff()
            .inspect(watch_health(self.health, "Job"))
            .try_filter(move |event| {
                let change = jobs.apply(event, compact::JobEntry::of);
                futures::future::ready(triggers::job_event_matters(event, &change))
            })
            .map_ok(mark_deleted)
            .touched_objects()
            .boxed()
    }

    /// The Pods of Syncs, into the Pod cache; those whose event matters
    /// ([`triggers::pod_event_matters`]).
    pub(super) fn pods(&self, pods: Arc<index::Cache<compact::PodEntry>>) -> Objects<Pod> {
        watcher(
            self.api::<Pod>(),
            watcher::Config::default().labels(labels::SYNC),
        )
        .default_backoff()
        .inspect(watch_health(self.health, "Pod"))
        .try_filter(move |event| {
            let change = pods.apply(event, compact::PodEntry::of);
            futures::future::ready(triggers::pod_event_matters(event, &change))
        })
        .map_ok(mark_deleted)
        .touched_objects()
        .boxed()
    }

    /// Every Sync, into the Sync store and to the downstreams that run after them; every
    /// event's object.
    pub(super) fn syncs(
        &self,
        store: Writer<Sync>,
        listed: tokio::sync::watch::Sender<bool>,
        downstreams: Arc<Downstreams>,
    ) -> Objects<Sync> {
        watcher(self.api::<Readable<Sync>>(), watcher::Config::default())
            .default_backoff()
            .try_filter_map(self.set_aside.filter())
            .inspect(watch_health(self.health, "Sync"))
            .modify(compact::sync)
            .reflect(store)
            .inspect_ok(move |event| {
                downstreams.sync_event(event);
                if matches!(event, watcher::Event::InitDone) {
                    listed.send_replace(true);
                }
            })
            .map_ok(mark_deleted)
            .touched_objects()
            .boxed()
    }

    /// Every sequence (of this shard), into the sequence store, the index of the Syncs they run and to the
    /// downstreams that run after them; those whose event wakes them
    /// ([`triggers::sequence_event_wakes`]).
    pub(super) fn sequences(
        &self,
        store: Writer<SyncSequence>,
        caches: &Caches,
        downstreams: Arc<Downstreams>,
    ) -> impl Stream<Item = Result<SyncSequence, watcher::Error>> + Send + 'static {
        let index = caches.sequences_by_sync.clone();
        let (own_writes, jobs, pods) = (
            caches.own_writes.clone(),
            caches.jobs.clone(),
            caches.pods.clone(),
        );
        let selected = match self.shard {
            Some(shard) => watcher::Config::default().labels(shard.normalised()),
            None => watcher::Config::default(),
        };
        watcher(self.api::<Readable<SyncSequence>>(), selected)
            .default_backoff()
            .try_filter_map(self.set_aside.filter())
            .inspect(watch_health(self.health, "SyncSequence"))
            .modify(compact::sequence)
            .reflect(store)
            .inspect_ok(move |event| {
                index.apply(event, index::SyncRefs::of);
                downstreams.sequence_event(event);
            })
            .applied_objects()
            .try_filter(move |seq| {
                futures::future::ready(triggers::sequence_event_wakes(
                    seq,
                    &own_writes,
                    &jobs,
                    &pods,
                ))
            })
    }

    /// Webhook receivers: their deliveries start the objects that run after them, and their
    /// own reconcile keeps their path and Ready condition. (The webhook endpoint, which runs
    /// in every replica and not only the leader, watches them on its own; they are few.)
    /// Without their CRD (the controller upgraded before its CRDs, or CRDs applied by hand and
    /// not yet updated) everything else works as before: None, no receiver controller.
    pub(super) async fn receivers(
        &self,
        store: Writer<WebhookReceiver>,
        listed: tokio::sync::watch::Sender<bool>,
        downstreams: Arc<Downstreams>,
    ) -> Option<impl Stream<Item = Result<WebhookReceiver, watcher::Error>> + Send + 'static> {
        if !receivers_served(self.client, self.namespace).await {
            // No receiver controller at all: one on a store that never fills would wait for
            // it forever, shutdown included.
            listed.send_replace(true);
            return None;
        }
        let stream = watcher(
            self.api::<Readable<WebhookReceiver>>(),
            watcher::Config::default(),
        )
        .default_backoff()
        .try_filter_map(self.set_aside.filter())
        .inspect(watch_health(self.health, "WebhookReceiver"))
        .reflect(store)
        .inspect_ok(move |event| {
            downstreams.receiver_event(event);
            if matches!(event, watcher::Event::InitDone) {
                listed.send_replace(true);
            }
        })
        .applied_objects()
        // Its own reconcile reads the spec (and the Secret) only: a delivery recorded in its
        // status wakes the objects after it, not the receiver. A change of its labels does
        // too: sharded, one relabelled into this shard is this shard's to reconcile from then.
        .predicate_filter(
            kube::runtime::Predicate::<WebhookReceiver>::combine(
                kube::runtime::predicates::generation,
                kube::runtime::predicates::labels,
            ),
            PredicateConfig::default(),
        );
        Some(stream)
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Whether the API server serves WebhookReceivers. Only a missing resource (404) says no: any
/// other error is left to the watch, which retries and reports to the health probes.
async fn receivers_served(client: &Client, namespace: Option<&str>) -> bool {
    let probe = api::<WebhookReceiver>(client, namespace)
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await;
    match probe {
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::warn!(
                "the WebhookReceiver CRD is not installed: webhook-started runs are off until it \
                 is (upgrade the CRDs: helm upgrade with crds.enabled, or apply crds/) and the \
                 controller restarts"
            );
            false
        }
        _ => true,
    }
}

/// Feeds a watch's results to the health probes.
fn watch_health<K>(
    health: &Arc<Health>,
    kind: &'static str,
) -> impl Fn(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
    let health = health.clone();
    move |result| {
        if let Err(e) = result {
            tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
        }
        health.watch_result(
            kind,
            result.as_ref().err().map(|e| e as &dyn std::fmt::Display),
        );
    }
}

/// Marks the object of a Delete event as being deleted, so that the mappers, which see objects
/// and not events, can tell (an object deleted without grace may carry no deletionTimestamp).
fn mark_deleted<K: kube::Resource>(event: watcher::Event<K>) -> watcher::Event<K> {
    match event {
        watcher::Event::Delete(mut obj) => {
            obj.meta_mut().deletion_timestamp.get_or_insert_with(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
            });
            watcher::Event::Delete(obj)
        }
        other => other,
    }
}
