//! Alerts in the decision: what changed between the status read and the status decided, as
//! [`Happening`]s; the notifications and alert states that follow ([`crate::alerts::evaluate`]).
//!
//! Transitions are read from the two statuses rather than collected along the way, so every
//! path that ends a step or a run (a failure, a timeout, a threshold, a cancel, a replace)
//! is seen the same way, and a decision replayed on a status that already records it finds
//! nothing new — the same guarantee Events rely on.

use super::Event;
use super::reasons;
use super::{Action, JobOutcome, JobView, Observed};
use crate::alerts::{self, Happening, RunRef, StepOutcome, Subject};
use crate::api::{AlertStep, RunStatus, StepPhase, StepStatus, SyncSequenceStatus};

/// Updates the alert states in `st` and the outbox (`st.pending_alerts`): notifications the
/// delivery worker has handled leave it, as do those of alerts no longer in the spec, and each
/// new notification joins it. The controller delivers what the written status holds, so a
/// notification is never lost between deciding and delivering.
///
/// The delivery worker's fields (`handledAlerts`, the `AlertsDelivered` condition) are its own
/// (field manager `syncseq-alerts`): they are left out of the status the reconciler applies,
/// so the two writers never fight over them.
pub(super) fn notify(
    old: &SyncSequenceStatus,
    st: &mut SyncSequenceStatus,
    obs: &Observed,
    actions: &mut Vec<Action>,
) {
    let seq = obs.sequence;
    let happenings = happenings(old, st, obs.jobs);
    let namespace = seq.metadata.namespace.clone().unwrap_or_default();
    let name = seq.metadata.name.clone().unwrap_or_default();
    let uid = seq.metadata.uid.clone().unwrap_or_default();
    let subject = Subject {
        namespace: &namespace,
        sequence: &name,
        uid: &uid,
        now: obs.now,
    };
    let (notifications, states) =
        alerts::evaluate(&seq.spec.alerts, &st.alert_states, &happenings, &subject);
    st.alert_states = states;
    let handled = std::mem::take(&mut st.handled_alerts);
    st.pending_alerts
        .retain(|p| !handled.contains(&p.key) && seq.spec.alerts.iter().any(|a| a.name == p.alert));
    for n in notifications {
        if !st.pending_alerts.iter().any(|p| p.key == n.key) {
            st.pending_alerts.push(n.pending());
        }
    }
    if let Some(excess) = st.pending_alerts.len().checked_sub(MAX_PENDING)
        && excess > 0
    {
        let dropped: Vec<String> = st
            .pending_alerts
            .drain(..excess)
            .map(|p| format!("alert {} {:?} run {}", p.alert, p.event.kind, p.event.run))
            .collect();
        actions.push(Event::warning(
            reasons::ALERTS_DROPPED,
            "Notify",
            format!(
                "more than {MAX_PENDING} notifications wait for delivery; dropped the oldest: {}",
                dropped.join(", ")
            ),
        ));
    }
    st.conditions
        .retain(|c| c.type_ != alerts::ALERTS_DELIVERED);
}

/// The most notifications a sequence's outbox keeps; a receiver down for long enough loses the
/// oldest (with a Warning Event) rather than growing the status without bound.
pub(crate) const MAX_PENDING: usize = 20;

/// Steps and runs that reached a final phase between `old` and `new`, oldest run first.
pub(super) fn happenings(
    old: &SyncSequenceStatus,
    new: &SyncSequenceStatus,
    jobs: &[JobView],
) -> Vec<Happening> {
    let mut runs: Vec<&RunStatus> = new.last_run.iter().chain(&new.book.current_run).collect();
    runs.sort_by_key(|r| r.id);
    runs.dedup_by_key(|r| r.id);
    let mut out = Vec::new();
    for run in runs {
        let before = old
            .book
            .current_run
            .iter()
            .chain(&old.last_run)
            .find(|r| r.id == run.id);
        match before {
            Some(b) if b == run || b.phase.is_finished() => continue,
            // A run the old status does not know is new only if its number is; otherwise the
            // old status lost it, and replaying its history would notify twice.
            None if run.id <= old.book.last_run_number.unwrap_or(0) => continue,
            _ => {}
        }
        let r = RunRef {
            id: run.id,
            trigger: run.trigger,
            upstream: run.upstream.clone(),
        };
        for step in &run.steps {
            let was = before
                .and_then(|b| b.steps.iter().find(|s| s.name == step.name))
                .map_or(StepPhase::Pending, |s| s.phase);
            if was.is_final() || !step.phase.is_final() {
                continue;
            }
            let outcome = match step.phase {
                StepPhase::Succeeded => StepOutcome::Succeeded,
                StepPhase::Failed => classify(run.id, step, jobs),
                _ => continue,
            };
            out.push(Happening::Step {
                run: r.clone(),
                step: info(step),
                outcome,
            });
        }
        if run.phase.is_finished() {
            out.push(Happening::Run {
                run: r,
                phase: run.phase,
                message: run.message.clone(),
                failed_step: run
                    .steps
                    .iter()
                    .find(|s| s.phase == StepPhase::Failed)
                    .map(info),
            });
        }
    }
    out
}

