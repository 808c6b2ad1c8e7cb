//! Fail-over in the measured round (`BENCH_FAILOVER=1`): a standby replica (its own identity,
//! the production lease) waits beside the leader; once `BENCH_FAILOVER_AT` (default 0.3) of the
//! measured round's steps finished, the leader is killed with SIGKILL, so its Lease is not
//! released (the crash case, not a rolling update), and the rest of the round runs on the
//! standby. Steps, not runs: the runs start together and so finish together, and a kill after
//! a fraction of them would find nearly all done and no hand-off waiting. Reported:
//! kill → the standby's Lease acquisition → its first reconcile → its first Job create, against
//! the target of the lease duration + 10 s; and promise 1 across the hand-over.
//!
//! A standby only campaigns (`src/controller/process.rs`): its watches and caches start once it
//! holds the Lease, so its first Job create includes listing everything.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use syncseq::api::labels;

use super::support::audit::AuditWrite;
use super::support::{self, ControllerProcess, TestNamespace};
use super::{Scrape, cgroup, clock, shape, stats};

/// The first Job create must come at most this long after the lease duration (acceptance 3).
const TARGET_MARGIN_SECONDS: f64 = 10.0;

/// `BENCH_FAILOVER=1`: the fraction of the measured round's steps after which the leader is
/// killed.
pub fn from_env() -> Option<f64> {
    if std::env::var("BENCH_FAILOVER").is_ok_and(|v| v != "0") {
        let at = match std::env::var("BENCH_FAILOVER_AT") {
            Err(_) => 0.3,
            Ok(v) => v
                .parse::<f64>()
                .ok()
                .filter(|at| (0.0..1.0).contains(at))
                .unwrap_or_else(|| {
                    panic!("BENCH_FAILOVER_AT={v}: expected a fraction of the steps, 0 to below 1")
                }),
        };
        Some(at)
    } else {
        None
    }
}

pub struct Failover {
    at: f64,
    standby: ControllerProcess,
    address: String,
    pid: u32,
    /// The standby's metrics and CPU seconds before the measured round.
    before: (String, f64),
    kill: Option<Kill>,
}

/// What happened at and after the kill.
struct Kill {
    at: Timestamp,
    /// Steps of the measured round finished at the kill, of how many.
    steps_finished: (usize, usize),
    /// The leader's metrics and CPU seconds just before it was killed.
    leader: (String, f64),
    standby_rss: String,
    /// `acquireTime` of the standby's Lease, and the lease duration it wrote.
    acquired: Timestamp,
    lease_seconds: f64,
    /// When the standby's `/metrics` first showed a reconcile (polled every 100 ms).
    first_reconcile: Timestamp,
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

impl Failover {
    /// Starts the standby, in the leader's memory cgroup when there is one (a standby holds no
    /// caches, so sharing the limit changes little before the kill), and waits until it is
    /// Ready.
    pub async fn start(ns: &TestNamespace, memory: Option<&cgroup::MemoryCgroup>, at: f64) -> Self {
        let standby = ControllerProcess::start_replica_with_default_lease(&ns.name, "standby");
        let pid = standby.pid().expect("the standby runs");
        if let Some(Err(e)) = memory.map(|c| c.add(pid)) {
            eprintln!("the standby is not in the memory cgroup: {e}");
        }
        let address = standby.metrics_address().await;
        support::eventually(Duration::from_secs(60), "the standby Ready", || async {
            (support::http_get(&address, "/readyz").await.0 == 200).then_some(())
        })
        .await;
        let before = metrics_and_cpu(&address, pid).await;
        assert_eq!(
            reconciles(&before.0),
            0.0,
            "the standby reconciled while the leader held the Lease"
        );
        Failover {
            at,
            standby,
            address,
            pid,
            before,
            kill: None,
        }
    }

    /// How many of the measured round's `steps` finish before the kill.
    pub fn kill_after(&self, steps: usize) -> usize {
        ((steps as f64 * self.at).round() as usize).min(steps.saturating_sub(1))
    }

