//! Properties of every run, and of any annotation or schedule text.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use proptest::prelude::*;

use super::crm;
use crate::api::*;
use crate::engine::fixtures::{World, step};
use crate::engine::*;

#[derive(Debug, Clone)]
enum Outcome {
    Succeed { synced: i64, rejected: i64 },
    Fail,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (0i64..2000, 0i64..200)
            .prop_map(|(synced, rejected)| Outcome::Succeed { synced, rejected }),
        Just(Outcome::Fail),
    ]
}

fn policy() -> impl Strategy<Value = FailurePolicy> {
    prop_oneof![Just(FailurePolicy::Stop), Just(FailurePolicy::Continue)]
}

fn arb_step(i: usize) -> impl Strategy<Value = Step> {
    (
        policy(),
        proptest::option::of((0i64..150, policy())),
        0i32..3,
    )
        .prop_map(move |(on_failure, rows, retries)| Step {
            on_failure,
            rejected_rows: rows.map(|(max, on_exceeded)| RejectedRowsPolicy {
                max: Some(max),
                max_percent: None,
                on_exceeded,
            }),
            retries,
            retry_delay_seconds: 1,
            ..step(&format!("s{i}"))
        })
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    (1usize..6).prop_flat_map(|n| (0..n).map(arb_step).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Drives random runs to the end and checks the run invariants at every step.
    #[test]
    fn runs_respect_order_and_end_in_exactly_one_final_phase(steps in arb_steps(), outcomes in proptest::collection::vec(outcome(), 40), replays in proptest::collection::vec(any::<bool>(), 40)) {
        let n = steps.len();
        let mut w = World::sequence(steps.clone());
        w.trigger("go");
        let mut outcomes = outcomes.into_iter();
        let mut replays = replays.into_iter();
        for _ in 0..60 {
            // Never two steps of one run active at once.
            prop_assert!(w.jobs.iter().filter(|j| j.view.outcome == JobOutcome::Active).count() <= 1);
            let Some(run) = w.status().book.current_run.clone() else { break };
            // A step only starts after every earlier step is final.
            for (i, s) in run.steps.iter().enumerate() {
                if s.attempts > 0 {
                    prop_assert!(run.steps[..i].iter().all(|p| p.phase.is_final()), "step {i} started early: {run:?}");
                }
            }
            if w.active_job().is_some() {
                match outcomes.next().unwrap_or(Outcome::Succeed { synced: 1, rejected: 0 }) {
                    Outcome::Succeed { synced, rejected } => w.succeed(synced, rejected),
                    Outcome::Fail => w.fail("boom"),
                }
            } else {
                w.now += SignedDuration::from_secs(10);
            }
            w.reconcile();
            // Replaying the same observation creates nothing new.
            if replays.next().unwrap_or(false) {
                let before = w.created.len();
                w.reconcile();
                prop_assert_eq!(before, w.created.len());
            }
        }
        let st = w.status();
        prop_assert!(st.book.current_run.is_none(), "the run finished");
        let run = &st.book.runs[0];
        prop_assert!(run.phase.is_finished());
        // Every step of the finished run is in exactly one final phase, consistent with the run.
        let last = st.last_run.as_deref().unwrap();
        prop_assert_eq!(last.steps.len(), n);
        prop_assert!(last.steps.iter().all(|s| s.phase.is_final()), "{:?}", last.steps);
        let failed = last.steps.iter().filter(|s| s.phase == StepPhase::Failed).count();
        let skipped = last.steps.iter().filter(|s| s.phase == StepPhase::Skipped).count();
        match run.phase {
            RunPhase::Succeeded => prop_assert_eq!(failed + skipped, 0),
            RunPhase::SucceededWithErrors => prop_assert!(failed > 0 && skipped == 0),
            RunPhase::Failed => prop_assert!(failed > 0),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        // Skipped steps only ever follow the failed step that stopped the run.
        if let Some(first_skipped) = last.steps.iter().position(|s| s.phase == StepPhase::Skipped) {
            prop_assert_eq!(last.steps[first_skipped - 1].phase, StepPhase::Failed);
            prop_assert!(last.steps[first_skipped..].iter().all(|s| s.phase == StepPhase::Skipped));
        }
        // Each step of a finished run is final exactly once: check via the Jobs created.
        let mut per_step: BTreeMap<String, i32> = BTreeMap::new();
        for name in &w.created {
            let job = name.clone();
            let step = steps.iter().find(|s| job.starts_with(&format!("crm-1-{}-", s.name))).unwrap();
            *per_step.entry(step.name.clone()).or_default() += 1;
        }
        for s in &steps {
            prop_assert!(per_step.get(&s.name).copied().unwrap_or(0) <= s.retries + 1);
        }
        prop_assert!(per_step.len() <= n);
        if run.phase == RunPhase::Succeeded {
            prop_assert_eq!(per_step.len(), n);
        }
    }
}

proptest! {
    /// Whatever a user or a tool writes into the annotations and the schedule fields (the API
    /// server checks only their shape), deciding never panics, and a request is echoed as given.
    #[test]
    fn any_annotation_and_schedule_text_is_decided_without_a_panic(
        request in "\\PC{0,300}",
        cancel in "\\PC{0,40}",
        schedule in "@every [0-9]{1,25}(ns|s|m|h)|[0-9*/,?-]{1,6} [0-9*/,-]{1,6} [0-9*/,?LW#-]{1,6} [0-9A-Za-z*/,-]{1,6} [0-9A-Za-z*/,?L#-]{1,6}|\\PC{0,20}",
        zone in "[A-Za-z_/+-]{0,30}",
        deadline in proptest::option::of(any::<i64>().prop_map(|n| n.saturating_abs())),
        jump in 0i64..4_000_000_000,
    ) {
        let mut w = crm();
        w.seq.spec.scheduling = ScheduleSpec {
            schedule: Some(schedule),
            time_zone: Some(zone),
            starting_deadline_seconds: deadline,
            suspend: false,
            after: None,
            ..ScheduleSpec::default()
        };
        w.annotate(annotations::REQUESTED_AT, &request);
        w.reconcile();
        prop_assert_eq!(w.status().book.last_handled_request_at.as_deref(), Some(request.as_str()));
        w.annotate(annotations::CANCEL_REQUESTED_AT, &cancel);
        w.now += SignedDuration::from_secs(jump);
        w.reconcile();
        w.reconcile();
    }
}
