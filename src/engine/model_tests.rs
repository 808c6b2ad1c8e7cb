//! The model test: the engine against a cluster that does not do as it is told.
//!
//! Each reconcile applies the plan's status and then only a random prefix of its actions (a
//! controller killed mid-plan, a lost request), and between reconciles outside actors act at
//! random: a Job deleted by hand or by a TTL (its Pod running out a grace period), a Pod result
//! lost, a step renamed or removed mid-run, status rolled back behind newer Jobs, the clock
//! jumping, another sequence holding a Sync, requests and cancels, a schedule firing, and an
//! upstream sequence finishing runs (`spec.after`). The second test lets the Syncs run on
//! their own too (their schedule, requests and cancels), while the sequence claims them for its
//! steps. After every step the promises are checked, for the sequence and for each Sync.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use proptest::prelude::*;

use super::fixtures::{Apply, Object, PodState, World, step, sync};
use super::*;
use crate::api::*;

#[derive(Debug, Clone)]
enum Op {
    /// Reconcile and apply status plus the first `n` actions (all of them when `n` is large).
    Reconcile(usize),
    /// Finish the active Job: success with rows, or failure.
    Finish {
        ok: bool,
        rejected: i64,
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
    /// The upstream sequence finishes a run: succeeded (true) or failed.
    Upstream(bool),
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
        4 => (any::<bool>(), 0i64..30).prop_map(|(ok, rejected)| Op::Finish { ok, rejected }),
        1 => (any::<usize>(), 0u8..3).prop_map(|(index, grace)| Op::Delete { index, grace }),
        1 => Just(Op::LoseResult),
        1 => any::<bool>().prop_map(Op::EditSteps),
        1 => (1usize..4).prop_map(Op::Rollback),
        2 => (0u16..120).prop_map(Op::Clock),
        1 => any::<bool>().prop_map(Op::Foreign),
        2 => Just(Op::Trigger),
        1 => Just(Op::Cancel),
        2 => any::<bool>().prop_map(Op::Upstream),
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
    history: Vec<SyncSequenceStatus>,
    requests: u32,
    /// Names of Jobs the engine has seen and whose UID the sequence's status recorded; cleared
    /// once a rollback lost that knowledge (then a re-create is the crash-recovery path, not a
    /// double run).
    seen: BTreeSet<String>,
    /// The same for the Syncs' own runs, whose status is never rolled back.
    seen_by_syncs: BTreeSet<String>,
    /// Jobs of finished runs that were still active after a fully applied reconcile.
    survivors: BTreeMap<String, u8>,
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
            requests: 0,
            seen: BTreeSet::new(),
            seen_by_syncs: BTreeSet::new(),
            survivors: BTreeMap::new(),
        }
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
        self.check_plan(&old, &plan, &jobs)?;
        self.history.push(old);
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
            // The one step of a Sync's own run has no retries.
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
            // The step's retries as the spec has it.
            |name| steps.iter().find(|p| p.name == name).map(|p| p.retries),
        )?;
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
            Op::Finish { ok, rejected } => {
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
                self.w.end_job(|_| true, outcome, report);
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
                    if rename {
                        if let Some(s) = self.w.seq.spec.steps.iter_mut().find(|s| s.name == name) {
                            s.name = format!("{name}x");
                        }
                    } else {
                        self.w.seq.spec.steps.retain(|s| s.name != name);
                    }
                }
            }
            Op::Rollback(back) => {
                if self.history.len() >= back {
                    let old = self.history[self.history.len() - back].clone();
                    self.w.seq.status = Some(old);
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

/// The promises on a decision's run, for either kind; `retries` gives a step's retries.
fn check_run(d: Decided, retries: impl Fn(&str) -> Option<i32>) -> Result<(), TestCaseError> {
    let (old, st) = d.book;
    if let Some(run) = &st.current_run {
        // At most one active step per run.
        let active = run
            .steps
            .iter()
            .filter(|s| s.phase == StepPhase::Running)
            .count();
        prop_assert!(active <= 1, "{run:?}");
        for s in &run.steps {
            // Attempts never exceed retries + 1.
            if let Some(retries) = retries(&s.name) {
                prop_assert!(s.attempts <= retries + 1, "{s:?}");
            }
            // Nothing waits in silence: a condition says why, and a requeue is bounded.
            if s.phase == StepPhase::Waiting {
                let why = s.message.clone().unwrap_or_default();
                prop_assert!(!why.is_empty());
                let running = d.conditions.iter().find(|c| c.type_ == "Running");
                prop_assert!(
                    running.is_some_and(|c| c.message.contains(&why)),
                    "{why} not in {running:?}"
                );
                prop_assert!(d.wake_at.is_some(), "waiting without a requeue");
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
    /// Lets the cluster settle: Jobs finish, time passes, every reconcile applies fully (of the
    /// sequence, and of the Syncs with `syncs`), and no schedule starts runs; then nothing is
    /// left running or queued.
    fn settle(&mut self, syncs: bool) -> Result<(), TestCaseError> {
        self.w.holders.clear();
        self.w.seq.spec.scheduling.suspend = true;
        for sync in self.w.syncs.values_mut() {
            sync.spec.scheduling.suspend = true;
        }
        for _ in 0..60 {
            self.apply(Op::Finish {
                ok: true,
                rejected: 0,
            })?;
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
