//! Runs that start when something upstream finishes (`spec.after`), on the local control
//! plane: a sequence after a sequence, a standalone Sync after a Sync, an upstream run that
//! ends while the controller is down, and cycles refused (issue: runs that start when
//! something upstream finishes).

use crate::support;

use std::time::Duration;

use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, Sync, SyncSequence, TriggerKind, UpstreamKind, UpstreamRun};

const DEADLINE: Duration = Duration::from_secs(90);

/// `spec.after` lines of a sequence or Sync (indented for `spec:`).
fn after(upstreams: &[(&str, &str)], extra: &str) -> String {
    let mut out = String::from("  after:\n    upstreams:\n");
    for (kind, name) in upstreams {
        out.push_str(&format!("    - {{kind: {kind}, name: {name}}}\n"));
    }
    out.push_str(extra);
    out
}

/// The warehouse load (a one-step sequence over Sync `load`) and the CRM sequence after it.
fn apply_warehouse_and_crm(ns: &TestNamespace, load_duration: &str) {
    ns.kubectl_apply(&sync_yaml("load", load_duration, 0, None));
    ns.kubectl_apply(&sequence_yaml("warehouse", &[("load", "")], ""));
    apply_crm(ns, "300ms", &after(&[("SyncSequence", "warehouse")], ""));
}

/// Waits until the controller has seen the upstreams of a sequence (the baseline it records
/// on first sight), so that what follows is an upstream run it must react to.
async fn wait_baseline(ns: &TestNamespace, name: &str) {
    wait_for_object(
        &ns.api::<SyncSequence>(),
        name,
        DEADLINE,
        "the upstreams to be recorded",
        |s| {
            s.status
                .as_ref()
                .is_some_and(|st| !st.book.upstreams.is_empty())
        },
    )
    .await;
}

#[tokio::test]
async fn a_sequence_runs_after_a_sequence_and_a_sync_after_a_sync_once_each() {
    install_crds().await;
    let ns = TestNamespace::new("upstream").await;
    apply_warehouse_and_crm(&ns, "300ms");
    // A standalone Sync after one of the CRM sequence's Syncs: it starts when `contacts`
    // succeeds, whoever ran it.
    let report = sync_yaml("report", "300ms", 0, None).replace(
        "spec:\n  jobTemplate:",
        &format!(
            "spec:\n{}  jobTemplate:",
            after(&[("Sync", "contacts")], "")
        ),
    );
    ns.kubectl_apply(&report);
    let log = JobLog::start(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);
    wait_baseline(&ns, "crm").await;
    wait_for_object(
        &ns.api::<Sync>(),
        "report",
        DEADLINE,
        "the report's upstream to be recorded",
        |s| {
            s.status
                .as_ref()
                .is_some_and(|st| !st.book.upstreams.is_empty())
        },
    )
    .await;

    trigger(&ns, "warehouse", "1").await;
    let crm = wait_for_run(&ns, "crm", 1, DEADLINE).await;
    let run = &crm.status.as_ref().unwrap().book.runs[0];
    assert_eq!(
        (run.trigger, run.phase, run.upstream.clone()),
        (
            TriggerKind::Upstream,
            RunPhase::Succeeded,
            Some(UpstreamRun {
                kind: UpstreamKind::SyncSequence,
                name: "warehouse".into(),
                run: "1".into(),
            })
        )
    );
    let notes = wait_event_notes(&ns, "crm", "RunStarted", DEADLINE).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("run 1 started by upstream sequence warehouse run 1; step "),
        "{notes:?}"
    );

    let report = wait_for_run_of::<Sync>(&ns, "report", 1, DEADLINE).await;
    let st = report.status.unwrap();
    let contacts = ns.api::<Sync>().get("contacts").await.unwrap();
    let contacts_job = contacts
        .status
        .unwrap()
        .last_succeeded_run
        .unwrap()
        .job_name;
    assert_eq!(
        st.book.runs[0].upstream,
        Some(UpstreamRun {
            kind: UpstreamKind::Sync,
            name: "contacts".into(),
            run: contacts_job,
        })
    );

    // Each upstream run starts one run, however often the controller reconciles: a request
    // runs the CRM sequence again (not started by the warehouse's old run), and its `contacts`
    // step starts the report once more.
    trigger(&ns, "crm", "2").await;
    let crm = wait_for_run(&ns, "crm", 2, DEADLINE).await;
    let st = crm.status.unwrap();
    assert_eq!(st.book.last_run_number, Some(2));
    assert_eq!(st.book.runs[0].trigger, TriggerKind::Manual);
    let report = wait_for_run_of::<Sync>(&ns, "report", 2, DEADLINE).await;
    let st = report.status.unwrap();
    assert_eq!(st.book.last_run_number, Some(2));
    let started_by = st.book.runs[0].upstream.clone().unwrap().run;
    assert!(started_by.starts_with("crm-2-contacts-"), "{started_by}");
    let jobs = log.created();
    for (fragment, count) in [
        ("warehouse-", 1),
        ("crm-1-", 3),
        ("crm-2-", 3),
        ("report-1-", 1),
        ("report-2-", 1),
    ] {
        assert_eq!(
            jobs.iter().filter(|j| j.starts_with(fragment)).count(),
            count,
            "{fragment}: {jobs:?}"
        );
    }
    assert_eq!(jobs.len(), 9, "{jobs:?}");
}

