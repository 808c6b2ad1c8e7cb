//! The model test: the engine against a cluster that does not do as it is told.
//!
//! Each reconcile applies the plan's status and then only a random prefix of its actions (a
//! controller killed mid-plan, a lost request), and between reconciles outside actors act at
//! random: a Job deleted by hand or by a TTL (its Pod running out a grace period), a Pod result
//! lost, a step renamed or removed mid-run, status rolled back behind newer Jobs, the clock
//! jumping, another sequence holding a Sync, requests, retries and cancels, a schedule firing,
//! an upstream sequence finishing runs (`spec.after`), and backfills of the past minutes
//! requested and cancelled. The second test lets the Syncs run on their own too (their
//! schedule, requests and cancels), while the sequence claims them for its steps. After every
//! step the promises are checked, for the sequence and for each Sync; a backfill's besides
//! (each fire time once, oldest first, one run at a time, nothing after a cancel, counters
//! that say what ran: `Model::log_backfill`, `check_backfill_decision`).
//!
//! The graph tests play sequences of up to 20 steps as random graphs (`dependsOn`, `runWhen`,
//! `maxParallel`, `failFast`, Syncs shared by branches) among the same actors, and check the
//! promises of steps as a graph besides (`Model::check_graph`); each ends with a retry of its
//! last run, so that a retry's promise is checked on every case that had something to retry
//! (`Model::check_retry_reuses_successes`). Their case count is
//! `PROPTEST_CASES` when set: `PROPTEST_CASES=2000` searches harder; a failure is shrunk by
//! proptest and recorded in `proptest-regressions/engine/model_tests.txt`, which replays it
//! first on every run.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use proptest::prelude::*;

use super::reasons;

use super::fixtures::{Apply, Object, PodState, World, step, step_after, sync};
use super::*;
use crate::api::*;

#[derive(Debug, Clone)]
enum Op {
    /// Reconcile and apply status plus the first `n` actions (all of them when `n` is large).
    Reconcile(usize),
    /// Finish a running Job (the `index`-th, mod their number): success with rows, or failure.
    Finish {
        ok: bool,
        rejected: i64,
        index: usize,
    },
    /// Delete the Job with this index (mod len), its Pod terminating for `grace` reconciles.
    Delete {
        index: usize,
        grace: u8,
    },
    /// A finished Job's Pod result goes missing.
    LoseResult,
    /// The step in progress is renamed (true) or removed (false) in the spec.
    EditSteps(bool),
    /// Status goes back to what it was this many reconciles ago (newer Jobs stay).
    Rollback(usize),
    /// The clock jumps forward.
    Clock(u16),
    /// Another sequence holds (true) or releases (false) Sync `a`.
    Foreign(bool),
    Trigger,
    Cancel,
    /// A retry is requested (`syncseq.dev/retryRequestedAt`), of the run given (0 is no run
    /// number), else of the last finished run.
    Retry(Option<i64>),
    /// The upstream sequence finishes a run: succeeded (true) or failed.
    Upstream(bool),
    /// A backfill is requested of the range that starts `back` seconds before now and lasts
    /// `len` seconds: refused when it ends after now, or when the sequence has no schedule.
    Backfill {
        back: u16,
        len: u16,
    },
    /// A person cancels the backfill.
    CancelBackfill,
    /// Sync `a` (true) or `b` decides its own run; the first `n` actions are carried out.
    SyncReconcile {
        a: bool,
        n: usize,
    },
    /// A person asks Sync `a` (true) or `b` for a run of its own.
    SyncRequest(bool),
    /// A person cancels the own run of Sync `a` (true) or `b`.
    SyncCancel(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..8).prop_map(Op::Reconcile),
        6 => Just(Op::Reconcile(usize::MAX)),
        4 => (any::<bool>(), 0i64..30, any::<usize>())
            .prop_map(|(ok, rejected, index)| Op::Finish { ok, rejected, index }),
        1 => (any::<usize>(), 0u8..3).prop_map(|(index, grace)| Op::Delete { index, grace }),
        1 => Just(Op::LoseResult),
        1 => any::<bool>().prop_map(Op::EditSteps),
        1 => (1usize..4).prop_map(Op::Rollback),
        2 => (0u16..120).prop_map(Op::Clock),
        1 => any::<bool>().prop_map(Op::Foreign),
        2 => Just(Op::Trigger),
        1 => Just(Op::Cancel),
        2 => prop_oneof![2 => Just(None), 1 => (0i64..6).prop_map(Some)].prop_map(Op::Retry),
        2 => any::<bool>().prop_map(Op::Upstream),
        2 => (0u16..1200, 1u16..360).prop_map(|(back, len)| Op::Backfill { back, len }),
        1 => Just(Op::CancelBackfill),
    ]
}

/// The sequence's operations, and the Syncs' own.
fn op_with_syncs() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => op(),
        2 => (any::<bool>(), 0usize..4).prop_map(|(a, n)| Op::SyncReconcile { a, n }),
        2 => any::<bool>().prop_map(|a| Op::SyncReconcile { a, n: usize::MAX }),
        1 => any::<bool>().prop_map(Op::SyncRequest),
        1 => any::<bool>().prop_map(Op::SyncCancel),
    ]
}

fn sync_name(a: bool) -> &'static str {
    if a { "a" } else { "b" }
}

struct Model {
    w: World,
    /// The sequence's status before each reconcile, with what the model knew of its
    /// backfills then.
    history: Vec<(SyncSequenceStatus, BackfillLog)>,
    /// The backfill runs the status now in place and the copies before it started (a rollback
    /// takes it back with the status: a fire time whose start the status lost runs again).
    backfills: BackfillLog,
    requests: u32,
    /// Names of Jobs the engine has seen and whose UID the sequence's status recorded; cleared
    /// once a rollback lost that knowledge (then a re-create is the crash-recovery path, not a
    /// double run).
    seen: BTreeSet<String>,
    /// The same for the Syncs' own runs, whose status is never rolled back.
    seen_by_syncs: BTreeSet<String>,
    /// Jobs of finished runs that were still active after a fully applied reconcile.
    survivors: BTreeMap<String, u8>,
    /// The newest run number any status had.
    max_run: i64,
    /// Runs up to this number saw their steps edited while in progress: what their steps wait
    /// for is no longer what the spec says, so the graph's promises are not checked on them.
    edited_through: i64,
    /// The steps that succeeded in each finished run, for the retry promise.
    succeeded_in: BTreeMap<i64, BTreeSet<String>>,
}

fn warehouse() -> UpstreamRef {
    UpstreamRef {
        kind: UpstreamKind::SyncSequence,
        name: "warehouse".into(),
    }
}

/// The holder of Sync `a` from another sequence ([`Op::Foreign`]).
fn foreign() -> Holder {
    Holder {
        job: "other-1-a-1-x".into(),
        by: "sequence other run 1".into(),
    }
}

