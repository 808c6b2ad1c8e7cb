//! Steps as a graph on the real control plane (issue 34, acceptance 1 to 3): branches side by
//! side, a join, a second root, `maxParallel`, a failure contained to its branch, and a retry
//! that runs only what did not succeed. Order and overlap are read twice, independently: from
//! the Jobs' own timestamps as the API server and the Job controller wrote them, and from this
//! test's watch of the Jobs (`JobLog`), whose order is the API server's.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, StepPhase, StepStatus, SyncSequence, TriggerKind, annotations};

const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// The tree of design.md §1: accounts first, then workspaces and deals side by side, contacts
/// once both are in, and audit, a second root.
const DIAMOND: [(&str, &str); 5] = [
    ("accounts", ""),
    ("workspaces", "    dependsOn: [accounts]\n"),
    ("deals", "    dependsOn: [accounts]\n"),
    ("contacts", "    dependsOn: [workspaces, deals]\n"),
    ("audit", "    dependsOn: []\n"),
];

/// A step after both branches that runs however they ended.
const REPORT: (&str, &str) = (
    "report",
    "    dependsOn: [workspaces, deals]\n    runWhen: AllFinished\n",
);

/// Applies one Sync per step, each with its own rows so that a reused step's rows can be told
/// apart: (step, how long its container runs, its exit code).
fn apply_syncs(ns: &TestNamespace, syncs: &[(&str, &str, i32)]) {
    for (i, (name, duration, exit)) in syncs.iter().enumerate() {
        let message = if *exit == 0 {
            format!(r#"{{"rowsSynced":{},"rowsRejected":0}}"#, 100 * (i + 1))
        } else {
            r#"{"rowsSynced":0,"rowsRejected":0,"message":"CRM API said 503: deals endpoint down"}"#
                .to_string()
        };
        ns.kubectl_apply(&sync_yaml(name, duration, *exit, Some(&message)));
    }
}

/// A Job as the API server recorded it: when it was created and when it finished (its
/// `completionTime`, or for a failed Job its `Failed` condition's time). The API server keeps
/// these to the second.
#[derive(Debug)]
struct Timed {
    name: String,
    created: Timestamp,
    finished: Timestamp,
}

impl Timed {
    /// Whether the two Jobs were both in flight at some moment, created to finished. At the
    /// second's resolution a Job created in the second another finished in does not count.
    fn overlaps(&self, other: &Timed) -> bool {
        self.created < other.finished && other.created < self.finished
    }
}

/// The finished Jobs of run `run` of the namespace's sequence, by step.
async fn jobs_of_run(ns: &TestNamespace, run: i64) -> BTreeMap<String, Timed> {
    let jobs = ns
        .api::<Job>()
        .list(&Default::default())
        .await
        .expect("list jobs")
        .items;
    let mut out = BTreeMap::new();
    for job in jobs {
        let labels = job.metadata.labels.clone().unwrap_or_default();
        if labels.get(syncseq::api::labels::RUN) != Some(&run.to_string()) {
            continue;
        }
        let step = labels[syncseq::api::labels::STEP].clone();
        let name = job.metadata.name.clone().unwrap();
        let status = job.status.clone().unwrap_or_default();
        let failed_at = status.conditions.iter().flatten().find_map(|c| {
            (c.type_ == "Failed" && c.status == "True")
                .then(|| c.last_transition_time.as_ref().map(|t| t.0))
                .flatten()
        });
        let finished = status
            .completion_time
            .as_ref()
            .map(|t| t.0)
            .or(failed_at)
            .unwrap_or_else(|| panic!("Job {name} of step {step} has not finished: {status:?}"));
        let timed = Timed {
            name,
            created: job.metadata.creation_timestamp.unwrap().0,
            finished,
        };
        assert!(
            out.insert(step.clone(), timed).is_none(),
            "two Jobs for step {step} in run {run}"
        );
    }
    out
}

/// Where `event` is in the watch's log (it must be there).
fn position(events: &[JobEvent], event: JobEvent) -> usize {
    events
        .iter()
        .position(|e| *e == event)
        .unwrap_or_else(|| panic!("{event:?} not in {events:?}"))
}

fn step<'a>(steps: &'a [StepStatus], name: &str) -> &'a StepStatus {
    steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

