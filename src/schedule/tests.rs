//! Table-driven acceptance tests.
//!
//! Every expected value below comes from an outside source, cited above its group:
//! robfig/cron v3 (spec_test.go, parser_test.go, constantdelay_test.go, or the
//! behaviour its parser.go/spec.go spell out), Kubernetes
//! (pkg/controller/cronjob/utils_test.go, apis/batch/validation), or the calendar. None
//! was produced by running this module.

use jiff::{Timestamp, tz::TimeZone};

use super::due::{Due, MISSED_COUNT_CAP};
use super::*;

/// `"2012-07-09T14:45:00Z"` → timestamp; offsets such as `-05:00` are accepted.
fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad test timestamp {s:?}: {e}"))
}

/// `""` is UTC; `"+05:30"` is a fixed offset (robfig's TestNextWithTz parses times with
/// a numeric offset and evaluates the schedule in that fixed zone); anything else is an
/// IANA name.
fn zone(name: &str) -> TimeZone {
    match name {
        "" => TimeZone::UTC,
        "+05:30" => TimeZone::fixed(jiff::tz::Offset::from_seconds(5 * 3600 + 30 * 60).unwrap()),
        name => parse_time_zone(Some(name)).unwrap_or_else(|e| panic!("{e}")),
    }
}

const NY: &str = "America/New_York";
const BERLIN: &str = "Europe/Berlin";

/// (expression, zone, after, expected next fire time or `None`).
type NextCase = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