/// A Failed step whose last attempt's Job succeeded failed on its rejected rows; any other
/// failed step's Job failed (or timed out).
fn classify(run: i64, step: &StepStatus, jobs: &[JobView]) -> StepOutcome {
    let job = jobs
        .iter()
        .find(|j| j.run == run && j.step == step.name && j.attempt == step.attempts);
    match job.map(|j| &j.outcome) {
        Some(JobOutcome::Succeeded) => StepOutcome::RejectedRows,
        _ => StepOutcome::Failed,
    }
}

fn info(step: &StepStatus) -> AlertStep {
    AlertStep {
        name: step.name.clone(),
        sync: step.sync.clone(),
        message: step.message.clone(),
        rows_synced: step.rows_synced,
        rows_rejected: step.rows_rejected,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jiff::{SignedDuration, Timestamp};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::super::{JobOutcome, JobView, Observed, Report, decide, fixtures};
    use super::*;
    use crate::api::*;

    struct Sim {
        seq: SyncSequence,
        syncs: BTreeMap<String, Sync>,
        jobs: Vec<JobView>,
        now: Timestamp,
        requests: u32,
    }

    impl Sim {
        fn new(step: Step, when: &[AlertTrigger]) -> Self {
            let sync = fixtures::sync(&step.sync_ref.name);
            let mut seq = fixtures::sequence(vec![step]);
            seq.spec.alerts = vec![Alert {
                name: "oncall".into(),
                when: when.to_vec(),
                webhook: Webhook {
                    url_secret_ref: SecretKeyRef {
                        name: "hook".into(),
                        key: "url".into(),
                    },
                    format: WebhookFormat::Slack,
                    routing_key_secret_ref: None,
                    signing_secret_ref: None,
                },
            }];
            Sim {
                syncs: [(sync.metadata.name.clone().unwrap(), sync)].into(),
                seq,
                jobs: vec![],
                now: "2026-01-05T10:00:00Z".parse().unwrap(),
                requests: 0,
            }
        }

        /// Decides and applies the plan; returns the notifications that joined the outbox. With
        /// `deliver`, the delivery worker then handles everything pending.
        fn reconcile(&mut self) -> Vec<PendingAlert> {
            self.reconcile_delivering(true)
        }

        fn reconcile_delivering(&mut self, deliver: bool) -> Vec<PendingAlert> {
            let before: Vec<String> = self
                .seq
                .status
                .iter()
                .flat_map(|s| &s.pending_alerts)
                .map(|p| p.key.clone())
                .collect();
            let plan = decide(&Observed {
                sequence: &self.seq,
                syncs: &self.syncs,
                jobs: &self.jobs,
                holders: &BTreeMap::new(),
                upstreams: &Default::default(),
                now: self.now,
            });
            let out = plan
                .status
                .pending_alerts
                .iter()
                .filter(|p| !before.contains(&p.key))
                .cloned()
                .collect();
            self.seq.status = Some(plan.status);
            if deliver && let Some(st) = self.seq.status.as_mut() {
                st.handled_alerts = st.pending_alerts.iter().map(|p| p.key.clone()).collect();
            }
            for a in plan.actions {
                match a {
                    Action::CreateJob(job) => {
                        let name = job.metadata.name.clone().unwrap();
                        if !self.jobs.iter().any(|j| j.name == name) {
                            self.jobs.push(fixtures::created(&job, self.now));
                        }
                    }
                    Action::DeleteJob { name } => self.jobs.retain(|j| j.name != name),
                    Action::Event(_) => {}
                }
            }
            out
        }

        /// Triggers one run whose single Job ends with `outcome` and `report`.
        fn run(&mut self, outcome: JobOutcome, report: Report) -> Vec<PendingAlert> {
            self.requests += 1;
            self.seq
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(annotations::REQUESTED_AT.into(), self.requests.to_string());
            let mut out = self.reconcile();
            let job = self.jobs.iter_mut().find(|j| !j.is_finished()).unwrap();
            job.outcome = outcome;
            job.finished_at = Some(self.now);
            job.report = Some(report);
            self.now += SignedDuration::from_secs(60);
            out.extend(self.reconcile());
            // Replaying the same observation finds nothing new.
            out.extend(self.reconcile());
            out
        }

        fn fail(&mut self) -> Vec<PendingAlert> {
            self.run(
                JobOutcome::Failed {
                    timed_out: false,
                    reason: "BackoffLimitExceeded".into(),
                },
                Report {
                    exit_code: Some(1),
                    ..Report::default()
                },
            )
        }

        fn succeed(&mut self, synced: i64, rejected: i64) -> Vec<PendingAlert> {
            self.run(
                JobOutcome::Succeeded,
                Report {
                    rows_synced: Some(synced),
                    rows_rejected: Some(rejected),
                    exit_code: Some(0),
                    ..Report::default()
                },
            )
        }
    }

    fn step() -> Step {
        fixtures::step("load")
    }

    fn kinds(n: &[PendingAlert]) -> Vec<(AlertTrigger, i64)> {
        n.iter().map(|n| (n.event.kind, n.event.run)).collect()
    }

    #[test]
    fn the_engine_notifies_once_per_failing_period() {
        let mut sim = Sim::new(step(), &[AlertTrigger::RunFailed, AlertTrigger::Recovered]);
        let first = sim.fail();
        assert_eq!(kinds(&first), vec![(AlertTrigger::RunFailed, 1)]);
        assert_eq!(
            first[0].event.message,
            "step load failed: job failed: BackoffLimitExceeded (exit code 1)"
        );
        assert!(sim.fail().is_empty());
        assert!(sim.fail().is_empty());
        let st = sim.seq.status.clone().unwrap();
        assert_eq!(st.alert_states[0].state, AlertHealth::Failing);
        assert_eq!(st.alert_states[0].failing_since_run, Some(1));
        let recovered = sim.succeed(10, 0);
        assert_eq!(kinds(&recovered), vec![(AlertTrigger::Recovered, 4)]);
        assert_eq!(recovered[0].event.failing_since_run, Some(1));
        assert!(sim.succeed(10, 0).is_empty());
        let st = sim.seq.status.unwrap();
        assert_eq!(st.alert_states[0].state, AlertHealth::Healthy);
    }

    #[test]
    fn a_threshold_breach_is_a_rejected_rows_notification() {
        let mut s = step();
        s.rejected_rows = Some(RejectedRowsPolicy {
            max: None,
            max_percent: Some(1.0),
            on_exceeded: FailurePolicy::Continue,
        });
        let mut sim = Sim::new(s, &[AlertTrigger::RejectedRows, AlertTrigger::StepFailed]);
        let n = sim.succeed(950, 50);
        assert_eq!(kinds(&n), vec![(AlertTrigger::RejectedRows, 1)]);
        let step = n[0].event.step.clone().unwrap();
        assert_eq!(
            (step.rows_synced, step.rows_rejected),
            (Some(950), Some(50))
        );
        assert!(n[0].event.message.contains("50 of 1000 rows rejected"));
        assert!(sim.succeed(950, 50).is_empty(), "still over the limit");
        assert!(
            sim.succeed(1000, 0).is_empty(),
            "within the limit: clears silently"
        );
        assert_eq!(
            kinds(&sim.succeed(950, 50)),
            vec![(AlertTrigger::RejectedRows, 4)]
        );
    }

    #[test]
    fn a_timeout_is_a_step_failure() {
        let mut s = step();
        s.timeout_seconds = Some(3);
        let mut sim = Sim::new(s, &[AlertTrigger::StepFailed]);
        let n = sim.run(
            JobOutcome::Failed {
                timed_out: true,
                reason: "DeadlineExceeded".into(),
            },
            Report::default(),
        );
        assert_eq!(kinds(&n), vec![(AlertTrigger::StepFailed, 1)]);
        assert_eq!(n[0].event.message, "timed out after 3s");
    }

    #[test]
    fn the_alerts_delivered_condition_is_left_to_its_own_writer() {
        let mut sim = Sim::new(step(), &[AlertTrigger::RunFailed]);
        let mut status = SyncSequenceStatus::default();
        status.conditions.push(Condition {
            type_: crate::alerts::ALERTS_DELIVERED.into(),
            status: "False".into(),
            reason: "DeliveryFailed".into(),
            message: "x".into(),
            observed_generation: Some(1),
            last_transition_time: Time(sim.now),
        });
        sim.seq.status = Some(status);
        sim.reconcile();
        let st = sim.seq.status.unwrap();
        assert!(!st.conditions.is_empty());
        assert!(
            st.conditions
                .iter()
                .all(|c| c.type_ != crate::alerts::ALERTS_DELIVERED)
        );
        assert_eq!(st.alert_states.len(), 1);
    }

    #[test]
    fn a_notification_stays_in_the_outbox_until_the_worker_handled_it() {
        let mut sim = Sim::new(step(), &[AlertTrigger::RunFailed, AlertTrigger::Recovered]);
        sim.requests += 1;
        sim.seq
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(annotations::REQUESTED_AT.into(), "1".into());
        sim.reconcile_delivering(false);
        let job = sim.jobs.iter_mut().find(|j| !j.is_finished()).unwrap();
        job.outcome = JobOutcome::Failed {
            timed_out: false,
            reason: "BackoffLimitExceeded".into(),
        };
        job.finished_at = Some(sim.now);
        job.report = Some(Report::default());
        sim.now += SignedDuration::from_secs(60);
        let new = sim.reconcile_delivering(false);
        assert_eq!(kinds(&new), vec![(AlertTrigger::RunFailed, 1)]);
        let key = new[0].key.clone();
        assert_eq!(key.len(), 32, "a compact, header-safe key: {key}");
        // Not handled yet: it stays, once, across any number of reconciles (a restart, a new
        // leader), and nothing new joins it.
        for _ in 0..3 {
            assert!(sim.reconcile_delivering(false).is_empty());
            let st = sim.seq.status.as_ref().unwrap();
            assert_eq!(st.pending_alerts.len(), 1);
            assert!(
                st.handled_alerts.is_empty(),
                "never applied by the reconciler"
            );
        }
        // The worker handled it: the next decision removes it.
        let st = sim.seq.status.as_mut().unwrap();
        st.handled_alerts = vec![key];
        sim.reconcile_delivering(false);
        let st = sim.seq.status.as_ref().unwrap();
        assert!(st.pending_alerts.is_empty() && st.handled_alerts.is_empty());
    }

    #[test]
    fn the_outbox_forgets_removed_alerts_and_keeps_at_most_its_limit() {
        let mut sim = Sim::new(step(), &[AlertTrigger::RunFailed, AlertTrigger::Recovered]);
        let pending = |i: i64| PendingAlert {
            key: format!("k{i}"),
            alert: "oncall".into(),
            event: AlertEvent {
                kind: AlertTrigger::RunFailed,
                run: i,
                trigger: TriggerKind::Manual,
                upstream: None,
                phase: "Failed".into(),
                step: None,
                message: "x".into(),
                failing_since_run: None,
                time: Time(sim.now),
            },
        };
        sim.seq.status = Some(SyncSequenceStatus {
            pending_alerts: (1..=25).map(pending).collect(),
            ..Default::default()
        });
        let plan = decide(&Observed {
            sequence: &sim.seq,
            syncs: &sim.syncs,
            jobs: &sim.jobs,
            holders: &BTreeMap::new(),
            upstreams: &Default::default(),
            now: sim.now,
        });
        let runs: Vec<i64> = plan
            .status
            .pending_alerts
            .iter()
            .map(|p| p.event.run)
            .collect();
        assert_eq!(runs, (6..=25).collect::<Vec<_>>(), "the oldest go first");
        assert!(plan.actions.iter().any(
            |a| matches!(a, Action::Event(e) if e.reason == "AlertsDropped" && e.note.contains("run 5"))
        ));
        assert!(
            plan.wake_at.is_some(),
            "pending notifications are looked at again"
        );
        // The alert is removed from the spec: its notifications go.
        sim.seq.status = Some(plan.status);
        sim.seq.spec.alerts.clear();
        sim.reconcile_delivering(false);
        assert!(sim.seq.status.unwrap().pending_alerts.is_empty());
    }
}
