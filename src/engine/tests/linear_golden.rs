//! The golden record of linear sequences: what the engine decides for a table of scripted
//! runs — the status written, the Jobs created (name, labels, annotations) and deleted, the
//! Events — compared with `linear_golden.json`, recorded from the engine before steps became
//! a graph. Linear sequences keep their meaning bit for bit (issue 34, acceptance 6), so any
//! difference here is a change of behaviour, not of layout.
//!
//! Normalised away before comparing: the 8-hex hash at the end of a Job name (wherever the
//! name appears), so that a change of what the hash covers does not fail it; and what the
//! graph engine adds to linear runs too, and nothing else: a Skipped step's `reason` (its value
//! is checked on its own, against the known reasons), a run's `stoppedBy`, a Pending step's
//! `waiting for <its parent>` message, and a history line's `succeededSteps` (what a retry of
//! that run reuses; `tests/graph.rs` checks it through retries).
//!
//! To record the file again from the engine as it is: `SYNCSEQ_BLESS=1 cargo test --lib
//! linear_golden`, then review the diff.

use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::api::*;
use crate::engine::fixtures::{Apply, Object, PodState, World, step, sync};
use crate::engine::*;

const GOLDEN: &str = include_str!("linear_golden.json");

/// The values a Skipped step's `reason` may take (`StepStatus::reason`).
const SKIP_REASONS: &[&str] = crate::engine::reasons::SKIPS;

