//! `kubectl syncseq logs`: the container log of a step's Pod, read through the API server's
//! `pods/log` subresource with the user's own credentials.
//!
//! Which step is decided from the status alone ([`choose`], pure): the failed step of the last
//! run by default, else the step running now, else the last step that ran. Its Job is found by
//! name from the status, or for older runs by syncseq's labels and the owner's UID; its newest
//! Pod is the one shown.

use std::pin::Pin;
use std::time::Duration;

use futures::{AsyncBufReadExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, LogParams};
use kube::runtime::watcher;

use super::client::{Cluster, api_error};
use super::render::terminal_safe;
use super::target::{Kind, Runnable};
use crate::api::{RunStatus, StepPhase, labels};
use crate::engine::STANDALONE_STEP;

/// The label the Job controller puts on a Job's Pods: the Job's UID.
const JOB_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The annotation kubectl reads for a Pod's default container.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// How long `-f` waits for a Pod still Pending to start its containers.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// After a followed Pod has terminated, how long the stream may still deliver its last lines.
const DRAIN: Duration = Duration::from_secs(2);

/// `logs` flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// The run (default: the run in progress, else the last finished run).
    #[arg(long, value_name = "N")]
    pub run: Option<i64>,
    /// The step (default: the run's failed step, else the step running, else the last that ran).
    #[arg(long, value_name = "NAME")]
    pub step: Option<String>,
    /// Follow the log until the step's Pod terminates.
    #[arg(short, long)]
    pub follow: bool,
    /// The log of the previous instance of the container, if it restarted.
    #[arg(short, long)]
    pub previous: bool,
    /// The container (default: the Pod's default container, else its first).
    #[arg(short, long, conflicts_with = "all_containers")]
    pub container: Option<String>,
    /// Every container of the Pod, init containers first, each line prefixed with its name.
    #[arg(long)]
    pub all_containers: bool,
    /// Only the last N lines of each container.
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
}

/// The step whose log to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    /// The run number, for finding the Job by labels (0 when `job` names it: a Sync's last
    /// Job may belong to a sequence's run).
    pub run: i64,
    pub step: String,
    /// The step's Job, when the status names it.
    pub job: Option<String>,
}

/// Which step of which run `logs` shows, from the object's status alone.
pub(crate) fn choose(
    obj: &Runnable,
    run: Option<i64>,
    step: Option<&str>,
) -> Result<Choice, String> {
    let what = obj.target.reference();
    if obj.target.kind == Kind::Sync {
        if let Some(step) = step.filter(|s| *s != STANDALONE_STEP) {
            return Err(format!(
                "a Sync's own runs have one step, {STANDALONE_STEP:?}, not {step:?}"
            ));
        }
        return match run {
            // Its own run N: the Job is found by labels.
            Some(run) => Ok(Choice {
                run,
                step: STANDALONE_STEP.into(),
                job: None,
            }),
            // Its last Job, whoever started it.
            None => match &obj.last_job {
                Some(job) => Ok(Choice {
                    run: 0,
                    step: STANDALONE_STEP.into(),
                    job: Some(job.job_name.clone()),
                }),
                None => Err(format!("{what} has not run yet")),
            },
        };
    }
    let full = |id: i64| {
        obj.book
            .current_run
            .as_deref()
            .into_iter()
            .chain(obj.last_run.as_ref())
            .find(|r| r.id == id)
    };
    let id = match run {
        Some(id) => id,
        None => match obj
            .book
            .current_run
            .as_deref()
            .or(obj.last_run.as_ref())
            .map(|r| r.id)
            .or(obj.book.runs.first().map(|r| r.id))
        {
            Some(id) => id,
            None => return Err(format!("{what} has not run yet")),
        },
    };
    if let Some(r) = full(id) {
        return step_of(r, step).map(|(step, job)| Choice { run: id, step, job });
    }
    let Some(summary) = obj.book.runs.iter().find(|r| r.id == id) else {
        return Err(format!(
            "{what} has no run {id} in its status (it keeps the last {} runs)",
            obj.book.runs.len()
        ));
    };
    match step.map(str::to_string).or(summary.failed_step.clone()) {
        Some(step) => Ok(Choice {
            run: id,
            step,
            job: None,
        }),
        None => Err(format!(
            "run {id} of {what} had no failed step; name one with --step"
        )),
    }
}

