//! Backfill: one run per past fire time of the object's schedule in `[from, to)`, oldest
//! first, one at a time. It is asked for with annotations (`kubectl syncseq backfill`) and kept
//! in `status.backfill`, which holds all it needs to go on after a restart or a change of
//! leader: the next fire time, and its run in progress. A backfill run starts only when no run
//! is in progress or queued, in the same status write that records it in the backfill, so no
//! fire time runs twice and none is lost; the object's own triggers meanwhile meet its run as
//! any run (`concurrencyPolicy`). Neither `suspend` nor a stopped schedule stops it: both stop
//! the schedule, and a backfill is a request.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::reasons;
use super::run::cancel_run;
use super::triggers::ParsedSchedule;
use super::{Action, Event, JobView};
use crate::api::{BackfillPhase, BackfillStatus, RunBook, RunPhase, RunStatus, annotations};
use crate::schedule::{ScheduleSet, range};

/// The most fire times a backfill may have unless `syncseq.dev/backfillMaxRuns` says otherwise.
pub(crate) const DEFAULT_MAX_RUNS: usize = 1000;
/// The most `syncseq.dev/backfillMaxRuns` may allow.
pub(crate) const MAX_RUNS_CEILING: usize = 10_000;
/// How far a refused range is counted: beyond it, the count says "more than".
const COUNT_CAP: usize = 100_000;
/// How many runs of it that did not succeed a backfill names.
const FAILED_RUNS: usize = 10;

/// A range of fire times a backfill can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackfillRange {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Its fire times, at most the limit.
    pub total: usize,
    /// The oldest of them.
    pub first: Timestamp,
}

/// Reads `FROM/TO` (two RFC 3339 times), as `syncseq.dev/backfill` holds it.
pub(crate) fn parse_range(text: &str) -> Result<(Timestamp, Timestamp), String> {
    let shown = crate::text::truncate(&crate::text::printable(text));
    let Some((from, to)) = text.trim().split_once('/') else {
        return Err(format!(
            "{} is '{shown}', not FROM/TO (two RFC 3339 times)",
            annotations::BACKFILL
        ));
    };
    let time = |what: &str, t: &str| {
        t.trim().parse::<Timestamp>().map_err(|e| {
            format!(
                "{} is '{shown}': its {what} is not an RFC 3339 time ({e})",
                annotations::BACKFILL
            )
        })
    };
    let (from, to) = (time("start", from)?, time("end", to)?);
    if from >= to {
        return Err(format!(
            "the range from {from} to {to} is empty: its start must be before its end"
        ));
    }
    Ok((from, to))
}

/// Reads `syncseq.dev/backfillMaxRuns` (unset: the default).
pub(crate) fn parse_max_runs(text: Option<&str>) -> Result<usize, String> {
    let Some(text) = text else {
        return Ok(DEFAULT_MAX_RUNS);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_RUNS_CEILING).contains(&n) => Ok(n),
        _ => Err(format!(
            "{} is '{}', not a number from 1 to {MAX_RUNS_CEILING}",
            annotations::BACKFILL_MAX_RUNS,
            crate::text::truncate(&crate::text::printable(text))
        )),
    }
}

/// The schedule a backfill walks: the object's, parsed (`Ok(None)`: it has none), or why it
/// cannot be used.
pub(crate) fn schedule_to_backfill<'a>(
    parsed: Result<Option<&'a (ScheduleSet, TimeZone)>, &str>,
) -> Result<&'a (ScheduleSet, TimeZone), String> {
    match parsed {
        Ok(Some(schedule)) => Ok(schedule),
        Ok(None) => Err(
            "the object has no schedule (spec.schedule or spec.schedules) whose fire times to run"
                .into(),
        ),
        Err(e) => Err(format!("the object's schedule cannot be used: {e}")),
    }
}

