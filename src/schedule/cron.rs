//! The five-field cron syntax of robfig/cron v3's `ParseStandard`, and a port of its
//! `SpecSchedule.Next`.
//!
//! Kubernetes' CronJob controller evaluates `spec.schedule` with robfig/cron v3.0.1,
//! so this file reproduces that library rather than "cron" in general:
//!
//! * Parsing follows `parser.go` (`getField`, `getRange`, `parseIntOrName`,
//!   `mustParseInt`) step for step, including its leniencies (`+5` and `05` are numbers,
//!   `1,,2` is a list, `*-5` is read as `*`, `*/100` is valid) so that anything the API
//!   server accepts is accepted here, and everything it rejects is rejected here, with a
//!   message that names the field and the problem.
//! * The day-of-month/day-of-week rule is robfig's `dayMatches`: the two fields are
//!   ANDed when either of them carries the "star bit", ORed otherwise. The star bit is
//!   set by a range starting with `*` or `?` whose step is 1 (`*`, `?`, `*/1`, also as
//!   one element of a list such as `1,*`); `*/2` does not set it.
//! * `next` is a transcription of `SpecSchedule.Next` over the Go `time` primitives in
//!   `gotime.rs`, so DST handling is robfig's: a wall time that falls into a
//!   spring-forward gap never fires, a wall time that happens twice in a fall-back
//!   overlap fires at *both* instants (robfig's spec_test.go: "1am nightly job (runs
//!   twice)"), and no fire time is looked for beyond five years.
//!
//! Why not croner for the evaluation: croner 4 implements the OCPS rules, which differ
//! from robfig exactly where it matters for a Kubernetes-compatible controller. A
//! fixed-time job whose wall time falls in a DST gap runs at the first instant after
//! the gap in croner (its test `job_scheduled_inside_gap_still_runs_after_it`) but is
//! skipped by robfig; a fixed-time job in a fall-back overlap runs once in croner but
//! twice in robfig; croner has no five-year horizon; its
//! "wildcard" test for the day fields is the literal `*` (so `*/1` or `1,*` switch it to
//! OR mode while robfig ANDs them, and `?` is rejected outside the day fields while robfig
//! accepts it everywhere); and it cannot reproduce robfig's quirks in zones whose DST
//! change happens at midnight (see `next`). croner is still used by the test suite, as
//! an independent oracle for wall-clock matching in UTC, where none of these differences
//! arise.

use jiff::{Timestamp, tz::TimeZone};

use super::gotime::{self, SECS_PER_HOUR, SECS_PER_MINUTE, Wall};

/// robfig's marker for "this field was written as `*` or `?` with step 1". It lives in a
/// bit no field value can reach (values are at most 59).
const STAR_BIT: u64 = 1 << 63;

/// Upper bound on loop iterations in one `next` call. A schedule that can fire needs at
/// most a few thousand (about one per day over robfig's five-year horizon, plus hours
/// and minutes on matching days); the budget only matters for inputs where robfig's
/// loops do not end. There is one: when a whole calendar day is missing (Pacific/Apia
/// skipped 30 December 2011), Go's `time.Date` resolves that midnight back to midnight
/// of the day before, robfig's day loop stops advancing, and `Next` never returns. Here
/// the budget runs out instead and there is no next fire time. Exhausting it costs a
/// few milliseconds.
const ITERATION_BUDGET: u32 = 100_000;

/// The allowed values of one field, plus its names (lower case), as robfig's `bounds`.
struct Bounds {
    field: &'static str,
    min: u64,
    max: u64,
    names: &'static [(&'static str, u64)],
}

