//! The fire times of a schedule within a range of the past, for a backfill: `[from, to)`,
//! oldest first, each the schedule's `next` after the one before it. So a backfill runs the
//! fire times the schedule would have started had it been running then, and a run's data
//! interval (`previous_before`) is the one the schedule itself gives it.

use jiff::{SignedDuration, Timestamp, tz::TimeZone};

use super::ScheduleSet;

/// The first fire time at or after `from`. A lone `@every`, which counts from its last fire,
/// has no fire times of its own in the past: its chain starts at `from`, cut to the second.
pub(crate) fn first_at_or_after(
    set: &ScheduleSet,
    tz: &TimeZone,
    from: Timestamp,
) -> Option<Timestamp> {
    let from = whole_second_at_or_after(from)?;
    if set.is_lone_every() {
        return Some(from);
    }
    set.next_after(from.checked_sub(SignedDuration::from_secs(1)).ok()?, tz)
}

/// The fire time after `after` (one of the range's) that is still before `to`.
pub(crate) fn next_in_range(
    set: &ScheduleSet,
    tz: &TimeZone,
    after: Timestamp,
    to: Timestamp,
) -> Option<Timestamp> {
    set.next_after(after, tz).filter(|&t| t < to)
}

/// The fire times in `[from, to)`, oldest first.
pub(crate) fn fire_times<'a>(
    set: &'a ScheduleSet,
    tz: &'a TimeZone,
    from: Timestamp,
    to: Timestamp,
) -> impl Iterator<Item = Timestamp> + 'a {
    let first = first_at_or_after(set, tz, from).filter(|&t| t < to);
    std::iter::successors(first, move |&t| next_in_range(set, tz, t, to))
}

/// How many fire times a range has, counted up to a cap: a range of years of a per-minute
/// schedule is refused without walking all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    Exactly(usize),
    MoreThan(usize),
}

/// Counts the fire times in `[from, to)`, walking at most `cap + 1` of them.
pub(crate) fn count(
    set: &ScheduleSet,
    tz: &TimeZone,
    from: Timestamp,
    to: Timestamp,
    cap: usize,
) -> Count {
    match fire_times(set, tz, from, to)
        .take(cap.saturating_add(1))
        .count()
    {
        n if n > cap => Count::MoreThan(cap),
        n => Count::Exactly(n),
    }
}

/// `t`, or the whole second after it if it has a fraction: fire times are whole seconds.
fn whole_second_at_or_after(t: Timestamp) -> Option<Timestamp> {
    match t.subsec_nanosecond() {
        0 => Some(t),
        _ => Timestamp::from_second(t.as_second().checked_add(1)?).ok(),
    }
}