impl Model {
    fn new(steps: Vec<Step>, policy: ConcurrencyPolicy, schedule: Option<&str>) -> Self {
        let mut w = World::sequence(steps)
            .with_sync(sync("a"))
            .with_sync(sync("b"));
        w.foreground_deletes = true;
        w.seq.spec.concurrency_policy = policy;
        w.seq.spec.scheduling.schedule = schedule.map(str::to_string);
        w.seq.spec.scheduling.after = Some(AfterSpec {
            upstreams: vec![warehouse()],
            when: UpstreamOutcome::Succeeded,
            require: UpstreamRequire::Any,
        });
        w.upstreams = Upstreams {
            views: BTreeMap::from([(warehouse(), UpstreamView::default())]),
            cycle: None,
        };
        Model {
            w,
            history: vec![],
            backfills: BackfillLog::default(),
            requests: 0,
            seen: BTreeSet::new(),
            seen_by_syncs: BTreeSet::new(),
            survivors: BTreeMap::new(),
            max_run: 0,
            edited_through: 0,
            succeeded_in: BTreeMap::new(),
        }
    }

    /// The Jobs whose Pods run, as [`World::end_job`] picks them.
    fn running_jobs(&self) -> Vec<String> {
        self.w
            .jobs
            .iter()
            .filter(|j| {
                j.exists && j.view.outcome == JobOutcome::Active && j.pod == PodState::Running
            })
            .map(|j| j.view.name.clone())
            .collect()
    }

    fn status(&self) -> SyncSequenceStatus {
        self.w.seq.status.clone().unwrap_or_default()
    }

    fn sync_status(&self, name: &str) -> SyncStatus {
        self.w.syncs[name].status.clone().unwrap_or_default()
    }

    /// Non-terminated Pods per Sync, the foreign holder included.
    fn alive_per_sync(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for j in self.w.jobs.iter().filter(|j| j.pod != PodState::Done) {
            *out.entry(j.view.sync.clone()).or_default() += 1;
        }
        for (sync, held) in &self.w.holders {
            *out.entry(sync.clone()).or_default() += held.len();
        }
        out
    }

    fn reconcile(&mut self, applied: usize) -> Result<(), TestCaseError> {
        let jobs = self.w.seq_jobs();
        let plan = self.w.plan();
        let old = self.status();
        self.record_runs(&old);
        self.record_runs(&plan.status);
        self.check_plan(&old, &plan, &jobs)?;
        self.history.push((old.clone(), self.backfills.clone()));
        // As the controller executes a plan (controller/execute.rs), killed part-way when
        // `applied` is less than all.
        let done = self
            .w
            .apply(&Object::Sequence, &plan, Apply::as_controller(applied));
        if done.deferred {
            return Ok(());
        }
        let Some(written) = self.w.seq.status.clone() else {
            return Ok(());
        };
        self.log_backfill(&written, &plan.actions)?;
        // Names whose UID the written status now records.
        for step in written.book.current_run.iter().flat_map(|r| &r.steps) {
            if let (Some(name), Some(_)) = (&step.job_name, &step.job_uid) {
                self.seen.insert(name.clone());
            }
        }
        // While status is behind its Jobs (after a rollback) the engine waits, for at most
        // STALE_LIMIT, for a fresher copy: the Jobs it does not know yet are not strays.
        let behind = jobs
            .iter()
            .any(|j| j.run > written.book.last_run_number.unwrap_or(0));
        if done.full && !behind {
            self.track_survivors(&written)?;
        }
        // (The first event of a Job the controller created wakes nobody; that of a Job
        // marked as being deleted does.)
        if done.full && !done.marked_deleting {
            self.check_settled(&plan)?;
        }
        Ok(())
    }

    /// Sync `name` decides its own run, and the plan is carried out as the controller does.
    fn reconcile_sync(&mut self, name: &str, applied: usize) -> Result<(), TestCaseError> {
        let object = Object::Sync(name.into());
        let own: Vec<JobView> = self
            .w
            .jobs
            .iter()
            .filter(|j| j.exists && j.sequence.is_none() && j.view.sync == name)
            .map(|j| j.view.clone())
            .collect();
        let plan = self.w.sync_plan(name);
        let old = self.sync_status(name);
        let st = &plan.status;
        self.check_creates(&plan.actions, &own, &self.seen_by_syncs)?;
        check_run(
            Decided {
                book: (&old.book, &st.book),
                schedule: (&old.schedule, &st.schedule),
                conditions: &st.conditions,
                actions: &plan.actions,
                wake_at: plan.wake_at,
            },
            // The one step of a Sync's own run, which has no retries.
            1,
            |_| Some(0),
        )?;
        let done = self.w.apply(&object, &plan, Apply::as_controller(applied));
        if done.deferred {
            return Ok(());
        }
        let written = self.sync_status(name);
        for step in written.book.current_run.iter().flat_map(|r| &r.steps) {
            if let (Some(job), Some(_)) = (&step.job_name, &step.job_uid) {
                self.seen_by_syncs.insert(job.clone());
            }
        }
        // Settled as a sequence's plan is, but for the Jobs it created: the first event of a
        // Job of its own run wakes the Sync, which then records it in `lastRun`.
        if done.full
            && !done.marked_deleting
            && done.created.is_empty()
            && plan.wake_at.is_none_or(|at| at > self.w.now)
        {
            settled(&self.w.sync_plan(name), &written)?;
        }
        Ok(())
    }

    /// A plan applied in full that marked no Job as being deleted (whose watch event would
    /// wake the next reconcile) leaves nothing for the next decision on the same cluster and time,
    /// unless it asked to be woken by then: the controller does not reconcile on the watch
    /// event of its own status write (`controller/freshness.rs`), so anything left over would
    /// wait for the next outside event.
    fn check_settled(&self, first: &Plan) -> Result<(), TestCaseError> {
        if first.wake_at.is_some_and(|at| at <= self.w.now) {
            return Ok(());
        }
        match &self.w.seq.status {
            Some(written) => settled(&self.w.plan(), written),
            None => Err(TestCaseError::fail("a fully applied plan wrote no status")),
        }
    }

    /// The promises, on one decision of the sequence.
    fn check_plan(
        &self,
        old: &SyncSequenceStatus,
        plan: &Plan,
        jobs: &[JobView],
    ) -> Result<(), TestCaseError> {
        let st = &plan.status;
        self.check_creates(&plan.actions, jobs, &self.seen)?;
        let steps = &self.w.seq.spec.steps;
        check_run(
            Decided {
                book: (&old.book, &st.book),
                schedule: (&old.schedule, &st.schedule),
                conditions: &st.conditions,
                actions: &plan.actions,
                wake_at: plan.wake_at,
            },
            max_running(&self.w.seq.spec, st.book.current_run.as_deref()),
            // The step's retries as the spec has it.
            |name| steps.iter().find(|p| p.name == name).map(|p| p.retries),
        )?;
        self.check_graph(old, plan, jobs)?;
        self.check_retry_reuses_successes(plan)?;
        check_backfill_decision(old, plan, self.w.seq.spec.history_limit as usize)?;
        // An upstream run is handled when status records it (the first sight records a
        // baseline, which starts nothing).
        let upstream_handled = st.book.upstreams.iter().any(|e| {
            old.book
                .upstreams
                .iter()
                .any(|o| o.name == e.name && o.uid == e.uid && o.handled_run != e.handled_run)
        });
        prop_assert_eq!(
            outcomes(&plan.actions, "upstream "),
            usize::from(upstream_handled),
            "upstream: {:?}",
            plan.actions
        );
        Ok(())
    }