const MINUTES: Bounds = Bounds {
    field: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    field: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    field: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    field: "month",
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    field: "day-of-week",
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// A parsed five-field schedule as robfig stores it: one bit set per field, bit `n`
/// meaning "value `n` matches", plus `STAR_BIT` on fields written as a star.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CronSpec {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

impl CronSpec {
    /// Parses the five whitespace-separated fields (no descriptor, no `TZ=` prefix;
    /// the caller has dealt with those). The error is the human-readable reason.
    pub(super) fn parse_fields(spec: &str) -> Result<CronSpec, String> {
        // Go's strings.Fields and Rust's split_whitespace both split on Unicode White_Space.
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(field_count_message(&fields));
        }
        Ok(CronSpec {
            // ParseStandard has no seconds field; robfig fills in its default "0".
            second: 1,
            minute: get_field(fields[0], &MINUTES)?,
            hour: get_field(fields[1], &HOURS)?,
            dom: get_field(fields[2], &DOM)?,
            month: get_field(fields[3], &MONTHS)?,
            dow: get_field(fields[4], &DOW)?,
        })
    }

    /// robfig's `parseDescriptor` for the fixed macros. The name must match exactly
    /// (robfig compares case-sensitively and does not trim).
    pub(super) fn descriptor(name: &str) -> Option<CronSpec> {
        let all = |b: &Bounds| get_bits(b.min, b.max, 1) | STAR_BIT;
        let first = |b: &Bounds| 1u64 << b.min;
        let midnight = CronSpec {
            second: 1,
            minute: first(&MINUTES),
            hour: first(&HOURS),
            dom: all(&DOM),
            month: all(&MONTHS),
            dow: all(&DOW),
        };
        match name {
            "@yearly" | "@annually" => Some(CronSpec {
                dom: first(&DOM),
                month: first(&MONTHS),
                ..midnight
            }),
            "@monthly" => Some(CronSpec {
                dom: first(&DOM),
                ..midnight
            }),
            "@weekly" => Some(CronSpec {
                dow: first(&DOW),
                ..midnight
            }),
            "@daily" | "@midnight" => Some(midnight),
            "@hourly" => Some(CronSpec {
                hour: all(&HOURS),
                ..midnight
            }),
            _ => None,
        }
    }

    /// The first fire time strictly after `after`, with the wall clock read in `tz`.
    /// `None` if robfig would return its zero time (nothing within five years) or the
    /// answer is outside jiff's representable range.
    pub(super) fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // "Start at the earliest possible time (the upcoming second)."
        let start = gotime::floor_second(after).checked_add(1)?;
        gotime::timestamp(self.next_from(start, tz)?)
    }

    /// `SpecSchedule.Next` from spec.go, statement by statement, on Unix seconds.
    ///
    /// The Go original is kept recognisable on purpose, including the parts that are
    /// arguably bugs, because Kubernetes ships them:
    ///
    /// * Hours and minutes advance in *elapsed* time (`t.Add(time.Hour)`), so the hour
    ///   that a spring-forward skips is never visited (its fire times are dropped) and
    ///   the hour that a fall-back repeats is visited twice (its fire times happen twice).
    /// * Days advance with `AddDate` from local midnight and then nudge the hour back to
    ///   0 when midnight does not exist. In zones east of UTC whose clocks jump at
    ///   midnight (Africa/Cairo, Asia/Beirut, …) the nudge lands on the previous evening,
    ///   and the day of the jump is then skipped for day-restricted schedules.
    /// * When the walk crosses a fall-back that lands in the previous month (St. John's
    ///   changed clocks at 00:01 until 2011), the month loop carries on from that wall
    ///   time with `AddDate(0, 1, 0)`, and the rest of the current month can be skipped.
    /// * When a whole day is missing, the Go code never returns; see `ITERATION_BUDGET`.
    ///
    /// All of these were confirmed against robfig/cron v3.0.1 itself during development
    /// (hundreds of thousands of random schedules, zones and instants; identical output
    /// once both sides used the same tz database).
    fn next_from(&self, mut t: i64, tz: &TimeZone) -> Option<i64> {
        let mut budget = ITERATION_BUDGET;
        let mut spend = || {
            budget = budget.checked_sub(1)?;
            Some(())
        };
        // "This flag indicates whether a field has been incremented."
        let mut added = false;
        // "If no time is found within five years, return zero."
        let year_limit = gotime::wall(t, tz)?.year + 5;

        'wrap: loop {
            let mut w = gotime::wall(t, tz)?;
            if w.year > year_limit {
                return None;
            }

            // Find the first applicable month.
            while !has(self.month, w.month) {
                spend()?;
                if !added {
                    added = true;
                    t = gotime::date(w.year, w.month, 1, 0, 0, 0, tz)?;
                    w = gotime::wall(t, tz)?;
                }
                t = add_date(&w, 1, 0, tz)?;
                w = gotime::wall(t, tz)?;
                if w.month == 1 {
                    continue 'wrap;
                }
            }

            // Now get a day in that month.
            while !self.day_matches(&w) {
                spend()?;
                if !added {
                    added = true;
                    t = gotime::date(w.year, w.month, w.day, 0, 0, 0, tz)?;
                    w = gotime::wall(t, tz)?;
                }
                t = add_date(&w, 0, 1, tz)?;
                w = gotime::wall(t, tz)?;
                // "Notice if the hour is no longer midnight due to DST. Add an hour if
                // it's 23, subtract an hour if it's 1."
                if w.hour != 0 {
                    t = if w.hour > 12 {
                        t + (24 - w.hour) * SECS_PER_HOUR
                    } else {
                        t - w.hour * SECS_PER_HOUR
                    };
                    w = gotime::wall(t, tz)?;
                }
                if w.day == 1 {
                    continue 'wrap;
                }
            }

            while !has(self.hour, w.hour) {
                spend()?;
                if !added {
                    added = true;
                    t = gotime::date(w.year, w.month, w.day, w.hour, 0, 0, tz)?;
                }
                t += SECS_PER_HOUR;
                w = gotime::wall(t, tz)?;
                if w.hour == 0 {
                    continue 'wrap;
                }
            }

            while !has(self.minute, w.minute) {
                spend()?;
                if !added {
                    added = true;
                    // t.Truncate(time.Minute): absolute, and Go's zero time is a whole
                    // number of minutes before the Unix epoch.
                    t = t.div_euclid(SECS_PER_MINUTE) * SECS_PER_MINUTE;
                }
                t += SECS_PER_MINUTE;
                w = gotime::wall(t, tz)?;
                if w.minute == 0 {
                    continue 'wrap;
                }
            }

            while !has(self.second, w.second) {
                spend()?;
                // Go also truncates t to the second here, a no-op on whole seconds. The
                // flag matters: after a wrap it stops the month and day loops from
                // resetting t to the start of the current (wall-clock) month or day,
                // which would be *before* the starting point if the second-by-second
                // walk just crossed a backward clock change.
                added = true;
                t += 1;
                w = gotime::wall(t, tz)?;
                if w.second == 0 {
                    continue 'wrap;
                }
            }

            return Some(t);
        }
    }

    /// robfig's `dayMatches`: AND when either day field carries the star bit, else OR.
    fn day_matches(&self, w: &Wall) -> bool {
        let dom_match = has(self.dom, w.day);
        let dow_match = has(self.dow, w.weekday);
        if self.dom & STAR_BIT != 0 || self.dow & STAR_BIT != 0 {
            dom_match && dow_match
        } else {
            dom_match || dow_match
        }
    }

    /// The values each field matches, for tests that compare against another engine:
    /// minute, hour, day-of-month, month, day-of-week.
    #[cfg(test)]
    pub(super) fn field_values(&self) -> [Vec<u64>; 5] {
        let values = |bits: u64, b: &Bounds| -> Vec<u64> {
            (b.min..=b.max).filter(|v| bits & (1 << v) != 0).collect()
        };
        [
            values(self.minute, &MINUTES),
            values(self.hour, &HOURS),
            values(self.dom, &DOM),
            values(self.month, &MONTHS),
            values(self.dow, &DOW),
        ]
    }

    /// Whether robfig ANDs the two day fields for this schedule (see `day_matches`).
    #[cfg(test)]
    pub(super) fn days_anded(&self) -> bool {
        self.dom & STAR_BIT != 0 || self.dow & STAR_BIT != 0
    }
}

