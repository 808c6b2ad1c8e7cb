//! Schedules on the real control plane: CronJob semantics for firing, suspend, catch-up after
//! downtime and startingDeadlineSeconds (issue: schedules).

use crate::support;

use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use support::fixtures::*;
use support::*;
use syncseq::api::{SyncSequence, TriggerKind};

fn scheduled(name: &str, sync: &str, spec: &str) -> String {
    sequence_yaml(name, &[(sync, "")], spec)
}

async fn patch_spec(ns: &TestNamespace, name: &str, spec: serde_json::Value) {
    let patch = serde_json::json!({ "spec": spec });
    ns.api::<SyncSequence>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn run_number(s: &SyncSequence) -> i64 {
    s.status
        .as_ref()
        .and_then(|st| st.book.last_run_number)
        .unwrap_or(0)
}

/// Watches the sequence for `window` and returns every distinct (lastRunNumber, nextScheduleTime)
/// it showed, in order. Observing a window is how a test shows that something does NOT happen.
async fn observe(
    ns: &TestNamespace,
    name: &str,
    window: Duration,
) -> Vec<(i64, Option<Timestamp>)> {
    let api = ns.api::<SyncSequence>();
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, cfg).boxed();
    let mut seen: Vec<(i64, Option<Timestamp>)> = Vec::new();
    let _ = tokio::time::timeout(window, async {
        while let Some(Ok(ev)) = stream.next().await {
            if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = ev {
                let entry = (
                    run_number(&s),
                    s.status
                        .as_ref()
                        .and_then(|st| st.schedule.next_schedule_time.as_ref())
                        .map(|t| t.0),
                );
                if seen.last() != Some(&entry) {
                    seen.push(entry);
                }
            }
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn every_5s_runs_at_least_three_times_in_20s_and_suspend_stops_it() {
    install_crds().await;
    let ns = TestNamespace::new("sched-every").await;
    ns.kubectl_apply(&sync_yaml("accounts", "200ms", 0, None));
    let _controller = ControllerProcess::start(&ns.name);
    ns.kubectl_apply(&scheduled(
        "tick",
        "accounts",
        "  schedule: \"@every 5s\"\n",
    ));
    let seen = observe(&ns, "tick", Duration::from_secs(20)).await;
    let runs = seen.last().map(|(n, _)| *n).unwrap_or(0);
    assert!(runs >= 3, "only {runs} runs in 20s: {seen:?}");
    // nextScheduleTime moves forward each time a run starts.
    let nexts: Vec<Timestamp> = seen.iter().filter_map(|(_, n)| *n).collect();
    assert!(nexts.windows(2).all(|w| w[0] <= w[1]), "{nexts:?}");
    let distinct: std::collections::BTreeSet<_> = nexts.iter().collect();
    assert!(distinct.len() >= 3, "{nexts:?}");
    let seq = ns.api::<SyncSequence>().get("tick").await.unwrap();
    let st = seq.status.unwrap();
    assert!(
        st.book
            .runs
            .iter()
            .all(|r| r.trigger == TriggerKind::Schedule)
    );
    assert!(st.schedule.last_schedule_time.is_some());

    patch_spec(&ns, "tick", serde_json::json!({"suspend": true})).await;
    let suspended = wait_for_object(
        &ns.api::<SyncSequence>(),
        "tick",
        Duration::from_secs(10),
        "nextScheduleTime cleared",
        |s| {
            s.status.as_ref().is_some_and(|st| {
                st.schedule.next_schedule_time.is_none() && st.book.current_run.is_none()
            })
        },
    )
    .await;
    let before = run_number(&suspended);
    let seen = observe(&ns, "tick", Duration::from_secs(12)).await;
    assert!(
        seen.iter().all(|(n, _)| *n == before),
        "a run started while suspended: {seen:?}"
    );
}

/// Restarts the controller once `ready(now)` holds, after at least 30 s of downtime.
async fn downtime(
    controller: &mut ControllerProcess,
    ready: impl Fn(Timestamp) -> bool,
) -> Timestamp {
    controller.kill();
    let down = Timestamp::now();
    eventually(
        Duration::from_secs(120),
        "30 s of downtime ending at the wanted moment",
        || async {
            let now = Timestamp::now();
            (now.duration_since(down).as_secs() >= 30 && ready(now)).then_some(())
        },
    )
    .await;
    controller.restart();
    Timestamp::now()
}

/// Seconds since the last minute boundary.
fn into_minute(t: Timestamp) -> i64 {
    t.as_second().rem_euclid(60)
}

#[tokio::test]
async fn a_restart_after_30s_of_downtime_starts_exactly_one_catch_up_run() {
    install_crds().await;
    let ns = TestNamespace::new("sched-catchup").await;
    ns.kubectl_apply(&sync_yaml("accounts", "200ms", 0, None));
    let mut controller = ControllerProcess::start(&ns.name);
    ns.kubectl_apply(&scheduled(
        "nightly",
        "accounts",
        "  schedule: \"@every 10s\"\n",
    ));
    let api = ns.api::<SyncSequence>();
    let before = wait_for_object(
        &api,
        "nightly",
        Duration::from_secs(30),
        "a first scheduled run",
        |s| {
            run_number(s) >= 1
                && s.status
                    .as_ref()
                    .is_some_and(|st| st.book.current_run.is_none())
        },
    )
    .await;
    let last_before = before
        .status
        .as_ref()
        .unwrap()
        .schedule
        .last_schedule_time
        .clone()
        .unwrap()
        .0;
    let restarted = downtime(&mut controller, |_| true).await;

    let after = wait_for_object(
        &api,
        "nightly",
        Duration::from_secs(30),
        "the catch-up run",
        |s| run_number(s) > run_number(&before),
    )
    .await;
    let st = after.status.as_ref().unwrap();
    assert_eq!(
        run_number(&after),
        run_number(&before) + 1,
        "exactly one run started"
    );
    let caught_up = st.schedule.last_schedule_time.clone().unwrap().0;
    // The catch-up run is for the most recent missed time: within 10 s before the restart.
    assert!(
        caught_up <= restarted && restarted.duration_since(caught_up).as_secs() < 10,
        "{caught_up} vs restart {restarted}"
    );
    assert!(caught_up.duration_since(last_before).as_secs() >= 30);
    let events = kubectl(
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={range .items[*]}{.reason}:{.note}{\"\\n\"}{end}",
        ],
        None,
    );
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("MissedSchedules:") && events.contains("scheduled times were missed"),
        "{events}"
    );
    // And no second catch-up: the next run is for a fire time after the restart.
    let next = wait_for_object(
        &api,
        "nightly",
        Duration::from_secs(30),
        "the next regular run",
        |s| run_number(s) > run_number(&after),
    )
    .await;
    assert!(next.status.unwrap().schedule.last_schedule_time.unwrap().0 > restarted);
}

#[tokio::test]
async fn with_starting_deadline_5s_the_same_restart_starts_nothing_and_records_the_miss() {
    install_crds().await;
    let ns = TestNamespace::new("sched-deadline").await;
    ns.kubectl_apply(&sync_yaml("accounts", "200ms", 0, None));
    let mut controller = ControllerProcess::start(&ns.name);
    ns.kubectl_apply(&scheduled(
        "minutely",
        "accounts",
        "  schedule: \"* * * * *\"\n  startingDeadlineSeconds: 5\n",
    ));
    let api = ns.api::<SyncSequence>();
    wait_for_object(
        &api,
        "minutely",
        Duration::from_secs(20),
        "nextScheduleTime",
        |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.schedule.next_schedule_time.is_some())
        },
    )
    .await;
    let before = api.get("minutely").await.unwrap();
    // Restart when the most recent fire time (a minute boundary) is 15-45 s old: past the deadline.
    let killed = Timestamp::now();
    let restarted = downtime(&mut controller, |now| {
        let since = into_minute(now);
        (15..=45).contains(&since) && now.as_second() - since > killed.as_second()
    })
    .await;
    let after = wait_for_object(
        &api,
        "minutely",
        Duration::from_secs(20),
        "the missed time recorded",
        |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.schedule.missed_schedules.unwrap_or(0) >= 1)
        },
    )
    .await;
    let st = after.status.as_ref().unwrap();
    assert_eq!(
        run_number(&after),
        run_number(&before),
        "no run may start past the deadline"
    );
    let missed = st.schedule.last_missed_schedule_time.clone().unwrap().0;
    assert_eq!(
        missed.as_second(),
        restarted.as_second() - into_minute(restarted),
        "the most recent minute boundary is recorded"
    );
    let events = kubectl(
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={range .items[*]}{.type}:{.reason}:{.note}{\"\\n\"}{end}",
        ],
        None,
    );
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("Warning:MissedSchedule:missed scheduled time"),
        "{events}"
    );
}