    /// The promises on the Jobs a decision creates, given the Jobs it read and the names whose
    /// UID its object's status recorded.
    fn check_creates(
        &self,
        actions: &[Action],
        jobs: &[JobView],
        seen: &BTreeSet<String>,
    ) -> Result<(), TestCaseError> {
        for action in actions {
            if let Action::CreateJob(job) = action {
                let name = job.metadata.name.clone().unwrap();
                // Exactly once: a Job that status saw is never created again after it vanished.
                prop_assert!(
                    !seen.contains(&name) || jobs.iter().any(|j| j.name == name),
                    "seen Job {name} created again"
                );
                // Never twice at once: nothing else holds the Sync when its Job is created.
                let sync = &job.metadata.labels.as_ref().unwrap()[labels::SYNC];
                let others = self
                    .w
                    .held()
                    .get(sync)
                    .map(|h| h.iter().filter(|h| h.job != name).count())
                    .unwrap_or(0);
                prop_assert_eq!(others, 0, "{} created while {} is held", name, sync);
            }
        }
        Ok(())
    }

    /// What the model needs to remember of a status: the newest run, and what succeeded in
    /// each finished one.
    fn record_runs(&mut self, st: &SyncSequenceStatus) {
        self.max_run = self.max_run.max(st.book.last_run_number.unwrap_or(0));
        // The latest seen: a run's number is given out again after a rollback, and a retry
        // reads the run of that number that status has last — in `lastRun`, or in the
        // history, which keeps the steps that succeeded of a run that did not succeed.
        for summary in &st.book.runs {
            if let Some(steps) = &summary.succeeded_steps {
                let succeeded = steps.iter().map(|s| s.name.clone()).collect();
                self.succeeded_in.insert(summary.id, succeeded);
            }
        }
        if let Some(run) = st.last_run.as_deref().filter(|r| r.phase.is_finished()) {
            let succeeded = run
                .steps
                .iter()
                .filter(|s| s.phase == StepPhase::Succeeded)
                .map(|s| s.name.clone())
                .collect();
            self.succeeded_in.insert(run.id, succeeded);
        }
    }

