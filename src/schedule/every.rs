//! `@every <duration>`: robfig/cron's `ConstantDelaySchedule`.
//!
//! The duration is parsed with a port of Go's `time.ParseDuration` (the API server
//! validates the schedule with it, so the accepted set must be the same), then treated
//! as robfig's `Every` does: anything below one second becomes one second (this includes
//! zero and negative durations, which Kubernetes therefore accepts) and the rest is
//! truncated to whole seconds. `Next(t)` is `t` plus the delay, minus `t`'s sub-second
//! part; it never looks at a time zone.

use jiff::Timestamp;

use super::gotime;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A fixed delay between fire times, in whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Every {
    secs: i64,
}

impl Every {
    /// Parses the text after `@every `.
    pub(super) fn parse(text: &str) -> Result<Every, String> {
        let nanos = parse_go_duration(text).map_err(|problem| {
            format!(
                "invalid @every duration {text:?}: {problem} \
                 (expected a Go duration such as 90m, 1h30m or 5s)"
            )
        })?;
        Ok(Every::from_nanos(nanos))
    }

    /// robfig's `Every(duration)`: at least a second, truncated to whole seconds.
    fn from_nanos(nanos: i64) -> Every {
        let nanos = nanos.max(NANOS_PER_SEC);
        Every {
            secs: nanos / NANOS_PER_SEC,
        }
    }

    /// The delay in whole seconds.
    pub(super) fn seconds(&self) -> i64 {
        self.secs
    }

    /// The first fire time strictly after `after`: `floor(after) + delay`.
    pub(super) fn next(&self, after: Timestamp) -> Option<Timestamp> {
        gotime::timestamp(gotime::floor_second(after).checked_add(self.secs)?)
    }

    /// The first element strictly after `after` of the chain `floor(anchor) + k·delay`,
    /// k = 1, 2, …: the fire times of `next` from `anchor` on, whatever instant is asked about.
    pub(super) fn next_in_chain(&self, anchor: Timestamp, after: Timestamp) -> Option<Timestamp> {
        let base = i128::from(gotime::floor_second(anchor));
        let step = i128::from(self.secs);
        // Fire times are whole seconds, so "after `after`" is "after its whole second".
        let past = i128::from(gotime::floor_second(after)) - base;
        let k = if past < step { 1 } else { past / step + 1 };
        gotime::timestamp(i64::try_from(base + k * step).ok()?)
    }

    /// The last element strictly before `before` of the same chain (k >= 1), if any.
    pub(super) fn previous_in_chain(
        &self,
        anchor: Timestamp,
        before: Timestamp,
    ) -> Option<Timestamp> {
        let base = i128::from(gotime::floor_second(anchor));
        let step = i128::from(self.secs);
        // The last whole second strictly before `before`.
        let limit = i128::from(gotime::floor_second(
            before
                .checked_sub(jiff::SignedDuration::from_nanos(1))
                .ok()?,
        ));
        let k = (limit - base).div_euclid(step);
        if k < 1 {
            return None;
        }
        gotime::timestamp(i64::try_from(base + k * step).ok()?)
    }
}

