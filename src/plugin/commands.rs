//! What each plugin command does: a merge patch or a read of the object, then output.

use std::io::Write;
use std::time::Duration;

use jiff::Timestamp;

use super::backfill::{self, BackfillArgs};
use super::client::Cluster;
use super::graph::{self, GraphFormat};
use super::render;
use super::target::{Kind, Runnable, Target};
use super::wait::{self, CancelRequest, RunRequest};
use super::{OutputFormat, WaitArgs};
use crate::api::annotations::{
    CANCEL_BACKFILL_REQUESTED_AT, CANCEL_REQUESTED_AT, REQUESTED_AT, RESUME_SCHEDULE_REQUESTED_AT,
    RETRY_REQUESTED_AT, RETRY_RUN,
};
use crate::api::{BackfillPhase, RunPhase, RunStatus, TriggerKind};

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

/// Sets the annotations given a value and removes those given None, in one merge patch.
async fn annotate(
    cluster: &Cluster,
    target: &Target,
    annotations: &[(&str, Option<&str>)],
) -> anyhow::Result<Runnable> {
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(key, value)| (key.to_string(), serde_json::json!(value)))
        .collect();
    cluster
        .merge_patch(
            target,
            serde_json::json!({"metadata": {"annotations": annotations}}),
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
pub(crate) async fn run(cluster: &Cluster, target: &Target, wait: &WaitArgs) -> anyhow::Result<()> {
    let value = request_value();
    let obj = annotate(cluster, target, &[(REQUESTED_AT, Some(&value))]).await?;
    emit(&format!(
        "{} run requested ({REQUESTED_AT}={value})\n",
        target.reference()
    ));
    if !wait.wait {
        return Ok(());
    }
    follow_run(cluster, target, &obj, TriggerKind::Manual, &value, wait).await
}

/// `retry NAME [--run N] [--wait]`: a run that reuses the steps that succeeded in run N and
/// runs the others. Refused before anything is written when there is nothing to retry.
pub(crate) async fn retry(
    cluster: &Cluster,
    target: &Target,
    run: Option<i64>,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    if target.kind == Kind::Sync {
        anyhow::bail!(
            "retry takes a SyncSequence: a Sync's run has one step, so `run {}` runs it again",
            target.reference()
        );
    }
    let obj = cluster.get(target).await?;
    let of = wait::retry_of(&obj, run).map_err(|e| anyhow::anyhow!(e))?;
    let value = request_value();
    let run_value = run.map(|n| n.to_string());
    // Without --run the controller retries the last finished run; a retryRun left from an
    // earlier retry would name an older one, so it goes in the same patch.
    let obj = annotate(
        cluster,
        target,
        &[
            (RETRY_REQUESTED_AT, Some(&value)),
            (RETRY_RUN, run_value.as_deref()),
        ],
    )
    .await?;
    emit(&format!(
        "{} retry of run {of} requested ({RETRY_REQUESTED_AT}={value})\n",
        target.reference()
    ));
    if !wait.wait {
        return Ok(());
    }
    follow_run(cluster, target, &obj, TriggerKind::Retry, &value, wait).await
}

/// `--wait` for a run or retry request: the progress of the run it started, then its
/// timeline; an error unless the run Succeeded.
async fn follow_run(
    cluster: &Cluster,
    target: &Target,
    obj: &Runnable,
    kind: TriggerKind,
    value: &str,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    // The request starts the first run of its kind numbered above the newest run at request
    // time.
    let before = obj.book.last_run_number.unwrap_or(0);
    let mut progress = Progress::default();
    let mut said_queued = false;
    let follow = cluster.watch(target, |status| {
        match wait::run_request(status, kind, value, before) {
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
            RunRequest::Skipped => Some(Err(
                match status
                    .book
                    .current_run
                    .as_ref()
                    .filter(|r| !r.phase.is_finished())
                {
                    Some(r) => anyhow::anyhow!(
                        "the request was skipped: run {} is in progress and concurrencyPolicy is {:?}",
                        r.id,
                        status.concurrency
                    ),
                    None => anyhow::anyhow!(
                        "the request was handled but started no run: see the Events of {}",
                        target.reference()
                    ),
                },
            )),
        }
    });
    let (id, phase, run, message) = within(wait.timeout, "the run to finish", follow).await??;
    match &run {
        Some(run) => emit(&render::run_timeline(
            run,
            &obj.steps,
            None,
            Timestamp::now(),
        )),
        None => emit(&format!("Run {id} {phase:?}\n")),
    }
    if phase != RunPhase::Succeeded {
        let why = message.map(|m| format!(": {m}")).unwrap_or_default();
        anyhow::bail!("run {id} of {} ended {phase:?}{why}", target.reference());
    }
    Ok(())
}

/// `cancel NAME [--wait]`.
pub(crate) async fn cancel(
    cluster: &Cluster,
    target: &Target,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let value = request_value();
    let obj = annotate(cluster, target, &[(CANCEL_REQUESTED_AT, Some(&value))]).await?;
    emit(&format!(
        "{} cancel requested ({CANCEL_REQUESTED_AT}={value})\n",
        target.reference()
    ));
    if !wait.wait {
        return Ok(());
    }
    let running = obj
        .book
        .current_run
        .as_ref()
        .filter(|r| r.phase == RunPhase::Running)
        .map(|r| r.id);
    let follow = cluster.watch(target, |status| {
        match wait::cancel_request(status, &value, running) {
            CancelRequest::NotHandled => None,
            done => Some(done),
        }
    });
    match within(wait.timeout, "the cancel request to be handled", follow).await? {
        CancelRequest::Ended { run: Some(run), .. } => emit(&render::run_timeline(
            &run,
            &obj.steps,
            None,
            Timestamp::now(),
        )),
        CancelRequest::Ended { id, phase, .. } => emit(&format!("Run {id} {phase:?}\n")),
        _ => emit(&format!("{}: no run was in progress\n", target.reference())),
    }
    Ok(())
}

/// `backfill NAME --from T1 --to T2 [--max-runs N] [--dry-run | --wait]`, or `--cancel`. A
/// request the controller would refuse is refused here, with its reason, before any write.
pub(crate) async fn backfill(cluster: &Cluster, args: &BackfillArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let (Some(from), Some(to)) = (args.from, args.to) else {
        return cancel_backfill(cluster, target, &args.wait).await;
    };
    let obj = cluster.get(target).await?;
    let checked = backfill::check(&obj, from, to, args.max_runs, Timestamp::now())
        .map_err(|why| anyhow::anyhow!("backfill refused: {why}"))?;
    if args.dry_run {
        emit(&backfill::dry_run(&checked));
        return Ok(());
    }
    let value = request_value();
    let annotations = backfill::request(&checked.range, args.max_runs, &value);
    let annotations: Vec<(&str, Option<&str>)> = annotations
        .iter()
        .map(|(key, value)| (*key, value.as_deref()))
        .collect();
    annotate(cluster, target, &annotations).await?;
    emit(&backfill::requested(target, &checked.range, &value));
    if !args.wait.wait {
        return Ok(());
    }
    let mut last = None;
    let follow = cluster.watch(target, |status| match backfill::request_state(status, &value) {
        backfill::Request::NotHandled => None,
        backfill::Request::Ignored => Some(Err(anyhow::anyhow!(
            "the controller did not start the backfill (another one was in progress): see the Events of {}",
            target.reference()
        ))),
        backfill::Request::Running(bf) => {
            let line = backfill::progress_line(&bf);
            if last.as_ref() != Some(&line) {
                say(&line);
                last = Some(line);
            }
            None
        }
        backfill::Request::Ended(bf) => Some(Ok(bf)),
    });
    let bf = within(args.wait.timeout, "the backfill to finish", follow).await??;
    emit(&render::backfill(&bf, Timestamp::now()));
    if bf.phase != BackfillPhase::Succeeded {
        let why = bf.message.map(|m| format!(": {m}")).unwrap_or_default();
        anyhow::bail!(
            "the backfill of {} ended {:?}{why}",
            target.reference(),
            bf.phase
        );
    }
    Ok(())
}

/// `backfill NAME --cancel [--wait]`: with --wait, until its run in progress has ended too.
async fn cancel_backfill(
    cluster: &Cluster,
    target: &Target,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let value = request_value();
    let obj = annotate(
        cluster,
        target,
        &[(CANCEL_BACKFILL_REQUESTED_AT, Some(&value))],
    )
    .await?;
    // The backfill the cancel is for: the one in progress when it was written.
    let running = obj
        .book
        .backfill
        .as_deref()
        .filter(|b| b.phase == BackfillPhase::Running)
        .map(|b| b.requested_at.clone());
    emit(&format!(
        "{} backfill cancel requested ({CANCEL_BACKFILL_REQUESTED_AT}={value})\n",
        target.reference()
    ));
    if !wait.wait {
        return Ok(());
    }
    let follow = cluster.watch(target, |status| backfill::cancel_state(status, &value));
    match within(wait.timeout, "the backfill cancel to be handled", follow).await? {
        Some(bf) if running.as_ref() == Some(&bf.requested_at) => {
            emit(&render::backfill(&bf, Timestamp::now()));
        }
        _ => emit(&format!(
            "{}: no backfill was in progress\n",
            target.reference()
        )),
    }
    Ok(())
}

/// `suspend NAME` / `resume NAME`. A resume also restarts a schedule that failed runs in a
/// row stopped (`stopScheduleAfterFailures`): the controller never writes `spec`, so that
/// restart is a request it handles once, in the same patch.
pub(crate) async fn set_suspend(
    cluster: &Cluster,
    target: &Target,
    suspend: bool,
) -> anyhow::Result<()> {
    let patch = match suspend {
        true => serde_json::json!({"spec": {"suspend": true}}),
        false => serde_json::json!({
            "spec": {"suspend": false},
            "metadata": {"annotations": {RESUME_SCHEDULE_REQUESTED_AT: request_value()}},
        }),
    };
    cluster.merge_patch(target, patch).await?;
    let what = if suspend { "suspended" } else { "resumed" };
    emit(&format!("{} {what}\n", target.reference()));
    Ok(())
}

fn print_as(format: &OutputFormat, value: &serde_json::Value) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => emit(&format!("{}\n", serde_json::to_string_pretty(value)?)),
        OutputFormat::Yaml => emit(&serde_saphyr::to_string(value)?),
        OutputFormat::JsonPath(template) => emit(&template.render(value)),
    }
    Ok(())
}

