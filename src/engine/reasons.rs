//! The reason vocabulary: every reason syncseq writes — of an Event, of a condition, of a failed
//! attempt in status — is one of these constants, so that a reader of one (the Event folding,
//! a test, the troubleshooting page) and its writer cannot drift apart.
//!
//! The strings are wire format: tools and people match on them (`kubectl get events
//! --field-selector reason=...`, kstatus, alert rules). Renaming one is a breaking change.
//! A reason both an Event and a condition carry is listed once, under Events. The tests below
//! hold `docs/troubleshooting.md` to this list and keep reason literals out of the sources.

// ---- Event reasons -------------------------------------------------------------------------

/// Normal: a run started (by the schedule, a request, an upstream, or from the queue).
pub(crate) const RUN_STARTED: &str = "RunStarted";
/// Normal: every step of a run succeeded.
pub(crate) const RUN_SUCCEEDED: &str = "RunSucceeded";
/// Warning: a run finished, with steps that failed under `onFailure: Continue`.
pub(crate) const RUN_SUCCEEDED_WITH_ERRORS: &str = "RunSucceededWithErrors";
/// Warning: a step failed under `Stop` (or went over its rejected-rows limit): the run ends.
pub(crate) const RUN_FAILED: &str = "RunFailed";
/// Normal: a run was cancelled by request, or replaced by a newer run.
pub(crate) const RUN_CANCELLED: &str = "RunCancelled";
/// Normal: a trigger arrived during a run under `concurrencyPolicy: Queue`, and waits.
pub(crate) const RUN_QUEUED: &str = "RunQueued";
/// Warning: a trigger started nothing (a run in progress, the queue full, or suspended).
pub(crate) const TRIGGER_SKIPPED: &str = "TriggerSkipped";
/// Normal: a cancel was requested while no run was in progress.
pub(crate) const CANCEL_IGNORED: &str = "CancelIgnored";
/// Normal: a backfill was accepted; its runs start one at a time.
pub(crate) const BACKFILL_STARTED: &str = "BackfillStarted";
/// Warning: a backfill was refused: its range is invalid, has no fire time or too many, the
/// object has no schedule, or a backfill is already in progress.
pub(crate) const BACKFILL_REFUSED: &str = "BackfillRefused";
/// Normal: every fire time of a backfill ran, and every run succeeded.
pub(crate) const BACKFILL_SUCCEEDED: &str = "BackfillSucceeded";
/// Warning: every fire time of a backfill ran, and some runs failed or were cancelled.
pub(crate) const BACKFILL_FAILED: &str = "BackfillFailed";
/// Normal: a backfill was cancelled by request (or a cancel came with none in progress).
pub(crate) const BACKFILL_CANCELLED: &str = "BackfillCancelled";
/// Warning: a scheduled time passed more than `startingDeadlineSeconds` ago: no run for it.
pub(crate) const MISSED_SCHEDULE: &str = "MissedSchedule";
/// Warning: several scheduled times were missed; one run starts for the most recent.
pub(crate) const MISSED_SCHEDULES: &str = "MissedSchedules";
/// Warning when failed runs in a row stop the schedule (`stopScheduleAfterFailures`); also
/// `ScheduleStopped=True`.
pub(crate) const CONSECUTIVE_FAILURES: &str = "ConsecutiveFailures";
/// Normal: a step's attempt created its Job (recorded only once the create succeeded).
pub(crate) const STEP_STARTED: &str = "StepStarted";
/// Normal: a step's Job succeeded (within its rejected-rows limit).
pub(crate) const STEP_SUCCEEDED: &str = "StepSucceeded";
/// Warning: a step's attempt failed and it has retries left.
pub(crate) const STEP_RETRYING: &str = "StepRetrying";
/// Warning: a step's last attempt failed.
pub(crate) const STEP_FAILED: &str = "StepFailed";
/// Warning: a step's last attempt ran past its deadline (`activeDeadlineSeconds`).
pub(crate) const STEP_TIMED_OUT: &str = "StepTimedOut";
/// Warning: a step was skipped while other steps of its run go on (its rule can no longer be
/// met, or `failFast`).
pub(crate) const STEP_SKIPPED: &str = "StepSkipped";
/// Warning: a step's Job succeeded but rejected more rows than its limit allows.
pub(crate) const REJECTED_ROWS_EXCEEDED: &str = "RejectedRowsExceeded";
/// Warning, and the `attemptFailure` reason: an attempt's Job was deleted before it finished.
pub(crate) const JOB_DELETED: &str = "JobDeleted";
/// Warning: the API server refused to create a step's Job for good.
pub(crate) const JOB_CREATE_REFUSED: &str = "JobCreateRefused";
/// Warning when a step waits for a Sync that does not exist; also `Ready=False` on a sequence
/// that names one.
pub(crate) const SYNC_NOT_FOUND: &str = "SyncNotFound";
/// Warning: a step waits for its Sync, which runs elsewhere.
pub(crate) const SYNC_BUSY: &str = "SyncBusy";
/// Warning when the schedule or time zone becomes invalid; also `Stalled=True`, `Ready=False`.
pub(crate) const INVALID_SCHEDULE: &str = "InvalidSchedule";
/// Warning when `spec.after` becomes a cycle; also `Stalled=True`, `Ready=False`.
pub(crate) const UPSTREAM_CYCLE: &str = "UpstreamCycle";
/// Warning when status is rebuilt from Jobs it did not account for; also `StatusRecovered=True`.
pub(crate) const STATUS_BEHIND_JOBS: &str = "StatusBehindJobs";
/// Warning when an object cannot be read by this release; also `Stalled=True`, `Ready=False`.
pub(crate) const OBJECT_UNREADABLE: &str = "ObjectUnreadable";
/// Warning: a reconcile failed and is retried with backoff.
pub(crate) const RECONCILE_FAILED: &str = "ReconcileFailed";
/// Normal: an alert's notification was delivered.
pub(crate) const ALERT_SENT: &str = "AlertSent";
/// Warning: an alert's delivery failed (its first failed attempt, and when it is given up).
pub(crate) const ALERT_DELIVERY_FAILED: &str = "AlertDeliveryFailed";
/// Warning: the outbox was full, and its oldest notifications were dropped.
pub(crate) const ALERTS_DROPPED: &str = "AlertsDropped";
/// Warning: a WebhookReceiver became not ready (its `Ready` condition's reason changed to False).
pub(crate) const NOT_READY: &str = "NotReady";
/// Warning: a WebhookReceiver refused a signed delivery it could not read.
pub(crate) const BAD_PAYLOAD: &str = "BadPayload";
/// Normal: a WebhookReceiver accepted a delivery.
pub(crate) const DELIVERY_ACCEPTED: &str = "DeliveryAccepted";

