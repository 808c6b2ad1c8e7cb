//! The dashboard's timeline, as numbers: each recent run a row, each step attempt a bar from its
//! Job's start to its completion on one time axis shared by the rows. Steps of a graph that run
//! at the same time go on lanes of their row, side by side. Pure: the page draws it, the tests
//! check it.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;

use crate::api::{RunPhase, RunStatus, StepPhase, labels};
use crate::engine::{JobOutcome, job_outcome};
use crate::plugin::target::Runnable;

/// At most this many runs are drawn, newest first.
pub(crate) const RUNS_SHOWN: usize = 10;

/// How a bar ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BarPhase {
    Running,
    Succeeded,
    Failed,
}

impl BarPhase {
    /// Said in words and with a sign, so that the phase reads without colour.
    pub(crate) fn label(self) -> &'static str {
        match self {
            BarPhase::Running => "▶ Running",
            BarPhase::Succeeded => "✓ Succeeded",
            BarPhase::Failed => "✗ Failed",
        }
    }

    pub(crate) fn class(self) -> &'static str {
        match self {
            BarPhase::Running => "running",
            BarPhase::Succeeded => "succeeded",
            BarPhase::Failed => "failed",
        }
    }
}

/// One step attempt: its Job, placed on the axis.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub step: String,
    pub attempt: i64,
    pub job: String,
    pub phase: BarPhase,
    pub start: Timestamp,
    /// None while it runs.
    pub end: Option<Timestamp>,
    /// Percent of the axis.
    pub left: f64,
    pub width: f64,
    /// Which lane of its row, from 0: bars that overlap in time are on different lanes.
    pub lane: usize,
    /// From status, for the runs status still holds with their steps.
    pub rows_synced: Option<i64>,
    pub rows_rejected: Option<i64>,
    pub message: Option<String>,
}

/// One run: a row of bars.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub run: i64,
    pub phase: Option<RunPhase>,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub message: Option<String>,
    pub bars: Vec<Bar>,
    /// How many lanes its bars take (at least 1).
    pub lanes: usize,
}

/// The rows and their shared axis, from `t0` to `t1`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timeline {
    pub t0: Timestamp,
    pub t1: Timestamp,
    pub rows: Vec<Row>,
}

/// What a Job says of itself, by its labels and status.
struct JobFacts {
    run: i64,
    step: String,
    attempt: i64,
    name: String,
    phase: BarPhase,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
}

fn facts(job: &Job) -> Option<JobFacts> {
    let l = job.metadata.labels.as_ref()?;
    let number = |k: &str| l.get(k).and_then(|v| v.parse::<i64>().ok());
    let status = job.status.as_ref();
    let (outcome, finished) = job_outcome(job);
    let phase = match outcome {
        JobOutcome::Active => BarPhase::Running,
        JobOutcome::Succeeded => BarPhase::Succeeded,
        JobOutcome::Failed { .. } => BarPhase::Failed,
    };
    let start = status
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0);
    let end = match phase {
        BarPhase::Running => None,
        _ => status
            .and_then(|s| s.completion_time.as_ref())
            .map(|t| t.0)
            .or(finished)
            .or(start),
    };
    Some(JobFacts {
        run: number(labels::RUN)?,
        step: l.get(labels::STEP)?.clone(),
        attempt: number(labels::ATTEMPT).unwrap_or(1),
        name: job.metadata.name.clone().unwrap_or_default(),
        phase,
        start,
        end,
    })
}

/// The step of a run status holds with its steps (the run in progress, the last finished one).
fn step_status<'a>(obj: &'a Runnable, run: i64, step: &str) -> Option<&'a crate::api::StepStatus> {
    [obj.book.current_run.as_deref(), obj.last_run.as_ref()]
        .into_iter()
        .flatten()
        .find(|r| r.id == run)
        .and_then(|r| r.steps.iter().find(|s| s.name == step))
}

/// The runs to draw, without their bars yet: the one in progress, then the finished ones,
/// newest first.
fn runs(obj: &Runnable) -> Vec<Row> {
    let current = obj
        .book
        .current_run
        .as_deref()
        .filter(|r| r.phase == RunPhase::Running)
        .map(|r: &RunStatus| Row {
            run: r.id,
            phase: Some(r.phase),
            start: Some(r.start_time.0),
            end: None,
            message: r.message.clone(),
            bars: Vec::new(),
            lanes: 1,
        });
    current
        .into_iter()
        .chain(obj.book.runs.iter().map(|r| Row {
            run: r.id,
            phase: Some(r.phase),
            start: Some(r.start_time.0),
            end: r.completion_time.as_ref().map(|t| t.0),
            message: r.message.clone(),
            bars: Vec::new(),
            lanes: 1,
        }))
        .take(RUNS_SHOWN)
        .collect()
}