fn step_of(run: &RunStatus, step: Option<&str>) -> Result<(String, Option<String>), String> {
    let found = match step {
        Some(name) => run.steps.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
            format!(
                "run {} has no step {name:?} (its steps: {})",
                run.id,
                names.join(", ")
            )
        })?,
        None => run
            .steps
            .iter()
            .find(|s| s.phase == StepPhase::Failed)
            .or_else(|| run.steps.iter().find(|s| s.phase == StepPhase::Running))
            .or_else(|| run.steps.iter().rev().find(|s| s.job_name.is_some()))
            .ok_or_else(|| format!("no step of run {} has started yet", run.id))?,
    };
    Ok((found.name.clone(), found.job_name.clone()))
}

/// The Job of the chosen step: by name, else the newest attempt by labels and owner UID.
async fn find_job(cluster: &Cluster, obj: &Runnable, choice: &Choice) -> anyhow::Result<Job> {
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &obj.namespace);
    if let Some(name) = &choice.job {
        return match jobs.get_opt(name).await.map_err(api_error)? {
            Some(job) => Ok(job),
            None => anyhow::bail!(
                "Job {name} of step {} is gone (deleted, or removed by its TTL), and its Pods' logs with it",
                choice.step
            ),
        };
    }
    let owner_label = match obj.target.kind {
        Kind::SyncSequence => labels::SEQUENCE,
        Kind::Sync => labels::SYNC,
    };
    let selector = format!(
        "{owner_label}={},{}={},{}={}",
        obj.target.name,
        labels::RUN,
        choice.run,
        labels::STEP,
        choice.step
    );
    let list = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error)?;
    let attempt = |j: &Job| {
        j.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::ATTEMPT))
            .and_then(|a| a.parse::<i64>().ok())
            .unwrap_or(0)
    };
    list.items
        .into_iter()
        .filter(|j| obj.owns(j))
        .max_by_key(attempt)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no Job of step {} of run {} is left (deleted, or removed by its TTL)",
                choice.step,
                choice.run
            )
        })
}

/// The Job's newest Pod.
async fn newest_pod(pods: &Api<Pod>, job: &Job) -> anyhow::Result<Pod> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let list = pods
        .list(&ListParams::default().labels(&format!("{JOB_UID_LABEL}={uid}")))
        .await
        .map_err(api_error)?;
    let count = list.items.len();
    let pod = list
        .items
        .into_iter()
        .max_by(|a, b| {
            (&a.metadata.creation_timestamp, &a.metadata.name)
                .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
        })
        .ok_or_else(|| anyhow::anyhow!("Job {name} has no Pod (yet, or any more)"))?;
    if count > 1 {
        say(&format!(
            "Job {name} has {count} Pods; showing the newest, pod/{}",
            pod.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    Ok(pod)
}

/// The containers to show, in order, or an error naming the ones there are.
fn containers(pod: &Pod, args: &LogArgs) -> anyhow::Result<Vec<String>> {
    let spec = pod.spec.clone().unwrap_or_default();
    let main: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
    if args.all_containers {
        let mut all: Vec<String> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        all.extend(main);
        return Ok(all);
    }
    let wanted = args.container.clone().or_else(|| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEFAULT_CONTAINER))
            .cloned()
    });
    match wanted {
        Some(c)
            if main.contains(&c) || spec.init_containers.iter().flatten().any(|i| i.name == c) =>
        {
            Ok(vec![c])
        }
        Some(c) => anyhow::bail!(
            "pod/{} has no container {c:?} (its containers: {})",
            pod.metadata.name.as_deref().unwrap_or_default(),
            main.join(", ")
        ),
        None => Ok(main.into_iter().take(1).collect()),
    }
}

fn say(line: &str) {
    eprintln!("{}", terminal_safe(line));
}

/// One line of container output, made safe for a terminal (it is untrusted text): whole
/// escape sequences go (colours would otherwise leave `[31m` behind), then any other control
/// character and bidi override.
fn print_line(prefix: &str, line: &str) {
    use std::io::Write;
    let line = strip_ansi_escapes::strip_str(line.trim_end_matches(['\n', '\r']));
    let line = terminal_safe(&line);
    let _ = writeln!(std::io::stdout(), "{prefix}{line}");
}

fn terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn pending(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        None | Some("Pending")
    )
}

