//! The decision for one standalone Sync: its own runs (on its schedule or on request) are
//! one-step runs of the same engine a sequence's runs use, and its `lastRun` reports the most
//! recent run of the Sync whoever started it (its schedule, a person, a sequence).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions;
use super::reasons;
use super::run::failure_message;
use super::runs::{self, Cluster, Done, Driven, Runner};
use super::upstream::Upstreams;
use super::{Action, Holder, JobOutcome, JobOwner, JobView, Plan};
use crate::api::{
    ConcurrencyPolicy, FailurePolicy, StepPhase, Sync, SyncRef, SyncRunRecord, SyncStatus,
    TriggerKind,
};

/// Standalone runs kept in `status.runs` (and their Jobs); older Jobs the Sync owns are deleted.
pub(super) const SYNC_HISTORY: i32 = 3;

/// The name of the one step of a Sync's own run (and of its Jobs' step label).
pub(crate) const STANDALONE_STEP: &str = "run";

/// How long a claim holds while its Job is not in the cache (a claimant killed between its
/// claim and its create blocks the Sync for at most that long), and how long the running
/// record a sequence's claim wrote stands before the Jobs alone decide `lastRun` again.
pub(crate) const CLAIM_YOUNG: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// A Job that runs this Sync, and who started it.
#[derive(Debug, Clone)]
pub(crate) struct SyncJob {
    pub view: JobView,
    /// The sequence that created it, if any; None for the Sync's own runs.
    pub sequence: Option<String>,
}

/// Everything the engine looks at for one Sync.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncObserved<'a> {
    pub sync: &'a Sync,
    /// The Jobs the Sync controls (its own runs), matched by owner UID.
    pub own: &'a [JobView],
    /// Every Job that runs this Sync, its own and its sequences', for `lastRun`.
    pub all: &'a [SyncJob],
    /// What holds the Sync now (under its own name), across the namespace.
    pub holders: &'a BTreeMap<String, Vec<Holder>>,
    /// The upstreams of `spec.after`, as their statuses show them.
    pub upstreams: &'a Upstreams,
    pub now: Timestamp,
}

/// What to do for a Sync.
pub(super) type SyncPlan = Plan<SyncStatus>;

pub(crate) fn decide_sync(obs: &SyncObserved) -> SyncPlan {
    let sync = obs.sync;
    let now = obs.now;
    let old = sync.status.clone().unwrap_or_default();
    let generation = sync.metadata.generation;
    let mut st = old.clone();
    let mut actions = Vec::new();
    let owner = JobOwner::of(sync);
    let steps = [crate::api::Step {
        name: STANDALONE_STEP.into(),
        sync_ref: SyncRef {
            name: owner.name.clone(),
        },
        depends_on: None,
        run_when: Default::default(),
        on_failure: FailurePolicy::Stop,
        rejected_rows: None,
        retries: 0,
        retry_delay_seconds: 0,
        timeout_seconds: None,
    }];
    let syncs = BTreeMap::from([(owner.name.clone(), sync.clone())]);
    let runner = Runner {
        owner,
        meta: &sync.metadata,
        scheduling: &sync.spec.scheduling,
        // CronJob's default: a trigger that arrives while the Sync's own run is in progress is
        // dropped (and counted); one that arrives while a sequence runs the Sync starts a run
        // whose step waits for it.
        concurrency: ConcurrencyPolicy::Forbid,
        steps: &steps,
        history_limit: runs::history_limit(SYNC_HISTORY),
        max_parallel: None,
        fail_fast: false,
        last_run: None,
    };
    // A sequence's claim wrote the running record of the Job it was about to create
    // (`claimed`); until that Job reaches the cache (or the claim is old: its create was
    // refused, or its claimant died), the record stands and the claim holds the Sync.
    let unseen_claim = old.claim.as_ref().filter(|c| {
        now < c.time.0 + CLAIM_YOUNG
            && old.last_run.as_deref().is_some_and(|r| r.job_name == c.job)
            && !obs.all.iter().any(|j| j.view.name == c.job)
    });
    let with_claim;
    let holders = match unseen_claim {
        Some(c) => {
            let mut all = obs.holders.clone();
            all.entry(runner.owner.name.clone())
                .or_default()
                .push(Holder {
                    job: c.job.clone(),
                    by: c.by.clone(),
                });
            with_claim = all;
            &with_claim
        }
        None => obs.holders,
    };
    let cluster = Cluster {
        syncs: &syncs,
        jobs: obs.own,
        holders,
        upstreams: obs.upstreams,
        now,
    };
    let Done {
        spec_error,
        missing_upstreams,
        wake,
        ..
    } = match runs::drive(
        &runner,
        cluster,
        &old,
        &mut st.schedule,
        &mut st.book,
        &mut st.conditions,
        &mut actions,
    ) {
        Driven::Done(done) => done,
        Driven::Stale(plan) => return plan,
    };
    let wake = match unseen_claim {
        Some(c) => crate::engine::earliest(wake, Some(c.time.0 + CLAIM_YOUNG)),
        None => wake,
    };
    if unseen_claim.is_none() {
        match newest(obs.all.iter()) {
            Some(newest) => {
                st.last_run = Some(Box::new(record(newest, &st, old.last_run.as_deref())))
            }
            // A running record whose Job is gone (its create refused, or deleted before it
            // ended) says how that run ended. (It is rewritten, not removed: a claim may have
            // written it, and the reconciler's apply removes only fields it wrote itself.)
            None => {
                if let Some(r) = st
                    .last_run
                    .as_mut()
                    .filter(|r| r.outcome == Some(StepPhase::Running))
                {
                    r.outcome = Some(StepPhase::Failed);
                    r.completion_time = Some(Time(now));
                    r.message = Some(format!(
                        "job {} did not run to its end: it was never created, or was deleted",
                        r.job_name
                    ));
                }
            }
        }
    }
    let ended = |ok: bool| {
        newest(obs.all.iter().filter(move |j| match j.view.outcome {
            JobOutcome::Active => false,
            JobOutcome::Succeeded => ok,
            JobOutcome::Failed { .. } => !ok,
        }))
    };
    let succeeded = ended(true).map(|j| record(j, &st, old.last_run.as_deref()));
    let failed = ended(false).map(|j| record(j, &st, old.last_run.as_deref()));
    keep_newer(&mut st.last_succeeded_run, succeeded);
    keep_newer(&mut st.last_failed_run, failed);
    let holder = holders
        .get(&runner.owner.name)
        .and_then(|h| h.first())
        .cloned();
    set_conditions(
        &mut st,
        spec_error.as_ref().map(|(reason, m)| (*reason, m.as_str())),
        &missing_upstreams,
        &old,
        holder.as_ref(),
        generation,
        now,
        &mut actions,
    );
    st.observed_generation = generation;
    SyncPlan {
        status: st,
        actions,
        wake_at: wake,
    }
}

