//! The thin layer that talks to the API server: watches, caches, and executing the engine's plans.
//!
//! One watch per resource kind feeds both a cache and the triggers of both controllers, so
//! steady state costs no list calls: Jobs and Pods are watched by label, Syncs and sequences in
//! full, within the configured namespace scope. Jobs and Pods are cached indexed by owner and by
//! Sync (`index`), so that a reconcile reads only its own objects; Syncs and sequences are in
//! reflector stores, which the controllers look objects up in by name.
//!
//! [`run_process`] (`process`) is the process around it: the API clients, the metrics and
//! webhook servers, leader election. `run` wires the watches (`watches`: one stream per kind,
//! each filling its cache) to the two controllers and the receivers' own; whom each event wakes
//! is decided in `triggers`.

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
mod process;
mod receivers;
mod reconcile;
mod shard;
mod triggers;
mod upstream;
mod watches;

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::api::{Sync, SyncSequence, WebhookReceiver};
use crate::cluster::{events, unreadable};
use crate::health::Health;
use crate::metrics::Metrics;
use std::sync::atomic::Ordering;

pub(crate) use egress::EgressPolicy;
pub(crate) use notify::{Transport as WebhookTransport, read_ca_bundle};
pub use process::run_process;
pub(crate) use shard::Shard;

/// Controller settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
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
    /// Reconcile only the objects this selector matches (`--shard-selector`); all when unset.
    pub shard: Option<Shard>,
}

/// Shared state of the reconcilers: the client and the caches fed by the watches.
pub(crate) struct Context {
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
    /// Becomes true once this replica leads. A standby watches and caches like a leader (so a
    /// fail-over costs the lease and one decision, not a list of everything), and decides
    /// nothing until then.
    pub(crate) leading: tokio::sync::watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    /// What `/healthz` and `/readyz` report; reconciles in flight are tracked in it.
    pub health: Arc<Health>,
    /// This instance's shard: the Syncs and receivers it reconciles of those cached (the
    /// sequences watch holds its own only).
    pub(crate) shard: Option<Shard>,
}

impl Context {
    /// Whether `obj` is this instance's to reconcile.
    fn owns(&self, obj: &impl kube::Resource) -> bool {
        self.shard
            .as_ref()
            .is_none_or(|shard| shard.matches(obj.labels()))
    }

