//! Scale benchmark against the local control plane (`make bench`; not part of `make test`).
//! Everything is measured from outside the controller; see bench/REPORT.md for what each
//! figure means and the results.
//!
//! In one namespace and one run:
//! - `BENCH_SEQUENCES` sequences (default 1000) of the shape `BENCH_SHAPE` (`shape.rs`: `chain`,
//!   three steps one after another, the default; or `diamond`, a → b ‖ c → d), each step its
//!   own Sync whose simulated container runs `BENCH_STEP_DURATION` (default 2s), all triggered
//!   at once;
//! - the floor (`floor.rs`), a separate process chaining as many chains of the same shape and
//!   the same Jobs with nothing but a watch and a create, started at the same time;
//! - `BENCH_SCHEDULED` (default 20) sequences of one step on `* * * * *`, and as many CronJobs
//!   on the same schedule with the same Pod, for at least `BENCH_FIRES` (default 3) fires;
//! - optionally `BENCH_HISTORY_ROUNDS` earlier rounds of every sequence first, whose Jobs are
//!   kept (three Jobs per sequence per round), for the many-finished-Jobs case;
//! - optionally `BENCH_IDLE` idle sequences beside them, an idle window before anything is
//!   triggered, and `BENCH_COLD_STARTS` restarts at the end (`idle.rs`).
//! - optionally (`BENCH_LOAD=1`) another heavy tenant of the same API server during the window
//!   (`load.rs`), the same for the floor and syncseq;
//! - optionally (`BENCH_TRACE=1`) the controller's trace of each hand-off, cut into segments
//!   (`trace.rs`).
//! - optionally (`BENCH_FAILOVER=1`, `failover.rs`) a standby replica, and the leader killed
//!   once `BENCH_FAILOVER_AT` of the measured round's steps finished (`BENCH_FAILOVER_ROUNDS`
//!   times): the round ends on the standby.
//!
//! The benchmark's own watch (`clock.rs`) times Job creations and completions for all three.
//! Writes come from the API server's audit log by User-Agent, the API server's and controller
//! manager's own metrics, CPU and memory from `/proc`, and the controller runs inside a memory
//! cgroup limited to the chart's default memory limit (`BENCH_MEMORY_LIMIT=0` for none).

#[path = "../../tests/support/mod.rs"]
mod support;

mod cgroup;
mod clock;
mod failover;
mod floor;
mod idle;
mod load;
mod shape;
mod stats;
mod trace;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use stats::{Summary, ratio};
use support::fixtures::*;
use support::*;
use syncseq::api::{Sync, SyncSequence, annotations, labels};

