//! "What should run now?" — the Kubernetes CronJob controller v2 decision
//! (`mostRecentScheduleTime` and the `startingDeadlineSeconds` check in
//! `syncCronJob`), made exact and cheap.
//!
//! The fire times that concern a CronJob are the chain `Next(earliest)`,
//! `Next(Next(earliest))`, … where `earliest` is `status.lastScheduleTime`, or the
//! creation time if it never ran. The controller wants the most recent element of that
//! chain that is not after `now`, how many elements it skipped, and the first element
//! after `now` (to requeue).
//!
//! Kubernetes estimates the most recent element from the gap between the first two
//! fire times; for schedules with uneven gaps that estimate can overshoot and miss the
//! run entirely (its own test "another complex schedule" expects no run for
//! `30 10,11,12 * * 1-5` on a Friday afternoon, although 12:30 that day was due). Here
//! the chain is walked exactly for the first [`MISSED_COUNT_CAP`] elements, which covers
//! every realistic outage, and beyond that the most recent element is found by
//! bisection on `Next`, which needs about 40 evaluations for any span jiff can
//! represent. `@every` chains are arithmetic and are computed in O(1).
//!
//! [`previous_before`] is the same search looking back: robfig has no `Prev`, so the fire
//! time before an instant is found with `Next` alone.

use jiff::{SignedDuration, Timestamp, tz::TimeZone};

use super::{Kind, Schedule, every::Every, gotime};

/// [`Due::missed`] stops counting here; a value equal to the cap means "at least this
/// many". Kubernetes reports "too many missed start times" above 100.
pub(crate) const MISSED_COUNT_CAP: u64 = 1000;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// What the scheduler should do now — the CronJob controller v2 `mostRecentScheduleTime`
/// + `startingDeadlineSeconds` logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    /// The fire time to start a run for now: the most recent unmet time in
    /// (earliest, now], provided it is within the starting deadline (when one is set).
    pub run_for: Option<Timestamp>,
    /// How many fire times fell in (earliest, now], counted up to [`MISSED_COUNT_CAP`].
    pub missed: u64,
    /// The most recent unmet fire time that was dropped because it is older than
    /// now - startingDeadlineSeconds.
    pub missed_past_deadline: Option<Timestamp>,
    /// The next fire time strictly after now.
    pub next: Option<Timestamp>,
}

/// Decides what to run at `now` for a schedule whose last run (or creation, if it never
/// ran) was at `earliest`.
///
/// The starting deadline is applied the way the controller applies it: a fire time `f`
/// may still start iff `f > now - startingDeadlineSeconds` (the controller only looks
/// for fire times after `now - deadline`, so one exactly `deadline` seconds old is
/// already too late). A deadline of 0 or less therefore never lets anything start, as in
/// Kubernetes. When the most recent fire time is too old, it is reported in
/// [`Due::missed_past_deadline`] and nothing runs; `missed` still counts it.
///
/// For `@every` schedules the chain stays anchored at `earliest`. (Kubernetes moves the
/// anchor to `now - deadline` when a deadline is set, which makes an `@every` job whose
/// deadline is shorter than its period stop running after any delay; that is not
/// reproduced.)
pub(crate) fn due(
    schedule: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
    starting_deadline_seconds: Option<i64>,
) -> Due {
    let scan = match &schedule.kind {
        Kind::Every(every) => scan_every(every, earliest, now),
        Kind::Cron(spec) => scan_chain(|t| spec.next(t, tz), earliest, now),
    };
    decide(scan, now, starting_deadline_seconds)
}

/// [`due`] for any chain given by its `next` function (whose chain from any instant is the
/// same fire times: no anchor that moves with the instant, as an `@every` chain's does).
pub(super) fn due_of_chain(
    next: impl Fn(Timestamp) -> Option<Timestamp>,
    earliest: Timestamp,
    now: Timestamp,
    starting_deadline_seconds: Option<i64>,
) -> Due {
    decide(
        scan_chain(next, earliest, now),
        now,
        starting_deadline_seconds,
    )
}

fn decide(scan: Scan, now: Timestamp, starting_deadline_seconds: Option<i64>) -> Due {
    let (run_for, missed_past_deadline) = match scan.last {
        None => (None, None),
        Some(last) if within_deadline(last, now, starting_deadline_seconds) => (Some(last), None),
        Some(last) => (None, Some(last)),
    };
    Due {
        run_for,
        missed: scan.count,
        missed_past_deadline,
        next: scan.next,
    }
}

/// How far back [`previous_before`] looks, in days, one window after the other: an hourly or
/// daily schedule is found in the first, a monthly one in the second, a yearly one in the
/// third, `0 0 29 2 *` in the fourth, and in the last across 2100, which is no leap year
/// (2096 to 2104).
const LOOK_BACK_DAYS: [i64; 5] = [1, 32, 367, 5 * 366, 8 * 366 + 1];

/// How many fire times [`previous_before`] walks past the bisection's answer at most.
const PREVIOUS_WALK_CAP: usize = 100_000;

