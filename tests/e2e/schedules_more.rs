//! "Schedules, more of them" on the real control plane: several schedules on one object fire
//! on each of their chains, and `jitterSeconds` starts each object's runs its own stable
//! offset after the fire time (issue 35), measured from the Jobs' creation times.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use support::fixtures::*;
use support::*;
use syncseq::api::{SyncSequence, annotations, labels};

/// A scheduled Job as the API server has it: its nominal fire time (the annotation) and when
/// it was created (whole seconds, as the API server keeps creation times).
#[derive(Debug, Clone, Copy)]
struct Fired {
    nominal: Timestamp,
    created: Timestamp,
}

/// The scheduled Jobs of sequence `name`, oldest fire first.
async fn fired(ns: &TestNamespace, name: &str) -> Vec<Fired> {
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default().labels(&format!("{}={name}", labels::SEQUENCE)))
        .await
        .unwrap();
    let mut out: Vec<Fired> = jobs
        .items
        .iter()
        .filter_map(|j| {
            let nominal = j
                .metadata
                .annotations
                .as_ref()?
                .get(annotations::SCHEDULED_TIMESTAMP)?
                .parse()
                .ok()?;
            let created = j.metadata.creation_timestamp.as_ref()?.0;
            Some(Fired { nominal, created })
        })
        .collect();
    out.sort_by_key(|f| f.nominal);
    out
}

async fn created_at(ns: &TestNamespace, name: &str) -> (Timestamp, String) {
    let seq = ns.api::<SyncSequence>().get(name).await.unwrap();
    (
        seq.metadata.creation_timestamp.unwrap().0,
        seq.metadata.uid.unwrap(),
    )
}

fn secs_after(t: Timestamp, since: Timestamp) -> i64 {
    t.as_second() - since.as_second()
}

#[tokio::test]
async fn two_every_schedules_on_one_sequence_both_fire_and_a_shared_fire_runs_once() {
    install_crds().await;
    let ns = TestNamespace::new("sched-union").await;
    ns.kubectl_apply(&sync_yaml("accounts", "200ms", 0, None));
    let _controller = ControllerProcess::start(&ns.name);
    // Queue: a fire that comes while a slow control plane still runs the previous one is
    // started after it, with its own scheduled time, instead of dropped.
    ns.kubectl_apply(&sequence_yaml(
        "union",
        &[("accounts", "")],
        "  schedules: [\"@every 20s\", \"@every 30s\"]\n  concurrencyPolicy: Queue\n",
    ));
    let (created, _) = created_at(&ns, "union").await;
    // Both chains from the creation: 20, 30, 40, 60 (both), ...
    let fires = eventually(
        Duration::from_secs(150),
        "the fires at 20, 30, 40 and 60 s",
        || async {
            let fires = fired(&ns, "union").await;
            fires
                .iter()
                .any(|f| secs_after(f.nominal, created) >= 60)
                .then_some(fires)
        },
    )
    .await;
    let offsets: Vec<i64> = fires
        .iter()
        .map(|f| secs_after(f.nominal, created))
        .collect();
    assert_eq!(
        offsets
            .iter()
            .filter(|&&s| s <= 60)
            .copied()
            .collect::<Vec<_>>(),
        [20, 30, 40, 60],
        "each chain's fires, 60 s once: {offsets:?}"
    );
    assert!(
        offsets.iter().all(|s| s % 20 == 0 || s % 30 == 0),
        "only fires of the two chains: {offsets:?}"
    );
    for f in &fires {
        assert!(f.created >= f.nominal, "started before its time: {f:?}");
    }
}

