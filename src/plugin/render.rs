//! Human output of the plugin: the step timeline of a run, the run history and the progress
//! lines printed while waiting. Pure functions of the object and the time now.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::graph;
use super::target::Runnable;
use crate::api::{
    BackfillPhase, BackfillStatus, RunPhase, RunStatus, Step, StepPhase, StepStatus, SyncRunRecord,
    TriggerKind, UpstreamRun,
};

/// A duration as people read it: `0.4s`, `2.1s`, `3s`, `1m05s`, `1h02m03s`, `2d03h04m`.
/// Under a minute, tenths of a second show when there are any (status times are to the second,
/// so most step durations are whole seconds). Negative durations (clock skew) show as zero.
pub(crate) fn duration(d: SignedDuration) -> String {
    let millis = d.as_millis().max(0);
    let tenths = (millis + 50) / 100;
    if tenths < 600 {
        return match tenths % 10 {
            0 => format!("{}s", tenths / 10),
            t => format!("{}.{t}s", tenths / 10),
        };
    }
    let secs = (millis + 500) / 1000;
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}

/// A time in UTC to the second: `2026-05-01T10:00:00Z`.
pub(crate) fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn between(from: &Time, to: Timestamp) -> SignedDuration {
    to.duration_since(from.0)
}

/// How long something took, or has been going on for when it has not ended.
fn span(start: Option<&Time>, end: Option<&Time>, now: Timestamp) -> Option<SignedDuration> {
    let start = start?;
    Some(between(start, end.map_or(now, |e| e.0)))
}