/// Whether `[from, to)` can be backfilled with `schedule` at `now`: it has fire times, at most
/// `max_runs`, and none after now (the schedule itself runs the fire times to come).
pub(crate) fn check_range(
    (set, tz): &(ScheduleSet, TimeZone),
    (from, to): (Timestamp, Timestamp),
    max_runs: usize,
    now: Timestamp,
) -> Result<BackfillRange, String> {
    let total = match range::count(set, tz, from, to, COUNT_CAP.max(max_runs)) {
        range::Count::Exactly(0) => {
            return Err(format!("the schedule has no fire time from {from} to {to}"));
        }
        range::Count::Exactly(n) if n <= max_runs => n,
        range::Count::Exactly(n) => {
            return Err(too_many(&n.to_string(), from, to, max_runs));
        }
        range::Count::MoreThan(n) => {
            return Err(too_many(&format!("more than {n}"), from, to, max_runs));
        }
    };
    // A range may end after now (`--to` of a clock a little ahead of ours) so long as none of
    // its fire times is still to come: the schedule runs those. (Walked once counted, so at
    // most `max_runs` of them.)
    if let Some(future) = range::fire_times(set, tz, from, to).find(|&t| t > now) {
        return Err(format!(
            "the range has fire times that have not come yet, from {future} on: a backfill runs past fire times, and the schedule runs those to come (end the range by {now})"
        ));
    }
    let first = range::first_at_or_after(set, tz, from)
        .filter(|&t| t < to)
        .ok_or_else(|| format!("the schedule has no fire time from {from} to {to}"))?;
    Ok(BackfillRange {
        from,
        to,
        total,
        first,
    })
}

