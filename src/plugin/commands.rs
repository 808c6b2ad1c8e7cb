//! What each plugin command does: a merge patch or a read of the SyncSequence, then output.

use std::io::Write;
use std::time::Duration;

use jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;

use super::client::api_error;
use super::render::{self, reference};
use super::wait::{self, CancelRequest, RunRequest};
use super::{OutputFormat, WaitArgs};
use crate::api::annotations::{CANCEL_REQUESTED_AT, REQUESTED_AT};
use crate::api::{RunPhase, RunStatus, SyncSequence};

/// Field manager of the plugin's patches, as `managedFields` shows it.
const FIELD_MANAGER: &str = "kubectl-syncseq";

/// Writes to stdout, terminal-safe; a closed pipe (`| head`) is not an error worth reporting.
fn emit(text: &str) {
    let _ = std::io::stdout().write_all(render::terminal_safe(text).as_bytes());
}

/// A progress line on stderr, terminal-safe.
fn say(line: &str) {
    eprintln!("{}", render::terminal_safe(line));
}

/// A new request value: the time now as RFC 3339 with nanoseconds, unique per request.
fn request_value() -> String {
    format!("{:.9}", Timestamp::now())
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

async fn merge_patch(
    api: &Api<SyncSequence>,
    name: &str,
    patch: serde_json::Value,
) -> anyhow::Result<SyncSequence> {
    api.patch(name, &patch_params(), &Patch::Merge(&patch))
        .await
        .map_err(api_error)
}

async fn annotate(
    api: &Api<SyncSequence>,
    name: &str,
    key: &str,
    value: &str,
) -> anyhow::Result<SyncSequence> {
    merge_patch(
        api,
        name,
        serde_json::json!({"metadata": {"annotations": {key: value}}}),
    )
    .await
}

async fn within<T>(
    timeout: Option<Duration>,
    what: &str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, fut).await.map_err(|_| {
            anyhow::anyhow!(
                "timed out after {} waiting for {what}",
                render::duration(jiff::SignedDuration::try_from(limit).unwrap_or_default())
            )
        })?,
        None => fut.await,
    }
}

/// Prints step transitions of the run being followed to stderr, once each.
#[derive(Default)]
struct Progress {
    seen: Option<RunStatus>,
}

impl Progress {
    fn show(&mut self, run: &RunStatus) {
        if self.seen.as_ref().is_none_or(|s| s.id != run.id) {
            self.seen = None;
            say(&format!("run {} started", run.id));
        }
        for line in render::step_changes(self.seen.as_ref(), run, Timestamp::now()) {
            say(&line);
        }
        self.seen = Some(run.clone());
    }
}

/// `run NAME [--wait]`.
pub async fn run(api: &Api<SyncSequence>, name: &str, wait: &WaitArgs) -> anyhow::Result<()> {
    let value = request_value();
    let seq = annotate(api, name, REQUESTED_AT, &value).await?;
    emit(&format!(
        "{} run requested ({REQUESTED_AT}={value})\n",
        reference(name)
    ));
    if !wait.wait {
        return Ok(());
    }
    // The request starts the first manual run numbered above the newest run at request time.
    let before = seq
        .status
        .as_ref()
        .and_then(|s| s.book.last_run_number)
        .unwrap_or(0);
    let mut progress = Progress::default();
    let mut said_queued = false;
    let follow = wait::watch(api, name, |seq| {
        let status = seq.status.clone().unwrap_or_default();
        match wait::run_request(&status, &value, before) {
            RunRequest::NotHandled => None,
            RunRequest::Queued => {
                if !said_queued {
                    said_queued = true;
                    say("run queued behind the run in progress");
                }
                None
            }
            RunRequest::Running(run) => {
                progress.show(&run);
                None
            }
            RunRequest::Finished { run: Some(run), .. } => {
                progress.show(&run);
                Some(Ok((
                    run.id,
                    run.phase,
                    Some(run.clone()),
                    run.message.clone(),
                )))
            }
            RunRequest::Finished {
                id,
                phase,
                run: None,
                message,
            } => Some(Ok((id, phase, None, message))),
            RunRequest::Skipped => {
                let busy = status
                    .book
                    .current_run
                    .as_ref()
                    .map_or("a run".to_string(), |r| format!("run {}", r.id));
                Some(Err(anyhow::anyhow!(
                    "the run request was skipped: {busy} is in progress and concurrencyPolicy is {:?}",
                    seq.spec.concurrency_policy
                )))
            }
        }
    });
    let (id, phase, run, message) = within(wait.timeout, "the run to finish", follow).await??;
    match &run {
        Some(run) => emit(&render::run_timeline(run, None, Timestamp::now())),
        None => emit(&format!("Run {id} {phase:?}\n")),
    }
    if phase != RunPhase::Succeeded {
        let why = message.map(|m| format!(": {m}")).unwrap_or_default();
        anyhow::bail!("run {id} of {} ended {phase:?}{why}", reference(name));
    }
    Ok(())
}