    /// Kills the leader (SIGKILL) and waits until the standby has taken the Lease and made its
    /// first reconcile.
    pub async fn kill(
        &mut self,
        ns: &TestNamespace,
        leader: &mut ControllerProcess,
        leader_address: &str,
        steps_finished: (usize, usize),
    ) {
        let leader_pid = leader.pid().expect("the leader runs");
        let leader_metrics = metrics_and_cpu(leader_address, leader_pid).await;
        let standby_rss = stats::proc_status(self.pid, "VmRSS:");
        leader.kill();
        let at = Timestamp::now();
        eprintln!(
            "killed the leader after {} of {} steps; waiting for the standby",
            steps_finished.0, steps_finished.1
        );
        let identity = self.standby.identity();
        let (acquired, lease_seconds) = self
            .wait(
                Duration::from_secs(120),
                "the standby to take the Lease",
                || {
                    let identity = identity.clone();
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
        let address = self.address.clone();
        let first_reconcile = self
            .wait(
                Duration::from_secs(600),
                "the standby's first reconcile",
                || {
                    let address = address.clone();
                    async move {
                        let metrics = super::get(&format!("http://{address}/metrics"), false).await;
                        (reconciles(&metrics) > 0.0).then(Timestamp::now)
                    }
                },
            )
            .await;
        self.kill = Some(Kill {
            at,
            steps_finished,
            leader: leader_metrics,
            standby_rss,
            acquired,
            lease_seconds,
            first_reconcile,
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
                !self.standby.exited(),
                "the standby exited while waiting for {what} (see {})",
                self.standby.log_path().display()
            );
            assert!(
                std::time::Instant::now() < until,
                "timed out after {deadline:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The replica that runs the rest of the round, its metrics address and its process id.
    pub fn survivor(&mut self) -> (&mut ControllerProcess, &str, u32) {
        (&mut self.standby, &self.address, self.pid)
    }

    /// Makes the controller's figures of the window (taken from the leader before and the
    /// standby after) those of both replicas: the leader's until its kill plus the standby's
    /// from the start of the window. Counters and histogram buckets add; gauges are not read.
    pub fn combine(&self, before: &mut Scrape, after: &mut Scrape) {
        let kill = self.kill.as_ref().expect("combine after the kill");
        before.controller = add(&before.controller, &self.before.0);
        before.controller_cpu += self.before.1;
        after.controller = add(&after.controller, &kill.leader.0);
        after.controller_cpu += kill.leader.1;
    }

    /// The fail-over's figures and promise 1 across it, as a Markdown table.
    pub fn report(
        &self,
        seen: &HashMap<String, clock::Seen>,
        writes: &[AuditWrite],
        shape: &shape::Shape,
        measured_run: &str,
    ) {
        let kill = self.kill.as_ref().expect("report after the kill");
        let agent = format!("({})", self.standby.identity());
        let first_create = writes
            .iter()
            .filter(|w| w.user_agent.contains(&agent) && w.verb == "create")
            .filter(|w| w.resource == "jobs" && w.code == Some(201) && w.received > kill.at)
            .map(|w| w.received)
            .min();
        let waiting = first_waiting_handoff(seen, shape, measured_run, kill.acquired);
        let after_kill = |t: Option<Timestamp>| match t {
            Some(t) => format!("{:.2} s", clock::seconds(kill.at, t)),
            None => "none".into(),
        };
        let target = kill.lease_seconds + TARGET_MARGIN_SECONDS;
        let met = first_create.map(|t| clock::seconds(kill.at, t) <= target);
        println!("\n## Fail-over: the leader killed (SIGKILL) in the measured round\n");
        println!("| measure | value |");
        println!("| --- | --- |");
        println!(
            "| killed after | {} of the round's {} steps finished (`BENCH_FAILOVER_AT` {}) |",
            kill.steps_finished.0, kill.steps_finished.1, self.at
        );
        println!(
            "| kill → the standby's Lease acquired (`acquireTime`) | {} |",
            after_kill(Some(kill.acquired))
        );
        println!(
            "| kill → the standby's first reconcile ended (its `syncseq_reconciles_total` > 0, polled every 100 ms) | {} |",
            after_kill(Some(kill.first_reconcile))
        );
        println!(
            "| kill → the standby's first Job create (audit log) / target (lease {:.0} s + {TARGET_MARGIN_SECONDS:.0} s) | {} / {target:.0} s: {} |",
            kill.lease_seconds,
            after_kill(first_create),
            match met {
                Some(true) => "met",
                Some(false) => "missed",
                None => "no create",
            }
        );
        println!(
            "| kill → the first Job of a hand-off that waited for the standby (the benchmark's clock) | {} |",
            after_kill(waiting)
        );
        println!(
            "| standby memory while the leader led (VmRSS) | {} |",
            kill.standby_rss
        );
        let doubled = doubled_attempts(seen);
        let overlapping = overlapping_syncs(seen);
        println!(
            "| promise 1: (sequence, run, step, attempt) with two Jobs / Syncs with two unfinished Jobs at once (clock) / two live Pods | {} / {} / not measured |",
            listed(&doubled),
            listed(&overlapping)
        );
        assert!(
            doubled.is_empty() && overlapping.is_empty(),
            "promise 1 broke across the fail-over: {doubled:?} {overlapping:?}"
        );
    }
}

/// How many of the measured round's steps (Jobs of the `seq-*` sequences' run `measured_run`)
/// have finished.
pub fn finished_steps(clock: &clock::JobClock, measured_run: &str) -> usize {
    clock.count(|j| {
        j.finished.is_some()
            && j.labels.get(labels::RUN).map(String::as_str) == Some(measured_run)
            && j.labels
                .get(labels::SEQUENCE)
                .is_some_and(|s| s.starts_with("seq-"))
    })
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