#[tokio::test]
async fn an_unknown_time_zone_stalls_one_sequence_and_others_keep_running() {
    install_crds().await;
    let ns = TestNamespace::new("sched-stall").await;
    ns.kubectl_apply(&sync_yaml("accounts", "200ms", 0, None));
    ns.kubectl_apply(&sync_yaml("contacts", "200ms", 0, None));
    let _controller = ControllerProcess::start(&ns.name);
    ns.kubectl_apply(&scheduled(
        "broken",
        "accounts",
        "  schedule: \"0 * * * *\"\n  timeZone: Mars/Olympus_Mons\n",
    ));
    ns.kubectl_apply(&scheduled(
        "healthy",
        "contacts",
        "  schedule: \"@every 3s\"\n",
    ));
    let api = ns.api::<SyncSequence>();
    let broken = wait_for_object(&api, "broken", Duration::from_secs(20), "Stalled", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True")
        })
    })
    .await;
    let stalled = broken
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert!(
        stalled.message.contains("Mars/Olympus_Mons"),
        "{}",
        stalled.message
    );
    wait_for_object(
        &api,
        "healthy",
        Duration::from_secs(20),
        "the healthy sequence running",
        |s| run_number(s) >= 2,
    )
    .await;
    let describe = String::from_utf8_lossy(
        &kubectl(
            &["describe", "syncsequence", "broken", "-n", &ns.name],
            None,
        )
        .stdout,
    )
    .to_string();
    assert!(
        describe.contains("Warning") && describe.contains("InvalidSchedule"),
        "{describe}"
    );
}
