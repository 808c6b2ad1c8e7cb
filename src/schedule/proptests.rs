//! Property tests: ordering and interval invariants, `due` against a naive walk, the
//! previous fire time against `Next`, two independent oracles for the wall-clock matching
//! (croner in UTC, and a minute-by-minute scan in DST zones), a backfill's fire times against
//! a scan of its range, and "parsing never panics".

use std::cmp::Ordering;

use croner::{CivilDateTime, CronDateTime, Resolution, errors::CronError};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use proptest::prelude::*;

use super::due::MISSED_COUNT_CAP;
use super::*;

/// Zones with ordinary DST rules (or none), where robfig's result is simply "the first
/// instant whose wall clock matches".
const PLAIN_ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
];

/// Plain zones plus the awkward ones: half-hour DST (Lord Howe), 45-minute offsets
/// (Chatham), clocks that change at midnight (Sao Paulo until 2019, Cairo, Beirut,
/// Havana, Santiago, Asuncion) or at 00:01 (St. John's until 2011), and a skipped day
/// (Apia, 2011).
const ALL_ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "Africa/Cairo",
    "Asia/Beirut",
    "America/Havana",
    "America/Santiago",
    "America/Asuncion",
    "America/St_Johns",
    "Pacific/Apia",
];

const MONTH_NAMES: &[&str] = &[
    "jan", "FEB", "Mar", "apr", "MAY", "jun", "Jul", "aug", "SEP", "oct", "Nov", "dec",
];
const DOW_NAMES: &[&str] = &["sun", "MON", "Tue", "wed", "THU", "fri", "Sat"];

fn zone(name: &str) -> TimeZone {
    parse_time_zone(Some(name)).unwrap()
}

fn arb_zone(names: &'static [&'static str]) -> impl Strategy<Value = (&'static str, TimeZone)> {
    prop::sample::select(names).prop_map(|n| (n, zone(n)))
}

/// Instants between 1990 and 2060, with sub-second parts.
fn arb_instant() -> impl Strategy<Value = Timestamp> {
    (631_152_000i64..2_871_763_200, 0i32..1_000_000_000)
        .prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap())
}

/// One robfig-valid field: 1–3 comma-separated elements using every form the parser
/// knows (`*`, `?`, `*/n`, `v`, names, `a-b`, `a-b/n`, `a/n`).
fn arb_field(min: u32, max: u32, names: &'static [&'static str]) -> BoxedStrategy<String> {
    let value: BoxedStrategy<String> = if names.is_empty() {
        (min..=max).prop_map(|v| v.to_string()).boxed()
    } else {
        prop_oneof![
            (min..=max).prop_map(|v| v.to_string()),
            (min..=max).prop_map(move |v| names[(v - min) as usize].to_string()),
        ]
        .boxed()
    };
    let range = (min..=max, min..=max).prop_map(|(a, b)| (a.min(b), a.max(b)));
    let element = prop_oneof![
        3 => Just("*".to_string()),
        1 => Just("?".to_string()),
        2 => (1..=max + 1).prop_map(|s| format!("*/{s}")),
        3 => value,
        2 => range.clone().prop_map(|(a, b)| format!("{a}-{b}")),
        1 => (range, 1..=max + 1).prop_map(|((a, b), s)| format!("{a}-{b}/{s}")),
        1 => (min..=max, 1..=max + 1).prop_map(|(a, s)| format!("{a}/{s}")),
    ];
    prop::collection::vec(element, 1..=3)
        .prop_map(|v| v.join(","))
        .boxed()
}

fn arb_cron_expr() -> impl Strategy<Value = String> {
    (
        arb_field(0, 59, &[]),
        arb_field(0, 23, &[]),
        arb_field(1, 31, &[]),
        arb_field(1, 12, MONTH_NAMES),
        arb_field(0, 6, DOW_NAMES),
    )
        .prop_map(|(mi, h, dom, mon, dow)| format!("{mi} {h} {dom} {mon} {dow}"))
}

