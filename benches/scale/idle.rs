//! The idle fleet, what it costs while nothing is due, and the controller's cold start (issue
//! 36: acceptance 2, and the start-up half of 3).
//!
//! - `BENCH_IDLE` (default 0) more sequences of three steps one after another, each step its
//!   own Sync, named `idle-<i>` (Syncs `idle-<i>-a`, `-b`, `-c`) so that they never mix with
//!   the running `seq-<i>` ones. Each is on a daily schedule whose fire time is 6 to 18 hours
//!   after the benchmark starts, with `jitterSeconds: 3600`: nothing of theirs is due while it
//!   runs. Daily, not hourly: 9,000 sequences on hourly schedules would start 2.5 runs a
//!   second, which is not idle.
//! - `BENCH_IDLE_WINDOW` (default 120 s with an idle fleet, else 0; 0 skips it): once every object has been reconciled
//!   once, a window in which nothing is triggered, with the controller's reconciles, writes
//!   and CPU in it.
//! - `BENCH_COLD_STARTS` (default 0): after the measured round, the controller is killed
//!   (SIGKILL) and started again that many times, each start timed to `/readyz`, to its
//!   caches synced and to its first reconcile.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use syncseq::api::{Sync, SyncSequence, labels};

use super::stats::{self, Summary};
use super::support::audit::AuditWrite;
use super::support::fixtures::{sequence_yaml, sync_yaml};
use super::support::{ControllerProcess, TestNamespace, lease_holder};
use super::{CONTROLLER_AGENT, RunsWatch, Scrape, cgroup, clock, env_usize, get, scrape};

/// The idle sequences' and their Syncs' names start with this.
const PREFIX: &str = "idle-";
/// How often a cold start is looked at: its figures are this coarse.
const POLL: Duration = Duration::from_millis(100);
/// The log line of a reconcile that got as far as a decision, naming its object
/// (`object=<kind>/<namespace>/<name>`).
const DECIDED: &str = " decided object=";

pub(crate) struct Config {
    pub(crate) sequences: usize,
    window: Duration,
    cold_starts: usize,
}

impl Config {
    pub(crate) fn from_env() -> Self {
        let sequences = env_usize("BENCH_IDLE", 0);
        Config {
            sequences,
            // The window is the idle fleet's figure: without one, `make test-bench` need not wait.
            window: Duration::from_secs(env_usize(
                "BENCH_IDLE_WINDOW",
                if sequences > 0 { 120 } else { 0 },
            ) as u64),
            cold_starts: env_usize("BENCH_COLD_STARTS", 0),
        }
    }

    /// The idle window's length, if there is one.
    pub(crate) fn window(&self) -> Option<Duration> {
        (!self.window.is_zero()).then_some(self.window)
    }
}

/// A daily schedule (UTC) for idle sequence `i` of `n`: their fire times spread evenly, in
/// whole minutes, over the 6 to 18 hours after `start` (the first within its minute, so at
/// least 5 h 59 min away); jitter only delays a start further.
fn daily_schedule(i: usize, n: usize, start: Timestamp) -> String {
    let offset = 6 * 60 + (i * 12 * 60) / n.max(1);
    let minute_of_day = (start.as_second().div_euclid(60) as usize + offset) % (24 * 60);
    format!("{} {} * * *", minute_of_day % 60, minute_of_day / 60)
}

