//! Per-object metrics, read from the caches at each scrape, as kube-state-metrics reads objects:
//! what a user alerts on — when a sequence or Sync last succeeded, how its last run ended and
//! how long it took, whether one runs now, whether it is suspended, and how often its schedule
//! fires. They are derived from status, so they are right after a restart or a change of
//! leader, and a deleted object's series go with it. Only the leader holds the caches: a
//! standby exports none of these (sum or max over replicas).
//!
//! Besides each object's series (for the objects [`PerObject`](super::PerObject) covers),
//! counts by kind and namespace, of every object: what the shipped rules and dashboard need
//! when per-object series are off.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{NamespaceLabels, Scope};
use crate::api::{RunBook, RunPhase, ScheduleSpec, Sync, SyncSequence};
use crate::schedule;

/// Which object a series is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ObjectLabels {
    /// `SyncSequence` or `Sync`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: String,
    namespace: String,
    name: String,
    outcome: String,
}

/// The caches the figures are read from, once the controller has them.
pub(crate) struct Stores {
    pub sequences: Store<SyncSequence>,
    pub syncs: Store<Sync>,
    /// Which Syncs have series here. Sharded, a shard's own only: every shard caches them
    /// all, and the same series from several shards would double sums and break the rules'
    /// one-to-one matches.
    pub owns_sync: Box<dyn Fn(&Sync) -> bool + Send + std::marker::Sync>,
}

/// The collector; empty until [`Objects::watch`].
pub(crate) struct Objects {
    stores: OnceLock<Stores>,
    scope: Scope,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Objects")
    }
}

impl Objects {
    pub(crate) fn new(scope: Scope) -> Objects {
        Objects {
            stores: OnceLock::new(),
            scope,
        }
    }

    /// Starts exporting the objects of these caches.
    pub(crate) fn watch(&self, stores: Stores) {
        let _ = self.stores.set(stores);
    }
}

/// One object's figures.
#[derive(Debug, PartialEq)]
pub(crate) struct Figures {
    pub labels: ObjectLabels,
    /// When its last successful run ended (Unix seconds).
    pub last_success: Option<f64>,
    pub last_outcome: Option<RunPhase>,
    pub last_duration: Option<f64>,
    pub running: bool,
    pub suspended: bool,
    /// Seconds between its next two scheduled fires.
    pub interval: Option<f64>,
}

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// The figures of one object, from its spec's schedule (with its creation, which `@every`
/// among several schedules counts from) and its run book. Pure.
pub(crate) fn figures(
    labels: ObjectLabels,
    scheduling: &ScheduleSpec,
    created: Option<Timestamp>,
    book: Option<&RunBook>,
    last_success: Option<Timestamp>,
    now: Timestamp,
) -> Figures {
    let last = book.and_then(|b| b.runs.first());
    let interval = schedule::parse_set(
        scheduling.schedule.as_deref(),
        scheduling.schedules.as_deref(),
        scheduling.time_zone.as_deref(),
        created.unwrap_or(Timestamp::UNIX_EPOCH),
    )
    .ok()
    .flatten()
    .and_then(|(set, tz)| match schedule::preview(&set, &tz, now, 2)[..] {
        [a, b] => Some(b.duration_since(a).as_secs_f64()),
        _ => None,
    });
    Figures {
        labels,
        last_success: last_success.map(seconds),
        last_outcome: last.map(|r| r.phase),
        last_duration: last.and_then(|r| {
            let end = r.completion_time.as_ref()?.0;
            Some(end.duration_since(r.start_time.0).as_secs_f64().max(0.0))
        }),
        running: book.is_some_and(|b| b.current_run.is_some()),
        suspended: scheduling.suspend,
        interval,
    }
}

