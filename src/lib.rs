//! syncseq: a Kubernetes operator that runs ordered, scheduled chains of data syncs.
//!
//! The crate is laid out by responsibility: [`api`] holds the resource types, [`schedule`] the
//! pure cron maths, [`engine`] the pure run state machine, and [`controller`] the thin layer that
//! talks to the API server and executes what the engine decides. The modules stand on floors,
//! each using only its own floor and those below, and no two using each other: the floors
//! are listed, and checked, in `layers_tests.rs`.

mod admission;
pub mod alerts;
pub mod api;
mod apiclient;
pub mod cli;
mod cluster;
pub mod controller;
pub mod engine;
pub mod failpoints;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod plugin;
pub mod receiver;
pub mod schedule;
pub mod server;
mod signing;
mod telemetry;
mod text;

#[cfg(test)]
mod layers_tests;
