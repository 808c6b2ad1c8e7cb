//! Fail-over in the measured round (`BENCH_FAILOVER=1`): a standby replica (its own identity,
//! the production lease) waits beside the leader; once `BENCH_FAILOVER_AT` (default 0.3) of the
//! measured round's steps finished, the leader is killed with SIGKILL, so its Lease is not
//! released (the crash case, not a rolling update), and the rest of the round runs on the
//! standby. Steps, not runs: the runs start together and so finish together, and a kill after
//! a fraction of them would find nearly all done and no hand-off waiting. Reported:
//! kill → the standby's Lease acquisition → its caches synced → its first reconcile → its first
//! Job create, against the target of the lease duration + 10 s; and promise 1 across the
//! hand-over.
//!
//! A standby only campaigns (`src/controller/process.rs`): its watches and caches start once it
//! holds the Lease, so its first Job create includes listing everything.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use syncseq::api::labels;

use super::stats::Summary;
use super::support::audit::AuditWrite;
use super::support::{self, ControllerProcess, TestNamespace};
use super::{Scrape, cgroup, clock, shape, stats};

/// The first Job create must come at most this long after the lease duration (acceptance 3).
const TARGET_MARGIN_SECONDS: f64 = 10.0;

/// `BENCH_FAILOVER=1`: when and how often the leader is killed.
pub struct Config {
    /// `BENCH_FAILOVER_AT`: the fraction of the measured round's steps finished at the first
    /// kill.
    at: f64,
    /// `BENCH_FAILOVER_ROUNDS`: kills in the round, spread evenly over what remains after the
    /// first; each new leader's standby is a fresh replica, as a Deployment replaces a killed
    /// Pod with a new one.
    rounds: usize,
}

pub fn from_env() -> Option<Config> {
    if !std::env::var("BENCH_FAILOVER").is_ok_and(|v| v != "0") {
        return None;
    }
    let at = match std::env::var("BENCH_FAILOVER_AT") {
        Err(_) => 0.3,
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .filter(|at| (0.0..1.0).contains(at))
            .unwrap_or_else(|| {
                refuse(&format!(
                    "BENCH_FAILOVER_AT={v}: expected a fraction of the steps, 0 to below 1"
                ))
            }),
    };
    let rounds = match std::env::var("BENCH_FAILOVER_ROUNDS") {
        Err(_) => 1,
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|k| *k > 0)
            .unwrap_or_else(|| {
                refuse(&format!(
                    "BENCH_FAILOVER_ROUNDS={v}: expected a count of kills, 1 or more"
                ))
            }),
    };
    Some(Config { at, rounds })
}

/// Ends the benchmark, before it has created anything, on a setting it cannot use.
fn refuse(why: &str) -> ! {
    eprintln!("{why}");
    std::process::exit(2)
}

/// A replica standing by.
struct Standby {
    process: ControllerProcess,
    address: String,
    pid: u32,
}

pub struct Failover {
    config: Config,
    /// The run number of the measured round, and how many steps it has.
    measured_run: String,
    round_steps: usize,
    standby: Standby,
    /// The metrics and CPU seconds of each standby when it started (before the measured round
    /// for the first), by identity: the part of the window of one that took over counts from
    /// there.
    starts: HashMap<String, (String, f64)>,
    kills: Vec<Kill>,
    /// Standbys started so far, to name the next.
    started: usize,
}

/// What happened at and after one kill.
struct Kill {
    at: Timestamp,
    /// Steps of the measured round finished at the kill.
    steps_finished: usize,
    /// The leader's metrics and CPU seconds just before it was killed.
    leader: (String, f64),
    /// The standby that took over.
    successor: String,
    standby_rss: String,
    /// `acquireTime` of the standby's Lease, and the lease duration it wrote.
    acquired: Timestamp,
    lease_seconds: f64,
    /// The successor's log (read once the round is over).
    log: std::path::PathBuf,
}