/// One thing that happens in a scenario's script.
#[derive(Debug, Clone, Copy)]
enum Ev {
    /// The engine decides; its plan is recorded, then carried out in full.
    Decide,
    /// A manual request (`syncseq.dev/requestedAt`) with this value.
    Request(&'static str),
    /// A cancel request (`syncseq.dev/cancelRequestedAt`) with this value.
    Cancel(&'static str),
    /// The active Job succeeds with rows synced and rejected.
    Succeed(i64, i64),
    /// The active Job fails with this message.
    Fail(&'static str),
    /// The active Job runs past its deadline.
    TimeOut,
    /// The clock moves on this many seconds.
    Clock(i64),
    /// Another sequence's Job holds this Sync.
    Hold(&'static str),
    /// That holder lets go of the Sync.
    Free(&'static str),
    /// This Sync is deleted / created again.
    DropSync(&'static str),
    AddSync(&'static str),
    /// The active Job is deleted by hand (background: gone at once).
    DeleteJob,
    /// The API server refused the create of the active Job, with this message.
    RefuseCreate(&'static str),
    /// Terminating Pods run down their grace by one.
    Tick,
    /// This step is removed from the spec.
    RemoveStep(&'static str),
}
use Ev::*;

struct Scenario {
    name: &'static str,
    steps: Vec<Step>,
    policy: ConcurrencyPolicy,
    script: Vec<Ev>,
}

fn crm_steps() -> Vec<Step> {
    vec![step("accounts"), step("workspaces"), step("contacts")]
}

fn scenario(name: &'static str, steps: Vec<Step>, script: Vec<Ev>) -> Scenario {
    Scenario {
        name,
        steps,
        policy: ConcurrencyPolicy::Forbid,
        script,
    }
}

/// Steps 2 and 3 of the CRM sequence succeeding, each with its decision.
const REST: [Ev; 4] = [Succeed(340, 2), Decide, Succeed(15800, 12), Decide];

fn scenarios() -> Vec<Scenario> {
    let with = |f: &dyn Fn(&mut Vec<Step>)| {
        let mut steps = crm_steps();
        f(&mut steps);
        steps
    };
    let policy = |policy, mut s: Scenario| {
        s.policy = policy;
        s
    };
    vec![
        scenario(
            "every step succeeds",
            crm_steps(),
            [Request("1"), Decide, Decide, Succeed(1200, 0), Decide]
                .into_iter()
                .chain(REST)
                .chain([Decide])
                .collect(),
        ),
        scenario(
            "a failure under Stop skips the rest and fails the run",
            crm_steps(),
            vec![
                Request("1"),
                Decide,
                Succeed(10, 0),
                Decide,
                Fail("CRM API returned 401: invalid token"),
                Decide,
                Decide,
            ],
        ),
        scenario(
            "a failure under Continue goes on to SucceededWithErrors",
            with(&|s| s[1].on_failure = FailurePolicy::Continue),
            vec![
                Request("1"),
                Decide,
                Succeed(10, 0),
                Decide,
                Fail("boom"),
                Decide,
                Succeed(5, 0),
                Decide,
            ],
        ),
        scenario(
            "a timeout fails the step as timed out",
            with(&|s| s[0].timeout_seconds = Some(30)),
            vec![Request("1"), Decide, Clock(30), TimeOut, Decide],
        ),
        scenario(
            "rejected rows over the limit under Stop fail the run",
            with(&|s| {
                s[0].rejected_rows = Some(RejectedRowsPolicy {
                    max: Some(100),
                    max_percent: None,
                    on_exceeded: FailurePolicy::Stop,
                })
            }),
            vec![Request("1"), Decide, Succeed(900, 150), Decide],
        ),
        scenario(
            "rejected rows over the limit under Continue go on",
            with(&|s| {
                s[0].rejected_rows = Some(RejectedRowsPolicy {
                    max: None,
                    max_percent: Some(1.0),
                    on_exceeded: FailurePolicy::Continue,
                })
            }),
            [Request("1"), Decide, Succeed(950, 50), Decide]
                .into_iter()
                .chain(REST)
                .collect(),
        ),
        scenario(
            "retries back off, doubling, then succeed",
            with(&|s| {
                s[0].retries = 2;
                s[0].retry_delay_seconds = 10;
            }),
            [
                Request("1"),
                Decide,
                Fail("flaky"),
                Decide,
                Clock(5),
                Decide,
                Clock(5),
                Decide,
                Fail("flaky again"),
                Decide,
                Clock(20),
                Decide,
                Succeed(1200, 0),
                Decide,
            ]
            .into_iter()
            .chain(REST)
            .collect(),
        ),
        scenario(
            "a busy Sync, then a missing one, waits and says why",
            crm_steps(),
            vec![
                Hold("workspaces"),
                Request("1"),
                Decide,
                Succeed(1200, 0),
                Decide,
                Decide,
                Clock(5),
                Decide,
                Free("workspaces"),
                DropSync("contacts"),
                Decide,
                Succeed(340, 2),
                Decide,
                Clock(5),
                Decide,
                AddSync("contacts"),
                Decide,
                Succeed(15800, 12),
                Decide,
            ],
        ),
        scenario(
            "a seen Job deleted by hand fails its attempt, which is retried",
            with(&|s| s[0].retries = 1),
            vec![
                Request("1"),
                Decide,
                Decide,
                DeleteJob,
                Decide,
                Clock(10),
                Decide,
                Decide,
                DeleteJob,
                Decide,
            ],
        ),
        scenario(
            "a refused create fails the attempt with the server's message",
            with(&|s| s[1].retries = 1),
            vec![
                Request("1"),
                Decide,
                Succeed(1200, 0),
                Decide,
                RefuseCreate("jobs.batch is forbidden: exceeded quota: no-jobs"),
                Decide,
                Clock(10),
                Decide,
                RefuseCreate("jobs.batch is forbidden: exceeded quota: no-jobs"),
                Decide,
            ],
        ),
        scenario(
            "a cancel mid-run deletes the Job and skips the rest",
            crm_steps(),
            vec![
                Request("1"),
                Decide,
                Succeed(1200, 0),
                Decide,
                Cancel("c1"),
                Decide,
                Decide,
                Tick,
                Tick,
                Decide,
                Request("2"),
                Decide,
            ],
        ),
        scenario(
            "Forbid drops and counts a trigger during a run",
            crm_steps(),
            [
                Request("1"),
                Decide,
                Request("2"),
                Decide,
                Succeed(1200, 0),
                Decide,
            ]
            .into_iter()
            .chain(REST)
            .collect(),
        ),
        policy(
            ConcurrencyPolicy::Queue,
            scenario(
                "Queue keeps one follow-up run and drops the next trigger",
                crm_steps(),
                [
                    Request("1"),
                    Decide,
                    Request("2"),
                    Decide,
                    Request("3"),
                    Decide,
                    Succeed(1200, 0),
                    Decide,
                ]
                .into_iter()
                .chain(REST)
                .chain([Succeed(1, 0), Decide])
                .chain(REST)
                .collect(),
            ),
        ),
        policy(
            ConcurrencyPolicy::Replace,
            scenario(
                "Replace cancels the run, and the new one waits for the old Job",
                crm_steps(),
                vec![
                    Request("1"),
                    Decide,
                    Request("2"),
                    Decide,
                    Decide,
                    Tick,
                    Decide,
                    Tick,
                    Decide,
                    Succeed(1200, 0),
                    Decide,
                ],
            ),
        ),
        scenario(
            "a pending step removed mid-run is skipped",
            crm_steps(),
            vec![
                Request("1"),
                Decide,
                Succeed(1200, 0),
                Decide,
                RemoveStep("contacts"),
                Decide,
                Succeed(340, 2),
                Decide,
            ],
        ),
        scenario(
            "the running step removed mid-run is skipped, and the next starts",
            crm_steps(),
            vec![
                Request("1"),
                Decide,
                Succeed(1200, 0),
                Decide,
                RemoveStep("workspaces"),
                Decide,
                Tick,
                Tick,
                Decide,
                Succeed(15800, 12),
                Decide,
            ],
        ),
    ]
}

/// Plays a scenario; returns its record: every decision with what happened before it.
fn play(s: Scenario) -> Value {
    let mut w = World::sequence(s.steps);
    w.seq.spec.concurrency_policy = s.policy;
    // As the controller deletes: the Job stays, marked, while its Pod terminates.
    w.foreground_deletes = true;
    let mut before: Vec<String> = vec![];
    let mut decisions = vec![];
    for ev in s.script {
        if matches!(
            ev,
            Succeed(..) | Fail(_) | TimeOut | DeleteJob | RefuseCreate(_)
        ) {
            assert!(
                running_job(&w).is_some(),
                "{}: no active Job for {ev:?} after {before:?}",
                s.name
            );
        }
        match ev {
            Decide => {
                let plan = w.plan();
                let mut record = json!({
                    "after": before.join("; "),
                    "status": serde_json::to_value(&plan.status).unwrap(),
                    "actions": plan.actions.iter().map(action).collect::<Vec<_>>(),
                });
                if let Err(e) = check_skip_reasons(&record) {
                    panic!("{}: decision {}: {e}", s.name, decisions.len() + 1);
                }
                normalise(&mut record);
                decisions.push(record);
                w.apply(&Object::Sequence, &plan, Apply::ALL);
                before.clear();
                continue;
            }
            Request(v) => w.annotate(annotations::REQUESTED_AT, v),
            Cancel(v) => w.annotate(annotations::CANCEL_REQUESTED_AT, v),
            Succeed(synced, rejected) => w.succeed(synced, rejected),
            Fail(message) => w.fail(message),
            TimeOut => w.finish(
                JobOutcome::Failed {
                    timed_out: true,
                    reason: "DeadlineExceeded".into(),
                },
                Report::default(),
            ),
            Clock(secs) => w.now += SignedDuration::from_secs(secs),
            Hold(sync) => {
                w.holders.insert(
                    sync.into(),
                    vec![Holder {
                        job: format!("nightly-7-{sync}-1-x"),
                        by: "sequence nightly run 7".into(),
                    }],
                );
            }
            Free(sync) => {
                w.holders.remove(sync);
            }
            DropSync(name) => {
                w.syncs.remove(name);
            }
            AddSync(name) => {
                w.syncs.insert(name.into(), sync(name));
            }
            DeleteJob => {
                let name = running_job(&w).unwrap();
                w.jobs.retain(|j| j.view.name != name);
            }
            RefuseCreate(message) => {
                let name = running_job(&w).unwrap();
                w.jobs.retain(|j| j.view.name != name);
                let mut st = w.status().clone();
                assert!(
                    record_refusal(st.book.current_run.as_deref_mut(), &name, message, w.now),
                    "{}: no running step has Job {name}",
                    s.name
                );
                w.seq.status = Some(st);
            }
            Tick => w.tick(),
            RemoveStep(name) => w.seq.spec.steps.retain(|p| p.name != name),
        }
        before.push(format!("{ev:?}"));
    }
    json!({"scenario": s.name, "decisions": decisions})
}

/// The Job whose Pod runs: the one a script's event ends, deletes or refuses.
fn running_job(w: &World) -> Option<String> {
    w.jobs
        .iter()
        .find(|j| j.exists && j.view.outcome == JobOutcome::Active && j.pod == PodState::Running)
        .map(|j| j.view.name.clone())
}

/// An action as the record shows it: a Job create by what identifies the Job.
fn action(a: &Action) -> Value {
    match a {
        Action::CreateJob(job) => json!({"createJob": {
            "name": job.metadata.name,
            "labels": job.metadata.labels,
            "annotations": job.metadata.annotations,
        }}),
        Action::DeleteJob { name } => json!({"deleteJob": name}),
        Action::Event(e) => json!({"event": {
            "warning": e.warning,
            "reason": e.reason,
            "action": e.action,
            "note": e.note,
        }}),
    }
}

/// Every Skipped step (an object with `"phase": "Skipped"`) with a `reason` has a known one.
fn check_skip_reasons(v: &Value) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter().try_for_each(check_skip_reasons),
        Value::Object(o) => {
            if o.get("phase") == Some(&json!("Skipped"))
                && let Some(reason) = o.get("reason")
                && !SKIP_REASONS.iter().any(|r| reason == r)
            {
                return Err(format!("unknown skip reason {reason} in {v}"));
            }
            o.values().try_for_each(check_skip_reasons)
        }
        _ => Ok(()),
    }
}

/// Job names' hashes become `HASH`; a Skipped step's `reason`, a run's `stoppedBy` and a
/// Pending step's `waiting for …` go.
fn normalise(v: &mut Value) {
    match v {
        Value::String(s) => *s = unhash(s),
        Value::Array(items) => items.iter_mut().for_each(normalise),
        Value::Object(o) => {
            if o.get("phase") == Some(&json!("Skipped")) {
                o.remove("reason");
            }
            o.remove("stoppedBy");
            o.remove("succeededSteps");
            if o.get("phase") == Some(&json!("Pending"))
                && o.get("message")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.starts_with("waiting for "))
            {
                o.remove("message");
            }
            o.values_mut().for_each(normalise);
        }
        _ => {}
    }
}

/// `s` with every `-` followed by 8 lowercase hex digits that end a word (a Job name's hash,
/// as `job_name` makes it) as `-HASH`.
fn unhash(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut last, mut i) = (0, 0);
    while i < b.len() {
        let hash = b[i] == b'-'
            && b.get(i + 1..i + 9)
                .is_some_and(|h| h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
            && b.get(i + 9).is_none_or(|c| !c.is_ascii_alphanumeric());
        if hash {
            out.push_str(&s[last..i]);
            out.push_str("-HASH");
            i += 9;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[last..]);
    out
}

#[test]
fn linear_sequences_decide_as_recorded() {
    let got: Vec<Value> = scenarios().into_iter().map(play).collect();
    if std::env::var_os("SYNCSEQ_BLESS").is_some_and(|v| v == "1") {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/engine/tests/linear_golden.json"
        );
        let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
        std::fs::write(path, text).expect("write the golden record");
        return;
    }
    let want: Vec<Value> = serde_json::from_str(GOLDEN).expect("linear_golden.json");
    let name = |v: &Value| v["scenario"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        got.iter().map(name).collect::<Vec<_>>(),
        want.iter().map(name).collect::<Vec<_>>(),
        "the scenarios (SYNCSEQ_BLESS=1 records them again)"
    );
    for (got, want) in got.iter().zip(&want) {
        let (g, w) = (got["decisions"].as_array(), want["decisions"].as_array());
        let (g, w) = (g.unwrap(), w.expect("decisions"));
        for (i, (g, w)) in g.iter().zip(w).enumerate() {
            assert!(
                g == w,
                "{}: decision {} differs from the record\n--- recorded\n{}\n--- now\n{}",
                name(got),
                i + 1,
                serde_json::to_string_pretty(w).unwrap(),
                serde_json::to_string_pretty(g).unwrap()
            );
        }
        assert_eq!(g.len(), w.len(), "{}: decisions", name(got));
    }
}

#[test]
fn a_job_names_hash_is_normalised_wherever_it_appears_and_nothing_else() {
    let name = job_name("SyncSequence", "crm", "uid-1", 1, "accounts", 1);
    let hash = &name[name.len() - 8..];
    assert_eq!(
        unhash(&format!("job {name} failed; uid-{name}-1, {name}")),
        "job crm-1-accounts-1-HASH failed; uid-crm-1-accounts-1-HASH-1, crm-1-accounts-1-HASH"
    );
    for kept in [
        "2026-01-05T10:00:00Z".to_string(),
        format!("x-{hash}0"),
        format!("x-{}", &hash[..7]),
        "x-accounts".into(),
    ] {
        assert_eq!(unhash(&kept), kept);
    }
}

#[test]
fn a_skip_reason_outside_the_known_ones_is_refused_and_known_ones_are_dropped() {
    let mut v = json!({"steps": [
        {"phase": "Skipped", "reason": "RunCancelled"},
        {"phase": "Succeeded", "reason": "kept"},
    ]});
    assert_eq!(check_skip_reasons(&v), Ok(()));
    normalise(&mut v);
    assert_eq!(
        v,
        json!({"steps": [{"phase": "Skipped"}, {"phase": "Succeeded", "reason": "kept"}]})
    );
    let bad = json!([{"phase": "Skipped", "reason": "Because"}]);
    assert!(check_skip_reasons(&bad).is_err());
}