/// Creates the idle sequences and their Syncs through the API, `CREATES_IN_FLIGHT` at a time:
/// `kubectl apply` made 25 to 80 objects a second here (a read before each write, one after
/// another), 10 to 25 minutes for the 36,000 objects of the 10,000 case. The manifests are the
/// running ones' (`sync_yaml`, `sequence_yaml`).
pub(crate) async fn create(ns: &TestNamespace, config: &Config, start: Timestamp) {
    let n = config.sequences;
    if n == 0 {
        return;
    }
    let t = Instant::now();
    let syncs = ns.api::<Sync>();
    let sequences = ns.api::<SyncSequence>();
    let parse = |yaml: &str| -> serde_json::Value {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("a fixture's YAML: {e}\n{yaml}"))
    };
    let objects = (0..n).flat_map(|i| {
        let steps: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|s| format!("{PREFIX}{i}-{s}"))
            .collect();
        let mut docs: Vec<serde_json::Value> = steps
            .iter()
            .map(|s| parse(&sync_yaml(s, "2s", 0, None)))
            .collect();
        let steps: Vec<(&str, &str)> = steps.iter().map(|s| (s.as_str(), "")).collect();
        docs.push(parse(&sequence_yaml(
            &format!("{PREFIX}{i}"),
            &steps,
            &format!(
                "  schedule: \"{}\"\n  jitterSeconds: 3600\n",
                daily_schedule(i, n, start)
            ),
        )));
        docs
    });
    let created = futures::stream::iter(objects)
        .map(|doc| {
            let (syncs, sequences) = (&syncs, &sequences);
            async move {
                let pp = kube::api::PostParams::default();
                let result = match doc["kind"].as_str() {
                    Some("Sync") => syncs
                        .create(&pp, &serde_json::from_value(doc).expect("a Sync"))
                        .await
                        .map(drop),
                    _ => sequences
                        .create(&pp, &serde_json::from_value(doc).expect("a SyncSequence"))
                        .await
                        .map(drop),
                };
                result.expect("create an idle object")
            }
        })
        .buffer_unordered(CREATES_IN_FLIGHT)
        .count()
        .await;
    eprintln!(
        "created {n} idle sequences ({created} objects) in {:?}",
        t.elapsed()
    );
}

/// Creates in flight while the idle fleet is made.
const CREATES_IN_FLIGHT: usize = 16;

/// The moment a controller process was spawned, on both clocks: the monotonic one for what
/// the benchmark sees, the wall clock for the lines of the controller's log.
pub(crate) struct Spawn {
    instant: Instant,
    at: Timestamp,
}

