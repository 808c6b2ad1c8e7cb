//! Schedule maths for syncseq, with Kubernetes CronJob semantics.
//!
//! A `spec.schedule` string means whatever Kubernetes' CronJob controller makes of it,
//! and Kubernetes delegates that to robfig/cron v3 (`cron.ParseStandard` and
//! `Schedule.Next`). This module reproduces that library's behaviour — syntax, the
//! day-of-month/day-of-week rule, DST handling, the five-year search horizon,
//! `@every` — so that a schedule behaves the same here as it would in a CronJob, and
//! adds the controller's "what is due now" decision on top.
//!
//! * [`Schedule::parse`] accepts exactly what the API server accepts for a CronJob
//!   (`TZ=`/`CRON_TZ=` prefixes included: they are refused, the zone goes in
//!   `spec.timeZone`).
//! * [`Schedule::next_after`] is robfig's `Next`.
//! * [`Schedule::previous_before`] is the `Prev` robfig lacks, found with `Next`.
//! * [`parse_time_zone`] is `spec.timeZone` validation.
//! * [`due`] is `mostRecentScheduleTime` + `startingDeadlineSeconds`.
//! * [`ScheduleSet`] and [`due_set`] are the same for several schedules (`spec.schedules`):
//!   the union of their fire times.
//! * [`range`] is a backfill's fire times: those of `[from, to)`, by `Next`.
//! * [`jitter_offset`] is `spec.jitterSeconds`' per-object delay.
//! * [`preview`] lists upcoming fire times.
//!
//! Layout: `cron.rs` (five-field syntax and `Next`), `every.rs` (`@every`),
//! `gotime.rs` (the Go `time` behaviour `Next` depends on), `due.rs`, `set.rs`, `range.rs`,
//! `jitter.rs`, `tz.rs`.

mod cron;
mod due;
mod every;
mod gotime;
mod jitter;
pub(crate) mod range;
mod set;
mod tz;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod set_tests;
#[cfg(test)]
mod tests;

use std::fmt;

use jiff::{Timestamp, tz::TimeZone};

pub(crate) use due::due;
pub use jitter::offset as jitter_offset;
pub(crate) use set::{ScheduleSet, due_set, firing_at};
pub(crate) use tz::parse_time_zone;

/// Why a schedule or time zone was refused. The messages are meant for users (events,
/// status conditions, CLI output) and name the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScheduleError {
    /// `spec.schedule` is not something Kubernetes would accept.
    #[error("invalid schedule {expr:?}: {reason}")]
    InvalidSchedule { expr: String, reason: String },
    /// `spec.timeZone` is not a usable IANA time zone name.
    #[error("unknown time zone {name:?}: {reason}")]
    UnknownTimeZone { name: String, reason: String },
    /// Both `spec.schedule` and `spec.schedules` are set.
    #[error("set either schedule or schedules, not both (schedules takes a list of one)")]
    BothSchedules,
}

/// Parses `spec.schedule` or `spec.schedules` with `spec.timeZone`: None when neither is set.
/// In a set of several, `@every` schedules count from `anchor` (the object's creation).
pub(crate) fn parse_set(
    schedule: Option<&str>,
    schedules: Option<&[String]>,
    time_zone: Option<&str>,
    anchor: Timestamp,
) -> Result<Option<(ScheduleSet, TimeZone)>, ScheduleError> {
    let exprs: Vec<&str> = match (schedule, schedules) {
        (Some(_), Some(_)) => return Err(ScheduleError::BothSchedules),
        (Some(one), None) => vec![one],
        (None, Some(several)) => several.iter().map(String::as_str).collect(),
        (None, None) => return Ok(None),
    };
    let members = exprs
        .into_iter()
        .map(Schedule::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let tz = parse_time_zone(time_zone)?;
    Ok(ScheduleSet::new(members, anchor).map(|set| (set, tz)))
}

/// A parsed `spec.schedule`.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    expr: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Five fields or one of the fixed macros (`@daily`, …).
    Cron(cron::CronSpec),
    /// `@every <duration>`.
    Every(every::Every),
}

