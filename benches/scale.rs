//! Scale benchmark against the local control plane (`make bench`; not part of `make test`).
//!
//! Creates `BENCH_SEQUENCES` sequences (default 1000) of three steps, each step its own Sync
//! whose simulated container runs `BENCH_STEP_DURATION` (default 2s); triggers them all at once
//! and waits for every run to finish. Also runs `BENCH_SCHEDULED` (default 20) sequences on
//! `@every 10s` during the run. Prints a Markdown report of:
//! - step hand-off: from the controller seeing a step's Job finish to the next Job being created
//!   (the `syncseq_step_handoff_seconds` histogram; percentiles are bucket upper bounds);
//! - schedule firing delay: from the fire time to the controller starting the run (from its log);
//! - controller memory (VmRSS now, VmHWM peak) and CPU time, from /proc;
//! - reconciles and API writes per step.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kube::api::ListParams;
use support::fixtures::*;
use support::*;
use syncseq::api::SyncSequence;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len() + 1..].trim().to_string())
        .unwrap_or_default()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// (upper bound, cumulative count) of a histogram's buckets.
fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

fn percentile(b: &[(f64, f64)], q: f64) -> f64 {
    let total = b.last().map(|x| x.1).unwrap_or(0.0);
    b.iter()
        .find(|(_, c)| *c >= q * total)
        .map(|x| x.0)
        .unwrap_or(f64::NAN)
}

fn value(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let n = env_usize("BENCH_SEQUENCES", 1000);
    let scheduled = env_usize("BENCH_SCHEDULED", 20);
    let duration = std::env::var("BENCH_STEP_DURATION").unwrap_or_else(|_| "2s".into());
    install_crds().await;
    let ns = TestNamespace::new("bench").await;
    let started = Instant::now();
    let mut manifest = String::new();
    for i in 0..n {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| format!("{s}-{i}")).collect();
        for s in &names {
            manifest.push_str(&sync_yaml(s, &duration, 0, Some(r#"{"rowsSynced":1}"#)));
            manifest.push_str("---\n");
        }
        let steps: Vec<(&str, &str)> = names.iter().map(|s| (s.as_str(), "")).collect();
        manifest.push_str(&sequence_yaml(&format!("seq-{i}"), &steps, ""));
        manifest.push_str("---\n");
        if (i + 1) % 100 == 0 || i + 1 == n {
            ns.kubectl_apply(&manifest);
            manifest.clear();
        }
    }
    for i in 0..scheduled {
        manifest.push_str(&sync_yaml(&format!("tick-{i}"), "200ms", 0, None));
        manifest.push_str("---\n");
        manifest.push_str(&sequence_yaml(
            &format!("tick-{i}"),
            &[(&format!("tick-{i}"), "")],
            "  schedule: \"@every 10s\"\n",
        ));
        manifest.push_str("---\n");
    }
    if scheduled > 0 {
        ns.kubectl_apply(&manifest);
    }
    eprintln!(
        "created {n} sequences ({} Syncs) in {:?}",
        3 * n,
        started.elapsed()
    );

    let controller = ControllerProcess::start_with_default_lease(&ns.name);
    let address = controller.metrics_address().await;
    let pid = controller.pid().unwrap();
    let api = ns.api::<SyncSequence>();
    eventually(Duration::from_secs(120), "controller ready", || async {
        let out = std::process::Command::new("curl")
            .args(["-sf", &format!("http://{address}/readyz")])
            .output()
            .ok()?;
        out.status.success().then_some(())
    })
    .await;
    let rss_idle = proc_status(pid, "VmRSS:");

    let t0 = Instant::now();
    for i in 0..n {
        trigger(&ns, &format!("seq-{i}"), "bench").await;
    }
    let trigger_time = t0.elapsed();
    eventually(
        Duration::from_secs(1800),
        "every benchmark run finished",
        || async {
            let list = api
                .list(&ListParams::default().labels("").limit(5000))
                .await
                .ok()?;
            let done = list
                .items
                .iter()
                .filter(|s| {
                    s.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("seq-"))
                })
                .filter(|s| s.status.as_ref().is_some_and(|st| !st.book.runs.is_empty()))
                .count();
            (done == n).then_some(())
        },
    )
    .await;
    let done_at = t0.elapsed();
    let metrics = String::from_utf8(
        std::process::Command::new("curl")
            .args(["-s", &format!("http://{address}/metrics")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let handoff = buckets(&metrics, "syncseq_step_handoff_seconds");
    let reconcile = buckets(&metrics, "syncseq_reconcile_duration_seconds");
    let succeeded = value(&metrics, "syncseq_runs_total{outcome=\"Succeeded\"}");
    let reconciles: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("syncseq_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let rss = proc_status(pid, "VmRSS:");
    let hwm = proc_status(pid, "VmHWM:");
    let cpu = cpu_seconds(pid);
    let jobs = ns
        .api::<k8s_openapi::api::batch::v1::Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();

    // Schedule firing delay, from the controller log: "run N started by the schedule (for T)".
    let log = std::fs::read_to_string(controller.log_path()).unwrap_or_default();
    let mut delays: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("started by the schedule (for "))
        .filter_map(|l| {
            let logged: jiff::Timestamp = l.split_whitespace().next()?.parse().ok()?;
            let fire: jiff::Timestamp = l.split("(for ").nth(1)?.split(')').next()?.parse().ok()?;
            Some(logged.duration_since(fire).as_secs_f64())
        })
        .collect();
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |v: &[f64], q: f64| {
        v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };

    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| sequences × steps | {n} × 3 (+{scheduled} on @every 10s), step duration {duration} |"
    );
    println!(
        "| triggering all runs (one patch each, sequential) | {:.1} s |",
        trigger_time.as_secs_f64()
    );
    println!(
        "| all runs finished after | {:.1} s ({succeeded} Succeeded) |",
        done_at.as_secs_f64()
    );
    println!("| Jobs in the namespace at the end | {jobs} |");
    println!(
        "| step hand-off p50 / p90 / p99 (bucket bounds) | ≤{:.0} ms / ≤{:.0} ms / ≤{:.0} ms over {} hand-offs |",
        percentile(&handoff, 0.5) * 1e3,
        percentile(&handoff, 0.9) * 1e3,
        percentile(&handoff, 0.99) * 1e3,
        handoff.last().map(|x| x.1).unwrap_or(0.0)
    );
    println!(
        "| reconcile duration p50 / p99 | ≤{:.1} ms / ≤{:.1} ms |",
        percentile(&reconcile, 0.5) * 1e3,
        percentile(&reconcile, 0.99) * 1e3
    );
    println!(
        "| reconciles in all | {reconciles} ({:.1} per step) |",
        reconciles / (3 * n) as f64
    );
    println!(
        "| schedule firing delay p50 / p99 / max | {:.0} ms / {:.0} ms / {:.0} ms over {} fires |",
        pct(&delays, 0.5) * 1e3,
        pct(&delays, 0.99) * 1e3,
        delays.last().copied().unwrap_or(f64::NAN) * 1e3,
        delays.len()
    );
    println!(
        "| controller memory: idle after caches synced / at the end / peak | {rss_idle} / {rss} / {hwm} |"
    );
    println!("| controller CPU time | {cpu:.1} s |");
}