fn check_next(cases: &[NextCase]) {
    let mut failures = Vec::new();
    for &(expr, tz, after, want) in cases {
        let schedule = match Schedule::parse(expr) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{expr:?}: unexpected parse error: {e}"));
                continue;
            }
        };
        let got = schedule.next_after(ts(after), &zone(tz));
        let want = want.map(ts);
        if got != want {
            failures.push(format!(
                "{expr:?} in {tz:?} after {after}: want {want:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// robfig/cron spec_test.go TestNext, the cases whose seconds field is 0 (written here
// without it, since ParseStandard has no seconds field). robfig runs the zone-less ones
// in time.Local; UTC is used here.
#[test]
fn robfig_test_next_simple_and_wrapping() {
    check_next(&[
        // Simple cases
        (
            "0/15 * * * *",
            "",
            "2012-07-09T14:45:00Z",
            Some("2012-07-09T15:00:00Z"),
        ),
        (
            "0/15 * * * *",
            "",
            "2012-07-09T14:59:00Z",
            Some("2012-07-09T15:00:00Z"),
        ),
        (
            "0/15 * * * *",
            "",
            "2012-07-09T14:59:59Z",
            Some("2012-07-09T15:00:00Z"),
        ),
        // Wrap around hours
        (
            "20-35/15 * * * *",
            "",
            "2012-07-09T15:45:00Z",
            Some("2012-07-09T16:20:00Z"),
        ),
        // Wrap around days
        (
            "*/15 * * * *",
            "",
            "2012-07-09T23:46:00Z",
            Some("2012-07-10T00:00:00Z"),
        ),
        (
            "20-35/15 * * * *",
            "",
            "2012-07-09T23:45:00Z",
            Some("2012-07-10T00:20:00Z"),
        ),
        // Wrap around months
        (
            "0 0 9 Apr-Oct ?",
            "",
            "2012-07-09T23:35:00Z",
            Some("2012-08-09T00:00:00Z"),
        ),
        (
            "0 0 */5 Apr,Aug,Oct Mon",
            "",
            "2012-07-09T23:35:00Z",
            Some("2012-08-01T00:00:00Z"),
        ),
        (
            "0 0 */5 Oct Mon",
            "",
            "2012-07-09T23:35:00Z",
            Some("2012-10-01T00:00:00Z"),
        ),
        // Wrap around years
        (
            "0 0 * Feb Mon",
            "",
            "2012-07-09T23:35:00Z",
            Some("2013-02-04T00:00:00Z"),
        ),
        (
            "0 0 * Feb Mon/2",
            "",
            "2012-07-09T23:35:00Z",
            Some("2013-02-01T00:00:00Z"),
        ),
        // Wrap around minute, hour, day, month, and year
        (
            "* * * * *",
            "",
            "2012-12-31T23:59:45Z",
            Some("2013-01-01T00:00:00Z"),
        ),
        // Leap year
        (
            "0 0 29 Feb ?",
            "",
            "2012-07-09T23:35:00Z",
            Some("2016-02-29T00:00:00Z"),
        ),
        // Unsatisfiable
        ("0 0 30 Feb ?", "", "2012-07-09T23:35:00Z", None),
        ("0 0 31 Apr ?", "", "2012-07-09T23:35:00Z", None),
    ]);
}

// robfig/cron spec_test.go TestNext, daylight saving time in America/New_York
// (schedules written there as "TZ=America/New_York 0 …"; the zone is passed separately
// here, as Kubernetes does with spec.timeZone). Note "1am nightly job (runs twice)":
// robfig fires a wall time that the fall-back repeats at both instants.
#[test]
fn robfig_test_next_new_york_dst() {
    check_next(&[
        // Daylight savings time 2am EST (-5) -> 3am EDT (-4)
        (
            "30 2 11 Mar ?",
            NY,
            "2012-03-11T00:00:00-05:00",
            Some("2013-03-11T02:30:00-04:00"),
        ),
        // hourly job
        (
            "0 * * * ?",
            NY,
            "2012-03-11T00:00:00-05:00",
            Some("2012-03-11T01:00:00-05:00"),
        ),
        (
            "0 * * * ?",
            NY,
            "2012-03-11T01:00:00-05:00",
            Some("2012-03-11T03:00:00-04:00"),
        ),
        (
            "0 * * * ?",
            NY,
            "2012-03-11T03:00:00-04:00",
            Some("2012-03-11T04:00:00-04:00"),
        ),
        (
            "0 * * * ?",
            NY,
            "2012-03-11T04:00:00-04:00",
            Some("2012-03-11T05:00:00-04:00"),
        ),
        // 1am nightly job
        (
            "0 1 * * ?",
            NY,
            "2012-03-11T00:00:00-05:00",
            Some("2012-03-11T01:00:00-05:00"),
        ),
        (
            "0 1 * * ?",
            NY,
            "2012-03-11T01:00:00-05:00",
            Some("2012-03-12T01:00:00-04:00"),
        ),
        // 2am nightly job (skipped)
        (
            "0 2 * * ?",
            NY,
            "2012-03-11T00:00:00-05:00",
            Some("2012-03-12T02:00:00-04:00"),
        ),
        // Daylight savings time 2am EDT (-4) => 1am EST (-5)
        (
            "30 2 04 Nov ?",
            NY,
            "2012-11-04T00:00:00-04:00",
            Some("2012-11-04T02:30:00-05:00"),
        ),
        (
            "30 1 04 Nov ?",
            NY,
            "2012-11-04T01:45:00-04:00",
            Some("2012-11-04T01:30:00-05:00"),
        ),
        // hourly job
        (
            "0 * * * ?",
            NY,
            "2012-11-04T00:00:00-04:00",
            Some("2012-11-04T01:00:00-04:00"),
        ),
        (
            "0 * * * ?",
            NY,
            "2012-11-04T01:00:00-04:00",
            Some("2012-11-04T01:00:00-05:00"),
        ),
        (
            "0 * * * ?",
            NY,
            "2012-11-04T01:00:00-05:00",
            Some("2012-11-04T02:00:00-05:00"),
        ),
        // 1am nightly job (runs twice)
        (
            "0 1 * * ?",
            NY,
            "2012-11-04T00:00:00-04:00",
            Some("2012-11-04T01:00:00-04:00"),
        ),
        (
            "0 1 * * ?",
            NY,
            "2012-11-04T01:00:00-04:00",
            Some("2012-11-04T01:00:00-05:00"),
        ),
        (
            "0 1 * * ?",
            NY,
            "2012-11-04T01:00:00-05:00",
            Some("2012-11-05T01:00:00-05:00"),
        ),
        // 2am nightly job
        (
            "0 2 * * ?",
            NY,
            "2012-11-04T00:00:00-04:00",
            Some("2012-11-04T02:00:00-05:00"),
        ),
        (
            "0 2 * * ?",
            NY,
            "2012-11-04T02:00:00-05:00",
            Some("2012-11-05T02:00:00-05:00"),
        ),
        // 3am nightly job
        (
            "0 3 * * ?",
            NY,
            "2012-11-04T00:00:00-04:00",
            Some("2012-11-04T03:00:00-05:00"),
        ),
        (
            "0 3 * * ?",
            NY,
            "2012-11-04T03:00:00-05:00",
            Some("2012-11-05T03:00:00-05:00"),
        ),
        // Monthly job
        (
            "0 3 3 * ?",
            NY,
            "2012-11-04T00:00:00-04:00",
            Some("2012-12-03T03:00:00-05:00"),
        ),
    ]);
}

// robfig/cron spec_test.go TestNext: "Test the scenario of DST resulting in midnight not
// being a valid time" (robfig issue 157, America/Sao_Paulo 2018).
#[test]
fn robfig_test_next_sao_paulo_midnight_gap() {
    const SP: &str = "America/Sao_Paulo";
    check_next(&[
        (
            "0 9 10 * ?",
            SP,
            "2018-10-17T05:00:00-04:00",
            Some("2018-11-10T06:00:00-05:00"),
        ),
        (
            "0 9 22 * ?",
            SP,
            "2018-02-14T05:00:00-05:00",
            Some("2018-02-22T07:00:00-05:00"),
        ),
    ]);
}

// robfig/cron spec_test.go TestNextWithTz: a schedule without a zone is evaluated in the
// zone of the time passed in, here a fixed +05:30.
#[test]
fn robfig_test_next_with_fixed_offset() {
    check_next(&[
        (
            "14 14 * * *",
            "+05:30",
            "2016-01-03T13:09:03+05:30",
            Some("2016-01-03T14:14:00+05:30"),
        ),
        (
            "14 14 * * ?",
            "+05:30",
            "2016-01-03T04:09:03+05:30",
            Some("2016-01-03T14:14:00+05:30"),
        ),
        (
            "14 14 * * *",
            "+05:30",
            "2016-01-03T14:09:03+05:30",
            Some("2016-01-03T14:14:00+05:30"),
        ),
        (
            "14 14 * * ?",
            "+05:30",
            "2016-01-03T14:00:00+05:30",
            Some("2016-01-03T14:14:00+05:30"),
        ),
    ]);
}

// robfig/cron spec_test.go TestActivation: `expected` says whether `time` is a fire
// time, checked as robfig does with Next(time - 1s) == time.
#[test]
fn robfig_test_activation() {
    let cases: &[(&str, &str, bool)] = &[
        // Every fifteen minutes.
        ("2012-07-09T15:00:00Z", "0/15 * * * *", true),
        ("2012-07-09T15:45:00Z", "0/15 * * * *", true),
        ("2012-07-09T15:40:00Z", "0/15 * * * *", false),
        // Every fifteen minutes, starting at 5 minutes.
        ("2012-07-09T15:05:00Z", "5/15 * * * *", true),
        ("2012-07-09T15:20:00Z", "5/15 * * * *", true),
        ("2012-07-09T15:50:00Z", "5/15 * * * *", true),
        // Named months
        ("2012-07-15T15:00:00Z", "0/15 * * Jul *", true),
        ("2012-07-15T15:00:00Z", "0/15 * * Jun *", false),
        // Everything set.
        ("2012-07-15T08:30:00Z", "30 08 ? Jul Sun", true),
        ("2012-07-15T08:30:00Z", "30 08 15 Jul ?", true),
        ("2012-07-16T08:30:00Z", "30 08 ? Jul Sun", false),
        ("2012-07-16T08:30:00Z", "30 08 15 Jul ?", false),
        // Predefined schedules
        ("2012-07-09T15:00:00Z", "@hourly", true),
        ("2012-07-09T15:04:00Z", "@hourly", false),
        ("2012-07-09T15:00:00Z", "@daily", false),
        ("2012-07-09T00:00:00Z", "@daily", true),
        ("2012-07-09T00:00:00Z", "@weekly", false),
        ("2012-07-08T00:00:00Z", "@weekly", true),
        ("2012-07-08T01:00:00Z", "@weekly", false),
        ("2012-07-08T00:00:00Z", "@monthly", false),
        ("2012-07-01T00:00:00Z", "@monthly", true),
        // Test interaction of DOW and DOM.
        // If both are restricted, then only one needs to match.
        ("2012-07-15T00:00:00Z", "* * 1,15 * Sun", true),
        ("2012-06-15T00:00:00Z", "* * 1,15 * Sun", true),
        ("2012-08-01T00:00:00Z", "* * 1,15 * Sun", true),
        ("2012-07-15T00:00:00Z", "* * */10 * Sun", true), // verifies robfig #70
        // However, if one has a star, then both need to match.
        ("2012-07-15T00:00:00Z", "* * * * Mon", false),
        ("2012-07-09T00:00:00Z", "* * 1,15 * *", false),
        ("2012-07-15T00:00:00Z", "* * 1,15 * *", true),
        ("2012-07-15T00:00:00Z", "* * */2 * Sun", true),
    ];
    let mut failures = Vec::new();
    for &(time, expr, expected) in cases {
        let t = ts(time);
        let next = Schedule::parse(expr)
            .unwrap()
            .next_after(t - jiff::SignedDuration::from_secs(1), &TimeZone::UTC);
        if (next == Some(t)) != expected {
            failures.push(format!(
                "{expr:?} at {time}: expected {expected}, next was {next:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// The day-of-month/day-of-week rule as robfig implements it (spec.go dayMatches: AND if
// either field has the star bit, else OR; parser.go getRange: the star bit is set by `*`
// or `?` and cleared by a step greater than 1; getField ORs list elements, so `1,*`
// carries it). 2012-07-14 is a Saturday, the 15th a Sunday, the 16th a Monday, the
// 20th a Friday.
#[test]
fn day_of_month_and_day_of_week_rule() {
    check_next(&[
        // `*/2` is not a star: OR, so the odd 15th matches before Monday.
        (
            "0 0 */2 * MON",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-15T00:00:00Z"),
        ),
        // `*/1` keeps the star bit: AND, so only Mondays.
        (
            "0 0 */1 * MON",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-16T00:00:00Z"),
        ),
        // `?` is a star.
        (
            "0 0 ? * MON",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-16T00:00:00Z"),
        ),
        (
            "0 0 1,15 * ?",
            "",
            "2012-07-02T00:00:00Z",
            Some("2012-07-15T00:00:00Z"),
        ),
        // A star inside a list still sets the star bit.
        (
            "0 0 1,* * MON",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-16T00:00:00Z"),
        ),
        (
            "0 0 * * 1,*",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-15T00:00:00Z"),
        ),
        // Both restricted: the 13th OR any Friday; the next Friday comes first.
        (
            "0 0 13 * FRI",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-20T00:00:00Z"),
        ),
        // Both restricted, day-of-month first.
        (
            "0 0 17 * FRI",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-17T00:00:00Z"),
        ),
        // A full range written without a star is not a star: OR, so every day matches.
        (
            "0 0 1-31 * MON",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-15T00:00:00Z"),
        ),
        // Day-of-week star, day-of-month restricted: AND, i.e. just the day of month.
        (
            "0 0 20 * *",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-20T00:00:00Z"),
        ),
    ]);
}

// Field syntax per robfig parser.go (names case-insensitive via strings.ToLower; `?` is
// accepted in every field; `a/n` means a to the field maximum; steps larger than the
// range select just the start; strconv.Atoi accepts a sign and leading zeros; `*-…` is
// read as `*`; empty list elements are skipped). 2012-07-09 is a Monday.
#[test]
fn field_syntax() {
    check_next(&[
        (
            "0 12 * * mon-FRI",
            "",
            "2012-07-14T00:00:00Z",
            Some("2012-07-16T12:00:00Z"),
        ),
        (
            "0 12 * * Sat,sun",
            "",
            "2012-07-09T00:00:00Z",
            Some("2012-07-14T12:00:00Z"),
        ),
        (
            "0 0 1 jan,JUL *",
            "",
            "2012-07-09T00:00:00Z",
            Some("2013-01-01T00:00:00Z"),
        ),
        (
            "0 0 1 AuG-sEp *",
            "",
            "2012-07-09T00:00:00Z",
            Some("2012-08-01T00:00:00Z"),
        ),
        (
            "? ? ? ? ?",
            "",
            "2012-07-09T10:00:30Z",
            Some("2012-07-09T10:01:00Z"),
        ),
        (
            "0 1/6 * * *",
            "",
            "2012-07-09T02:00:00Z",
            Some("2012-07-09T07:00:00Z"),
        ),
        (
            "0 1/6 * * *",
            "",
            "2012-07-09T19:00:00Z",
            Some("2012-07-10T01:00:00Z"),
        ),
        (
            "0 22/6 * * *",
            "",
            "2012-07-09T23:00:00Z",
            Some("2012-07-10T22:00:00Z"),
        ),
        (
            "10-40/15 * * * *",
            "",
            "2012-07-09T10:26:00Z",
            Some("2012-07-09T10:40:00Z"),
        ),
        (
            "10-40/15 * * * *",
            "",
            "2012-07-09T10:40:00Z",
            Some("2012-07-09T11:10:00Z"),
        ),
        (
            "*/100 * * * *",
            "",
            "2012-07-09T10:00:30Z",
            Some("2012-07-09T11:00:00Z"),
        ),
        (
            "5,10,50-52 * * * *",
            "",
            "2012-07-09T10:11:00Z",
            Some("2012-07-09T10:50:00Z"),
        ),
        (
            "+5 * * * *",
            "",
            "2012-07-09T10:00:00Z",
            Some("2012-07-09T10:05:00Z"),
        ),
        (
            "05 * * * *",
            "",
            "2012-07-09T10:06:00Z",
            Some("2012-07-09T11:05:00Z"),
        ),
        (
            "*-5 * * * *",
            "",
            "2012-07-09T10:06:00Z",
            Some("2012-07-09T10:07:00Z"),
        ),
        (
            "1,,2 * * * *",
            "",
            "2012-07-09T10:01:30Z",
            Some("2012-07-09T10:02:00Z"),
        ),
        ("0 0 , * *", "", "2012-07-09T10:00:00Z", None),
        (
            "0\t0  *\n* *",
            "",
            "2012-07-09T10:00:00Z",
            Some("2012-07-10T00:00:00Z"),
        ),
        (
            " 0 0 * * * ",
            "",
            "2012-07-09T10:00:00Z",
            Some("2012-07-10T00:00:00Z"),
        ),
    ]);
}

// Macros, per robfig parser.go parseDescriptor (@yearly/@annually = 0 0 1 1 *,
// @monthly = 0 0 1 * *, @weekly = 0 0 * * 0, @daily/@midnight = 0 0 * * *,
// @hourly = 0 * * * *). 2012-07-09 is a Monday.
#[test]
fn macros() {
    check_next(&[
        (
            "@yearly",
            "",
            "2012-07-09T10:00:00Z",
            Some("2013-01-01T00:00:00Z"),
        ),
        (
            "@annually",
            "",
            "2012-07-09T10:00:00Z",
            Some("2013-01-01T00:00:00Z"),
        ),
        (
            "@monthly",
            "",
            "2012-07-09T10:00:00Z",
            Some("2012-08-01T00:00:00Z"),
        ),
        (
            "@weekly",
            "",
            "2012-07-09T10:00:00Z",
            Some("2012-07-15T00:00:00Z"),
        ),
        (
            "@daily",
            "",
            "2012-07-09T10:00:00Z",
            Some("2012-07-10T00:00:00Z"),
        ),
        (
            "@midnight",
            "",
            "2012-07-09T10:00:00Z",
            Some("2012-07-10T00:00:00Z"),
        ),
        (
            "@hourly",
            "",
            "2012-07-09T10:00:00Z",
            Some("2012-07-09T11:00:00Z"),
        ),
        // Macros follow spec.timeZone like any other cron schedule: Berlin midnight
        // after the 2027 spring change is 22:00Z.
        (
            "@daily",
            BERLIN,
            "2027-03-27T23:30:00Z",
            Some("2027-03-28T22:00:00Z"),
        ),
        (
            "@hourly",
            NY,
            "2012-03-11T06:00:00Z",
            Some("2012-03-11T07:00:00Z"),
        ),
    ]);
    assert_eq!(
        Schedule::parse("@daily").unwrap(),
        Schedule::parse("0 0 * * *").unwrap()
    );
    assert_eq!(
        Schedule::parse("@weekly").unwrap(),
        Schedule::parse("0 0 * * SUN").unwrap()
    );
}

// The calendar: 2028 is the next leap year after 2025; 2100 is not a leap year, so
// after 2096 the next 29 February is in 2104, beyond robfig's horizon (spec.go: "If no
// time is found within five years, return zero").
#[test]
fn leap_days_and_the_five_year_horizon() {
    check_next(&[
        (
            "0 0 29 2 *",
            "",
            "2025-01-01T00:00:00Z",
            Some("2028-02-29T00:00:00Z"),
        ),
        (
            "0 0 29 2 *",
            "",
            "2028-02-29T00:00:00Z",
            Some("2032-02-29T00:00:00Z"),
        ),
        (
            "0 0 29 2 *",
            BERLIN,
            "2025-06-01T00:00:00Z",
            Some("2028-02-28T23:00:00Z"),
        ),
        ("0 0 29 2 *", "", "2096-03-01T00:00:00Z", None),
        (
            "0 0 28 2 *",
            "",
            "2096-03-01T00:00:00Z",
            Some("2097-02-28T00:00:00Z"),
        ),
    ]);
}

// Europe/Berlin, 2027: clocks go from 02:00 CET to 03:00 CEST on 28 March and from
// 03:00 CEST back to 02:00 CET on 31 October. Expected values apply robfig's documented
// DST behaviour (the New York cases above: a time in the gap is skipped, a repeated
// time fires at both instants) to these transitions.
#[test]
fn berlin_dst() {
    check_next(&[
        // 02:30 does not exist on 28 March: skipped, next is 29 March 02:30 CEST.
        (
            "30 2 * * *",
            BERLIN,
            "2027-03-27T12:00:00Z",
            Some("2027-03-29T00:30:00Z"),
        ),
        // Hourly: 01:00 CET is followed by 03:00 CEST.
        (
            "0 * * * *",
            BERLIN,
            "2027-03-28T00:00:00Z",
            Some("2027-03-28T01:00:00Z"),
        ),
        (
            "0 * * * *",
            BERLIN,
            "2027-03-28T00:30:00Z",
            Some("2027-03-28T01:00:00Z"),
        ),
        // A job at 03:00 is not affected by the gap.
        (
            "0 3 * * *",
            BERLIN,
            "2027-03-27T12:00:00Z",
            Some("2027-03-28T01:00:00Z"),
        ),
        // 02:30 happens twice on 31 October: first CEST (00:30Z), then CET (01:30Z).
        (
            "30 2 * * *",
            BERLIN,
            "2027-10-30T12:00:00Z",
            Some("2027-10-31T00:30:00Z"),
        ),
        (
            "30 2 * * *",
            BERLIN,
            "2027-10-31T00:30:00Z",
            Some("2027-10-31T01:30:00Z"),
        ),
        (
            "30 2 * * *",
            BERLIN,
            "2027-10-31T01:30:00Z",
            Some("2027-11-01T01:30:00Z"),
        ),
        // Hourly through the repeated hour: 02:00 CEST, 02:00 CET, 03:00 CET.
        (
            "0 * * * *",
            BERLIN,
            "2027-10-30T23:30:00Z",
            Some("2027-10-31T00:00:00Z"),
        ),
        (
            "0 * * * *",
            BERLIN,
            "2027-10-31T00:00:00Z",
            Some("2027-10-31T01:00:00Z"),
        ),
        (
            "0 * * * *",
            BERLIN,
            "2027-10-31T01:00:00Z",
            Some("2027-10-31T02:00:00Z"),
        ),
        // Weekdays at 09:00 across the spring change (Friday 26th, then Monday 29th).
        (
            "0 9 * * 1-5",
            BERLIN,
            "2027-03-26T08:00:00Z",
            Some("2027-03-29T07:00:00Z"),
        ),
    ]);
}

// America/New_York, 2027 (14 March: 02:00 EST → 03:00 EDT; 7 November: 02:00 EDT →
// 01:00 EST), robfig's rules as above.
#[test]
fn new_york_dst_2027() {
    check_next(&[
        (
            "30 2 * * *",
            NY,
            "2027-03-13T12:00:00Z",
            Some("2027-03-15T06:30:00Z"),
        ),
        (
            "30 1 * * *",
            NY,
            "2027-11-06T12:00:00Z",
            Some("2027-11-07T05:30:00Z"),
        ),
        (
            "30 1 * * *",
            NY,
            "2027-11-07T05:30:00Z",
            Some("2027-11-07T06:30:00Z"),
        ),
        (
            "30 1 * * *",
            NY,
            "2027-11-07T06:30:00Z",
            Some("2027-11-08T06:30:00Z"),
        ),
    ]);
}

// A robfig quirk that Kubernetes ships: in a zone east of UTC whose clocks jump at
// midnight, the day-of-month loop in spec.go ("Notice if the hour is no longer midnight
// due to DST ... subtract an hour if it's 1") steps back into the previous day and the
// day of the change is skipped. Cairo, 2024-04-26 00:00 EET → 01:00 EEST: a job on the
// 26th at 05:00 next runs on 26 May (05:00 EEST = 02:00Z). Derived by tracing spec.go.
#[test]
fn midnight_dst_quirk_is_reproduced() {
    check_next(&[(
        "0 5 26 * *",
        "Africa/Cairo",
        "2024-04-25T03:00:00Z",
        Some("2024-05-26T02:00:00Z"),
    )]);
}

// Another spec.go behaviour on backward clock changes: the search walks forward second
// by second (`t.Add(1 * time.Second)`), and when that walk crosses a fall-back the wall
// clock can land in the previous month; with `added` set, the month loop then moves on
// with `AddDate(0, 1, 0)` from that wall time (31 October + 1 month = 1 December) and
// does not come back. St. John's changed clocks at 00:01 until 2011: on 2009-11-01 00:01
// NDT it became 2009-10-31 23:01 NST. "Every minute in November" fires at 00:00 NDT on
// 1 November 2009 and then not again until 1 November 2010 at 23:01 NDT (01:31Z on the
// 2nd). Derived by tracing spec.go.
#[test]
fn backward_change_into_previous_month_is_reproduced() {
    check_next(&[
        (
            "* * * 11 *",
            "America/St_Johns",
            "2009-11-01T02:29:00Z",
            Some("2009-11-01T02:30:00Z"),
        ),
        (
            "* * * 11 *",
            "America/St_Johns",
            "2009-11-01T02:30:00Z",
            Some("2010-11-02T01:31:00Z"),
        ),
    ]);
}

// Where robfig does not return at all, this returns None. Samoa skipped 30 December
// 2011; Go's time.Date resolves that day's midnight to midnight of the 29th, so
// robfig's day loop never advances past a non-matching 29th (spec.go's `for
// !dayMatches(s, t)` loop spins forever). A Monday-only schedule evaluated from Monday
// afternoon, 26 December (local), walks into it.
#[test]
fn day_that_never_happened_gives_none_instead_of_hanging() {
    let started = std::time::Instant::now();
    check_next(&[("0 0 * * 1", "Pacific/Apia", "2011-12-27T00:00:00Z", None)]);
    // Later dates are unaffected: 2 January 2012 is a Monday (+14:00).
    check_next(&[(
        "0 0 * * 1",
        "Pacific/Apia",
        "2011-12-31T12:00:00Z",
        Some("2012-01-01T10:00:00Z"),
    )]);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

// @every, robfig constantdelay_test.go TestConstantDelayNext (durations written in Go
// syntax): next = t + delay - t's sub-second part; delays under a second become one
// second, and the delay itself is truncated to whole seconds.
#[test]
fn every_robfig_constant_delay() {
    check_next(&[
        (
            "@every 15m50ns",
            "",
            "2012-07-09T14:45:00Z",
            Some("2012-07-09T15:00:00Z"),
        ),
        (
            "@every 15m",
            "",
            "2012-07-09T14:59:00Z",
            Some("2012-07-09T15:14:00Z"),
        ),
        (
            "@every 15m",
            "",
            "2012-07-09T14:59:59Z",
            Some("2012-07-09T15:14:59Z"),
        ),
        (
            "@every 35m",
            "",
            "2012-07-09T15:45:00Z",
            Some("2012-07-09T16:20:00Z"),
        ),
        (
            "@every 14m",
            "",
            "2012-07-09T23:46:00Z",
            Some("2012-07-10T00:00:00Z"),
        ),
        (
            "@every 35m",
            "",
            "2012-07-09T23:45:00Z",
            Some("2012-07-10T00:20:00Z"),
        ),
        (
            "@every 44m24s",
            "",
            "2012-07-09T23:35:51Z",
            Some("2012-07-10T00:20:15Z"),
        ),
        (
            "@every 25h44m24s",
            "",
            "2012-07-09T23:35:51Z",
            Some("2012-07-11T01:20:15Z"),
        ),
        (
            "@every 2184h25m",
            "",
            "2012-07-09T23:35:00Z",
            Some("2012-10-09T00:00:00Z"),
        ),
        (
            "@every 15s",
            "",
            "2012-12-31T23:59:45Z",
            Some("2013-01-01T00:00:00Z"),
        ),
        (
            "@every 15ms",
            "",
            "2012-07-09T14:45:00Z",
            Some("2012-07-09T14:45:01Z"),
        ),
        (
            "@every 15m",
            "",
            "2012-07-09T14:45:00.005Z",
            Some("2012-07-09T15:00:00Z"),
        ),
        (
            "@every 15m50ns",
            "",
            "2012-07-09T14:45:00.005Z",
            Some("2012-07-09T15:00:00Z"),
        ),
    ]);
}

// @every per robfig's documentation (doc.go: "@every <duration> ... where duration is a
// string accepted by time.ParseDuration"); the schedule ignores the time zone, so it
// runs straight through DST changes.
#[test]
fn every_durations_and_time_zone_independence() {
    check_next(&[
        (
            "@every 90m",
            "",
            "2027-03-28T00:30:00Z",
            Some("2027-03-28T02:00:00Z"),
        ),
        (
            "@every 90m",
            BERLIN,
            "2027-03-28T00:30:00Z",
            Some("2027-03-28T02:00:00Z"),
        ),
        (
            "@every 1h30m",
            NY,
            "2027-11-07T05:15:00Z",
            Some("2027-11-07T06:45:00Z"),
        ),
        (
            "@every 5s",
            "",
            "2027-01-01T00:00:00.999Z",
            Some("2027-01-01T00:00:05Z"),
        ),
        (
            "@every 1.9s",
            "",
            "2027-01-01T00:00:00Z",
            Some("2027-01-01T00:00:01Z"),
        ),
        (
            "@every 0.5h",
            "",
            "2027-01-01T00:00:00Z",
            Some("2027-01-01T00:30:00Z"),
        ),
        (
            "@every 0",
            "",
            "2027-01-01T00:00:00Z",
            Some("2027-01-01T00:00:01Z"),
        ),
        (
            "@every -1h",
            "",
            "2027-01-01T00:00:00Z",
            Some("2027-01-01T00:00:01Z"),
        ),
    ]);
    let every = Schedule::parse("@every 1h30m").unwrap();
    assert_eq!(
        every.every_interval(),
        Some(std::time::Duration::from_secs(5400))
    );
    assert_eq!(Schedule::parse("@hourly").unwrap().every_interval(), None);
}

/// (expression, a fragment the error message must contain).
type RejectCase = (&'static str, &'static str);

fn check_rejected(cases: &[RejectCase]) {
    let mut failures = Vec::new();
    for &(expr, fragment) in cases {
        match Schedule::parse(expr) {
            Ok(s) => failures.push(format!("{expr:?} was accepted as {s:?}")),
            Err(e) => {
                let msg = e.to_string();
                if !msg.contains(fragment) {
                    failures.push(format!("{expr:?}: message {msg:?} lacks {fragment:?}"));
                }
                if !matches!(e, ScheduleError::InvalidSchedule { .. }) {
                    failures.push(format!("{expr:?}: wrong variant {e:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// Rejections from robfig's tests: spec_test.go TestErrors and TestSlash0NoHang,
// parser_test.go TestRange/TestParseScheduleErrors/TestStandardSpecSchedule (range
// errors placed into a field).
#[test]
fn robfig_rejections() {
    check_rejected(&[
        ("xyz", "expected exactly 5 fields"),
        ("60 0 * * *", "minute field"),
        ("0 60 * * *", "hour field"),
        ("0 0 * * XYZ", "day-of-week field"),
        ("15/0 * * * *", "step must be a positive number"),
        ("5 j * * *", "hour field \"j\""),
        ("@every Xm", "@every"),
        ("@unrecognized", "unrecognized descriptor"),
        ("* * * *", "expected exactly 5 fields"),
        ("", "empty"),
        ("5--5 * * * *", "too many hyphens"),
        ("0 0 * jan-x *", "month field"),
        ("*/-12 * * * *", "negative"),
        ("*//2 * * * *", "too many slashes"),
        ("*/0 * * * *", "step must be a positive number"),
        ("0 0 0 * *", "below the minimum 1"),
        ("0 0 * 13 *", "above the maximum 12"),
        ("0 0 5-3 * *", "range start 5 is after range end 3"),
    ]);
}

// What the brief and Kubernetes rule out: a seconds field (robfig ParseStandard wants
// exactly 5 fields), Quartz extensions L/W/# (not numbers to strconv.Atoi), weekday 7
// (robfig's dow bounds are 0-6), out-of-range values, garbage, unknown or mis-cased
// macros (robfig matches descriptors exactly), and TZ/CRON_TZ in the schedule
// (Kubernetes validateScheduleFormat: "cannot use TZ or CRON_TZ in schedule, use
// timeZone field instead").
#[test]
fn kubernetes_rejections() {
    check_rejected(&[
        ("0 0 0 * * *", "seconds field"),
        ("0 0 * * * 2027", "found 6"),
        ("0 0 L * *", "`L`"),
        ("0 0 LW * *", "`L`"),
        ("0 0 * * 5L", "`L`"),
        ("0 0 15W * *", "`W`"),
        ("0 0 * * 1#2", "`#`"),
        ("0 0 * * FRI#3", "`#`"),
        ("0 0 * * 7", "7 is not accepted"),
        ("0 0 * * 5-7", "7 is not accepted"),
        ("0 0 * * SUN-7", "day-of-week field"),
        ("TZ=UTC 0 0 * * *", "timeZone field"),
        ("CRON_TZ=Europe/Berlin 0 0 * * *", "timeZone field"),
        ("TZ=Europe/Berlin @daily", "timeZone field"),
        ("tz=UTC 0 0 * * *", "timeZone field"),
        ("60 * * * *", "above the maximum 59"),
        ("0 24 * * *", "above the maximum 23"),
        ("0 0 32 * *", "above the maximum 31"),
        ("0 0 * 0 *", "below the minimum 1"),
        ("0 0 * * -1", "day-of-week field"),
        ("garbage", "expected exactly 5 fields"),
        ("* * * * * * *", "found 7"),
        ("a b c d e", "minute field"),
        ("0 0 * * MONDAY", "use 0-6 or SUN-SAT"),
        ("0 0 * JANUARY *", "use 1-12 or JAN-DEC"),
        ("0 0 * * 1.5", "day-of-week field"),
        ("1-2-3 * * * *", "too many hyphens"),
        ("99999999999999999999 * * * *", "is not a number"),
        ("@DAILY", "unrecognized descriptor"),
        ("@daily ", "unrecognized descriptor"),
        (" @daily", "must not be preceded by whitespace"),
        ("@every", "unrecognized descriptor"),
        ("@every ", "@every"),
        ("@every 1d", "unknown unit"),
        ("@every 1h ", "@every"),
        ("@every 90", "missing unit"),
        ("@reboot", "unrecognized descriptor"),
    ]);
}

#[test]
fn errors_render_expression_and_reason() {
    let err = Schedule::parse("0 0 * * 7").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid schedule \"0 0 * * 7\": day-of-week field \"7\": 7 is above the maximum 6 \
         for this field (Sunday is 0; 7 is not accepted)"
    );
    let err = Schedule::parse("0 0 1,15W * *").unwrap_err();
    assert!(
        err.to_string()
            .contains("day-of-month field \"1,15W\", element \"15W\""),
        "{err}"
    );
}

// Kubernetes apis/batch/validation validateTimeZone: IANA names only, "Local" refused;
// Go's time.LoadLocation is case-sensitive. Empty means unset here (see the brief).
#[test]
fn time_zones() {
    assert_eq!(parse_time_zone(None).unwrap(), TimeZone::UTC);
    assert_eq!(parse_time_zone(Some("")).unwrap(), TimeZone::UTC);
    for ok in [
        "UTC",
        "Etc/UTC",
        "Europe/Berlin",
        "America/New_York",
        "America/Argentina/Buenos_Aires",
        "America/Port-au-Prince",
        "Etc/GMT+5",
        "Asia/Kolkata",
    ] {
        let tz = parse_time_zone(Some(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(tz.iana_name(), Some(ok));
    }
    for (bad, fragment) in [
        ("Local", "explicit IANA name"),
        ("local", "explicit IANA name"),
        ("Mars/Olympus_Mons", "no such time zone"),
        ("Europe/Berlinn", "no such time zone"),
        ("europe/berlin", "did you mean \"Europe/Berlin\""),
        ("../../etc/passwd", "not an IANA time zone name"),
        ("/Europe/Berlin", "not an IANA time zone name"),
        ("Europe//Berlin", "not an IANA time zone name"),
        ("Europe/Berlin ", "not an IANA time zone name"),
        ("-05:00", "not an IANA time zone name"),
        ("+05:30", "not an IANA time zone name"),
        ("+0530", "no such time zone"),
        (
            "America/Argentina_Buenos_Aires_X",
            "not an IANA time zone name",
        ),
        ("Europe/Berlin\0", "not an IANA time zone name"),
    ] {
        match parse_time_zone(Some(bad)) {
            Ok(tz) => panic!("{bad:?} accepted as {tz:?}"),
            Err(e @ ScheduleError::UnknownTimeZone { .. }) => {
                assert!(e.to_string().contains(fragment), "{bad:?}: {e}");
            }
            Err(e) => panic!("{bad:?}: wrong variant {e:?}"),
        }
    }
}

// The brief's acceptance case: weekdays at 09:00 Berlin time across the 2027 spring
// change (Sunday 28 March), from Thursday 25 March.
#[test]
fn preview_berlin_weekdays_over_dst() {
    let schedule = Schedule::parse("0 9 * * 1-5").unwrap();
    let got = preview(&schedule, &zone(BERLIN), ts("2027-03-25T00:00:00Z"), 5);
    let want: Vec<Timestamp> = [
        "2027-03-25T08:00:00Z",
        "2027-03-26T08:00:00Z",
        "2027-03-29T07:00:00Z",
        "2027-03-30T07:00:00Z",
        "2027-03-31T07:00:00Z",
    ]
    .into_iter()
    .map(ts)
    .collect();
    assert_eq!(got, want);
}

#[test]
fn preview_edge_cases() {
    let utc = TimeZone::UTC;
    let from = ts("2027-01-01T00:00:00Z");
    let hourly = Schedule::parse("@hourly").unwrap();
    assert!(preview(&hourly, &utc, from, 0).is_empty());
    // A schedule that never fires yields nothing, even for an absurd n.
    let never = Schedule::parse("0 0 30 2 *").unwrap();
    assert!(preview(&never, &utc, from, usize::MAX).is_empty());
    // Feb 29 only: 2028, 2032, then nothing within five years of 2096 (see above).
    let leap = Schedule::parse("0 0 29 2 *").unwrap();
    let got = preview(&leap, &utc, ts("2088-01-01T00:00:00Z"), 10);
    let want: Vec<Timestamp> = [
        "2088-02-29T00:00:00Z",
        "2092-02-29T00:00:00Z",
        "2096-02-29T00:00:00Z",
    ]
    .into_iter()
    .map(ts)
    .collect();
    assert_eq!(got, want);
}

#[test]
fn extreme_instants_do_not_panic() {
    for expr in ["* * * * *", "0 0 29 2 *", "@every 2562047h", "@every 1s"] {
        let s = Schedule::parse(expr).unwrap();
        for tz in ["", BERLIN, NY] {
            let tz = zone(tz);
            assert_eq!(s.next_after(Timestamp::MAX, &tz), None, "{expr}");
            let _ = s.next_after(Timestamp::MIN, &tz);
            let _ = due(&s, &tz, Timestamp::MIN, Timestamp::MAX, Some(i64::MAX));
            let _ = due(&s, &tz, Timestamp::MAX, Timestamp::MIN, Some(i64::MIN));
        }
    }
}

// ---------------------------------------------------------------------------------
// due(): Kubernetes pkg/controller/cronjob/utils_test.go. Its fixtures use
// topOfTheHour = 2016-05-19T10:00:00Z, a Thursday.
// ---------------------------------------------------------------------------------

fn top() -> Timestamp {
    ts("2016-05-19T10:00:00Z")
}

/// topOfTheHour + the given hours, minutes and seconds (deltaTimeAfterTopOfTheHour).
fn after_top(h: i64, m: i64, s: i64) -> Timestamp {
    top() + jiff::SignedDuration::from_secs(h * 3600 + m * 60 + s)
}

fn due_utc(expr: &str, earliest: Timestamp, now: Timestamp, deadline: Option<i64>) -> Due {
    let d = due(
        &Schedule::parse(expr).unwrap(),
        &TimeZone::UTC,
        earliest,
        now,
        deadline,
    );
    if let Some(next) = d.next {
        assert!(next > now, "{expr}: next {next} is not after now {now}");
    }
    d
}

// TestMostRecentScheduleTime, case by case (includeSDS is false in all but the last
// case, so the deadline is passed only there). `missed` is counted exactly here;
// Kubernetes only distinguishes none/few/many.
#[test]
fn kubernetes_most_recent_schedule_time() {
    // "now before next schedule"
    let d = due_utc("0 * * * *", top(), after_top(0, 0, 30), None);
    assert_eq!((d.run_for, d.missed), (None, 0));
    assert_eq!(d.next, Some(after_top(1, 0, 0)));

    // "now just after next schedule"
    let d = due_utc("0 * * * *", top(), after_top(1, 1, 0), None);
    assert_eq!((d.run_for, d.missed), (Some(after_top(1, 0, 0)), 1));

    // "missed 5 schedules"
    let d = due_utc("0 * * * *", after_top(0, 0, 10), after_top(5, 1, 0), None);
    assert_eq!((d.run_for, d.missed), (Some(after_top(5, 0, 0)), 5));

    // "complex schedule": last run Thursday 10:30; since then Thu 14:30, Fri 06:30 and
    // Fri 10:30.
    let d = due_utc(
        "30 6-16/4 * * 1-5",
        after_top(0, 30, 0),
        after_top(24, 31, 0),
        None,
    );
    assert_eq!((d.run_for, d.missed), (Some(after_top(24, 30, 0)), 3));

    // "another complex schedule": Kubernetes expects no run here, because its estimate
    // (gap between the first two fire times, one hour) jumps past Friday 12:30 to
    // Friday 15:30. The exact answer is Friday 12:30 (Thu 11:30, 12:30, Fri 10:30,
    // 11:30, 12:30 were all missed); see due.rs.
    let d = due_utc(
        "30 10,11,12 * * 1-5",
        after_top(0, 30, 0),
        after_top(30, 30, 0),
        None,
    );
    assert_eq!((d.run_for, d.missed), (Some(after_top(26, 30, 0)), 5));

    // "complex schedule with longer diff between executions": now Monday 10:31.
    let d = due_utc(
        "30 6-16/4 * * 1-5",
        after_top(0, 30, 0),
        after_top(96, 31, 0),
        None,
    );
    assert_eq!((d.run_for, d.missed), (Some(after_top(96, 30, 0)), 6));

    // "complex schedule with shorter diff between executions": never ran.
    let d = due_utc("30 6-16/4 * * 1-5", top(), after_top(24, 31, 0), None);
    assert_eq!((d.run_for, d.missed), (Some(after_top(24, 30, 0)), 4));

    // "@every schedule": anchored at the last run (top + 1m), so the latest fire time
    // before top + 7d is top + 6d 23h 1m; 167 were missed (Kubernetes: manyMissed).
    let d = due_utc(
        "@every 1h",
        after_top(0, 1, 0),
        after_top(7 * 24, 0, 0),
        None,
    );
    assert_eq!(
        (d.run_for, d.missed),
        (Some(after_top(6 * 24 + 23, 1, 0)), 167)
    );
    assert_eq!(d.next, Some(after_top(7 * 24, 1, 0)));

    // "rogue cronjob": 31 February never comes.
    let d = due_utc(
        "59 23 31 2 *",
        after_top(0, 0, 10),
        after_top(1, 0, 0),
        None,
    );
    assert_eq!(
        d,
        Due {
            run_for: None,
            missed: 0,
            missed_past_deadline: None,
            next: None
        }
    );

    // "earliestTime being CreationTimestamp and LastScheduleTime"
    let d = due_utc("0 * * * *", top(), after_top(0, 0, 30), None);
    assert_eq!(d.run_for, None);

    // "earliestTime being LastScheduleTime"
    let d = due_utc(
        "*/5 * * * *",
        after_top(0, 30, 0),
        after_top(0, 31, 0),
        None,
    );
    assert_eq!(d.run_for, None);
    assert_eq!(d.next, Some(after_top(0, 35, 0)));

    // "earliestTime being LastScheduleTime (within StartingDeadlineSeconds)"
    let d = due_utc(
        "*/5 * * * *",
        after_top(0, 30, 0),
        after_top(0, 31, 0),
        Some(60),
    );
    assert_eq!((d.run_for, d.missed_past_deadline), (None, None));

    // "earliestTime being LastScheduleTime (outside StartingDeadlineSeconds)"
    let d = due_utc(
        "*/5 * * * *",
        after_top(0, 30, 0),
        after_top(0, 32, 0),
        Some(60),
    );
    assert_eq!((d.run_for, d.missed_past_deadline), (None, None));
}

// TestNextScheduleTime: hourly "0 * * * ?", T1 = topOfTheHour, T2 = T1 + 1h.
#[test]
fn kubernetes_next_schedule_time() {
    const HOURLY: &str = "0 * * * ?";
    let t1 = top();
    let t2 = after_top(1, 0, 0);
    let min = |m: i64| jiff::SignedDuration::from_secs(m * 60);

    // Case 1: no known start times, and none needed yet.
    let d = due_utc(HOURLY, t1 - min(10), t1 - min(7), None);
    assert_eq!(d.run_for, None);
    // Case 2: no known start times, and one needed.
    let d = due_utc(
        HOURLY,
        t1 - min(10),
        t1 + jiff::SignedDuration::from_secs(2),
        None,
    );
    assert_eq!(d.run_for, Some(t1));
    // Case 3: known LastScheduleTime, no start needed.
    let d = due_utc(HOURLY, t1, t1 + min(2), None);
    assert_eq!(d.run_for, None);
    // Case 4: known LastScheduleTime, a start needed.
    let d = due_utc(HOURLY, t1, t2 + min(5), None);
    assert_eq!(d.run_for, Some(t2));
    // Case 5: known LastScheduleTime, two starts needed; the most recent is returned.
    let d = due_utc(HOURLY, t1 - min(60), t2 + min(5), None);
    assert_eq!((d.run_for, d.missed), (Some(t2), 2));
    // Case 6: now is way way ahead of last start time, and there is no deadline.
    let now = t2 + jiff::SignedDuration::from_hours(10 * 24);
    let d = due_utc(HOURLY, t1 - min(60), now, None);
    assert_eq!((d.run_for, d.missed), (Some(now), 10 * 24 + 2));
    // Case 7: ... but there is a short deadline (2h): the run at `now` is still in time.
    let d = due_utc(HOURLY, t1 - min(60), now, Some(2 * 60 * 60));
    assert_eq!(d.run_for, Some(now));
    // Case 8: a schedule that can never fire.
    let d = due_utc(
        "59 23 31 2 *",
        t1 + jiff::SignedDuration::from_secs(10),
        t2,
        None,
    );
    assert_eq!((d.run_for, d.next), (None, None));
}

// TestNextScheduleTimeDuration: the requeue delay is `next - now` (plus Kubernetes'
// 100ms padding, not modelled here).
#[test]
fn kubernetes_next_schedule_time_duration() {
    let cases = [
        // "complex schedule skipping weekend"
        (
            "30 6-16/4 * * 1-5",
            after_top(0, 30, 0),
            after_top(24, 31, 0),
            3 * 3600 + 59 * 60,
        ),
        // "another complex schedule skipping weekend"
        (
            "30 10,11,12 * * 1-5",
            after_top(0, 30, 0),
            after_top(30, 30, 0),
            66 * 3600,
        ),
        // "once a week cronjob, missed two runs"
        (
            "0 12 * * 4",
            after_top(2, 0, 0),
            after_top(19 * 24 + 1, 30, 0),
            48 * 3600 + 30 * 60,
        ),
        // "no previous run of a cronjob"
        ("0 12 * * 5", top(), after_top(6, 0, 0), 20 * 3600),
    ];
    for (expr, earliest, now, secs) in cases {
        let d = due_utc(expr, earliest, now, None);
        assert_eq!(
            d.next,
            Some(now + jiff::SignedDuration::from_secs(secs)),
            "{expr}"
        );
    }
    // "once a week cronjob, missed two runs": Thursdays 26 May and 2 June.
    let d = due_utc(
        "0 12 * * 4",
        after_top(2, 0, 0),
        after_top(19 * 24 + 1, 30, 0),
        None,
    );
    assert_eq!(
        (d.run_for, d.missed),
        (Some(after_top(14 * 24 + 2, 0, 0)), 2)
    );
}

// startingDeadlineSeconds as the controller applies it (syncCronJob looks for fire
// times after now - deadline; older ones are "Missed starting window").
#[test]
fn starting_deadline() {
    // Hourly, last ran at 10:00, now 11:30 with a 10-minute deadline: 11:00 is too old.
    let d = due_utc("0 * * * *", top(), after_top(1, 30, 0), Some(600));
    assert_eq!(
        d,
        Due {
            run_for: None,
            missed: 1,
            missed_past_deadline: Some(after_top(1, 0, 0)),
            next: Some(after_top(2, 0, 0)),
        }
    );
    // Within the deadline it runs.
    let d = due_utc("0 * * * *", top(), after_top(1, 5, 0), Some(600));
    assert_eq!(
        (d.run_for, d.missed_past_deadline),
        (Some(after_top(1, 0, 0)), None)
    );
    // One second before the deadline expires it still runs; at exactly `deadline`
    // seconds old it no longer does (the controller's window (now - deadline, now] is
    // open at the start).
    let d = due_utc("0 * * * *", top(), after_top(1, 9, 59), Some(600));
    assert_eq!(d.run_for, Some(after_top(1, 0, 0)));
    let d = due_utc("0 * * * *", top(), after_top(1, 10, 0), Some(600));
    assert_eq!(
        (d.run_for, d.missed_past_deadline),
        (None, Some(after_top(1, 0, 0)))
    );
    // Only the most recent missed time is considered: several misses, the latest fresh.
    let d = due_utc("0 * * * *", top(), after_top(5, 2, 0), Some(600));
    assert_eq!((d.run_for, d.missed), (Some(after_top(5, 0, 0)), 5));
    // A deadline of 0 never lets a run start (as in Kubernetes).
    let d = due_utc("0 * * * *", top(), after_top(1, 0, 0), Some(0));
    assert_eq!(
        (d.run_for, d.missed_past_deadline),
        (None, Some(after_top(1, 0, 0)))
    );
    // @every with a deadline shorter than the period still runs when on time.
    let d = due_utc("@every 1h", top(), after_top(3, 0, 5), Some(10));
    assert_eq!((d.run_for, d.missed), (Some(after_top(3, 0, 0)), 3));
}

#[test]
fn due_never_ran_and_clock_skew() {
    // Never ran: earliest is the creation time; the first fire after it is due.
    let d = due_utc("*/5 * * * *", after_top(0, 2, 0), after_top(0, 5, 1), None);
    assert_eq!((d.run_for, d.missed), (Some(after_top(0, 5, 0)), 1));
    assert_eq!(d.next, Some(after_top(0, 10, 0)));
    // The last run lies in the future (clock skew): nothing is due, and the next fire
    // time continues the chain from it.
    let d = due_utc("*/5 * * * *", after_top(1, 0, 0), top(), None);
    assert_eq!(
        (d.run_for, d.missed, d.missed_past_deadline),
        (None, 0, None)
    );
    assert_eq!(d.next, Some(after_top(1, 5, 0)));
    // A fire exactly at `now` is due; one exactly at `earliest` is not (it already ran).
    let d = due_utc("0 * * * *", top(), after_top(1, 0, 0), None);
    assert_eq!((d.run_for, d.missed), (Some(after_top(1, 0, 0)), 1));
}

// Many missed: per-minute schedule, controller down for ten years. Must stay cheap and
// still find the exact most recent time, like the controller's capped scan.
#[test]
fn due_many_missed_is_exact_and_cheap() {
    let started = std::time::Instant::now();
    let earliest = ts("2016-05-19T10:00:00Z");
    let now = ts("2026-05-19T10:00:30.5Z");
    let d = due_utc("* * * * *", earliest, now, None);
    assert_eq!(d.run_for, Some(ts("2026-05-19T10:00:00Z")));
    assert_eq!(d.missed, MISSED_COUNT_CAP);
    assert_eq!(d.next, Some(ts("2026-05-19T10:01:00Z")));

    // Uneven schedule, in a DST zone: every 7 minutes 09:00-17:59 on weekdays, Berlin.
    // Wednesday 2026-05-20 14:00:30 CEST: the last fire is 14:00 (12:00Z).
    let schedule = Schedule::parse("*/7 9-17 * * 1-5").unwrap();
    let d = due(
        &schedule,
        &zone(BERLIN),
        ts("2010-01-01T00:00:00Z"),
        ts("2026-05-20T12:00:30Z"),
        Some(60),
    );
    assert_eq!(d.run_for, Some(ts("2026-05-20T12:00:00Z")));
    assert_eq!(d.missed, MISSED_COUNT_CAP);
    assert_eq!(d.next, Some(ts("2026-05-20T12:07:00Z")));
    // The same after a deadline miss: dropped but reported.
    let d = due(
        &schedule,
        &zone(BERLIN),
        ts("2010-01-01T00:00:00Z"),
        ts("2026-05-20T16:05:00Z"),
        Some(60),
    );
    // 18:05 CEST is after the last fire of the day, 17:56 CEST.
    assert_eq!(d.run_for, None);
    assert_eq!(d.missed_past_deadline, Some(ts("2026-05-20T15:56:00Z")));
    assert_eq!(d.next, Some(ts("2026-05-21T07:00:00Z")));

    // @every is arithmetic: no scan at all.
    let d = due_utc("@every 1s", ts("2000-01-01T00:00:00Z"), now, None);
    assert_eq!(d.run_for, Some(ts("2026-05-19T10:00:30Z")));
    assert_eq!(d.missed, MISSED_COUNT_CAP);
    assert_eq!(d.next, Some(ts("2026-05-19T10:00:31Z")));

    // Each of these is a few hundred microseconds in release builds; the bound only
    // catches an accidental linear scan over ten years of minutes (five million steps).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "due() took {:?}",
        started.elapsed()
    );
}

#[test]
fn due_every_is_anchored_at_earliest() {
    // Fires at earliest + k·90m: 01:30, 03:00, 04:30.
    let d = due_utc(
        "@every 90m",
        ts("2027-01-01T00:00:00Z"),
        ts("2027-01-01T05:00:00Z"),
        None,
    );
    assert_eq!(d.run_for, Some(ts("2027-01-01T04:30:00Z")));
    assert_eq!(d.missed, 3);
    assert_eq!(d.next, Some(ts("2027-01-01T06:00:00Z")));
    // Sub-second parts of earliest are dropped, as robfig's Next drops them.
    let d = due_utc(
        "@every 10s",
        ts("2027-01-01T00:00:00.75Z"),
        ts("2027-01-01T00:00:10Z"),
        None,
    );
    assert_eq!(d.run_for, Some(ts("2027-01-01T00:00:10Z")));
}

// ---------------------------------------------------------------------------------
// previous_before(): the start of a run's data interval. Expected values are from the
// calendar (and, for DST, the zone's published transitions).
// ---------------------------------------------------------------------------------

/// (expression, zone, before, expected latest fire time strictly before it, or `None`).
type PreviousCase = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

#[test]
fn previous_before_looks_back_as_far_as_the_schedule_needs() {
    let cases: &[PreviousCase] = &[
        // Strictly before: a fire time's previous is the one before it.
        (
            "0 * * * *",
            "",
            "2026-12-07T10:00:00Z",
            Some("2026-12-07T09:00:00Z"),
        ),
        (
            "0 * * * *",
            "",
            "2026-12-07T10:00:00.5Z",
            Some("2026-12-07T10:00:00Z"),
        ),
        (
            "0 * * * *",
            "",
            "2026-12-07T09:59:59Z",
            Some("2026-12-07T09:00:00Z"),
        ),
        (
            "*/15 9-17 * * 1-5",
            "",
            "2026-12-07T09:00:00Z",
            Some("2026-12-04T17:45:00Z"),
        ),
        // Monday 2026-12-07 09:00 in Berlin is 08:00Z; the Friday before, 08:00Z too.
        (
            "0 9 * * 1-5",
            BERLIN,
            "2026-12-07T08:00:00Z",
            Some("2026-12-04T08:00:00Z"),
        ),
        // Across the spring-forward: 06:00 on 29 March 2026 is CEST (04:00Z), the day before
        // CET (05:00Z), 23 hours earlier.
        (
            "0 6 * * *",
            BERLIN,
            "2026-03-29T04:00:00Z",
            Some("2026-03-28T05:00:00Z"),
        ),
        (
            "@monthly",
            "",
            "2026-03-01T00:00:00Z",
            Some("2026-02-01T00:00:00Z"),
        ),
        (
            "@yearly",
            "",
            "2027-01-01T00:00:00Z",
            Some("2026-01-01T00:00:00Z"),
        ),
        (
            "0 0 29 2 *",
            "",
            "2028-02-29T00:00:00Z",
            Some("2024-02-29T00:00:00Z"),
        ),
        // 2100 is no leap year: eight years back to 2096.
        (
            "0 0 29 2 *",
            "",
            "2104-02-29T00:00:00Z",
            Some("2096-02-29T00:00:00Z"),
        ),
        // Never fires at all: nothing before.
        ("0 0 30 2 *", "", "2026-12-07T10:00:00Z", None),
        // `@every` has no wall-clock anchor: one period back.
        (
            "@every 90m",
            "",
            "2026-12-07T10:00:00Z",
            Some("2026-12-07T08:30:00Z"),
        ),
        (
            "@every 1s",
            "",
            "2026-12-07T10:00:00Z",
            Some("2026-12-07T09:59:59Z"),
        ),
    ];
    let mut failures = Vec::new();
    for &(expr, tz, before, want) in cases {
        let got = Schedule::parse(expr)
            .unwrap()
            .previous_before(ts(before), &zone(tz));
        if got != want.map(ts) {
            failures.push(format!(
                "{expr:?} in {tz:?} before {before}: want {want:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn previous_before_at_the_edges_of_time_is_none_not_a_panic() {
    for expr in ["0 * * * *", "@every 1h", "0 0 29 2 *"] {
        let s = Schedule::parse(expr).unwrap();
        assert_eq!(
            s.previous_before(Timestamp::MIN, &TimeZone::UTC),
            None,
            "{expr}"
        );
        let _ = s.previous_before(Timestamp::MAX, &TimeZone::UTC);
    }
}
