//! What a finished Job says about its step: outcome, rows and message.
//!
//! A sync container may write one JSON object to its termination message
//! (`{"rowsSynced": 1200, "rowsRejected": 3, "message": "…"}`). Anything else — nothing,
//! garbage, an oversized blob — must still give a clear outcome from the exit status, with the
//! raw text cut to a safe length so it can go in status and Events.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use crate::text::{printable, truncate};

/// How a Job ended, as far as the controller can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    /// Not finished.
    Active,
    /// The Job completed.
    Succeeded,
    /// The Job failed; `timed_out` when it hit its active deadline (the step's timeout).
    Failed { timed_out: bool, reason: String },
}

/// The step-relevant facts of one Job and its Pod.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobView {
    pub name: String,
    /// The Job's UID: a Job recreated under the same name is another Job.
    pub uid: String,
    pub run: i64,
    pub step: String,
    pub sync: String,
    pub attempt: i32,
    pub outcome: JobOutcome,
    /// When the Job finished (its condition's transition time).
    pub finished_at: Option<jiff::Timestamp>,
    /// The parsed termination message, once a Pod has terminated.
    pub report: Option<Report>,
    /// Whether the Job is being deleted.
    pub deleting: bool,
    /// When the Job was created.
    pub created: Option<jiff::Timestamp>,
}

impl JobView {
    pub(crate) fn is_finished(&self) -> bool {
        self.outcome != JobOutcome::Active
    }
}

/// What the container reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Report {
    pub rows_synced: Option<i64>,
    pub rows_rejected: Option<i64>,
    /// The sync's message, or a note about an unreadable termination message.
    pub message: Option<String>,
    /// The container's exit code.
    pub exit_code: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    rows_synced: Option<i64>,
    rows_rejected: Option<i64>,
    message: Option<String>,
}

/// Parses a termination message. Never fails: unreadable input becomes a message that says so
/// and quotes the start of the raw text.
pub(crate) fn parse_termination_message(raw: &str) -> Report {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Report::default();
    }
    match serde_json::from_str::<Wire>(trimmed) {
        Ok(w) if w.rows_synced.is_none_or(|n| n >= 0) && w.rows_rejected.is_none_or(|n| n >= 0) => {
            Report {
                rows_synced: w.rows_synced,
                rows_rejected: w.rows_rejected,
                message: w.message.map(|m| truncate(&printable(&m))),
                exit_code: None,
            }
        }
        _ => Report {
            message: Some(format!(
                "termination message is not a syncseq result object: {}",
                truncate(&printable(trimmed))
            )),
            ..Report::default()
        },
    }
}

/// Reads the outcome of a Job from its conditions.
pub(crate) fn job_outcome(job: &Job) -> (JobOutcome, Option<jiff::Timestamp>) {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    for c in conditions.into_iter().flatten() {
        if c.status != "True" {
            continue;
        }
        let at = c.last_transition_time.as_ref().map(|t| t.0);
        match c.type_.as_str() {
            "Complete" => return (JobOutcome::Succeeded, at),
            "Failed" => {
                let reason = c.reason.clone().unwrap_or_default();
                let timed_out = reason == "DeadlineExceeded";
                let reason = c
                    .message
                    .as_deref()
                    .filter(|m| !m.is_empty())
                    .map_or(reason, |m| truncate(&printable(m)));
                return (JobOutcome::Failed { timed_out, reason }, at);
            }
            _ => {}
        }
    }
    (JobOutcome::Active, None)
}

/// What a terminated Pod says: when its container finished, and what it reported.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PodResult {
    pub finished_at: Option<jiff::Timestamp>,
    pub report: Report,
}

/// The result of a Pod whose container terminated, if it did.
pub(crate) fn pod_result(pod: &Pod) -> Option<PodResult> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let terminated = statuses
        .iter()
        .find_map(|s| s.state.as_ref()?.terminated.as_ref())?;
    let mut report = parse_termination_message(terminated.message.as_deref().unwrap_or(""));
    report.exit_code = Some(terminated.exit_code);
    Some(PodResult {
        finished_at: terminated.finished_at.as_ref().map(|t| t.0),
        report,
    })
}

