//! Backfill on the local control plane (issue 35, acceptance 2, and acceptance 1 for backfill
//! runs): a backfill of three hourly fire times runs three runs, oldest first, never two at
//! once, each with its own scheduled time and data interval in its Jobs; a controller killed
//! in the middle of it (at a crash point, and by SIGKILL) ends with each fire time run once; a
//! range with too many fire times, or one that ends in the future, is refused with the reason;
//! a cancel stops the backfill and its run in progress.
//!
//! The sequences here are suspended: a backfill is a request and runs while suspended, and
//! suspend keeps the object's own hourly schedule from firing into the test when the hour
//! turns during it.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use support::fixtures::*;
use support::*;
use syncseq::api::{
    BackfillPhase, BackfillStatus, RunPhase, RunSummary, StepPhase, SyncSequence, TriggerKind,
    annotations, labels,
};

const DEADLINE: Duration = Duration::from_secs(90);
const HOUR: SignedDuration = SignedDuration::from_hours(1);
/// The sequence of every test here, and its steps (a Sync each, of the same name).
const NAME: &str = "bf";
const STEPS: [&str; 2] = ["extract", "load"];

/// The current hour, truncated, in UTC: the end of the ranges backfilled here.
fn this_hour() -> Timestamp {
    let now = Timestamp::now().as_second();
    Timestamp::from_second(now - now.rem_euclid(3600)).unwrap()
}

/// The three fire times of `0 * * * *` in [H-3h, H), oldest first.
fn last_three_hours(h: Timestamp) -> [Timestamp; 3] {
    [h - 3 * HOUR, h - 2 * HOUR, h - HOUR]
}

/// The Syncs of [`STEPS`], whose Pods run for `duration`, and the suspended hourly sequence
/// over them.
fn apply_hourly(ns: &TestNamespace, duration: &str) {
    for s in STEPS {
        ns.kubectl_apply(&sync_yaml(s, duration, 0, None));
    }
    let steps: Vec<(&str, &str)> = STEPS.iter().map(|s| (*s, "")).collect();
    ns.kubectl_apply(&sequence_yaml(
        NAME,
        &steps,
        "  schedule: \"0 * * * *\"\n  suspend: true\n",
    ));
}

/// Asks for a backfill of [from, to), as `kubectl syncseq backfill` does: the range and a new
/// request value in one write.
async fn request_backfill(ns: &TestNamespace, from: Timestamp, to: Timestamp, requested: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {
        annotations::BACKFILL: format!("{from}/{to}"),
        annotations::BACKFILL_REQUESTED_AT: requested,
    }}});
    ns.api::<SyncSequence>()
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("request a backfill");
}

fn backfill(s: &SyncSequence) -> Option<&BackfillStatus> {
    s.status.as_ref()?.book.backfill.as_deref()
}

/// Waits until the backfill requested as `requested` is in `phase`.
async fn wait_backfill(ns: &TestNamespace, requested: &str, phase: BackfillPhase) -> SyncSequence {
    wait_for_object(
        &ns.api::<SyncSequence>(),
        NAME,
        DEADLINE,
        &format!("backfill {requested} {phase:?}"),
        |s| backfill(s).is_some_and(|b| b.requested_at == requested && b.phase == phase),
    )
    .await
}

/// The finished runs in the history, in order of run number.
fn history(s: &SyncSequence) -> Vec<RunSummary> {
    let mut runs = s.status.as_ref().unwrap().book.runs.clone();
    runs.sort_by_key(|r| r.id);
    runs
}

/// Three Backfill runs, 1 to 3, for the three fire times in order, each started once the one
/// before had ended (a backfill run starts in the decision that archives the one before, so
/// the times may be equal).
fn assert_three_backfill_runs(seq: &SyncSequence, fire_times: &[Timestamp; 3]) {
    let runs = history(seq);
    let seen: Vec<(i64, TriggerKind, Option<Timestamp>, RunPhase)> = runs
        .iter()
        .map(|r| {
            (
                r.id,
                r.trigger,
                r.scheduled_time.as_ref().map(|t| t.0),
                r.phase,
            )
        })
        .collect();
    let want: Vec<_> = (1..)
        .zip(fire_times)
        .map(|(id, at)| (id, TriggerKind::Backfill, Some(*at), RunPhase::Succeeded))
        .collect();
    assert_eq!(seen, want, "one run per fire time, oldest first");
    assert_eq!(seq.status.as_ref().unwrap().book.last_run_number, Some(3));
    for w in runs.windows(2) {
        let ended = w[0].completion_time.as_ref().expect("a finished run").0;
        assert!(
            w[1].start_time.0 >= ended,
            "run {} started at {} before run {} ended at {ended}",
            w[1].id,
            w[1].start_time.0,
            w[0].id
        );
    }
}