// ---- Condition reasons (besides those above) ----------------------------------------------

/// `Stalled=False`: the spec can work as written.
pub(crate) const SPEC_VALID: &str = "SpecValid";
/// `Ready=True`, and `Reconciling=False` always.
pub(crate) const RECONCILED: &str = "Reconciled";
/// `Ready=False`: an upstream of `spec.after` does not exist.
pub(crate) const UPSTREAM_NOT_FOUND: &str = "UpstreamNotFound";
/// `Running=True`: a run is in progress (on a Sync: anything that runs it).
pub(crate) const RUN_IN_PROGRESS: &str = "RunInProgress";
/// `Running=False`.
pub(crate) const IDLE: &str = "Idle";
/// `LastRunSucceeded=True`.
pub(crate) const SUCCEEDED: &str = "Succeeded";
/// `LastRunSucceeded=False`: the last run finished with steps failed under `Continue`.
pub(crate) const SUCCEEDED_WITH_ERRORS: &str = "SucceededWithErrors";
/// `LastRunSucceeded=False`: the last run failed.
pub(crate) const FAILED: &str = "Failed";
/// `LastRunSucceeded=False`: the last run was cancelled or replaced.
pub(crate) const CANCELLED: &str = "Cancelled";
/// `LastRunSucceeded=False` when the newest entry of a sequence's `status.runs` says
/// `Running`, which only a status written by hand does.
pub(crate) const RUNNING: &str = "Running";
/// `LastRunSucceeded=Unknown`: no run has finished yet.
pub(crate) const NO_RUN_YET: &str = "NoRunYet";
/// `ScheduleStopped=False`: fewer failed runs in a row than `stopScheduleAfterFailures`.
pub(crate) const BELOW_FAILURE_LIMIT: &str = "BelowFailureLimit";
/// `AlertsDelivered=True`: every alert's last notification was delivered.
pub(crate) const DELIVERED: &str = "Delivered";
/// `AlertsDelivered=False`, and a WebhookReceiver's `Ready=False`: the Secret does not exist.
pub(crate) const SECRET_NOT_FOUND: &str = "SecretNotFound";
/// `AlertsDelivered=False`: the Secret has no such key.
pub(crate) const SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";
/// `AlertsDelivered=False`: the Secret could not be read.
pub(crate) const SECRET_UNREADABLE: &str = "SecretUnreadable";
/// `AlertsDelivered=False`: the Secret's value is not an http(s) URL.
pub(crate) const INVALID_URL: &str = "InvalidURL";
/// `AlertsDelivered=False`: the routing key is not UTF-8.
pub(crate) const INVALID_ROUTING_KEY: &str = "InvalidRoutingKey";
/// `AlertsDelivered=False`: the egress policy refused the URL's address.
pub(crate) const EGRESS_REFUSED: &str = "EgressRefused";
/// `AlertsDelivered=False`: the receiver did not accept the notification (an HTTP status, no
/// answer, a connection error).
pub(crate) const DELIVERY_FAILED: &str = "DeliveryFailed";
/// A WebhookReceiver's `Ready=True`: its Secret holds a signing secret.
pub(crate) const READY: &str = "Ready";
/// A WebhookReceiver's `Ready=False`: its Secret has no such key, or it is empty.
pub(crate) const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
/// A WebhookReceiver's `Ready=False`: syncseq may not read its Secret.
pub(crate) const SECRET_FORBIDDEN: &str = "SecretForbidden";

