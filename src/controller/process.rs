//! The controller process (`syncseq controller`): logging, the API clients, the metrics and
//! health server, the webhook receiver endpoint, and leader election around the controller
//! ([`super::run`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;

use crate::cli::ControllerArgs;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::{apiclient, leader, receiver, server, telemetry};

/// Runs the controller until SIGTERM or Ctrl-C; in-flight reconciles finish first. With
/// leader election, waits for the lease, reconciles while holding it, and exits with an error
/// when it is lost (the replica restarts and rejoins as a standby).
pub async fn run_process(args: ControllerArgs) -> anyhow::Result<()> {
    telemetry::init_logging(&args.log_format, &args.log_level)?;
    let kube_config = kube::Config::infer().await?;
    let instance = args.instance.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "syncseq".into());
        format!("{host}-{}", std::process::id())
    });
    // Every write of the controller passes the fence; the Lease's own client is not fenced
    // (the election guards its renewals itself).
    let limits = apiclient::Limits {
        timeout: std::time::Duration::from_secs(args.api_timeout_seconds.max(1)),
        in_flight: args.api_max_in_flight,
    };
    let client_with = |fence: leader::Fence| -> anyhow::Result<kube::Client> {
        Ok(apiclient::build(&kube_config, fence, &instance, limits)?)
    };
    let config = config(&args, &instance)?;
    let lease = lease(&args, &instance, config.shard.as_ref());
    let metrics = Arc::new(Metrics::new(crate::metrics::Scope {
        per_object: crate::metrics::PerObject::from_flags(
            args.metrics_per_object,
            &args.metrics_per_object_namespaces,
        )
        .map_err(|e| anyhow::anyhow!(e))?,
        stale_intervals: args.metrics_stale_intervals,
        lease: lease.name.clone(),
    }));
    let health = Arc::new(Health::new(std::time::Duration::from_secs(
        args.health_stall_seconds.max(1),
    )));
    let address = server::serve(&args.metrics_address, metrics.clone(), health.clone()).await?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    if let Some(receiver_address) = &args.receiver_address {
        serve_receivers(&args, receiver_address, &kube_config, &instance, &metrics).await?;
    }
    let shutdown = telemetry::shutdown_signal().shared();

    if args.no_leader_election {
        health.leading.store(true, Ordering::SeqCst);
        metrics.leader.set(1);
        tracing::info!(watching = %watched(&config), "starting syncseq controller (no leader election)");
        let (_leading, leading_rx) = tokio::sync::watch::channel(true);
        return super::run(
            client_with(leader::Fence::open())?,
            config,
            metrics,
            health.clone(),
            leading_rx,
            shutdown,
        )
        .await;
    }
    lead(&lease, client_with, config, metrics, health, shutdown).await
}

/// The controller's settings from its command line.
fn config(args: &ControllerArgs, instance: &str) -> anyhow::Result<super::Config> {
    Ok(super::Config {
        namespace: args.namespace.clone(),
        instance: Some(instance.to_string()),
        webhooks: super::WebhookTransport::new(
            super::EgressPolicy::parse(&args.webhook_allow).map_err(|e| anyhow::anyhow!(e))?,
            match &args.webhook_ca_bundle {
                Some(path) => super::read_ca_bundle(path)
                    .map_err(|e| anyhow::anyhow!("--webhook-ca-bundle {e}"))?,
                None => vec![],
            },
        ),
        concurrency: args.concurrent_reconciles,
        shard: match &args.shard_selector {
            Some(text) => Some(
                super::Shard::parse(text)
                    .map_err(|e| anyhow::anyhow!("invalid --shard-selector: {e}"))?,
            ),
            None => None,
        },
    })
}