    /// The promises of steps as a graph, on one decision of the sequence (from `old`, having
    /// read `jobs`): a step's Job is created only when its rule is met (every parent final,
    /// and its `runWhen` holds; under `failFast`, no Stop failure), and never for a step that
    /// was final; a step is Skipped only if it never started, as far as the engine could know;
    /// a run that ended has every step final.
    fn check_graph(
        &self,
        old: &SyncSequenceStatus,
        plan: &Plan,
        jobs: &[JobView],
    ) -> Result<(), TestCaseError> {
        let spec = &self.w.seq.spec;
        let book = &plan.status.book;
        let before = |id: i64, name: &str| {
            old.book
                .current_run
                .iter()
                .filter(|r| r.id == id)
                .flat_map(|r| &r.steps)
                .find(|s| s.name == name)
        };
        // Recovering a run from Jobs its status lost (a rollback) skips the steps whose
        // outcome is lost with their Jobs — never one whose Job it sees running.
        let recovery = plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Event(e) if e.reason == reasons::STATUS_BEHIND_JOBS));
        for run in book.current_run.iter().chain(&plan.status.last_run) {
            if run.phase.is_finished() {
                prop_assert!(
                    run.steps.iter().all(|s| s.phase.is_final()),
                    "run {} ended with steps not final: {:?}",
                    run.id,
                    run.steps
                );
            }
            if run.id <= self.edited_through {
                continue;
            }
            for s in run.steps.iter().filter(|s| s.phase == StepPhase::Skipped) {
                let Some(was) = before(run.id, &s.name).filter(|w| w.phase != StepPhase::Skipped)
                else {
                    continue;
                };
                let running = jobs
                    .iter()
                    .any(|j| j.run == run.id && j.step == s.name && !j.is_finished());
                // A step backing off between attempts when the run is cancelled, or when
                // failFast starts nothing new, is skipped after its Jobs; never while one runs.
                let between = run.phase == RunPhase::Cancelled || spec.fail_fast;
                let started = if recovery || between {
                    running
                } else {
                    was.attempts > 0 || running
                };
                prop_assert!(
                    !started,
                    "step {} of run {} Skipped after it started: {:?}",
                    s.name,
                    run.id,
                    was
                );
            }
        }
        for action in &plan.actions {
            let Action::CreateJob(job) = action else {
                continue;
            };
            let l = job.metadata.labels.as_ref().unwrap();
            let id: i64 = l[labels::RUN].parse().unwrap();
            let (step, attempt) = (&l[labels::STEP], &l[labels::ATTEMPT]);
            let run = book.current_run.as_deref().filter(|r| r.id == id);
            prop_assert!(run.is_some(), "a Job for run {id}, not the current one");
            let was = before(id, step).map(|s| s.phase);
            prop_assert!(
                !was.is_some_and(StepPhase::is_final),
                "a Job for step {step} of run {id}, which was {was:?}"
            );
            // The rule is for a step's start; its retries go on with what started.
            if id <= self.edited_through || attempt != "1" {
                continue;
            }
            if let Some(why) = rule_unmet(spec, run.unwrap(), step) {
                prop_assert!(false, "step {step} of run {id} started, but {why}");
            }
        }
        Ok(())
    }

    /// A Retry run never creates a Job for a step that succeeded in the run it retries.
    fn check_retry_reuses_successes(&self, plan: &Plan) -> Result<(), TestCaseError> {
        let Some(run) = plan.status.book.current_run.as_deref() else {
            return Ok(());
        };
        let Some(of) = run.retry_of.filter(|_| run.trigger == TriggerKind::Retry) else {
            return Ok(());
        };
        let succeeded = self.succeeded_in.get(&of);
        for action in &plan.actions {
            if let Action::CreateJob(job) = action {
                let step = &job.metadata.labels.as_ref().unwrap()[labels::STEP];
                prop_assert!(
                    !succeeded.is_some_and(|s| s.contains(step)),
                    "retry run {} of run {of} runs step {step}, which succeeded in it",
                    run.id
                );
            }
        }
        Ok(())
    }

    /// No active Job of a finished run survives two fully applied reconciles.
    fn track_survivors(&mut self, st: &SyncSequenceStatus) -> Result<(), TestCaseError> {
        let running = st
            .book
            .current_run
            .as_ref()
            .filter(|r| r.phase == RunPhase::Running)
            .map(|r| r.id);
        let stray: BTreeSet<String> = self
            .w
            .jobs
            .iter()
            .filter(|j| {
                j.sequence.is_some()
                    && j.exists
                    && j.view.outcome == JobOutcome::Active
                    && !j.view.deleting
                    && Some(j.view.run) != running
            })
            .map(|j| j.view.name.clone())
            .collect();
        self.survivors.retain(|name, _| stray.contains(name));
        for name in stray {
            let n = self.survivors.entry(name.clone()).or_default();
            *n += 1;
            prop_assert!(
                *n < 2,
                "active Job {name} of a finished run survived two reconciles"
            );
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Reconcile(n) => self.reconcile(n)?,
            Op::Finish {
                ok,
                rejected,
                index,
            } => {
                self.w.now += SignedDuration::from_secs(1);
                let outcome = if ok {
                    JobOutcome::Succeeded
                } else {
                    JobOutcome::Failed {
                        timed_out: false,
                        reason: "BackoffLimitExceeded".into(),
                    }
                };
                let report = Report {
                    rows_synced: Some(100),
                    rows_rejected: Some(rejected),
                    message: None,
                    exit_code: Some(if ok { 0 } else { 1 }),
                };
                let running = self.running_jobs();
                if !running.is_empty() {
                    let name = &running[index % running.len()];
                    self.w.end_job(|j| &j.view.name == name, outcome, report);
                }
            }
            Op::Delete { index, grace } => {
                let live: Vec<usize> = (0..self.w.jobs.len())
                    .filter(|&i| self.w.jobs[i].exists)
                    .collect();
                if !live.is_empty() {
                    // Background deletion (kubectl, a TTL): the Job goes at once, its Pod runs on.
                    let j = &mut self.w.jobs[live[index % live.len()]];
                    j.exists = false;
                    if j.pod == PodState::Running {
                        j.pod = PodState::Terminating(grace);
                    }
                }
            }
            Op::LoseResult => {
                if let Some(j) = self.w.jobs.iter_mut().find(|j| j.view.is_finished()) {
                    j.view.report = None;
                }
            }
            Op::EditSteps(rename) => {
                let current = self.status().book.current_run.and_then(|r| {
                    r.steps
                        .iter()
                        .find(|s| !s.phase.is_final())
                        .map(|s| s.name.clone())
                });
                if let Some(name) = current
                    && self.w.seq.spec.steps.len() > 1
                {
                    let renamed = format!("{name}x");
                    if rename {
                        if let Some(s) = self.w.seq.spec.steps.iter_mut().find(|s| s.name == name) {
                            s.name = renamed.clone();
                        }
                    } else {
                        self.w.seq.spec.steps.retain(|s| s.name != name);
                    }
                    // The steps that named it follow, as the API server requires of the
                    // edit (a `dependsOn` names steps of the spec).
                    for s in &mut self.w.seq.spec.steps {
                        let Some(deps) = &mut s.depends_on else {
                            continue;
                        };
                        if rename {
                            for d in deps.iter_mut().filter(|d| **d == name) {
                                d.clone_from(&renamed);
                            }
                        } else {
                            deps.retain(|d| *d != name);
                        }
                    }
                    self.edited_through = self
                        .max_run
                        .max(self.status().book.last_run_number.unwrap_or(0));
                }
            }
            Op::Rollback(back) => {
                if self.history.len() >= back {
                    let (old, backfills) = self.history[self.history.len() - back].clone();
                    self.w.seq.status = Some(old);
                    self.backfills = backfills;
                    // What status had recorded of these Jobs is gone with it.
                    self.seen.clear();
                }
            }
            Op::Clock(secs) => self.w.now += SignedDuration::from_secs(i64::from(secs)),
            Op::Foreign(hold) => {
                // The foreign sequence only takes `a` when nothing of ours holds it.
                self.w.holders.remove("a");
                let ours = self.alive_per_sync().get("a").copied().unwrap_or(0);
                if hold && ours == 0 {
                    self.w.holders.insert("a".into(), vec![foreign()]);
                }
            }
            Op::Trigger => {
                self.requests += 1;
                let value = format!("r{}", self.requests);
                self.w.annotate(annotations::REQUESTED_AT, &value);
            }
            Op::Cancel => {
                self.requests += 1;
                let value = format!("c{}", self.requests);
                self.w.annotate(annotations::CANCEL_REQUESTED_AT, &value);
            }
            Op::Retry(run) => {
                self.requests += 1;
                let value = format!("y{}", self.requests);
                self.w.annotate(annotations::RETRY_REQUESTED_AT, &value);
                match run {
                    Some(n) => self.w.annotate(annotations::RETRY_RUN, &n.to_string()),
                    None => {
                        if let Some(a) = self.w.seq.metadata.annotations.as_mut() {
                            a.remove(annotations::RETRY_RUN);
                        }
                    }
                }
            }
            Op::Upstream(ok) => {
                self.w.now += SignedDuration::from_secs(1);
                let view = self
                    .w
                    .upstreams
                    .views
                    .get_mut(&warehouse())
                    .expect("modelled");
                let id = view.finished.len() + 1;
                view.finished.insert(
                    0,
                    FinishedRun {
                        id: id.to_string(),
                        phase: if ok {
                            RunPhase::Succeeded
                        } else {
                            RunPhase::Failed
                        },
                        completion: Some(self.w.now),
                    },
                );
            }
            Op::Backfill { back, len } => {
                self.requests += 1;
                let from = self.w.now - SignedDuration::from_secs(i64::from(back));
                let to = from + SignedDuration::from_secs(i64::from(len));
                self.w
                    .annotate(annotations::BACKFILL, &format!("{from}/{to}"));
                let value = format!("b{}", self.requests);
                self.w.annotate(annotations::BACKFILL_REQUESTED_AT, &value);
            }
            Op::CancelBackfill => {
                self.requests += 1;
                let value = format!("x{}", self.requests);
                self.w
                    .annotate(annotations::CANCEL_BACKFILL_REQUESTED_AT, &value);
            }
            Op::SyncReconcile { a, n } => self.reconcile_sync(sync_name(a), n)?,
            Op::SyncRequest(a) => {
                self.requests += 1;
                let value = format!("r{}", self.requests);
                self.w
                    .annotate_sync(sync_name(a), annotations::REQUESTED_AT, &value);
            }
            Op::SyncCancel(a) => {
                self.requests += 1;
                let value = format!("c{}", self.requests);
                self.w
                    .annotate_sync(sync_name(a), annotations::CANCEL_REQUESTED_AT, &value);
            }
        }
        self.w.tick();
        // Never twice at once, counted in Pods.
        for (sync, n) in self.alive_per_sync() {
            prop_assert!(n <= 1, "{n} Pods of sync {sync} alive at once");
        }
        // Never more than maxParallel Jobs of a run unfinished, counted in Jobs (one being
        // deleted has been let go: its step was removed, or its run ended).
        if let Some(max) = self.w.seq.spec.max_parallel {
            let mut per_run: BTreeMap<i64, i32> = BTreeMap::new();
            for j in self.w.jobs.iter().filter(|j| {
                j.sequence.is_some() && j.exists && !j.view.is_finished() && !j.view.deleting
            }) {
                *per_run.entry(j.view.run).or_default() += 1;
            }
            for (run, n) in per_run {
                prop_assert!(
                    n <= max,
                    "{n} Jobs of run {run} unfinished, maxParallel {max}"
                );
            }
        }
        Ok(())
    }
}