#[tokio::test]
async fn jitter_spreads_four_sequences_over_the_window_each_at_its_own_stable_offset() {
    const JITTER: i32 = 25;
    const EVERY: i64 = 30;
    // Job creation comes after the start time by the control plane's latency (under load,
    // seconds); the lower bound is exact.
    const LATENCY: SignedDuration = SignedDuration::from_secs(10);
    install_crds().await;
    let ns = TestNamespace::new("sched-jitter").await;
    let names: Vec<String> = (0..4).map(|i| format!("jit-{i}")).collect();
    let mut manifest = String::new();
    for name in &names {
        manifest.push_str(&sync_yaml(&format!("{name}-sync"), "200ms", 0, None));
        manifest.push_str("---\n");
        manifest.push_str(&sequence_yaml(
            name,
            &[(&format!("{name}-sync"), "")],
            &format!("  schedule: \"@every {EVERY}s\"\n  jitterSeconds: {JITTER}\n"),
        ));
        manifest.push_str("---\n");
    }
    ns.kubectl_apply(&manifest);
    let _controller = ControllerProcess::start(&ns.name);

    let mut expected: BTreeMap<&str, (Timestamp, SignedDuration)> = BTreeMap::new();
    for name in &names {
        let (created, uid) = created_at(&ns, name).await;
        expected.insert(name, (created, syncseq::jitter_offset(&uid, JITTER)));
    }
    let window = SignedDuration::from_secs(i64::from(JITTER));
    let offsets: Vec<SignedDuration> = expected.values().map(|(_, o)| *o).collect();
    assert!(
        offsets
            .iter()
            .all(|o| *o >= SignedDuration::ZERO && *o < window),
        "{offsets:?}"
    );
    // Without jitter every Job would come within the latency of its fire time; an offset
    // above a few seconds is what tells the two apart (4 random offsets all below 3 s of 25:
    // a chance of 2 in 10,000).
    assert!(
        offsets.iter().any(|o| *o >= SignedDuration::from_secs(3)),
        "{offsets:?}"
    );

    let mut measured: BTreeMap<&str, Vec<SignedDuration>> = BTreeMap::new();
    for name in &names {
        let (created, offset) = expected[name.as_str()];
        let fires = eventually(
            Duration::from_secs(3 * EVERY as u64 + 60),
            &format!("two scheduled runs of {name}"),
            || async {
                let fires = fired(&ns, name).await;
                (fires.len() >= 2).then_some(fires)
            },
        )
        .await;
        for f in &fires[..2] {
            // The annotation keeps the nominal time: a fire of the @every chain from the
            // creation.
            assert_eq!(
                secs_after(f.nominal, created) % EVERY,
                0,
                "{name}: nominal {f:?}"
            );
            let start = f.nominal + offset;
            // Never before its jittered start (creation times are whole seconds).
            assert!(
                f.created.as_second() >= start.as_second(),
                "{name} started {} before its offset {offset}: {f:?}",
                start.duration_since(f.created)
            );
            assert!(
                f.created <= start + LATENCY,
                "{name} started {} after its jittered time: {f:?}",
                f.created.duration_since(start)
            );
        }
        measured.insert(
            name,
            fires[..2]
                .iter()
                .map(|f| f.created.duration_since(f.nominal))
                .collect(),
        );
        // Status keeps the nominal time too.
        let seq = ns.api::<SyncSequence>().get(name).await.unwrap();
        let last = seq.status.unwrap().schedule.last_schedule_time.unwrap().0;
        assert_eq!(secs_after(last, created) % EVERY, 0, "{name}: {last}");
    }
    // Stable: each object's two fires came at its offset, within the latency of each other.
    for (name, delays) in &measured {
        let spread = (delays[0] - delays[1]).abs();
        assert!(spread <= LATENCY, "{name}: delays {delays:?}");
    }
}

/// What the API server refuses of the new fields, each with a message that names it, and the
/// largest valid use it accepts.
#[tokio::test]
async fn the_api_server_refuses_bad_schedules_and_jitter_with_a_clear_message() {
    install_crds().await;
    let ns = TestNamespace::new("sched-refused").await;
    let apply = |spec: &str| {
        let out = kubectl(
            &["apply", "--validate=strict", "-n", &ns.name, "-f", "-"],
            Some(&sequence_yaml("refused", &[("accounts", "")], spec)),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let sixteen: Vec<String> = (0..16).map(|m| format!("\"{m} * * * *\"")).collect();
    let (ok, err) = apply(&format!(
        "  schedules: [{}]\n  jitterSeconds: 3600\n",
        sixteen.join(", ")
    ));
    assert!(ok, "16 schedules and the largest jitter refused: {err}");
    let seventeen: Vec<String> = (0..17).map(|m| format!("\"{m} * * * *\"")).collect();
    let seventeen = format!("  schedules: [{}]\n", seventeen.join(", "));
    for (spec, needles) in [
        (
            "  schedule: \"@hourly\"\n  schedules: [\"@daily\"]\n",
            &["set either schedule or schedules, not both"][..],
        ),
        ("  schedules: []\n", &["spec.schedules", "at least 1"][..]),
        (seventeen.as_str(), &["spec.schedules", "at most 16"][..]),
        (
            "  schedules: [\"@hourly\", \"@hourly\"]\n",
            &["spec.schedules[1]", "Duplicate value"][..],
        ),
        (
            "  schedules: [\"@hourly\", \"TZ=UTC 0 * * * *\"]\n",
            &[
                "spec.schedules",
                "each entry must be a 5-field cron expression",
            ][..],
        ),
        (
            "  schedule: \"@hourly\"\n  jitterSeconds: 3601\n",
            &["spec.jitterSeconds", "3600"][..],
        ),
        (
            "  schedule: \"@hourly\"\n  jitterSeconds: -1\n",
            &["spec.jitterSeconds", "0"][..],
        ),
    ] {
        let (ok, err) = apply(spec);
        assert!(!ok, "accepted:\n{spec}");
        for needle in needles {
            assert!(err.contains(needle), "{spec}: no {needle:?} in {err}");
        }
    }
}