impl Spawn {
    pub(crate) fn now() -> Self {
        Spawn {
            instant: Instant::now(),
            at: Timestamp::now(),
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.instant.elapsed()
    }

    /// From the spawn to the first line of `log` (from `offset` on) that says `marker`.
    fn to_logged(&self, log: &Path, offset: u64, marker: &str) -> Option<Duration> {
        log_since(log, offset)
            .lines()
            .filter(|l| l.contains(marker))
            .filter_map(logged_at)
            .find(|at| *at >= self.at)
            .map(|at| at.duration_since(self.at).unsigned_abs())
    }
}

/// The log line of a leader whose caches hold their first lists (`/readyz` does not say it:
/// a replica taking part in leader election is Ready while it waits for the Lease).
const CACHES_SYNCED: &str = "caches synced";

/// The first start's figures, from the spawn of the process.
pub(crate) struct FirstStart {
    ready: Duration,
    caches_synced: Option<Duration>,
    reconciled_once: Duration,
    rss: String,
    hwm: String,
}

impl FirstStart {
    /// Once every object has been reconciled once; `ready` and the memory were taken when
    /// `/readyz` first answered.
    pub(crate) fn new(
        spawn: &Spawn,
        controller: &ControllerProcess,
        ready: Duration,
        rss: String,
        hwm: String,
    ) -> Self {
        FirstStart {
            ready,
            caches_synced: spawn.to_logged(controller.log_path(), 0, CACHES_SYNCED),
            reconciled_once: spawn.elapsed(),
            rss,
            hwm,
        }
    }
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or("not logged".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// What was in the namespace when the window began.
struct Objects {
    running: usize,
    idle: usize,
    syncs: usize,
    jobs: usize,
}

impl Objects {
    fn of(runs: &RunsWatch, clock: &clock::JobClock) -> Self {
        let sequences = runs.store.state();
        let idle = sequences
            .iter()
            .filter(|s| s.metadata.name.as_deref().is_some_and(is_idle))
            .count();
        Objects {
            running: sequences.len() - idle,
            idle,
            syncs: runs.syncs.state().len(),
            jobs: clock.snapshot().len(),
        }
    }
}

fn is_idle(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// The idle window: scrapes at both ends and the reconciles the controller logged in it.
pub(crate) struct Window {
    objects: Objects,
    before: Scrape,
    after: Scrape,
    /// Reconciles that reached a decision, by object (`kind/name`).
    decided: BTreeMap<String, usize>,
    /// The controller's User-Agent ends with this: other controllers may share the cluster.
    agent: String,
}

/// The bytes of the controller's log from `offset` on.
fn log_since(log: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let _ = file.seek(SeekFrom::Start(offset));
        let _ = file.read_to_string(&mut text);
    }
    text
}

fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// A log line's timestamp (its first field).
fn logged_at(line: &str) -> Option<Timestamp> {
    line.split_whitespace().next()?.parse().ok()
}

/// Runs the idle window: nothing is triggered while it lasts. The objects are counted at
/// its start.
pub(crate) async fn window(
    length: Duration,
    client: &kube::Client,
    address: &str,
    controller: &mut ControllerProcess,
    memory: Option<&cgroup::MemoryCgroup>,
    runs: &RunsWatch,
    clock: &clock::JobClock,
) -> Window {
    let pid = controller.pid().expect("a running controller");
    let objects = Objects::of(runs, clock);
    let log = controller.log_path().to_path_buf();
    let offset = log_len(&log);
    let before = scrape(client, address, pid).await;
    let until = Instant::now() + length;
    super::wait_until(
        controller,
        memory,
        length + Duration::from_secs(60),
        "the end of the idle window",
        || Instant::now() >= until,
    )
    .await;
    let after = scrape(client, address, pid).await;
    let mut decided: BTreeMap<String, usize> = BTreeMap::new();
    for line in log_since(&log, offset).lines() {
        let Some((_, object)) = line.split_once(DECIDED) else {
            continue;
        };
        if !logged_at(line).is_some_and(|at| at >= before.at && at <= after.at) {
            continue;
        }
        // `<kind>/<namespace>/<name>`, then the line's other fields.
        let object = object.split_whitespace().next().unwrap_or_default();
        let mut parts = object.splitn(3, '/');
        let (kind, _, name) = (parts.next(), parts.next(), parts.next());
        if let (Some(kind), Some(name)) = (kind, name) {
            *decided.entry(format!("{kind}/{name}")).or_default() += 1;
        }
    }
    Window {
        objects,
        before,
        after,
        decided,
        agent: format!("({})", controller.identity()),
    }
}

/// One restart's figures, from the spawn of the new process.
struct ColdStart {
    ready: Duration,
    caches_synced: Option<Duration>,
    first_reconcile: Duration,
    /// From its log: "waiting for leadership" to "acquired the lease".
    lease_wait: Option<Duration>,
    hwm: String,
}

/// `BENCH_COLD_STARTS` times: SIGKILL the controller and start it again (same identity, so it
/// reclaims its own Lease at once), timing spawn → `/readyz` and spawn → the first reconcile
/// (`syncseq_reconciles_total` above 0), each looked at every 100 ms, and spawn → caches
/// synced from its log.
async fn cold_starts(
    k: usize,
    ns: &TestNamespace,
    controller: &mut ControllerProcess,
    memory: Option<&cgroup::MemoryCgroup>,
) -> Vec<ColdStart> {
    let mut starts = vec![];
    for _ in 0..k {
        let log = controller.log_path().to_path_buf();
        controller.kill();
        let offset = log_len(&log);
        let spawned = Spawn::now();
        controller.restart();
        if let (Some(c), Some(pid)) = (memory, controller.pid())
            && let Err(e) = c.add(pid)
        {
            panic!("the restarted controller is not in the memory cgroup: {e}");
        }
        let (mut address, mut ready, mut first) = (None, None, None);
        let deadline = spawned.instant + Duration::from_secs(600);
        while ready.is_none() || first.is_none() {
            assert!(
                !controller.exited(),
                "the restarted controller exited (see {}); OOM kills in its cgroup: {}",
                log.display(),
                memory.map_or("no cgroup".into(), |c| c.oom_kills().to_string())
            );
            assert!(
                Instant::now() < deadline,
                "a restarted controller was not ready and reconciling within 600 s"
            );
            if address.is_none() {
                address = log_since(&log, offset)
                    .lines()
                    .find(|l| l.contains("serving /metrics"))
                    .and_then(|l| l.rsplit("address=").next())
                    .map(|a| a.trim().to_string());
            }
            if let Some(address) = &address {
                if ready.is_none()
                    && !get(&format!("http://{address}/readyz"), false)
                        .await
                        .is_empty()
                {
                    ready = Some(spawned.elapsed());
                }
                if first.is_none() {
                    let metrics = get(&format!("http://{address}/metrics"), false).await;
                    if stats::sum(&metrics, "syncseq_reconciles_total", &[]) > 0.0 {
                        first = Some(spawned.elapsed());
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
        let text = log_since(&log, offset);
        let at = |marker: &str| {
            text.lines()
                .find(|l| l.contains(marker))
                .and_then(logged_at)
        };
        let lease_wait = match (at("waiting for leadership"), at("acquired the lease")) {
            (Some(a), Some(b)) => Some(b.duration_since(a).unsigned_abs()),
            _ => None,
        };
        let holder = lease_holder(ns).await;
        assert_eq!(
            holder.as_deref(),
            Some(controller.identity().as_str()),
            "after a restart the Lease is held by someone else"
        );
        starts.push(ColdStart {
            ready: ready.unwrap(),
            caches_synced: spawned.to_logged(&log, offset, CACHES_SYNCED),
            first_reconcile: first.unwrap(),
            lease_wait,
            hwm: stats::proc_status(controller.pid().unwrap(), "VmHWM:"),
        });
    }
    starts
}

/// Prints the idle fleet's and the first start's figures. `writes` is the audit log's writes
/// and `jobs` the clock's Jobs, both read after the measured round.
pub(crate) fn report(
    config: &Config,
    first: &FirstStart,
    window: Option<&Window>,
    writes: &[AuditWrite],
    jobs: &std::collections::HashMap<String, clock::Seen>,
) {
    println!("\n## Idle fleet and start-up\n");
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| first start: spawn → `/readyz` / caches synced (log) / every object reconciled once | {:.1} s / {} / {:.1} s |",
        first.ready.as_secs_f64(),
        seconds(first.caches_synced),
        first.reconciled_once.as_secs_f64()
    );
    println!(
        "| first start: controller VmRSS / VmHWM at ready | {} / {} |",
        first.rss, first.hwm
    );
    if let Some(w) = window {
        print_window(w, writes);
    }
    if config.sequences > 0 {
        // Nothing of theirs may be due while the benchmark runs: their fires are hours away.
        let idle_jobs = jobs
            .values()
            .filter(|j| j.labels.get(labels::SEQUENCE).is_some_and(|s| is_idle(s)))
            .count();
        println!(
            "| Jobs of idle sequences (expected 0: their first fire is 6 h away) | {idle_jobs} |"
        );
    }
}

/// Runs the cold starts (`BENCH_COLD_STARTS`) and prints their figures, as more rows of
/// [`report`]'s table.
pub(crate) async fn restarts(
    config: &Config,
    ns: &TestNamespace,
    controller: &mut ControllerProcess,
    memory: Option<&cgroup::MemoryCgroup>,
) {
    if config.cold_starts > 0 {
        let starts = cold_starts(config.cold_starts, ns, controller, memory).await;
        let secs = |f: fn(&ColdStart) -> Duration| {
            let v: Vec<f64> = starts.iter().map(|s| f(s).as_secs_f64()).collect();
            Summary::of(&v)
        };
        let (ready, reconcile) = (secs(|s| s.ready), secs(|s| s.first_reconcile));
        let synced: Vec<f64> = starts
            .iter()
            .filter_map(|s| s.caches_synced)
            .map(|d| d.as_secs_f64())
            .collect();
        let synced = Summary::of(&synced);
        println!(
            "| restarts after the measured round (SIGKILL, same identity): n / spawn → `/readyz` p50 / max / caches synced (log) p50 / max (n) / first reconcile p50 / max | {} / {:.1} / {:.1} s / {:.1} / {:.1} s ({}) / {:.1} / {:.1} s |",
            starts.len(),
            ready.p50,
            ready.max,
            synced.p50,
            synced.max,
            synced.n,
            reconcile.p50,
            reconcile.max
        );
        println!(
            "| restarts: the Lease reclaimed (log: waiting for leadership → acquired the lease), each | {} |",
            starts
                .iter()
                .map(|s| s
                    .lease_wait
                    .map_or("not logged".into(), |d| format!("{} ms", d.as_millis())))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "| restarts: VmHWM at the first reconcile, each | {} |",
            starts
                .iter()
                .map(|s| s.hwm.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(c) = memory {
            println!(
                "| memory cgroup after the restarts: OOM kills | {} |",
                c.oom_kills()
            );
        }
    }
}

fn print_window(w: &Window, writes: &[AuditWrite]) {
    let o = &w.objects;
    let objects = o.running + o.idle + o.syncs;
    let minutes = w.after.at.duration_since(w.before.at).as_secs_f64() / 60.0;
    let delta = |select: &[(&str, &str)]| {
        stats::sum(&w.after.controller, "syncseq_reconciles_total", select)
            - stats::sum(&w.before.controller, "syncseq_reconciles_total", select)
    };
    let per_minute = delta(&[]) / minutes;
    println!(
        "| objects: running sequences / idle sequences / Syncs / Jobs at the start of the window | {} / {} / {} / {} |",
        o.running, o.idle, o.syncs, o.jobs
    );
    println!(
        "| idle window, nothing triggered | {:.0} s |",
        minutes * 60.0
    );
    println!(
        "| reconciles per minute: all / SyncSequence / Sync | {per_minute:.1} / {:.1} / {:.1} |",
        delta(&[("kind", "SyncSequence")]) / minutes,
        delta(&[("kind", "Sync")]) / minutes
    );
    println!(
        "| reconciles per minute ÷ objects (sequences + Syncs, {objects}) / ÷ idle sequences ({}) (target ≤ 1%) | {:.3}% / {} |",
        o.idle,
        per_minute / objects as f64 * 100.0,
        if o.idle > 0 {
            format!("{:.3}%", per_minute / o.idle as f64 * 100.0)
        } else {
            "—".into()
        }
    );
    let mut by_kind: BTreeMap<(String, String), usize> = BTreeMap::new();
    for write in writes.iter().filter(|x| {
        x.user_agent.starts_with(CONTROLLER_AGENT)
            && x.user_agent.ends_with(&w.agent)
            && x.received >= w.before.at
            && x.received <= w.after.at
    }) {
        *by_kind
            .entry((write.verb.clone(), write.resource.clone()))
            .or_default() += 1;
    }
    println!(
        "| controller API writes in the window (audit log): total; by verb and resource | {}; {} |",
        by_kind.values().sum::<usize>(),
        by_kind
            .iter()
            .map(|((verb, res), c)| format!("{verb} {res}: {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| controller CPU seconds in the window | {:.2} s |",
        w.after.controller_cpu - w.before.controller_cpu
    );
    // The objects' names say which side they are: `idle-*` or the running ones.
    let (idle, running): (Vec<_>, Vec<_>) = w
        .decided
        .iter()
        .partition(|(object, _)| object.split_once('/').is_some_and(|(_, n)| is_idle(n)));
    let count = |v: &[(&String, &usize)]| v.iter().map(|(_, c)| **c).sum::<usize>();
    let mut top: Vec<(&String, &usize)> = w.decided.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!(
        "| reconciles that reached a decision in the window (controller log): idle objects / running objects; top 5 | {} / {}; {} |",
        count(&idle),
        count(&running),
        if top.is_empty() {
            "none".to_string()
        } else {
            top.iter()
                .take(5)
                .map(|(object, c)| format!("{object} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
}