/// `kubectl syncseq ARGS` in the test's namespace (the cargo-built binary as `syncseq plugin`,
/// as tests/e2e/plugin.rs runs it); its output, once it succeeded.
fn plugin(ns: &TestNamespace, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncseq"))
        .arg("plugin")
        .args(args)
        .args(["-n", &ns.name, "--kubeconfig"])
        .arg(kubeconfig_path())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubectl syncseq {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The last finished run of the sequence `crm`, with its summary.
fn last_run(seq: &SyncSequence) -> (syncseq::api::RunSummary, syncseq::api::RunStatus) {
    let st = seq.status.clone().unwrap();
    (st.book.runs[0].clone(), *st.last_run.unwrap())
}

#[tokio::test]
async fn a_diamond_runs_its_branches_side_by_side_and_joins_after_both() {
    install_crds().await;
    let ns = TestNamespace::new("graph-diamond").await;
    // Long enough that the branches' overlap is seconds, not the resolution of a timestamp.
    apply_syncs(
        &ns,
        &[
            ("accounts", "3s", 0),
            ("workspaces", "4s", 0),
            ("deals", "4s", 0),
            ("contacts", "1s", 0),
            ("audit", "2s", 0),
        ],
    );
    ns.kubectl_apply(&sequence_yaml("crm", &DIAMOND, ""));
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;

    let (summary, run) = last_run(&seq);
    assert_eq!(summary.phase, RunPhase::Succeeded, "{summary:?}");
    for s in &run.steps {
        assert_eq!(s.phase, StepPhase::Succeeded, "{s:?}");
    }
    let jobs = jobs_of_run(&ns, 1).await;
    assert_eq!(jobs.len(), 5, "one Job per step: {jobs:?}");
    let (accounts, workspaces, deals, contacts, audit) = (
        &jobs["accounts"],
        &jobs["workspaces"],
        &jobs["deals"],
        &jobs["contacts"],
        &jobs["audit"],
    );

    // From the Jobs' own timestamps.
    assert!(
        workspaces.overlaps(deals),
        "workspaces and deals side by side: {jobs:#?}"
    );
    assert!(
        contacts.created >= workspaces.finished && contacts.created >= deals.finished,
        "contacts only after both branches: {jobs:#?}"
    );
    assert!(
        workspaces.created >= accounts.finished && deals.created >= accounts.finished,
        "the branches after accounts: {jobs:#?}"
    );
    assert!(
        audit.created < accounts.finished,
        "the second root beside accounts: {jobs:#?}"
    );
    assert!(
        audit.created.duration_since(accounts.created).abs() <= SignedDuration::from_secs(1),
        "both roots in one decision: {jobs:#?}"
    );

    // From the watch, in the API server's order.
    let events = log.events();
    let at = |e: JobEvent| position(&events, e);
    let created = |t: &Timed| JobEvent::Created(t.name.clone());
    let finished = |t: &Timed| JobEvent::Finished(t.name.clone());
    let mut first_two = log.created()[..2].to_vec();
    first_two.sort();
    let mut roots = vec![accounts.name.clone(), audit.name.clone()];
    roots.sort();
    assert_eq!(first_two, roots, "the two roots first: {events:?}");
    assert!(at(created(audit)) < at(finished(accounts)), "{events:?}");
    assert_eq!(
        log.max_concurrent(|n| n == workspaces.name || n == deals.name),
        2,
        "workspaces and deals in flight together: {events:?}"
    );
    assert!(
        at(finished(workspaces)) < at(created(contacts))
            && at(finished(deals)) < at(created(contacts)),
        "{events:?}"
    );
}

#[tokio::test]
async fn with_max_parallel_1_no_two_jobs_of_the_run_overlap() {
    install_crds().await;
    let ns = TestNamespace::new("graph-maxpar").await;
    apply_syncs(
        &ns,
        &[
            ("accounts", "1s", 0),
            ("workspaces", "1s", 0),
            ("deals", "1s", 0),
            ("contacts", "1s", 0),
            ("audit", "1s", 0),
        ],
    );
    ns.kubectl_apply(&sequence_yaml("crm", &DIAMOND, "  maxParallel: 1\n"));
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;

    let (summary, _) = last_run(&seq);
    assert_eq!(summary.phase, RunPhase::Succeeded, "{summary:?}");
    let jobs = jobs_of_run(&ns, 1).await;
    assert_eq!(jobs.len(), 5, "one Job per step: {jobs:?}");
    let all: Vec<&Timed> = jobs.values().collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(
                !a.overlaps(b),
                "{} and {} overlap: {jobs:#?}",
                a.name,
                b.name
            );
        }
    }
    assert_eq!(
        log.max_concurrent(|_| true),
        1,
        "one Job at a time: {:?}",
        log.events()
    );
    // The cap changes how many run at once, not the order the graph asks for.
    let events = log.events();
    let at = |e: JobEvent| position(&events, e);
    for parent in ["workspaces", "deals"] {
        assert!(
            at(JobEvent::Finished(jobs[parent].name.clone()))
                < at(JobEvent::Created(jobs["contacts"].name.clone())),
            "contacts after {parent}: {events:?}"
        );
    }
}

