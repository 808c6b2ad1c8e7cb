//! `kubectl syncseq backfill`: asks for one run per past fire time of the object's schedule in
//! `[--from, --to)`, with the annotations the controller reads (`syncseq.dev/backfill`,
//! `syncseq.dev/backfillRequestedAt`, `syncseq.dev/backfillMaxRuns`). The range is checked
//! first with the controller's own checks, on the schedule parsed as the controller parses it,
//! so a request it would refuse is refused here, in its words, before anything is written;
//! `--dry-run` lists the fire times and their data intervals instead. What a status says about
//! a request (for `--wait`) is decided here too; the I/O is in [`super::commands`].

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::WaitArgs;
use super::render;
use super::target::{Kind, Runnable, Target};
use crate::api::annotations::{BACKFILL, BACKFILL_MAX_RUNS, BACKFILL_REQUESTED_AT};
use crate::api::{BackfillPhase, BackfillStatus};
use crate::engine::{
    BackfillRange, DEFAULT_MAX_RUNS, check_range, parse_max_runs, parse_range, schedule_to_backfill,
};
use crate::schedule::{ScheduleSet, range};

/// The flags of `backfill`.
#[derive(clap::Args, Debug, Clone)]
pub struct BackfillArgs {
    #[arg(value_parser = Target::parse, help = super::TARGET_HELP)]
    pub target: Target,
    /// Run the fire times from this one on (RFC 3339, e.g. 2026-12-06T00:00:00Z or
    /// 2026-12-06T01:00:00+01:00).
    #[arg(long, value_parser = parse_time, required_unless_present = "cancel", conflicts_with = "cancel")]
    pub from: Option<Timestamp>,
    /// Run the fire times before this one (RFC 3339); at most now.
    #[arg(long, value_parser = parse_time, required_unless_present = "cancel", conflicts_with = "cancel")]
    pub to: Option<Timestamp>,
    /// Refuse a range with more fire times than this (default 1000, at most 10000).
    #[arg(long, value_name = "N", value_parser = parse_limit, conflicts_with = "cancel")]
    pub max_runs: Option<usize>,
    /// List the fire times with their data intervals, and write nothing.
    #[arg(long, conflicts_with_all = ["cancel", "wait"])]
    pub dry_run: bool,
    /// Cancel the backfill in progress, and its run in progress (sets
    /// syncseq.dev/cancelBackfillRequestedAt).
    #[arg(long)]
    pub cancel: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    s.trim().parse().map_err(|e| {
        format!(
            "expected an RFC 3339 time such as 2026-12-06T00:00:00Z or 2026-12-06T01:00:00+01:00: {e}"
        )
    })
}

fn parse_limit(s: &str) -> Result<usize, String> {
    parse_max_runs(Some(s))
}

/// A range the controller would accept, with the schedule whose fire times it has.
#[derive(Debug)]
pub(crate) struct Checked {
    pub range: BackfillRange,
    schedule: (ScheduleSet, TimeZone),
}

/// Whether the controller would accept a backfill of `[from, to)` on `obj` now, checked as it
/// checks it: the error is its reason for refusing.
pub(crate) fn check(
    obj: &Runnable,
    from: Timestamp,
    to: Timestamp,
    max_runs: Option<usize>,
    now: Timestamp,
) -> Result<Checked, String> {
    // The annotation the request writes, read back as the controller reads it.
    let (from, to) = parse_range(&range_value(from, to))?;
    if let Some(running) = obj
        .book
        .backfill
        .as_deref()
        .filter(|b| b.phase == BackfillPhase::Running)
    {
        return Err(format!(
            "the backfill requested at {} is in progress ({} runs done); cancel it first (`kubectl syncseq backfill {} --cancel`)",
            crate::text::truncate(&crate::text::printable(&running.requested_at)),
            running.progress,
            argument(&obj.target)
        ));
    }
    let spec = &obj.scheduling;
    // As the controller parses it (`triggers::parse_schedule`), and refused as it refuses it.
    let parsed = crate::schedule::parse_set(
        spec.schedule.as_deref(),
        spec.schedules.as_deref(),
        spec.time_zone.as_deref(),
        obj.created.unwrap_or(Timestamp::UNIX_EPOCH),
    )
    .map_err(|e| e.to_string());
    let schedule =
        schedule_to_backfill(parsed.as_ref().map(Option::as_ref).map_err(String::as_str))?.clone();
    let range = check_range(
        &schedule,
        (from, to),
        max_runs.unwrap_or(DEFAULT_MAX_RUNS),
        now,
    )?;
    Ok(Checked { range, schedule })
}

