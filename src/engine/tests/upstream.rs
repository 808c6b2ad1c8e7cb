//! Runs after upstreams (`spec.after`): started once per upstream run, through the
//! concurrency policy; a missing upstream or a cycle on the conditions.

use std::collections::BTreeMap;

use jiff::SignedDuration;

use super::crm;
use crate::api::*;
use crate::engine::fixtures::{World, t0};
use crate::engine::*;

/// `warehouse`, upstream of the CRM sequence: its finished runs as `(id, phase)`, oldest
/// first, each finished a minute after the one before.
fn warehouse(uid: &str, runs: &[(i64, RunPhase)]) -> Upstreams {
    let up = UpstreamRef {
        kind: UpstreamKind::SyncSequence,
        name: "warehouse".into(),
    };
    let finished = runs
        .iter()
        .rev()
        .map(|(id, phase)| FinishedRun {
            id: id.to_string(),
            phase: *phase,
            completion: Some(t0() + SignedDuration::from_mins(*id)),
        })
        .collect();
    Upstreams {
        views: BTreeMap::from([(
            up,
            UpstreamView {
                uid: Some(uid.into()),
                finished,
            },
        )]),
        cycle: None,
    }
}

fn after_warehouse(w: &mut World) {
    w.seq.spec.scheduling.after = Some(AfterSpec {
        upstreams: vec![UpstreamRef {
            kind: UpstreamKind::SyncSequence,
            name: "warehouse".into(),
        }],
        when: UpstreamOutcome::Succeeded,
        require: UpstreamRequire::Any,
    });
}

#[test]
fn an_upstream_run_starts_one_run_recorded_with_the_upstream_and_its_run() {
    let mut w = crm();
    after_warehouse(&mut w);
    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded)]);
    assert!(
        w.reconcile().is_empty(),
        "what it finished before starts nothing"
    );
    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded), (2, RunPhase::Succeeded)]);
    let created = w.reconcile();
    assert_eq!(created.len(), 1);
    assert!(created[0].starts_with("crm-1-accounts-1-"));
    let run = w.status().book.current_run.clone().unwrap();
    assert_eq!(run.trigger, TriggerKind::Upstream);
    assert_eq!(
        run.upstream,
        Some(UpstreamRun {
            kind: UpstreamKind::SyncSequence,
            name: "warehouse".into(),
            run: "2".into()
        })
    );
    assert!(
        w.events.iter().any(|e| e.reason == "RunStarted"
            && e.note == "run 1 started by upstream sequence warehouse run 2"),
        "{:?}",
        w.events
    );
    // Reconciled again and again on the same upstream status: no second run.
    assert!(w.reconcile().is_empty());
    for _ in 0..3 {
        w.succeed(1, 0);
        w.reconcile();
    }
    assert_eq!(w.last_run().upstream, run.upstream, "kept in the history");
    assert!(w.reconcile().is_empty());
    assert_eq!(w.status().book.last_run_number, Some(1));
}

#[test]
fn an_upstream_run_goes_through_the_concurrency_policy() {
    let mut w = crm();
    after_warehouse(&mut w);
    w.upstreams = warehouse("u", &[]);
    w.reconcile();
    w.trigger("1");
    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded)]);
    assert!(w.reconcile().is_empty());
    assert_eq!(w.status().book.skipped_triggers, Some(1));
    assert!(w.events.iter().any(|e| {
        e.reason == "TriggerSkipped"
            && e.note
                .starts_with("upstream sequence warehouse run 1 trigger skipped")
    }));

    // Queued, it starts after the run in progress, still saying which upstream run it is for.
    let mut w = crm();
    after_warehouse(&mut w);
    w.seq.spec.concurrency_policy = ConcurrencyPolicy::Queue;
    w.upstreams = warehouse("u", &[]);
    w.reconcile();
    w.trigger("1");
    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded)]);
    w.reconcile();
    for _ in 0..3 {
        w.succeed(1, 0);
        w.reconcile();
    }
    let run = w.status().book.current_run.clone().unwrap();
    assert_eq!((run.id, run.trigger), (2, TriggerKind::Upstream));
    assert_eq!(run.upstream.map(|u| u.run), Some("1".into()));
}

#[test]
fn a_missing_upstream_or_a_cycle_is_reported_on_the_conditions() {
    let mut w = crm();
    after_warehouse(&mut w);
    w.reconcile();
    let ready = w
        .status()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "UpstreamNotFound")
    );
    assert!(ready.message.contains("SyncSequence/warehouse"));

    w.upstreams = warehouse("u", &[(1, RunPhase::Succeeded)]);
    w.upstreams.cycle = Some("SyncSequence/crm → SyncSequence/warehouse → SyncSequence/crm".into());
    w.reconcile();
    assert_eq!(w.condition("Stalled"), "True");
    assert!(
        w.events
            .iter()
            .any(|e| e.warning && e.reason == "UpstreamCycle")
    );
    w.upstreams.cycle = None;
    w.reconcile();
    assert_eq!(w.condition("Stalled"), "False");
    assert_eq!(w.condition("Ready"), "True");
}