/// The latest fire time strictly before `before`, by the schedule's own maths: the start of
/// the data interval that ends at `before` (Airflow's `data_interval_start`). None when the
/// schedule fires nothing in the eight years before it.
///
/// An `@every d` chain has no wall-clock anchor (it runs from wherever it started), so its
/// fire before a fire time `t` is `t - d` (`Next(t - d)` is `t`). A cron's fire times
/// are the values `Next` takes; the latest one before `before` is found by bisection on
/// `Next` (as [`due`] finds the most recent one) inside the smallest window of
/// [`LOOK_BACK_DAYS`] that holds one, about 30 evaluations for any of them.
pub(super) fn previous_before(
    schedule: &Schedule,
    tz: &TimeZone,
    before: Timestamp,
) -> Option<Timestamp> {
    match &schedule.kind {
        Kind::Every(every) => {
            gotime::timestamp(gotime::floor_second(before).checked_sub(every.seconds())?)
        }
        Kind::Cron(spec) => {
            let next = |t: Timestamp| spec.next(t, tz);
            // Fire times are whole seconds: one strictly before `before` is at most this.
            let last = before.checked_sub(SignedDuration::from_nanos(1)).ok()?;
            LOOK_BACK_DAYS.iter().find_map(|days| {
                let from = before
                    .checked_sub(SignedDuration::from_hours(days * 24))
                    .ok()?;
                let known = next(from).filter(|f| *f <= last)?;
                let mut found = most_recent(&next, known, last);
                // Where clocks change at midnight robfig's `Next` is not monotonic (its day
                // nudge, see cron.rs), and the bisection can stop at a fire time with more
                // after it: the chain from there is walked to the last one, as far as a
                // bound (it normally takes no step at all).
                for _ in 0..PREVIOUS_WALK_CAP {
                    match next(found).filter(|f| *f <= last) {
                        Some(f) => found = f,
                        None => break,
                    }
                }
                Some(found)
            })
        }
    }
}

/// The chain elements relevant at `now`.
struct Scan {
    /// The most recent element `<= now`.
    last: Option<Timestamp>,
    /// How many elements are `<= now`, capped.
    count: u64,
    /// The first element `> now`.
    next: Option<Timestamp>,
}

fn within_deadline(fire: Timestamp, now: Timestamp, deadline: Option<i64>) -> bool {
    match deadline {
        None => true,
        Some(secs) => fire.as_nanosecond() + i128::from(secs) * NANOS_PER_SEC > now.as_nanosecond(),
    }
}

/// Walks the chain from `earliest` with `next` (a cron schedule's `Next`).
fn scan_chain(
    next: impl Fn(Timestamp) -> Option<Timestamp>,
    earliest: Timestamp,
    now: Timestamp,
) -> Scan {
    let mut count = 0;
    let mut last = None;
    let mut cursor = next(earliest);
    while let Some(fire) = cursor {
        if fire > now {
            return Scan {
                last,
                count,
                next: Some(fire),
            };
        }
        count += 1;
        last = Some(fire);
        if count == MISSED_COUNT_CAP {
            let last = most_recent(&next, fire, now);
            return Scan {
                last: Some(last),
                count,
                next: next(last)
                    .filter(|f| *f > now)
                    .or_else(|| next(now.max(earliest))),
            };
        }
        cursor = next(fire);
    }
    // The chain ended: robfig found nothing within five years of its last element.
    // Kubernetes then requeues from `now`.
    Scan {
        last,
        count,
        next: next(now.max(earliest)),
    }
}

/// The latest fire time `<= now`, given a fire time `known <= now`.
///
/// With `N(s)` the first fire time after `s`, "`N(s) <= now`" holds exactly for the
/// seconds `s` before the answer, so the answer is found by bisecting on whole seconds
/// between `known` and `now` (fire times are whole seconds). Each step is one `Next`.
fn most_recent(
    next: &impl Fn(Timestamp) -> Option<Timestamp>,
    known: Timestamp,
    now: Timestamp,
) -> Timestamp {
    let due_after = |secs: i64| gotime::timestamp(secs).and_then(next).filter(|f| *f <= now);
    // Invariant: a fire time lies in (lo, now]; none lies in (hi, now].
    let mut lo = gotime::floor_second(known);
    let mut hi = gotime::floor_second(now);
    if due_after(lo).is_none() {
        return known;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if due_after(mid).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    due_after(lo).unwrap_or(known)
}

/// The `@every` chain is `floor(earliest) + k·d` for k = 1, 2, …; no walking needed.
fn scan_every(every: &Every, earliest: Timestamp, now: Timestamp) -> Scan {
    let base = i128::from(gotime::floor_second(earliest));
    let step = i128::from(every.seconds());
    let now_s = i128::from(gotime::floor_second(now));
    let at = |k: i128| {
        i64::try_from(base + k * step)
            .ok()
            .and_then(gotime::timestamp)
    };
    if now_s < base + step {
        return Scan {
            last: None,
            count: 0,
            next: at(1),
        };
    }
    let k = (now_s - base) / step;
    Scan {
        last: at(k),
        count: u64::try_from(k).map_or(MISSED_COUNT_CAP, |k| k.min(MISSED_COUNT_CAP)),
        next: at(k + 1),
    }
}