/// `syncseq.dev/backfill`: `FROM/TO` in UTC.
fn range_value(from: Timestamp, to: Timestamp) -> String {
    format!("{from}/{to}")
}

/// The target as the commands take it: NAME for a sequence, sync/NAME for a Sync.
pub(crate) fn argument(target: &Target) -> String {
    match target.kind {
        Kind::SyncSequence => target.name.clone(),
        Kind::Sync => format!("sync/{}", target.name),
    }
}

/// `--dry-run`: each fire time with the data interval its run gets (the schedule's fire time
/// before it, as the controller computes `SYNCSEQ_INTERVAL_START`, to the fire time itself).
pub(crate) fn dry_run(checked: &Checked) -> String {
    let (set, tz) = &checked.schedule;
    let BackfillRange {
        from, to, total, ..
    } = checked.range;
    let rows: Vec<Vec<String>> = range::fire_times(set, tz, from, to)
        .enumerate()
        .map(|(i, at)| {
            vec![
                (i + 1).to_string(),
                render::time(at),
                set.previous_before(at, tz)
                    .map_or_else(|| "-".into(), render::time),
                render::time(at),
            ]
        })
        .collect();
    let mut out = render::table(&["#", "FIRE TIME", "INTERVAL START", "INTERVAL END"], &rows);
    out.push_str(&format!("{total} fire times; nothing was written\n"));
    out
}

/// The annotations of a request with value `value`: the range, the value, and the limit, which
/// is removed when not given so that an earlier request's does not linger.
pub(crate) fn request(
    range: &BackfillRange,
    max_runs: Option<usize>,
    value: &str,
) -> Vec<(&'static str, Option<String>)> {
    vec![
        (BACKFILL, Some(range_value(range.from, range.to))),
        (BACKFILL_REQUESTED_AT, Some(value.to_string())),
        (BACKFILL_MAX_RUNS, max_runs.map(|n| n.to_string())),
    ]
}

/// Where a backfill request stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// The controller has not handled it yet.
    NotHandled,
    /// Handled, but not started: another backfill was in progress (its Event says so).
    Ignored,
    /// It is running.
    Running(Box<BackfillStatus>),
    /// It has ended (or was refused).
    Ended(Box<BackfillStatus>),
}

/// What `status` says about the backfill request `value`.
pub(crate) fn request_state(status: &Runnable, value: &str) -> Request {
    match status.book.backfill.as_deref() {
        Some(bf) if bf.requested_at == value => match bf.phase {
            BackfillPhase::Running => Request::Running(Box::new(bf.clone())),
            _ => Request::Ended(Box::new(bf.clone())),
        },
        _ if status.book.last_handled_backfill_at.as_deref() == Some(value) => Request::Ignored,
        _ => Request::NotHandled,
    }
}

/// Whether the cancel request `value` has been handled and, if it cancelled a backfill, that
/// backfill's run in progress has ended: the backfill then, if there is one.
pub(crate) fn cancel_state(status: &Runnable, value: &str) -> Option<Option<BackfillStatus>> {
    if status.book.last_handled_backfill_cancel_at.as_deref() != Some(value) {
        return None;
    }
    match status.book.backfill.as_deref() {
        Some(bf) if bf.run.is_some() => None,
        bf => Some(bf.cloned()),
    }
}

/// What the command prints once a backfill request is written.
pub(crate) fn requested(target: &Target, range: &BackfillRange, value: &str) -> String {
    format!(
        "{} backfill of {} fire times from {} to {} requested ({BACKFILL_REQUESTED_AT}={value}); follow it with kubectl syncseq status {}\n",
        target.reference(),
        range.total,
        range.from,
        range.to,
        argument(target)
    )
}

