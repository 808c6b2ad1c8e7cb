//! Several schedules as one (`spec.schedules`, as Argo CronWorkflow's `schedules`): the fire
//! times of the set are the union of its members' fire times, and every question `due` answers
//! for one schedule — the next fire time, the missed ones, the starting deadline — is asked of
//! that union.
//!
//! A cron member's fire times do not depend on where a walk starts, so the union's `Next` is
//! the earliest of its members'. An `@every` member's chain does (robfig counts the delay from
//! the last fire): in a set its chain is counted from a fixed anchor, the object's creation,
//! or each fire of another member would restart it, and a member slower than another would
//! never fire. A set of one is exactly that schedule, `@every` counted from the last fire.

use jiff::{Timestamp, tz::TimeZone};

use super::due::{Due, due_of_chain};
use super::{Kind, Schedule, due};

/// One or more schedules evaluated as the union of their fire times.
#[derive(Debug, Clone)]
pub(crate) struct ScheduleSet {
    members: Vec<Schedule>,
    /// Where `@every` members of a set of several count their intervals from.
    anchor: Timestamp,
}

impl ScheduleSet {
    /// The set of `members` (at least one), `@every` members counted from `anchor` when there
    /// are several. Members equal in meaning (`@daily`, `0 0 * * *`) count once.
    pub(crate) fn new(members: Vec<Schedule>, anchor: Timestamp) -> Option<ScheduleSet> {
        let mut unique: Vec<Schedule> = Vec::with_capacity(members.len());
        for m in members {
            if !unique.contains(&m) {
                unique.push(m);
            }
        }
        (!unique.is_empty()).then_some(ScheduleSet {
            members: unique,
            anchor,
        })
    }

    /// The first fire time of the union strictly after `after`: the earliest of the members'.
    pub(crate) fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.members[..] {
            [one] => one.next_after(after, tz),
            several => several
                .iter()
                .filter_map(|m| self.member_next(m, after, tz))
                .min(),
        }
    }

    /// The last fire time of the union strictly before `before` (the start of the data
    /// interval a run for `before` covers): the latest of its members'.
    pub(crate) fn previous_before(&self, before: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.members[..] {
            [one] => one.previous_before(before, tz),
            several => several
                .iter()
                .filter_map(|m| match &m.kind {
                    Kind::Cron(_) => m.previous_before(before, tz),
                    Kind::Every(every) => every.previous_in_chain(self.anchor, before),
                })
                .max(),
        }
    }

    /// Whether it is one `@every` schedule, whose chain counts from its last fire.
    pub(crate) fn is_lone_every(&self) -> bool {
        matches!(&self.members[..], [one] if matches!(one.kind, Kind::Every(_)))
    }

    /// A member's next fire time within a set of several.
    fn member_next(&self, m: &Schedule, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &m.kind {
            Kind::Cron(spec) => spec.next(after, tz),
            Kind::Every(every) => every.next_in_chain(self.anchor, after),
        }
    }
}

/// [`due`] for a set: a set of one is that schedule's `due`; a set of several walks the union
/// of its members' chains.
pub(crate) fn due_set(
    set: &ScheduleSet,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
    starting_deadline_seconds: Option<i64>,
) -> Due {
    match &set.members[..] {
        [one] => due(one, tz, earliest, now, starting_deadline_seconds),
        _ => due_of_chain(
            |t| set.next_after(t, tz),
            earliest,
            now,
            starting_deadline_seconds,
        ),
    }
}

/// Which members of the set fire at `at` (for the preview's "which schedule" column).
pub(crate) fn firing_at<'a>(
    set: &'a ScheduleSet,
    tz: &TimeZone,
    at: Timestamp,
) -> impl Iterator<Item = &'a Schedule> {
    let before = at.checked_sub(jiff::SignedDuration::from_secs(1)).ok();
    set.members
        .iter()
        .filter(move |m| before.is_some_and(|b| set.member_next(m, b, tz) == Some(at)))
}