/// Lays out the object's recent runs with the Jobs it owns (matched by owner UID), at `now`.
/// The axis ends a little after `now` when a run is in progress, so its bar has room to grow.
pub(crate) fn timeline(obj: &Runnable, jobs: &[Job], now: Timestamp) -> Timeline {
    let owned: Vec<JobFacts> = jobs
        .iter()
        .filter(|j| obj.owns(j))
        .filter_map(facts)
        .collect();
    let mut rows = runs(obj);
    let mut running = false;
    for row in &mut rows {
        let mut mine: Vec<&JobFacts> = owned.iter().filter(|j| j.run == row.run).collect();
        mine.sort_by_key(|j| (j.start, j.attempt));
        for j in mine {
            let Some(start) = j.start else { continue };
            running |= j.phase == BarPhase::Running;
            let status = step_status(obj, row.run, &j.step);
            // The latest attempt's rows and message are status's; earlier ones failed.
            let latest = status.is_some_and(|s| i64::from(s.attempts) == j.attempt);
            row.bars.push(Bar {
                step: j.step.clone(),
                attempt: j.attempt,
                job: j.name.clone(),
                phase: j.phase,
                start,
                end: j.end,
                left: 0.0,
                width: 0.0,
                lane: 0,
                rows_synced: status.filter(|_| latest).and_then(|s| s.rows_synced),
                rows_rejected: status.filter(|_| latest).and_then(|s| s.rows_rejected),
                message: status
                    .filter(|s| latest || s.phase == StepPhase::Failed)
                    .and_then(|s| s.message.clone()),
            });
        }
    }
    let starts = rows
        .iter()
        .flat_map(|r| r.start.into_iter().chain(r.bars.iter().map(|b| b.start)));
    let t0 = starts.min().unwrap_or(now);
    let ends = rows.iter().flat_map(|r| {
        r.end
            .into_iter()
            .chain(r.bars.iter().map(|b| b.end.unwrap_or(now)))
    });
    let mut t1 = ends
        .max()
        .unwrap_or(now)
        .max(if running { now } else { t0 });
    if running {
        // Room to grow: a tenth of the span, at least a minute.
        let span = t1.duration_since(t0);
        t1 += (span / 10).max(SignedDuration::from_secs(60));
    }
    if t1 <= t0 {
        t1 = t0 + SignedDuration::from_secs(1);
    }
    let total = t1.duration_since(t0).as_secs_f64();
    let at = |t: Timestamp| (t.duration_since(t0).as_secs_f64() / total * 100.0).clamp(0.0, 100.0);
    for row in &mut rows {
        let spans: Vec<(Timestamp, Timestamp)> = row
            .bars
            .iter()
            .map(|b| (b.start, b.end.unwrap_or(now)))
            .collect();
        let lanes = lanes(&spans);
        row.lanes = lanes.iter().max().map_or(1, |l| l + 1);
        for (bar, lane) in row.bars.iter_mut().zip(lanes) {
            bar.lane = lane;
            bar.left = at(bar.start);
            // Never thinner than a hairline, so a step of 300 ms is still there to point at.
            bar.width = (at(bar.end.unwrap_or(now)) - bar.left).max(0.4);
        }
    }
    Timeline { t0, t1, rows }
}