/// The progress line of a backfill while waiting: runs done, then what it does.
pub(crate) fn progress_line(bf: &BackfillStatus) -> String {
    match &bf.message {
        Some(m) => format!("backfill {}: {}", bf.progress, m),
        None => format!("backfill {}", bf.progress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use crate::plugin::{PluginCli, PluginCommand};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hourly() -> Runnable {
        let mut seq = crate::engine::fixtures::sequence(vec![]);
        seq.spec.scheduling.schedule = Some("0 * * * *".into());
        Runnable::from(&seq)
    }

    const NOW: &str = "2026-12-07T12:00:00Z";

    fn checked(
        obj: &Runnable,
        from: &str,
        to: &str,
        max: Option<usize>,
    ) -> Result<Checked, String> {
        check(obj, t(from), t(to), max, t(NOW))
    }

    fn parse(args: &[&str]) -> Result<BackfillArgs, clap::Error> {
        let argv = ["kubectl-syncseq", "backfill"].iter().chain(args);
        match PluginCli::try_parse_from(argv)?.args.command {
            PluginCommand::Backfill(args) => Ok(args),
            other => panic!("backfill expected, got {other:?}"),
        }
    }

    #[test]
    fn the_flags_take_rfc3339_times_in_any_offset_and_refuse_the_rest() {
        let args = parse(&[
            "crm",
            "--from",
            "2026-12-06T01:00:00+01:00",
            "--to",
            "2026-12-06T03:00:00Z",
            "--max-runs",
            "5",
        ])
        .unwrap();
        assert_eq!(args.from, Some(t("2026-12-06T00:00:00Z")));
        assert_eq!(args.max_runs, Some(5));
        let args = parse(&["sync/accounts", "--cancel"]).unwrap();
        assert!(args.cancel && args.from.is_none());
        assert_eq!(args.target.kind, Kind::Sync);

        let err =
            parse(&["crm", "--from", "yesterday", "--to", "2026-12-06T03:00:00Z"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .contains("expected an RFC 3339 time such as 2026-12-06T00:00:00Z"),
            "{err}"
        );
        for bad in [
            &["crm"][..],
            &["crm", "--from", "2026-12-06T00:00:00Z"],
            &["crm", "--from", "2026-12-06T00:00:00"],
            &["crm", "--cancel", "--from", "2026-12-06T00:00:00Z"],
            &[
                "crm",
                "--from",
                "2026-12-06T00:00:00Z",
                "--to",
                "2026-12-06T03:00:00Z",
                "--max-runs",
                "0",
            ],
            &[
                "crm",
                "--from",
                "2026-12-06T00:00:00Z",
                "--to",
                "2026-12-06T03:00:00Z",
                "--max-runs",
                "10001",
            ],
            &[
                "crm",
                "--from",
                "2026-12-06T00:00:00Z",
                "--to",
                "2026-12-06T03:00:00Z",
                "--dry-run",
                "--wait",
            ],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_range_is_refused_in_the_controllers_words() {
        let obj = hourly();
        assert_eq!(
            checked(&obj, "2026-12-06T03:00:00Z", "2026-12-06T03:00:00Z", None).err(),
            Some("the range from 2026-12-06T03:00:00Z to 2026-12-06T03:00:00Z is empty: its start must be before its end".into())
        );
        assert_eq!(
            checked(&obj, "2026-12-06T04:00:00Z", "2026-12-06T03:00:00Z", None).err(),
            Some("the range from 2026-12-06T04:00:00Z to 2026-12-06T03:00:00Z is empty: its start must be before its end".into())
        );
        assert_eq!(
            checked(&obj, "2026-12-06T00:00:00Z", "2026-12-06T04:00:00Z", Some(3)).err(),
            Some("the range from 2026-12-06T00:00:00Z to 2026-12-06T04:00:00Z has 4 fire times, more than the limit of 3 (syncseq.dev/backfillMaxRuns raises it, up to 10000)".into())
        );
        // 2026-11-01 to 2026-12-07: 36 days of hours, under the default limit; 340 days over it.
        let ok = checked(&obj, "2026-11-01T00:00:00Z", "2026-12-07T00:00:00Z", None).unwrap();
        assert_eq!(ok.range.total, 864);
        let err = checked(&obj, "2026-01-01T00:00:00Z", "2026-12-07T00:00:00Z", None).unwrap_err();
        assert!(
            err.contains("has 8160 fire times, more than the limit of 1000"),
            "{err}"
        );
        let err = checked(&obj, "2026-12-07T11:00:00Z", "2026-12-07T14:00:00Z", None).unwrap_err();
        assert!(
            err.starts_with(
                "the range has fire times that have not come yet, from 2026-12-07T13:00:00Z on"
            ),
            "{err}"
        );
        // Ending after now is fine while none of its fire times is to come (a clock ahead).
        let ok = checked(&obj, "2026-12-07T11:00:00Z", "2026-12-07T12:00:30Z", None).unwrap();
        assert_eq!(ok.range.total, 2);
        let err = checked(&obj, "2026-12-06T03:10:00Z", "2026-12-06T03:50:00Z", None).unwrap_err();
        assert_eq!(
            err,
            "the schedule has no fire time from 2026-12-06T03:10:00Z to 2026-12-06T03:50:00Z"
        );

        let mut manual = hourly();
        manual.scheduling.schedule = None;
        let err = checked(
            &manual,
            "2026-12-06T00:00:00Z",
            "2026-12-06T03:00:00Z",
            None,
        )
        .unwrap_err();
        assert!(err.starts_with("the object has no schedule"), "{err}");
        let mut broken = hourly();
        broken.scheduling.schedule = Some("61 * * * *".into());
        let err = checked(
            &broken,
            "2026-12-06T00:00:00Z",
            "2026-12-06T03:00:00Z",
            None,
        )
        .unwrap_err();
        assert!(
            err.starts_with(
                "the object's schedule cannot be used: invalid schedule \"61 * * * *\""
            ),
            "{err}"
        );
    }

    fn backfill(requested_at: &str, phase: BackfillPhase) -> BackfillStatus {
        BackfillStatus {
            requested_at: requested_at.into(),
            from: Some(Time(t("2026-12-06T00:00:00Z"))),
            to: Some(Time(t("2026-12-06T03:00:00Z"))),
            phase,
            total: 3,
            started: 1,
            succeeded: 0,
            failed: 0,
            last_started_time: Some(Time(t("2026-12-06T00:00:00Z"))),
            next_time: Some(Time(t("2026-12-06T01:00:00Z"))),
            run: Some(7),
            failed_runs: vec![],
            progress: "0/3".into(),
            start_time: Time(t("2026-12-07T11:00:00Z")),
            completion_time: None,
            message: Some("running fire time 2026-12-06T00:00:00Z (1 of 3)".into()),
        }
    }

    #[test]
    fn one_backfill_at_a_time() {
        let mut obj = hourly();
        obj.book.backfill = Some(Box::new(backfill("b1", BackfillPhase::Running)));
        assert_eq!(
            checked(&obj, "2026-12-06T00:00:00Z", "2026-12-06T03:00:00Z", None).err(),
            Some("the backfill requested at b1 is in progress (0/3 runs done); cancel it first (`kubectl syncseq backfill crm --cancel`)".into())
        );
        obj.book.backfill.as_mut().unwrap().phase = BackfillPhase::Failed;
        assert!(checked(&obj, "2026-12-06T00:00:00Z", "2026-12-06T03:00:00Z", None).is_ok());
    }

    #[test]
    fn a_dry_run_of_three_hours_of_an_hourly_schedule_lists_three_fire_times() {
        let obj = hourly();
        let ok = checked(
            &obj,
            "2026-12-06T01:00:00+01:00",
            "2026-12-06T03:00:00Z",
            None,
        )
        .unwrap();
        assert_eq!(
            (ok.range.total, ok.range.first),
            (3, t("2026-12-06T00:00:00Z"))
        );
        assert_eq!(
            dry_run(&ok),
            "#   FIRE TIME              INTERVAL START         INTERVAL END\n\
             1   2026-12-06T00:00:00Z   2026-12-05T23:00:00Z   2026-12-06T00:00:00Z\n\
             2   2026-12-06T01:00:00Z   2026-12-06T00:00:00Z   2026-12-06T01:00:00Z\n\
             3   2026-12-06T02:00:00Z   2026-12-06T01:00:00Z   2026-12-06T02:00:00Z\n\
             3 fire times; nothing was written\n"
        );
        // Several schedules in a time zone: the union of their fire times, each interval from
        // the fire before it, whichever schedule that was.
        let mut twice = hourly();
        twice.scheduling.schedule = None;
        twice.scheduling.schedules = Some(vec!["0 6 * * *".into(), "0 18 * * 1-5".into()]);
        twice.scheduling.time_zone = Some("Europe/Berlin".into());
        // Fri 4 Dec to Sun 6 Dec 2026 (Berlin is UTC+1): 06:00 and 18:00 Friday, 06:00 Saturday.
        let ok = checked(&twice, "2026-12-04T00:00:00Z", "2026-12-06T00:00:00Z", None).unwrap();
        let table = dry_run(&ok);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[1..4],
            [
                "1   2026-12-04T05:00:00Z   2026-12-03T17:00:00Z   2026-12-04T05:00:00Z",
                "2   2026-12-04T17:00:00Z   2026-12-04T05:00:00Z   2026-12-04T17:00:00Z",
                "3   2026-12-05T05:00:00Z   2026-12-04T17:00:00Z   2026-12-05T05:00:00Z",
            ],
            "{table}"
        );
        assert_eq!(lines[4], "3 fire times; nothing was written");
    }

    #[test]
    fn a_request_writes_the_range_in_utc_and_removes_an_old_limit() {
        let obj = hourly();
        let ok = checked(
            &obj,
            "2026-12-06T01:00:00+01:00",
            "2026-12-06T03:00:00Z",
            None,
        )
        .unwrap();
        assert_eq!(
            request(&ok.range, None, "v1"),
            vec![
                (
                    BACKFILL,
                    Some("2026-12-06T00:00:00Z/2026-12-06T03:00:00Z".into())
                ),
                (BACKFILL_REQUESTED_AT, Some("v1".into())),
                (BACKFILL_MAX_RUNS, None),
            ]
        );
        assert_eq!(
            request(&ok.range, Some(5), "v1")[2],
            (BACKFILL_MAX_RUNS, Some("5".into()))
        );
        let target = Target::parse("sync/accounts").unwrap();
        assert_eq!(
            requested(&target, &ok.range, "v1"),
            "sync.syncseq.dev/accounts backfill of 3 fire times from 2026-12-06T00:00:00Z to 2026-12-06T03:00:00Z requested (syncseq.dev/backfillRequestedAt=v1); follow it with kubectl syncseq status sync/accounts\n"
        );
    }

    #[test]
    fn waiting_follows_our_request_to_its_end() {
        let mut obj = hourly();
        assert_eq!(request_state(&obj, "mine"), Request::NotHandled);
        obj.book.backfill = Some(Box::new(backfill("theirs", BackfillPhase::Running)));
        assert_eq!(request_state(&obj, "mine"), Request::NotHandled);
        obj.book.last_handled_backfill_at = Some("mine".into());
        assert_eq!(request_state(&obj, "mine"), Request::Ignored);
        let ours = backfill("mine", BackfillPhase::Running);
        obj.book.backfill = Some(Box::new(ours.clone()));
        assert_eq!(
            request_state(&obj, "mine"),
            Request::Running(Box::new(ours.clone()))
        );
        assert_eq!(
            progress_line(&ours),
            "backfill 0/3: running fire time 2026-12-06T00:00:00Z (1 of 3)"
        );
        let refused = BackfillStatus {
            phase: BackfillPhase::Refused,
            ..ours
        };
        obj.book.backfill = Some(Box::new(refused.clone()));
        assert_eq!(
            request_state(&obj, "mine"),
            Request::Ended(Box::new(refused))
        );
    }

    #[test]
    fn a_cancel_is_done_once_handled_and_the_backfills_run_has_ended() {
        let mut obj = hourly();
        assert_eq!(cancel_state(&obj, "c1"), None);
        obj.book.last_handled_backfill_cancel_at = Some("c1".into());
        assert_eq!(cancel_state(&obj, "c1"), Some(None), "no backfill at all");
        let mut cancelled = backfill("b1", BackfillPhase::Cancelled);
        obj.book.backfill = Some(Box::new(cancelled.clone()));
        assert_eq!(cancel_state(&obj, "c1"), None, "its run is being cancelled");
        cancelled.run = None;
        obj.book.backfill = Some(Box::new(cancelled.clone()));
        assert_eq!(cancel_state(&obj, "c1"), Some(Some(cancelled)));
    }
}