/// Starts the webhook receiver endpoint on `address`.
async fn serve_receivers(
    args: &ControllerArgs,
    address: &str,
    kube_config: &kube::Config,
    instance: &str,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<()> {
    // Not fenced: recording a delivery is a compare-and-swap, safe from any replica, and
    // standbys serve deliveries too. Its own short deadline keeps a sender from waiting.
    let timeout = std::time::Duration::from_secs(args.receiver_timeout_seconds.max(1));
    let receiver_limits = apiclient::Limits {
        timeout,
        in_flight: 16,
    };
    let address = receiver::serve(
        apiclient::build(
            kube_config,
            leader::Fence::open(),
            instance,
            receiver_limits,
        )?,
        receiver::Config {
            address: address.to_string(),
            namespace: args.namespace.clone(),
            rate: receiver::Rate {
                per_second: args.receiver_rate,
                burst: args.receiver_burst,
            },
            api_timeout: timeout,
        },
        crate::cluster::events::Reporter {
            controller: "syncseq.dev/receiver".into(),
            instance: instance.to_string(),
        },
        metrics.clone(),
    )
    .await?;
    tracing::info!(%address, "serving webhook receivers");
    Ok(())
}

/// The Lease the replicas (of one shard) elect a leader with.
fn lease(
    args: &ControllerArgs,
    instance: &str,
    shard: Option<&super::Shard>,
) -> leader::LeaseConfig {
    leader::LeaseConfig {
        name: leader::lease_name(&args.lease_name, shard.map(super::Shard::normalised)),
        namespace: args
            .lease_namespace
            .clone()
            .or(args.namespace.clone())
            .unwrap_or_else(|| "default".into()),
        identity: instance.to_string(),
        duration: std::time::Duration::from_secs(args.lease_duration_seconds),
    }
}

/// Waits for the lease, runs the controller while holding it, and fails when it is lost.
async fn lead(
    lease: &leader::LeaseConfig,
    client_with: impl Fn(leader::Fence) -> anyhow::Result<kube::Client>,
    config: super::Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + std::marker::Sync + 'static,
) -> anyhow::Result<()> {
    let mut election = leader::Election::start(client_with(leader::Fence::open())?, lease).await?;
    let client = client_with(election.fence())?;
    health.electing.store(true, Ordering::SeqCst);
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = lost_rx => {}
            }
        }
    };
    // A warm standby: its watches list and cache everything while it campaigns, so that once
    // it leads its first decision waits for nothing but the lease (at 10,000 sequences a cold
    // one took 70 s to list after winning it). It decides and writes nothing until then, and
    // its writes are fenced besides.
    let watching = watched(&config);
    let (leading, leading_rx) = tokio::sync::watch::channel(false);
    let run = super::run(
        client,
        config,
        metrics.clone(),
        health.clone(),
        leading_rx,
        stop,
    );
    tokio::pin!(run);
    tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, watching = %watching, "waiting for leadership, watching meanwhile");
    tokio::select! {
        acquired = election.acquired() => acquired?,
        // Nothing was decided while standing by, so nothing is in flight to finish.
        _ = shutdown.clone() => {
            election.release().await;
            return Ok(());
        }
        result = &mut run => {
            election.release().await;
            return result;
        }
    }
    health.leading.store(true, Ordering::SeqCst);
    metrics.leader.set(1);
    leading.send_replace(true);
    tracing::info!(watching = %watching, "leading: starting syncseq controller");
    let result = tokio::select! {
        result = &mut run => result,
        _ = election.lost() => {
            health.leading.store(false, Ordering::SeqCst);
            metrics.leader.set(0);
            let _ = lost_tx.send(());
            // Writes are fenced already, so nothing in flight can act; give it a moment to end
            // cleanly, then exit regardless (a reconcile stuck on a hung request must not keep
            // a replica that cannot lead alive).
            if tokio::time::timeout(STOP_AFTER_LOSS, &mut run).await.is_err() {
                tracing::warn!("reconciles still in flight {STOP_AFTER_LOSS:?} after losing the lease; exiting");
            }
            anyhow::bail!("lost leadership of lease {}", lease.name);
        }
    };
    election.release().await;
    result
}

/// How long a replica that lost the lease waits for its reconciles to end before it exits.
const STOP_AFTER_LOSS: std::time::Duration = std::time::Duration::from_secs(3);

/// What the controller watches, for its log: a namespace, or every namespace, and its shard.
fn watched(config: &super::Config) -> String {
    let scope = match &config.namespace {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".into(),
    };
    match &config.shard {
        Some(shard) => format!("{scope}, shard {}", shard.normalised()),
        None => scope,
    }
}