// ---- Reasons of a failed attempt (`attemptFailure.reason`, besides those above) -----------

/// The API server refused to create the attempt's Job.
pub(crate) const CREATE_REFUSED: &str = "CreateRefused";

// ---- The `reason` of a Skipped step ------------------------------------------------------

/// A step it needs failed under `Stop`, or did not run.
pub(crate) const SKIP_UPSTREAM_FAILED: &str = "UpstreamFailed";
/// `runWhen: AnyFailed`, and every step it depends on succeeded.
pub(crate) const SKIP_UPSTREAM_SUCCEEDED: &str = "UpstreamSucceeded";
/// `spec.failFast`: a step failed under `Stop` elsewhere, so nothing new starts.
pub(crate) const SKIP_FAIL_FAST: &str = "FailFast";
/// The run was cancelled or replaced before the step started.
pub(crate) const SKIP_RUN_CANCELLED: &str = "RunCancelled";
/// The step was removed from the spec while the run was in progress.
pub(crate) const SKIP_STEP_REMOVED: &str = "StepRemoved";
/// Status was behind its Jobs, which show a later step started: the step is closed.
pub(crate) const SKIP_STATUS_BEHIND_JOBS: &str = "StatusBehindJobs";

/// Every Event reason.
#[cfg(test)]
pub(crate) const EVENTS: &[&str] = &[
    RUN_STARTED,
    RUN_SUCCEEDED,
    RUN_SUCCEEDED_WITH_ERRORS,
    RUN_FAILED,
    RUN_CANCELLED,
    RUN_QUEUED,
    TRIGGER_SKIPPED,
    CANCEL_IGNORED,
    BACKFILL_STARTED,
    BACKFILL_REFUSED,
    BACKFILL_SUCCEEDED,
    BACKFILL_FAILED,
    BACKFILL_CANCELLED,
    MISSED_SCHEDULE,
    MISSED_SCHEDULES,
    CONSECUTIVE_FAILURES,
    STEP_STARTED,
    STEP_SUCCEEDED,
    STEP_RETRYING,
    STEP_FAILED,
    STEP_SKIPPED,
    STEP_TIMED_OUT,
    REJECTED_ROWS_EXCEEDED,
    JOB_DELETED,
    JOB_CREATE_REFUSED,
    SYNC_NOT_FOUND,
    SYNC_BUSY,
    INVALID_SCHEDULE,
    UPSTREAM_CYCLE,
    STATUS_BEHIND_JOBS,
    OBJECT_UNREADABLE,
    RECONCILE_FAILED,
    ALERT_SENT,
    ALERT_DELIVERY_FAILED,
    ALERTS_DROPPED,
    NOT_READY,
    BAD_PAYLOAD,
    DELIVERY_ACCEPTED,
];