/// Columns left-aligned, separated by three spaces, the last one unpadded (as `kubectl get`).
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Text as it may reach a terminal. Status can be written by anyone allowed to write it, so
/// control characters (escape sequences that rewrite the screen or the title) and bidi
/// overrides are dropped, as the controller drops them; line breaks stay.
pub(crate) fn terminal_safe(text: &str) -> String {
    text.split('\n')
        .map(crate::text::printable)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

fn trigger(
    kind: TriggerKind,
    scheduled: Option<&Time>,
    upstream: Option<&UpstreamRun>,
    retry_of: Option<i64>,
) -> String {
    match (scheduled, upstream, retry_of) {
        (Some(t), ..) => format!("{kind:?} for {}", time(t.0)),
        (None, Some(up), _) => format!("{kind:?}: {up}"),
        (None, None, Some(n)) if kind == TriggerKind::Retry => format!("retry of run {n}"),
        (None, None, _) => format!("{kind:?}"),
    }
}

/// When the schedule fires next, or why it does not.
pub(crate) fn next_schedule(obj: &Runnable, now: Timestamp) -> String {
    if obj.unreadable.is_some() {
        return "-".into();
    }
    // nextScheduleTime is the nominal fire time; with jitter the run starts the object's
    // offset later, and that start is what "in" and "due" are about.
    let jitter = crate::schedule::jitter_offset(
        obj.uid.as_deref().unwrap_or_default(),
        obj.scheduling.jitter_seconds.unwrap_or(0),
    );
    let shown = |t: Timestamp| match jitter.is_zero() {
        true => time(t),
        false => format!("{} +{} jitter", time(t), duration(jitter)),
    };
    let start = |t: Timestamp| t.checked_add(jitter).unwrap_or(t);
    match obj.schedule.next_schedule_time.as_ref() {
        Some(t) if start(t.0) > now => format!(
            "{} (in {})",
            shown(t.0),
            duration(start(t.0).duration_since(now))
        ),
        Some(t) => format!("{} (due)", shown(t.0)),
        None if obj.scheduling.suspend => "none (suspended)".into(),
        None if schedule_stopped(obj) => format!(
            "none (stopped after {} failed runs in a row; `kubectl syncseq resume` restarts it)",
            obj.book.failure_streak.as_ref().map_or(0, |s| s.count)
        ),
        None if obj.scheduling.schedule.is_none() && obj.scheduling.schedules.is_none() => {
            match &obj.scheduling.after {
                Some(after) => {
                    let ups: Vec<String> =
                        after.upstreams.iter().map(ToString::to_string).collect();
                    format!("none (runs after {})", ups.join(", "))
                }
                None => "none (manual only)".into(),
            }
        }
        None => "none".into(),
    }
}

/// Whether the controller stopped the schedule after failed runs in a row: its
/// `ScheduleStopped` condition is True.
fn schedule_stopped(obj: &Runnable) -> bool {
    let conditions = obj.status.get("conditions").and_then(|c| c.as_array());
    conditions.into_iter().flatten().any(|c| {
        c.get("type").and_then(|t| t.as_str()) == Some(crate::engine::conditions::SCHEDULE_STOPPED)
            && c.get("status").and_then(|s| s.as_str()) == Some("True")
    })
}

/// The header line of a run: id, trigger, phase, progress and timing.
fn run_header(run: &RunStatus, now: Timestamp) -> String {
    let timing = match &run.completion_time {
        Some(end) => format!(
            "started {}  took {}",
            time(run.start_time.0),
            duration(end.0.duration_since(run.start_time.0))
        ),
        None => format!(
            "started {} ({} ago)",
            time(run.start_time.0),
            duration(between(&run.start_time, now))
        ),
    };
    format!(
        "Run {} ({})  {:?}  step {}  {timing}",
        run.id,
        trigger(
            run.trigger,
            run.scheduled_time.as_ref(),
            run.upstream.as_ref(),
            run.retry_of
        ),
        run.phase,
        run.progress
    )
}

/// One line per step, in order: the steps it waits for (a sequence's, from `spec`; a Sync's
/// one step has none, and no such column), phase, start offset in the run, duration (elapsed
/// for a step still going), rows, Job and message, with a Skipped step's reason and where a
/// reused step's result comes from.
pub(crate) fn steps_table(run: &RunStatus, spec: &[Step], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = run
        .steps
        .iter()
        .map(|s| {
            // A reused step's times are those of the run it comes from: no offset in this one.
            let offset = s
                .start_time
                .as_ref()
                .filter(|_| s.reused_from.is_none())
                .map(|t| format!("+{}", duration(t.0.duration_since(run.start_time.0))));
            let took = span(s.start_time.as_ref(), s.completion_time.as_ref(), now).map(duration);
            let mut row = vec![s.name.clone()];
            if !spec.is_empty() {
                row.push(graph::after(spec, &s.name));
            }
            row.extend([
                phase_with_attempts(s),
                or_dash(offset),
                or_dash(took),
                or_dash(s.rows_synced.map(|r| r.to_string())),
                or_dash(s.rows_rejected.map(|r| r.to_string())),
                or_dash(s.job_name.clone()),
                step_message(s),
            ]);
            row
        })
        .collect();
    let mut header = vec!["STEP"];
    if !spec.is_empty() {
        header.push("AFTER");
    }
    header.extend([
        "PHASE", "START", "DURATION", "SYNCED", "REJECTED", "JOB", "MESSAGE",
    ]);
    table(&header, &rows)
}

/// A step's message on one line: `reused from run N` first for a reused step, a Skipped
/// step's reason after it.
fn step_message(s: &StepStatus) -> String {
    let mut parts = Vec::new();
    if let Some(n) = s.reused_from {
        parts.push(format!("reused from run {n}"));
    }
    parts.extend(s.message.as_deref().map(one_line));
    let mut text = parts.join("; ");
    if let Some(reason) = s
        .reason
        .as_deref()
        .filter(|_| s.phase == StepPhase::Skipped)
    {
        if text.is_empty() {
            text = format!("({reason})");
        } else {
            text.push_str(&format!(" ({reason})"));
        }
    }
    text
}

fn phase_with_attempts(s: &StepStatus) -> String {
    if s.attempts > 1 {
        format!("{:?} ({} attempts)", s.phase, s.attempts)
    } else {
        format!("{:?}", s.phase)
    }
}

/// A run as a timeline: the header line, the steps table (with each step's parents from
/// `spec`, see [`steps_table`]) and the run's message.
pub(crate) fn run_timeline(
    run: &RunStatus,
    spec: &[Step],
    next_schedule: Option<&str>,
    now: Timestamp,
) -> String {
    let mut out = run_header(run, now);
    if let Some(next) = next_schedule {
        out.push_str(&format!("  next schedule: {next}"));
    }
    out.push('\n');
    out.push_str(&steps_table(run, spec, now));
    if let Some(m) = &run.message {
        out.push_str(&format!("Message: {}\n", one_line(m)));
    }
    out
}

/// `kubectl syncseq status`: the current run, else the last finished one (saying so); for a
/// Sync, else its last Job (which a sequence may have started), and what holds it.
pub(crate) fn status(obj: &Runnable, now: Timestamp) -> String {
    let next = next_schedule(obj, now);
    let current = obj
        .book
        .current_run
        .as_ref()
        .filter(|r| !r.phase.is_finished());
    let mut out = String::new();
    match (
        current,
        obj.last_run.as_ref().or(obj.book.current_run.as_deref()),
        &obj.last_job,
    ) {
        (Some(run), ..) => out.push_str(&run_timeline(run, &obj.steps, Some(&next), now)),
        (None, Some(run), _) => {
            out.push_str("No run in progress; the last finished run:\n");
            out.push_str(&run_timeline(run, &obj.steps, Some(&next), now));
        }
        (None, None, Some(job)) => {
            out.push_str(&format!("Last run  next schedule: {next}\n"));
            out.push_str(&sync_job_table(job, now));
        }
        (None, None, None) => out.push_str(&format!(
            "{} has not run yet  next schedule: {next}\n",
            obj.target.reference()
        )),
    }
    // A claim outlives its Job; it holds the Sync while that Job runs.
    let running_job = obj
        .last_job
        .as_ref()
        .filter(|j| j.outcome == Some(StepPhase::Running));
    if let Some(claim) = &obj.claim
        && current.is_none()
        && running_job.is_some_and(|j| j.job_name == claim.job)
    {
        out.push_str(&format!(
            "Held by: {} (Job {})\n",
            one_line(&claim.by),
            claim.job
        ));
    }
    if let Some(q) = &obj.book.queued_run {
        let what = match (q.trigger, q.retry_of) {
            (TriggerKind::Retry, Some(n)) => format!("retry of run {n}"),
            _ => format!(
                "{} run",
                trigger(
                    q.trigger,
                    q.scheduled_time.as_ref(),
                    q.upstream.as_ref(),
                    None
                )
            ),
        };
        out.push_str(&format!("Queued: a {what} starts when this one ends\n"));
    }
    if let Some(bf) = &obj.book.backfill {
        out.push_str(&backfill(bf, now));
    }
    out
}

/// The newest backfill after its phase, on one line: runs done of its fire times, its range,
/// the next fire time, its run in progress, the runs that did not succeed, and its timing.
pub(crate) fn backfill_facts(bf: &BackfillStatus, now: Timestamp) -> String {
    let mut parts = Vec::new();
    if bf.phase != BackfillPhase::Refused {
        parts.push(format!("{} runs done", bf.progress));
    }
    if let (Some(from), Some(to)) = (&bf.from, &bf.to) {
        parts.push(format!("{} → {}", from.0, to.0));
    }
    if let Some(next) = &bf.next_time {
        parts.push(format!("next fire time {}", time(next.0)));
    }
    if let Some(run) = bf.run {
        parts.push(format!("run {run} in progress"));
    }
    if !bf.failed_runs.is_empty() {
        let runs: Vec<String> = bf.failed_runs.iter().map(ToString::to_string).collect();
        parts.push(format!("failed runs {}", runs.join(", ")));
    }
    parts.push(match &bf.completion_time {
        Some(end) => format!("ended {}", time(end.0)),
        None => format!("started {} ago", duration(between(&bf.start_time, now))),
    });
    parts.join("  ")
}

/// The `Backfill:` line of `status`, with its message on the next.
pub(crate) fn backfill(bf: &BackfillStatus, now: Timestamp) -> String {
    let mut out = format!("Backfill: {:?}  {}\n", bf.phase, backfill_facts(bf, now));
    if let Some(m) = &bf.message {
        out.push_str(&format!("  {}\n", one_line(m)));
    }
    out
}

/// A Sync's last Job as a one-row table: who started it, its outcome, timing and rows.
fn sync_job_table(job: &SyncRunRecord, now: Timestamp) -> String {
    let by = match (&job.sequence_run, job.trigger) {
        (Some(seq_run), _) => format!("sequence {seq_run}"),
        (None, Some(kind)) => format!("{kind:?}"),
        (None, None) => "-".into(),
    };
    let row = vec![
        job.job_name.clone(),
        by,
        or_dash(job.outcome.map(|o| format!("{o:?}"))),
        or_dash(job.start_time.as_ref().map(|t| time(t.0))),
        or_dash(span(job.start_time.as_ref(), job.completion_time.as_ref(), now).map(duration)),
        or_dash(job.rows_synced.map(|r| r.to_string())),
        or_dash(job.rows_rejected.map(|r| r.to_string())),
        job.message.as_deref().map(one_line).unwrap_or_default(),
    ];
    table(
        &[
            "JOB",
            "STARTED BY",
            "OUTCOME",
            "STARTED",
            "DURATION",
            "SYNCED",
            "REJECTED",
            "MESSAGE",
        ],
        &[row],
    )
}

/// What an object is doing now, for the overview: its run in progress, or who holds a Sync,
/// and its backfill in progress.
fn activity(obj: &Runnable) -> String {
    if let Some(why) = &obj.unreadable {
        return format!("cannot read it: {why}");
    }
    let doing = running(obj);
    match obj
        .book
        .backfill
        .as_deref()
        .filter(|b| b.phase == BackfillPhase::Running)
    {
        Some(bf) if doing == "-" => format!("backfill {}", bf.progress),
        Some(bf) => format!("{doing}; backfill {}", bf.progress),
        None => doing,
    }
}

/// The run in progress of [`activity`], or who holds a Sync.
fn running(obj: &Runnable) -> String {
    if let Some(run) = obj
        .book
        .current_run
        .as_ref()
        .filter(|r| r.phase == RunPhase::Running)
    {
        // Every step under way: branches of a graph run side by side.
        let steps: Vec<String> = run
            .steps
            .iter()
            .filter(|s| !s.phase.is_final() && s.phase != StepPhase::Pending)
            .map(|s| format!("{} {:?}", s.name, s.phase))
            .collect();
        let steps = match steps.is_empty() {
            true => String::new(),
            false => format!(" {}", steps.join(", ")),
        };
        return format!("run {} ({}){steps}", run.id, run.progress);
    }
    match &obj.last_job {
        Some(job) if job.outcome == Some(StepPhase::Running) => match &job.sequence_run {
            Some(seq_run) => format!("in sequence {seq_run}"),
            None => "running".into(),
        },
        _ => "-".into(),
    }
}

/// The last result: a sequence's last finished run; a Sync's last Job, whoever started it.
fn last_result(obj: &Runnable) -> String {
    if obj.unreadable.is_some() {
        return "Unreadable".into();
    }
    let job = obj
        .last_job
        .as_ref()
        .and_then(|j| j.outcome.filter(|o| o.is_final()).map(|o| format!("{o:?}")));
    or_dash(job.or(obj.book.last_run_result.map(|p| format!("{p:?}"))))
}

/// One line of `kubectl syncseq status` without a name.
pub(crate) fn overview_row(obj: &Runnable, with_namespace: bool, now: Timestamp) -> Vec<String> {
    let mut row = Vec::new();
    if with_namespace {
        row.push(obj.namespace.clone());
    }
    row.push(format!("{}/{}", obj.target.kind.short(), obj.target.name));
    row.push(last_result(obj));
    row.push(or_dash(
        obj.last_success
            .as_ref()
            .map(|t| format!("{} ago", duration(between(t, now)))),
    ));
    row.push(activity(obj));
    row.push(next_schedule(obj, now));
    row
}

/// The overview table of [`overview_row`]s.
pub(crate) fn overview_table(rows: &[Vec<String>], with_namespace: bool) -> String {
    let mut header = vec![];
    if with_namespace {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "LAST RESULT",
        "LAST SUCCESS",
        "NOW",
        "NEXT SCHEDULE",
    ]);
    table(&header, rows)
}

