//! A step waits, saying why, for a missing Sync or a Sync that something else holds.

use super::crm;
use crate::api::*;
use crate::engine::fixtures::sync;
use crate::engine::*;

#[test]
fn a_missing_sync_waits_with_a_message_and_recovers() {
    let mut w = crm();
    w.syncs.remove("workspaces");
    w.trigger("1");
    assert_eq!(w.condition("Ready"), "False");
    w.succeed(1, 0);
    assert!(w.reconcile().is_empty());
    let step = &w.status().book.current_run.as_deref().unwrap().steps[1];
    assert_eq!(step.phase, StepPhase::Waiting);
    assert!(
        step.message
            .as_ref()
            .unwrap()
            .contains("sync workspaces not found")
    );
    assert!(
        w.events
            .iter()
            .any(|e| e.warning && e.reason == "SyncNotFound")
    );
    w.syncs.insert("workspaces".into(), sync("workspaces"));
    assert_eq!(w.reconcile().len(), 1);
    assert_eq!(w.condition("Ready"), "True");
}

#[test]
fn a_busy_sync_waits_and_says_for_whom() {
    let mut w = crm();
    w.holders.insert(
        "accounts".into(),
        vec![Holder {
            job: "other-7-accounts-1-abcd".into(),
            by: "sequence crm-nightly run 7".into(),
        }],
    );
    assert!(w.trigger("1").is_empty());
    let step = &w.status().book.current_run.as_deref().unwrap().steps[0];
    assert_eq!(
        step.message.as_deref(),
        Some("waiting: sync accounts is running for sequence crm-nightly run 7")
    );
    w.holders.clear();
    assert_eq!(w.reconcile().len(), 1);
}
