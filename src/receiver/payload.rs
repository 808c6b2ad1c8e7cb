//! Reading what a signed delivery reports: which run of the sender finished, and how. Pure.
//!
//! Everything in a body is untrusted: ids are cut to a safe alphabet and length, text loses its
//! control characters, and nothing here panics on any input.

use http::HeaderMap;
use serde_json::Value;

use crate::api::{ReceiverType, RunPhase, WebhookReceiverSpec};
use crate::text::printable;

/// A delivery that counts for the receiver.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Incoming {
    /// The sender's identity of what finished; replays carry the same one.
    pub id: String,
    pub phase: RunPhase,
    /// What the sender reported, for people.
    pub summary: String,
}

/// What a well-formed body asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum Reading {
    Delivery(Incoming),
    /// Signed and well formed, but about something this receiver does not follow (another job,
    /// a start event, Fivetran's test event): acknowledged, so the sender does not retry.
    Ignored(String),
}

/// Why a body was refused (answered with 400, and a Warning Event on the receiver).
pub(crate) type BadPayload = String;

/// The longest delivery id kept: longer ones are cut.
const MAX_ID_CHARS: usize = 128;
/// The longest summary kept.
const MAX_SUMMARY_CHARS: usize = 200;

/// Reads the body of a delivery whose signature was checked.
pub(crate) fn read(
    spec: &WebhookReceiverSpec,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reading, BadPayload> {
    match spec.type_ {
        ReceiverType::DbtCloud => {
            let jobs = spec
                .dbt_cloud
                .as_ref()
                .map(|f| &f.job_ids[..])
                .unwrap_or(&[]);
            dbt_cloud(&object(body)?, jobs)
        }
        ReceiverType::Fivetran => {
            let connectors = spec
                .fivetran
                .as_ref()
                .map(|f| &f.connector_ids[..])
                .unwrap_or(&[]);
            fivetran(&object(body)?, connectors)
        }
        ReceiverType::Generic => generic(headers, body),
    }
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, BadPayload> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the body is JSON but not an object".into()),
        Err(e) => Err(format!("the body is not JSON: {e}")),
    }
}

/// A string or number field as text (dbt Cloud sends ids as strings, its API as numbers).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An id made safe for status, labels of Events and terminals.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' | ':' | '@' => c,
            _ => '_',
        })
        .take(MAX_ID_CHARS)
        .collect()
}

fn summary(s: &str) -> String {
    let clean = printable(s);
    match clean.char_indices().nth(MAX_SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &clean[..cut]),
        None => clean,
    }
}

/// dbt Cloud job webhooks: `job.run.completed` (success or failure) and `job.run.errored`
/// count; both name the run, so a failed run's two deliveries are one delivery.
fn dbt_cloud(
    body: &serde_json::Map<String, Value>,
    jobs: &[String],
) -> Result<Reading, BadPayload> {
    let event = body
        .get("eventType")
        .and_then(Value::as_str)
        .ok_or("no eventType: not a dbt Cloud job webhook")?;
    if !matches!(event, "job.run.completed" | "job.run.errored") {
        return Ok(Reading::Ignored(format!(
            "event {} is not a finished run",
            id_part(event)
        )));
    }
    let data = body
        .get("data")
        .and_then(Value::as_object)
        .ok_or("no data object")?;
    let job = text(data.get("jobId")).ok_or("no data.jobId")?;
    if !jobs.iter().any(|j| j == &job) {
        return Ok(Reading::Ignored(format!(
            "job {} is not one of spec.dbtCloud.jobIds",
            id_part(&job)
        )));
    }
    let run = text(data.get("runId")).ok_or("no data.runId")?;
    let status = text(data.get("runStatus")).unwrap_or_default();
    let code = data.get("runStatusCode").and_then(Value::as_i64);
    // runStatusCode: 10 success, 20 error, 30 cancelled (dbt Cloud's run statuses).
    let phase = match (event, status.as_str(), code) {
        ("job.run.errored", ..) => RunPhase::Failed,
        (_, "Success", _) | (_, "", Some(10)) => RunPhase::Succeeded,
        (_, "Cancelled", _) | (_, "", Some(30)) => RunPhase::Cancelled,
        _ => RunPhase::Failed,
    };
    let name = data
        .get("jobName")
        .and_then(Value::as_str)
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    Ok(Reading::Delivery(Incoming {
        id: id_part(&format!("dbt-job-{job}-run-{run}")),
        phase,
        summary: summary(&format!(
            "dbt Cloud job {job}{name} run {run}: {}",
            if status.is_empty() { event } else { &status }
        )),
    }))
}