/// A backfill's counts: (total, started, succeeded, failed, progress).
fn counts(bf: &BackfillStatus) -> (i64, i64, i64, i64, &str) {
    (
        bf.total,
        bf.started,
        bf.succeeded,
        bf.failed,
        bf.progress.as_str(),
    )
}

/// The sequence's Jobs, by name.
async fn jobs_by_name(ns: &TestNamespace) -> BTreeMap<String, Job> {
    ns.api::<Job>()
        .list(&ListParams::default().labels(&format!("{}={NAME}", labels::SEQUENCE)))
        .await
        .expect("list Jobs")
        .items
        .into_iter()
        .map(|j| (j.name_any(), j))
        .collect()
}

fn label(job: &Job, key: &str) -> String {
    job.labels()
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("Job {} has no label {key}", job.name_any()))
}

fn run_of(job: &Job) -> i64 {
    label(job, labels::RUN).parse().expect("a run number")
}

/// Every Job the watch saw created is listed now, once: one Job for each step of each of the
/// three runs, on its first attempt. Returns each Job's run, by name.
fn assert_one_job_per_step_and_run(
    log: &JobLog,
    jobs: &BTreeMap<String, Job>,
) -> BTreeMap<String, i64> {
    let created = log.created();
    let unique: BTreeSet<&String> = created.iter().collect();
    assert_eq!(
        unique.len(),
        created.len(),
        "a Job created twice: {created:?}"
    );
    let listed: BTreeSet<&String> = jobs.keys().collect();
    assert_eq!(unique, listed, "the Jobs created are the Jobs there are");
    let mut attempts: Vec<(i64, String, String)> = jobs
        .values()
        .map(|j| (run_of(j), label(j, labels::STEP), label(j, labels::ATTEMPT)))
        .collect();
    attempts.sort();
    let want: Vec<(i64, String, String)> = (1..=3)
        .flat_map(|run| STEPS.map(|s| (run, s.to_string(), "1".to_string())))
        .collect();
    assert_eq!(
        attempts, want,
        "one Job per step and run, each on its first attempt"
    );
    jobs.iter().map(|(n, j)| (n.clone(), run_of(j))).collect()
}

/// In the order the Job watch saw them: no Job of a run was created while a Job of another run
/// had not finished.
fn assert_one_run_at_a_time(log: &JobLog, run_of: &BTreeMap<String, i64>) {
    let events = log.events();
    let mut unfinished: BTreeMap<i64, usize> = BTreeMap::new();
    for e in &events {
        match e {
            JobEvent::Created(n) => {
                let run = run_of[n];
                let busy: Vec<i64> = unfinished
                    .iter()
                    .filter(|&(r, left)| *r != run && *left > 0)
                    .map(|(r, _)| *r)
                    .collect();
                assert!(
                    busy.is_empty(),
                    "Job {n} of run {run} created while runs {busy:?} had Jobs running: {events:?}"
                );
                *unfinished.entry(run).or_default() += 1;
            }
            JobEvent::Finished(n) => *unfinished.get_mut(&run_of[n]).unwrap() -= 1,
        }
    }
}