/// Go's `t.AddDate(0, months, days)`: the same wall clock `months`/`days` later,
/// re-resolved in the zone with `time.Date`.
fn add_date(w: &Wall, months: i64, days: i64, tz: &TimeZone) -> Option<i64> {
    gotime::date(
        w.year,
        w.month + months,
        w.day + days,
        w.hour,
        w.minute,
        w.second,
        tz,
    )
}

/// Whether value `v` is in the bit set (`1<<uint(v) & bits` in Go).
fn has(bits: u64, v: i64) -> bool {
    u32::try_from(v)
        .ok()
        .and_then(|v| 1u64.checked_shl(v))
        .is_some_and(|bit| bits & bit != 0)
}

fn field_count_message(fields: &[&str]) -> String {
    let found = fields.len();
    let mut msg = format!(
        "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {found}"
    );
    match found {
        6 => msg.push_str("; a leading seconds field (or a trailing year field) is not supported"),
        1 if fields[0].starts_with('@') => {
            msg.push_str("; a descriptor such as @daily must not be preceded by whitespace")
        }
        _ => {}
    }
    msg
}

/// robfig's `getField`: a comma-separated list of ranges, ORed. Empty list elements
/// are dropped (Go's `strings.FieldsFunc`), so `1,,2` is `1,2` and a lone `,` matches
/// nothing at all (such a schedule parses but never fires, exactly as in Kubernetes).
fn get_field(field: &str, b: &Bounds) -> Result<u64, String> {
    let mut bits = 0;
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        bits |= get_range(expr, b).map_err(|problem| {
            if expr == field {
                format!("{} field {field:?}: {problem}", b.field)
            } else {
                format!("{} field {field:?}, element {expr:?}: {problem}", b.field)
            }
        })?;
    }
    Ok(bits)
}