/// Go's `time.ParseDuration`, returning nanoseconds. The grammar is
/// `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` with units ns, us, µs, μs, ms, s, m, h, or the lone
/// string `0`. Overflow handling mirrors Go's unsigned arithmetic, including its
/// wrap-around when two terms of exactly 2^63 ns are summed.
fn parse_go_duration(text: &str) -> Result<i64, String> {
    const UNITS: &[(&str, u64)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000), // U+00B5 micro sign
        ("μs", 1_000), // U+03BC Greek mu
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    const LIMIT: u64 = 1 << 63;
    let invalid = || "not a valid duration".to_string();

    let mut s = text.as_bytes();
    let mut negative = false;
    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        negative = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }

    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part.
        let int_len = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &c in &s[..int_len] {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        let pre = int_len > 0;

        // The fraction: keeps accumulating digits until it would overflow, then ignores
        // the rest (Go's leadingFraction).
        let mut f: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let frac_len = s.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for &c in &s[..frac_len] {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            s = &s[frac_len..];
            post = frac_len > 0;
        }
        if !pre && !post {
            return Err(invalid());
        }

        // The unit: everything up to the next '.' or digit.
        let unit_len = s
            .iter()
            .take_while(|c| !(**c == b'.' || c.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err("missing unit".to_string());
        }
        let unit_bytes = &s[..unit_len];
        s = &s[unit_len..];
        let Some(&(_, unit)) = UNITS.iter().find(|(name, _)| name.as_bytes() == unit_bytes) else {
            return Err(format!(
                "unknown unit {:?} (use ns, us, ms, s, m or h)",
                String::from_utf8_lossy(unit_bytes)
            ));
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            // Go converts the float product with uint64(...), truncating toward zero.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total = total.wrapping_add(v);
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // -Duration(d) with d <= 2^63.
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values: Go's own table, src/time/time_test.go `parseDurationTests`.
    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * NANOS_PER_SEC),
            ("30s", 30 * NANOS_PER_SEC),
            ("1478s", 1478 * NANOS_PER_SEC),
            ("-5s", -5 * NANOS_PER_SEC),
            ("+5s", 5 * NANOS_PER_SEC),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * NANOS_PER_SEC),
            ("5.6s", 5 * NANOS_PER_SEC + 600_000_000),
            ("5.s", 5 * NANOS_PER_SEC),
            (".5s", 500_000_000),
            ("1.0s", NANOS_PER_SEC),
            ("1.00s", NANOS_PER_SEC),
            ("1.004s", NANOS_PER_SEC + 4_000_000),
            ("1.0040s", NANOS_PER_SEC + 4_000_000),
            ("100.00100s", 100 * NANOS_PER_SEC + 1_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12µs", 12_000),
            ("12μs", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14 * NANOS_PER_SEC),
            ("15m", 15 * 60 * NANOS_PER_SEC),
            ("16h", 16 * 3600 * NANOS_PER_SEC),
            ("3h30m", (3 * 3600 + 30 * 60) * NANOS_PER_SEC),
            ("10.5s4m", (4 * 60 + 10) * NANOS_PER_SEC + 500_000_000),
            ("-2m3.4s", -((2 * 60 + 3) * NANOS_PER_SEC + 400_000_000)),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * 60 * NANOS_PER_SEC),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * 60 * NANOS_PER_SEC),
            (
                "0.830103483285477580700h",
                49 * 60 * NANOS_PER_SEC + 48_372_539_827,
            ),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_go_duration(text), Ok(want), "{text}");
        }
    }

    // Go's src/time/time_test.go `parseDurationErrorTests` (minus the invalid-UTF-8
    // inputs, which a Rust &str cannot hold), plus whitespace and case.
    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{FFFD}",
            "\u{FFFD} hello \u{FFFD} world",
            "9223372036854775810ns",
            "9223372036854775808ns",
            "9223372036854776us",
            "3000000h",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "-9223372036854775809ns",
            "1h 30m",
            " 1h",
            "1H",
        ] {
            assert!(
                parse_go_duration(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    // robfig constantdelay.go: "Delays of less than a second are not supported (will
    // round up to 1 second). Any fields less than a Second are truncated."
    #[test]
    fn every_rounds_like_robfig() {
        assert_eq!(Every::parse("15ms").unwrap().seconds(), 1);
        assert_eq!(Every::parse("1.9s").unwrap().seconds(), 1);
        assert_eq!(Every::parse("0").unwrap().seconds(), 1);
        assert_eq!(Every::parse("-1h").unwrap().seconds(), 1);
        assert_eq!(Every::parse("90m").unwrap().seconds(), 5400);
        assert_eq!(Every::parse("15m50ns").unwrap().seconds(), 900);
    }
}