/// Every condition reason, of any kind's conditions.
#[cfg(test)]
pub(crate) const CONDITIONS: &[&str] = &[
    SYNC_NOT_FOUND,
    INVALID_SCHEDULE,
    UPSTREAM_CYCLE,
    STATUS_BEHIND_JOBS,
    OBJECT_UNREADABLE,
    CONSECUTIVE_FAILURES,
    SPEC_VALID,
    RECONCILED,
    UPSTREAM_NOT_FOUND,
    RUN_IN_PROGRESS,
    IDLE,
    SUCCEEDED,
    SUCCEEDED_WITH_ERRORS,
    FAILED,
    CANCELLED,
    RUNNING,
    NO_RUN_YET,
    BELOW_FAILURE_LIMIT,
    DELIVERED,
    SECRET_NOT_FOUND,
    SECRET_KEY_NOT_FOUND,
    SECRET_UNREADABLE,
    INVALID_URL,
    INVALID_ROUTING_KEY,
    EGRESS_REFUSED,
    DELIVERY_FAILED,
    READY,
    SECRET_KEY_MISSING,
    SECRET_FORBIDDEN,
];

/// Every reason of a failed attempt in status.
#[cfg(test)]
pub(crate) const ATTEMPT_FAILURES: &[&str] = &[JOB_DELETED, CREATE_REFUSED];