/// The report of a Job: that of its most recently terminated Pod, if any.
pub(crate) fn latest_report<'a>(
    results: impl IntoIterator<Item = &'a PodResult>,
) -> Option<Report> {
    results
        .into_iter()
        .max_by_key(|r| r.finished_at)
        .map(|r| r.report.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::MAX_MESSAGE_CHARS;

    #[test]
    fn reads_a_well_formed_result() {
        let r = parse_termination_message(r#"{"rowsSynced":5,"rowsRejected":2,"message":"boom"}"#);
        assert_eq!(r.rows_synced, Some(5));
        assert_eq!(r.rows_rejected, Some(2));
        assert_eq!(r.message.as_deref(), Some("boom"));
    }

    #[test]
    fn empty_message_is_no_report() {
        assert_eq!(parse_termination_message("  \n"), Report::default());
    }

    #[test]
    fn garbage_is_quoted_and_truncated() {
        let raw: String = std::iter::repeat_n("\u{1}x{", 4000).collect();
        let r = parse_termination_message(&raw);
        let m = r.message.unwrap();
        assert!(m.starts_with("termination message is not a syncseq result object: "));
        assert!(m.ends_with("(truncated)"));
        assert!(m.chars().count() < MAX_MESSAGE_CHARS + 100);
        assert!(!m.contains('\u{1}'));
        assert_eq!(r.rows_synced, None);
    }

    #[test]
    fn negative_rows_are_rejected_as_garbage() {
        let r = parse_termination_message(r#"{"rowsSynced":-1}"#);
        assert_eq!(r.rows_synced, None);
        assert!(r.message.unwrap().contains("not a syncseq result"));
    }

    #[test]
    fn json_that_is_not_an_object_is_garbage() {
        let r = parse_termination_message("[1,2]");
        assert!(r.message.unwrap().contains("[1,2]"));
    }

    fn clean(m: &str) -> bool {
        m.chars()
            .all(|c| !c.is_control() && !('\u{202A}'..='\u{202E}').contains(&c))
            && m.chars().count() <= MAX_MESSAGE_CHARS + 80
    }

    #[test]
    fn numbers_at_and_past_the_i64_edges() {
        let max = i64::MAX;
        let r =
            parse_termination_message(&format!(r#"{{"rowsSynced":{max},"rowsRejected":{max}}}"#));
        assert_eq!((r.rows_synced, r.rows_rejected), (Some(max), Some(max)));
        for raw in [
            r#"{"rowsSynced":9223372036854775808}"#,
            r#"{"rowsSynced":-9223372036854775808}"#,
            r#"{"rowsSynced":1e400}"#,
            r#"{"rowsSynced":1.5}"#,
            r#"{"rowsRejected":"12"}"#,
        ] {
            let r = parse_termination_message(raw);
            assert_eq!((r.rows_synced, r.rows_rejected), (None, None), "{raw}");
            assert!(r.message.unwrap().contains("not a syncseq result"), "{raw}");
        }
    }

    #[test]
    fn a_message_loses_its_escape_sequences_and_line_breaks() {
        let r =
            parse_termination_message(r#"{"message":"ok\u001b[2J\u0000 done\nnext\u202eevil"}"#);
        assert_eq!(r.message.as_deref(), Some("ok[2J done nextevil"));
    }

    proptest::proptest! {
        /// Whatever a container writes (any bytes, read as the kubelet's lossy UTF-8), the
        /// parser returns a report: rows never negative, a message clean and bounded.
        #[test]
        fn any_bytes_give_a_clean_report(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..6000)) {
            let r = parse_termination_message(&String::from_utf8_lossy(&bytes));
            proptest::prop_assert!(r.rows_synced.is_none_or(|n| n >= 0));
            proptest::prop_assert!(r.rows_rejected.is_none_or(|n| n >= 0));
            proptest::prop_assert!(r.message.as_deref().is_none_or(clean));
        }

        /// Well-formed objects with any numbers and any message text.
        #[test]
        fn any_result_object_gives_a_clean_report(
            synced in proptest::num::i64::ANY,
            rejected in proptest::num::i64::ANY,
            message in "\\PC{0,3000}|[\u{0}-\u{1f}\u{7f}\u{202a}-\u{202e}a]{0,50}",
        ) {
            let raw = serde_json::json!({"rowsSynced": synced, "rowsRejected": rejected, "message": message}).to_string();
            let r = parse_termination_message(&raw);
            if synced >= 0 && rejected >= 0 {
                proptest::prop_assert_eq!((r.rows_synced, r.rows_rejected), (Some(synced), Some(rejected)));
            }
            proptest::prop_assert!(r.message.as_deref().is_none_or(clean), "{:?}", r.message);
        }
    }
}