/// One decision, of either kind: its object's status before and after (`(old, new)`).
struct Decided<'a> {
    book: (&'a RunBook, &'a RunBook),
    schedule: (&'a ScheduleStatus, &'a ScheduleStatus),
    conditions: &'a [Condition],
    actions: &'a [Action],
    wake_at: Option<Timestamp>,
}

/// The promises on a decision's run, for either kind: at most `max_running` steps Running;
/// `retries` gives a step's retries.
fn check_run(
    d: Decided,
    max_running: usize,
    retries: impl Fn(&str) -> Option<i32>,
) -> Result<(), TestCaseError> {
    let (old, st) = d.book;
    if let Some(run) = &st.current_run {
        let active = run
            .steps
            .iter()
            .filter(|s| s.phase == StepPhase::Running)
            .count();
        prop_assert!(active <= max_running, "{run:?}");
        for s in &run.steps {
            // Attempts never exceed retries + 1.
            if let Some(retries) = retries(&s.name) {
                prop_assert!(s.attempts <= retries + 1, "{s:?}");
            }
            // Nothing waits in silence: a condition says why, and a requeue is bounded — or a
            // step of the run is Running, whose Job's end wakes the next decision (a step
            // waiting for a place under maxParallel, or for a Sync a branch of its run holds).
            if s.phase == StepPhase::Waiting {
                let why = s.message.clone().unwrap_or_default();
                prop_assert!(!why.is_empty());
                let running = d.conditions.iter().find(|c| c.type_ == "Running");
                prop_assert!(
                    running.is_some_and(|c| c.message.contains(&why)),
                    "{why} not in {running:?}"
                );
                prop_assert!(
                    d.wake_at.is_some() || active > 0,
                    "waiting without a requeue: {s:?}"
                );
            }
        }
    }
    // Every trigger ends as exactly one of started, queued or skipped: a manual request
    // is handled when status records its value, a scheduled time when status records it.
    prop_assert_eq!(
        outcomes(d.actions, "manual request"),
        usize::from(st.last_handled_request_at != old.last_handled_request_at),
        "manual: {:?}",
        d.actions
    );
    // A retry request too, echoed in `lastHandledRetryAt` ("retry of run N", or "retry" when
    // no run could be named).
    prop_assert_eq!(
        outcomes(d.actions, "retry"),
        usize::from(st.last_handled_retry_at != old.last_handled_retry_at),
        "retry: {:?}",
        d.actions
    );
    prop_assert_eq!(
        outcomes(d.actions, "schedule"),
        usize::from(d.schedule.1.last_schedule_time != d.schedule.0.last_schedule_time),
        "schedule: {:?}",
        d.actions
    );
    Ok(())
}

/// How many triggers from `source` the actions' Events say were started, queued or skipped.
fn outcomes(actions: &[Action], source: &str) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(a, Action::Event(e)
                if matches!(e.reason, "RunStarted" | "RunQueued" | "TriggerSkipped")
                    && !e.note.contains("from the queue")
                    && e.note.contains(source))
        })
        .count()
}

/// How many steps of `run` may be Running at once: in a chain (every step after the one
/// listed before it) one, and one more after each step a retry reused (which cuts the chain:
/// the step after it waits for nothing still to run); else `maxParallel`.
fn max_running(spec: &SyncSequenceSpec, run: Option<&RunStatus>) -> usize {
    if !spec.steps.iter().all(|s| s.depends_on.is_none()) {
        return spec.max_parallel.map_or(usize::MAX, |m| m as usize);
    }
    let reused = run.map_or(0, |r| {
        r.steps.iter().filter(|s| s.reused_from.is_some()).count()
    });
    1 + reused
}

/// Whether a Failed step of this spec may have failed under a `Continue` policy (its Job's
/// failure, or its rejected rows); otherwise it surely stopped.
fn may_continue(step: &Step) -> bool {
    step.on_failure == FailurePolicy::Continue
        || step
            .rejected_rows
            .as_ref()
            .is_some_and(|r| r.on_exceeded == FailurePolicy::Continue)
}

/// Why step `name` of `run` may not start now, as the spec has it: a parent (a `dependsOn`
/// name, or the step listed before) not final, its `runWhen` not met, or a Stop failure under
/// `failFast`. None: it may.
fn rule_unmet(spec: &SyncSequenceSpec, run: &RunStatus, name: &str) -> Option<String> {
    let Some(i) = run.steps.iter().position(|s| s.name == name) else {
        return Some("it is no step of the run".into());
    };
    let Some(step) = spec.steps.iter().find(|s| s.name == name) else {
        return Some("it is no step of the spec".into());
    };
    let parents: Vec<&StepStatus> = match &step.depends_on {
        None => i
            .checked_sub(1)
            .map(|p| &run.steps[p])
            .into_iter()
            .collect(),
        Some(names) => {
            let found: Vec<&StepStatus> = run
                .steps
                .iter()
                .filter(|s| names.contains(&s.name))
                .collect();
            if found.len() != names.len() {
                return Some(format!("not every step of {names:?} is in the run"));
            }
            found
        }
    };
    if let Some(p) = parents.iter().find(|p| !p.phase.is_final()) {
        return Some(format!("parent {} is {:?}", p.name, p.phase));
    }
    let continues = |p: &StepStatus| {
        spec.steps
            .iter()
            .find(|s| s.name == p.name)
            .is_some_and(may_continue)
    };
    match step.run_when {
        RunWhen::AllSucceeded => {
            // A step closed because the Jobs showed a later step had started, or removed from
            // the spec mid-run, is out of the way: the engine counts it as succeeded.
            let out_of_the_way = |p: &StepStatus| {
                p.phase == StepPhase::Skipped
                    && [reasons::SKIP_STATUS_BEHIND_JOBS, reasons::SKIP_STEP_REMOVED]
                        .iter()
                        .any(|r| p.reason.as_deref() == Some(*r))
            };
            let bad = parents.iter().find(|p| {
                !(p.phase == StepPhase::Succeeded
                    || out_of_the_way(p)
                    || (p.phase == StepPhase::Failed && continues(p)))
            });
            if let Some(p) = bad {
                return Some(format!(
                    "AllSucceeded, and parent {} is {:?}",
                    p.name, p.phase
                ));
            }
        }
        RunWhen::AllFinished => {}
        RunWhen::AnyFailed => {
            if !parents.iter().any(|p| p.phase == StepPhase::Failed) {
                return Some("AnyFailed, and no parent failed".into());
            }
        }
    }
    let stopped = run
        .steps
        .iter()
        .find(|s| s.phase == StepPhase::Failed && !continues(s));
    if let Some(s) = stopped.filter(|_| spec.fail_fast) {
        return Some(format!("failFast, and step {} failed under Stop", s.name));
    }
    None
}

