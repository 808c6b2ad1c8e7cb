//! syncseq: a Kubernetes operator that runs ordered, scheduled chains of data syncs.
//!
//! The crate is laid out by responsibility: [`api`] holds the resource types, [`schedule`] the
//! pure cron maths, [`engine`] the pure run state machine, and [`controller`] the thin layer that
//! talks to the API server and executes what the engine decides.

pub mod alerts;
pub mod api;
pub mod cli;
pub mod controller;
pub mod engine;
pub mod schedule;
mod telemetry;

/// Runs the controller until SIGTERM or Ctrl-C; in-flight reconciles finish first.
pub async fn run_controller(args: cli::ControllerArgs) -> anyhow::Result<()> {
    telemetry::init_logging(&args.log_format, &args.log_level)?;
    let client = kube::Client::try_default().await?;
    let config = controller::Config {
        namespace: args.namespace,
        instance: args.instance,
    };
    tracing::info!(namespace = ?config.namespace, "starting syncseq controller");
    controller::run(client, config, telemetry::shutdown_signal()).await
}
