//! The other tenant (`BENCH_LOAD=1`): a heavy, naive client of the same API server, so that
//! syncseq and the floor hand off while the server is busy with someone else's work. The
//! benchmark runs it as a separate process (this binary with `BENCH_ROLE=load`), so its CPU
//! and runtime do not mix with the benchmark's clock, in a namespace of its own, and stops it
//! by closing its stdin (or with a signal).
//!
//! It creates `BENCH_LOAD_CONFIGMAPS` ConfigMaps of 8 KB, says `ready`, and then, until
//! stopped, runs `BENCH_LOAD_LISTERS` loops each listing all of them in one LIST (no
//! pagination, as a naive client does) and one writer replacing their data one after another.
//! On exit it prints what it did: `lists=`, `list_p50_ms=`, `list_p99_ms=`, `writes=`,
//! `write_errors=`, `list_errors=`, `seconds=`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};

use super::env_usize;
use super::stats::Summary;
use super::support::TestNamespace;

/// How the load's requests are told apart in the API server's audit log.
const USER_AGENT: &str = "syncseq-bench-load";
const VALUE_BYTES: usize = 8 * 1024;

fn config_map(i: usize, round: usize) -> ConfigMap {
    // 8 KB of data that changes with each write, as a tenant's real updates would.
    let value: String =
        std::iter::repeat_n(char::from(b'a' + (round % 26) as u8), VALUE_BYTES).collect();
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("load-{i}")),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("value".to_string(), value)])),
        ..Default::default()
    }
}

/// Resolves when the benchmark closes stdin, or on SIGTERM or Ctrl-C.
async fn stopped() {
    // A thread of its own, not a blocking task: the runtime would wait for that at exit,
    // which a signal may bring while stdin is still open.
    let (closed, stdin) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        // Nothing is sent: end of file is the signal.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = stdin => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

pub async fn main() {
    let count = env_usize("BENCH_LOAD_CONFIGMAPS", 2000);
    let listers = env_usize("BENCH_LOAD_LISTERS", 3);
    let ns = TestNamespace::new("bench-load").await;
    let mut config = kube::Config::infer().await.expect("config");
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    let api: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(config).expect("client"), &ns.name);
    futures::stream::iter(0..count)
        .for_each_concurrent(8, |i| {
            let api = api.clone();
            async move {
                if let Err(e) = api.create(&PostParams::default(), &config_map(i, 0)).await {
                    eprintln!("load: creating load-{i}: {e}");
                }
            }
        })
        .await;
    println!("ready");

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (list_errors, write_errors) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let lister_tasks: Vec<_> = (0..listers)
        .map(|_| {
            let (api, stop, errors) = (api.clone(), stop.clone(), list_errors.clone());
            tokio::spawn(async move {
                let mut latencies = vec![];
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match api.list(&ListParams::default()).await {
                        Ok(_) => latencies.push(t.elapsed().as_secs_f64()),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let writer = {
        let (api, stop, errors) = (api.clone(), stop.clone(), write_errors.clone());
        tokio::spawn(async move {
            // One ConfigMap after another, round after round, each write a new value.
            let (mut attempts, mut writes) = (0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let (i, round) = (attempts % count.max(1), attempts / count.max(1) + 1);
                let patch = Patch::Merge(config_map(i, round));
                match api
                    .patch(&format!("load-{i}"), &PatchParams::default(), &patch)
                    .await
                {
                    Ok(_) => writes += 1,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                attempts += 1;
            }
            writes
        })
    };
    stopped().await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = vec![];
    for task in lister_tasks {
        latencies.extend(task.await.expect("a lister"));
    }
    let writes = writer.await.expect("the writer");
    let lists = Summary::of(&latencies);
    println!(
        "lists={} list_p50_ms={:.0} list_p99_ms={:.0} writes={writes} write_errors={} \
         list_errors={} seconds={:.0}",
        lists.n,
        lists.p50 * 1e3,
        lists.p99 * 1e3,
        write_errors.load(Ordering::Relaxed),
        list_errors.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    // Dropping the namespace deletes it, and its ConfigMaps with it.
    drop(ns);
}

/// The load's process as the benchmark sees it: started, ready and warmed up, then stopped
/// for its figures. Killed if the benchmark stops first.
pub struct Load {
    child: Option<std::process::Child>,
    /// The lines it printed after `ready`, once it exits.
    output: Option<std::thread::JoinHandle<Vec<String>>>,
    pub configmaps: usize,
    pub listers: usize,
}

impl Load {
    /// Starts the load, waits for its ConfigMaps to exist, then lets it run
    /// `BENCH_LOAD_WARMUP` seconds (default 10) so the window starts under a steady load.
    pub async fn start() -> Load {
        use std::io::BufRead;
        let configmaps = env_usize("BENCH_LOAD_CONFIGMAPS", 2000);
        let listers = env_usize("BENCH_LOAD_LISTERS", 3);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env("BENCH_ROLE", "load")
            .env("BENCH_LOAD_CONFIGMAPS", configmaps.to_string())
            .env("BENCH_LOAD_LISTERS", listers.to_string())
            .env("KUBECONFIG", super::support::kubeconfig_path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the load");
        let stdout = child.stdout.take().expect("the load's stdout");
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let output = std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok);
            if lines.by_ref().any(|l| l == "ready") {
                let _ = ready.send(());
            }
            lines.collect()
        });
        let mut load = Load {
            child: Some(child),
            output: Some(output),
            configmaps,
            listers,
        };
        let deadline = std::time::Duration::from_secs(600);
        match tokio::time::timeout(deadline, is_ready).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the load exited before its ConfigMaps were created"),
            Err(_) => panic!("the load's {configmaps} ConfigMaps not created in {deadline:?}"),
        }
        let warmup = env_usize("BENCH_LOAD_WARMUP", 10);
        // A fixed time, not a condition: the load is steady once its loops have run a while.
        tokio::time::sleep(std::time::Duration::from_secs(warmup as u64)).await;
        assert!(!load.exited(), "the load exited during its warm-up");
        load
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Closes its stdin and returns its figures (`key=value`, from its last line).
    pub async fn stop(mut self) -> BTreeMap<String, String> {
        let mut child = self.child.take().expect("the load");
        drop(child.stdin.take());
        let output = self.output.take().expect("the load's output");
        tokio::task::spawn_blocking(move || {
            let status = child.wait().expect("the load");
            assert!(status.success(), "the load failed: {status:?}");
            let lines = output.join().expect("the load's output");
            lines
                .last()
                .map(|l| {
                    l.split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default()
        })
        .await
        .unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