async fn metrics_and_cpu(address: &str, pid: u32) -> (String, f64) {
    (
        super::get(&format!("http://{address}/metrics"), false).await,
        stats::cpu_seconds(pid),
    )
}

fn reconciles(metrics: &str) -> f64 {
    stats::sum(metrics, "syncseq_reconciles_total", &[])
}

/// Starts a standby (`identity`), in the leader's memory cgroup when there is one (a standby
/// holds no caches, so sharing the limit changes little before a kill), and waits until it is
/// Ready.
async fn start_standby(
    ns: &TestNamespace,
    memory: Option<&cgroup::MemoryCgroup>,
    identity: &str,
) -> (Standby, (String, f64)) {
    let process = ControllerProcess::start_replica_with_default_lease(&ns.name, identity);
    let pid = process.pid().expect("the standby runs");
    if let Some(Err(e)) = memory.map(|c| c.add(pid)) {
        eprintln!("the standby is not in the memory cgroup: {e}");
    }
    let address = process.metrics_address().await;
    support::eventually(Duration::from_secs(60), "the standby Ready", || async {
        (support::http_get(&address, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    let start = metrics_and_cpu(&address, pid).await;
    assert_eq!(
        reconciles(&start.0),
        0.0,
        "the standby reconciled while the leader held the Lease"
    );
    (
        Standby {
            process,
            address,
            pid,
        },
        start,
    )
}

impl Failover {
    /// Starts the first standby, before the measured round (run `measured_run`, of
    /// `round_steps` steps).
    pub async fn start(
        ns: &TestNamespace,
        memory: Option<&cgroup::MemoryCgroup>,
        config: Config,
        measured_run: &str,
        round_steps: usize,
    ) -> Self {
        let (standby, start) = start_standby(ns, memory, "standby").await;
        Failover {
            config,
            measured_run: measured_run.to_string(),
            round_steps,
            starts: HashMap::from([(standby.process.identity(), start)]),
            standby,
            kills: vec![],
            started: 1,
        }
    }

    /// How many of the round's steps finish before kill `k` (0-based).
    fn kill_after(&self, k: usize) -> usize {
        let Config { at, rounds } = self.config;
        let fraction = at + (1.0 - at) * k as f64 / rounds as f64;
        ((self.round_steps as f64 * fraction).round() as usize)
            .min(self.round_steps.saturating_sub(1))
    }

    /// Kills the leader each time the round reaches the next kill's share of its steps, waits
    /// until the standby has taken the Lease, and starts a fresh standby for the next kill.
    /// `leader` is then the last new leader; returns its metrics address and process id.
    pub async fn run(
        &mut self,
        ns: &TestNamespace,
        leader: &mut ControllerProcess,
        leader_address: &str,
        memory: Option<&cgroup::MemoryCgroup>,
        clock: &clock::JobClock,
    ) -> (String, u32) {
        let mut address = leader_address.to_string();
        for k in 0..self.config.rounds {
            let kill_after = self.kill_after(k);
            // A new leader is not killed before its first Job create arrived (or the round is
            // over): one killed with its first creates in flight would show no takeover at all.
            let acquired = self.kills.last().map(|kill| kill.acquired);
            let created_since =
                || acquired.is_none_or(|t| clock.count(|j| self.in_round(j) && j.created > t) > 0);
            let what = format!("{kill_after} steps finished before kill {}", k + 1);
            super::wait_until(leader, memory, Duration::from_secs(3600), &what, || {
                let finished = self.finished_steps(clock);
                finished >= kill_after && (created_since() || finished == self.round_steps)
            })
            .await;
            let finished = self.finished_steps(clock);
            if finished == self.round_steps {
                eprintln!("the round ended before kill {}", k + 1);
                break;
            }
            self.kill(ns, leader, &address, finished).await;
            // The standby leads now: it becomes `leader`, and the killed one, dropped, makes
            // way for a fresh standby.
            std::mem::swap(leader, &mut self.standby.process);
            address = std::mem::take(&mut self.standby.address);
            if k + 1 < self.config.rounds {
                self.started += 1;
                let identity = format!("standby{}", self.started);
                let (standby, start) = start_standby(ns, memory, &identity).await;
                self.starts.insert(standby.process.identity(), start);
                self.standby = standby;
            }
        }
        let pid = leader.pid().expect("the new leader runs");
        (address, pid)
    }

    /// How many of the measured round's steps (Jobs of the `seq-*` sequences' measured run)
    /// have finished.
    fn finished_steps(&self, clock: &clock::JobClock) -> usize {
        clock.count(|j| j.finished.is_some() && self.in_round(j))
    }

    /// Whether the Job is a step of the measured round.
    fn in_round(&self, job: &clock::Seen) -> bool {
        job.labels.get(labels::RUN) == Some(&self.measured_run)
            && job
                .labels
                .get(labels::SEQUENCE)
                .is_some_and(|s| s.starts_with("seq-"))
    }

    /// Kills the leader (SIGKILL) and waits until the standby has taken the Lease (read every
    /// 100 ms: one small object, no load on the new leader's start-up as scraping its
    /// `/metrics` would be; its later steps come from its log).
    async fn kill(
        &mut self,
        ns: &TestNamespace,
        leader: &mut ControllerProcess,
        leader_address: &str,
        steps_finished: usize,
    ) {
        let leader_pid = leader.pid().expect("the leader runs");
        let leader_metrics = metrics_and_cpu(leader_address, leader_pid).await;
        let standby_rss = stats::proc_status(self.standby.pid, "VmRSS:");
        leader.kill();
        let at = Timestamp::now();
        eprintln!(
            "killed the leader after {steps_finished} of {} steps; waiting for the standby",
            self.round_steps
        );
        let successor = self.standby.process.identity();
        let (acquired, lease_seconds) = self
            .wait(
                Duration::from_secs(120),
                "the standby to take the Lease",
                || {
                    let identity = successor.clone();
                    async move {
                        let spec = support::lease(ns).await?.spec?;
                        (spec.holder_identity.as_deref() == Some(identity.as_str())).then_some((
                            spec.acquire_time?.0,
                            f64::from(spec.lease_duration_seconds.unwrap_or(0)),
                        ))
                    }
                },
            )
            .await;
        self.kills.push(Kill {
            at,
            steps_finished,
            leader: leader_metrics,
            successor,
            standby_rss,
            acquired,
            lease_seconds,
            log: self.standby.process.log_path().to_path_buf(),
        });
    }

    /// Polls `check` every 100 ms until it gives a value, failing if the standby died.
    async fn wait<T, Fut>(
        &mut self,
        deadline: Duration,
        what: &str,
        mut check: impl FnMut() -> Fut,
    ) -> T
    where
        Fut: Future<Output = Option<T>>,
    {
        let until = std::time::Instant::now() + deadline;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                !self.standby.process.exited(),
                "the standby exited while waiting for {what} (see {})",
                self.standby.process.log_path().display()
            );
            assert!(
                std::time::Instant::now() < until,
                "timed out after {deadline:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes the controller's figures of the window (taken from the first leader before and the
    /// last after) those of every replica that led: each killed leader's until its kill, and
    /// each successor's from its start. Counters and histogram buckets add; gauges are not read.
    pub fn combine(&self, before: &mut Scrape, after: &mut Scrape) {
        for kill in &self.kills {
            let (metrics, cpu) = &self.starts[&kill.successor];
            before.controller = add(&before.controller, metrics);
            before.controller_cpu += cpu;
            after.controller = add(&after.controller, &kill.leader.0);
            after.controller_cpu += kill.leader.1;
        }
    }

    /// The fail-overs' figures and promise 1 across them, as a Markdown table.
    pub fn report(
        &self,
        seen: &HashMap<String, clock::Seen>,
        writes: &[AuditWrite],
        shape: &shape::Shape,
    ) {
        let seconds = |kill: &Kill, t: Option<Timestamp>| t.map(|t| clock::seconds(kill.at, t));
        let shown = |s: Option<f64>| s.map_or("none".into(), |s| format!("{s:.2} s"));
        println!(
            "\n## Fail-over: the leader killed (SIGKILL) in the measured round, {} time(s)\n",
            self.kills.len()
        );
        println!(
            "| kill | steps finished (of {}) | → Lease acquired (`acquireTime`) | → caches synced (its log; before the kill when negative: it stood by warm) | → first reconcile decided (its log) | → first Job create (audit log) / target (lease + {TARGET_MARGIN_SECONDS:.0} s) | → first Job of a hand-off that waited for it (clock) | standby memory before (VmRSS) |",
            self.round_steps
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        let mut columns: [Vec<f64>; 5] = Default::default();
        for (i, kill) in self.kills.iter().enumerate() {
            let agent = format!("({})", kill.successor);
            let first_create = writes
                .iter()
                .filter(|w| w.user_agent.contains(&agent) && w.verb == "create")
                .filter(|w| w.resource == "jobs" && w.code == Some(201) && w.received > kill.at)
                .map(|w| w.received)
                .min();
            let waiting = first_waiting_handoff(seen, shape, &self.measured_run, kill.acquired);
            let log = std::fs::read_to_string(&kill.log).unwrap_or_default();
            let row = [
                seconds(kill, Some(kill.acquired)),
                seconds(kill, logged(&log, CACHES_SYNCED)),
                seconds(kill, logged(&log, RECONCILED)),
                seconds(kill, first_create),
                seconds(kill, waiting),
            ];
            for (column, value) in columns.iter_mut().zip(row) {
                column.extend(value);
            }
            let target = kill.lease_seconds + TARGET_MARGIN_SECONDS;
            println!(
                "| {} | {} | {} | {} | {} | {} / {target:.0} s: {} | {} | {} |",
                i + 1,
                kill.steps_finished,
                shown(row[0]),
                shown(row[1]),
                shown(row[2]),
                shown(row[3]),
                match row[3] {
                    Some(s) if s <= target => "met",
                    Some(_) => "missed",
                    // The steps left may all have been created before the kill.
                    None if !seen
                        .values()
                        .any(|j| self.in_round(j) && j.created > kill.at) =>
                    {
                        "nothing left to create"
                    }
                    None => "no create",
                },
                shown(row[4]),
                kill.standby_rss
            );
        }
        if self.kills.len() > 1 {
            let [acquired, synced, reconcile, create, waiting] = columns.map(|c| Summary::of(&c));
            let p50_max = |s: &Summary| {
                if s.n == 0 {
                    "none".to_string()
                } else {
                    format!("{:.2} / {:.2} s", s.p50, s.max)
                }
            };
            println!(
                "| p50 / max | | {} | {} | {} | {} | {} | |",
                p50_max(&acquired),
                p50_max(&synced),
                p50_max(&reconcile),
                p50_max(&create),
                p50_max(&waiting)
            );
        }
        let doubled = doubled_attempts(seen);
        let overlapping = overlapping_syncs(seen);
        println!(
            "\npromise 1 across the fail-over(s): (sequence, run, step, attempt) with two Jobs: {}; \
             Syncs with two unfinished Jobs at once (clock): {}; two live Pods: not measured",
            listed(&doubled),
            listed(&overlapping)
        );
        assert!(
            doubled.is_empty() && overlapping.is_empty(),
            "promise 1 broke across the fail-over: {doubled:?} {overlapping:?}"
        );
    }
}

/// What the controller logs once its watches have listed everything, and for each reconcile
/// once it has decided (`src/controller/mod.rs`, `src/controller/reconcile.rs`; the tests run it
/// with `syncseq=debug`).
const CACHES_SYNCED: &str = "syncseq::controller: caches synced";
const RECONCILED: &str = "syncseq::controller::reconcile: decided";

/// The time of the first line of a controller's log that says `marker`.
fn logged(log: &str, marker: &str) -> Option<Timestamp> {
    log.lines()
        .find(|l| l.contains(marker))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The first Job the clock saw created after the standby took the Lease whose step's parents
/// had all finished before that: a hand-off that waited for the new leader, due at the kill or
/// while no replica led (the leader, quick at a small size, has often created the children of
/// what finished just before the kill; a Job it created just before it died arrives long before
/// the standby acquires).
fn first_waiting_handoff(
    seen: &HashMap<String, clock::Seen>,
    shape: &shape::Shape,
    measured_run: &str,
    acquired: Timestamp,
) -> Option<Timestamp> {
    let mut by_sequence: HashMap<&str, HashMap<&str, &clock::Seen>> = HashMap::new();
    for job in seen.values() {
        if let (Some(seq), Some(step)) = (
            job.labels.get(labels::SEQUENCE),
            job.labels.get(labels::STEP),
        ) && job.labels.get(labels::RUN).map(String::as_str) == Some(measured_run)
        {
            by_sequence.entry(seq).or_default().insert(step, job);
        }
    }
    by_sequence
        .iter()
        .filter_map(|(seq, steps)| {
            let i = seq.strip_prefix("seq-")?;
            let at = |s: &str| steps.get(format!("{s}-{i}").as_str()).copied();
            shape
                .steps
                .iter()
                .filter(|s| !s.parents.is_empty())
                .filter(|s| {
                    s.parents
                        .iter()
                        .all(|p| at(p).and_then(|j| j.finished).is_some_and(|f| f < acquired))
                })
                .filter_map(|s| Some(at(s.name)?.created))
                .filter(|created| *created > acquired)
                .min()
        })
        .min()
}

/// The (sequence, run, step, attempt) that have more than one Job.
fn doubled_attempts(seen: &HashMap<String, clock::Seen>) -> Vec<String> {
    let mut count: BTreeMap<Vec<&str>, usize> = BTreeMap::new();
    for job in seen.values() {
        let key: Option<Vec<&str>> = [labels::SEQUENCE, labels::RUN, labels::STEP, labels::ATTEMPT]
            .iter()
            .map(|l| job.labels.get(*l).map(String::as_str))
            .collect();
        if let Some(key) = key {
            *count.entry(key).or_default() += 1;
        }
    }
    count
        .into_iter()
        .filter(|(_, c)| *c > 1)
        .map(|(key, c)| format!("{} ×{c}", key.join("/")))
        .collect()
}

/// The Syncs of which two Jobs were unfinished at the same time, as the clock saw them (a Job
/// created before the previous one's finish arrived).
fn overlapping_syncs(seen: &HashMap<String, clock::Seen>) -> Vec<String> {
    let mut by_sync: HashMap<&str, Vec<&clock::Seen>> = HashMap::new();
    for job in seen.values() {
        if let Some(sync) = job.labels.get(labels::SYNC) {
            by_sync.entry(sync).or_default().push(job);
        }
    }
    let mut out: Vec<String> = by_sync
        .into_iter()
        .filter(|(_, jobs)| {
            let mut jobs = jobs.clone();
            jobs.sort_by_key(|j| j.created);
            jobs.windows(2)
                .any(|w| w[0].finished.is_none_or(|f| f > w[1].created))
        })
        .map(|(sync, _)| sync.to_string())
        .collect();
    out.sort();
    out
}

fn listed(items: &[String]) -> String {
    match items {
        [] => "none".into(),
        _ => format!(
            "{}: {}",
            items.len(),
            items.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Two scrapes in Prometheus text format added sample by sample (comments dropped).
fn add(a: &str, b: &str) -> String {
    let mut sum: BTreeMap<&str, f64> = BTreeMap::new();
    for line in a.lines().chain(b.lines()).filter(|l| !l.starts_with('#')) {
        if let Some((series, value)) = line.rsplit_once(' ')
            && let Ok(value) = value.parse::<f64>()
        {
            *sum.entry(series).or_default() += value;
        }
    }
    sum.iter().map(|(s, v)| format!("{s} {v}\n")).collect()
}
