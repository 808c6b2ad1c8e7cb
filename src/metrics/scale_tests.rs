//! `/metrics` at 10,000 sequences (bench/REPORT.md, 2026-12-07): the caches filled as `make
//! bench` at that size fills them, every sequence seen by a reconcile, then rendered as the
//! server renders it. A measurement, not run by default:
//!
//! `cargo test --release --lib metrics::scale_tests -- --ignored --nocapture`

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::{reflector::store::Writer, watcher::Event};

use super::*;
use crate::api::{RunSummary, SyncStatus, TriggerKind};
use crate::engine::fixtures;

const SEQUENCES: usize = 10_000;
/// Of them, running the hand-off chain; the others idle on hourly and daily schedules.
const RUNNING: usize = 1_000;
const STEPS: usize = 3;

/// The sequences (3 steps each, each step its own Sync) and their 30,000 Syncs, spread over
/// `namespaces` namespaces, in caches the metrics read; each sequence seen as its first
/// reconcile sees it.
fn ten_thousand(metrics: &Metrics, namespaces: usize) {
    let now = jiff::Timestamp::now();
    let ago = |s: i64| Time(now.checked_sub(jiff::SignedDuration::from_secs(s)).unwrap());
    let (mut sequences, mut syncs) = (Writer::default(), Writer::<Sync>::default());
    for i in 0..SEQUENCES {
        let namespace = format!("team-{:03}", i % namespaces);
        let name = format!("seq-{i:05}");
        let steps: Vec<String> = (0..STEPS).map(|s| format!("{name}-s{s}")).collect();
        let mut seq = fixtures::sequence(steps.iter().map(|s| fixtures::step(s)).collect());
        seq.metadata.name = Some(name.clone());
        seq.metadata.namespace = Some(namespace.clone());
        let running = i < RUNNING;
        if !running {
            seq.spec.scheduling.schedule = Some(match i % 2 {
                0 => "0 * * * *".into(),
                _ => "30 2 * * *".into(),
            });
        }
        let mut status = crate::api::SyncSequenceStatus::default();
        status.book.last_successful_time = Some(ago(600));
        status.book.runs = vec![RunSummary {
            id: 1,
            scheduled_time: None,
            trigger: TriggerKind::Schedule,
            upstream: None,
            retry_of: None,
            // One in a hundred last failed.
            phase: match i % 100 {
                0 => RunPhase::Failed,
                _ => RunPhase::Succeeded,
            },
            start_time: ago(660),
            completion_time: Some(ago(600)),
            failed_step: None,
            message: None,
            succeeded_steps: None,
        }];
        if running {
            status.book.current_run = Some(
                serde_json::from_value(serde_json::json!({
                    "id": 2, "trigger": "Manual", "startTime": ago(5).0.to_string(),
                    "phase": "Running", "progress": "1/3", "steps": [],
                }))
                .unwrap(),
            );
        }
        seq.status = Some(status);
        for step in &steps {
            let mut sync = fixtures::sync(step);
            sync.metadata.namespace = Some(namespace.clone());
            sync.status = Some(SyncStatus {
                last_succeeded_run: Some(
                    serde_json::from_value(serde_json::json!({
                        "jobName": format!("{step}-1"), "sequenceRun": format!("{name}/1"),
                        "startTime": ago(640).0.to_string(), "completionTime": ago(620).0.to_string(),
                        "phase": "Succeeded",
                    }))
                    .unwrap(),
                ),
                ..SyncStatus::default()
            });
            syncs.apply_watcher_event(&Event::Apply(sync));
        }
        metrics.object_seen(
            "SyncSequence",
            &namespace,
            &name,
            steps.iter().map(|s| s.as_str()),
        );
        sequences.apply_watcher_event(&Event::Apply(seq));
    }
    metrics.objects.watch(Stores {
        sequences: sequences.as_reader(),
        syncs: syncs.as_reader(),
        owns_sync: Box::new(|_| true),
    });
}

/// Renders as `/metrics` does: the encoder on a blocking thread writing [`Chunks`], the
/// chunks taken as they come. Returns the size and how long it took.
fn render(runtime: &tokio::runtime::Runtime, metrics: &Arc<Metrics>) -> (usize, Duration) {
    runtime.block_on(async {
        let started = Instant::now();
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let metrics = metrics.clone();
        let encoder = tokio::task::spawn_blocking(move || {
            let mut out = Chunks::new(sender);
            metrics.encode_into(Format::OpenMetrics, &mut out)?;
            out.finish()
        });
        let mut size = 0;
        while let Some(chunk) = receiver.recv().await {
            size += chunk.len();
        }
        encoder.await.unwrap().unwrap();
        (size, started.elapsed())
    })
}

/// The median of five renders, after one to warm up.
fn measure(metrics: Metrics) -> (usize, Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let metrics = Arc::new(metrics);
    let first = render(&runtime, &metrics).0;
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let (size, took) = render(&runtime, &metrics);
            assert_eq!(size, first);
            took
        })
        .collect();
    times.sort();
    (first, times[2])
}

fn scoped(per_object: PerObject, namespaces: usize) -> Metrics {
    let metrics = Metrics::new(Scope {
        per_object,
        ..Scope::default()
    });
    ten_thousand(&metrics, namespaces);
    metrics
}

/// The families that make up most of the text: (family, share of the bytes).
fn heaviest(text: &str) -> Vec<(String, f64)> {
    let mut by = HashMap::<&str, usize>::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let family = line.split(['{', ' ']).next().unwrap_or_default();
        *by.entry(family).or_default() += line.len() + 1;
    }
    let mut by: Vec<(String, f64)> = by
        .into_iter()
        .map(|(family, size)| (family.to_string(), size as f64 / text.len() as f64))
        .collect();
    by.sort_by(|a, b| b.1.total_cmp(&a.1));
    by.truncate(6);
    by
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn metrics_at_ten_thousand_sequences() {
    let kb = |size: usize| size as f64 / 1024.0;
    let text = scoped(PerObject::All, 1).encode(Format::OpenMetrics);
    for (family, share) in heaviest(&text) {
        println!("per-object on, 1 namespace: {family} {:.0}%", share * 100.0);
    }
    for namespaces in [1, 10, 100] {
        let (on, on_took) = measure(scoped(PerObject::All, namespaces));
        let (off, off_took) = measure(scoped(PerObject::Off, namespaces));
        println!(
            "{SEQUENCES} sequences + {} Syncs in {namespaces} namespace(s): per-object on {:.0} KiB in {:.1} ms; off {:.1} KiB in {:.1} ms",
            SEQUENCES * STEPS,
            kb(on),
            on_took.as_secs_f64() * 1000.0,
            kb(off),
            off_took.as_secs_f64() * 1000.0,
        );
        // The bound: what the aggregates cost grows with the namespaces, not the objects.
        if namespaces == 1 {
            assert!(off <= 100 * 1024, "{off} bytes");
        }
        if !cfg!(debug_assertions) {
            assert!(on_took <= Duration::from_millis(200), "{on_took:?}");
        }
    }
}
