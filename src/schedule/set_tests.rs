//! Several schedules as one (`set.rs`): examples, and properties against the definition —
//! the union's chain is the sorted merge of its members' chains, each member's chain walked
//! with its own `Next`.

use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use proptest::prelude::*;

use super::due::MISSED_COUNT_CAP;
use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn set(exprs: &[&str], anchor: Timestamp) -> ScheduleSet {
    let members = exprs.iter().map(|e| Schedule::parse(e).unwrap()).collect();
    ScheduleSet::new(members, anchor).unwrap()
}

#[test]
fn two_crons_fire_at_each_of_their_times_in_the_one_zone() {
    let berlin = parse_time_zone(Some("Europe/Berlin")).unwrap();
    let s = set(&["0 6 * * *", "0 18 * * 1-5"], ts("2027-01-01T00:00:00Z"));
    // Friday 8, Saturday 9, Sunday 10 January 2027; CET is +01:00.
    let fires = preview(&s, &berlin, ts("2027-01-08T00:00:00Z"), 5);
    assert_eq!(
        fires,
        [
            ts("2027-01-08T05:00:00Z"),
            ts("2027-01-08T17:00:00Z"),
            ts("2027-01-09T05:00:00Z"),
            ts("2027-01-10T05:00:00Z"),
            ts("2027-01-11T05:00:00Z"),
        ]
    );
}

#[test]
fn fires_that_coincide_are_one_fire_and_which_schedules_fire_is_told() {
    let utc = TimeZone::UTC;
    let s = set(&["0 * * * *", "*/30 * * * *"], ts("2027-01-01T00:00:00Z"));
    let fires = preview(&s, &utc, ts("2027-01-01T10:00:00Z"), 3);
    assert_eq!(
        fires,
        [
            ts("2027-01-01T10:30:00Z"),
            ts("2027-01-01T11:00:00Z"),
            ts("2027-01-01T11:30:00Z"),
        ]
    );
    let at = |t: &str| -> Vec<String> {
        firing_at(&s, &utc, ts(t))
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(at("2027-01-01T10:30:00Z"), ["*/30 * * * *"]);
    assert_eq!(at("2027-01-01T11:00:00Z"), ["0 * * * *", "*/30 * * * *"]);
    // Equal in meaning, counted once.
    let same = set(&["@daily", "0 0 * * *"], ts("2027-01-01T00:00:00Z"));
    assert_eq!(
        firing_at(&same, &utc, ts("2027-01-02T00:00:00Z")).count(),
        1
    );
}

/// The reason `@every` members count from an anchor: were each counted from the last fire of
/// the set, as one `@every` schedule is, the 30 s member would restart at every 20 s fire and
/// never fire.
#[test]
fn every_members_keep_their_own_chains_from_the_anchor() {
    let created = ts("2027-01-01T10:00:00Z");
    let s = set(&["@every 20s", "@every 30s"], created);
    let after = |secs: i64| created + SignedDuration::from_secs(secs);
    let fires = preview(&s, &TimeZone::UTC, created, 6);
    assert_eq!(
        fires,
        [
            after(20),
            after(30),
            after(40),
            after(60),
            after(80),
            after(90)
        ]
    );
    // The walk the engine makes, from the last scheduled time: the 30 s chain survives.
    let d = due_set(&s, &TimeZone::UTC, after(20), after(31), None);
    assert_eq!(
        (d.run_for, d.missed, d.next),
        (Some(after(30)), 1, Some(after(40)))
    );
}

#[test]
fn due_of_several_counts_the_union_and_keeps_the_deadline() {
    let utc = TimeZone::UTC;
    let s = set(&["0 6 * * *", "0 18 * * *"], ts("2027-01-01T00:00:00Z"));
    // Down from 05:00 on the 1st until 19:00 on the 2nd: 06, 18, 06, 18 were missed.
    let d = due_set(
        &s,
        &utc,
        ts("2027-01-01T05:00:00Z"),
        ts("2027-01-02T19:00:00Z"),
        Some(7200),
    );
    assert_eq!(d.missed, 4);
    assert_eq!(d.run_for, Some(ts("2027-01-02T18:00:00Z")));
    assert_eq!(d.next, Some(ts("2027-01-03T06:00:00Z")));
    let late = due_set(
        &s,
        &utc,
        ts("2027-01-01T05:00:00Z"),
        ts("2027-01-02T19:00:00Z"),
        Some(60),
    );
    assert_eq!(
        (late.run_for, late.missed_past_deadline),
        (None, Some(ts("2027-01-02T18:00:00Z")))
    );
}

#[test]
fn parse_set_takes_one_field_or_the_other() {
    let anchor = ts("2027-01-01T00:00:00Z");
    let several = ["@hourly".to_string(), "@every 90m".to_string()];
    assert!(parse_set(None, None, None, anchor).unwrap().is_none());
    assert!(
        parse_set(Some("@hourly"), None, None, anchor)
            .unwrap()
            .is_some()
    );
    assert!(
        parse_set(None, Some(&several), None, anchor)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        parse_set(Some("@hourly"), Some(&several), None, anchor).unwrap_err(),
        ScheduleError::BothSchedules
    );
    let bad = ["@hourly".to_string(), "61 * * * *".to_string()];
    let err = parse_set(None, Some(&bad), None, anchor).unwrap_err();
    assert!(err.to_string().contains("\"61 * * * *\""), "{err}");
    let err = parse_set(None, Some(&several), Some("Mars/Olympus"), anchor).unwrap_err();
    assert!(
        matches!(err, ScheduleError::UnknownTimeZone { .. }),
        "{err}"
    );
}

fn arb_member() -> impl Strategy<Value = String> {
    let minute = prop_oneof![
        Just("*".to_string()),
        (1u32..=30).prop_map(|k| format!("*/{k}")),
        (0u32..60).prop_map(|v| v.to_string()),
        (0u32..60, 0u32..60).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
    ];
    let hour = prop_oneof![
        3 => Just("*".to_string()),
        1 => (1u32..=12).prop_map(|k| format!("*/{k}")),
        1 => (0u32..24).prop_map(|v| v.to_string()),
    ];
    let dow = prop_oneof![Just("*"), Just("1-5"), Just("0,6")];
    prop_oneof![
        3 => (minute, hour, dow).prop_map(|(m, h, d)| format!("{m} {h} * * {d}")),
        2 => (60u64..20_000).prop_map(|s| format!("@every {s}s")),
    ]
}

fn arb_zone() -> impl Strategy<Value = TimeZone> {
    prop::sample::select(
        &[
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
        ][..],
    )
    .prop_map(|n| parse_time_zone(Some(n)).unwrap())
}

/// Zones whose clocks never change: UTC and a fixed offset.
fn fixed_zone() -> impl Strategy<Value = TimeZone> {
    prop::sample::select(&["UTC", "Asia/Kolkata"][..])
        .prop_map(|n| parse_time_zone(Some(n)).unwrap())
}

/// Instants between 2000 and 2050, with sub-second parts.
fn arb_instant() -> impl Strategy<Value = Timestamp> {
    (946_684_800i64..2_524_608_000, 0i32..1_000_000_000)
        .prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap())
}