/// Fivetran webhooks: `sync_end` counts, `SUCCESSFUL` or not; everything else (`sync_start`,
/// the `test_event` Fivetran sends when the webhook is created) is acknowledged and ignored.
fn fivetran(
    body: &serde_json::Map<String, Value>,
    connectors: &[String],
) -> Result<Reading, BadPayload> {
    let event = body
        .get("event")
        .and_then(Value::as_str)
        .ok_or("no event: not a Fivetran webhook")?;
    if event != "sync_end" {
        return Ok(Reading::Ignored(format!(
            "event {} is not sync_end",
            id_part(event)
        )));
    }
    let connector = text(body.get("connector_id")).ok_or("no connector_id")?;
    if !connectors.iter().any(|c| c == &connector) {
        return Ok(Reading::Ignored(format!(
            "connector {} is not one of spec.fivetran.connectorIds",
            id_part(&connector)
        )));
    }
    let sync = text(body.get("sync_id"))
        .or_else(|| text(body.get("created")))
        .ok_or("no sync_id or created: nothing identifies the sync")?;
    let status = body
        .get("data")
        .and_then(|d| d.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let phase = match status {
        "SUCCESSFUL" => RunPhase::Succeeded,
        "RESCHEDULED" => {
            return Ok(Reading::Ignored(
                "the sync was rescheduled, not finished".into(),
            ));
        }
        _ => RunPhase::Failed,
    };
    Ok(Reading::Delivery(Incoming {
        id: id_part(&format!("fivetran-{connector}-{sync}")),
        phase,
        summary: summary(&format!(
            "Fivetran connector {connector} sync {sync}: {}",
            if status.is_empty() {
                "no status"
            } else {
                status
            }
        )),
    }))
}

/// Any sender: the delivery id from `X-Delivery-Id` (or GitHub's `X-GitHub-Delivery`, or an
/// `id` field), an optional `status` (`Succeeded`, the default, or `Failed`) and `summary`.
fn generic(headers: &HeaderMap, body: &[u8]) -> Result<Reading, BadPayload> {
    let fields = match body.iter().all(u8::is_ascii_whitespace) {
        true => serde_json::Map::new(),
        false => object(body)?,
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    let id = header("x-delivery-id")
        .or_else(|| header("x-github-delivery"))
        .or_else(|| text(fields.get("id")))
        .ok_or("no delivery id: send an X-Delivery-Id header or an \"id\" field")?;
    let phase = match fields.get("status").and_then(Value::as_str) {
        None => RunPhase::Succeeded,
        Some(s) if s.eq_ignore_ascii_case("succeeded") || s.eq_ignore_ascii_case("success") => {
            RunPhase::Succeeded
        }
        Some(s) if s.eq_ignore_ascii_case("failed") || s.eq_ignore_ascii_case("failure") => {
            RunPhase::Failed
        }
        Some(s) => {
            return Err(format!(
                "status {:?} is neither Succeeded nor Failed",
                summary(s)
            ));
        }
    };
    let said = fields
        .get("summary")
        .and_then(Value::as_str)
        .map(summary)
        .unwrap_or_else(|| format!("delivery {}", id_part(&id)));
    Ok(Reading::Delivery(Incoming {
        id: id_part(&id),
        phase,
        summary: said,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DbtCloudFilter, FivetranFilter, SecretKeyRef};

    fn spec(kind: ReceiverType) -> WebhookReceiverSpec {
        WebhookReceiverSpec {
            type_: kind,
            secret_ref: SecretKeyRef {
                name: "s".into(),
                key: "token".into(),
            },
            dbt_cloud: Some(DbtCloudFilter {
                job_ids: vec!["42".into()],
            }),
            fivetran: Some(FivetranFilter {
                connector_ids: vec!["mystified_presiding".into()],
            }),
        }
    }

    /// dbt Cloud's documented sample body, with the job id and status given.
    fn dbt(event: &str, job: &str, status: &str, code: i64) -> Vec<u8> {
        serde_json::json!({
            "accountId": 1,
            "webhooksID": "wsu_12345abcde",
            "eventId": "wev_2L6Z3l8uPedXKPq9D2nWbPIip7Z",
            "timestamp": "2023-01-31T19:28:15.742843678Z",
            "eventType": event,
            "webhookName": "test",
            "data": {
                "jobId": job, "jobName": "Daily build", "runId": "9001",
                "environmentId": "1234", "runStatus": status, "runStatusCode": code,
                "runStartedAt": "2023-01-31T19:28:07Z", "runFinishedAt": "2023-01-31T19:29:32Z"
            }
        })
        .to_string()
        .into_bytes()
    }

    fn delivery(r: Result<Reading, BadPayload>) -> Incoming {
        match r {
            Ok(Reading::Delivery(d)) => d,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    #[test]
    fn dbt_cloud_runs_of_the_configured_job_count() {
        let s = spec(ReceiverType::DbtCloud);
        let h = HeaderMap::new();
        let ok = delivery(read(&s, &h, &dbt("job.run.completed", "42", "Success", 10)));
        assert_eq!(ok.id, "dbt-job-42-run-9001");
        assert_eq!(ok.phase, RunPhase::Succeeded);
        assert_eq!(
            ok.summary,
            "dbt Cloud job 42 (Daily build) run 9001: Success"
        );
        // An errored run is a failed one, whichever of its two events comes first; both are
        // the same delivery.
        for event in ["job.run.errored", "job.run.completed"] {
            let failed = delivery(read(&s, &h, &dbt(event, "42", "Error", 20)));
            assert_eq!(
                (failed.id.as_str(), failed.phase),
                (ok.id.as_str(), RunPhase::Failed)
            );
        }
        let cancelled = delivery(read(
            &s,
            &h,
            &dbt("job.run.completed", "42", "Cancelled", 30),
        ));
        assert_eq!(cancelled.phase, RunPhase::Cancelled);
        // Other jobs and start events are acknowledged, not counted.
        for body in [
            dbt("job.run.completed", "43", "Success", 10),
            dbt("job.run.started", "42", "Running", 3),
        ] {
            assert!(matches!(read(&s, &h, &body), Ok(Reading::Ignored(_))));
        }
    }

    #[test]
    fn fivetran_sync_ends_of_the_configured_connector_count() {
        let s = spec(ReceiverType::Fivetran);
        let h = HeaderMap::new();
        let body = |event: &str, connector: &str, status: &str| {
            serde_json::json!({
                "event": event, "created": "2021-08-18T11:38:34.386Z",
                "connector_type": "asana", "connector_id": connector,
                "destination_group_id": "deck_enjoy", "sync_id": "3cdc0a9b",
                "data": {"status": status}
            })
            .to_string()
            .into_bytes()
        };
        let ok = delivery(read(
            &s,
            &h,
            &body("sync_end", "mystified_presiding", "SUCCESSFUL"),
        ));
        assert_eq!(ok.id, "fivetran-mystified_presiding-3cdc0a9b");
        assert_eq!(ok.phase, RunPhase::Succeeded);
        let failed = delivery(read(
            &s,
            &h,
            &body("sync_end", "mystified_presiding", "FAILURE_WITH_TASK"),
        ));
        assert_eq!(failed.phase, RunPhase::Failed);
        for ignored in [
            body("sync_start", "mystified_presiding", ""),
            body("sync_end", "other_connector", "SUCCESSFUL"),
            // What Fivetran sends when the webhook is created: it must be answered with 2xx.
            br#"{"event":"test_event","created":"timestamp","connector_type":"_connector_type","connector_id":"_connector_1","group_id":"_destination_1"}"#.to_vec(),
        ] {
            assert!(matches!(read(&s, &h, &ignored), Ok(Reading::Ignored(_))));
        }
    }

    #[test]
    fn generic_deliveries_need_an_id_and_say_how_they_ended() {
        let s = spec(ReceiverType::Generic);
        let mut h = HeaderMap::new();
        assert!(read(&s, &h, b"").unwrap_err().contains("X-Delivery-Id"));
        let from_body = delivery(read(&s, &h, br#"{"id": 7, "status": "failed"}"#));
        assert_eq!(
            (from_body.id.as_str(), from_body.phase),
            ("7", RunPhase::Failed)
        );
        h.insert("x-delivery-id", "airflow-dag-run-1".parse().unwrap());
        let d = delivery(read(&s, &h, b""));
        assert_eq!(
            (d.id.as_str(), d.phase),
            ("airflow-dag-run-1", RunPhase::Succeeded)
        );
        assert!(read(&s, &h, br#"{"status": "maybe"}"#).is_err());
    }

    #[test]
    fn hostile_bodies_are_refused_or_made_safe() {
        let s = spec(ReceiverType::Generic);
        for bad in [&b"not json"[..], b"[1,2]", b"\"x\"", b"{", &[0xff, 0xfe]] {
            assert!(read(&s, &HeaderMap::new(), bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(10_000);
        let body = serde_json::json!({
            "id": format!("a\u{1b}[31m/../{long}"),
            "summary": format!("line\nbreak\u{202e}{long}"),
        });
        let d = delivery(read(&s, &HeaderMap::new(), body.to_string().as_bytes()));
        assert!(d.id.len() <= MAX_ID_CHARS);
        assert!(
            d.id.chars().all(|c| c.is_ascii_graphic() && c != '/'),
            "{}",
            d.id
        );
        assert!(d.summary.chars().count() <= MAX_SUMMARY_CHARS + 1);
        assert!(!d.summary.chars().any(|c| c.is_control() || c == '\u{202e}'));
        for kind in [ReceiverType::DbtCloud, ReceiverType::Fivetran] {
            for bad in [
                &b"{}"[..],
                br#"{"eventType": "job.run.completed"}"#,
                br#"{"event":"sync_end"}"#,
                br#"{"eventType": 5, "event": []}"#,
            ] {
                assert!(
                    read(&spec(kind), &HeaderMap::new(), bad).is_err(),
                    "{kind:?} {bad:?}"
                );
            }
        }
    }
}