/// robfig's `getRange`: `*`, `?`, `n`, `a-b`, each optionally followed by `/step`;
/// `n/step` means `n-max/step`.
fn get_range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single_digit = low_and_high.len() == 1;

    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        // Note robfig ignores anything after a leading `*-`/`?-`.
        (start, end, extra) = (b.min, b.max, STAR_BIT);
    } else {
        start = parse_int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], b)?,
            _ => return Err(format!("too many hyphens in {expr:?}")),
        };
        extra = 0;
    }

    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1], "step").map_err(|e| e.to_string())?;
            if single_digit {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes in {expr:?}")),
    };

    if start < b.min {
        return Err(format!(
            "{start} is below the minimum {} for this field",
            b.min
        ));
    }
    if end > b.max {
        let mut msg = format!("{end} is above the maximum {} for this field", b.max);
        if b.field == DOW.field && end == 7 {
            msg.push_str(" (Sunday is 0; 7 is not accepted)");
        }
        return Err(msg);
    }
    if start > end {
        return Err(format!("range start {start} is after range end {end}"));
    }
    if step == 0 {
        return Err("step must be a positive number".to_string());
    }
    Ok(get_bits(start, end, step) | extra)
}

/// robfig's `parseIntOrName`: a month/weekday name (case-insensitive) or a number.
fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u64, String> {
    if !b.names.is_empty() {
        let lower = go_to_lower(expr);
        if let Some(&(_, v)) = b.names.iter().find(|(name, _)| *name == lower) {
            return Ok(v);
        }
    }
    must_parse_int(expr, "value").map_err(|e| e.explain(expr, b))
}