/// `status NAME [-o json|yaml|jsonpath=…] [-w]`.
pub(crate) async fn status(
    cluster: &Cluster,
    target: &Target,
    output: Option<&OutputFormat>,
    watch: bool,
) -> anyhow::Result<()> {
    let show = |obj: &Runnable| match output {
        Some(format) => print_as(format, &obj.status),
        None => {
            emit(&render::status(obj, Timestamp::now()));
            Ok(())
        }
    };
    let obj = cluster.get(target).await?;
    show(&obj)?;
    if !watch {
        return Ok(());
    }
    // Again on each change of the status (not of metadata or spec alone), until the object
    // is deleted, the watch gives up, or stdout fails.
    let mut last = obj.status;
    let failed = cluster
        .watch(target, |obj| {
            if obj.status == last {
                return None;
            }
            last = obj.status.clone();
            if output.is_none() {
                emit("\n");
            }
            show(obj).err()
        })
        .await?;
    Err(failed)
}

/// `status [-A] [-w]`: one line per SyncSequence and Sync, then (with -w) a line for each
/// one whose status changes.
pub(crate) async fn overview(
    cluster: &Cluster,
    all_namespaces: bool,
    watch: bool,
) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let objects = cluster.list_all(all_namespaces).await?;
    if objects.is_empty() && !watch {
        let place = if all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace {}", cluster.namespace)
        };
        say(&format!("No SyncSequences or Syncs found in {place}."));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|o| render::overview_row(o, all_namespaces, now))
        .collect();
    emit(&render::overview_table(&rows, all_namespaces));
    if !watch {
        return Ok(());
    }
    let mut seen: std::collections::HashMap<(String, String), serde_json::Value> = objects
        .into_iter()
        .map(|o| ((o.namespace.clone(), o.target.reference()), o.status))
        .collect();
    cluster
        .watch_all(all_namespaces, |obj| {
            let key = (obj.namespace.clone(), obj.target.reference());
            if seen.get(&key) == Some(&obj.status) {
                return;
            }
            seen.insert(key, obj.status.clone());
            let row = render::overview_row(obj, all_namespaces, Timestamp::now());
            // Aligned with the table printed first, as `kubectl get -w` aligns its lines.
            let mut with_first = rows.clone();
            with_first.push(row);
            let table = render::overview_table(&with_first, all_namespaces);
            emit(&format!("{}\n", table.lines().last().unwrap_or_default()));
        })
        .await
}