/// The `reason`s of Skipped steps.
#[cfg(test)]
pub(crate) const SKIPS: &[&str] = &[
    SKIP_UPSTREAM_FAILED,
    SKIP_UPSTREAM_SUCCEEDED,
    SKIP_FAIL_FAST,
    SKIP_RUN_CANCELLED,
    SKIP_STEP_REMOVED,
    SKIP_STATUS_BEHIND_JOBS,
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::{ATTEMPT_FAILURES, CONDITIONS, EVENTS, SKIPS};

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    fn set<'a>(lists: &[&[&'a str]]) -> BTreeSet<&'a str> {
        lists.iter().flat_map(|l| l.iter().copied()).collect()
    }

    /// "" when the two sets agree, else what each lacks.
    fn difference(what: &str, found: &BTreeSet<&str>, code: &BTreeSet<&str>) -> String {
        let extra: Vec<_> = found.difference(code).collect();
        let missing: Vec<_> = code.difference(found).collect();
        if extra.is_empty() && missing.is_empty() {
            return String::new();
        }
        format!(
            "{what}: not reasons the code writes: {extra:?}; written by the code but missing: {missing:?}\n"
        )
    }

    #[test]
    fn every_constant_is_in_a_list() {
        let source = read(&root().join("src/engine/reasons.rs"));
        let constants: BTreeSet<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub(crate) const "))
            .filter_map(|l| l.split_once(": &str = \"")?.1.strip_suffix("\";"))
            .collect();
        let listed = set(&[EVENTS, CONDITIONS, ATTEMPT_FAILURES, SKIPS]);
        assert_eq!(
            difference("constants of reasons.rs", &constants, &listed),
            ""
        );
        for list in [EVENTS, CONDITIONS, ATTEMPT_FAILURES, SKIPS] {
            assert_eq!(set(&[list]).len(), list.len(), "a reason listed twice");
        }
    }

    /// The reasons `docs/troubleshooting.md` documents: the backticked words in every table
    /// column headed `reason`, `reasons` or `... reason`; those of the tables under the heading
    /// `## Event reasons` are Event reasons, the others status reasons.
    fn documented(page: &str) -> (BTreeSet<&str>, BTreeSet<&str>) {
        let (mut events, mut status) = (BTreeSet::new(), BTreeSet::new());
        let mut section = "";
        let mut columns: Option<Vec<usize>> = None;
        let mut width = 0;
        let mut lines = page.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(heading) = line.strip_prefix("## ") {
                section = heading;
            }
            let Some(row) = line.strip_prefix('|') else {
                columns = None;
                continue;
            };
            let cells: Vec<&str> = row.strip_suffix('|').unwrap_or(row).split('|').collect();
            let Some(reason_columns) = &columns else {
                // A table's header, followed by its `| --- |` line.
                let separator = lines.next().unwrap_or_default();
                assert!(
                    separator.starts_with("| ---"),
                    "a table without a separator: {line}"
                );
                width = cells.len();
                columns = Some(
                    cells
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| {
                            let c = c.trim().replace('`', "").to_lowercase();
                            c == "reason" || c == "reasons" || c.ends_with(" reason")
                        })
                        .map(|(i, _)| i)
                        .collect(),
                );
                continue;
            };
            assert_eq!(
                cells.len(),
                width,
                "a row of another width than its table's: {line}"
            );
            let into = if section == "Event reasons" {
                &mut events
            } else {
                &mut status
            };
            for &i in reason_columns {
                into.extend(cells[i].split('`').skip(1).step_by(2));
            }
        }
        (events, status)
    }

    #[test]
    fn the_troubleshooting_page_documents_exactly_the_reasons_the_code_writes() {
        let page = read(&root().join("docs/troubleshooting.md"));
        let (events, status) = documented(&page);
        let differences = difference(
            "Event reasons (the table under `## Event reasons`)",
            &events,
            &set(&[EVENTS]),
        ) + &difference(
            "condition, attemptFailure and skipped-step reasons (the other tables' reason columns)",
            &status,
            &set(&[CONDITIONS, ATTEMPT_FAILURES, SKIPS]),
        );
        assert!(
            differences.is_empty(),
            "docs/troubleshooting.md and src/engine/reasons.rs differ:\n{differences}"
        );
    }

    #[test]
    fn the_page_parser_reads_reason_columns_only() {
        let page = "## Conditions\n\
            | condition | reasons | says |\n| --- | --- | --- |\n\
            | `Ready` | `Reconciled` (True); `SyncNotFound` (False) | see `Ready` |\n\
            \n\
            | `<why>` | comes from |\n| --- | --- |\n| `timed out` | `DeadlineExceeded` |\n\
            ## Event reasons\n\
            | reason | type (action) |\n| --- | --- |\n| `RunStarted` | Normal (`StartRun`) |\n";
        let (events, status) = documented(page);
        assert_eq!(events, BTreeSet::from(["RunStarted"]));
        assert_eq!(status, BTreeSet::from(["Reconciled", "SyncNotFound"]));
    }

    /// The Rust files under `dir`, without those only tests compile (declared after
    /// `#[cfg(test)]`).
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut test_only = BTreeSet::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        {
            let text = read(path);
            let mut lines = text.lines();
            while let Some(line) = lines.next() {
                if line.trim() != "#[cfg(test)]" {
                    continue;
                }
                let next = lines.next().unwrap_or_default().trim();
                let declared = next.rsplit_once("mod ").map(|(_, m)| m);
                if let Some(module) = declared.and_then(|m| m.strip_suffix(';')) {
                    test_only.insert(format!("{module}.rs"));
                    test_only.insert(module.to_string());
                }
            }
        }
        for path in entries {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if test_only.contains(name.as_ref()) {
                continue;
            }
            if path.is_dir() {
                sources(&path, out);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_source_writes_a_reason_as_a_literal() {
        let mut files = Vec::new();
        sources(&root().join("src"), &mut files);
        assert!(files.len() > 20, "found too few sources: {files:?}");
        let mut found = Vec::new();
        for path in files.iter().filter(|p| !p.ends_with("engine/reasons.rs")) {
            let text = read(path);
            // The inline test module, at the end of a file, may build Events of any reason.
            let code = text
                .split("#[cfg(test)]\nmod tests {")
                .next()
                .unwrap_or_default();
            // A literal right after the opening, on the same line or the next.
            for opening in ["Event::normal(", "Event::warning(", "reason:"] {
                for (at, _) in code.match_indices(opening) {
                    let rest = code[at + opening.len()..].trim_start();
                    if rest.starts_with('"') {
                        let line = code[..at].matches('\n').count() + 1;
                        found.push(format!(
                            "{}:{line}: {opening}{}",
                            path.display(),
                            &rest[..rest.find('\n').unwrap_or(rest.len())]
                        ));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "reasons are written from src/engine/reasons.rs, not as literals:\n{}",
            found.join("\n")
        );
    }
}