/// Go's `strings.ToLower`, which applies the simple (one-to-one) Unicode lower-case
/// mapping per character. Rust's `str::to_lowercase` uses the full mapping and differs
/// for U+0130 (İ), which Go maps to a plain `i` ("FRİ" is Friday to robfig).
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// Why a number did not parse, as robfig's `mustParseInt` would report it.
#[derive(Debug)]
enum IntError {
    NotANumber { what: &'static str, text: String },
    Negative { what: &'static str, value: i64 },
}

impl IntError {
    /// The message for a field value, with a hint for the cron extensions people most
    /// often try (`L`, `W`, `#`) and for names in fields that have none.
    fn explain(self, expr: &str, b: &Bounds) -> String {
        let base = self.to_string();
        let upper = expr.to_ascii_uppercase();
        let digits_then = |suffix: char| {
            upper
                .strip_suffix(suffix)
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        };
        let day_field = b.field == DOM.field || b.field == DOW.field;
        let hint = if expr.contains('#') {
            Some("`#` (nth weekday of the month) is not supported")
        } else if day_field && (upper == "L" || upper == "LW" || digits_then('L')) {
            Some("`L` (last day) is not supported")
        } else if b.field == DOM.field && digits_then('W') {
            Some("`W` (nearest weekday) is not supported")
        } else if !b.names.is_empty() {
            Some(if b.field == MONTHS.field {
                "use 1-12 or JAN-DEC"
            } else {
                "use 0-6 or SUN-SAT"
            })
        } else {
            None
        };
        match hint {
            Some(hint) => format!("{base}; {hint}"),
            None => base,
        }
    }
}

impl std::fmt::Display for IntError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntError::NotANumber { what, text } => write!(f, "{what} {text:?} is not a number"),
            IntError::Negative { what, value } => {
                write!(f, "{what} {value} is negative")
            }
        }
    }
}

/// robfig's `mustParseInt`, i.e. Go's `strconv.Atoi` (optional sign, ASCII decimal
/// digits, must fit an int64) followed by a rejection of negative values.
fn must_parse_int(text: &str, what: &'static str) -> Result<u64, IntError> {
    let not_a_number = || IntError::NotANumber {
        what,
        text: text.to_string(),
    };
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.first() {
        Some(b'+') => (false, &bytes[1..]),
        Some(b'-') => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() {
        return Err(not_a_number());
    }
    // Accumulate the magnitude; Atoi allows up to 2^63 for negative numbers.
    let limit: u64 = if negative { 1 << 63 } else { (1 << 63) - 1 };
    let mut magnitude: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err(not_a_number());
        }
        magnitude = magnitude
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(c - b'0')))
            .filter(|m| *m <= limit)
            .ok_or_else(not_a_number)?;
    }
    if negative && magnitude != 0 {
        let value = 0i64.wrapping_sub_unsigned(magnitude);
        return Err(IntError::Negative { what, value });
    }
    Ok(magnitude)
}