/// Watches the Pod until `done` says so; false when it is deleted or the watch gives up.
async fn wait_pod(pods: &Api<Pod>, name: &str, done: impl Fn(&Pod) -> bool) -> bool {
    use kube::runtime::WatchStreamExt;
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(pods.clone(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(pod) if done(&pod) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

type Lines = Pin<Box<dyn Stream<Item = anyhow::Result<(String, String)>> + Send>>;

/// `logs NAME [--run N] [--step S] [-f] [--previous] [-c C | --all-containers]`.
/// The last `lines` lines of the chosen step's main container, made safe to show (escape
/// sequences and control characters removed, as for a terminal): for the dashboard.
pub(crate) async fn tail(
    cluster: &Cluster,
    obj: &Runnable,
    choice: &Choice,
    lines: i64,
) -> anyhow::Result<String> {
    let job = find_job(cluster, obj, choice).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &obj.namespace);
    let pod = newest_pod(&pods, &job).await?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone());
    let params = LogParams {
        container,
        tail_lines: Some(lines),
        ..Default::default()
    };
    let text = pods.logs(&pod_name, &params).await.map_err(api_error)?;
    Ok(text
        .lines()
        .map(|line| terminal_safe(&strip_ansi_escapes::strip_str(line)))
        .collect::<Vec<_>>()
        .join("\n"))
}

pub(crate) async fn logs(cluster: &Cluster, obj: &Runnable, args: &LogArgs) -> anyhow::Result<()> {
    let choice = choose(obj, args.run, args.step.as_deref()).map_err(anyhow::Error::msg)?;
    let job = find_job(cluster, obj, &choice).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &obj.namespace);
    let mut pod = newest_pod(&pods, &job).await?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let names = containers(&pod, args)?;
    let prefixed = names.len() > 1;
    let prefix = |c: &str| {
        if prefixed {
            format!("[pod/{pod_name}/{c}] ")
        } else {
            String::new()
        }
    };
    let params = |c: &str| LogParams {
        container: Some(c.to_string()),
        follow: args.follow,
        previous: args.previous,
        tail_lines: args.tail,
        ..Default::default()
    };
    if !args.follow {
        for c in &names {
            let text = pods.logs(&pod_name, &params(c)).await.map_err(api_error)?;
            let p = prefix(c);
            for line in text.lines() {
                print_line(&p, line);
            }
        }
        return Ok(());
    }
    if pending(&pod) {
        say(&format!("waiting for pod/{pod_name} to start"));
        let started =
            tokio::time::timeout(START_TIMEOUT, wait_pod(&pods, &pod_name, |p| !pending(p)));
        if !matches!(started.await, Ok(true)) {
            anyhow::bail!(
                "pod/{pod_name} did not start within {}s",
                START_TIMEOUT.as_secs()
            );
        }
        pod = pods.get(&pod_name).await.map_err(api_error)?;
    }
    let mut streams: Vec<Lines> = Vec::new();
    for c in &names {
        let reader = pods
            .log_stream(&pod_name, &params(c))
            .await
            .map_err(api_error)?;
        let p = prefix(c);
        streams.push(Box::pin(
            reader
                .lines()
                .map_ok(move |line| (p.clone(), line))
                .map_err(anyhow::Error::from),
        ));
    }
    let mut merged = futures::stream::select_all(streams);
    // A kubelet ends the stream when the container exits; the end of the Pod ends it too, in
    // case the node's log server does not (kwok's keeps following its file).
    let already_over = terminated(&pod);
    let over = async {
        if !already_over {
            wait_pod(&pods, &pod_name, terminated).await;
        }
        tokio::time::sleep(DRAIN).await;
    };
    tokio::pin!(over);
    loop {
        tokio::select! {
            next = merged.next() => match next {
                Some(Ok((p, line))) => print_line(&p, &line),
                Some(Err(e)) => return Err(e.context(format!("reading the log of pod/{pod_name}"))),
                None => return Ok(()),
            },
            () = &mut over => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RunBook, RunPhase, RunSummary, StepStatus, SyncRunRecord, TriggerKind};
    use crate::plugin::fixtures;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn step(name: &str, phase: StepPhase, job: Option<&str>) -> StepStatus {
        StepStatus {
            job_name: job.map(Into::into),
            attempts: 1,
            ..fixtures::step(name, phase)
        }
    }

    fn run(id: i64, phase: RunPhase, steps: Vec<StepStatus>) -> RunStatus {
        RunStatus {
            id,
            trigger: TriggerKind::Manual,
            retry_of: None,
            upstream: None,
            scheduled_time: None,
            start_time: Time("2026-05-01T10:00:00Z".parse().unwrap()),
            completion_time: None,
            phase,
            stopped_by: None,
            progress: "1/3".into(),
            steps,
            message: None,
        }
    }

    fn summary(id: i64, failed_step: Option<&str>) -> RunSummary {
        RunSummary {
            id,
            scheduled_time: None,
            trigger: TriggerKind::Schedule,
            retry_of: None,
            upstream: None,
            phase: RunPhase::Failed,
            start_time: Time("2026-05-01T09:00:00Z".parse().unwrap()),
            completion_time: None,
            failed_step: failed_step.map(Into::into),
            message: None,
            succeeded_steps: None,
        }
    }

    fn sequence(book: RunBook, last_run: Option<RunStatus>) -> Runnable {
        let mut seq = crate::engine::fixtures::sequence(vec![]);
        seq.status = Some(crate::api::SyncSequenceStatus {
            book,
            last_run: last_run.map(Box::new),
            ..Default::default()
        });
        Runnable::from(&seq)
    }

    fn pick(obj: &Runnable, run: Option<i64>, step: Option<&str>) -> Result<Choice, String> {
        choose(obj, run, step)
    }

    fn choice(run: i64, step: &str, job: Option<&str>) -> Choice {
        Choice {
            run,
            step: step.into(),
            job: job.map(Into::into),
        }
    }

    #[test]
    fn the_default_is_the_failed_step_of_the_last_run() {
        let last = run(
            7,
            RunPhase::Failed,
            vec![
                step("accounts", StepPhase::Succeeded, Some("j-a")),
                step("workspaces", StepPhase::Failed, Some("j-w")),
                step("contacts", StepPhase::Skipped, None),
            ],
        );
        let book = RunBook {
            runs: vec![summary(7, Some("workspaces")), summary(6, Some("contacts"))],
            ..Default::default()
        };
        let obj = sequence(book, Some(last));
        assert_eq!(
            pick(&obj, None, None),
            Ok(choice(7, "workspaces", Some("j-w")))
        );
        assert_eq!(
            pick(&obj, None, Some("accounts")),
            Ok(choice(7, "accounts", Some("j-a")))
        );
        // An older run keeps only its summary: its failed step, the Job found by labels.
        assert_eq!(pick(&obj, Some(6), None), Ok(choice(6, "contacts", None)));
        assert_eq!(
            pick(&obj, Some(6), Some("accounts")),
            Ok(choice(6, "accounts", None))
        );
        let err = pick(&obj, None, Some("nope")).unwrap_err();
        assert!(err.contains("accounts, workspaces, contacts"), "{err}");
        assert!(pick(&obj, Some(3), None).unwrap_err().contains("no run 3"));
    }

    #[test]
    fn a_run_in_progress_shows_its_running_step_and_a_finished_one_its_last() {
        let current = run(
            8,
            RunPhase::Running,
            vec![
                step("accounts", StepPhase::Succeeded, Some("j-a")),
                step("workspaces", StepPhase::Running, Some("j-w")),
                step("contacts", StepPhase::Pending, None),
            ],
        );
        let obj = sequence(
            RunBook {
                current_run: Some(Box::new(current)),
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            pick(&obj, None, None),
            Ok(choice(8, "workspaces", Some("j-w")))
        );

        let ok = run(
            9,
            RunPhase::Succeeded,
            vec![
                step("accounts", StepPhase::Succeeded, Some("j-a")),
                step("contacts", StepPhase::Succeeded, Some("j-c")),
            ],
        );
        let obj = sequence(Default::default(), Some(ok));
        assert_eq!(
            pick(&obj, None, None),
            Ok(choice(9, "contacts", Some("j-c")))
        );

        let obj = sequence(Default::default(), None);
        assert!(
            pick(&obj, None, None)
                .unwrap_err()
                .contains("has not run yet")
        );
    }

    #[test]
    fn a_sync_shows_its_last_job_whoever_started_it() {
        let mut sync = crate::engine::fixtures::sync("accounts");
        let never = Runnable::from(&sync);
        assert!(
            pick(&never, None, None)
                .unwrap_err()
                .contains("has not run yet")
        );
        sync.status = Some(crate::api::SyncStatus {
            last_run: Some(Box::new(SyncRunRecord {
                job_name: "crm-4-accounts-1-abcd".into(),
                sequence_run: Some("crm/4".into()),
                ..Default::default()
            })),
            ..Default::default()
        });
        let obj = Runnable::from(&sync);
        assert_eq!(
            pick(&obj, None, None),
            Ok(choice(0, STANDALONE_STEP, Some("crm-4-accounts-1-abcd")))
        );
        assert_eq!(
            pick(&obj, Some(2), None),
            Ok(choice(2, STANDALONE_STEP, None))
        );
        assert!(pick(&obj, None, Some("contacts")).is_err());
    }
}