#[tokio::test]
async fn an_upstream_run_that_ends_while_the_controller_is_down_starts_one_run() {
    install_crds().await;
    let ns = TestNamespace::new("upstream-down").await;
    apply_warehouse_and_crm(&ns, "4s");
    let log = JobLog::start(&ns).await;
    let mut controller = ControllerProcess::start(&ns.name);
    wait_baseline(&ns, "crm").await;
    trigger(&ns, "warehouse", "1").await;
    let load = log.wait_created("warehouse-1-load-", DEADLINE).await;
    // The controller dies while the upstream's Job runs; the Job finishes without it.
    controller.kill();
    log.wait_finished(&load, DEADLINE).await;
    let crm = ns.api::<SyncSequence>().get("crm").await.unwrap();
    assert_eq!(crm.status.unwrap().book.last_run_number, None);

    controller.restart();
    let crm = wait_for_run(&ns, "crm", 1, DEADLINE).await;
    let run = &crm.status.as_ref().unwrap().book.runs[0];
    assert_eq!(
        (run.trigger, run.phase),
        (TriggerKind::Upstream, RunPhase::Succeeded)
    );
    assert_eq!(run.upstream.as_ref().map(|u| u.run.as_str()), Some("1"));
    assert_eq!(crm.status.unwrap().book.last_run_number, Some(1));
    let jobs = log.created();
    assert_eq!(
        jobs.iter().filter(|j| j.starts_with("crm-")).count(),
        3,
        "one Job per step of one run: {jobs:?}"
    );
}