fn labels(kind: &str, obj: &impl ResourceExt) -> ObjectLabels {
    ObjectLabels {
        kind: kind.into(),
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

impl Objects {
    fn all(&self, now: Timestamp) -> Vec<Figures> {
        let Some(stores) = self.stores.get() else {
            return Vec::new();
        };
        let sequences = stores.sequences.state().into_iter().map(|s| {
            let book = s.status.as_ref().map(|st| &st.book);
            let success = book
                .and_then(|b| b.last_successful_time.as_ref())
                .map(|t| t.0);
            figures(
                labels("SyncSequence", s.as_ref()),
                &s.spec.scheduling,
                s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                book,
                success,
                now,
            )
        });
        // A Sync's last success is whoever ran it; its other figures are its own runs'.
        let syncs = stores
            .syncs
            .state()
            .into_iter()
            .filter(|s| (stores.owns_sync)(s))
            .map(|s| {
                let st = s.status.as_ref();
                let success = st
                    .and_then(|st| st.last_succeeded_run.as_deref())
                    .and_then(|r| r.completion_time.as_ref())
                    .map(|t| t.0);
                let book = st.map(|st| &st.book);
                figures(
                    labels("Sync", s.as_ref()),
                    &s.spec.scheduling,
                    s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    book,
                    success,
                    now,
                )
            });
        sequences.chain(syncs).collect()
    }
}

impl Figures {
    /// Scheduled, not suspended, and its last success more than `intervals` of its schedule's
    /// intervals ago: what `SyncseqNoRecentSuccess` says of each object. One that never
    /// succeeded is not, as that alert cannot tell it either.
    fn stale(&self, intervals: f64, now: f64) -> bool {
        !self.suspended
            && self
                .last_success
                .zip(self.interval)
                .is_some_and(|(success, interval)| now - success > intervals * interval)
    }
}

/// How many of a kind's objects in one namespace are in each state.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Counts {
    pub objects: u64,
    pub last_run_failed: u64,
    pub stale: u64,
    pub running: u64,
    pub suspended: u64,
}

/// The counts of each kind and namespace that has an object.
pub(crate) fn counts(
    all: &[Figures],
    stale_intervals: f64,
    now: Timestamp,
) -> BTreeMap<NamespaceLabels, Counts> {
    let now = seconds(now);
    let mut by = BTreeMap::<NamespaceLabels, Counts>::new();
    for f in all {
        let key = NamespaceLabels {
            kind: f.labels.kind.clone(),
            namespace: f.labels.namespace.clone(),
        };
        let c = by.entry(key).or_default();
        c.objects += 1;
        c.last_run_failed += u64::from(f.last_outcome == Some(RunPhase::Failed));
        c.stale += u64::from(f.stale(stale_intervals, now));
        c.running += u64::from(f.running);
        c.suspended += u64::from(f.suspended);
    }
    by
}

/// Encodes one gauge family of the counts.
fn count(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    counts: &BTreeMap<NamespaceLabels, Counts>,
    value: impl Fn(&Counts) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, c) in counts {
        ConstGauge::new(value(c) as i64).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// Encodes one gauge family: a series per object that has a value.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    all: &[Figures],
    value: impl Fn(&Figures) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for f in all {
        if let Some(v) = value(f) {
            ConstGauge::new(v).encode(family.encode_family(&f.labels)?)?;
        }
    }
    Ok(())
}

impl Collector for Objects {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = Timestamp::now();
        let mut all = self.all(now);
        let counts = counts(&all, self.scope.stale_intervals, now);
        count(
            &mut encoder,
            "objects",
            "Objects, by kind and namespace",
            &counts,
            |c| c.objects,
        )?;
        count(
            &mut encoder,
            "objects_last_run_failed",
            "Objects whose last finished run failed, by kind and namespace",
            &counts,
            |c| c.last_run_failed,
        )?;
        count(
            &mut encoder,
            "objects_stale",
            "Scheduled, unsuspended objects whose last success is more than --metrics-stale-intervals schedule intervals old, by kind and namespace",
            &counts,
            |c| c.stale,
        )?;
        count(
            &mut encoder,
            "objects_run_in_progress",
            "Objects with a run in progress, by kind and namespace",
            &counts,
            |c| c.running,
        )?;
        count(
            &mut encoder,
            "objects_suspended",
            "Objects whose spec.suspend is set, by kind and namespace",
            &counts,
            |c| c.suspended,
        )?;
        all.retain(|f| self.scope.per_object.covers(&f.labels.namespace));
        if all.is_empty() {
            return Ok(());
        }
        let flag = |b: bool| Some(if b { 1.0 } else { 0.0 });
        gauge(
            &mut encoder,
            "last_success_timestamp_seconds",
            "When the object's last successful run ended (a Sync's: whoever ran it)",
            &all,
            |f| f.last_success,
        )?;
        gauge(
            &mut encoder,
            "last_run_duration_seconds",
            "How long the object's last finished run took",
            &all,
            |f| f.last_duration,
        )?;
        gauge(
            &mut encoder,
            "run_in_progress",
            "1 while a run of the object is in progress",
            &all,
            |f| flag(f.running),
        )?;
        gauge(
            &mut encoder,
            "suspended",
            "1 while the object's spec.suspend is set",
            &all,
            |f| flag(f.suspended),
        )?;
        gauge(
            &mut encoder,
            "schedule_interval_seconds",
            "Seconds between the next two fires of the object's schedule",
            &all,
            |f| f.interval,
        )?;
        let mut family = encoder.encode_descriptor(
            "last_run_outcome",
            "1 for how the object's last finished run ended (outcome label)",
            None,
            MetricType::Gauge,
        )?;
        for f in &all {
            if let Some(outcome) = f.last_outcome {
                let labels = OutcomeLabels {
                    kind: f.labels.kind.clone(),
                    namespace: f.labels.namespace.clone(),
                    name: f.labels.name.clone(),
                    outcome: format!("{outcome:?}"),
                };
                ConstGauge::new(1.0).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RunSummary, TriggerKind};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn who() -> ObjectLabels {
        ObjectLabels {
            kind: "SyncSequence".into(),
            namespace: "revops".into(),
            name: "crm-hourly".into(),
        }
    }

    #[test]
    fn a_shard_exports_its_own_syncs_only() {
        use kube::runtime::{reflector::store::Writer, watcher::Event};
        let mut syncs = Writer::<Sync>::default();
        for (name, shard) in [("accounts", "a"), ("contacts", "b")] {
            let mut sync = crate::engine::fixtures::sync(name);
            sync.labels_mut()
                .insert("sharding.syncseq.dev/shard".into(), shard.into());
            syncs.apply_watcher_event(&Event::Apply(sync));
        }
        let objects = Objects::new(crate::metrics::Scope::default());
        objects.watch(Stores {
            sequences: Writer::<SyncSequence>::default().as_reader(),
            syncs: syncs.as_reader(),
            owns_sync: Box::new(|s| s.labels()["sharding.syncseq.dev/shard"] == "a"),
        });
        let names: Vec<String> = objects
            .all(at(0))
            .into_iter()
            .map(|f| f.labels.name)
            .collect();
        assert_eq!(names, ["accounts"]);
    }

    #[test]
    fn the_figures_come_from_the_run_book_and_the_schedule() {
        let scheduling = ScheduleSpec {
            schedule: Some("0 */2 * * *".into()),
            time_zone: Some("Europe/Berlin".into()),
            ..ScheduleSpec::default()
        };
        let book = RunBook {
            runs: vec![RunSummary {
                id: 7,
                scheduled_time: None,
                trigger: TriggerKind::Schedule,
                upstream: None,
                retry_of: None,
                phase: RunPhase::Failed,
                start_time: Time(at(0)),
                completion_time: Some(Time(at(90))),
                failed_step: Some("contacts".into()),
                message: None,
                succeeded_steps: None,
            }],
            ..RunBook::default()
        };
        let f = figures(
            who(),
            &scheduling,
            None,
            Some(&book),
            Some(at(-3600)),
            at(100),
        );
        assert_eq!(f.last_success, Some(1_800_000_000.0 - 3600.0));
        assert_eq!(f.last_outcome, Some(RunPhase::Failed));
        assert_eq!(f.last_duration, Some(90.0));
        assert_eq!(f.interval, Some(7200.0));
        assert!(!f.running && !f.suspended);
    }

    #[test]
    fn an_object_that_never_ran_or_has_a_bad_schedule_has_no_figures_to_lie_with() {
        let scheduling = ScheduleSpec {
            schedule: Some("not a schedule".into()),
            ..ScheduleSpec::default()
        };
        let f = figures(who(), &scheduling, None, None, None, at(0));
        assert_eq!(
            (f.last_success, f.last_outcome, f.last_duration, f.interval),
            (None, None, None, None)
        );
    }

    /// The aggregates count what the per-object alerts look at: a failed last run, and a
    /// scheduled, unsuspended object past `staleIntervals` of its intervals since its success.
    #[test]
    fn the_counts_by_namespace_say_what_the_per_object_alerts_would() {
        let object = |namespace: &str, name: &str| ObjectLabels {
            namespace: namespace.into(),
            name: name.into(),
            ..who()
        };
        let hourly = |name: &str, success: i64, suspended: bool| Figures {
            labels: object("revops", name),
            last_success: Some(1_800_000_000.0 + success as f64),
            last_outcome: Some(RunPhase::Succeeded),
            last_duration: None,
            running: false,
            suspended,
            interval: Some(3600.0),
        };
        let all = vec![
            // Just within 3 intervals, just past them, past them but suspended.
            hourly("fresh", -3 * 3600, false),
            hourly("stale", -3 * 3600 - 1, false),
            hourly("paused", -10 * 3600, true),
            Figures {
                last_outcome: Some(RunPhase::Failed),
                running: true,
                last_success: None,
                ..hourly("failing", 0, false)
            },
            Figures {
                labels: object("finance", "ledger"),
                interval: None,
                ..hourly("ledger", -10 * 3600, false)
            },
        ];
        let counts = counts(&all, 3.0, at(0));
        let of = |namespace: &str| {
            &counts[&NamespaceLabels {
                kind: "SyncSequence".into(),
                namespace: namespace.into(),
            }]
        };
        assert_eq!(
            of("revops"),
            &Counts {
                objects: 4,
                last_run_failed: 1,
                stale: 1,
                running: 1,
                suspended: 1,
            }
        );
        // Without a schedule nothing is stale.
        assert_eq!(of("finance").stale, 0);
        assert_eq!(counts.len(), 2);
    }
}
