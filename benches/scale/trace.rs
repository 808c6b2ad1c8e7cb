//! Where a hand-off's time goes (`BENCH_TRACE=1`): the controller's `syncseq::trace` events
//! (enabled at trace level for this run only) joined with the benchmark's clock, per hand-off
//! of the measured round, cut into segments from the parent Job's end to the child Job seen.

use std::collections::HashMap;
use std::path::Path;

use jiff::Timestamp;

use super::clock::{self, Seen};
use super::shape::Shape;
use super::stats::Summary;
use syncseq::api::labels;

/// The log filter that turns the trace on, beside the tests' own.
pub const LOG_FILTER: &str = "info,syncseq=debug,syncseq::trace=trace";
const MARK: &str = " syncseq::trace: ";

/// One trace event: when, which (`job_finished`, `reconcile_start`, `claim_start`,
/// `claim_done`, `job_created`, `status_written`), and its fields.
struct Event {
    at: Timestamp,
    what: String,
    fields: HashMap<String, String>,
}

/// A line of the text log: `<RFC 3339 time> TRACE <spans>: syncseq::trace: <what> k=v ...`.
/// Only the fields after the target are the event's own (the spans' come before it).
fn parse(line: &str) -> Option<Event> {
    let at = line.split_whitespace().next()?.parse().ok()?;
    let (_, rest) = line.split_once(MARK)?;
    let mut words = rest.split_whitespace();
    let what = words.next()?.to_string();
    let fields = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect();
    Some(Event { at, what, fields })
}

/// The times of each kind of event, by the key that joins it to a hand-off.
#[derive(Default)]
struct Marks {
    /// A Job's end as the controller's watch delivered it, by Job (first only).
    finished: HashMap<String, Timestamp>,
    /// A sequence's reconcile starts, by sequence, in log order.
    reconciles: HashMap<String, Vec<Timestamp>>,
    /// A claim sent for a Job, by Job (the last: a refused one is tried again).
    claiming: HashMap<String, Timestamp>,
    /// A successful claim for a Job, by Job (the last).
    claimed: HashMap<String, Timestamp>,
    /// A Job's create returning, by Job.
    created: HashMap<String, Timestamp>,
    /// A sequence's status writes, by sequence, in log order.
    written: HashMap<String, Vec<Timestamp>>,
}

fn marks(log: &Path, namespace: &str) -> Marks {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut m = Marks::default();
    for e in text.lines().filter_map(parse) {
        if e.fields.get("namespace").map(String::as_str) != Some(namespace) {
            continue;
        }
        let field = |k: &str| e.fields.get(k).cloned().unwrap_or_default();
        let sequence = e.fields.get("kind").is_some_and(|k| k == "SyncSequence");
        match e.what.as_str() {
            "job_finished" => {
                m.finished.entry(field("job")).or_insert(e.at);
            }
            "reconcile_start" if sequence => {
                m.reconciles.entry(field("name")).or_default().push(e.at)
            }
            "claim_start" => {
                m.claiming.insert(field("job"), e.at);
            }
            "claim_done" if field("claimed") == "true" => {
                m.claimed.insert(field("job"), e.at);
            }
            "job_created" => {
                m.created.insert(field("job"), e.at);
            }
            "status_written" if sequence => m.written.entry(field("name")).or_default().push(e.at),
            _ => {}
        }
    }
    m
}

const SEGMENTS: [&str; 8] = [
    "Job finished (clock) → controller's watch event",
    "watch event → the sequence's next reconcile starts",
    "that reconcile → the reconcile that claims starts (0: the same one)",
    "the claiming reconcile's start → claim sent (the decision)",
    "claim sent → claim done (the Sync's compare-and-swap)",
    "claim done → Job create done",
    "Job create done → the clock sees the new Job",
    "Job create done → the sequence's next status write done (after the create)",
];

/// Prints the per-segment percentiles of the measured round's hand-offs, as a Markdown table.
/// `seen` is the clock's Jobs by name; `run` the measured run's number.
pub fn print(log: &Path, namespace: &str, seen: &HashMap<String, Seen>, run: &str, shape: &Shape) {
    let m = marks(log, namespace);
    // The measured run's Jobs by sequence and step (the step's name without the index).
    let mut jobs: HashMap<(&str, &str), (&str, &Seen)> = HashMap::new();
    for (name, job) in seen {
        if let (Some(seq), Some(r), Some(step)) = (
            job.labels.get(labels::SEQUENCE),
            job.labels.get(labels::RUN),
            job.labels.get(labels::STEP),
        ) && r == run
            && let Some((step, _)) = step.split_once('-')
        {
            jobs.insert((seq.as_str(), step), (name.as_str(), job));
        }
    }
    let mut segments: Vec<Vec<f64>> = vec![vec![]; SEGMENTS.len()];
    let mut missing = 0usize;
    for (&(seq, step), &(child, child_seen)) in &jobs {
        let Some(parents) = shape
            .steps
            .iter()
            .find(|s| s.name == step)
            .map(|s| s.parents)
            .filter(|p| !p.is_empty())
        else {
            continue;
        };
        // The parent whose end the hand-off counts from: the last to finish.
        let parent = parents
            .iter()
            .filter_map(|p| jobs.get(&(seq, p)))
            .filter_map(|(name, s)| Some((*name, s.finished?)))
            .max_by_key(|(_, at)| *at);
        let joined = (|| {
            let (parent, finished) = parent?;
            let watched = *m.finished.get(parent)?;
            let reconciles = m.reconciles.get(seq)?;
            let first = *reconciles.iter().find(|t| **t >= watched)?;
            let sent = *m.claiming.get(child)?;
            let claimed = *m.claimed.get(child)?;
            let deciding = *reconciles.iter().rev().find(|t| **t <= sent)?;
            let created = *m.created.get(child)?;
            let written = m
                .written
                .get(seq)
                .and_then(|w| w.iter().find(|t| **t >= created).copied());
            Some([
                Some((finished, watched)),
                Some((watched, first)),
                Some((first, deciding)),
                Some((deciding, sent)),
                Some((sent, claimed)),
                Some((claimed, created)),
                Some((created, child_seen.created)),
                written.map(|w| (created, w)),
            ])
        })();
        let Some(joined) = joined else {
            missing += 1;
            continue;
        };
        for (samples, pair) in segments.iter_mut().zip(joined) {
            if let Some((a, b)) = pair {
                samples.push(clock::seconds(a, b));
            }
        }
    }
    println!();
    println!("| hand-off segment (controller log joined with the clock) | p50 / p90 / p99 / max |");
    println!("| --- | --- |");
    for (name, samples) in SEGMENTS.iter().zip(&segments) {
        println!("| {name} | {} |", Summary::of(samples).ms());
    }
    println!("| hand-offs without every mark in the log | {missing} |");
}