#[tokio::test]
async fn a_cycle_is_refused_with_a_condition_and_a_missing_upstream_is_reported() {
    install_crds().await;
    let ns = TestNamespace::new("upstream-cycle").await;
    ns.kubectl_apply(&sync_yaml("load", "300ms", 0, None));
    // a and b after each other; c after nothing that exists; d after a Sync that its own
    // step runs, so that every run would start the next.
    for (name, upstream, extra) in [
        ("a", ("SyncSequence", "b"), ""),
        ("b", ("SyncSequence", "a"), ""),
        ("c", ("SyncSequence", "nowhere"), "    require: All\n"),
        ("d", ("Sync", "load"), ""),
    ] {
        ns.kubectl_apply(&sequence_yaml(
            name,
            &[("load", "")],
            &after(&[upstream], extra),
        ));
    }
    let _controller = ControllerProcess::start(&ns.name);
    let condition = |s: &SyncSequence, type_: &str| {
        s.status
            .as_ref()
            .and_then(|st| st.conditions.iter().find(|c| c.type_ == type_).cloned())
    };
    for name in ["a", "b"] {
        let seq = wait_for_object(&ns.api::<SyncSequence>(), name, DEADLINE, "Stalled", |s| {
            condition(s, "Stalled").is_some_and(|c| c.status == "True")
        })
        .await;
        let stalled = condition(&seq, "Stalled").unwrap();
        assert_eq!(stalled.reason, "UpstreamCycle");
        assert!(
            stalled
                .message
                .contains("SyncSequence/a → SyncSequence/b → SyncSequence/a")
                || stalled
                    .message
                    .contains("SyncSequence/b → SyncSequence/a → SyncSequence/b"),
            "{}",
            stalled.message
        );
        let notes = wait_event_notes(&ns, name, "UpstreamCycle", DEADLINE).await;
        assert_eq!(notes.len(), 1, "{notes:?}");
    }
    let d = wait_for_object(&ns.api::<SyncSequence>(), "d", DEADLINE, "Stalled", |s| {
        condition(s, "Stalled").is_some_and(|c| c.status == "True")
    })
    .await;
    assert_eq!(
        condition(&d, "Stalled").unwrap().message,
        "spec.after makes a cycle (SyncSequence/d → Sync/load (run by SyncSequence/d)): \
         upstream runs start nothing until it is broken"
    );
    let c = wait_for_object(&ns.api::<SyncSequence>(), "c", DEADLINE, "not Ready", |s| {
        condition(s, "Ready").is_some_and(|c| c.reason == "UpstreamNotFound")
    })
    .await;
    assert!(
        condition(&c, "Ready")
            .unwrap()
            .message
            .contains("SyncSequence/nowhere")
    );

    // A cycle stops upstream triggers only: a request still runs the sequence, and its
    // success does not loop through the other.
    trigger(&ns, "a", "1").await;
    wait_for_run(&ns, "a", 1, DEADLINE).await;
    let b = ns.api::<SyncSequence>().get("b").await.unwrap();
    assert_eq!(b.status.unwrap().book.last_run_number, None);

    // Breaking the cycle clears the condition.
    ns.kubectl_apply(&sequence_yaml("b", &[("load", "")], ""));
    wait_for_object(
        &ns.api::<SyncSequence>(),
        "a",
        DEADLINE,
        "not Stalled",
        |s| condition(s, "Stalled").is_some_and(|c| c.status == "False"),
    )
    .await;
}

#[tokio::test]
async fn require_all_starts_a_run_once_every_upstream_has_run_since_the_last() {
    install_crds().await;
    let ns = TestNamespace::new("upstream-all").await;
    ns.kubectl_apply(&sync_yaml("a", "300ms", 0, None));
    ns.kubectl_apply(&sync_yaml("b", "300ms", 0, None));
    let both = sync_yaml("both", "300ms", 0, None).replace(
        "spec:\n  jobTemplate:",
        &format!(
            "spec:\n{}  jobTemplate:",
            after(&[("Sync", "a"), ("Sync", "b")], "    require: All\n")
        ),
    );
    ns.kubectl_apply(&both);
    let _controller = ControllerProcess::start(&ns.name);
    wait_for_object(
        &ns.api::<Sync>(),
        "both",
        DEADLINE,
        "its upstreams to be recorded",
        |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.book.upstreams.len() == 2)
        },
    )
    .await;
    let started_by = |s: &Sync| {
        s.status
            .as_ref()
            .and_then(|st| st.book.runs.first())
            .and_then(|r| r.upstream.clone())
    };
    // Two rounds: a, then b. Each round starts one run, started by b, which finished last; a's
    // run alone starts nothing.
    for round in 1..=2 {
        annotate_sync(
            &ns,
            "a",
            syncseq::api::annotations::REQUESTED_AT,
            &format!("{round}"),
        )
        .await;
        wait_for_run_of::<Sync>(&ns, "a", round, DEADLINE).await;
        annotate_sync(
            &ns,
            "b",
            syncseq::api::annotations::REQUESTED_AT,
            &format!("{round}"),
        )
        .await;
        let b = wait_for_run_of::<Sync>(&ns, "b", round, DEADLINE).await;
        let both = wait_for_run_of::<Sync>(&ns, "both", round, DEADLINE).await;
        let b_job = b.status.unwrap().last_succeeded_run.unwrap().job_name;
        assert_eq!(
            started_by(&both),
            Some(UpstreamRun {
                kind: UpstreamKind::Sync,
                name: "b".into(),
                run: b_job,
            }),
            "round {round}"
        );
        assert_eq!(both.status.unwrap().book.last_run_number, Some(round));
    }
}