/// The first failed step of a run, for the history's FAILED STEP column.
fn failed_step(run: &RunStatus) -> Option<String> {
    run.steps
        .iter()
        .find(|s| s.phase == StepPhase::Failed)
        .map(|s| s.name.clone())
}

/// `kubectl syncseq history`: the run in progress, if any, then the finished runs, newest
/// first. None when the sequence has never run.
pub(crate) fn history(obj: &Runnable, now: Timestamp) -> Option<String> {
    let st = obj;
    let mut rows = Vec::new();
    if let Some(run) = st
        .book
        .current_run
        .as_ref()
        .filter(|r| r.phase == RunPhase::Running)
    {
        rows.push(vec![
            run.id.to_string(),
            trigger(run.trigger, None, run.upstream.as_ref(), run.retry_of),
            format!("{:?} ({})", run.phase, run.progress),
            time(run.start_time.0),
            duration(between(&run.start_time, now)),
            or_dash(failed_step(run)),
            run.message.as_deref().map(one_line).unwrap_or_default(),
        ]);
    }
    for r in &st.book.runs {
        rows.push(vec![
            r.id.to_string(),
            trigger(r.trigger, None, r.upstream.as_ref(), r.retry_of),
            format!("{:?}", r.phase),
            time(r.start_time.0),
            or_dash(span(Some(&r.start_time), r.completion_time.as_ref(), now).map(duration)),
            or_dash(r.failed_step.clone()),
            r.message.as_deref().map(one_line).unwrap_or_default(),
        ]);
    }
    if rows.is_empty() {
        return None;
    }
    Some(table(
        &[
            "ID",
            "TRIGGER",
            "PHASE",
            "STARTED",
            "DURATION",
            "FAILED STEP",
            "MESSAGE",
        ],
        &rows,
    ))
}