/// The Sync's status as it reads once a sequence's Job `job` (run `run` of `sequence`) holds
/// it: `lastRun` running, and the `Running` condition saying for whom. The claim's
/// compare-and-swap write carries it, so the Job's start costs the Sync no write (and no
/// reconcile) of its own; [`decide_sync`] arrives at the same status once the Job is cached.
/// While the Sync's own run is in progress its `Running` condition speaks for that run, and is
/// left to its reconcile.
pub(crate) fn claimed(
    sync: &Sync,
    job: &str,
    sequence: &str,
    run: i64,
    now: Timestamp,
) -> SyncStatus {
    let mut st = sync.status.clone().unwrap_or_default();
    let running = SyncJob {
        view: JobView {
            name: job.to_string(),
            uid: String::new(),
            run,
            step: String::new(),
            sync: sync.metadata.name.clone().unwrap_or_default(),
            attempt: 1,
            outcome: JobOutcome::Active,
            finished_at: None,
            report: None,
            deleting: false,
            created: Some(now),
        },
        sequence: Some(sequence.to_string()),
    };
    st.last_run = Some(Box::new(record(&running, &st, None)));
    if st.book.current_run.is_none() {
        conditions::set_running(
            &mut st.conditions,
            Some(format!("running for {}", sequence_runner(sequence, run))),
            IDLE,
            sync.metadata.generation,
            now,
        );
    }
    st
}

/// Who runs a sequence's Job, in messages (as the Job's labels tell it).
pub(crate) fn sequence_runner(sequence: &str, run: i64) -> String {
    format!("sequence {sequence} run {run}")
}

/// The `Running` condition's message while nothing runs the Sync.
const IDLE: &str = "no job of this sync is running";

fn newest<'a>(jobs: impl Iterator<Item = &'a SyncJob>) -> Option<&'a SyncJob> {
    jobs.max_by(|a, b| (a.view.created, &a.view.name).cmp(&(b.view.created, &b.view.name)))
}