/// A lane for each interval `(start, end)`: taken in order of start, each goes on the lowest
/// lane whose last interval ended by its start. Intervals that overlap are on different lanes,
/// one that starts as another ends may share its lane, so a linear run (and a step's retries)
/// stays on lane 0, one bar after another.
pub(crate) fn lanes(spans: &[(Timestamp, Timestamp)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans[i].0);
    let mut lane_ends: Vec<Timestamp> = Vec::new();
    let mut out = vec![0; spans.len()];
    for i in order {
        let (start, end) = spans[i];
        let lane = match lane_ends.iter().position(|&e| e <= start) {
            Some(free) => free,
            None => {
                lane_ends.push(end);
                lane_ends.len() - 1
            }
        };
        lane_ends[lane] = end;
        out[i] = lane;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RunBook, RunSummary, StepStatus, TriggerKind};
    use crate::plugin::fixtures;
    use crate::plugin::target::{Kind, Target};
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn job(run: i64, step: &str, attempt: i64, start: &str, end: Option<(&str, bool)>) -> Job {
        let labels = [
            (labels::RUN, run.to_string()),
            (labels::STEP, step.to_string()),
            (labels::ATTEMPT, attempt.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let (conditions, completion) = match end {
            Some((at, ok)) => (
                Some(vec![JobCondition {
                    type_: if ok { "Complete" } else { "Failed" }.into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(t(at))),
                    ..Default::default()
                }]),
                ok.then(|| Time(t(at))),
            ),
            None => (None, None),
        };
        Job {
            metadata: ObjectMeta {
                name: Some(format!("crm-{run}-{step}-{attempt}")),
                labels: Some(labels),
                owner_references: Some(vec![OwnerReference {
                    uid: "uid-crm".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            status: Some(JobStatus {
                start_time: Some(Time(t(start))),
                completion_time: completion,
                conditions,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sequence(book: RunBook, last_run: Option<RunStatus>) -> Runnable {
        let mut obj = Runnable::unreadable(
            Kind::SyncSequence,
            &crate::api::Unreadable {
                metadata: ObjectMeta::default(),
                error: String::new(),
                conditions: Vec::new(),
            },
        );
        obj.target = Target {
            kind: Kind::SyncSequence,
            name: "crm".into(),
        };
        obj.uid = Some("uid-crm".into());
        obj.unreadable = None;
        obj.book = book;
        obj.last_run = last_run;
        obj
    }

    fn step(name: &str, phase: StepPhase, attempts: i32, message: Option<&str>) -> StepStatus {
        StepStatus {
            attempts,
            rows_synced: Some(10),
            rows_rejected: Some(1),
            message: message.map(String::from),
            ..fixtures::step(name, phase)
        }
    }

    fn summary(id: i64, phase: RunPhase, start: &str, end: &str) -> RunSummary {
        RunSummary {
            id,
            scheduled_time: None,
            trigger: TriggerKind::Manual,
            upstream: None,
            retry_of: None,
            phase,
            start_time: Time(t(start)),
            completion_time: Some(Time(t(end))),
            failed_step: None,
            message: None,
            succeeded_steps: None,
        }
    }

    #[test]
    fn runs_share_one_axis_and_a_failed_step_keeps_its_message() {
        let last = RunStatus {
            id: 1,
            trigger: TriggerKind::Manual,
            scheduled_time: None,
            upstream: None,
            retry_of: None,
            start_time: Time(t("2026-12-01T10:00:00Z")),
            completion_time: Some(Time(t("2026-12-01T10:00:40Z"))),
            phase: RunPhase::Failed,
            stopped_by: None,
            progress: "2/3".into(),
            steps: vec![
                step("accounts", StepPhase::Succeeded, 1, Some("ok")),
                step("workspaces", StepPhase::Failed, 2, Some("CRM API said 503")),
            ],
            message: None,
        };
        let book = RunBook {
            runs: vec![summary(
                1,
                RunPhase::Failed,
                "2026-12-01T10:00:00Z",
                "2026-12-01T10:00:40Z",
            )],
            ..Default::default()
        };
        let obj = sequence(book, Some(last));
        let jobs = [
            job(
                1,
                "accounts",
                1,
                "2026-12-01T10:00:00Z",
                Some(("2026-12-01T10:00:10Z", true)),
            ),
            job(
                1,
                "workspaces",
                1,
                "2026-12-01T10:00:10Z",
                Some(("2026-12-01T10:00:20Z", false)),
            ),
            job(
                1,
                "workspaces",
                2,
                "2026-12-01T10:00:30Z",
                Some(("2026-12-01T10:00:40Z", false)),
            ),
        ];
        let tl = timeline(&obj, &jobs, t("2026-12-01T11:00:00Z"));
        assert_eq!(
            (tl.t0, tl.t1),
            (t("2026-12-01T10:00:00Z"), t("2026-12-01T10:00:40Z"))
        );
        let bars = &tl.rows[0].bars;
        assert_eq!(
            bars.iter()
                .map(|b| (b.step.as_str(), b.attempt, b.phase, b.left, b.width))
                .collect::<Vec<_>>(),
            [
                ("accounts", 1, BarPhase::Succeeded, 0.0, 25.0),
                ("workspaces", 1, BarPhase::Failed, 25.0, 25.0),
                ("workspaces", 2, BarPhase::Failed, 75.0, 25.0),
            ]
        );
        assert!(
            bars.iter().all(|b| b.lane == 0) && tl.rows[0].lanes == 1,
            "a linear run is one lane, one bar after another"
        );
        assert_eq!(bars[2].message.as_deref(), Some("CRM API said 503"));
        assert_eq!(bars[2].rows_synced, Some(10), "the latest attempt's rows");
        assert_eq!(
            bars[1].rows_synced, None,
            "an earlier attempt has none of its own"
        );
    }

    #[test]
    fn overlapping_intervals_go_on_different_lanes() {
        // Seconds after 10:00 for (start, end).
        let at = |s: i64| t("2026-12-01T10:00:00Z") + SignedDuration::from_secs(s);
        /// What, the intervals, the lanes expected.
        type Case = (&'static str, &'static [(i64, i64)], &'static [usize]);
        let cases: [Case; 7] = [
            ("none", &[], &[]),
            (
                "a line, each starting as the one before ends",
                &[(0, 10), (10, 20), (20, 30)],
                &[0, 0, 0],
            ),
            ("a line with gaps", &[(0, 5), (8, 9), (30, 40)], &[0, 0, 0]),
            (
                "a diamond",
                &[(0, 10), (10, 25), (10, 18), (25, 30)],
                &[0, 0, 1, 0],
            ),
            (
                "a second root beside the first",
                &[(0, 10), (0, 40), (10, 20)],
                &[0, 1, 0],
            ),
            (
                "three at once, a lane freed in between",
                &[(0, 30), (1, 5), (2, 20), (6, 8)],
                &[0, 1, 2, 1],
            ),
            (
                "given out of order",
                &[(10, 20), (0, 15), (0, 5)],
                &[1, 0, 1],
            ),
        ];
        for (what, spans, want) in cases {
            let spans: Vec<(Timestamp, Timestamp)> =
                spans.iter().map(|&(a, b)| (at(a), at(b))).collect();
            let got = lanes(&spans);
            assert_eq!(got, want, "{what}");
            // Whatever the order: no two intervals that overlap share a lane.
            for (i, a) in spans.iter().enumerate() {
                for (j, b) in spans.iter().enumerate().skip(i + 1) {
                    if a.0 < b.1 && b.0 < a.1 {
                        assert_ne!(got[i], got[j], "{what}: {i} and {j} overlap");
                    }
                }
            }
        }
    }

    #[test]
    fn parallel_steps_of_a_graph_run_are_drawn_side_by_side() {
        let obj = sequence(
            RunBook {
                runs: vec![summary(
                    3,
                    RunPhase::Succeeded,
                    "2026-12-01T10:00:00Z",
                    "2026-12-01T10:00:40Z",
                )],
                ..Default::default()
            },
            None,
        );
        let done = |step: &str, start: &str, end: &str| job(3, step, 1, start, Some((end, true)));
        let jobs = [
            done("accounts", "2026-12-01T10:00:00Z", "2026-12-01T10:00:10Z"),
            done("audit", "2026-12-01T10:00:00Z", "2026-12-01T10:00:30Z"),
            done("workspaces", "2026-12-01T10:00:10Z", "2026-12-01T10:00:20Z"),
            done("deals", "2026-12-01T10:00:10Z", "2026-12-01T10:00:25Z"),
            done("contacts", "2026-12-01T10:00:25Z", "2026-12-01T10:00:40Z"),
        ];
        let tl = timeline(&obj, &jobs, t("2026-12-01T11:00:00Z"));
        let row = &tl.rows[0];
        let lane = |step: &str| row.bars.iter().find(|b| b.step == step).unwrap().lane;
        assert_eq!(row.lanes, 3, "{row:?}");
        assert_ne!(lane("workspaces"), lane("deals"));
        assert_ne!(lane("accounts"), lane("audit"));
        assert_ne!(lane("deals"), lane("audit"));
        assert_ne!(lane("workspaces"), lane("audit"));
        // The join starts when the last parent ended: it may reuse any lane freed by then.
        assert!(row.bars.iter().all(|b| b.lane < row.lanes));
    }

    #[test]
    fn a_running_step_grows_into_room_at_the_end_of_the_axis() {
        let current = RunStatus {
            id: 2,
            trigger: TriggerKind::Schedule,
            scheduled_time: None,
            upstream: None,
            retry_of: None,
            start_time: Time(t("2026-12-01T10:00:00Z")),
            completion_time: None,
            phase: RunPhase::Running,
            stopped_by: None,
            progress: "1/3".into(),
            steps: vec![step("accounts", StepPhase::Running, 1, None)],
            message: None,
        };
        let obj = sequence(
            RunBook {
                current_run: Some(Box::new(current)),
                ..Default::default()
            },
            None,
        );
        let jobs = [job(2, "accounts", 1, "2026-12-01T10:00:00Z", None)];
        let tl = timeline(&obj, &jobs, t("2026-12-01T10:01:00Z"));
        assert_eq!(tl.t1, t("2026-12-01T10:02:00Z"), "a minute of room");
        let bar = &tl.rows[0].bars[0];
        assert_eq!(
            (bar.phase, bar.end, bar.width),
            (BarPhase::Running, None, 50.0)
        );
    }

    #[test]
    fn jobs_of_another_owner_and_an_object_without_runs_draw_nothing() {
        let obj = sequence(RunBook::default(), None);
        let mut stranger = job(1, "accounts", 1, "2026-12-01T10:00:00Z", None);
        stranger.metadata.owner_references = None;
        let tl = timeline(&obj, &[stranger], t("2026-12-01T10:00:00Z"));
        assert!(tl.rows.is_empty());
        assert!(tl.t1 > tl.t0);
    }
}