fn too_many(count: &str, from: Timestamp, to: Timestamp, max_runs: usize) -> String {
    format!(
        "the range from {from} to {to} has {count} fire times, more than the limit of {max_runs} ({} raises it, up to {MAX_RUNS_CEILING})",
        annotations::BACKFILL_MAX_RUNS
    )
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Handles the backfill annotations: a cancel (which cancels the backfill's run in progress
/// too), then a new request, accepted or refused. A request while a backfill is in progress
/// is refused: the one in progress goes on.
pub(super) fn requests(
    meta: &ObjectMeta,
    book: &mut RunBook,
    schedule: &ParsedSchedule,
    jobs: &[JobView],
    now: Timestamp,
    actions: &mut Vec<Action>,
) {
    if let Some(value) = annotation(meta, annotations::CANCEL_BACKFILL_REQUESTED_AT)
        .filter(|v| book.last_handled_backfill_cancel_at.as_deref() != Some(*v))
    {
        book.last_handled_backfill_cancel_at = Some(value.to_string());
        cancel(book, jobs, now, actions);
    }
    let Some(value) = annotation(meta, annotations::BACKFILL_REQUESTED_AT)
        .filter(|v| book.last_handled_backfill_at.as_deref() != Some(*v))
    else {
        return;
    };
    book.last_handled_backfill_at = Some(value.to_string());
    if let Some(running) = book
        .backfill
        .as_deref()
        .filter(|b| b.phase == BackfillPhase::Running)
    {
        actions.push(Event::warning(
            reasons::BACKFILL_REFUSED,
            "StartBackfill",
            format!(
                "backfill refused: the backfill requested at {} is in progress ({} runs done); cancel it first",
                crate::text::truncate(&crate::text::printable(&running.requested_at)),
                running.progress
            ),
        ));
        return;
    }
    let range = annotation(meta, annotations::BACKFILL)
        .ok_or_else(|| {
            format!(
                "{} is not set: it names the range, FROM/TO",
                annotations::BACKFILL
            )
        })
        .and_then(parse_range);
    let max_runs = parse_max_runs(annotation(meta, annotations::BACKFILL_MAX_RUNS));
    let checked = match (range, max_runs) {
        (Ok(r), Ok(max)) => schedule_to_backfill(schedule.as_result())
            .and_then(|set| check_range(set, r, max, now))
            .map_err(|e| (Some(r), e)),
        (Err(e), _) => Err((None, e)),
        (Ok(r), Err(e)) => Err((Some(r), e)),
    };
    let mut status = BackfillStatus {
        requested_at: value.to_string(),
        from: None,
        to: None,
        phase: BackfillPhase::Running,
        total: 0,
        started: 0,
        succeeded: 0,
        failed: 0,
        last_started_time: None,
        next_time: None,
        run: None,
        failed_runs: Vec::new(),
        progress: String::new(),
        start_time: Time(now),
        completion_time: None,
        message: None,
    };
    match checked {
        Ok(ok) => {
            status.from = Some(Time(ok.from));
            status.to = Some(Time(ok.to));
            status.total = i64::try_from(ok.total).unwrap_or(i64::MAX);
            status.next_time = Some(Time(ok.first));
            status.progress = format!("0/{}", ok.total);
            actions.push(Event::normal(
                reasons::BACKFILL_STARTED,
                "StartBackfill",
                format!(
                    "backfill of {} fire times from {} to {}, oldest first, one run at a time",
                    ok.total, ok.from, ok.to
                ),
            ));
        }
        Err((range, why)) => {
            status.from = range.map(|(from, _)| Time(from));
            status.to = range.map(|(_, to)| Time(to));
            status.phase = BackfillPhase::Refused;
            status.progress = "0/0".into();
            status.completion_time = Some(Time(now));
            status.message = Some(format!("refused: {why}"));
            actions.push(Event::warning(
                reasons::BACKFILL_REFUSED,
                "StartBackfill",
                format!("backfill refused: {why}"),
            ));
        }
    }
    book.backfill = Some(Box::new(status));
}

/// Cancels the backfill in progress: no more of its runs start, and its run in progress is
/// cancelled (counted once it is archived).
fn cancel(book: &mut RunBook, jobs: &[JobView], now: Timestamp, actions: &mut Vec<Action>) {
    let Some(bf) = book
        .backfill
        .as_deref_mut()
        .filter(|b| b.phase == BackfillPhase::Running)
    else {
        actions.push(Event::normal(
            reasons::BACKFILL_CANCELLED,
            "CancelBackfill",
            "backfill cancel requested, but no backfill is in progress",
        ));
        return;
    };
    let not_run = bf.total.saturating_sub(bf.started);
    bf.phase = BackfillPhase::Cancelled;
    bf.next_time = None;
    bf.completion_time = Some(Time(now));
    bf.message = Some(format!(
        "cancelled by request after {} of {} runs started; {not_run} fire times not run",
        bf.started, bf.total
    ));
    actions.push(Event::normal(
        reasons::BACKFILL_CANCELLED,
        "CancelBackfill",
        format!(
            "backfill cancelled by request: {} of {} runs started, {not_run} fire times not run",
            bf.started, bf.total
        ),
    ));
    if let Some(run) = book
        .current_run
        .as_mut()
        .filter(|r| Some(r.id) == bf.run && r.phase == RunPhase::Running)
    {
        cancel_run(run, "its backfill was cancelled", jobs, actions, now);
    }
}

/// Counts a run as it is archived, if it is the backfill's.
pub(super) fn count_finished(backfill: Option<&mut BackfillStatus>, run: &RunStatus) {
    let Some(bf) = backfill.filter(|b| b.run == Some(run.id)) else {
        return;
    };
    bf.run = None;
    count(bf, run.id, run.phase);
}

fn count(bf: &mut BackfillStatus, run: i64, phase: RunPhase) {
    match phase {
        RunPhase::Succeeded | RunPhase::SucceededWithErrors => {
            bf.succeeded = bf.succeeded.saturating_add(1);
        }
        _ => {
            bf.failed = bf.failed.saturating_add(1);
            bf.failed_runs.push(run);
            let extra = bf.failed_runs.len().saturating_sub(FAILED_RUNS);
            bf.failed_runs.drain(..extra);
        }
    }
    bf.progress = format!("{}/{}", bf.succeeded.saturating_add(bf.failed), bf.total);
}

/// What the backfill does next, once the runs of this decision have moved: nothing while its
/// run or another is in progress or queued; else it starts the run for its next fire time
/// (through `start`, which starts the object's next run number and archives it if it ended at
/// once), or ends when none is left.
pub(super) fn go_on(
    book: &mut RunBook,
    schedule: Option<&(ScheduleSet, TimeZone)>,
    now: Timestamp,
    actions: &mut Vec<Action>,
    mut start: impl FnMut(&mut RunBook, Timestamp, &mut Vec<Action>),
) {
    loop {
        let Some(bf) = book
            .backfill
            .as_deref_mut()
            .filter(|b| b.phase == BackfillPhase::Running)
        else {
            return;
        };
        let current = book.current_run.as_deref().map(|r| (r.id, r.trigger));
        if let Some(id) = bf.run.filter(|&id| current.map(|(c, _)| c) != Some(id)) {
            // Its run ended without being counted as it was archived (status restored from
            // an older copy): the history says how, if it still has it.
            let phase = book
                .runs
                .iter()
                .find(|r| r.id == id)
                .map_or(RunPhase::Cancelled, |r| r.phase);
            bf.run = None;
            count(bf, id, phase);
        }
        if bf.run.is_some() {
            return;
        }
        if let Some((id, trigger)) = current {
            bf.message = Some(waiting(bf, &format!("run {id} ({trigger:?}) ends")));
            return;
        }
        if let Some(q) = &book.queued_run {
            bf.message = Some(waiting(bf, &format!("the queued {:?} run ends", q.trigger)));
            return;
        }
        let Some(at) = bf.next_time.take().map(|t| t.0) else {
            finish(bf, now, actions);
            return;
        };
        let to = bf.to.as_ref().map_or(at, |t| t.0);
        bf.next_time = schedule
            .and_then(|(set, tz)| range::next_in_range(set, tz, at, to))
            .map(Time);
        bf.started = bf.started.saturating_add(1);
        bf.last_started_time = Some(Time(at));
        bf.message = Some(format!(
            "running fire time {at} ({} of {})",
            bf.started, bf.total
        ));
        // The number `start` gives the run, set first: a run that ends at once is archived,
        // and counted, inside it.
        bf.run = Some(book.last_run_number.unwrap_or(0).saturating_add(1));
        start(book, at, actions);
    }
}

fn waiting(bf: &BackfillStatus, what: &str) -> String {
    match &bf.next_time {
        Some(next) => format!(
            "{} of {} runs done; the next, for {}, starts once {what}",
            bf.succeeded.saturating_add(bf.failed),
            bf.total,
            next.0
        ),
        None => format!("its last run is done; it ends once {what}"),
    }
}

/// Ends a backfill whose fire times have all run.
fn finish(bf: &mut BackfillStatus, now: Timestamp, actions: &mut Vec<Action>) {
    bf.completion_time = Some(Time(now));
    // The fire times follow the schedule as it is at each start: a schedule changed meanwhile
    // makes them other than those counted when it was accepted.
    let changed = match bf.started == bf.total {
        true => String::new(),
        false => format!(
            " ({} fire times were counted when it started: the schedule changed meanwhile)",
            bf.total
        ),
    };
    let failed = match bf.failed_runs.as_slice() {
        [] => String::new(),
        runs => format!(
            "; runs that did not succeed: {}",
            runs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let what = format!(
        "{} of {} runs succeeded{changed}{failed}",
        bf.succeeded, bf.started
    );
    if bf.failed == 0 {
        bf.phase = BackfillPhase::Succeeded;
        actions.push(Event::normal(
            reasons::BACKFILL_SUCCEEDED,
            "FinishBackfill",
            format!("backfill finished: {what}"),
        ));
    } else {
        bf.phase = BackfillPhase::Failed;
        actions.push(Event::warning(
            reasons::BACKFILL_FAILED,
            "FinishBackfill",
            format!("backfill finished: {what}"),
        ));
    }
    bf.message = Some(what);
}