/// How many members differ in meaning: a set of one is not a union (its `@every` counts from
/// the last fire).
fn distinct(members: &[Schedule]) -> usize {
    let mut seen: Vec<&Schedule> = Vec::new();
    for m in members {
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    seen.len()
}

/// A member's own chain after `from`, walked with its own `Next`: a cron member from `from`,
/// an `@every` member from the anchor (robfig's chain of a schedule started then).
fn member_chain(
    m: &Schedule,
    tz: &TimeZone,
    anchor: Timestamp,
    from: Timestamp,
    until: impl Fn(&[Timestamp]) -> bool,
) -> Vec<Timestamp> {
    let every = m.every_interval().is_some();
    let mut cursor = m.next_after(if every { anchor } else { from }, tz);
    let mut out = Vec::new();
    while let Some(fire) = cursor {
        if fire > from {
            out.push(fire);
            if until(&out) {
                break;
            }
        }
        cursor = m.next_after(fire, tz);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The union's chain (walking the set's `Next`) is the sorted, de-duplicated merge of its
    /// members' chains.
    #[test]
    fn the_union_chain_is_the_merge_of_the_member_chains(
        exprs in prop::collection::vec(arb_member(), 2..=4),
        tz in arb_zone(),
        from in arb_instant(),
        since in 0i64..(2 * 86_400),
    ) {
        let anchor = from - SignedDuration::from_secs(since);
        let members: Vec<Schedule> = exprs.iter().map(|e| Schedule::parse(e).unwrap()).collect();
        prop_assume!(distinct(&members) >= 2);
        let s = ScheduleSet::new(members.clone(), anchor).unwrap();
        const N: usize = 8;
        let got = preview(&s, &tz, from, N);
        let mut merged: Vec<Timestamp> = members
            .iter()
            .flat_map(|m| member_chain(m, &tz, anchor, from, |c| c.len() == N))
            .collect();
        merged.sort();
        merged.dedup();
        merged.truncate(N);
        prop_assert_eq!(got, merged, "{:?} from {}", exprs, from);
    }

    /// The fire time before each fire of the union (a run's data interval start) is the one
    /// the union's chain has before it. (In UTC: where clocks change at midnight, robfig's own
    /// chain can step over a fire time, see `due::previous_before`.)
    #[test]
    fn the_fire_before_each_fire_of_the_union_is_the_one_before_it_in_the_chain(
        exprs in prop::collection::vec(arb_member(), 1..=3),
        from in arb_instant(),
        since in 0i64..(2 * 86_400),
    ) {
        let utc = TimeZone::UTC;
        let anchor = from - SignedDuration::from_secs(since);
        let members: Vec<Schedule> = exprs.iter().map(|e| Schedule::parse(e).unwrap()).collect();
        let s = ScheduleSet::new(members, anchor).unwrap();
        let chain = preview(&s, &utc, from, 4);
        for pair in chain.windows(2) {
            prop_assert_eq!(s.previous_before(pair[1], &utc), Some(pair[0]), "{:?}", exprs);
        }
    }

    /// `due` of a set of one is `due` of that schedule, `@every` included.
    #[test]
    fn due_of_a_set_of_one_is_due_of_the_schedule(
        expr in arb_member(),
        tz in arb_zone(),
        earliest in arb_instant(),
        anchor in arb_instant(),
        gap in -3_600i64..(10 * 86_400),
        deadline in prop::option::of(-10i64..200_000),
    ) {
        let one = Schedule::parse(&expr).unwrap();
        let now = earliest + SignedDuration::from_secs(gap);
        let s = ScheduleSet::new(vec![one.clone()], anchor).unwrap();
        prop_assert_eq!(
            due_set(&s, &tz, earliest, now, deadline),
            due(&one, &tz, earliest, now, deadline)
        );
    }

    /// `due` of several agrees with a walk of the merged chains from `earliest`: how many fire
    /// times were missed, the most recent (run, or dropped past the deadline), the next. In
    /// zones without clock changes: across one, robfig's chain depends on where it is walked
    /// from (from 2022-04-01 in Australia/Lord_Howe, `* */3 * * 0,6` steps over the
    /// 2022-04-02T16:30Z its `Next` of 15:58Z gives), so a member's own chain is not a
    /// reference there; the union walks its own chain, `Next` from each of its fire times.
    #[test]
    fn due_of_several_matches_a_walk_of_the_merged_chains(
        exprs in prop::collection::vec(arb_member(), 2..=3),
        tz in fixed_zone(),
        earliest in arb_instant(),
        since in 0i64..86_400,
        gap in -600i64..(2 * 86_400),
        deadline in prop::option::of(0i64..20_000),
    ) {
        let anchor = earliest - SignedDuration::from_secs(since);
        let now = earliest + SignedDuration::from_secs(gap);
        let members: Vec<Schedule> = exprs.iter().map(|e| Schedule::parse(e).unwrap()).collect();
        prop_assume!(distinct(&members) >= 2);
        let s = ScheduleSet::new(members.clone(), anchor).unwrap();
        let d = due_set(&s, &tz, earliest, now, deadline);

        let mut merged: Vec<Timestamp> = members
            .iter()
            .flat_map(|m| member_chain(m, &tz, anchor, earliest, |c| c.last().is_some_and(|l| *l > now)))
            .collect();
        merged.sort();
        merged.dedup();
        let due_times: Vec<Timestamp> = merged.iter().copied().filter(|f| *f <= now).collect();
        prop_assert_eq!(d.missed, (due_times.len() as u64).min(MISSED_COUNT_CAP));
        prop_assert_eq!(d.run_for.or(d.missed_past_deadline), due_times.last().copied());
        if let (Some(last), Some(secs)) = (due_times.last(), deadline) {
            let fresh = *last + SignedDuration::from_secs(secs) > now;
            prop_assert_eq!(d.run_for.is_some(), fresh);
        }
        if now >= earliest {
            prop_assert_eq!(d.next, merged.iter().copied().find(|f| *f > now));
        }
    }
}