/// Replaces `kept` with `found` unless `kept` is the newer run: the Jobs of older runs are
/// deleted in time (history limits, TTLs), and the record stays.
fn keep_newer(kept: &mut Option<Box<SyncRunRecord>>, found: Option<SyncRunRecord>) {
    let Some(mut found) = found else { return };
    // The same Job's record keeps the start time it was first given (see `record`).
    if let Some(k) = kept.as_ref().filter(|k| k.job_name == found.job_name) {
        found.start_time = k.start_time.clone().or(found.start_time);
    }
    let key = |r: &SyncRunRecord| (r.start_time.as_ref().map(|t| t.0), r.job_name.clone());
    if kept.as_ref().is_none_or(|k| key(k) <= key(&found)) {
        *kept = Some(Box::new(found));
    }
}

/// The Sync's last run, as its newest Job tells it.
///
/// A Job still active reports nothing of its Pod's result: the result (written when the Pod
/// terminates, just before the Job completes) goes into the record with the outcome, in one
/// status write rather than two. A record already kept for the same Job (`known`) keeps its
/// start time: a sequence's claim wrote it a moment before the Job's creation time.
fn record(job: &SyncJob, st: &SyncStatus, known: Option<&SyncRunRecord>) -> SyncRunRecord {
    let v = &job.view;
    let report = match v.outcome {
        JobOutcome::Active => Default::default(),
        _ => v.report.clone().unwrap_or_default(),
    };
    let (outcome, message) = match &v.outcome {
        JobOutcome::Active => (StepPhase::Running, None),
        JobOutcome::Succeeded => (StepPhase::Succeeded, report.message.clone()),
        // The same text as the step's. The limit a sequence's step set is not known here: a
        // timeout names the Job's deadline, which that limit became.
        JobOutcome::Failed { timed_out, reason } => (
            StepPhase::Failed,
            Some(failure_message(*timed_out, reason, &report, None)),
        ),
    };
    let (trigger, sequence_run) = match &job.sequence {
        Some(seq) => (
            Some(TriggerKind::Upstream),
            Some(format!("{seq}/{}", v.run)),
        ),
        None => {
            let own = st.book.current_run.iter().map(|r| (r.id, r.trigger));
            let trigger = own
                .chain(st.book.runs.iter().map(|r| (r.id, r.trigger)))
                .find(|(id, _)| *id == v.run)
                .map(|(_, t)| t);
            (trigger, None)
        }
    };
    SyncRunRecord {
        job_name: v.name.clone(),
        trigger,
        sequence_run,
        start_time: known
            .filter(|k| k.job_name == v.name)
            .and_then(|k| k.start_time.clone())
            .or(v.created.map(Time)),
        completion_time: v.finished_at.map(Time),
        outcome: Some(outcome),
        rows_synced: report.rows_synced,
        rows_rejected: report.rows_rejected,
        message,
    }
}

#[allow(clippy::too_many_arguments)]
fn set_conditions(
    st: &mut SyncStatus,
    spec_error: Option<(&'static str, &str)>,
    missing_upstreams: &[String],
    old: &SyncStatus,
    holder: Option<&Holder>,
    generation: Option<i64>,
    now: Timestamp,
    actions: &mut Vec<Action>,
) {
    let conds = &mut st.conditions;
    conditions::set_spec_health(
        conds,
        &old.conditions,
        spec_error,
        (!missing_upstreams.is_empty()).then(|| conditions::upstream_not_found(missing_upstreams)),
        "spec is valid",
        generation,
        now,
        actions,
    );
    // Its own run in progress says where it stands (waiting for a sequence that runs the Sync,
    // say); otherwise whoever holds the Sync.
    let own = st.book.current_run.as_deref().and_then(|run| {
        let step = run.steps.first()?;
        Some(format!(
            "its own run {}: {}",
            run.id,
            step.message
                .clone()
                .unwrap_or_else(|| format!("{:?}", step.phase))
        ))
    });
    let running = own.or_else(|| holder.map(|h| format!("running for {}", h.by)));
    conditions::set_running(conds, running, IDLE, generation, now);
    let ended = match st.last_run.as_deref().and_then(|r| r.outcome) {
        Some(StepPhase::Succeeded) => Some((
            true,
            reasons::SUCCEEDED,
            "the last run succeeded".to_string(),
        )),
        Some(StepPhase::Failed) => {
            let message = st
                .last_run
                .as_ref()
                .and_then(|r| r.message.clone())
                .unwrap_or_default();
            Some((false, reasons::FAILED, message))
        }
        // `lastRun` is in progress (or not there): the condition keeps what it said last.
        _ if conds
            .iter()
            .any(|c| c.type_ == conditions::LAST_RUN_SUCCEEDED) =>
        {
            return;
        }
        _ => None,
    };
    conditions::set_last_run(conds, ended, generation, now);
}