/// `history NAME [-o json|yaml|jsonpath=…]`.
pub(crate) async fn history(
    cluster: &Cluster,
    target: &Target,
    output: Option<&OutputFormat>,
) -> anyhow::Result<()> {
    let obj = cluster.get(target).await?;
    match output {
        Some(format) => print_as(
            format,
            &serde_json::to_value(&obj.book.runs).unwrap_or_default(),
        ),
        None => {
            match render::history(&obj, Timestamp::now()) {
                Some(table) => emit(&table),
                None => say(&format!("No runs of {} yet.", target.reference())),
            }
            Ok(())
        }
    }
}

/// `graph NAME [-o mermaid|dot] [--run N]`.
pub(crate) async fn graph(
    cluster: &Cluster,
    target: &Target,
    format: GraphFormat,
    run: Option<i64>,
) -> anyhow::Result<()> {
    if target.kind == Kind::Sync {
        anyhow::bail!(
            "graph takes a SyncSequence: {} is one step",
            target.reference()
        );
    }
    let obj = cluster.get(target).await?;
    let runs = obj
        .book
        .current_run
        .as_deref()
        .into_iter()
        .chain(obj.last_run.as_ref());
    let coloured = match run {
        None => obj.book.current_run.as_deref().or(obj.last_run.as_ref()),
        Some(n) => Some(runs.clone().find(|r| r.id == n).ok_or_else(|| {
            let kept: Vec<String> = runs.map(|r| r.id.to_string()).collect();
            anyhow::anyhow!(
                "run {n} of {} is not kept with its steps: only the current and the last \
                 finished run are ({})",
                target.reference(),
                if kept.is_empty() {
                    "none yet".into()
                } else {
                    kept.join(", ")
                }
            )
        })?),
    };
    emit(&graph::render(&target.name, &obj.steps, coloured, format));
    Ok(())
}
