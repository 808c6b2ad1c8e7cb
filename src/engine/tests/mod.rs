//! Scenario and property tests of the engine, one subject a file, all played in the one test
//! world (`fixtures::World`): the world plays the API server (writes status, creates Jobs) and
//! the Job controller (finishes Jobs as the test says), and the engine decides.

mod alerting;
mod attempts;
mod backfill;
mod graph;
mod jobs;
mod linear_golden;
mod order;
mod properties;
mod rebuild;
mod schedule;
mod schedule_sets;
mod stop_schedule;
mod sync;
mod triggers;
mod upstream;
mod waiting;

use super::fixtures::{World, step};

/// The CRM sequence: accounts, workspaces, contacts, each running the Sync of its name.
fn crm() -> World {
    World::sequence(vec![step("accounts"), step("workspaces"), step("contacts")])
}