/// The backfill runs a status and the copies before it started: for each backfill (by its
/// `backfillRequestedAt` value), its runs in the order they started.
#[derive(Debug, Clone, Default)]
struct BackfillLog(BTreeMap<String, Vec<BackfillRun>>);

#[derive(Debug, Clone)]
struct BackfillRun {
    at: Timestamp,
    id: i64,
    /// How it ended, once a status showed it.
    phase: Option<RunPhase>,
}

/// A run a status knows of: number, trigger, fire time, phase.
type KnownRun = (i64, TriggerKind, Option<Timestamp>, RunPhase);

/// The runs a sequence's status knows of: in progress, last finished, in the history.
fn known_runs(st: &SyncSequenceStatus) -> Vec<KnownRun> {
    let full = st.book.current_run.iter().chain(&st.last_run);
    let mut out: Vec<KnownRun> = full
        .map(|r| {
            (
                r.id,
                r.trigger,
                r.scheduled_time.as_ref().map(|t| t.0),
                r.phase,
            )
        })
        .chain(st.book.runs.iter().map(|r| {
            (
                r.id,
                r.trigger,
                r.scheduled_time.as_ref().map(|t| t.0),
                r.phase,
            )
        }))
        .collect();
    out.sort_by_key(|r| r.0);
    out.dedup_by_key(|r| r.0);
    out
}

/// The backfill runs a decision started, oldest first: (number, fire time), as its Events say
/// (a run that ends at once can be gone from the history of the same decision).
fn backfill_starts(actions: &[Action]) -> Vec<(i64, Timestamp)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) if e.reason == reasons::RUN_STARTED => {
                let (id, at) = e
                    .note
                    .strip_prefix("run ")?
                    .split_once(" started by the backfill, for ")?;
                Some((id.parse().unwrap(), at.parse().unwrap()))
            }
            _ => None,
        })
        .collect()
}

/// The fire times of the model's schedules in `[from, to)`, worked out apart from the engine's
/// schedule maths: `@every 1m` alone runs from `from` on, every 60 s; `*/2 * * * *` at every
/// even minute (UTC).
fn expected_fire_times(schedule: &str, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
    let (first, step) = match schedule {
        "@every 1m" => (from.as_second(), 60),
        "*/2 * * * *" => ((from.as_second() + 119).div_euclid(120) * 120, 120),
        other => unreachable!("no schedule {other} in the model"),
    };
    (first..to.as_second().max(first))
        .step_by(step)
        .map(|s| Timestamp::from_second(s).unwrap())
        .filter(|&t| t < to)
        .collect()
}

impl Model {
    /// Records the backfill runs a decision started (its `actions`), once its status is
    /// `written`, and checks the backfill promises
    /// across decisions: each fire time of a backfill runs at most once, oldest first, its runs
    /// numbered in that order; the counters say what ran; a backfill that ended ran every fire
    /// time of its range exactly once.
    fn log_backfill(
        &mut self,
        written: &SyncSequenceStatus,
        actions: &[Action],
    ) -> Result<(), TestCaseError> {
        let Some(bf) = written.book.backfill.as_deref() else {
            return Ok(());
        };
        let key = &bf.requested_at;
        for (id, at) in backfill_starts(actions) {
            let log = self.backfills.0.entry(key.clone()).or_default();
            if let Some(twice) = log.iter().find(|r| r.at == at) {
                prop_assert!(
                    false,
                    "backfill {key}: fire time {at} started again as run {id}, after run {}",
                    twice.id
                );
            }
            if let Some(last) = log.last() {
                prop_assert!(
                    at > last.at && id > last.id,
                    "backfill {key}: run {id} for {at} started after run {} for {}",
                    last.id,
                    last.at
                );
            }
            log.push(BackfillRun {
                at,
                id,
                phase: None,
            });
        }
        let empty = Vec::new();
        let log = match self.backfills.0.get_mut(key) {
            Some(log) => {
                for (id, _, at, phase) in known_runs(written) {
                    if let Some(r) = log.iter_mut().find(|r| r.id == id && Some(r.at) == at) {
                        r.phase = Some(phase).filter(|p| p.is_finished()).or(r.phase);
                    }
                }
                &*log
            }
            None => &empty,
        };
        let n = |len: usize| i64::try_from(len).unwrap();
        let done = bf.succeeded + bf.failed;
        // The counters are what ran: every run started, each counted once it ended.
        prop_assert_eq!(bf.started, n(log.len()), "backfill {}: {:?}", key, bf);
        prop_assert_eq!(done + i64::from(bf.run.is_some()), bf.started, "{:?}", bf);
        prop_assert!(bf.started <= bf.total, "{:?}", bf);
        prop_assert_eq!(&bf.progress, &format!("{done}/{}", bf.total));
        prop_assert_eq!(n(bf.failed_runs.len()), bf.failed.min(10), "{:?}", bf);
        prop_assert_eq!(
            bf.last_started_time.as_ref().map(|t| t.0),
            log.last().map(|r| r.at)
        );
        if bf.phase == BackfillPhase::Running {
            // Its run in progress is the object's.
            if let Some(id) = bf.run {
                let current = written.book.current_run.as_deref();
                prop_assert_eq!(
                    current.map(|r| (r.id, r.trigger)),
                    Some((id, TriggerKind::Backfill))
                );
                prop_assert_eq!(log.last().map(|r| r.id), Some(id));
            }
        }
        if bf.phase == BackfillPhase::Refused {
            prop_assert!(log.is_empty() && bf.total == 0, "{:?}", bf);
            return Ok(());
        }
        let schedule = self.w.seq.spec.scheduling.schedule.as_deref();
        let (Some(from), Some(to)) = (&bf.from, &bf.to) else {
            return Err(TestCaseError::fail(format!(
                "an accepted backfill without its range: {bf:?}"
            )));
        };
        let expected =
            expected_fire_times(schedule.expect("accepted with a schedule"), from.0, to.0);
        prop_assert_eq!(bf.total, n(expected.len()), "backfill {}: {:?}", key, bf);
        if matches!(bf.phase, BackfillPhase::Succeeded | BackfillPhase::Failed) {
            // Every fire time of its range ran, once, oldest first.
            let ran: Vec<Timestamp> = log.iter().map(|r| r.at).collect();
            prop_assert_eq!(ran, expected, "backfill {} ended: {:?}", key, bf);
            prop_assert!(bf.run.is_none() && bf.next_time.is_none(), "{:?}", bf);
            prop_assert_eq!(bf.phase == BackfillPhase::Succeeded, bf.failed == 0);
            // Counted as they ended, where the model saw them end.
            let phases: Option<Vec<RunPhase>> = log.iter().map(|r| r.phase).collect();
            if let Some(phases) = phases {
                let ok = phases
                    .iter()
                    .filter(|p| matches!(p, RunPhase::Succeeded | RunPhase::SucceededWithErrors))
                    .count();
                prop_assert_eq!((bf.succeeded, bf.failed), (n(ok), n(phases.len() - ok)));
            }
        }
        Ok(())
    }
}

