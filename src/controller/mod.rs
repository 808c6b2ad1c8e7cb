//! The thin layer that talks to the API server: watches, caches, and executing the engine's plans.
//!
//! One watch per resource kind feeds both a cache and the triggers of both controllers, so
//! steady state costs no list calls: Jobs and Pods are watched by label, Syncs and sequences in
//! full, within the configured namespace scope. Jobs and Pods are cached indexed by owner and by
//! Sync (`index`), so that a reconcile reads only its own objects; Syncs and sequences are in
//! reflector stores, which the controllers look objects up in by name.

mod backoff;
mod claim;
mod compact;
mod downstream;
mod egress;
mod execute;
mod freshness;
mod index;
mod notify;
mod observe;
mod priority;
mod receivers;
mod reconcile;
mod triggers;
mod upstream;

use std::sync::Arc;

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::{Readable, Sync, SyncSequence, WebhookReceiver, labels};
use crate::cluster::{events, unreadable};
use crate::health::Health;
use crate::metrics::Metrics;
use std::sync::atomic::Ordering;

pub use egress::EgressPolicy;
pub use notify::{Transport as WebhookTransport, read_ca_bundle};

/// Controller settings.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Watch only this namespace; all namespaces when unset.
    pub namespace: Option<String>,
    /// Identity in Events (`reportingInstance`), e.g. the Pod name.
    pub instance: Option<String>,
    /// How alert webhooks connect: where they may, the CA bundle, the proxies.
    pub webhooks: WebhookTransport,
    /// Reconciles of each kind at once (0: no limit), due work first (`priority`). Objects
    /// beyond it wait for a place as a small future each; a reconcile in progress holds the
    /// object, its plan and its requests.
    pub concurrency: u16,
}

/// Shared state of the reconcilers: the client and the caches fed by the watches.
pub struct Context {
    pub client: Client,
    pub syncs: Store<Sync>,
    /// The sequences, for those that run after them (`spec.after`).
    pub(crate) sequences: Store<SyncSequence>,
    /// The webhook receivers, for those that run after their deliveries.
    pub(crate) receivers: Store<WebhookReceiver>,
    /// Which sequences run each Sync (for the loops `spec.after` could make).
    pub(crate) sequences_by_sync: Arc<index::Cache<index::SyncRefs>>,
    /// Jobs and Pods, found by owner and by Sync.
    pub(crate) jobs: Arc<index::Cache<compact::JobEntry>>,
    pub(crate) pods: Arc<index::Cache<compact::PodEntry>>,
    pub reporter: events::Reporter,
    /// Queues alert notifications for background delivery.
    pub notifier: notify::Notifier,
    /// Where reconciles wait for a place, due work first.
    pub(crate) admission: priority::Places,
    /// Per-object backoff of failed reconciles.
    pub backoff: backoff::Backoff,
    /// The versions our own writes made and passed: which reconciles and watch events they
    /// spare.
    pub freshness: Arc<freshness::Freshness>,
    /// Wakes the Sync controller for one Sync.
    pub(crate) wake_sync: tokio::sync::mpsc::UnboundedSender<ObjectRef<Sync>>,
    /// Becomes true once every cache holds its initial list.
    pub caches_ready: tokio::sync::watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    /// What `/healthz` and `/readyz` report; reconciles in flight are tracked in it.
    pub health: Arc<Health>,
}

