//! The floor: the least a program can do to chain Jobs, on the same client library as syncseq.
//! One watch on its Jobs and, when a step of a chain completes, a create of each step whose
//! parents have all completed (the benchmark's shape, `shape.rs`). No status, no Events, no
//! claim, no engine. The benchmark runs it as a separate process (this
//! same binary with `BENCH_ROLE=floor`), in the same namespace and at the same time as the
//! controller's runs, and times its Jobs with the same watch as syncseq's.

use std::collections::HashSet;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};

pub const CHAIN: &str = "bench.syncseq.dev/chain";
pub const STEP: &str = "bench.syncseq.dev/step";
/// How the floor's writes are told apart in the API server's audit log.
pub const USER_AGENT: &str = "syncseq-bench-floor";

pub fn job_name(chain: usize, step: &str) -> String {
    format!("floor-{chain}-{step}")
}

/// The Job of a chain's step: the job template of a benchmark Sync (`sync_yaml`), so that the
/// floor runs the same Pods as syncseq does.
fn job(chain: usize, step: &str, duration: &str) -> Job {
    let name = job_name(chain, step);
    let sync: serde_json::Value = serde_saphyr::from_str(&crate::support::fixtures::sync_yaml(
        &name,
        duration,
        0,
        Some(r#"{"rowsSynced":1}"#),
    ))
    .expect("the Sync fixture is YAML");
    serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {CHAIN: chain.to_string(), STEP: step},
        },
        "spec": sync["spec"]["jobTemplate"]["spec"],
    }))
    .expect("a valid Job")
}

async fn create(api: &Api<Job>, chain: usize, step: &str, duration: &str) {
    match api
        .create(&PostParams::default(), &job(chain, step, duration))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => eprintln!("floor: creating {}: {e}", job_name(chain, step)),
    }
}

/// The floor's main: chains `BENCH_CHAINS` chains of `BENCH_SHAPE` in `BENCH_NAMESPACE`, exits
/// when every chain's last step completed, and prints its own CPU seconds.
pub async fn main() {
    let namespace = std::env::var("BENCH_NAMESPACE").expect("BENCH_NAMESPACE");
    let chains: usize = std::env::var("BENCH_CHAINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("BENCH_CHAINS");
    let duration = std::env::var("BENCH_STEP_DURATION").unwrap_or_else(|_| "2s".into());
    let shape = super::shape::Shape::from_env();
    let kubeconfig = Kubeconfig::read_from(std::env::var("KUBECONFIG").expect("KUBECONFIG"))
        .expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    let api: Api<Job> = Api::namespaced(Client::try_from(config).expect("client"), &namespace);

    let mut events = watcher(api.clone(), watcher::Config::default().labels(CHAIN))
        .default_backoff()
        .applied_objects()
        .boxed();
    // The chains' roots, a few at a time, as the benchmark triggers syncseq's runs.
    let first = {
        let (api, duration) = (api.clone(), duration.clone());
        tokio::spawn(async move {
            let roots = shape.steps.iter().filter(|s| s.parents.is_empty());
            let starts: Vec<(usize, &str)> = (0..chains)
                .flat_map(|chain| roots.clone().map(move |s| (chain, s.name)))
                .collect();
            futures::stream::iter(starts)
                .for_each_concurrent(8, |(chain, step)| {
                    let (api, duration) = (api.clone(), duration.clone());
                    async move { create(&api, chain, step, &duration).await }
                })
                .await
        })
    };
    let mut completed: HashSet<(usize, String)> = HashSet::new();
    let mut started: HashSet<(usize, &str)> = HashSet::new();
    let mut done: HashSet<usize> = HashSet::new();
    while done.len() < chains {
        let job = match events.next().await {
            Some(Ok(job)) => job,
            // The watcher backs off and watches again.
            Some(Err(_)) => continue,
            None => break,
        };
        if !super::clock::has_condition(&job, &["Complete"]) {
            continue;
        }
        let labels = job.metadata.labels.clone().unwrap_or_default();
        let (Some(chain), Some(step)) = (
            labels.get(CHAIN).and_then(|c| c.parse::<usize>().ok()),
            labels.get(STEP).cloned(),
        ) else {
            continue;
        };
        if step == shape.sink() {
            done.insert(chain);
        }
        completed.insert((chain, step.clone()));
        for child in shape.children(&step) {
            let ready = child
                .parents
                .iter()
                .all(|p| completed.contains(&(chain, p.to_string())));
            if ready && started.insert((chain, child.name)) {
                // Each create on its own task, as a controller's concurrent reconciles would.
                let (api, duration) = (api.clone(), duration.clone());
                tokio::spawn(async move { create(&api, chain, child.name, &duration).await });
            }
        }
    }
    let _ = first.await;
    println!(
        "cpu_seconds={}",
        super::stats::cpu_seconds(std::process::id())
    );
}