/// The diamond with `report` after both branches (`AllFinished`), and deals failing under
/// `Stop` while workspaces still runs; returns the finished run 1.
async fn run_with_deals_failing(ns: &TestNamespace) -> SyncSequence {
    apply_syncs(
        ns,
        &[
            ("accounts", "1s", 0),
            // Still running when deals fails.
            ("workspaces", "4s", 0),
            ("deals", "1s", 2),
            ("contacts", "1s", 0),
            ("audit", "1s", 0),
            ("report", "1s", 0),
        ],
    );
    let mut steps = DIAMOND.to_vec();
    steps.push(REPORT);
    ns.kubectl_apply(&sequence_yaml("crm", &steps, ""));
    trigger(ns, "crm", "1").await;
    wait_for_run(ns, "crm", 1, RUN_DEADLINE).await
}

#[tokio::test]
async fn a_failed_branch_skips_its_descendants_only_and_describe_and_status_say_why() {
    install_crds().await;
    let ns = TestNamespace::new("graph-fail").await;
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    let seq = run_with_deals_failing(&ns).await;

    let (summary, run) = last_run(&seq);
    assert_eq!(summary.phase, RunPhase::Failed, "{summary:?}");
    assert_eq!(summary.failed_step.as_deref(), Some("deals"), "{summary:?}");
    assert!(
        summary
            .message
            .as_deref()
            .is_some_and(|m| m.contains("step deals failed")),
        "{summary:?}"
    );
    let phases: Vec<(&str, StepPhase)> = run
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.phase))
        .collect();
    assert_eq!(
        phases,
        vec![
            ("accounts", StepPhase::Succeeded),
            ("workspaces", StepPhase::Succeeded),
            ("deals", StepPhase::Failed),
            ("contacts", StepPhase::Skipped),
            ("audit", StepPhase::Succeeded),
            ("report", StepPhase::Succeeded),
        ]
    );
    let contacts = step(&run.steps, "contacts");
    assert_eq!(contacts.reason.as_deref(), Some("UpstreamFailed"));
    assert_eq!(
        contacts.message.as_deref(),
        Some("skipped: step deals failed")
    );
    assert!(
        step(&run.steps, "deals")
            .message
            .as_deref()
            .is_some_and(|m| m.contains("CRM API said 503: deals endpoint down")),
        "{run:?}"
    );

    let jobs = jobs_of_run(&ns, 1).await;
    assert!(
        !jobs.contains_key("contacts"),
        "a skipped step never starts: {jobs:?}"
    );
    assert_eq!(jobs.len(), 5, "{jobs:?}");
    // The failure did not stop the other branch: workspaces went on after deals had failed,
    // and report ran once both were final.
    let events = log.events();
    let at = |e: JobEvent| position(&events, e);
    assert!(
        at(JobEvent::Finished(jobs["deals"].name.clone()))
            < at(JobEvent::Finished(jobs["workspaces"].name.clone())),
        "{events:?}"
    );
    assert!(
        jobs["deals"].finished < jobs["workspaces"].finished,
        "{jobs:#?}"
    );
    for parent in ["workspaces", "deals"] {
        assert!(
            at(JobEvent::Finished(jobs[parent].name.clone()))
                < at(JobEvent::Created(jobs["report"].name.clone())),
            "report after {parent}: {events:?}"
        );
        assert!(jobs["report"].created >= jobs[parent].finished, "{jobs:#?}");
    }

    // kubectl describe: the Events say what ran and what failed, the status why contacts did not.
    let why = [
        "step accounts succeeded",
        "step workspaces succeeded",
        "StepFailed",
        "step deals failed",
        "CRM API said 503: deals endpoint down",
        "skipped: step deals failed",
        "UpstreamFailed",
        "StepSkipped",
        "step contacts skipped (UpstreamFailed): step deals failed",
        "step report started",
        "step report succeeded",
        "step audit succeeded",
        "RunFailed",
    ];
    let describe = eventually(
        Duration::from_secs(20),
        "every step's story in kubectl describe",
        || async {
            let out = kubectl(&["describe", "syncsequence", "crm", "-n", &ns.name], None);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            why.iter().all(|w| text.contains(w)).then_some(text)
        },
    )
    .await;
    assert!(describe.contains("Warning"), "{describe}");

    // kubectl syncseq status: one line per step, each saying how it ended and why.
    let status = plugin(&ns, &["status", "crm"]);
    let line = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for step {name} in:\n{status}"))
    };
    for (name, shows) in [
        ("accounts", &["Succeeded"][..]),
        ("workspaces", &["Succeeded"]),
        (
            "deals",
            &["Failed", "CRM API said 503: deals endpoint down"],
        ),
        (
            "contacts",
            &["Skipped", "UpstreamFailed", "skipped: step deals failed"],
        ),
        ("audit", &["Succeeded"]),
        ("report", &["Succeeded"]),
    ] {
        for s in shows {
            assert!(line(name).contains(s), "{name} shows {s}:\n{status}");
        }
    }
}