/// Frequent schedules (every day), so that a brute-force scan finds the answer fast.
fn arb_daily_expr() -> impl Strategy<Value = String> {
    (
        arb_field(0, 59, &[]),
        arb_field(0, 23, &[]),
        prop_oneof![Just("*".to_string()), arb_field(0, 6, DOW_NAMES)],
    )
        .prop_map(|(mi, h, dow)| format!("{mi} {h} * * {dow}"))
}

fn arb_schedule_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => arb_cron_expr(),
        1 => prop::sample::select(&[
            "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
        ][..])
        .prop_map(str::to_string),
        1 => (1u64..200_000).prop_map(|s| format!("@every {s}s")),
    ]
}

/// The whole instants of `tz`'s wall clock, as robfig reads them.
fn wall_matches(expr: &str, tz: &TimeZone, t: Timestamp) -> bool {
    wall_matcher(expr)(tz, t)
}

/// [`wall_matches`] for one expression, its fields read once (for scans of many instants).
fn wall_matcher(expr: &str) -> impl Fn(&TimeZone, Timestamp) -> bool {
    let Kind::Cron(spec) = &Schedule::parse(expr).unwrap().kind else {
        unreachable!("cron expressions only")
    };
    let [minutes, hours, doms, months, dows] = spec.field_values();
    let anded = spec.days_anded();
    move |tz, t| {
        let dt = tz.to_datetime(t);
        let has = |set: &[u64], v: i8| set.contains(&(v as u64));
        let dom = has(&doms, dt.day());
        let dow = has(&dows, dt.weekday().to_sunday_zero_offset());
        let day = if anded { dom && dow } else { dom || dow };
        dt.second() == 0
            && dt.subsec_nanosecond() == 0
            && has(&minutes, dt.minute())
            && has(&hours, dt.hour())
            && has(&months, dt.month())
            && day
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Fire times are whole seconds, strictly after the starting point and strictly
    /// increasing, in every zone.
    #[test]
    fn fire_times_strictly_increase(
        expr in arb_schedule_text(),
        (_, tz) in arb_zone(ALL_ZONES),
        from in arb_instant(),
    ) {
        let schedule = Schedule::parse(&expr).unwrap();
        let fires = preview(&schedule, &tz, from, 6);
        prop_assert_eq!(fires.first().copied(), schedule.next_after(from, &tz));
        let mut previous = from;
        for fire in fires {
            prop_assert!(fire > previous, "{} then {}", previous, fire);
            prop_assert_eq!(fire.subsec_nanosecond(), 0);
            previous = fire;
        }
    }

    /// In zones without midnight transitions every fire time reads, on the wall clock,
    /// as a time the expression names.
    #[test]
    fn fire_times_match_their_fields(
        expr in arb_cron_expr(),
        (_, tz) in arb_zone(PLAIN_ZONES),
        from in arb_instant(),
    ) {
        let schedule = Schedule::parse(&expr).unwrap();
        for fire in preview(&schedule, &tz, from, 3) {
            prop_assert!(wall_matches(&expr, &tz, fire), "{} at {}", expr, fire);
        }
    }

    /// `@every d` fires at floor(t) + d, then every d exactly, whatever the zone.
    #[test]
    fn every_fires_at_exact_intervals(
        h in 0u32..50, m in 0u32..120, s in 0u32..120,
        from in arb_instant(),
        (_, tz) in arb_zone(ALL_ZONES),
    ) {
        let d = i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s);
        prop_assume!(d > 0);
        let schedule = Schedule::parse(&format!("@every {h}h{m}m{s}s")).unwrap();
        let fires = preview(&schedule, &tz, from, 5);
        prop_assert_eq!(fires.len(), 5);
        let floor = from.as_second() - i64::from(from.subsec_nanosecond() < 0);
        prop_assert_eq!(fires[0].as_second(), floor + d);
        for pair in fires.windows(2) {
            prop_assert_eq!(pair[1].as_second() - pair[0].as_second(), d);
        }
        prop_assert_eq!(fires, preview(&schedule, &TimeZone::UTC, from, 5));
    }

    /// `due` agrees with a naive walk of the chain from `earliest`, and its answers are
    /// always in range: run_for in (earliest, now], next after now.
    #[test]
    fn due_matches_naive_walk(
        expr in arb_schedule_text(),
        (_, tz) in arb_zone(ALL_ZONES),
        earliest in arb_instant(),
        gap in -3_600i64..(40 * 86_400),
        deadline in prop::option::of(-10i64..200_000),
    ) {
        let schedule = Schedule::parse(&expr).unwrap();
        let now = earliest + SignedDuration::from_secs(gap);
        let d = due(&schedule, &tz, earliest, now, deadline);

        let mut naive = Vec::new();
        let mut cursor = schedule.next_after(earliest, &tz);
        while let Some(fire) = cursor.filter(|f| *f <= now) {
            naive.push(fire);
            if naive.len() as u64 > MISSED_COUNT_CAP {
                break;
            }
            cursor = schedule.next_after(fire, &tz);
        }
        prop_assert_eq!(d.missed, (naive.len() as u64).min(MISSED_COUNT_CAP));
        let found = d.run_for.or(d.missed_past_deadline);
        prop_assert!(d.run_for.is_none() || d.missed_past_deadline.is_none());
        prop_assert_eq!(found.is_some(), !naive.is_empty());
        if let Some(last) = found {
            prop_assert!(last <= now && last > earliest);
            if let Some(secs) = deadline {
                let fresh = last + SignedDuration::from_secs(secs) > now;
                prop_assert_eq!(d.run_for.is_some(), fresh);
            }
        }
        if let Some(next) = d.next {
            prop_assert!(next > now);
        }
        // Below the cap the walk is complete, so the answers must be identical (above
        // it, `due_far_behind_finds_the_most_recent` covers the bisection).
        if naive.len() as u64 <= MISSED_COUNT_CAP {
            prop_assert_eq!(found, naive.last().copied());
            if now >= earliest {
                prop_assert_eq!(d.next, cursor.or_else(|| schedule.next_after(now, &tz)));
            }
        }
    }

    /// Far behind with a dense schedule (the bisection path): the answer is a fire time,
    /// not after now, and no fire time lies between it and now.
    #[test]
    fn due_far_behind_finds_the_most_recent(
        minute in arb_field(0, 59, &[]),
        hour in arb_field(0, 23, &[]),
        dow in prop_oneof![Just("*".to_string()), arb_field(0, 6, DOW_NAMES)],
        (_, tz) in arb_zone(PLAIN_ZONES),
        now in arb_instant(),
        years in 1i64..30,
    ) {
        let schedule = Schedule::parse(&format!("{minute} {hour} * * {dow}")).unwrap();
        let earliest = now - SignedDuration::from_hours(years * 365 * 24);
        let d = due(&schedule, &tz, earliest, now, None);
        let last = d.run_for.expect("a daily-ish schedule fires within years");
        prop_assert!(last <= now && last > earliest);
        prop_assert_eq!(
            schedule.next_after(last - SignedDuration::from_secs(1), &tz),
            Some(last)
        );
        let after = schedule.next_after(last, &tz).unwrap();
        prop_assert!(after > now);
        prop_assert_eq!(d.next, Some(after));
        prop_assert!((1..=MISSED_COUNT_CAP).contains(&d.missed));
    }

    /// The previous fire of a fire time `t` is before it, and `Next` of it is `t` again: the
    /// data intervals of consecutive runs meet, with no fire time inside one. (Every schedule
    /// here that fires at all fires within eight years, and these `t` are far from 2100.)
    /// Plain zones only: where clocks change at midnight, robfig's chain can step over a time
    /// its `Next` answers from elsewhere (the day nudge in cron.rs), so no fire time leads to
    /// it; the next property covers those zones.
    #[test]
    fn previous_fire_is_the_one_next_steps_over(
        expr in arb_schedule_text(),
        (_, tz) in arb_zone(PLAIN_ZONES),
        from in arb_instant(),
    ) {
        let schedule = Schedule::parse(&expr).unwrap();
        let Some(t) = schedule.next_after(from, &tz) else {
            return Ok(());
        };
        let previous = schedule.previous_before(t, &tz);
        let p = previous.expect("a schedule that fires fires within eight years");
        prop_assert!(p < t, "{} is not before {}", p, t);
        prop_assert_eq!(schedule.next_after(p, &tz), Some(t), "{} in {:?}", expr, tz);
    }

    /// For any instant, no fire time lies between its previous fire time and it. Where clocks
    /// change at midnight, robfig's `Next` can answer a time that `Next` of the second before
    /// does not (its day nudge, see cron.rs), so only the plain zones check that the previous
    /// fire time is what `Next` of the second before it gives.
    #[test]
    fn no_fire_time_between_the_previous_and_any_instant(
        expr in arb_cron_expr(),
        (name, tz) in arb_zone(ALL_ZONES),
        at in arb_instant(),
    ) {
        let schedule = Schedule::parse(&expr).unwrap();
        if let Some(p) = schedule.previous_before(at, &tz) {
            prop_assert!(p < at);
            if PLAIN_ZONES.contains(&name) {
                let second_before = p - SignedDuration::from_secs(1);
                prop_assert_eq!(schedule.next_after(second_before, &tz), Some(p));
            }
            let next = schedule.next_after(p, &tz);
            prop_assert!(next.is_none_or(|n| n >= at), "{} fires at {:?}, before {}", expr, next, at);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Parsing arbitrary text never panics, and whatever parses can be evaluated.
    #[test]
    fn parse_never_panics(text in ".{0,40}", from in arb_instant()) {
        if let Ok(schedule) = Schedule::parse(&text) {
            let _ = schedule.next_after(from, &TimeZone::UTC);
        }
    }

    /// The same with text built from cron's own alphabet, which reaches deeper into the
    /// field parser.
    #[test]
    fn parse_cronish_never_panics(
        text in "[0-9*?/,\\- LW#@a-zA-Z+\t]{0,30}",
        from in arb_instant(),
        (_, tz) in arb_zone(ALL_ZONES),
    ) {
        if let Ok(schedule) = Schedule::parse(&text) {
            let _ = schedule.next_after(from, &tz);
            let _ = due(&schedule, &tz, from, from + SignedDuration::from_hours(24), Some(60));
        }
    }

    /// `@every` with arbitrary duration text never panics either.
    #[test]
    fn every_at_the_integer_edges_never_panics(
        n in prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(0i64), Just(i64::MAX / 1_000_000_000), proptest::num::i64::ANY],
        unit in prop_oneof![Just("ns"), Just("us"), Just("ms"), Just("s"), Just("m"), Just("h")],
        extra in prop_oneof![Just(""), Just("0"), Just("9999999999"), Just(".5"), Just("e9")],
        from in arb_instant(),
    ) {
        if let Ok(s) = Schedule::parse(&format!("@every {n}{extra}{unit}")) {
            let _ = s.next_after(from, &TimeZone::UTC);
        }
    }

    #[test]
    fn every_parse_never_panics(text in "[0-9.+\\-µμnsuhm ]{0,30}") {
        if let Ok(schedule) = Schedule::parse(&format!("@every {text}")) {
            prop_assert!(schedule.every_interval().unwrap().as_secs() >= 1);
        }
    }

    /// Time zone names: never a panic, and only IANA names get through.
    #[test]
    fn time_zone_parse_never_panics(name in ".{0,30}") {
        if let Ok(tz) = parse_time_zone(Some(&name)) {
            prop_assert!(name.is_empty() || tz.iana_name() == Some(name.as_str()));
        }
    }
}

/// croner's civil search, driven through its backend trait on plain UTC seconds.
#[derive(Debug, Clone, Copy)]
struct UtcSeconds(i64);

impl UtcSeconds {
    fn datetime(self) -> jiff::civil::DateTime {
        TimeZone::UTC.to_datetime(Timestamp::from_second(self.0).unwrap())
    }
}

impl CronDateTime for UtcSeconds {
    fn to_civil(&self) -> CivilDateTime {
        let dt = self.datetime();
        CivilDateTime::from_ymd_hms_opt(
            dt.year().into(),
            dt.month() as u32,
            dt.day() as u32,
            dt.hour() as u32,
            dt.minute() as u32,
            dt.second() as u32,
        )
        .unwrap()
    }

    fn civil_weekday(&self) -> croner::Weekday {
        croner::Weekday::from_days_from_sunday(
            self.datetime().weekday().to_sunday_zero_offset() as u32
        )
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        let dt = jiff::civil::DateTime::new(
            i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?,
            civil.month() as i8,
            civil.day() as i8,
            civil.hour() as i8,
            civil.minute() as i8,
            civil.second() as i8,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        let ts = TimeZone::UTC
            .to_timestamp(dt)
            .map_err(|_| CronError::InvalidDate)?;
        Ok(Resolution::Single(UtcSeconds(ts.as_second())))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0.checked_add(seconds).map(UtcSeconds)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

/// The same schedule in croner's syntax: explicit value lists (so croner's own
/// wildcard detection plays no part) and robfig's AND/OR decision passed as croner's
/// `dom_and_dow` option.
fn croner_equivalent(expr: &str) -> Option<croner::Cron> {
    let Kind::Cron(spec) = &Schedule::parse(expr).ok()?.kind else {
        return None;
    };
    let fields = spec.field_values();
    if fields.iter().any(Vec::is_empty) {
        return None;
    }
    let pattern = fields
        .iter()
        .map(|values| {
            values
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(" ");
    croner::parser::CronParser::builder()
        .dom_and_dow(spec.days_anded())
        .build()
        .parse(&pattern)
        .ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// In UTC, where DST plays no part, robfig's `Next` and croner's search agree on
    /// every schedule for which robfig finds a time within its five-year horizon.
    #[test]
    fn agrees_with_croner_in_utc(expr in arb_cron_expr(), from in arb_instant()) {
        let ours = Schedule::parse(&expr).unwrap().next_after(from, &TimeZone::UTC);
        let cron = croner_equivalent(&expr).expect("croner accepts the translation");
        if let Some(ours) = ours {
            let floor = from.as_second() - i64::from(from.subsec_nanosecond() < 0);
            let theirs = cron
                .find_next_occurrence(&UtcSeconds(floor), false)
                .map(|t| t.0)
                .map_err(|e| e.to_string());
            prop_assert_eq!(Ok(ours.as_second()), theirs, "{}", expr);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// In zones with ordinary DST, the next fire time is the first whole minute after
    /// `from`, on the real time line, whose wall clock matches: gap times never fire,
    /// repeated times fire at both instants. Checked by scanning minute by minute.
    #[test]
    fn agrees_with_minute_scan_in_dst_zones(
        expr in arb_daily_expr(),
        (_, tz) in arb_zone(PLAIN_ZONES),
        from in arb_instant(),
    ) {
        let ours = Schedule::parse(&expr).unwrap().next_after(from, &tz);
        let mut minute = (from.as_second().div_euclid(60) + 1) * 60;
        let scan = loop {
            let t = Timestamp::from_second(minute).unwrap();
            if wall_matches(&expr, &tz, t) {
                break Some(t);
            }
            if minute > from.as_second() + 8 * 86_400 {
                break None;
            }
            minute += 60;
        };
        prop_assert_eq!(ours, scan);
    }
}

/// A member of a backfilled schedule set: mostly crons that fire every day, some of any kind,
/// some `@every`.
fn arb_backfill_member() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => arb_daily_expr(),
        2 => arb_cron_expr(),
        2 => (30u64..20_000).prop_map(|s| format!("@every {s}s")),
    ]
}

/// The fire times of `exprs` as one set (anchored at `anchor`) in `[from, to)`, found without
/// `Next`: a cron member fires at each whole minute whose wall clock it matches; an `@every`
/// member of several at `floor(anchor) + k·d`, k >= 1; a lone `@every` at `from` (to the
/// second) and every `d` after.
fn scanned_fire_times(
    exprs: &[String],
    tz: &TimeZone,
    anchor: Timestamp,
    from: Timestamp,
    to: Timestamp,
) -> Vec<Timestamp> {
    let mut members: Vec<(Schedule, &String)> = Vec::new();
    for e in exprs {
        let m = Schedule::parse(e).unwrap();
        if !members.iter().any(|(o, _)| *o == m) {
            members.push((m, e));
        }
    }
    let start = from.as_second() + i64::from(from.subsec_nanosecond() > 0);
    let end = to.as_second() + i64::from(to.subsec_nanosecond() > 0);
    let lone = members.len() == 1;
    let mut out = Vec::new();
    for (m, expr) in &members {
        let seconds: Vec<i64> = match m.every_interval() {
            Some(d) => {
                let d = i64::try_from(d.as_secs()).unwrap();
                let first = match lone {
                    true => start,
                    // The first of floor(anchor) + k·d, k >= 1, at or after `start`.
                    false => {
                        let base = anchor.as_second();
                        base + d * ((start - base).max(1) + d - 1).div_euclid(d)
                    }
                };
                (first..end).step_by(usize::try_from(d).unwrap()).collect()
            }
            None => {
                let matches = wall_matcher(expr);
                let minute = (start + 59).div_euclid(60) * 60;
                (minute..end)
                    .step_by(60)
                    .filter(|&s| matches(tz, Timestamp::from_second(s).unwrap()))
                    .collect()
            }
        };
        out.extend(
            seconds
                .into_iter()
                .map(|s| Timestamp::from_second(s).unwrap()),
        );
    }
    out.sort();
    out.dedup();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A backfill's fire times (`range::fire_times`: the chain of `Next` from the start of the
    /// range) are every instant of the range at which the schedule fires, oldest first, and
    /// `range::count` counts them, or says "more than" past its cap. In zones whose clocks
    /// never change (across a change robfig's chain depends on where it is walked from: see
    /// `set_tests.rs`).
    #[test]
    fn backfill_fire_times_are_every_fire_of_the_range(
        exprs in prop::collection::vec(arb_backfill_member(), 1..=3),
        zone in prop::sample::select(&["UTC", "Asia/Kolkata", "Asia/Kathmandu"][..]),
        from in arb_instant(),
        since in 0i64..(3 * 86_400),
        len in 1i64..(2 * 86_400),
        pick in 0usize..80,
    ) {
        let tz = parse_time_zone(Some(zone)).unwrap();
        let anchor = from - SignedDuration::from_secs(since);
        let to = from + SignedDuration::from_secs(len);
        let members = exprs.iter().map(|e| Schedule::parse(e).unwrap()).collect();
        let set = ScheduleSet::new(members, anchor).unwrap();
        let got: Vec<Timestamp> = range::fire_times(&set, &tz, from, to).collect();
        let want = scanned_fire_times(&exprs, &tz, anchor, from, to);
        prop_assert_eq!(&got, &want, "{:?} in {} from {} to {}", exprs, zone, from, to);
        // Half the time a cap below 40, else one next to the count.
        let n = want.len();
        let cap = if pick < 40 { pick } else { (n + pick % 3).saturating_sub(1) };
        let counted = match n > cap {
            true => range::Count::MoreThan(cap),
            false => range::Count::Exactly(n),
        };
        prop_assert_eq!(range::count(&set, &tz, from, to, cap), counted);
        let first = range::first_at_or_after(&set, &tz, from).filter(|&t| t < to);
        prop_assert_eq!(first, want.first().copied());
    }
}
