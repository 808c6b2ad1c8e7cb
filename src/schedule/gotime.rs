//! The handful of Go `time` package behaviours that robfig/cron's `SpecSchedule.Next`
//! depends on, rebuilt on jiff.
//!
//! robfig walks the calendar with `time.Date`, `Time.AddDate`, `Time.Add` and
//! `Time.Truncate`. Around DST transitions those functions have very specific
//! behaviour (for example `time.Date` resolves a wall time inside a spring-forward gap
//! *backwards* in zones west of UTC and *forwards* in zones east of it), and that
//! behaviour leaks into which fire times Kubernetes picks. Reproducing the primitives,
//! rather than approximating them with jiff's own disambiguation rules, is what lets
//! `cron.rs` be a line-for-line port instead of a re-interpretation.
//!
//! All instants here are whole Unix seconds (`i64`): every cron fire time is on a whole
//! second, and integer arithmetic keeps the port free of rounding questions.

use jiff::{Timestamp, tz::TimeZone};

pub(super) const SECS_PER_MINUTE: i64 = 60;
pub(super) const SECS_PER_HOUR: i64 = 3_600;
const SECS_PER_DAY: i64 = 86_400;
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// The wall-clock reading of an instant in a zone: Go's `t.Date()`, `t.Clock()` and
/// `t.Weekday()` rolled into one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wall {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    /// 0 = Sunday … 6 = Saturday, as in cron and Go's `time.Weekday`.
    pub weekday: i64,
}

/// Reads the wall clock of Unix second `t` in `tz`. `None` outside jiff's range.
pub(super) fn wall(t: i64, tz: &TimeZone) -> Option<Wall> {
    let dt = tz.to_datetime(Timestamp::from_second(t).ok()?);
    Some(Wall {
        year: dt.year().into(),
        month: dt.month().into(),
        day: dt.day().into(),
        hour: dt.hour().into(),
        minute: dt.minute().into(),
        second: dt.second().into(),
        weekday: dt.weekday().to_sunday_zero_offset().into(),
    })
}

/// Go's `time.Date(year, month, day, hour, min, sec, 0, loc)`, in Unix seconds.
///
/// Out-of-range fields are normalised the way Go does it (month 13 is January of the
/// next year, day 32 runs into the next month), which `AddDate` relies on.
///
/// The zone lookup is Go's: take the offset in force at the wall time read as if it were
/// UTC (`off1`); if that is zero use it as is, otherwise use the offset in force at
/// `wall - off1`. Go phrases the second step as "keep `off1` if `wall - off1` lies in
/// the same zone period, else look `wall - off1` up", which always yields the offset at
/// `wall - off1`, so that is what is computed here. Consequences that robfig inherits:
/// a wall time in a spring-forward gap resolves to an instant one gap-length earlier in
/// zones west of UTC (New York 02:30 → 01:30 EST) and later in zones east of it
/// (Berlin 02:30 → 03:30 CEST); an ambiguous fall-back time resolves to the first
/// occurrence west of UTC and to the second one east of it.
pub(super) fn date(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: i64,
    tz: &TimeZone,
) -> Option<i64> {
    let m0 = month.checked_sub(1)?;
    let year = year.checked_add(m0.div_euclid(12))?;
    let month = m0.rem_euclid(12) + 1;
    let days = days_from_civil(year, month)?.checked_add(day.checked_sub(1)?)?;
    let local = days
        .checked_mul(SECS_PER_DAY)?
        .checked_add(hour.checked_mul(SECS_PER_HOUR)?)?
        .checked_add(min.checked_mul(SECS_PER_MINUTE)?)?
        .checked_add(sec)?;
    let off1 = offset_at(local, tz)?;
    if off1 == 0 {
        return Some(local);
    }
    let off = offset_at(local.checked_sub(off1)?, tz)?;
    local.checked_sub(off)
}

/// The UTC offset, in seconds, in force at Unix second `t`.
fn offset_at(t: i64, tz: &TimeZone) -> Option<i64> {
    let ts = Timestamp::from_second(t).ok()?;
    Some(tz.to_offset(ts).seconds().into())
}

/// Days from 1970-01-01 to the first day of `month` (1..=12) in `year`, proleptic
/// Gregorian (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64) -> Option<i64> {
    // Shifting the year to start in March puts the leap day at the end.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.checked_mul(146_097)?
        .checked_add(doe)?
        .checked_sub(719_468)
}

/// The whole Unix second at or before `ts` (floor, also for instants before 1970).
///
/// Go's `t.Nanosecond()` is always in `0..1e9`, so "drop the sub-second part" means
/// flooring, which is what both robfig schedules do before adding their step.
pub(super) fn floor_second(ts: Timestamp) -> i64 {
    // jiff's range is about ±10,000 years, far inside i64 seconds.
    i64::try_from(ts.as_nanosecond().div_euclid(NANOS_PER_SEC)).unwrap_or(i64::MAX)
}

/// Unix seconds back to a timestamp; `None` outside jiff's supported range.
pub(super) fn timestamp(secs: i64) -> Option<Timestamp> {
    Timestamp::from_second(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(name: &str) -> TimeZone {
        jiff::tz::TimeZoneDatabase::bundled().get(name).unwrap()
    }

    fn secs(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn days_from_civil_matches_known_epochs() {
        assert_eq!(days_from_civil(1970, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3), Some(11_017));
        assert_eq!(days_from_civil(1969, 12), Some(-31));
    }

    #[test]
    fn date_normalises_like_go() {
        let utc = TimeZone::UTC;
        // Month 13 is January of the next year; day 32 of January is 1 February.
        assert_eq!(
            date(2012, 13, 1, 0, 0, 0, &utc),
            Some(secs("2013-01-01T00:00:00Z"))
        );
        assert_eq!(
            date(2013, 1, 32, 0, 0, 0, &utc),
            Some(secs("2013-02-01T00:00:00Z"))
        );
    }

    // Go's time.Date documentation: in a gap or overlap "Date returns a time that is
    // correct in one of the two zones involved in the transition, but it does not
    // guarantee which"; the choice below follows from its lookup algorithm (see `date`).
    #[test]
    fn date_resolves_gaps_and_folds_like_go() {
        let ny = tz("America/New_York");
        // 2012-03-11 02:30 does not exist in New York; Go lands an hour early, on
        // 01:30 EST (06:30Z).
        assert_eq!(
            date(2012, 3, 11, 2, 30, 0, &ny),
            Some(secs("2012-03-11T06:30:00Z"))
        );
        // 2012-11-04 01:30 happens twice; Go picks the first (EDT).
        assert_eq!(
            date(2012, 11, 4, 1, 30, 0, &ny),
            Some(secs("2012-11-04T01:30:00-04:00"))
        );
        let berlin = tz("Europe/Berlin");
        // East of UTC the same algorithm lands on the later side: 02:30 in the gap
        // becomes 03:30 CEST (01:30Z), and the repeated 02:30 becomes the CET one.
        assert_eq!(
            date(2027, 3, 28, 2, 30, 0, &berlin),
            Some(secs("2027-03-28T01:30:00Z"))
        );
        assert_eq!(
            date(2027, 10, 31, 2, 30, 0, &berlin),
            Some(secs("2027-10-31T02:30:00+01:00"))
        );
    }

    #[test]
    fn floor_second_floors_negative_instants() {
        let ts = Timestamp::new(-5, -1).unwrap();
        assert_eq!(floor_second(ts), -6);
        let ts = Timestamp::new(5, 999_999_999).unwrap();
        assert_eq!(floor_second(ts), 5);
    }
}