impl Schedule {
    /// Parses a schedule the way `cron.ParseStandard` does, after Kubernetes' own
    /// refusal of `TZ`/`CRON_TZ` in the schedule.
    ///
    /// Accepted: five fields (minute hour day-of-month month day-of-week) with `*`, `?`,
    /// numbers, `JAN`–`DEC`, `SUN`–`SAT` (any case), `a-b`, `a,b`, `*/n`, `a-b/n` and `a/n`
    /// (`a` to the field's maximum); `@yearly`, `@annually`, `@monthly`, `@weekly`,
    /// `@daily`, `@midnight`, `@hourly`; `@every <Go duration>`. Refused, as by
    /// Kubernetes: a seconds field, `L`, `W`, `#`, day-of-week 7, out-of-range values,
    /// the empty string, and any `TZ=` / `CRON_TZ=` prefix.
    pub(crate) fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidSchedule {
            expr: expr.to_string(),
            reason,
        };
        if expr.is_empty() {
            return Err(invalid("the schedule is empty".to_string()));
        }
        // Kubernetes' validateScheduleFormat refuses any "TZ" in the schedule (robfig
        // would parse a TZ=/CRON_TZ= prefix). Lower-case prefixes are caught too; robfig
        // would reject them anyway, only with a less helpful message.
        let lower = expr.to_ascii_lowercase();
        if expr.contains("TZ") || lower.starts_with("tz=") || lower.starts_with("cron_tz=") {
            return Err(invalid(
                "cannot use TZ or CRON_TZ in the schedule; set the time zone in the \
                 timeZone field instead"
                    .to_string(),
            ));
        }
        let kind = if expr.starts_with('@') {
            if let Some(spec) = cron::CronSpec::descriptor(expr) {
                Kind::Cron(spec)
            } else if let Some(duration) = expr.strip_prefix("@every ") {
                Kind::Every(every::Every::parse(duration).map_err(invalid)?)
            } else {
                return Err(invalid(format!(
                    "unrecognized descriptor {expr:?}; expected one of @yearly, @annually, \
                     @monthly, @weekly, @daily, @midnight, @hourly or @every <duration> \
                     (lower case, no surrounding whitespace)"
                )));
            }
        } else {
            Kind::Cron(cron::CronSpec::parse_fields(expr).map_err(invalid)?)
        };
        Ok(Schedule {
            expr: expr.to_string(),
            kind,
        })
    }

    /// The first fire time strictly after `after`, evaluated in `tz`. None if there is none.
    ///
    /// "None" follows robfig: when nothing matches within five years of `after` (for
    /// example `0 0 30 2 *`) there is no next fire time. Fire times are whole seconds;
    /// `@every` schedules ignore `tz`.
    pub(crate) fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            Kind::Cron(spec) => spec.next(after, tz),
            Kind::Every(every) => every.next(after),
        }
    }

    /// The latest fire time strictly before `before`, evaluated in `tz`: the start of the
    /// data interval a run for fire time `before` covers. None if nothing fires in the eight
    /// years before it (see `due::previous_before`).
    pub(crate) fn previous_before(&self, before: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        due::previous_before(self, tz, before)
    }

    /// For `@every` schedules, the interval (whole seconds, at least one): what the tests check
    /// the parser against.
    #[cfg(test)]
    pub(crate) fn every_interval(&self) -> Option<std::time::Duration> {
        match &self.kind {
            Kind::Every(every) => u64::try_from(every.seconds())
                .ok()
                .map(std::time::Duration::from_secs),
            Kind::Cron(_) => None,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl PartialEq for Schedule {
    /// Equal when both parse to the same robfig representation, whatever the spelling
    /// (`@daily` equals `0 0 * * *`, `0 0 * * MON` equals `0 0 * * 1`).
    fn eq(&self, other: &Schedule) -> bool {
        self.kind == other.kind
    }
}

impl Eq for Schedule {}

/// What has fire times: a schedule, or a set of them.
pub(crate) trait FireTimes {
    /// The first fire time strictly after `after`, evaluated in `tz`.
    fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp>;
}

impl FireTimes for Schedule {
    fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        Schedule::next_after(self, after, tz)
    }
}

impl FireTimes for ScheduleSet {
    fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        ScheduleSet::next_after(self, after, tz)
    }
}

/// The next `n` fire times strictly after `from` (for the `syncseq schedule next`
/// preview command). Shorter than `n` if the schedule runs out (see
/// [`Schedule::next_after`]).
pub(crate) fn preview(
    schedule: &impl FireTimes,
    tz: &TimeZone,
    from: Timestamp,
    n: usize,
) -> Vec<Timestamp> {
    // Cap the up-front allocation: `n` comes from the command line.
    let mut out = Vec::with_capacity(n.min(1024));
    let mut cursor = from;
    while out.len() < n {
        match schedule.next_after(cursor, tz) {
            Some(fire) => {
                out.push(fire);
                cursor = fire;
            }
            None => break,
        }
    }
    out
}