/// `cancel NAME [--wait]`.
pub async fn cancel(api: &Api<SyncSequence>, name: &str, wait: &WaitArgs) -> anyhow::Result<()> {
    let value = request_value();
    let seq = annotate(api, name, CANCEL_REQUESTED_AT, &value).await?;
    emit(&format!(
        "{} cancel requested ({CANCEL_REQUESTED_AT}={value})\n",
        reference(name)
    ));
    if !wait.wait {
        return Ok(());
    }
    let running = seq
        .status
        .as_ref()
        .and_then(|s| s.book.current_run.as_ref())
        .filter(|r| r.phase == RunPhase::Running)
        .map(|r| r.id);
    let follow = wait::watch(api, name, |seq| {
        let status = seq.status.clone().unwrap_or_default();
        match wait::cancel_request(&status, &value, running) {
            CancelRequest::NotHandled => None,
            done => Some(done),
        }
    });
    match within(wait.timeout, "the cancel request to be handled", follow).await? {
        CancelRequest::Ended { run: Some(run), .. } => {
            emit(&render::run_timeline(&run, None, Timestamp::now()))
        }
        CancelRequest::Ended { id, phase, .. } => emit(&format!("Run {id} {phase:?}\n")),
        _ => emit(&format!("{}: no run was in progress\n", reference(name))),
    }
    Ok(())
}

/// `suspend NAME` / `resume NAME`.
pub async fn set_suspend(api: &Api<SyncSequence>, name: &str, suspend: bool) -> anyhow::Result<()> {
    merge_patch(api, name, serde_json::json!({"spec": {"suspend": suspend}})).await?;
    let what = if suspend { "suspended" } else { "resumed" };
    emit(&format!("{} {what}\n", reference(name)));
    Ok(())
}

fn print_as(format: OutputFormat, value: &impl Serialize) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => emit(&format!("{}\n", serde_json::to_string_pretty(value)?)),
        OutputFormat::Yaml => emit(&serde_saphyr::to_string(value)?),
    }
    Ok(())
}

/// `status NAME [-o json|yaml]`.
pub async fn status(
    api: &Api<SyncSequence>,
    name: &str,
    output: Option<OutputFormat>,
) -> anyhow::Result<()> {
    let seq = api.get(name).await.map_err(api_error)?;
    match output {
        Some(format) => print_as(format, &seq.status.clone().unwrap_or_default()),
        None => {
            emit(&render::status(&seq, name, Timestamp::now()));
            Ok(())
        }
    }
}

/// `history NAME [-o json|yaml]`.
pub async fn history(
    api: &Api<SyncSequence>,
    name: &str,
    output: Option<OutputFormat>,
) -> anyhow::Result<()> {
    let seq = api.get(name).await.map_err(api_error)?;
    match output {
        Some(format) => print_as(
            format,
            &seq.status
                .as_ref()
                .map(|s| s.book.runs.clone())
                .unwrap_or_default(),
        ),
        None => {
            match render::history(&seq, Timestamp::now()) {
                Some(table) => emit(&table),
                None => say(&format!("No runs of {} yet.", reference(name))),
            }
            Ok(())
        }
    }
}