/// robfig's `getBits`: every `step`-th value from `min` to `max` inclusive.
fn get_bits(min: u64, max: u64, step: u64) -> u64 {
    let mut bits = 0;
    let mut i = min;
    while i <= max {
        bits |= 1 << i;
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected bit patterns from robfig/cron parser_test.go (TestRange, TestField,
    // TestAll, TestBits), translated to this module's field bounds where needed.
    #[test]
    fn get_bits_matches_robfig_test_bits() {
        assert_eq!(get_bits(0, 0, 1), 0x1);
        assert_eq!(get_bits(1, 1, 1), 0x2);
        assert_eq!(get_bits(1, 5, 2), 0x2a);
        assert_eq!(get_bits(1, 4, 2), 0xa);
    }

    #[test]
    fn all_matches_robfig_test_all() {
        let all = |b: &Bounds| get_bits(b.min, b.max, 1);
        assert_eq!(all(&MINUTES), 0xfff_ffff_ffff_ffff);
        assert_eq!(all(&HOURS), 0xff_ffff);
        assert_eq!(all(&DOM), 0xffff_fffe);
        assert_eq!(all(&MONTHS), 0x1ffe);
        assert_eq!(all(&DOW), 0x7f);
    }

    #[test]
    fn get_range_matches_robfig_test_range() {
        let b = Bounds {
            field: "test",
            min: 0,
            max: 7,
            names: &[],
        };
        assert_eq!(get_range("5", &b), Ok(1 << 5));
        assert_eq!(get_range("0", &b), Ok(1 << 0));
        assert_eq!(get_range("7", &b), Ok(1 << 7));
        assert_eq!(get_range("5-5", &b), Ok(1 << 5));
        assert_eq!(get_range("5-6", &b), Ok(1 << 5 | 1 << 6));
        assert_eq!(get_range("5-7", &b), Ok(1 << 5 | 1 << 6 | 1 << 7));
        assert_eq!(get_range("5-6/2", &b), Ok(1 << 5));
        assert_eq!(get_range("5-7/2", &b), Ok(1 << 5 | 1 << 7));
        assert_eq!(get_range("5-7/1", &b), Ok(1 << 5 | 1 << 6 | 1 << 7));
        let b13 = Bounds {
            field: "test",
            min: 1,
            max: 3,
            names: &[],
        };
        assert_eq!(
            get_range("*", &b13),
            Ok(1 << 1 | 1 << 2 | 1 << 3 | STAR_BIT)
        );
        assert_eq!(get_range("*/2", &b13), Ok(1 << 1 | 1 << 3));
        for bad in ["5--5", "jan-x", "*/-12", "*//2", "*/0"] {
            assert!(get_range(bad, &b).is_err(), "{bad} should be rejected");
        }
        let b35 = Bounds {
            field: "test",
            min: 3,
            max: 5,
            names: &[],
        };
        for bad in ["1", "6", "5-3"] {
            assert!(get_range(bad, &b35).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn get_field_matches_robfig_test_field() {
        let b = Bounds {
            field: "test",
            min: 1,
            max: 7,
            names: &[],
        };
        assert_eq!(get_field("5", &b), Ok(1 << 5));
        assert_eq!(get_field("5,6", &b), Ok(1 << 5 | 1 << 6));
        assert_eq!(get_field("5,6,7", &b), Ok(1 << 5 | 1 << 6 | 1 << 7));
        assert_eq!(
            get_field("1,5-7/2,3", &b),
            Ok(1 << 1 | 1 << 5 | 1 << 7 | 1 << 3)
        );
    }

    // Star-bit rule from robfig's getRange: `if step > 1 { extra = 0 }`.
    #[test]
    fn star_bit_is_kept_for_step_one_only() {
        assert_ne!(get_range("*/1", &DOM).unwrap() & STAR_BIT, 0);
        assert_ne!(get_range("?", &DOM).unwrap() & STAR_BIT, 0);
        assert_eq!(get_range("*/2", &DOM).unwrap() & STAR_BIT, 0);
        assert_eq!(get_range("1-31", &DOM).unwrap() & STAR_BIT, 0);
        assert_ne!(get_field("1,*", &DOM).unwrap() & STAR_BIT, 0);
    }

    // Go's strconv.Atoi accepts a sign and leading zeros and must fit an int64.
    #[test]
    fn must_parse_int_follows_go_atoi() {
        assert_eq!(must_parse_int("05", "v").unwrap(), 5);
        assert_eq!(must_parse_int("+5", "v").unwrap(), 5);
        assert_eq!(must_parse_int("-0", "v").unwrap(), 0);
        assert!(matches!(
            must_parse_int("-3", "v"),
            Err(IntError::Negative { value: -3, .. })
        ));
        assert!(must_parse_int("9223372036854775807", "v").is_ok());
        assert!(must_parse_int("9223372036854775808", "v").is_err());
        assert!(matches!(
            must_parse_int("-9223372036854775808", "v"),
            Err(IntError::Negative {
                value: i64::MIN,
                ..
            })
        ));
        for bad in ["", "+", "-", "1_000", "0x1f", " 1", "١"] {
            assert!(must_parse_int(bad, "v").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_use_go_simple_lowercase() {
        assert_eq!(parse_int_or_name("FRİ", &DOW).unwrap(), 5);
        assert_eq!(parse_int_or_name("jAn", &MONTHS).unwrap(), 1);
        assert!(parse_int_or_name("mon", &MONTHS).is_err());
    }
}
