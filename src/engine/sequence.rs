//! The decision for one SyncSequence: its runs (the one run engine), then its conditions and
//! alerts.

use kube::ResourceExt;

use super::conditions;
use super::reasons;
use super::runs::{self, Cluster, Done, Driven, Runner};
use super::{Action, JobOwner, Observed, Plan};
use crate::api::{RunPhase, StepPhase, StepStatus, SyncSequenceStatus};

/// Decides what happens next for one sequence. Pure: the same observation gives the same plan,
/// and replaying an observation whose decisions are already recorded in status creates nothing.
pub(crate) fn decide(obs: &Observed) -> Plan {
    let seq = obs.sequence;
    let now = obs.now;
    let old = seq.status.clone().unwrap_or_default();
    let generation = seq.metadata.generation;
    let mut st = old.clone();
    let mut actions = Vec::new();
    let runner = Runner {
        owner: JobOwner::of(seq),
        meta: &seq.metadata,
        scheduling: &seq.spec.scheduling,
        concurrency: seq.spec.concurrency_policy,
        steps: &seq.spec.steps,
        history_limit: runs::history_limit(seq.spec.history_limit),
        max_parallel: seq
            .spec
            .max_parallel
            .and_then(|n| usize::try_from(n.max(1)).ok()),
        fail_fast: seq.spec.fail_fast,
        last_run: old.last_run.as_deref(),
    };
    let cluster = Cluster {
        syncs: obs.syncs,
        jobs: obs.jobs,
        holders: obs.holders,
        upstreams: obs.upstreams,
        now,
    };
    let Done {
        archived,
        spec_error,
        missing_upstreams,
        wake,
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
    if archived.is_some() {
        st.last_run = archived;
    }
    set_conditions(
        &mut st,
        &old,
        obs,
        spec_error.as_ref().map(|(reason, m)| (*reason, m.as_str())),
        &missing_upstreams,
        generation,
        &mut actions,
    );
    super::alerting::notify(&old, &mut st, obs, &mut actions);
    st.observed_generation = generation;
    // Notifications waiting for delivery are handed to the delivery worker again at this
    // bound, in case one was dropped on its way (a full queue, a restart).
    let wake = match st.pending_alerts.is_empty() {
        true => wake,
        false => super::earliest(wake, Some(now + PENDING_RECHECK)),
    };
    Plan {
        status: st,
        actions,
        wake_at: wake,
    }
}

/// How often a sequence with notifications waiting for delivery is looked at again.
const PENDING_RECHECK: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

impl JobOwner {
    /// The owner reference fields of any syncseq object.
    pub(super) fn of<K>(obj: &K) -> JobOwner
    where
        K: kube::Resource<DynamicType = ()>,
    {
        JobOwner {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            name: obj.name_any(),
            uid: obj.meta().uid.clone().unwrap_or_default(),
            namespace: obj.namespace().unwrap_or_default(),
        }
    }
}

fn set_conditions(
    st: &mut SyncSequenceStatus,
    old: &SyncSequenceStatus,
    obs: &Observed,
    spec_error: Option<(&'static str, &str)>,
    missing_upstreams: &[String],
    generation: Option<i64>,
    actions: &mut Vec<Action>,
) {
    let now = obs.now;
    let conds = &mut st.conditions;
    let missing: Vec<&str> = obs
        .sequence
        .spec
        .steps
        .iter()
        .map(|s| s.sync_ref.name.as_str())
        .filter(|n| !obs.syncs.contains_key(*n))
        .collect();

    let not_ready = match (missing.is_empty(), missing_upstreams.is_empty()) {
        (false, _) => Some((
            reasons::SYNC_NOT_FOUND,
            format!("waiting for Sync(s) not found: {}", missing.join(", ")),
        )),
        (true, false) => Some(conditions::upstream_not_found(missing_upstreams)),
        (true, true) => None,
    };
    conditions::set_spec_health(
        conds,
        &old.conditions,
        spec_error,
        not_ready,
        "spec is valid and every Sync exists",
        generation,
        now,
        actions,
    );

    let in_progress = st.book.current_run.as_deref().map(|run| {
        let what = |s: &StepStatus| {
            s.message
                .clone()
                .unwrap_or_else(|| format!("{:?}", s.phase))
        };
        // The steps in progress (running or waiting), else the first one still to run. In a
        // line that is the one step not yet final.
        let active: Vec<&StepStatus> = run
            .steps
            .iter()
            .filter(|s| matches!(s.phase, StepPhase::Running | StepPhase::Waiting))
            .collect();
        let one = match active.as_slice() {
            [one] => Some(*one),
            [] => run.steps.iter().find(|s| !s.phase.is_final()),
            _ => None,
        };
        match (one, active.as_slice()) {
            (Some(one), _) => format!(
                "run {} step {} ({}): {}",
                run.id,
                run.progress,
                one.name,
                what(one)
            ),
            (None, []) => format!("run {}", run.id),
            (None, many) => format!(
                "run {} step {}: {}",
                run.id,
                run.progress,
                many.iter()
                    .map(|s| format!("{} ({})", s.name, what(s)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    });
    conditions::set_running(conds, in_progress, "no run in progress", generation, now);
    let ended = st.book.runs.first().map(|last| {
        let ok = matches!(last.phase, RunPhase::Succeeded);
        let reason = match last.phase {
            RunPhase::Succeeded => reasons::SUCCEEDED,
            RunPhase::SucceededWithErrors => reasons::SUCCEEDED_WITH_ERRORS,
            RunPhase::Failed => reasons::FAILED,
            RunPhase::Cancelled => reasons::CANCELLED,
            RunPhase::Running => reasons::RUNNING,
        };
        let message = format!(
            "run {}: {}",
            last.id,
            last.message.clone().unwrap_or_default()
        );
        (ok, reason, message)
    });
    conditions::set_last_run(conds, ended, generation, now);
}