/// The backfill promises on one decision of the sequence (from `old`): a backfill starts runs
/// only while it is in progress (never once cancelled or refused), and only when no other run
/// is in progress or queued; a cancel stops its run in progress; an ended backfill stays as it
/// ended; its runs' Jobs carry their fire time.
fn check_backfill_decision(
    old: &SyncSequenceStatus,
    plan: &Plan,
    history_limit: usize,
) -> Result<(), TestCaseError> {
    let st = &plan.status;
    let was = old.book.backfill.as_deref();
    let is = st.book.backfill.as_deref();
    if let (Some(w), Some(i)) = (was, is)
        && w.requested_at == i.requested_at
    {
        if w.phase != BackfillPhase::Running {
            prop_assert_eq!(i.phase, w.phase, "an ended backfill changed: {:?}", i);
        } else if i.phase == BackfillPhase::Cancelled {
            let running = old
                .book
                .current_run
                .as_ref()
                .filter(|r| Some(r.id) == w.run && r.phase == RunPhase::Running);
            if let Some(run) = running {
                let now = st.book.current_run.as_deref().filter(|r| r.id == run.id);
                prop_assert!(
                    now.is_none_or(|r| r.phase != RunPhase::Running),
                    "backfill cancelled, and its run {} runs on",
                    run.id
                );
            }
        }
    }
    let known = old.book.last_run_number.unwrap_or(0);
    let new: Vec<KnownRun> = known_runs(st).into_iter().filter(|r| r.0 > known).collect();
    let ours: Vec<i64> = backfill_starts(&plan.actions)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if let Some(&first) = ours.first() {
        let Some(i) = is else {
            return Err(TestCaseError::fail(format!(
                "backfill run {first} with no backfill"
            )));
        };
        prop_assert!(
            matches!(
                i.phase,
                BackfillPhase::Running | BackfillPhase::Succeeded | BackfillPhase::Failed
            ) && was.is_none_or(
                |w| w.requested_at != i.requested_at || w.phase == BackfillPhase::Running
            ),
            "backfill run {first} started by a backfill {:?} (it was {:?})",
            i.phase,
            was.map(|w| w.phase)
        );
        // After every other run this decision started, with none queued: the run in progress
        // is its own.
        prop_assert!(
            new.iter()
                .all(|r| r.1 == TriggerKind::Backfill || r.0 < first),
            "a run started after backfill run {first}: {:?}",
            new
        );
        prop_assert!(
            st.book.queued_run.is_none(),
            "backfill run {first} started with a run queued"
        );
        // The run in progress before it ended first: archived (or pushed out of the history
        // by the runs after it), not dropped.
        if let Some(r) = old.book.current_run.as_deref() {
            let ended = known_runs(st)
                .iter()
                .any(|k| k.0 == r.id && k.3.is_finished());
            let history = &st.book.runs;
            let pushed_out = history.len() >= history_limit && history.iter().all(|h| h.id > r.id);
            prop_assert!(
                ended || pushed_out,
                "backfill run {first} started, and run {} that was in progress is gone",
                r.id
            );
        }
        prop_assert!(
            st.book
                .current_run
                .as_ref()
                .is_none_or(|r| ours.contains(&r.id)),
            "backfill run {first} started beside run {:?}",
            st.book.current_run.as_deref().map(|r| r.id)
        );
    }
    let Some(run) = st
        .book
        .current_run
        .as_ref()
        .filter(|r| r.trigger == TriggerKind::Backfill)
    else {
        return Ok(());
    };
    let at = run.scheduled_time.as_ref().map(|t| t.0.to_string());
    for action in &plan.actions {
        if let Action::CreateJob(job) = action {
            let l = job.metadata.labels.as_ref().unwrap();
            if l[labels::RUN] == run.id.to_string() {
                let a = job.metadata.annotations.as_ref();
                prop_assert_eq!(
                    a.and_then(|a| a.get(annotations::SCHEDULED_TIMESTAMP)),
                    at.as_ref(),
                    "a Job of backfill run {}",
                    run.id
                );
            }
        }
    }
    Ok(())
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec((any::<bool>(), 0i32..3, any::<bool>()), 1..4).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (on_a, retries, go_on))| Step {
                sync_ref: SyncRef {
                    name: if on_a { "a" } else { "b" }.into(),
                },
                retries,
                retry_delay_seconds: 5,
                on_failure: if go_on {
                    FailurePolicy::Continue
                } else {
                    FailurePolicy::Stop
                },
                rejected_rows: Some(RejectedRowsPolicy {
                    max: Some(20),
                    max_percent: None,
                    on_exceeded: FailurePolicy::Stop,
                }),
                ..step(&format!("s{i}"))
            })
            .collect()
    })
}

/// A sequence's steps as a graph, with its `maxParallel` and `failFast`.
#[derive(Debug, Clone)]
struct Graph {
    steps: Vec<Step>,
    max_parallel: Option<i32>,
    fail_fast: bool,
}

