//! The integration tests on the local control plane (`make cluster`), in one binary: each test
//! binary links syncseq and all its dependencies, so one binary instead of one per file keeps
//! the build a fraction of the time and disk. Every test here has its own namespace and its own
//! controller, and runs beside the others. Tests that act on the whole control plane (restart
//! kube-apiserver, a cluster-wide controller) or depend on having the machine to themselves
//! (a paused leader, the soak) are binaries of their own: cargo runs test binaries one at a
//! time. `cargo test --test e2e -- schedules::` runs one file's tests.

#[path = "../support/mod.rs"]
mod support;

mod api_faults;
mod backfill;
mod cli;
mod control_plane;
mod crashes;
mod crd_validation;
mod dashboard;
mod edges;
mod failure_policies;
mod graph;
mod metrics;
mod operations;
mod plugin;
mod receivers;
mod run_context;
mod schedules;
mod schedules_more;
mod sequence_run;
mod sharding;
mod standalone_sync;
mod stop_schedule;
mod upstream;