const CRONJOB_SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// The controller's User-Agent starts with this (`syncseq/<version> (<instance>)`).
const CONTROLLER_AGENT: &str = "syncseq/";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cluster_env(key: &str) -> Option<String> {
    std::fs::read_to_string(repo_root().join(".cluster/env"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

async fn get(url: &str, client_cert: bool) -> String {
    let pki = repo_root().join(".cluster/pki");
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sfk", "--max-time", "20", &url]);
        if client_cert {
            cmd.arg("--cert")
                .arg(pki.join("admin.crt"))
                .arg("--key")
                .arg(pki.join("admin.key"));
        }
        let out = cmd.output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// The API server's, the controller manager's and the controller's own metrics.
struct Scrape {
    apiserver: String,
    kcm: String,
    controller: String,
    controller_cpu: f64,
    control_plane_cpu: BTreeMap<&'static str, f64>,
    at: Timestamp,
}

const CONTROL_PLANE: [&str; 5] = [
    "kube-apiserver",
    "etcd",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

async fn scrape(client: &kube::Client, controller_address: &str, pid: u32) -> Scrape {
    let apiserver = client
        .request_text(http::Request::get("/metrics").body(vec![]).unwrap())
        .await
        .unwrap_or_default();
    let kcm = match cluster_env("KUBE_CONTROLLER_MANAGER_PORT") {
        Some(port) => get(&format!("https://127.0.0.1:{port}/metrics"), true).await,
        None => String::new(),
    };
    Scrape {
        apiserver,
        kcm,
        controller: get(&format!("http://{controller_address}/metrics"), false).await,
        controller_cpu: stats::cpu_seconds(pid),
        control_plane_cpu: CONTROL_PLANE
            .iter()
            .map(|c| (*c, stats::cpu_seconds_of(c)))
            .collect(),
        at: Timestamp::now(),
    }
}

/// Sequences whose finished runs reach a count, from a watch (no polling of the API server).
struct RunsWatch {
    store: reflector::Store<SyncSequence>,
    syncs: reflector::Store<Sync>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

/// A store of `K` kept by a watch on the namespace, and the task that runs the watch.
async fn watch_store<K>(ns: &TestNamespace) -> (reflector::Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + std::marker::Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(ns.api::<K>(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(async move { stream.for_each(|_| async {}).await });
    store.wait_until_ready().await.expect("benchmark watch");
    (store, task)
}

impl RunsWatch {
    async fn start(ns: &TestNamespace) -> Self {
        let (store, sequences) = watch_store::<SyncSequence>(ns).await;
        let (syncs, syncs_task) = watch_store::<Sync>(ns).await;
        RunsWatch {
            store,
            syncs,
            tasks: [sequences, syncs_task],
        }
    }

    /// How many sequences and Syncs in the namespace (running, idle and scheduled alike) the
    /// controller has not reconciled since their last change
    /// (`status.observedGeneration` behind `metadata.generation`).
    fn unreconciled(&self) -> usize {
        let sequences = self.store.state().into_iter().map(|s| {
            let observed = s.status.as_ref().and_then(|st| st.observed_generation);
            (s.metadata.generation, observed)
        });
        let syncs = self.syncs.state().into_iter().map(|s| {
            let observed = s.status.as_ref().and_then(|st| st.observed_generation);
            (s.metadata.generation, observed)
        });
        sequences
            .chain(syncs)
            .filter(|(generation, observed)| observed != generation)
            .count()
    }

    /// How many `seq-*` sequences have at least `runs` finished runs.
    fn finished(&self, runs: usize) -> usize {
        self.store
            .state()
            .iter()
            .filter(|s| {
                s.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("seq-"))
            })
            .filter(|s| {
                s.status
                    .as_ref()
                    .is_some_and(|st| st.book.current_run.is_none() && st.book.runs.len() >= runs)
            })
            .count()
    }
}

impl Drop for RunsWatch {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// A CronJob whose Jobs are those of a one-step tick sequence's Sync: the same template.
fn cronjob_yaml(name: &str, schedule: &str) -> String {
    let sync: serde_json::Value = serde_saphyr::from_str(&sync_yaml(name, "200ms", 0, None))
        .expect("the Sync fixture is YAML");
    serde_saphyr::to_string(&serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": sync["spec"]["jobTemplate"],
        },
    }))
    .expect("a CronJob")
}

async fn trigger_all(ns: &TestNamespace, n: usize, value: &str) {
    futures::stream::iter(0..n)
        .for_each_concurrent(8, |i| async move {
            trigger(ns, &format!("seq-{i}"), value).await;
        })
        .await;
}

/// Waits until `done` holds, checking every second, failing if the controller died.
async fn wait_until(
    controller: &mut ControllerProcess,
    cgroup: Option<&cgroup::MemoryCgroup>,
    deadline: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(
            !controller.exited(),
            "the controller exited while waiting for {what}; OOM kills in its memory cgroup: {} \
             (see {})",
            cgroup.map_or("no cgroup".to_string(), |c| c.oom_kills().to_string()),
            controller.log_path().display()
        );
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The floor's process, killed if the benchmark stops before it is done.
struct Floor(Option<std::process::Child>);

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn parse_time(s: Option<&String>) -> Option<Timestamp> {
    s?.parse().ok()
}

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("floor") {
        floor::main().await;
        return;
    }
    if std::env::var("BENCH_ROLE").as_deref() == Ok("load") {
        load::main().await;
        return;
    }
    let loaded = env_usize("BENCH_LOAD", 0) > 0;
    let traced = env_usize("BENCH_TRACE", 0) > 0;
    let n = env_usize("BENCH_SEQUENCES", 1000);
    let shape = shape::Shape::from_env();
    let scheduled = env_usize("BENCH_SCHEDULED", 20);
    let fires = env_usize("BENCH_FIRES", 3);
    let history_rounds = env_usize("BENCH_HISTORY_ROUNDS", 0);
    let with_floor = env_usize("BENCH_FLOOR", 1) > 0;
    let duration = std::env::var("BENCH_STEP_DURATION").unwrap_or_else(|_| "2s".into());
    let failover_config = failover::from_env();
    let memory_limit = match std::env::var("BENCH_MEMORY_LIMIT") {
        Ok(v) => v.parse::<u64>().expect("BENCH_MEMORY_LIMIT in bytes"),
        Err(_) => cgroup::chart_limit(&repo_root().join("charts/syncseq/values.yaml"))
            .expect("the chart's memory limit"),
    };
    install_crds().await;
    let ns = TestNamespace::new("bench").await;
    let client = support::client().await;
    let started = Instant::now();
    let idle = idle::Config::from_env();
    idle::create(&ns, &idle, Timestamp::now()).await;
    let mut manifest = String::new();
    for i in 0..n {
        let steps = shape.sequence_steps(i);
        for (s, _) in &steps {
            manifest.push_str(&sync_yaml(s, &duration, 0, Some(r#"{"rowsSynced":1}"#)));
            manifest.push_str("---\n");
        }
        let steps: Vec<(&str, &str)> = steps
            .iter()
            .map(|(s, e)| (s.as_str(), e.as_str()))
            .collect();
        manifest.push_str(&sequence_yaml(
            &format!("seq-{i}"),
            &steps,
            &format!("  historyLimit: {}\n", history_rounds + 1),
        ));
        manifest.push_str("---\n");
        if (i + 1) % 100 == 0 || i + 1 == n {
            ns.kubectl_apply(&manifest);
            manifest.clear();
        }
    }
    eprintln!(
        "created {n} sequences ({} Syncs) and {} idle ones in {:?}",
        shape.len() * n,
        idle.sequences,
        started.elapsed()
    );

    let clock = clock::JobClock::start(ns.api::<Job>()).await;
    let runs = RunsWatch::start(&ns).await;
    let spawned = idle::Spawn::now();
    let log_filter = traced.then(|| ("SYNCSEQ_LOG".to_string(), trace::LOG_FILTER.to_string()));
    let mut controller =
        ControllerProcess::start_with_default_lease(&ns.name, log_filter.into_iter().collect());
    let mut pid = controller.pid().unwrap();
    let cgroup = if memory_limit > 0 {
        match cgroup::MemoryCgroup::create(memory_limit).and_then(|c| c.add(pid).map(|()| c)) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("no memory cgroup for the controller: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut address = controller.metrics_address().await;
    eventually(Duration::from_secs(300), "controller ready", || async {
        (!get(&format!("http://{address}/readyz"), false)
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    let ready_after = spawned.elapsed();
    let rss_idle = stats::proc_status(pid, "VmRSS:");
    let hwm_ready = stats::proc_status(pid, "VmHWM:");
    // The measured window is the steady state: the controller's first reconcile of every
    // object it has just found (one status write each) is its start-up, not a step's cost.
    let t = Instant::now();
    wait_until(
        &mut controller,
        cgroup.as_ref(),
        Duration::from_secs(1800),
        "every object reconciled once",
        || runs.unreconciled() == 0,
    )
    .await;
    eprintln!("every object reconciled once after {:?}", t.elapsed());
    let first_start = idle::FirstStart::new(
        &spawned,
        &controller,
        ready_after,
        rss_idle.clone(),
        hwm_ready,
    );
    let idle_window = match idle.window() {
        Some(length) => Some(
            idle::window(
                length,
                &client,
                &address,
                &mut controller,
                cgroup.as_ref(),
                &runs,
                &clock,
            )
            .await,
        ),
        None => None,
    };

    for round in 1..=history_rounds {
        let t = Instant::now();
        trigger_all(&ns, n, &format!("history-{round}")).await;
        wait_until(
            &mut controller,
            cgroup.as_ref(),
            Duration::from_secs(3600),
            "a history round",
            || runs.finished(round) == n,
        )
        .await;
        eprintln!(
            "history round {round} of {history_rounds} took {:?}",
            t.elapsed()
        );
    }
    let history_jobs = clock.snapshot().len();
    // The other tenant, steady before the scheduled side and the window begin.
    let load = if loaded {
        Some(load::Load::start().await)
    } else {
        None
    };

    // The scheduled side: sequences and CronJobs on the same schedule, created together once
    // the controller is ready, so that neither has a fire it missed before it was running.
    let mut manifest = String::new();
    for i in 0..scheduled {
        manifest.push_str(&sync_yaml(&format!("tick-{i}"), "200ms", 0, None));
        manifest.push_str("---\n");
        manifest.push_str(&sequence_yaml(
            &format!("tick-{i}"),
            &[(&format!("tick-{i}"), "")],
            "  schedule: \"* * * * *\"\n",
        ));
        manifest.push_str("---\n");
        manifest.push_str(&cronjob_yaml(&format!("cron-{i}"), "* * * * *"));
        manifest.push_str("---\n");
    }
    if scheduled > 0 {
        ns.kubectl_apply(&manifest);
    }
    let ticks_created = Timestamp::now();

    let measured_run = (history_rounds + 1).to_string();
    let mut failover = match failover_config {
        Some(config) => Some(
            failover::Failover::start(&ns, cgroup.as_ref(), config, &measured_run, shape.len() * n)
                .await,
        ),
        None => None,
    };
    let mut before = scrape(&client, &address, pid).await;
    let load_before = stats::load_average();
    let t0 = Instant::now();
    let mut floor = with_floor.then(|| {
        Floor(Some(
            std::process::Command::new(std::env::current_exe().unwrap())
                .env("BENCH_ROLE", "floor")
                .env("BENCH_NAMESPACE", &ns.name)
                .env("BENCH_CHAINS", n.to_string())
                .env("BENCH_SHAPE", shape.name)
                .env("BENCH_STEP_DURATION", &duration)
                .env("KUBECONFIG", kubeconfig_path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start the floor"),
        ))
    });
    trigger_all(&ns, n, "bench").await;
    let trigger_time = t0.elapsed();
    if let Some(f) = failover.as_mut() {
        // From here the controller is the last new leader.
        (address, pid) = f
            .run(&ns, &mut controller, &address, cgroup.as_ref(), &clock)
            .await;
    }
    wait_until(
        &mut controller,
        cgroup.as_ref(),
        Duration::from_secs(3600),
        "every benchmark run to finish",
        || runs.finished(history_rounds + 1) == n,
    )
    .await;
    let done_at = t0.elapsed();
    let all_done = Timestamp::now();
    let floor_cpu = match floor.as_mut().and_then(|f| f.0.take()) {
        Some(child) => {
            let out = tokio::task::spawn_blocking(move || child.wait_with_output())
                .await
                .unwrap()
                .expect("the floor");
            assert!(out.status.success(), "the floor failed: {:?}", out.status);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("cpu_seconds=")?.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        }
        None => f64::NAN,
    };
    let floor_done_at = t0.elapsed();
    // Enough minute boundaries for the fires, and 20 s for the last fire's Jobs to appear.
    let fires_until = ticks_created + jiff::SignedDuration::from_secs(60 * fires as i64 + 20);
    if scheduled > 0 {
        wait_until(
            &mut controller,
            cgroup.as_ref(),
            Duration::from_secs(3600),
            "the scheduled fires",
            || Timestamp::now() >= fires_until,
        )
        .await;
    }
    let mut after = scrape(&client, &address, pid).await;
    let load_after = stats::load_average();
    let load = match load {
        Some(load) => Some((load.configmaps, load.listers, load.stop().await)),
        None => None,
    };
    let rss = stats::proc_status(pid, "VmRSS:");
    let hwm = stats::proc_status(pid, "VmHWM:");
    let alive = !controller.exited();
    let seen = clock.snapshot();
    let writes = support::audit::writes_by("");
    if let Some(f) = &failover {
        f.combine(&mut before, &mut after);
    }

    // ---- figures ---------------------------------------------------------------------------
    let mut by_run: HashMap<(String, String), HashMap<String, &clock::Seen>> = HashMap::new();
    let mut floor_chains: HashMap<String, HashMap<String, &clock::Seen>> = HashMap::new();
    for job in seen.values() {
        if let (Some(seq), Some(run), Some(step)) = (
            job.labels.get(labels::SEQUENCE),
            job.labels.get(labels::RUN),
            job.labels.get(labels::STEP),
        ) {
            by_run
                .entry((seq.clone(), run.clone()))
                .or_default()
                .insert(step.clone(), job);
        }
        if let (Some(chain), Some(step)) =
            (job.labels.get(floor::CHAIN), job.labels.get(floor::STEP))
        {
            floor_chains
                .entry(chain.clone())
                .or_default()
                .insert(step.clone(), job);
        }
    }
    let (mut handoff, mut fan_out) = (vec![], vec![]);
    for ((seq, run), steps) in &by_run {
        let Some(i) = seq.strip_prefix("seq-") else {
            continue;
        };
        if run != &measured_run {
            continue;
        }
        let at = |step: &str| steps.get(&format!("{step}-{i}"));
        handoff.extend(shape.handoffs(|s| at(s).map(|j| (j.created, j.finished))));
        fan_out.extend(shape.fan_out_spreads(|s| at(s).map(|j| j.created)));
    }
    let (mut floor_handoff, mut floor_fan_out) = (vec![], vec![]);
    for steps in floor_chains.values() {
        let at = |step: &str| steps.get(step);
        floor_handoff.extend(shape.handoffs(|s| at(s).map(|j| (j.created, j.finished))));
        floor_fan_out.extend(shape.fan_out_spreads(|s| at(s).map(|j| j.created)));
    }
    // Firing delay, split by whether the fire came while the runs were in progress. It counts
    // from the Job's scheduled timestamp, the nominal fire time: the time the run may start,
    // as the scheduled sequences here have no jitterSeconds (with it, the start is that plus
    // the object's `syncseq::jitter_offset`).
    let fire = |key: &str| {
        let (mut loaded, mut idle) = (vec![], vec![]);
        for job in seen.values() {
            let Some(at) = parse_time(job.annotations.get(key)) else {
                continue;
            };
            if at < ticks_created {
                continue;
            }
            let delay = clock::seconds(at, job.created);
            if at < all_done {
                loaded.push(delay)
            } else {
                idle.push(delay)
            }
        }
        (
            Summary::of(&loaded),
            Summary::of(&idle),
            Summary::of(&[loaded, idle].concat()),
        )
    };
    let (sq_fire_load, sq_fire_idle, sq_fire) = fire(annotations::SCHEDULED_TIMESTAMP);
    let (cj_fire_load, cj_fire_idle, cj_fire) = fire(CRONJOB_SCHEDULED);
    let tick_steps = seen
        .values()
        .filter(|j| j.annotations.contains_key(annotations::SCHEDULED_TIMESTAMP))
        .count();
    let steps = (shape.len() * n + tick_steps) as f64;
    let floor_steps = (shape.len() * n) as f64;

    // Writes in the measured window, by who made them, in this namespace only: another
    // benchmark's controller or floor may share the cluster (and their User-Agents).
    let ours = format!("/namespaces/{}/", ns.name);
    let in_window = |w: &&support::audit::AuditWrite| {
        w.received >= before.at && w.received <= after.at && w.uri.contains(&ours)
    };
    let mut controller_writes: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut floor_writes = 0usize;
    for w in writes.iter().filter(in_window) {
        if w.user_agent.starts_with(CONTROLLER_AGENT) {
            *controller_writes
                .entry((w.verb.clone(), w.resource.clone()))
                .or_default() += 1;
        } else if w.user_agent == floor::USER_AGENT {
            floor_writes += 1;
        }
    }
    let controller_total: usize = controller_writes.values().sum();
    let reconciles = stats::sum(&after.controller, "syncseq_reconciles_total", &[])
        - stats::sum(&before.controller, "syncseq_reconciles_total", &[]);
    let cpu = after.controller_cpu - before.controller_cpu;
    // The API server's own counts and latencies, every client together; `sub` is the
    // subresource ("" for the object itself).
    let api_delta = |verb: &str, resource: &str, sub: &str| {
        let select = [("verb", verb), ("resource", resource), ("subresource", sub)];
        stats::sum(&after.apiserver, "apiserver_request_total", &select)
            - stats::sum(&before.apiserver, "apiserver_request_total", &select)
    };
    let api_latency = |verb: &str, resource: &str, sub: &str, q: f64| {
        stats::bucket_percentile(
            &before.apiserver,
            &after.apiserver,
            "apiserver_request_duration_seconds",
            &[("verb", verb), ("resource", resource), ("subresource", sub)],
            q,
        )
    };
    let skew = "cronjob_controller_job_creation_skew_duration_seconds";
    let skew_count = stats::sum(&after.kcm, &format!("{skew}_count"), &[])
        - stats::sum(&before.kcm, &format!("{skew}_count"), &[]);
    let skew_sum = stats::sum(&after.kcm, &format!("{skew}_sum"), &[])
        - stats::sum(&before.kcm, &format!("{skew}_sum"), &[]);
    let skew_p99 = stats::bucket_percentile(&before.kcm, &after.kcm, skew, &[], 0.99);

    let handoff = Summary::of(&handoff);
    let floor_handoff = Summary::of(&floor_handoff);
    println!(
        "## {n} sequences, {} of {} steps{}, {}{}\n",
        shape.name,
        shape.len(),
        if history_rounds > 0 {
            format!(", {history_jobs} Jobs kept from {history_rounds} earlier rounds")
        } else {
            String::new()
        },
        if loaded { "loaded" } else { "quiet" },
        if failover.is_some() {
            ", the leader killed in the round: syncseq's hand-off and firing figures include a \
             fail-over (not to compare with the floor's or CronJob's), its CPU, writes and \
             reconciles are those of every replica that led"
        } else {
            ""
        }
    );
    println!("| measure | syncseq | floor | CronJob | syncseq ÷ floor | syncseq ÷ CronJob |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| hand-off p50 / p90 / p99 / max | {} | {} | — | {} (p99) | — |",
        handoff.ms(),
        floor_handoff.ms(),
        ratio(handoff.p99, floor_handoff.p99)
    );
    if !fan_out.is_empty() || !floor_fan_out.is_empty() {
        let (fan_out, floor_fan_out) = (Summary::of(&fan_out), Summary::of(&floor_fan_out));
        println!(
            "| fan-out: first to last child created, p50 / p90 / p99 / max | {} | {} | — | {} (p99) | — |",
            fan_out.ms(),
            floor_fan_out.ms(),
            ratio(fan_out.p99, floor_fan_out.p99)
        );
    }
    for (fires, syncseq, cronjob) in [
        ("fires during the runs", &sq_fire_load, &cj_fire_load),
        ("fires after the runs", &sq_fire_idle, &cj_fire_idle),
        ("all fires", &sq_fire, &cj_fire),
    ] {
        println!(
            "| firing delay, {fires} | {} | — | {} | — | {} (p99) |",
            syncseq.ms(),
            cronjob.ms(),
            ratio(syncseq.p99, cronjob.p99)
        );
    }
    println!(
        "| CPU seconds (whole window) | {cpu:.1} s | {floor_cpu:.1} s | — | {} | — |",
        ratio(cpu, floor_cpu)
    );
    println!(
        "| CPU per step | {:.1} ms | {:.1} ms | — | {} | — |",
        cpu / steps * 1e3,
        floor_cpu / floor_steps * 1e3,
        ratio(cpu / steps, floor_cpu / floor_steps)
    );
    println!(
        "| API writes per step (audit log) | {:.2} | {:.2} | — | {} | — |",
        controller_total as f64 / steps,
        floor_writes as f64 / floor_steps,
        ratio(
            controller_total as f64 / steps,
            floor_writes as f64 / floor_steps
        )
    );
    println!(
        "| reconciles per step | {:.2} | — | — | — | — |",
        reconciles / steps
    );
    println!(
        "| all chains finished after | {:.1} s | {:.1} s | — | — | — |",
        done_at.as_secs_f64(),
        floor_done_at.as_secs_f64()
    );
    println!();
    println!("| more | value |");
    println!("| --- | --- |");
    println!(
        "| workload | {n} × {} of {} steps of {duration} (+{scheduled} sequences and {scheduled} CronJobs on `* * * * *`, {tick_steps} syncseq fires), {steps} syncseq steps in the window |",
        shape.name,
        shape.len()
    );
    println!(
        "| triggering every run (8 patches in flight) | {:.1} s |",
        trigger_time.as_secs_f64()
    );
    println!(
        "| Jobs in the namespace at the end | {} ({} before the measured round) |",
        seen.len(),
        history_jobs
    );
    println!(
        "| controller memory: idle after caches synced / at the end / peak (VmHWM){} | {rss_idle} / {rss} / {hwm} |",
        if failover.is_some() {
            " (the end and peak: the standby's, which led after the fail-over; the cgroup holds both)"
        } else {
            ""
        }
    );
    match &cgroup {
        Some(c) => println!(
            "| memory cgroup limit (chart default) / charged peak / OOM kills / controller alive at the end | {} MiB / {} MiB / {} / {alive} |",
            memory_limit >> 20,
            c.peak_bytes()
                .map(|b| (b >> 20).to_string())
                .unwrap_or("?".into()),
            c.oom_kills()
        ),
        None => println!("| memory cgroup | none; controller alive at the end: {alive} |"),
    }
    println!(
        "| controller writes by verb and resource | {} |",
        controller_writes
            .iter()
            .map(|((verb, res), c)| format!("{verb} {res}: {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| controller reconciles by kind | {} |",
        ["SyncSequence", "Sync"]
            .iter()
            .map(|kind| {
                let select = [("kind", *kind)];
                let count = stats::sum(&after.controller, "syncseq_reconciles_total", &select)
                    - stats::sum(&before.controller, "syncseq_reconciles_total", &select);
                format!("{kind} {count:.0} ({:.2} per step)", count / steps)
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The controller's own account of its queue: how long reconciles waited for a place.
    let wait = "syncseq_reconcile_admission_wait_seconds";
    println!(
        "| sequence reconciles' wait for a place, by priority: count / mean / p99 (bucket bound) | {} |",
        ["due", "other"]
            .iter()
            .map(|priority| {
                let select = [("kind", "SyncSequence"), ("priority", *priority)];
                let delta = |suffix: &str| {
                    stats::sum(&after.controller, &format!("{wait}_{suffix}"), &select)
                        - stats::sum(&before.controller, &format!("{wait}_{suffix}"), &select)
                };
                let (count, sum) = (delta("count"), delta("sum"));
                let p99 = stats::bucket_percentile(
                    &before.controller,
                    &after.controller,
                    wait,
                    &select,
                    0.99,
                );
                let mean = if count > 0.0 { sum / count } else { f64::NAN };
                format!(
                    "{priority} {count:.0} / {:.0} ms / ≤{:.0} ms",
                    mean * 1e3,
                    p99 * 1e3
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| API server: Job creates (all clients) / its latency p50 / p99 (bucket bounds) | {:.0} / ≤{:.0} ms / ≤{:.0} ms |",
        api_delta("POST", "jobs", ""),
        api_latency("POST", "jobs", "", 0.5) * 1e3,
        api_latency("POST", "jobs", "", 0.99) * 1e3
    );
    println!(
        "| API server: sequence status applies (server-side apply, all clients) / latency p50 / p99 (bucket bounds) | {:.0} / ≤{:.0} ms / ≤{:.0} ms |",
        api_delta("APPLY", "syncsequences", "status"),
        api_latency("APPLY", "syncsequences", "status", 0.5) * 1e3,
        api_latency("APPLY", "syncsequences", "status", 0.99) * 1e3
    );
    println!(
        "| kube-controller-manager `{skew}`: fires / mean / p99 (bucket bound) | {skew_count:.0} / {:.0} ms / ≤{:.0} ms |",
        if skew_count > 0.0 {
            skew_sum / skew_count * 1e3
        } else {
            f64::NAN
        },
        skew_p99 * 1e3
    );
    println!(
        "| control plane CPU seconds in the window | {} |",
        CONTROL_PLANE
            .iter()
            .map(|c| format!(
                "{c} {:.0}",
                after.control_plane_cpu[c] - before.control_plane_cpu[c]
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| load average (1 min) at the start / end of the window | {load_before} / {load_after} |"
    );
    println!("| benchmark watch restarts | {} |", clock.restarts());
    if let Some(f) = &failover {
        f.report(&seen, &writes, shape);
    }
    if let Some((configmaps, listers, figures)) = &load {
        let figure = |k: &str| figures.get(k).map_or("?", String::as_str);
        println!(
            "| other tenant: {configmaps} ConfigMaps of 8 KB, {listers} loops listing them all and a writer, over {} s: lists / list latency p50 / p99 / writes (errors: lists, writes) | {} / {} ms / {} ms / {} ({}, {}) |",
            figure("seconds"),
            figure("lists"),
            figure("list_p50_ms"),
            figure("list_p99_ms"),
            figure("writes"),
            figure("list_errors"),
            figure("write_errors")
        );
    }
    if traced {
        trace::print(controller.log_path(), &ns.name, &seen, &measured_run, shape);
    }
    idle::report(&idle, &first_start, idle_window.as_ref(), &writes, &seen);
    idle::restarts(&idle, &ns, &mut controller, cgroup.as_ref()).await;
    drop(controller);
    drop(cgroup);
}
