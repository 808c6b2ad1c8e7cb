//! Alerts in the decision: one notification per failing period, the outbox the delivery
//! worker empties, the fields left to that worker.

use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::*;
use crate::engine::fixtures::{self, World};
use crate::engine::{Action, JobOutcome, Report};

/// Sequence `crm` of one step, with alert `oncall` on `when`.
fn world(step: Step, when: &[AlertTrigger]) -> World {
    let mut w = World::sequence(vec![step]);
    w.seq.spec.alerts = vec![Alert {
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
    w
}

/// Decides and applies the plan; returns the notifications that joined the outbox. The
/// delivery worker then handles everything pending.
fn reconcile(w: &mut World) -> Vec<PendingAlert> {
    reconcile_delivering(w, true)
}

/// [`reconcile`], the delivery worker handling what is pending only with `deliver`.
fn reconcile_delivering(w: &mut World, deliver: bool) -> Vec<PendingAlert> {
    let pending = |w: &World| -> Vec<PendingAlert> {
        w.seq
            .status
            .iter()
            .flat_map(|s| &s.pending_alerts)
            .cloned()
            .collect()
    };
    let before: Vec<String> = pending(w).into_iter().map(|p| p.key).collect();
    w.deliver_alerts = deliver;
    w.reconcile();
    pending(w)
        .into_iter()
        .filter(|p| !before.contains(&p.key))
        .collect()
}

/// Requests one run whose single Job ends with `outcome` and `report`.
fn run(w: &mut World, outcome: JobOutcome, report: Report) -> Vec<PendingAlert> {
    let request = w
        .seq
        .status
        .as_ref()
        .and_then(|s| s.book.last_handled_request_at.as_deref())
        .map_or(0, |r| r.parse::<u32>().unwrap());
    w.annotate(annotations::REQUESTED_AT, &(request + 1).to_string());
    let mut out = reconcile(w);
    w.end_job(|_| true, outcome, report).unwrap();
    w.now += SignedDuration::from_secs(60);
    out.extend(reconcile(w));
    // Replaying the same observation finds nothing new.
    out.extend(reconcile(w));
    out
}

fn fail(w: &mut World) -> Vec<PendingAlert> {
    run(
        w,
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

fn succeed(w: &mut World, synced: i64, rejected: i64) -> Vec<PendingAlert> {
    run(
        w,
        JobOutcome::Succeeded,
        Report {
            rows_synced: Some(synced),
            rows_rejected: Some(rejected),
            exit_code: Some(0),
            ..Report::default()
        },
    )
}

fn step() -> Step {
    fixtures::step("load")
}

fn kinds(n: &[PendingAlert]) -> Vec<(AlertTrigger, i64)> {
    n.iter().map(|n| (n.event.kind, n.event.run)).collect()
}

#[test]
fn the_engine_notifies_once_per_failing_period() {
    let mut w = world(step(), &[AlertTrigger::RunFailed, AlertTrigger::Recovered]);
    let first = fail(&mut w);
    assert_eq!(kinds(&first), vec![(AlertTrigger::RunFailed, 1)]);
    assert_eq!(
        first[0].event.message,
        "step load failed: job failed: BackoffLimitExceeded (exit code 1)"
    );
    assert!(fail(&mut w).is_empty());
    assert!(fail(&mut w).is_empty());
    let st = w.seq.status.clone().unwrap();
    assert_eq!(st.alert_states[0].state, AlertHealth::Failing);
    assert_eq!(st.alert_states[0].failing_since_run, Some(1));
    let recovered = succeed(&mut w, 10, 0);
    assert_eq!(kinds(&recovered), vec![(AlertTrigger::Recovered, 4)]);
    assert_eq!(recovered[0].event.failing_since_run, Some(1));
    assert!(succeed(&mut w, 10, 0).is_empty());
    let st = w.seq.status.unwrap();
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
    let mut w = world(s, &[AlertTrigger::RejectedRows, AlertTrigger::StepFailed]);
    let n = succeed(&mut w, 950, 50);
    assert_eq!(kinds(&n), vec![(AlertTrigger::RejectedRows, 1)]);
    let step = n[0].event.step.clone().unwrap();
    assert_eq!(
        (step.rows_synced, step.rows_rejected),
        (Some(950), Some(50))
    );
    assert!(n[0].event.message.contains("50 of 1000 rows rejected"));
    assert!(succeed(&mut w, 950, 50).is_empty(), "still over the limit");
    assert!(
        succeed(&mut w, 1000, 0).is_empty(),
        "within the limit: clears silently"
    );
    assert_eq!(
        kinds(&succeed(&mut w, 950, 50)),
        vec![(AlertTrigger::RejectedRows, 4)]
    );
}

#[test]
fn a_timeout_is_a_step_failure() {
    let mut s = step();
    s.timeout_seconds = Some(3);
    let mut w = world(s, &[AlertTrigger::StepFailed]);
    let n = run(
        &mut w,
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
    let mut w = world(step(), &[AlertTrigger::RunFailed]);
    let mut status = SyncSequenceStatus::default();
    status.conditions.push(Condition {
        type_: crate::alerts::ALERTS_DELIVERED.into(),
        status: "False".into(),
        reason: "DeliveryFailed".into(),
        message: "x".into(),
        observed_generation: Some(1),
        last_transition_time: Time(w.now),
    });
    w.seq.status = Some(status);
    reconcile(&mut w);
    let st = w.seq.status.unwrap();
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
    let mut w = world(step(), &[AlertTrigger::RunFailed, AlertTrigger::Recovered]);
    w.annotate(annotations::REQUESTED_AT, "1");
    reconcile_delivering(&mut w, false);
    w.end_job(
        |_| true,
        JobOutcome::Failed {
            timed_out: false,
            reason: "BackoffLimitExceeded".into(),
        },
        Report::default(),
    )
    .unwrap();
    w.now += SignedDuration::from_secs(60);
    let new = reconcile_delivering(&mut w, false);
    assert_eq!(kinds(&new), vec![(AlertTrigger::RunFailed, 1)]);
    let key = new[0].key.clone();
    assert_eq!(key.len(), 32, "a compact, header-safe key: {key}");
    // Not handled yet: it stays, once, across any number of reconciles (a restart, a new
    // leader), and nothing new joins it.
    for _ in 0..3 {
        assert!(reconcile_delivering(&mut w, false).is_empty());
        let st = w.seq.status.as_ref().unwrap();
        assert_eq!(st.pending_alerts.len(), 1);
        assert!(
            st.handled_alerts.is_empty(),
            "never applied by the reconciler"
        );
    }
    // The worker handled it: the next decision removes it.
    let st = w.seq.status.as_mut().unwrap();
    st.handled_alerts = vec![key];
    reconcile_delivering(&mut w, false);
    let st = w.seq.status.as_ref().unwrap();
    assert!(st.pending_alerts.is_empty() && st.handled_alerts.is_empty());
}

#[test]
fn the_outbox_forgets_removed_alerts_and_keeps_at_most_its_limit() {
    let mut w = world(step(), &[AlertTrigger::RunFailed, AlertTrigger::Recovered]);
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
            failed_steps: vec![],
            message: "x".into(),
            failing_since_run: None,
            time: Time(w.now),
        },
    };
    w.seq.status = Some(SyncSequenceStatus {
        pending_alerts: (1..=25).map(pending).collect(),
        ..Default::default()
    });
    let plan = w.plan();
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
    w.seq.status = Some(plan.status);
    w.seq.spec.alerts.clear();
    reconcile_delivering(&mut w, false);
    assert!(w.seq.status.unwrap().pending_alerts.is_empty());
}

#[test]
fn branches_that_fail_side_by_side_are_one_run_failed_naming_both() {
    let after = |name: &str, deps: &[&str]| Step {
        depends_on: Some(deps.iter().map(|d| d.to_string()).collect()),
        ..fixtures::step(name)
    };
    let mut w = World::sequence(vec![
        fixtures::step("accounts"),
        after("workspaces", &["accounts"]),
        after("deals", &["accounts"]),
        after("contacts", &["workspaces", "deals"]),
    ]);
    w.seq.spec.alerts = world(step(), &ALL).seq.spec.alerts;
    w.annotate(annotations::REQUESTED_AT, "1");
    let mut new = reconcile(&mut w);
    let ok = Report {
        exit_code: Some(0),
        ..Report::default()
    };
    w.end_job(|j| j.view.step == "accounts", JobOutcome::Succeeded, ok)
        .unwrap();
    new.extend(reconcile(&mut w));
    for step in ["deals", "workspaces"] {
        w.end_job(
            |j| j.view.step == step,
            JobOutcome::Failed {
                timed_out: false,
                reason: "BackoffLimitExceeded".into(),
            },
            Report {
                message: Some(format!("{step} API returned 500")),
                exit_code: Some(1),
                ..Report::default()
            },
        )
        .unwrap();
    }
    new.extend(reconcile(&mut w));
    assert_eq!(
        w.seq
            .status
            .as_ref()
            .unwrap()
            .last_run
            .as_ref()
            .unwrap()
            .phase,
        RunPhase::Failed
    );
    // Both step failures fold into the run's one notification, which names both, in step order.
    assert_eq!(kinds(&new), vec![(AlertTrigger::RunFailed, 1)]);
    let event = &new[0].event;
    assert_eq!(event.step.as_ref().unwrap().name, "workspaces");
    let failed: Vec<(&str, Option<&str>)> = event
        .failed_steps
        .iter()
        .map(|s| (s.name.as_str(), s.message.as_deref()))
        .collect();
    assert_eq!(
        failed,
        [
            (
                "workspaces",
                Some("workspaces API returned 500 (exit code 1)")
            ),
            ("deals", Some("deals API returned 500 (exit code 1)")),
        ]
    );
    let st = w.seq.status.as_ref().unwrap();
    assert_eq!(st.alert_states[0].failed_steps, ["workspaces", "deals"]);
}

const ALL: [AlertTrigger; 4] = [
    AlertTrigger::RunFailed,
    AlertTrigger::StepFailed,
    AlertTrigger::RejectedRows,
    AlertTrigger::Recovered,
];
