//! `stopScheduleAfterFailures` on the local control plane (issue 35, acceptance 3, last part):
//! two failed scheduled runs stop the schedule, with the `ScheduleStopped` condition and a
//! Warning Event; no scheduled Job appears while it is stopped; a manual run that succeeds
//! restarts it, and the schedule fires again.

use crate::support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::runtime::watcher;
use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, SyncSequence, TriggerKind};

/// The schedule's period, in seconds.
const PERIOD: u64 = 5;

fn condition(s: &SyncSequence, type_: &str) -> Option<String> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn run_number(s: &SyncSequence) -> i64 {
    s.status
        .as_ref()
        .and_then(|st| st.book.last_run_number)
        .unwrap_or(0)
}

/// Every run number the sequence showed while it was watched for `window`. Watching a window is
/// how a test shows that something does not happen.
async fn run_numbers_seen(ns: &TestNamespace, name: &str, window: Duration) -> Vec<i64> {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(ns.api::<SyncSequence>(), cfg).boxed();
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(window, async {
        while let Some(Ok(ev)) = stream.next().await {
            if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = ev {
                let n = run_number(&s);
                if seen.last() != Some(&n) {
                    seen.push(n);
                }
            }
        }
    })
    .await;
    seen
}

async fn jobs_of(ns: &TestNamespace, sequence: &str) -> usize {
    ns.api::<Job>()
        .list(&ListParams::default().labels(&format!("syncseq.dev/sequence={sequence}")))
        .await
        .expect("list Jobs")
        .items
        .len()
}

#[tokio::test]
async fn two_failed_runs_stop_the_schedule_and_a_manual_run_that_succeeds_restarts_it() {
    install_crds().await;
    let ns = TestNamespace::new("stop-sched").await;
    ns.kubectl_apply(&sync_yaml(
        "accounts",
        "200ms",
        1,
        Some("the CRM refused the login"),
    ));
    let _controller = ControllerProcess::start(&ns.name);
    ns.kubectl_apply(&sequence_yaml(
        "flaky",
        &[("accounts", "")],
        &format!("  schedule: \"@every {PERIOD}s\"\n  stopScheduleAfterFailures: 2\n"),
    ));
    let api = ns.api::<SyncSequence>();

    let stopped = wait_for_object(
        &api,
        "flaky",
        Duration::from_secs(60),
        "ScheduleStopped=True after two failed runs",
        |s| condition(s, "ScheduleStopped").as_deref() == Some("True"),
    )
    .await;
    let st = stopped.status.as_ref().unwrap();
    assert_eq!(run_number(&stopped), 2, "{st:#?}");
    assert!(
        st.book
            .runs
            .iter()
            .all(|r| r.phase == RunPhase::Failed && r.trigger == TriggerKind::Schedule),
        "{:#?}",
        st.book.runs
    );
    assert_eq!(st.book.failure_streak.as_ref().map(|f| f.count), Some(2));
    assert!(st.schedule.next_schedule_time.is_none(), "{st:#?}");
    let notes =
        wait_event_notes(&ns, "flaky", "ConsecutiveFailures", Duration::from_secs(30)).await;
    assert!(
        notes[0].starts_with("the schedule stopped after 2 failed runs in a row (runs 1, 2)"),
        "{notes:?}"
    );

    // Two periods and more: no third scheduled run, no third Job.
    let seen = run_numbers_seen(&ns, "flaky", Duration::from_secs(2 * PERIOD + 2)).await;
    assert_eq!(seen, vec![2], "a run started while stopped");
    assert_eq!(jobs_of(&ns, "flaky").await, 2);

    // The destination is fixed: the step succeeds, and a manual run restarts the schedule.
    ns.kubectl_apply(&sync_yaml("accounts", "200ms", 0, None));
    trigger(&ns, "flaky", "fixed").await;
    let restarted = wait_for_object(
        &api,
        "flaky",
        Duration::from_secs(60),
        "the manual run to succeed and restart the schedule",
        |s| {
            s.status.as_ref().is_some_and(|st| {
                st.book.runs.first().is_some_and(|r| {
                    r.id == 3 && r.trigger == TriggerKind::Manual && r.phase == RunPhase::Succeeded
                })
            }) && condition(s, "ScheduleStopped").as_deref() == Some("False")
        },
    )
    .await;
    let st = restarted.status.as_ref().unwrap();
    assert!(st.book.failure_streak.is_none(), "{st:#?}");
    let restart = st.schedule.schedule_restart_time.clone().unwrap().0;

    let fired = wait_for_object(
        &api,
        "flaky",
        Duration::from_secs(4 * PERIOD),
        "the schedule to fire again",
        |s| {
            s.status.as_ref().is_some_and(|st| {
                st.book
                    .current_run
                    .iter()
                    .chain(st.last_run.iter())
                    .any(|r| r.id > 3 && r.trigger == TriggerKind::Schedule)
            })
        },
    )
    .await;
    let st = fired.status.as_ref().unwrap();
    let fire = st.schedule.last_schedule_time.clone().unwrap().0;
    assert!(
        fire > restart,
        "the first fire after the restart ({restart}) is a new fire time, not a catch-up: {fire}"
    );
    assert!(
        event_notes(&ns, "flaky", "MissedSchedules")
            .await
            .is_empty(),
        "the fire times that passed while stopped are not made up"
    );
}