/// Every container's `SYNCSEQ_*` variables.
fn run_context(job: &Job) -> Vec<BTreeMap<String, String>> {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers
        .iter()
        .map(|c| {
            c.env
                .iter()
                .flatten()
                .filter(|e| e.name.starts_with("SYNCSEQ_"))
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .collect()
}

/// The Warning Events of `reason` about the sequence: their notes.
async fn warnings(ns: &TestNamespace, reason: &str) -> Vec<String> {
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = ns.api();
    events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(NAME)
        })
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test]
async fn three_hourly_fire_times_run_oldest_first_never_two_at_once() {
    install_crds().await;
    let ns = TestNamespace::new("bf-three").await;
    apply_hourly(&ns, "200ms");
    let (jobs, pods) = (JobLog::start(&ns).await, PodLog::start(&ns).await);
    let _controller = ControllerProcess::start(&ns.name);
    let h = this_hour();
    let fire_times = last_three_hours(h);
    request_backfill(&ns, h - 3 * HOUR, h, "1").await;

    let seq = wait_backfill(&ns, "1", BackfillPhase::Succeeded).await;
    let bf = backfill(&seq).unwrap();
    assert_eq!(counts(bf), (3, 3, 3, 0, "3/3"), "{bf:?}");
    assert_eq!(
        bf.last_started_time.as_ref().map(|t| t.0),
        Some(fire_times[2])
    );
    assert_three_backfill_runs(&seq, &fire_times);

    let listed = jobs_by_name(&ns).await;
    let runs = assert_one_job_per_step_and_run(&jobs, &listed);
    assert_one_run_at_a_time(&jobs, &runs);
    assert!(
        pods.max_alive().values().all(|n| *n <= 1),
        "{:?}",
        pods.max_alive()
    );

    // Each Job knows its fire time and the hour before it, the schedule's own interval.
    for job in listed.values() {
        let run = run_of(job);
        let at = fire_times[usize::try_from(run - 1).unwrap()];
        let step = label(job, labels::STEP);
        let want: BTreeMap<String, String> = [
            ("SYNCSEQ_RUN", run.to_string()),
            ("SYNCSEQ_STEP", step),
            ("SYNCSEQ_ATTEMPT", "1".into()),
            ("SYNCSEQ_TRIGGER", "Backfill".into()),
            ("SYNCSEQ_SCHEDULED_TIME", at.to_string()),
            ("SYNCSEQ_INTERVAL_START", (at - HOUR).to_string()),
            ("SYNCSEQ_INTERVAL_END", at.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(run_context(job), vec![want], "Job {}", job.name_any());
        assert_eq!(
            job.annotations().get(annotations::SCHEDULED_TIMESTAMP),
            Some(&at.to_string()),
            "Job {}",
            job.name_any()
        );
    }

    let started = wait_event_notes(&ns, NAME, "BackfillStarted", DEADLINE).await;
    assert!(
        started[0].contains("backfill of 3 fire times"),
        "{started:?}"
    );
    let done = wait_event_notes(&ns, NAME, "BackfillSucceeded", DEADLINE).await;
    assert!(done[0].contains("3 of 3 runs succeeded"), "{done:?}");
}

/// The controller dies twice during one backfill: at a crash point right after creating the
/// first Job of run 2 (before status records it), and by SIGKILL as soon as status shows run
/// 3 started. Each time it is started again; the backfill ends with every fire time run once.
#[tokio::test]
async fn a_controller_killed_in_the_middle_of_a_backfill_ends_with_each_fire_time_run_once() {
    install_crds().await;
    let ns = TestNamespace::new("bf-kill").await;
    apply_hourly(&ns, "1s");
    let (jobs, pods) = (JobLog::start(&ns).await, PodLog::start(&ns).await);
    // Run 1 creates two Jobs; the third Job created is run 2's first.
    let mut controller = ControllerProcess::start_with_env(
        &ns.name,
        vec![("FAILPOINTS".into(), "job-created=2*off->1*return".into())],
    );
    let h = this_hour();
    let fire_times = last_three_hours(h);
    request_backfill(&ns, h - 3 * HOUR, h, "1").await;

    let status = controller.wait_exit(Duration::from_secs(60)).await;
    assert!(
        !status.success(),
        "the controller aborted at its crash point"
    );
    let third = jobs
        .wait_created(
            &format!("{NAME}-2-{}-1-", STEPS[0]),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        jobs.created().len(),
        3,
        "it died at run 2's first Job, {third}"
    );
    controller = ControllerProcess::start(&ns.name);

    wait_for_object(
        &ns.api::<SyncSequence>(),
        NAME,
        DEADLINE,
        "the backfill to start its third run",
        |s| backfill(s).is_some_and(|b| b.started == 3),
    )
    .await;
    controller.restart();

    let seq = wait_backfill(&ns, "1", BackfillPhase::Succeeded).await;
    let bf = backfill(&seq).unwrap();
    assert_eq!(counts(bf), (3, 3, 3, 0, "3/3"), "{bf:?}");
    assert_three_backfill_runs(&seq, &fire_times);
    let runs = assert_one_job_per_step_and_run(&jobs, &jobs_by_name(&ns).await);
    assert_one_run_at_a_time(&jobs, &runs);
    assert!(
        pods.max_alive().values().all(|n| *n <= 1),
        "{:?}",
        pods.max_alive()
    );
}

#[tokio::test]
async fn a_range_with_too_many_fire_times_is_refused_with_the_count() {
    install_crds().await;
    let ns = TestNamespace::new("bf-refuse").await;
    apply_hourly(&ns, "200ms");
    let jobs = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    let h = this_hour();

    // 50 days of hours.
    request_backfill(&ns, h - 1200 * HOUR, h, "1").await;
    let seq = wait_backfill(&ns, "1", BackfillPhase::Refused).await;
    let bf = backfill(&seq).unwrap();
    let count = "has 1200 fire times, more than the limit of 1000";
    let message = bf.message.clone().unwrap_or_default();
    assert!(message.contains(count), "{message}");
    assert_eq!((bf.total, bf.started), (0, 0), "{bf:?}");
    let refused = eventually(DEADLINE, "a BackfillRefused Warning", || async {
        let notes = warnings(&ns, "BackfillRefused").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(refused.iter().any(|n| n.contains(count)), "{refused:?}");

    // A range with fire times to come (H+1h): the schedule runs those.
    request_backfill(&ns, h - HOUR, h + 2 * HOUR, "2").await;
    let seq = wait_backfill(&ns, "2", BackfillPhase::Refused).await;
    let message = backfill(&seq).unwrap().message.clone().unwrap_or_default();
    let future = format!(
        "the range has fire times that have not come yet, from {} on",
        h + HOUR
    );
    assert!(message.contains(&future), "{message}");
    let refused = eventually(DEADLINE, "the second BackfillRefused Warning", || async {
        let notes = warnings(&ns, "BackfillRefused").await;
        notes.iter().any(|n| n.contains(&future)).then_some(notes)
    })
    .await;
    assert_eq!(refused.len(), 2, "{refused:?}");

    // The second refusal is a later decision than the first: whatever the first did is done.
    let book = &seq.status.as_ref().unwrap().book;
    assert_eq!(
        (book.last_run_number, book.current_run.as_deref()),
        (None, None)
    );
    assert_eq!(
        jobs.created(),
        Vec::<String>::new(),
        "no Job for a refused backfill"
    );
}

#[tokio::test]
async fn cancelling_a_backfill_stops_it_and_its_run() {
    install_crds().await;
    let ns = TestNamespace::new("bf-cancel").await;
    // Long enough that run 1 is in progress when the cancel comes.
    apply_hourly(&ns, "60s");
    let (jobs, pods) = (JobLog::start(&ns).await, PodLog::start(&ns).await);
    let _controller = ControllerProcess::start(&ns.name);
    let h = this_hour();
    request_backfill(&ns, h - 3 * HOUR, h, "1").await;
    let first = jobs
        .wait_created(&format!("{NAME}-1-{}-1-", STEPS[0]), DEADLINE)
        .await;

    annotate(&ns, NAME, annotations::CANCEL_BACKFILL_REQUESTED_AT, "c1").await;
    let seq = wait_backfill(&ns, "1", BackfillPhase::Cancelled).await;
    let bf = backfill(&seq).unwrap();
    assert_eq!(
        (bf.total, bf.started, bf.next_time.as_ref()),
        (3, 1, None),
        "{bf:?}"
    );
    let message = bf.message.clone().unwrap_or_default();
    assert!(
        message.contains("cancelled by request after 1 of 3 runs started"),
        "{message}"
    );
    let notes = wait_event_notes(&ns, NAME, "BackfillCancelled", DEADLINE).await;
    assert!(notes[0].contains("2 fire times not run"), "{notes:?}");

    // Its run in progress is cancelled, its Job deleted.
    let seq = wait_for_run(&ns, NAME, 1, DEADLINE).await;
    let st = seq.status.as_ref().unwrap();
    let run = st.last_run.as_deref().unwrap();
    assert_eq!(
        (run.id, run.trigger, run.phase),
        (1, TriggerKind::Backfill, RunPhase::Cancelled)
    );
    assert_eq!(run.steps[0].phase, StepPhase::Cancelled, "{:?}", run.steps);
    eventually(DEADLINE, "the cancelled run's Job gone", || async {
        jobs_by_name(&ns).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(jobs.created(), vec![first], "nothing else created");

    // A backfill goes on in the decision that archives the run before its next, in the same
    // status write. A manual run's end is such a decision: the status that archives it shows
    // no backfill run started.
    for s in STEPS {
        ns.kubectl_apply(&sync_yaml(s, "200ms", 0, None));
    }
    trigger(&ns, NAME, "m1").await;
    let seq = wait_for_run(&ns, NAME, 2, DEADLINE).await;
    let book = &seq.status.as_ref().unwrap().book;
    assert_eq!(book.runs[0].trigger, TriggerKind::Manual);
    assert_eq!(book.runs[0].phase, RunPhase::Succeeded);
    assert_eq!(
        (book.last_run_number, book.current_run.as_deref()),
        (Some(2), None)
    );
    let bf = backfill(&seq).unwrap();
    assert_eq!(
        (bf.phase, bf.started),
        (BackfillPhase::Cancelled, 1),
        "{bf:?}"
    );
    assert_eq!(jobs.created().len(), 3, "{:?}", jobs.created());
    assert!(
        pods.max_alive().values().all(|n| *n <= 1),
        "{:?}",
        pods.max_alive()
    );
}
