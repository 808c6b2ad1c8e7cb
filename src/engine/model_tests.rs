//! The model test: the engine against a cluster that does not do as it is told.
//!
//! Each reconcile applies the plan's status and then only a random prefix of its actions (a
//! controller killed mid-plan, a lost request), and between reconciles outside actors act at
//! random: a Job deleted by hand or by a TTL (its Pod running out a grace period), a Pod result
//! lost, a step renamed or removed mid-run, status rolled back behind newer Jobs, the clock
//! jumping, another sequence holding a Sync, requests and cancels, a schedule firing, and an
//! upstream sequence finishing runs (`spec.after`). After every step the promises are checked.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::fixtures::{created, sequence, step, sync, t0};
use super::*;
use crate::api::*;

/// A Job in the model and its Pod.
#[derive(Debug, Clone)]
struct SimJob {
    view: JobView,
    /// Whether the Job object exists (a background delete removes it at once).
    exists: bool,
    pod: PodState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodState {
    Running,
    /// Deleted, running out its grace period for this many more steps.
    Terminating(u8),
    Done,
}

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

struct Model {
    seq: SyncSequence,
    syncs: BTreeMap<String, Sync>,
    jobs: Vec<SimJob>,
    foreign: bool,
    now: Timestamp,
    history: Vec<SyncSequenceStatus>,
    requests: u32,
    /// Names of Jobs the engine has seen and whose UID status recorded; None once a rollback
    /// lost that knowledge (then a re-create is the crash-recovery path, not a double run).
    seen: BTreeSet<String>,
    /// Jobs of finished runs that were still active after a fully applied reconcile.
    survivors: BTreeMap<String, u8>,
    /// UIDs handed out so far: a Job recreated under a name is another Job.
    uids: u32,
    /// The upstream sequence `warehouse` the model's sequence runs after.
    upstreams: Upstreams,
}

fn warehouse() -> UpstreamRef {
    UpstreamRef {
        kind: UpstreamKind::SyncSequence,
        name: "warehouse".into(),
    }
}

impl Model {
    fn new(steps: Vec<Step>, policy: ConcurrencyPolicy, schedule: Option<&str>) -> Self {
        let mut seq = sequence(steps.clone());
        seq.spec.concurrency_policy = policy;
        seq.spec.scheduling.schedule = schedule.map(str::to_string);
        seq.spec.scheduling.after = Some(AfterSpec {
            upstreams: vec![warehouse()],
            when: UpstreamOutcome::Succeeded,
            require: UpstreamRequire::Any,
        });
        let upstreams = Upstreams {
            views: BTreeMap::from([(warehouse(), UpstreamView::default())]),
            cycle: None,
        };
        Model {
            syncs: ["a", "b"]
                .into_iter()
                .map(|n| (n.to_string(), sync(n)))
                .collect(),
            seq,
            jobs: vec![],
            foreign: false,
            now: t0(),
            history: vec![],
            requests: 0,
            seen: BTreeSet::new(),
            survivors: BTreeMap::new(),
            uids: 0,
            upstreams,
        }
    }

    fn status(&self) -> SyncSequenceStatus {
        self.seq.status.clone().unwrap_or_default()
    }

    /// What holds each Sync: unfinished or deleting Jobs, Pods not terminated, the foreign one.
    fn holders(&self) -> BTreeMap<String, Vec<Holder>> {
        let mut out: BTreeMap<String, Vec<Holder>> = BTreeMap::new();
        for j in self.jobs.iter().filter(|j| {
            j.pod != PodState::Done
                || (j.exists && (j.view.outcome == JobOutcome::Active || j.view.deleting))
        }) {
            out.entry(j.view.sync.clone()).or_default().push(Holder {
                job: j.view.name.clone(),
                by: format!("sequence crm run {}", j.view.run),
            });
        }
        if self.foreign {
            out.entry("a".into()).or_default().push(Holder {
                job: "other-1-a-1-x".into(),
                by: "sequence other run 1".into(),
            });
        }
        out
    }