    /// Waits until every cache holds its initial list. Deciding on an empty Job cache right
    /// after a restart would let a step start while its Sync is busy elsewhere.
    pub(crate) async fn caches_synced(&self) {
        let mut ready = self.caches_ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Waits until this replica leads (at once without leader election).
    pub(crate) async fn leading(&self) {
        wait_leading(self.leading.clone()).await
    }
}

/// Until `leading` says so. A sender dropped before that means the replica never leads: it
/// waits for good, and its shutdown ends it.
async fn wait_leading(mut leading: tokio::sync::watch::Receiver<bool>) {
    if leading.wait_for(|l| *l).await.is_err() {
        std::future::pending::<()>().await
    }
}

/// Runs the controller until `shutdown` resolves. Reconciles in flight finish before it returns.
/// Its watches fill the caches at once; it decides and writes only once `leading` is true.
async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    leading: tokio::sync::watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + std::marker::Sync + 'static,
) -> anyhow::Result<()> {
    let (caches, writers) = watches::Caches::new();
    // Sync events, and Job and Pod events of a Sync, wake the Sync controller through this
    // channel: one watch per kind serves both controllers, and the Sync controller reads the
    // one Sync cache. Upstreams that finish a run wake the sequences and Syncs that run after
    // them through these channels too.
    let (sync_tx, sync_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Sync>>();
    let (seq_tx, seq_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<SyncSequence>>();
    let downstreams = Arc::new(downstream::Downstreams::new(seq_tx, sync_tx.clone()));
    let reporter = reporter(&config);
    // What the Sync, sequence and receiver watches cannot read is set aside (`watches`).
    let set_aside = unreadable::SetAside::start(
        client.clone(),
        reporter.clone(),
        wait_leading(leading.clone()),
    );

    let watches = watches::Watches {
        client: &client,
        namespace: config.namespace.as_deref(),
        health: &health,
        set_aside: &set_aside,
        shard: config.shard.as_ref(),
    };
    let job_stream = watches.jobs(caches.jobs.clone());
    let pod_stream = watches.pods(caches.pods.clone());
    let sync_stream = watches.syncs(writers.syncs, writers.syncs_listed, downstreams.clone());
    let seq_stream = watches.sequences(writers.sequences, &caches, downstreams.clone());
    let receiver_stream = watches
        .receivers(writers.receivers, writers.receivers_listed, downstreams)
        .await;

    let ctx = Context::start(
        &client,
        &config,
        caches,
        reporter,
        sync_tx,
        (metrics, health),
        leading,
    );
    let shutdown = shutdown.shared();
    tokio::join!(
        sequence_controller(
            seq_stream,
            seq_rx,
            (job_stream, pod_stream, sync_stream),
            ctx.clone(),
            shutdown.clone()
        ),
        sync_controller(sync_rx, ctx.clone(), shutdown.clone()),
        receiver_controller(receiver_stream, ctx, shutdown),
    );
    Ok(())
}

/// Who the controller is in the Events it writes.
fn reporter(config: &Config) -> events::Reporter {
    events::Reporter {
        controller: "syncseq.dev/controller".into(),
        instance: config
            .instance
            .clone()
            .unwrap_or_else(|| format!("syncseq-{}", std::process::id())),
    }
}

impl Context {
    /// The reconcilers' shared state over `caches`. Starts the task that publishes readiness
    /// once every cache holds its first list, the object metrics, and the alert notifier.
    fn start(
        client: &Client,
        config: &Config,
        caches: watches::Caches,
        reporter: events::Reporter,
        wake_sync: tokio::sync::mpsc::UnboundedSender<ObjectRef<Sync>>,
        (metrics, health): (Arc<Metrics>, Arc<Health>),
        leading: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Context> {
        let caches_ready = publish_readiness(&caches, &health);
        // The objects' series are the leader's alone: a standby exporting them too would
        // double every sum over the replicas.
        let stores = crate::metrics::Stores {
            sequences: caches.sequences.clone(),
            syncs: caches.syncs.clone(),
            owns_sync: {
                let shard = config.shard.clone();
                Box::new(move |sync| shard.as_ref().is_none_or(|s| s.matches(sync.labels())))
            },
        };
        let objects = metrics.clone();
        let led = wait_leading(leading.clone());
        tokio::spawn(async move {
            led.await;
            objects.objects.watch(stores);
        });
        Arc::new(Context {
            client: client.clone(),
            syncs: caches.syncs,
            sequences: caches.sequences,
            receivers: caches.receivers,
            sequences_by_sync: caches.sequences_by_sync,
            jobs: caches.jobs,
            pods: caches.pods,
            notifier: notify::Notifier::start(
                client.clone(),
                reporter.clone(),
                config.webhooks.clone(),
                metrics.clone(),
            ),
            reporter,
            admission: priority::Places::new(config.concurrency),
            backoff: Default::default(),
            freshness: caches.own_writes,
            wake_sync,
            caches_ready,
            metrics,
            health,
            shard: config.shard.clone(),
            leading,
        })
    }

    /// Wakes the Sync of `wakes` through the Sync controller's channel, and returns the
    /// sequences to reconcile. Sharded, only those of this shard: a Job or Pod of another
    /// shard's sequence names it too, and it is not in this shard's cache.
    fn wake(&self, wakes: triggers::Wakes) -> Vec<ObjectRef<SyncSequence>> {
        if let Some(sync) = wakes.sync {
            let _ = self.wake_sync.send(sync);
        }
        let mut sequences = wakes.sequences;
        if self.shard.is_some() {
            sequences.retain(|s| self.sequences.get(s).is_some());
        }
        sequences
    }
}

/// One task waits until every cache holds its first list and publishes readiness to every
/// reconcile. (A reflector Store's own `wait_until_ready` wakes only the most recent of
/// several concurrent waiters: its futures oneshot receiver keeps a single waker.)
fn publish_readiness(
    caches: &watches::Caches,
    health: &Arc<Health>,
) -> tokio::sync::watch::Receiver<bool> {
    let (ready_tx, caches_ready) = tokio::sync::watch::channel(false);
    let (jobs, pods) = (caches.jobs.clone(), caches.pods.clone());
    let (mut syncs_listed, mut receivers_listed) =
        (caches.syncs_listed.clone(), caches.receivers_listed.clone());
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
    caches_ready
}

/// No limit in kube-runtime's queue, which starts reconciles in the order they became
/// ready: they wait for a place in `admission`, due work first.
fn queue() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(0)
}

/// The sequence controller: woken by its own watch, by the sequences and Syncs upstream of
/// them (`downstream`), and by the Job, Pod and Sync events that [`triggers`] routes to them.
/// The mappers only deliver what the trigger functions decide: the Sync to wake, on its
/// channel, and the finished Job to the hand-off metric.
async fn sequence_controller(
    sequences: impl futures::Stream<Item = Result<SyncSequence, watcher::Error>> + Send + 'static,
    mut woken: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<SyncSequence>>,
    (jobs, pods, syncs): (
        watches::Objects<Job>,
        watches::Objects<Pod>,
        watches::Objects<Sync>,
    ),
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + std::marker::Sync + 'static,
) {
    let (job_ctx, pod_ctx, sync_ctx) = (ctx.clone(), ctx.clone(), ctx.clone());
    let sync_specs = triggers::Seen::default();
    Controller::for_stream(sequences, ctx.sequences.clone())
        .with_config(queue())
        .reconcile_on(futures::stream::poll_fn(move |cx| woken.poll_recv(cx)))
        .watches_stream(jobs, move |job: Job| {
            let ctx = &job_ctx;
            let woken = triggers::woken_by_job(&job, &ctx.freshness, &ctx.sequences_by_sync);
            if woken.finished {
                ctx.metrics.job_finished(&job.name_any());
                // A hand-off's first mark (bench/REPORT.md, "the trace"); off unless the
                // `syncseq::trace` target is enabled at trace level.
                tracing::trace!(
                    target: "syncseq::trace",
                    namespace = job.metadata.namespace.as_deref().unwrap_or_default(),
                    job = job.metadata.name.as_deref().unwrap_or_default(),
                    "job_finished"
                );
            }
            ctx.wake(woken.wakes)
        })
        .watches_stream(pods, move |pod: Pod| {
            let ctx = &pod_ctx;
            ctx.wake(triggers::woken_by_pod(
                &pod,
                &ctx.jobs,
                &ctx.sequences_by_sync,
            ))
        })
        .watches_stream(syncs, move |sync: Sync| {
            let ctx = &sync_ctx;
            ctx.wake(triggers::woken_by_sync(
                &sync,
                &ctx.freshness,
                &sync_specs,
                &ctx.sequences_by_sync,
            ))
        })
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile::reconcile::<SyncSequence>,
            reconcile::error_policy::<SyncSequence>,
            ctx,
        )
        .for_each(|result| async move { log_failure(result.map(|_| ())) })
        .await
}

/// The Sync controller: its events come from the Sync watch through `woken` (the sequence
/// controller's mappers and the downstreams send them), and it reads the one Sync cache.
async fn sync_controller(
    mut woken: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<Sync>>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + std::marker::Sync + 'static,
) {
    Controller::for_stream(
        futures::stream::pending::<Result<Sync, watcher::Error>>(),
        ctx.syncs.clone(),
    )
    .with_config(queue())
    .reconcile_on(futures::stream::poll_fn(move |cx| woken.poll_recv(cx)))
    .graceful_shutdown_on(shutdown)
    .run(
        // Every Sync is cached, to run as any shard's step; only this shard's are reconciled.
        // Tested on each reconcile rather than on the way in: one relabelled away may have a
        // requeue pending here.
        |sync, ctx| async move {
            match ctx.owns(sync.as_ref()) {
                true => reconcile::reconcile::<Sync>(sync, ctx).await,
                false => Ok(kube::runtime::controller::Action::await_change()),
            }
        },
        reconcile::error_policy::<Sync>,
        ctx,
    )
    .for_each(|result| async move { log_failure(result.map(|_| ())) })
    .await
}

/// The receivers' own controller (their path and Ready condition), when their CRD is served.
async fn receiver_controller(
    receivers: Option<
        impl futures::Stream<Item = Result<WebhookReceiver, watcher::Error>> + Send + 'static,
    >,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + std::marker::Sync + 'static,
) {
    let Some(receivers) = receivers else {
        return;
    };
    Controller::for_stream(receivers, ctx.receivers.clone())
        .graceful_shutdown_on(shutdown)
        .run(
            // Like Syncs: every receiver is cached, for what runs after its deliveries in any
            // shard, and only this shard's are reconciled.
            |receiver, ctx| async move {
                ctx.leading().await;
                match ctx.owns(receiver.as_ref()) {
                    true => receivers::reconcile(receiver, ctx).await,
                    false => Ok(kube::runtime::controller::Action::await_change()),
                }
            },
            receivers::error_policy,
            ctx,
        )
        .for_each(|result| async move { log_failure(result.map(|_| ())) })
        .await
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
