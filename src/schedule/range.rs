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

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp, tz::TimeZone};
    use proptest::prelude::*;

    use super::*;
    use crate::schedule::{Schedule, firing_at, parse_time_zone};

    /// A cron of minutes, hours and weekdays (fire times are whole minutes).
    fn arb_cron() -> impl Strategy<Value = String> {
        let minute = prop_oneof![
            Just("*".to_string()),
            (1u32..=30).prop_map(|k| format!("*/{k}")),
            (0u32..60).prop_map(|v| v.to_string()),
        ];
        let hour = prop_oneof![
            3 => Just("*".to_string()),
            1 => (1u32..=12).prop_map(|k| format!("*/{k}")),
            1 => (0u32..24).prop_map(|v| v.to_string()),
        ];
        let dow = prop_oneof![Just("*"), Just("1-5"), Just("0,6")];
        (minute, hour, dow).prop_map(|(m, h, d)| format!("{m} {h} * * {d}"))
    }

    /// Zones whose clocks never change: there, a cron fires at a minute however the walk
    /// that finds it started (robfig's chain is path-dependent across a clock change).
    fn fixed_zone() -> impl Strategy<Value = TimeZone> {
        prop::sample::select(&["UTC", "Asia/Kolkata"][..])
            .prop_map(|n| parse_time_zone(Some(n)).unwrap())
    }

    fn set(exprs: &[String], anchor: Timestamp) -> ScheduleSet {
        let members = exprs.iter().map(|e| Schedule::parse(e).unwrap()).collect();
        ScheduleSet::new(members, anchor).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// A backfill's fire times are every minute of the range at which the schedule fires,
        /// oldest first: found minute by minute, each asked on its own (not by walking the
        /// chain), and counted alike.
        #[test]
        fn the_fire_times_of_a_range_are_the_minutes_it_fires_at(
            exprs in prop::collection::vec(arb_cron(), 1..=3),
            tz in fixed_zone(),
            minute in 26_297_280i64..31_557_600,
            // Often on a whole minute, where a range starts at one of its fire times.
            (second, nanos) in prop_oneof![Just((0i64, 0i32)), (0i64..60, 0i32..1_000_000_000)],
            minutes in 1i64..(2 * 24 * 60),
        ) {
            let start = minute * 60 + second;
            let from = Timestamp::new(start, nanos).unwrap();
            let to = from + SignedDuration::from_mins(minutes);
            let s = set(&exprs, from);
            let got: Vec<Timestamp> = fire_times(&s, &tz, from, to).collect();
            let first_minute = Timestamp::from_second(start - start.rem_euclid(60)).unwrap();
            let want: Vec<Timestamp> = (0..=minutes + 1)
                .map(|m| first_minute + SignedDuration::from_mins(m))
                .filter(|&m| m >= from && m < to)
                .filter(|&m| firing_at(&s, &tz, m).next().is_some())
                .collect();
            prop_assert_eq!(&got, &want, "{:?} in [{}, {})", exprs, from, to);
            prop_assert_eq!(count(&s, &tz, from, to, usize::MAX - 1), Count::Exactly(want.len()));
            match want.len() {
                0 => {}
                n => prop_assert_eq!(count(&s, &tz, from, to, n - 1), Count::MoreThan(n - 1)),
            }
        }
    }

    #[test]
    fn a_lone_every_counts_from_the_start_of_the_range() {
        let s = set(&["@every 90m".into()], ts("2026-01-01T00:00:00Z"));
        let from = ts("2026-12-06T00:00:00.250Z");
        let got: Vec<String> = fire_times(&s, &TimeZone::UTC, from, ts("2026-12-06T04:00:00Z"))
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "2026-12-06T00:00:01Z",
                "2026-12-06T01:30:01Z",
                "2026-12-06T03:00:01Z"
            ]
        );
    }

    #[test]
    fn an_every_among_several_keeps_its_anchor() {
        let exprs = ["@every 1h".to_string(), "30 0 * * *".to_string()];
        let s = set(&exprs, ts("2026-12-01T00:10:00Z"));
        let got: Vec<String> = fire_times(
            &s,
            &TimeZone::UTC,
            ts("2026-12-06T00:00:00Z"),
            ts("2026-12-06T02:00:00Z"),
        )
        .map(|t| t.to_string())
        .collect();
        assert_eq!(
            got,
            [
                "2026-12-06T00:10:00Z",
                "2026-12-06T00:30:00Z",
                "2026-12-06T01:10:00Z"
            ]
        );
    }
}