/// Progress lines while waiting: one per step whose phase changed since the last status seen
/// (`prev`, the same run earlier, or None for the first sight of it).
pub(crate) fn step_changes(
    prev: Option<&RunStatus>,
    run: &RunStatus,
    now: Timestamp,
) -> Vec<String> {
    run.steps
        .iter()
        .filter(|s| {
            let before = prev
                .and_then(|p| p.steps.iter().find(|o| o.name == s.name))
                .map(|o| (o.phase, o.attempts));
            before != Some((s.phase, s.attempts)) && s.phase != StepPhase::Pending
        })
        .map(|s| {
            let mut line = format!("run {}: step {} {}", run.id, s.name, phase_with_attempts(s));
            if s.phase.is_final()
                && let Some(d) = span(s.start_time.as_ref(), s.completion_time.as_ref(), now)
            {
                line.push_str(&format!(" after {}", duration(d)));
            }
            if let Some(rows) = s.rows_synced {
                line.push_str(&format!(
                    ", {rows} rows synced, {} rejected",
                    s.rows_rejected.unwrap_or(0)
                ));
            }
            if let Some(m) = &s.message {
                line.push_str(&format!(": {}", one_line(m)));
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        FailureStreak, QueuedRun, RunBook, RunSummary, ScheduleSpec, ScheduleStatus, Step, SyncRef,
        SyncSequence, SyncSequenceSpec, SyncSequenceStatus,
    };
    use crate::plugin::fixtures::step;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn time_at(s: &str) -> Time {
        Time(t(s))
    }

    fn seq(schedule: Option<&str>, suspend: bool, status: SyncSequenceStatus) -> Runnable {
        let mut seq = SyncSequence::new(
            "crm",
            SyncSequenceSpec {
                scheduling: ScheduleSpec {
                    schedule: schedule.map(Into::into),
                    suspend,
                    ..Default::default()
                },
                concurrency_policy: Default::default(),
                history_limit: 10,
                steps: ["accounts", "workspaces", "contacts"]
                    .into_iter()
                    .map(|n| Step {
                        name: n.into(),
                        sync_ref: SyncRef { name: n.into() },
                        depends_on: None,
                        run_when: Default::default(),
                        on_failure: Default::default(),
                        rejected_rows: None,
                        retries: 0,
                        retry_delay_seconds: 10,
                        timeout_seconds: None,
                    })
                    .collect(),
                max_parallel: None,
                fail_fast: false,
                alerts: vec![],
            },
        );
        seq.metadata.namespace = Some("revops".into());
        seq.status = Some(status);
        Runnable::from(&seq)
    }

    fn done(
        name: &str,
        phase: StepPhase,
        start: &str,
        end: &str,
        rows: (i64, i64),
        message: Option<&str>,
    ) -> StepStatus {
        StepStatus {
            job_name: Some(format!("crm-4-{name}-1a2b3")),
            attempts: 1,
            start_time: Some(time_at(start)),
            completion_time: Some(time_at(end)),
            rows_synced: Some(rows.0),
            rows_rejected: Some(rows.1),
            message: message.map(Into::into),
            ..step(name, phase)
        }
    }

    fn running_run() -> RunStatus {
        RunStatus {
            id: 4,
            trigger: TriggerKind::Manual,
            retry_of: None,
            upstream: None,
            scheduled_time: None,
            start_time: time_at("2026-05-01T10:00:00Z"),
            completion_time: None,
            phase: RunPhase::Running,
            stopped_by: None,
            progress: "2/3".into(),
            steps: vec![
                done(
                    "accounts",
                    StepPhase::Succeeded,
                    "2026-05-01T10:00:00.2Z",
                    "2026-05-01T10:00:02.3Z",
                    (1200, 0),
                    None,
                ),
                StepStatus {
                    job_name: Some("crm-4-workspaces-9f8e7".into()),
                    attempts: 1,
                    start_time: Some(time_at("2026-05-01T10:00:02.5Z")),
                    ..step("workspaces", StepPhase::Running)
                },
                step("contacts", StepPhase::Pending),
            ],
            message: None,
        }
    }

    fn finished_run() -> RunStatus {
        RunStatus {
            id: 3,
            trigger: TriggerKind::Schedule,
            retry_of: None,
            upstream: None,
            scheduled_time: Some(time_at("2026-05-01T09:00:00Z")),
            start_time: time_at("2026-05-01T09:00:00.4Z"),
            completion_time: Some(time_at("2026-05-01T09:01:10Z")),
            phase: RunPhase::Failed,
            stopped_by: None,
            progress: "2/3".into(),
            steps: vec![
                done(
                    "accounts",
                    StepPhase::Succeeded,
                    "2026-05-01T09:00:00.5Z",
                    "2026-05-01T09:00:03Z",
                    (1200, 0),
                    None,
                ),
                StepStatus {
                    attempts: 3,
                    ..done(
                        "workspaces",
                        StepPhase::Failed,
                        "2026-05-01T09:00:03.2Z",
                        "2026-05-01T09:01:10Z",
                        (340, 2),
                        Some("CRM API said 400:\nowner missing"),
                    )
                },
                StepStatus {
                    message: Some("skipped: step workspaces failed".into()),
                    reason: Some("UpstreamFailed".into()),
                    ..step("contacts", StepPhase::Skipped)
                },
            ],
            message: Some("step workspaces failed".into()),
        }
    }

    #[test]
    fn output_drops_escape_sequences_and_bidi_overrides_but_keeps_lines() {
        let hostile = "step\u{1b}]0;owned\u{7}\u{1b}[2J ok\r\nnext \u{202e}gnp.exe\n";
        assert_eq!(
            terminal_safe(hostile),
            "step]0;owned[2J ok \nnext gnp.exe\n"
        );
        let mut run = finished_run();
        run.steps[1].message = Some("bad\u{1b}[31m red".into());
        let out = terminal_safe(&run_timeline(&run, &[], None, t("2026-05-01T09:05:00Z")));
        assert!(
            !out.contains('\u{1b}') && out.contains("bad[31m red"),
            "{out}"
        );
    }

    #[test]
    fn durations_read_like_kubectl() {
        let d = |ms: i64| duration(SignedDuration::from_millis(ms));
        assert_eq!(d(0), "0s");
        assert_eq!(d(3_000), "3s");
        assert_eq!(d(2_960), "3s");
        assert_eq!(d(420), "0.4s");
        assert_eq!(d(2_149), "2.1s");
        assert_eq!(d(59_940), "59.9s");
        assert_eq!(d(59_960), "1m00s");
        assert_eq!(d(65_000), "1m05s");
        assert_eq!(d(3_599_400), "59m59s");
        assert_eq!(d(3_723_000), "1h02m03s");
        assert_eq!(d(2 * 86_400_000 + 3 * 3_600_000 + 4 * 60_000), "2d03h04m");
        assert_eq!(d(-5_000), "0s", "clock skew is not a negative duration");
    }

    #[test]
    fn table_pads_all_but_the_last_column() {
        let out = table(
            &["A", "LONG HEADER", "C"],
            &[
                vec!["xyz".into(), "1".into(), "".into()],
                vec!["é".into(), "22".into(), "end".into()],
            ],
        );
        assert_eq!(
            out,
            "A     LONG HEADER   C\n\
             xyz   1\n\
             é     22            end\n"
        );
    }

    #[test]
    fn status_of_a_running_run_shows_elapsed_time_and_the_next_schedule() {
        let s = seq(
            Some("0 * * * *"),
            false,
            SyncSequenceStatus {
                book: RunBook {
                    current_run: Some(Box::new(running_run())),
                    queued_run: Some(Box::new(QueuedRun {
                        trigger: TriggerKind::Manual,
                        retry_of: None,
                        upstream: None,
                        scheduled_time: None,
                    })),
                    ..Default::default()
                },
                schedule: ScheduleStatus {
                    next_schedule_time: Some(time_at("2026-05-01T11:00:00Z")),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let out = status(&s, t("2026-05-01T10:00:12.5Z"));
        assert_eq!(
            out,
            "Run 4 (Manual)  Running  step 2/3  started 2026-05-01T10:00:00Z (12.5s ago)  next schedule: 2026-05-01T11:00:00Z (in 59m48s)\n\
             STEP         AFTER        PHASE       START   DURATION   SYNCED   REJECTED   JOB                      MESSAGE\n\
             accounts     -            Succeeded   +0.2s   2.1s       1200     0          crm-4-accounts-1a2b3\n\
             workspaces   accounts     Running     +2.5s   10s        -        -          crm-4-workspaces-9f8e7\n\
             contacts     workspaces   Pending     -       -          -        -          -\n\
             Queued: a Manual run starts when this one ends\n"
        );
    }

    #[test]
    fn status_without_a_run_in_progress_shows_the_last_run_and_says_so() {
        let s = seq(
            None,
            false,
            SyncSequenceStatus {
                last_run: Some(Box::new(finished_run())),
                ..Default::default()
            },
        );
        let out = status(&s, t("2026-05-01T10:00:00Z"));
        assert_eq!(
            out,
            "No run in progress; the last finished run:\n\
             Run 3 (Schedule for 2026-05-01T09:00:00Z)  Failed  step 2/3  started 2026-05-01T09:00:00Z  took 1m10s  next schedule: none (manual only)\n\
             STEP         AFTER        PHASE                 START   DURATION   SYNCED   REJECTED   JOB                      MESSAGE\n\
             accounts     -            Succeeded             +0.1s   2.5s       1200     0          crm-4-accounts-1a2b3\n\
             workspaces   accounts     Failed (3 attempts)   +2.8s   1m07s      340      2          crm-4-workspaces-1a2b3   CRM API said 400: owner missing\n\
             contacts     workspaces   Skipped               -       -          -        -          -                        skipped: step workspaces failed (UpstreamFailed)\n\
             Message: step workspaces failed\n"
        );
    }

    #[test]
    fn status_of_a_sequence_that_never_ran() {
        let suspended = seq(Some("@hourly"), true, Default::default());
        assert_eq!(
            status(&suspended, t("2026-05-01T10:00:00Z")),
            "syncsequence.syncseq.dev/crm has not run yet  next schedule: none (suspended)\n"
        );
        let due = seq(
            Some("@hourly"),
            false,
            SyncSequenceStatus {
                schedule: ScheduleStatus {
                    next_schedule_time: Some(time_at("2026-05-01T10:00:00Z")),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        assert!(status(&due, t("2026-05-01T10:00:01Z")).ends_with("(due)\n"));
    }

    #[test]
    fn status_says_when_failed_runs_stopped_the_schedule() {
        let condition = |status: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "ScheduleStopped".into(),
            status: status.into(),
            reason: "ConsecutiveFailures".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: time_at("2026-05-01T09:00:00Z"),
        };
        let with = |status: &str| {
            seq(
                Some("@hourly"),
                false,
                SyncSequenceStatus {
                    conditions: vec![condition(status)],
                    book: RunBook {
                        failure_streak: Some(FailureStreak {
                            count: 3,
                            runs: vec![7, 8, 9],
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
        };
        let now = t("2026-05-01T10:00:00Z");
        assert_eq!(
            next_schedule(&with("True"), now),
            "none (stopped after 3 failed runs in a row; `kubectl syncseq resume` restarts it)"
        );
        assert_eq!(next_schedule(&with("False"), now), "none");
    }

    /// With jitter the nominal time is shown with the object's offset, and "in" and "due" count
    /// to the start; several schedules are a schedule too.
    #[test]
    fn next_schedule_shows_the_jittered_start_and_knows_several_schedules() {
        let status = SyncSequenceStatus {
            schedule: ScheduleStatus {
                next_schedule_time: Some(time_at("2026-05-01T10:00:00Z")),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut obj = seq(Some("@hourly"), false, status);
        obj.uid = Some("6f1b3c2a-9d4e-4f5a-8b7c-0e1d2c3b4a59".into());
        obj.scheduling.jitter_seconds = Some(600);
        // That UID's offset in a 600 s window is 540.781 s (pinned in schedule::jitter).
        assert_eq!(
            next_schedule(&obj, t("2026-05-01T10:00:01Z")),
            "2026-05-01T10:00:00Z +9m01s jitter (in 9m00s)"
        );
        assert_eq!(
            next_schedule(&obj, t("2026-05-01T10:09:01Z")),
            "2026-05-01T10:00:00Z +9m01s jitter (due)"
        );
        let mut several = seq(None, false, Default::default());
        several.scheduling.schedules = Some(vec!["0 6 * * *".into(), "0 18 * * *".into()]);
        assert_eq!(next_schedule(&several, t("2026-05-01T10:00:00Z")), "none");
    }

    fn sync_held_by_a_sequence() -> Runnable {
        let mut sync = crate::engine::fixtures::sync("accounts");
        sync.status = Some(crate::api::SyncStatus {
            last_run: Some(Box::new(SyncRunRecord {
                job_name: "crm-4-accounts-1-0a1b2c3d".into(),
                trigger: Some(TriggerKind::Upstream),
                sequence_run: Some("crm/4".into()),
                start_time: Some(time_at("2026-05-01T10:00:00Z")),
                outcome: Some(StepPhase::Running),
                ..Default::default()
            })),
            last_succeeded_run: Some(Box::new(SyncRunRecord {
                job_name: "crm-3-accounts-1-00000000".into(),
                completion_time: Some(time_at("2026-05-01T09:00:00Z")),
                ..Default::default()
            })),
            claim: Some(crate::api::SyncClaim {
                job: "crm-4-accounts-1-0a1b2c3d".into(),
                by: "sequence crm run 4".into(),
                time: time_at("2026-05-01T10:00:00Z"),
            }),
            ..Default::default()
        });
        Runnable::from(&sync)
    }

    #[test]
    fn status_of_a_sync_shows_its_last_job_and_who_holds_it() {
        let out = status(&sync_held_by_a_sequence(), t("2026-05-01T10:00:30Z"));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Last run  next schedule: none (manual only)");
        assert!(lines[1].starts_with("JOB "), "{out}");
        assert!(
            lines[2].starts_with("crm-4-accounts-1-0a1b2c3d   sequence crm/4   Running"),
            "{out}"
        );
        assert!(lines[2].contains("30s"), "{out}");
        assert_eq!(
            lines[3],
            "Held by: sequence crm run 4 (Job crm-4-accounts-1-0a1b2c3d)"
        );
    }

    #[test]
    fn the_overview_has_a_line_per_object_with_what_it_does_now() {
        let now = t("2026-05-01T10:00:30Z");
        let mut current = running_run();
        current.progress = "2/3".into();
        let running = seq(
            Some("@hourly"),
            false,
            SyncSequenceStatus {
                book: RunBook {
                    current_run: Some(Box::new(current)),
                    last_run_result: Some(RunPhase::Failed),
                    last_successful_time: Some(time_at("2026-05-01T08:00:00Z")),
                    ..Default::default()
                },
                schedule: ScheduleStatus {
                    next_schedule_time: Some(time_at("2026-05-01T11:00:00Z")),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let sync = sync_held_by_a_sequence();
        let rows = vec![
            overview_row(&running, true, now),
            overview_row(&sync, true, now),
        ];
        assert_eq!(
            rows[0][..4],
            ["revops", "syncsequence/crm", "Failed", "2h00m30s ago"]
        );
        assert!(rows[0][4].starts_with("run 4 (2/3) "), "{:?}", rows[0]);
        assert_eq!(rows[0][5], "2026-05-01T11:00:00Z (in 59m30s)");
        assert_eq!(
            rows[1],
            [
                "revops",
                "sync/accounts",
                "-",
                "1h00m30s ago",
                "in sequence crm/4",
                "none (manual only)"
            ]
        );
        let table = overview_table(&rows, true);
        assert!(table.starts_with("NAMESPACE   NAME "), "{table}");
        assert_eq!(table.lines().count(), 3);
        let without = overview_table(&[overview_row(&sync, false, now)], false);
        assert!(without.starts_with("NAME "), "{without}");
    }

    #[test]
    fn an_object_this_release_cannot_read_has_its_line_with_the_reason() {
        let object = crate::api::Unreadable {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("ads".into()),
                namespace: Some("revops".into()),
                ..Default::default()
            },
            error: "status.lastRun.phase: unknown variant `Paused`".into(),
            conditions: Vec::new(),
        };
        let obj = Runnable::unreadable(super::super::target::Kind::SyncSequence, &object);
        assert_eq!(
            overview_row(&obj, false, t("2026-05-01T10:00:30Z")),
            [
                "syncsequence/ads",
                "Unreadable",
                "-",
                "cannot read it: status.lastRun.phase: unknown variant `Paused`",
                "-"
            ]
        );
    }

    #[test]
    fn history_lists_the_run_in_progress_then_finished_runs_newest_first() {
        let s = seq(
            None,
            false,
            SyncSequenceStatus {
                book: RunBook {
                    current_run: Some(Box::new(running_run())),
                    runs: vec![
                        RunSummary {
                            id: 3,
                            scheduled_time: None,
                            trigger: TriggerKind::Schedule,
                            retry_of: None,
                            upstream: None,
                            phase: RunPhase::Failed,
                            start_time: time_at("2026-05-01T09:00:00.4Z"),
                            completion_time: Some(time_at("2026-05-01T09:01:10Z")),
                            failed_step: Some("workspaces".into()),
                            message: Some("step workspaces failed".into()),
                            succeeded_steps: None,
                        },
                        RunSummary {
                            id: 2,
                            scheduled_time: None,
                            trigger: TriggerKind::Manual,
                            retry_of: None,
                            upstream: None,
                            phase: RunPhase::Succeeded,
                            start_time: time_at("2026-05-01T08:30:00Z"),
                            completion_time: Some(time_at("2026-05-01T08:30:03.2Z")),
                            failed_step: None,
                            message: None,
                            succeeded_steps: None,
                        },
                    ],
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        assert_eq!(
            history(&s, t("2026-05-01T10:00:12.5Z")).unwrap(),
            "ID   TRIGGER    PHASE           STARTED                DURATION   FAILED STEP   MESSAGE\n\
             4    Manual     Running (2/3)   2026-05-01T10:00:00Z   12.5s      -\n\
             3    Schedule   Failed          2026-05-01T09:00:00Z   1m10s      workspaces    step workspaces failed\n\
             2    Manual     Succeeded       2026-05-01T08:30:00Z   3.2s       -\n"
        );
        assert_eq!(
            history(
                &seq(None, false, Default::default()),
                t("2026-05-01T10:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn status_of_a_graph_retry_shows_parents_reused_steps_and_skip_reasons() {
        use crate::api::RunWhen;
        let mut s = seq(None, false, Default::default());
        let dep = |name: &str, on: &[&str], run_when: RunWhen| Step {
            depends_on: Some(on.iter().map(|p| p.to_string()).collect()),
            run_when,
            ..crate::engine::fixtures::step(name)
        };
        s.steps = vec![
            crate::engine::fixtures::step("accounts"),
            dep("workspaces", &["accounts"], RunWhen::AllSucceeded),
            dep("deals", &["accounts"], RunWhen::AllSucceeded),
            dep("contacts", &["workspaces", "deals"], RunWhen::AllSucceeded),
            dep("audit", &[], RunWhen::AllSucceeded),
        ];
        let reused = |name: &str| StepStatus {
            reused_from: Some(3),
            ..done(
                name,
                StepPhase::Succeeded,
                "2026-05-01T09:00:00Z",
                "2026-05-01T09:00:02Z",
                (10, 0),
                None,
            )
        };
        s.book.current_run = Some(Box::new(RunStatus {
            id: 4,
            trigger: TriggerKind::Retry,
            retry_of: Some(3),
            upstream: None,
            scheduled_time: None,
            start_time: time_at("2026-05-01T10:00:00Z"),
            completion_time: None,
            phase: RunPhase::Running,
            stopped_by: None,
            progress: "3/5".into(),
            steps: vec![
                reused("accounts"),
                StepStatus {
                    message: Some("2 owners missing".into()),
                    ..reused("workspaces")
                },
                StepStatus {
                    start_time: Some(time_at("2026-05-01T10:00:01Z")),
                    attempts: 1,
                    ..step("deals", StepPhase::Running)
                },
                step("contacts", StepPhase::Pending),
                StepStatus {
                    message: Some("waiting: sync audit is running for step x of this run".into()),
                    ..step("audit", StepPhase::Waiting)
                },
            ],
            message: None,
        }));
        let out = status(&s, t("2026-05-01T10:00:05Z"));
        assert_eq!(
            out,
            "Run 4 (retry of run 3)  Running  step 3/5  started 2026-05-01T10:00:00Z (5s ago)  next schedule: none (manual only)\n\
             STEP         AFTER               PHASE       START   DURATION   SYNCED   REJECTED   JOB                      MESSAGE\n\
             accounts     -                   Succeeded   -       2s         10       0          crm-4-accounts-1a2b3     reused from run 3\n\
             workspaces   accounts            Succeeded   -       2s         10       0          crm-4-workspaces-1a2b3   reused from run 3; 2 owners missing\n\
             deals        accounts            Running     +1s     4s         -        -          -\n\
             contacts     workspaces, deals   Pending     -       -          -        -          -\n\
             audit        -                   Waiting     -       -          -        -          -                        waiting: sync audit is running for step x of this run\n"
        );
        let row = overview_row(&s, false, t("2026-05-01T10:00:05Z"));
        assert_eq!(row[3], "run 4 (3/5) deals Running, audit Waiting");
    }

    fn backfill_of(phase: BackfillPhase) -> BackfillStatus {
        BackfillStatus {
            requested_at: "b1".into(),
            from: Some(time_at("2026-05-01T05:00:00Z")),
            to: Some(time_at("2026-05-01T09:00:00Z")),
            phase,
            total: 4,
            started: 2,
            succeeded: 1,
            failed: 0,
            last_started_time: Some(time_at("2026-05-01T06:00:00Z")),
            next_time: Some(time_at("2026-05-01T07:00:00Z")),
            run: Some(4),
            failed_runs: vec![],
            progress: "1/4".into(),
            start_time: time_at("2026-05-01T10:00:00Z"),
            completion_time: None,
            message: Some("running fire time 2026-05-01T06:00:00Z (2 of 4)".into()),
        }
    }

    /// A backfill's phase, progress, range, next fire time, run in progress, failed runs and
    /// message, whatever its phase; a refused one has no progress, and one that could not be
    /// read no range.
    #[test]
    fn status_shows_the_newest_backfill() {
        let now = t("2026-05-01T10:00:12.5Z");
        let mut running = backfill_of(BackfillPhase::Running);
        running.failed_runs = vec![2];
        let mut failed = BackfillStatus {
            phase: BackfillPhase::Failed,
            next_time: None,
            run: None,
            failed_runs: vec![2, 5],
            progress: "4/4".into(),
            completion_time: Some(time_at("2026-05-01T10:20:00Z")),
            message: Some("2 of 4 runs succeeded; runs that did not succeed: 2, 5".into()),
            ..backfill_of(BackfillPhase::Failed)
        };
        let refused = BackfillStatus {
            from: None,
            to: None,
            next_time: None,
            run: None,
            progress: "0/0".into(),
            completion_time: Some(time_at("2026-05-01T10:00:00Z")),
            message: Some(
                "refused: syncseq.dev/backfill is 'x', not FROM/TO\n(two RFC 3339 times)".into(),
            ),
            ..backfill_of(BackfillPhase::Refused)
        };
        for (bf, want) in [
            (
                &running,
                "Backfill: Running  1/4 runs done  2026-05-01T05:00:00Z → 2026-05-01T09:00:00Z  next fire time 2026-05-01T07:00:00Z  run 4 in progress  failed runs 2  started 12.5s ago\n  \
                 running fire time 2026-05-01T06:00:00Z (2 of 4)\n",
            ),
            (
                &failed,
                "Backfill: Failed  4/4 runs done  2026-05-01T05:00:00Z → 2026-05-01T09:00:00Z  failed runs 2, 5  ended 2026-05-01T10:20:00Z\n  \
                 2 of 4 runs succeeded; runs that did not succeed: 2, 5\n",
            ),
            (
                &refused,
                "Backfill: Refused  ended 2026-05-01T10:00:00Z\n  \
                 refused: syncseq.dev/backfill is 'x', not FROM/TO (two RFC 3339 times)\n",
            ),
        ] {
            assert_eq!(backfill(bf, now), want);
        }

        // Below the run in progress (a backfill run, for its fire time), in the overview's
        // NOW column, and not there once it has ended.
        let mut run = running_run();
        run.trigger = TriggerKind::Backfill;
        run.scheduled_time = Some(time_at("2026-05-01T06:00:00Z"));
        let mut s = seq(
            Some("0 * * * *"),
            true,
            SyncSequenceStatus {
                book: RunBook {
                    current_run: Some(Box::new(run)),
                    backfill: Some(Box::new(running.clone())),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let out = status(&s, now);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("Run 4 (Backfill for 2026-05-01T06:00:00Z)  Running  step 2/3"),
            "{out}"
        );
        assert!(out.ends_with(&backfill(&running, now)), "{out}");
        assert_eq!(
            overview_row(&s, false, now)[3],
            "run 4 (2/3) workspaces Running; backfill 1/4"
        );
        s.book.current_run = None;
        assert_eq!(
            overview_row(&s, false, now)[3],
            "backfill 1/4",
            "waiting for a gap"
        );
        failed.requested_at = "b2".into();
        s.book.backfill = Some(Box::new(failed.clone()));
        assert_eq!(overview_row(&s, false, now)[3], "-");
        assert!(status(&s, now).ends_with(&backfill(&failed, now)));
    }

    #[test]
    fn progress_lines_name_each_step_change_once() {
        let now = t("2026-05-01T10:00:12Z");
        let run = running_run();
        assert_eq!(
            step_changes(None, &run, now),
            vec![
                "run 4: step accounts Succeeded after 2.1s, 1200 rows synced, 0 rejected",
                "run 4: step workspaces Running",
            ]
        );
        assert!(step_changes(Some(&run), &run, now).is_empty());
        let mut later = run.clone();
        later.steps[1] = done(
            "workspaces",
            StepPhase::Succeeded,
            "2026-05-01T10:00:02.5Z",
            "2026-05-01T10:00:04Z",
            (340, 2),
            Some("2 owners missing"),
        );
        assert_eq!(
            step_changes(Some(&run), &later, now),
            vec![
                "run 4: step workspaces Succeeded after 1.5s, 340 rows synced, 2 rejected: 2 owners missing"
            ]
        );
    }
}
