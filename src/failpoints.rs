//! Crash points: the lines where a controller killed mid-reconcile leaves the most behind (a
//! status written but no Job, a Job created but no status, a delete sent, notifications
//! decided but not handed over). With the `failpoints` feature, `FAILPOINTS=<name>=1*return`
//! in the environment aborts the process the first time it reaches the point, as `SIGKILL`
//! would; without it, a crash point compiles to nothing. A pause point holds the task instead:
//! `FAILPOINTS=<name>=1*return(<ms>)` makes it wait that long, the first time, after saying so
//! on stderr — a test changes the cluster meanwhile, as a slow or stopped controller would see.

/// After a status write succeeded.
pub(crate) const STATUS_WRITTEN: &str = "status-written";
/// After a Job create succeeded.
pub(crate) const JOB_CREATED: &str = "job-created";
/// After a Job delete was sent.
pub(crate) const JOB_DELETED: &str = "job-deleted";
/// After the status holding new notifications was written, before they are handed over.
pub(crate) const BEFORE_NOTIFY: &str = "before-notify";

/// Before a status write is sent: the object may change meanwhile (a pause point).
pub(crate) const BEFORE_STATUS_WRITE: &str = "before-status-write";
/// Before the status write that records Jobs just created within a run (a pause point).
pub(crate) const BEFORE_STATUS_WRITE_AFTER_JOBS: &str = "before-status-write-after-jobs";

/// Waits here if the environment says so (only with the `failpoints` feature). `what` names
/// what waits, in the line that says so.
#[inline]
pub(crate) async fn pause_point(name: &str, what: impl FnOnce() -> String) {
    #[cfg(feature = "failpoints")]
    if let Some(ms) = fail::eval(name, |arg| {
        arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(1000)
    }) {
        eprintln!("failpoint {name}: pausing {ms} ms before {}", what());
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = (name, what);
}

/// Aborts here if the environment says so (only with the `failpoints` feature).
#[inline]
pub(crate) fn crash_point(name: &str) {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |_| {
        eprintln!("failpoint {name}: aborting");
        std::process::abort()
    });
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Reads `FAILPOINTS`; keep the result alive for the process's life.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}