#[tokio::test]
async fn retry_after_fixing_deals_runs_only_what_did_not_succeed_and_reuses_the_rest() {
    install_crds().await;
    let ns = TestNamespace::new("graph-retry").await;
    let _controller = ControllerProcess::start(&ns.name);
    let failed = run_with_deals_failing(&ns).await;
    let (summary, before) = last_run(&failed);
    assert_eq!(summary.phase, RunPhase::Failed, "{summary:?}");

    // Fix deals: its Sync now succeeds.
    ns.kubectl_apply(&sync_yaml(
        "deals",
        "1s",
        0,
        Some(r#"{"rowsSynced":4100,"rowsRejected":0}"#),
    ));
    // The watch lists run 1's Jobs first, as if created: only the others are new.
    let old: Vec<String> = jobs_of_run(&ns, 1)
        .await
        .into_values()
        .map(|t| t.name)
        .collect();
    let log = JobLog::start(&ns).await;
    plugin(&ns, &["retry", "crm"]);
    let seq = wait_for_run(&ns, "crm", 2, RUN_DEADLINE).await;

    let requested = seq
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::RETRY_REQUESTED_AT))
        .cloned();
    assert!(requested.is_some(), "{:?}", seq.metadata.annotations);
    let st = seq.status.clone().unwrap();
    assert_eq!(st.book.last_handled_retry_at, requested);
    let (summary, run) = last_run(&seq);
    assert_eq!(
        (summary.id, summary.trigger, summary.retry_of, summary.phase),
        (2, TriggerKind::Retry, Some(1), RunPhase::Succeeded),
        "{summary:?}"
    );
    assert_eq!((run.trigger, run.retry_of), (TriggerKind::Retry, Some(1)));

    // What succeeded in run 1 is reused as it was: its Job, rows and times.
    for name in ["accounts", "workspaces", "audit", "report"] {
        let (then, now) = (step(&before.steps, name), step(&run.steps, name));
        assert_eq!(now.phase, StepPhase::Succeeded, "{now:?}");
        assert_eq!(now.reused_from, Some(1), "{now:?}");
        assert_eq!(
            (
                &now.job_name,
                now.rows_synced,
                now.rows_rejected,
                &now.start_time,
                &now.completion_time
            ),
            (
                &then.job_name,
                then.rows_synced,
                then.rows_rejected,
                &then.start_time,
                &then.completion_time
            ),
            "{name} as in run 1"
        );
    }
    // What failed or was skipped runs again, in graph order.
    for name in ["deals", "contacts"] {
        let now = step(&run.steps, name);
        assert_eq!(now.phase, StepPhase::Succeeded, "{now:?}");
        assert_eq!(now.reused_from, None, "{now:?}");
    }
    assert_eq!(step(&run.steps, "deals").rows_synced, Some(4100));

    let jobs = jobs_of_run(&ns, 2).await;
    assert_eq!(
        jobs.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["contacts", "deals"],
        "new Jobs only for the failed and the skipped step: {jobs:?}"
    );
    let mut created: Vec<String> = log
        .created()
        .into_iter()
        .filter(|n| !old.contains(n))
        .collect();
    created.sort();
    let mut expected: Vec<String> = jobs.values().map(|t| t.name.clone()).collect();
    expected.sort();
    assert_eq!(
        created,
        expected,
        "no other Job created: {:?}",
        log.events()
    );
    let events = log.events();
    assert!(
        position(&events, JobEvent::Finished(jobs["deals"].name.clone()))
            < position(&events, JobEvent::Created(jobs["contacts"].name.clone())),
        "{events:?}"
    );
    for name in ["deals", "contacts"] {
        assert_eq!(
            step(&run.steps, name).job_name.as_deref(),
            Some(jobs[name].name.as_str())
        );
    }
}
