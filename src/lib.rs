//! syncseq: a Kubernetes operator that runs ordered, scheduled chains of data syncs.
//!
//! The crate is laid out by responsibility: [`api`] holds the resource types, [`schedule`] the
//! pure cron maths, [`engine`] the pure run state machine, and [`controller`] the thin layer that
//! talks to the API server and executes what the engine decides. The modules stand on floors,
//! each using only its own floor and those below, and no two using each other: the floors
//! are listed, and checked, in `layers_tests.rs`.

// What the `syncseq` binary, the integration tests and the benchmark use is public (the API
// types, the command line, the crash points and the entry points below); everything else is
// the crate's own, so that rustc reports what nothing uses.
#![warn(unreachable_pub)]

mod admission;
mod alerts;
pub mod api;
mod apiclient;
pub mod cli;
mod cluster;
mod controller;
mod engine;
pub mod failpoints;
mod health;
mod leader;
mod metrics;
mod plugin;
mod receiver;
mod schedule;
mod server;
mod signing;
mod telemetry;
mod text;

pub use controller::run_process as run_controller;
pub use plugin::{invoked_as_plugin, main as plugin_main, run as run_plugin};
pub use receiver::webhook_path;
pub use schedule::jitter_offset;
pub use signing::sign;

#[cfg(test)]
mod layers_tests;