/// 1 to 20 steps, each after the step listed before it, after none, or after a random set of
/// earlier steps; on Sync `a`, `b` or one of its own; with a random `runWhen`, failure policy
/// (its rejected rows' the same, so that a Failed step surely failed under it), rejected-rows
/// limit and retries. `linear`: every step after the one before it, `runWhen` and
/// `maxParallel` unset.
fn graph(linear: bool) -> impl Strategy<Value = Graph> {
    let one = (
        0u8..4,
        any::<u32>(),
        any::<u32>(),
        0u8..5,
        0u8..6,
        any::<bool>(),
        any::<bool>(),
        0i32..3,
    );
    let max_parallel = prop_oneof![Just(None), (1i32..5).prop_map(Some)];
    (
        proptest::collection::vec(one, 1..=20),
        max_parallel,
        any::<bool>(),
    )
        .prop_map(move |(v, max_parallel, fail_fast)| {
            let steps = v
                .into_iter()
                .enumerate()
                .map(|(i, (deps, m1, m2, when, on, go_on, limit, retries))| {
                    let name = format!("s{i}");
                    // Each earlier step with a chance of 1 in 4.
                    let earlier: Vec<String> = (0..i)
                        .filter(|j| (m1 & m2) >> j & 1 == 1)
                        .map(|j| format!("s{j}"))
                        .collect();
                    let base = match deps {
                        _ if linear => step(&name),
                        0 => step(&name),
                        1 => step_after(&name, &[] as &[&str]),
                        _ => step_after(&name, &earlier),
                    };
                    let run_when = match when {
                        _ if linear => RunWhen::AllSucceeded,
                        3 => RunWhen::AllFinished,
                        4 => RunWhen::AnyFailed,
                        _ => RunWhen::AllSucceeded,
                    };
                    let policy = if go_on {
                        FailurePolicy::Continue
                    } else {
                        FailurePolicy::Stop
                    };
                    Step {
                        sync_ref: SyncRef {
                            name: match on {
                                0 | 1 => "a".into(),
                                2 => "b".into(),
                                _ => name.clone(),
                            },
                        },
                        run_when,
                        on_failure: policy,
                        rejected_rows: limit.then_some(RejectedRowsPolicy {
                            max: Some(20),
                            max_percent: None,
                            on_exceeded: policy,
                        }),
                        retries,
                        retry_delay_seconds: 5,
                        ..base
                    }
                })
                .collect();
            Graph {
                steps,
                max_parallel: max_parallel.filter(|_| !linear),
                fail_fast,
            }
        })
}

/// `default`, or `PROPTEST_CASES` when it is set: more to search, fewer to replay a failure.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Plays a graph model: the sequence of `g`, a request, `ops`, the settling, then a retry of
/// the last run, settled too.
fn play_graph(
    g: Graph,
    policy: ConcurrencyPolicy,
    schedule: Option<&str>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut m = Model::new(g.steps, policy, schedule);
    m.w.seq.spec.max_parallel = g.max_parallel;
    m.w.seq.spec.fail_fast = g.fail_fast;
    m.apply(Op::Trigger)?;
    for op in ops {
        m.apply(op)?;
    }
    m.settle(false)?;
    // Then what failed or was skipped is retried, reusing what succeeded, and settles too.
    m.apply(Op::Retry(None))?;
    m.settle(false)
}

/// No schedule (manual requests only), or one that fires between the model's clock jumps.
fn schedule() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("@every 1m")),
        Just(Some("*/2 * * * *"))
    ]
}

fn policy() -> impl Strategy<Value = ConcurrencyPolicy> {
    prop_oneof![
        Just(ConcurrencyPolicy::Forbid),
        Just(ConcurrencyPolicy::Replace),
        Just(ConcurrencyPolicy::Queue),
    ]
}

impl Model {
    fn backfill_running(&self) -> bool {
        let st = self.w.seq.status.as_ref();
        st.and_then(|s| s.book.backfill.as_deref())
            .is_some_and(|b| b.phase == BackfillPhase::Running)
    }

    /// Lets the cluster settle: Jobs finish, time passes, every reconcile applies fully (of the
    /// sequence, and of the Syncs with `syncs`), and no schedule starts runs, while a backfill
    /// runs to its end; then nothing is left running or queued.
    fn settle(&mut self, syncs: bool) -> Result<(), TestCaseError> {
        self.w.holders.clear();
        self.w.seq.spec.scheduling.suspend = true;
        for sync in self.w.syncs.values_mut() {
            sync.spec.scheduling.suspend = true;
        }
        // A backfill goes on meanwhile (suspended or not), one run per round of a step each.
        let mut rounds = 0;
        while rounds < 60 || self.backfill_running() {
            prop_assert!(
                rounds < 2000,
                "a backfill is stuck: {:?}",
                self.status().book.backfill
            );
            rounds += 1;
            while !self.running_jobs().is_empty() {
                self.apply(Op::Finish {
                    ok: true,
                    rejected: 0,
                    index: 0,
                })?;
            }
            self.apply(Op::Clock(120))?;
            self.apply(Op::Reconcile(usize::MAX))?;
            if syncs {
                for a in [true, false] {
                    self.apply(Op::SyncReconcile { a, n: usize::MAX })?;
                }
            }
        }
        let st = self.status();
        prop_assert!(
            st.book.current_run.is_none() && st.book.queued_run.is_none(),
            "a run is stuck: {:?}",
            st.book.current_run
        );
        for name in ["a", "b"] {
            let st = self.sync_status(name);
            prop_assert!(
                st.book.current_run.is_none() && st.book.queued_run.is_none(),
                "a run of sync {name} is stuck: {:?}",
                st.book.current_run
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_promises_hold_against_partial_plans_and_outside_actors(
        steps in steps(),
        policy in policy(),
        schedule in schedule(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut m = Model::new(steps, policy, schedule);
        m.apply(Op::Trigger)?;
        for op in ops {
            m.apply(op)?;
        }
        m.settle(false)?;
    }

    /// The same, with the Syncs running on their own as well: Sync `a` on a schedule or not,
    /// both on request, claimed by the sequence's steps in between.
    #[test]
    fn the_promises_hold_for_the_syncs_own_runs_too(
        steps in steps(),
        policy in policy(),
        schedule in schedule(),
        sync_schedule in schedule(),
        ops in proptest::collection::vec(op_with_syncs(), 1..120),
    ) {
        let mut m = Model::new(steps, policy, schedule);
        m.w.syncs.get_mut("a").unwrap().spec.scheduling.schedule = sync_schedule.map(str::to_string);
        m.apply(Op::Trigger)?;
        for op in ops {
            m.apply(op)?;
        }
        m.settle(true)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(192)))]

    /// The graph model's checks on the linear graphs, which the engine before graphs ran too:
    /// up to 20 steps, each after the one before, Syncs shared, `failFast` at random.
    #[test]
    fn the_promises_hold_for_long_linear_sequences_with_shared_syncs(
        g in graph(true),
        policy in policy(),
        schedule in schedule(),
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        play_graph(g, policy, schedule, ops)?;
    }

    /// Steps as a graph (issue 34): random `dependsOn`, `runWhen`, `maxParallel`, `failFast`,
    /// Syncs shared between branches, against partial plans and the outside actors.
    #[test]
    fn the_promises_hold_for_steps_as_a_graph(
        g in graph(false),
        policy in policy(),
        schedule in schedule(),
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        play_graph(g, policy, schedule, ops)?;
    }
}

/// The next decision on the same cluster and time, after a plan applied in full: it must
/// change nothing of the status that plan wrote, and do nothing.
fn settled<S: PartialEq + std::fmt::Debug>(
    again: &Plan<S>,
    written: &S,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        &again.status,
        written,
        "a fully applied plan left a status change for the next decision"
    );
    prop_assert!(
        again.actions.is_empty(),
        "a fully applied plan left actions for the next decision: {:?}",
        again.actions
    );
    Ok(())
}