impl Context {
    /// Waits until every cache holds its initial list. Deciding on an empty Job cache right
    /// after a restart would let a step start while its Sync is busy elsewhere.
    pub async fn caches_synced(&self) {
        let mut ready = self.caches_ready.clone();
        let _ = ready.wait_for(|r| *r).await;
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

/// Runs the controller until `shutdown` resolves. Reconciles in flight finish before it returns.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + std::marker::Sync + 'static,
) -> anyhow::Result<()> {
    let ns = config.namespace.as_deref();
    let managed =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let jobs: Arc<index::Cache<compact::JobEntry>> = Default::default();
    let pods: Arc<index::Cache<compact::PodEntry>> = Default::default();
    let (syncs, syncs_writer) = reflector::store();
    // Whether the Sync store holds its first list. Not `Store::wait_until_ready`: the Sync
    // controller waits on that, and the store wakes only one of several waiters.
    let (syncs_listed_tx, mut syncs_listed) = tokio::sync::watch::channel(false);
    // Which sequences run each Sync: who to wake when it becomes free or changes.
    let sequences_by_sync: Arc<index::Cache<index::SyncRefs>> = Default::default();
    // Sync events, and Job and Pod events of a Sync, wake the Sync controller through this
    // channel: one watch per kind serves both controllers, and the Sync controller reads the
    // one Sync cache. Upstreams that finish a run wake the sequences and Syncs that run after
    // them through these channels too.
    let (sync_tx, mut sync_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Sync>>();
    let (seq_tx, mut seq_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<SyncSequence>>();
    let downstreams = Arc::new(downstream::Downstreams::new(seq_tx, sync_tx.clone()));

    // The caches keep only what the engine reads (`compact`): Jobs and Pods as small entries
    // of the controller's own, Syncs and sequences without managed fields; whole objects would
    // dominate memory at scale.
    // Deletions are watch events too (`touched_objects`): a Job or Pod that goes away must wake
    // its owner and whoever waits for its Sync. Only events that change what the engine reads
    // wake anyone (`triggers`: those that changed the object's cache entry), and none that only
    // bring back what the controller itself just wrote or created (`freshness`); the caches
    // take them all. A Pod that had terminated before it is deleted wakes no one.
    let job_stream = watcher(api::<Job>(&client, ns), managed.clone())
        .default_backoff()
        .inspect(watch_health(&health, "Job"))
        .try_filter({
            let jobs = jobs.clone();
            move |event| {
                let change = jobs.apply(event, compact::JobEntry::of);
                futures::future::ready(triggers::job_event_matters(event, &change))
            }
        })
        .map_ok(mark_deleted)
        .touched_objects()
        .boxed();
    let pod_stream = watcher(
        api::<Pod>(&client, ns),
        watcher::Config::default().labels(labels::SYNC),
    )
    .default_backoff()
    .inspect(watch_health(&health, "Pod"))
    .try_filter({
        let pods = pods.clone();
        move |event| {
            let change = pods.apply(event, compact::PodEntry::of);
            futures::future::ready(triggers::pod_event_matters(event, &change))
        }
    })
    .map_ok(mark_deleted)
    .touched_objects()
    .boxed();
    let reporter = events::Reporter {
        controller: "syncseq.dev/controller".into(),
        instance: config
            .instance
            .clone()
            .unwrap_or_else(|| format!("syncseq-{}", std::process::id())),
    };
    // Syncs, sequences and receivers are read one by one: one that this release cannot read
    // (a newer one wrote it) is set aside and said on the object, and the others go on.
    let set_aside = unreadable::SetAside::start(client.clone(), reporter.clone());
    let sync_stream = watcher(
        api::<Readable<Sync>>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .try_filter_map(set_aside.filter())
    .inspect(watch_health(&health, "Sync"))
    .modify(compact::sync)
    .reflect(syncs_writer)
    .inspect_ok({
        let downstreams = downstreams.clone();
        move |event| {
            downstreams.sync_event(event);
            if matches!(event, watcher::Event::InitDone) {
                syncs_listed_tx.send_replace(true);
            }
        }
    })
    .map_ok(mark_deleted)
    .touched_objects()
    .boxed();

    let (seq_store, seq_writer) = reflector::store();
    // The watch event of the controller's own status write wakes nobody (`freshness`).
    let own_writes: Arc<freshness::Freshness> = Default::default();
    let seq_own_writes = own_writes.clone();
    let seq_stream = watcher(
        api::<Readable<SyncSequence>>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .try_filter_map(set_aside.filter())
    .inspect(watch_health(&health, "SyncSequence"))
    .modify(compact::sequence)
    .reflect(seq_writer)
    .inspect_ok({
        let index = sequences_by_sync.clone();
        let downstreams = downstreams.clone();
        move |event| {
            index.apply(event, index::SyncRefs::of);
            downstreams.sequence_event(event);
        }
    })
    .applied_objects()
    .try_filter({
        let (jobs, pods) = (jobs.clone(), pods.clone());
        move |seq| {
            let key = freshness::key(
                "SyncSequence",
                &seq.namespace().unwrap_or_default(),
                &seq.name_any(),
            );
            let wakes = seq_own_writes.wakes(&key, seq.resource_version().as_deref());
            futures::future::ready(wakes || triggers::waits_for_a_free_sync(seq, &jobs, &pods))
        }
    });
    // Webhook receivers: their deliveries start the objects that run after them, and their
    // own reconcile keeps their path and Ready condition. (The webhook endpoint, which runs in
    // every replica and not only the leader, watches them on its own; they are few.) Without
    // their CRD (the controller upgraded before its CRDs, or CRDs applied by hand and not yet
    // updated) everything else works as before.
    let (receiver_store, receiver_writer) = reflector::store();
    let (receivers_listed_tx, mut receivers_listed) = tokio::sync::watch::channel(false);
    let receiver_stream = if receivers_served(&client, ns).await {
        let stream = watcher(
            api::<Readable<WebhookReceiver>>(&client, ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .try_filter_map(set_aside.filter())
        .inspect(watch_health(&health, "WebhookReceiver"))
        .reflect(receiver_writer)
        .inspect_ok(move |event| {
            downstreams.receiver_event(event);
            if matches!(event, watcher::Event::InitDone) {
                receivers_listed_tx.send_replace(true);
            }
        })
        .applied_objects()
        // Its own reconcile reads the spec (and the Secret) only: a delivery recorded in its
        // status wakes the objects after it, not the receiver.
        .predicate_filter(
            kube::runtime::predicates::generation,
            PredicateConfig::default(),
        );
        Some(stream)
    } else {
        // No receiver controller at all: one on a store that never fills would wait for it
        // forever, shutdown included.
        receivers_listed_tx.send_replace(true);
        None
    };
    // No limit in kube-runtime's queue, which starts reconciles in the order they became
    // ready: they wait for a place in `admission`, due work first.
    let limits = kube::runtime::controller::Config::default().concurrency(0);
    let controller = Controller::for_stream(seq_stream, seq_store.clone())
        .with_config(limits.clone())
        .reconcile_on(futures::stream::poll_fn(move |cx| seq_rx.poll_recv(cx)));

    // One task waits until every cache holds its first list and publishes readiness to every
    // reconcile. (A reflector Store's own `wait_until_ready` wakes only the most recent of
    // several concurrent waiters: its futures oneshot receiver keeps a single waker.)
    let (ready_tx, caches_ready) = tokio::sync::watch::channel(false);
    {
        let (jobs, pods) = (jobs.clone(), pods.clone());
        let ready = health.clone();
        tokio::spawn(async move {
            jobs.wait_until_ready().await;
            pods.wait_until_ready().await;
            let _ = syncs_listed.wait_for(|listed| *listed).await;
            let _ = receivers_listed.wait_for(|listed| *listed).await;
            let _ = ready_tx.send(true);
            ready.caches_synced.store(true, Ordering::SeqCst);
            tracing::info!("caches synced");
        });
    }
    metrics.objects.watch(crate::metrics::Stores {
        sequences: seq_store.clone(),
        syncs: syncs.clone(),
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        syncs: syncs.clone(),
        sequences: seq_store.clone(),
        receivers: receiver_store,
        sequences_by_sync: sequences_by_sync.clone(),
        jobs: jobs.clone(),
        pods: pods.clone(),
        notifier: notify::Notifier::start(
            client.clone(),
            reporter.clone(),
            config.webhooks.clone(),
            metrics.clone(),
        ),
        reporter,
        admission: priority::Places::new(config.concurrency),
        backoff: Default::default(),
        freshness: own_writes.clone(),
        wake_sync: sync_tx.clone(),
        caches_ready,
        metrics: metrics.clone(),
        health: health.clone(),
    });

    let sync_changed = sync_tx.clone();
    let wake_sync = move |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        if let (Some(sync), Some(ns)) = (
            meta.labels.as_ref().and_then(|l| l.get(labels::SYNC)),
            meta.namespace.as_ref(),
        ) {
            let _ = sync_tx.send(ObjectRef::new(sync).within(ns));
        }
    };
    let wake_sync_for_pods = wake_sync.clone();
    let jobs_for_pods = jobs.clone();
    let own_jobs = own_writes.clone();
    let shutdown = shutdown.shared();

    let sync_controller = Controller::for_stream(
        futures::stream::pending::<Result<Sync, watcher::Error>>(),
        syncs.clone(),
    )
    .with_config(limits)
    .reconcile_on(futures::stream::poll_fn(move |cx| sync_rx.poll_recv(cx)))
    .graceful_shutdown_on(shutdown.clone())
    .run(
        reconcile::reconcile::<Sync>,
        reconcile::error_policy::<Sync>,
        ctx.clone(),
    )
    .for_each(|result| async move { log_failure(result.map(|_| ())) });

    let sync_specs = triggers::Seen::default();
    let (by_sync_for_jobs, by_sync_for_pods, by_sync_for_syncs) = (
        sequences_by_sync.clone(),
        sequences_by_sync.clone(),
        sequences_by_sync,
    );
    let receiver_controller = match receiver_stream {
        Some(stream) => Controller::for_stream(stream, ctx.receivers.clone())
            .graceful_shutdown_on(shutdown.clone())
            .run(receivers::reconcile, receivers::error_policy, ctx.clone())
            .for_each(|result| async move { log_failure(result.map(|_| ())) })
            .boxed(),
        None => futures::future::ready(()).boxed(),
    };

    let sequence_controller = controller
        // A Job event wakes its owning sequence; its end, or its deletion, every sequence that
        // waits for the same Sync (not those that merely run it).
        .watches_stream(job_stream, move |job: Job| {
            let finished = crate::engine::job_outcome(&job).0 != crate::engine::JobOutcome::Active;
            if finished {
                metrics.job_finished(&job.name_any());
            }
            let mut refs = Vec::new();
            let mut spares_sync = false;
            if let (Some(seq), Some(ns)) = (job.labels().get(labels::SEQUENCE), job.namespace()) {
                // The first event of a Job this process just created, still running: the
                // reconcile that created it records it in status (`freshness`), and its claim
                // recorded it on the Sync (`claim`).
                let just_created = own_jobs
                    .first_event_of_created_job(&ns, &job.name_any())
                    .filter(|_| !finished && job.metadata.deletion_timestamp.is_none());
                spares_sync = just_created.is_some_and(|c| c.spares_sync());
                if just_created.is_none() {
                    refs.push(ObjectRef::new(seq).within(&ns));
                }
            }
            if !spares_sync {
                wake_sync(&job.metadata);
            }
            if (finished || job.metadata.deletion_timestamp.is_some())
                && let Some(sync) = job.labels().get(labels::SYNC)
            {
                refs.extend(sequences(
                    &by_sync_for_jobs,
                    job.namespace().as_deref(),
                    &index::IndexKey::WaitingFor(sync.clone()),
                ));
            }
            refs
        })
        // A terminated Pod carries the result the engine reads; a terminated or deleted one
        // may also free its Sync for those waiting. Pending and Running updates only cost, and
        // so does a Pod that terminated while its Job is still active: the engine reads the
        // result with the Job's outcome, and the Job's completion, which follows, wakes
        // everyone and finds the result in the cache (taken before this mapper runs). The Job
        // holds the Sync meanwhile. (The deletion of a Pod that had terminated is filtered out
        // with its event, above.)
        .watches_stream(pod_stream, move |pod: Pod| {
            if !compact::pod_terminated(&pod) && pod.metadata.deletion_timestamp.is_none() {
                return vec![];
            }
            if pod.metadata.deletion_timestamp.is_none() && job_runs_on(&jobs_for_pods, &pod) {
                return vec![];
            }
            wake_sync_for_pods(&pod.metadata);
            let ns = pod.namespace();
            let mut refs: Vec<_> = pod
                .labels()
                .get(labels::SEQUENCE)
                .cloned()
                .zip(ns.clone())
                .map(|(seq, ns)| ObjectRef::new(&seq).within(&ns))
                .into_iter()
                .collect();
            if let Some(sync) = pod.labels().get(labels::SYNC) {
                refs.extend(sequences(
                    &by_sync_for_pods,
                    ns.as_deref(),
                    &index::IndexKey::WaitingFor(sync.clone()),
                ));
            }
            refs
        })
        // A Sync's own events wake the Sync controller; the sequences that run it only when it
        // appears, goes, or its spec changes. Its status (its last run, its claim) changes with
        // every step and decides nothing for them: what holds it comes from Jobs and Pods.
        .watches_stream(sync_stream, move |sync: Sync| {
            let key = freshness::key(
                "Sync",
                &sync.namespace().unwrap_or_default(),
                &sync.name_any(),
            );
            if own_writes.wakes(&key, sync.resource_version().as_deref()) {
                let _ = sync_changed.send(ObjectRef::from(&sync));
            }
            if !sync_specs.changed(&sync, triggers::spec_version(&sync.metadata)) {
                return vec![];
            }
            sequences(
                &by_sync_for_syncs,
                sync.namespace().as_deref(),
                &index::IndexKey::Sync(sync.name_any()),
            )
        })
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile::reconcile::<SyncSequence>,
            reconcile::error_policy::<SyncSequence>,
            ctx,
        )
        .for_each(|result| async move { log_failure(result.map(|_| ())) });
    tokio::join!(sequence_controller, sync_controller, receiver_controller);
    Ok(())
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

/// What the controller runtime reports besides reconciles: a failed reconcile was logged
/// (at warn, with its object) and counted by the error policy already.
fn log_failure<E: std::fmt::Display>(
    result: Result<(), kube::runtime::controller::Error<E, watcher::Error>>,
) {
    use kube::runtime::controller::Error;
    match result {
        Ok(()) | Err(Error::ReconcilerFailed(..)) => {}
        Err(Error::ObjectNotFound(obj)) => {
            tracing::debug!(object = %obj, "object gone before its reconcile")
        }
        Err(e) => tracing::warn!(error = %e, "controller queue failed"),
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

/// Whether the Job that controls `pod` is in the cache, active and not being deleted.
fn job_runs_on(jobs: &index::Cache<compact::JobEntry>, pod: &Pod) -> bool {
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
            && job.outcome == crate::engine::JobOutcome::Active
            && !job.deleting
    })
}

/// The sequences of a namespace found by `key` in the sequence cache: those with a step that
/// runs a Sync (`IndexKey::Sync`), or those whose current run waits for it
/// (`IndexKey::WaitingFor`).
fn sequences(
    index: &index::Cache<index::SyncRefs>,
    namespace: Option<&str>,
    key: &index::IndexKey,
) -> Vec<ObjectRef<SyncSequence>> {
    let ns = namespace.unwrap_or_default();
    index
        .names(ns, key)
        .iter()
        .map(|name| ObjectRef::new(name).within(ns))
        .collect()
}