    /// Non-terminated Pods per Sync, the foreign holder included.
    fn alive_per_sync(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for j in self.jobs.iter().filter(|j| j.pod != PodState::Done) {
            *out.entry(j.view.sync.clone()).or_default() += 1;
        }
        if self.foreign {
            *out.entry("a".to_string()).or_default() += 1;
        }
        out
    }

    fn existing(&self) -> Vec<JobView> {
        self.jobs
            .iter()
            .filter(|j| j.exists)
            .map(|j| j.view.clone())
            .collect()
    }

    /// The engine's decision on the model as it stands.
    fn decide(&self, jobs: &[JobView]) -> Plan {
        decide(&Observed {
            sequence: &self.seq,
            syncs: &self.syncs,
            jobs,
            holders: &self.holders(),
            upstreams: &self.upstreams,
            now: self.now,
        })
    }

    fn reconcile(&mut self, applied: usize) -> Result<(), TestCaseError> {
        let jobs = self.existing();
        let plan = self.decide(&jobs);
        let old = self.status();
        self.check_plan(&old, &plan, &jobs)?;
        // As the controller executes a plan (controller/execute.rs): a plan that starts a new
        // run writes status first; then the Jobs; then status with the UIDs the creates
        // returned. A controller killed part-way (`applied` < all) never writes that last one.
        let new_run = plan.status.book.last_run_number != old.book.last_run_number;
        self.history.push(old);
        if new_run {
            self.seq.status = Some(plan.status.clone());
        }
        let mut settled = plan.status.clone();
        let full = applied >= plan.actions.len();
        // Whether the plan's deletes marked a Job as being deleted: that watch event wakes the
        // next reconcile. (The first event of a Job the controller created wakes nobody.)
        let mut marked_deleting = false;
        // Events go out after the status write; every Job call comes before it.
        let jobs_done = plan
            .actions
            .iter()
            .rposition(|a| !matches!(a, Action::Event(_)))
            .is_none_or(|last| applied > last);
        for action in plan.actions.iter().take(applied) {
            match action {
                Action::CreateJob(job) => {
                    let name = job.metadata.name.clone().unwrap();
                    if let Some(existing) =
                        self.jobs.iter().find(|j| j.view.name == name && j.exists)
                    {
                        // AlreadyExists: ours, adopted with its UID.
                        record_created(
                            settled.book.current_run.as_mut(),
                            &name,
                            &existing.view.uid,
                        );
                        continue;
                    }
                    self.uids += 1;
                    let mut view = created(job, self.now);
                    view.uid = format!("uid-{}", self.uids);
                    record_created(settled.book.current_run.as_mut(), &name, &view.uid);
                    self.jobs.push(SimJob {
                        view,
                        exists: true,
                        pod: PodState::Running,
                    });
                }
                Action::DeleteJob { name } => {
                    // Foreground: the Job stays, marked, while its Pod terminates.
                    for j in self
                        .jobs
                        .iter_mut()
                        .filter(|j| &j.view.name == name && j.exists)
                    {
                        marked_deleting |= !j.view.deleting;
                        j.view.deleting = true;
                        if j.pod == PodState::Running {
                            j.pod = PodState::Terminating(1);
                        }
                    }
                }
                Action::Event(_) => {}
            }
        }
        if jobs_done {
            self.seq.status = Some(settled);
        }
        let Some(written) = self.seq.status.clone() else {
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
        if full && !behind {
            self.track_survivors(&written)?;
        }
        if full && !marked_deleting {
            self.check_settled(&plan)?;
        }
        Ok(())
    }

    /// A plan applied in full that marked no Job as being deleted (whose watch event would
    /// wake the next reconcile) leaves nothing for the next decision on the same cluster and time,
    /// unless it asked to be woken by then: the controller does not reconcile on the watch
    /// event of its own status write (`controller/freshness.rs`), so anything left over would
    /// wait for the next outside event.
    fn check_settled(&self, first: &Plan) -> Result<(), TestCaseError> {
        if first.wake_at.is_some_and(|at| at <= self.now) {
            return Ok(());
        }
        let again = self.decide(&self.existing());
        prop_assert_eq!(
            Some(&again.status),
            self.seq.status.as_ref(),
            "a fully applied plan left a status change for the next decision"
        );
        prop_assert!(
            again.actions.is_empty(),
            "a fully applied plan left actions for the next decision: {:?}",
            again.actions
        );
        Ok(())
    }

    /// The promises, on one decision.
    fn check_plan(
        &self,
        old: &SyncSequenceStatus,
        plan: &Plan,
        jobs: &[JobView],
    ) -> Result<(), TestCaseError> {
        let st = &plan.status;
        // Exactly once: a Job that status saw is never created again after it vanished.
        for action in &plan.actions {
            if let Action::CreateJob(job) = action {
                let name = job.metadata.name.clone().unwrap();
                prop_assert!(
                    !self.seen.contains(&name) || jobs.iter().any(|j| j.name == name),
                    "seen Job {name} created again"
                );
                // Never twice at once: nothing else holds the Sync when its Job is created.
                let sync = &job.metadata.labels.as_ref().unwrap()[labels::SYNC];
                let others = self
                    .holders()
                    .get(sync)
                    .map(|h| h.iter().filter(|h| h.job != name).count())
                    .unwrap_or(0);
                prop_assert_eq!(others, 0, "{} created while {} is held", name, sync);
            }
        }
        if let Some(run) = &st.book.current_run {
            // At most one active step per run.
            let active = run
                .steps
                .iter()
                .filter(|s| s.phase == StepPhase::Running)
                .count();
            prop_assert!(active <= 1, "{run:?}");
            for s in &run.steps {
                // Attempts never exceed retries + 1 (the step's retries as the spec has it).
                if let Some(spec) = self.seq.spec.steps.iter().find(|p| p.name == s.name) {
                    prop_assert!(s.attempts <= spec.retries + 1, "{s:?}");
                }
                // Nothing waits in silence: a condition says why, and a requeue is bounded.
                if s.phase == StepPhase::Waiting {
                    let why = s.message.clone().unwrap_or_default();
                    prop_assert!(!why.is_empty());
                    let running = st.conditions.iter().find(|c| c.type_ == "Running");
                    prop_assert!(
                        running.is_some_and(|c| c.message.contains(&why)),
                        "{why} not in {running:?}"
                    );
                    prop_assert!(plan.wake_at.is_some(), "waiting without a requeue");
                }
            }
        }
        // Every trigger ends as exactly one of started, queued or skipped: a manual request
        // is handled when status records its value, a scheduled time when status records it.
        let outcomes = |source: &str| {
            plan.actions
                .iter()
                .filter(|a| {
                    matches!(a, Action::Event(e)
                        if matches!(e.reason, "RunStarted" | "RunQueued" | "TriggerSkipped")
                            && !e.note.contains("from the queue")
                            && e.note.contains(source))
                })
                .count()
        };
        let handled = |changed: bool| usize::from(changed);
        prop_assert_eq!(
            outcomes("manual request"),
            handled(st.book.last_handled_request_at != old.book.last_handled_request_at),
            "manual: {:?}",
            plan.actions
        );
        prop_assert_eq!(
            outcomes("schedule"),
            handled(st.schedule.last_schedule_time != old.schedule.last_schedule_time),
            "schedule: {:?}",
            plan.actions
        );
        // An upstream run is handled when status records it (the first sight records a
        // baseline, which starts nothing).
        let upstream_handled = st.book.upstreams.iter().any(|e| {
            old.book
                .upstreams
                .iter()
                .any(|o| o.name == e.name && o.uid == e.uid && o.handled_run != e.handled_run)
        });
        prop_assert_eq!(
            outcomes("upstream "),
            handled(upstream_handled),
            "upstream: {:?}",
            plan.actions
        );
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
            .jobs
            .iter()
            .filter(|j| {
                j.exists
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
                self.now += SignedDuration::from_secs(1);
                let now = self.now;
                if let Some(j) = self.jobs.iter_mut().find(|j| {
                    j.exists && j.view.outcome == JobOutcome::Active && j.pod == PodState::Running
                }) {
                    j.pod = PodState::Done;
                    j.view.finished_at = Some(now);
                    j.view.outcome = if ok {
                        JobOutcome::Succeeded
                    } else {
                        JobOutcome::Failed {
                            timed_out: false,
                            reason: "BackoffLimitExceeded".into(),
                        }
                    };
                    j.view.report = Some(Report {
                        rows_synced: Some(100),
                        rows_rejected: Some(rejected),
                        message: None,
                        exit_code: Some(if ok { 0 } else { 1 }),
                    });
                }
            }
            Op::Delete { index, grace } => {
                let live: Vec<usize> = (0..self.jobs.len())
                    .filter(|&i| self.jobs[i].exists)
                    .collect();
                if !live.is_empty() {
                    // Background deletion (kubectl, a TTL): the Job goes at once, its Pod runs on.
                    let j = &mut self.jobs[live[index % live.len()]];
                    j.exists = false;
                    if j.pod == PodState::Running {
                        j.pod = PodState::Terminating(grace);
                    }
                }
            }
            Op::LoseResult => {
                if let Some(j) = self.jobs.iter_mut().find(|j| j.view.is_finished()) {
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
                    && self.seq.spec.steps.len() > 1
                {
                    if rename {
                        if let Some(s) = self.seq.spec.steps.iter_mut().find(|s| s.name == name) {
                            s.name = format!("{name}x");
                        }
                    } else {
                        self.seq.spec.steps.retain(|s| s.name != name);
                    }
                }
            }
            Op::Rollback(back) => {
                if self.history.len() >= back {
                    let old = self.history[self.history.len() - back].clone();
                    self.seq.status = Some(old);
                    // What status had recorded of these Jobs is gone with it.
                    self.seen.clear();
                }
            }
            Op::Clock(secs) => self.now += SignedDuration::from_secs(i64::from(secs)),
            Op::Foreign(hold) => {
                // The foreign sequence only takes `a` when nothing of ours holds it.
                let ours = self.alive_per_sync().get("a").copied().unwrap_or(0)
                    - usize::from(self.foreign);
                self.foreign = hold && ours == 0;
            }
            Op::Trigger => {
                self.requests += 1;
                let value = format!("r{}", self.requests);
                self.annotate(annotations::REQUESTED_AT, &value);
            }
            Op::Cancel => {
                self.requests += 1;
                let value = format!("c{}", self.requests);
                self.annotate(annotations::CANCEL_REQUESTED_AT, &value);
            }
            Op::Upstream(ok) => {
                self.now += SignedDuration::from_secs(1);
                let view = self
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
                        completion: Some(self.now),
                    },
                );
            }
        }
        // Terminating Pods run down their grace, one step at a time; a Job being deleted goes
        // once its Pod is done.
        for j in self.jobs.iter_mut() {
            if let PodState::Terminating(n) = j.pod {
                j.pod = if n == 0 {
                    PodState::Done
                } else {
                    PodState::Terminating(n - 1)
                };
            }
            if j.view.deleting && j.pod == PodState::Done {
                j.exists = false;
            }
        }
        self.jobs.retain(|j| j.exists || j.pod != PodState::Done);
        // Never twice at once, counted in Pods.
        for (sync, n) in self.alive_per_sync() {
            prop_assert!(n <= 1, "{n} Pods of sync {sync} alive at once");
        }
        Ok(())
    }

    fn annotate(&mut self, key: &str, value: &str) {
        self.seq
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }
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
        // Let the cluster settle: Jobs finish, time passes, every reconcile applies fully, and
        // the schedule stops starting runs.
        m.foreign = false;
        m.seq.spec.scheduling.suspend = true;
        for _ in 0..60 {
            m.apply(Op::Finish { ok: true, rejected: 0 })?;
            m.apply(Op::Clock(120))?;
            m.apply(Op::Reconcile(usize::MAX))?;
        }
        let st = m.status();
        prop_assert!(
            st.book.current_run.is_none() && st.book.queued_run.is_none(),
            "a run is stuck: {:?}", st.book.current_run
        );
    }
}
