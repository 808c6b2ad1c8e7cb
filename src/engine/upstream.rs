//! Runs started by something upstream finishing (`spec.after`): another SyncSequence or Sync
//! of the namespace. Pure: the controller reads the upstreams' statuses into [`Upstreams`].
//!
//! What has been taken into account of each upstream lives in the object's own status
//! (`status.upstreams`), written together with the run it starts and before that run's first
//! Job. So each upstream run starts at most one run, and a run that finished while the
//! controller was down still starts one when it comes back: it is derived from the upstream's
//! status, not remembered. An upstream seen for the first time is a baseline: the runs it had
//! already finished start nothing.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::triggers::Trigger;
use crate::api::{
    AfterSpec, RunPhase, TriggerKind, UpstreamOutcome, UpstreamRef, UpstreamRequire, UpstreamRun,
    UpstreamStatus,
};

/// One finished run of an upstream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FinishedRun {
    /// A sequence's run number, or the Job name of a Sync's run.
    pub id: String,
    pub phase: RunPhase,
    pub completion: Option<Timestamp>,
}

/// What the engine sees of one upstream that exists.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct UpstreamView {
    pub uid: Option<String>,
    /// Its finished runs as far as its status keeps them, newest first.
    pub finished: Vec<FinishedRun>,
}

/// The upstreams of one object, as the controller found them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Upstreams {
    /// The upstreams of `spec.after` that exist.
    pub views: BTreeMap<UpstreamRef, UpstreamView>,
    /// A cycle of `after` references through this object, as text
    /// ("SyncSequence/a → Sync/b → SyncSequence/a"): upstream triggers are refused.
    pub cycle: Option<String>,
}

/// What the upstreams ask for.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Asked {
    pub trigger: Option<Trigger>,
    /// Upstreams of `spec.after` that do not exist, as text.
    pub missing: Vec<String>,
}

/// Whether a run that ended in `phase` counts.
fn counts(on: UpstreamOutcome, phase: RunPhase) -> bool {
    match on {
        UpstreamOutcome::Succeeded => phase == RunPhase::Succeeded,
        UpstreamOutcome::SucceededWithErrors => {
            matches!(phase, RunPhase::Succeeded | RunPhase::SucceededWithErrors)
        }
        UpstreamOutcome::Finished => phase.is_finished(),
    }
}

/// The newest run of `view` that counts and was not taken into account yet.
fn newest_unhandled<'a>(
    view: &'a UpstreamView,
    entry: &UpstreamStatus,
    on: UpstreamOutcome,
) -> Option<&'a FinishedRun> {
    let handled_time = entry.handled_time.as_ref().map(|t| t.0);
    view.finished
        .iter()
        .take_while(|r| entry.handled_run.as_ref() != Some(&r.id))
        // The history is newest first, but a Sync's run ids (Job names) have no order, and a
        // run that fell out of the handled one's history must not count again.
        .filter(|r| match (handled_time, r.completion) {
            (Some(handled), Some(done)) => done >= handled,
            _ => true,
        })
        .find(|r| counts(on, r.phase))
}

/// Updates `entries` (the object's `status.upstreams`) from what the upstreams show, and
/// returns the trigger they make, if any.
pub(super) fn ask(
    after: Option<&AfterSpec>,
    entries: &mut Vec<UpstreamStatus>,
    upstreams: &Upstreams,
) -> Asked {
    let Some(after) = after else {
        entries.clear();
        return Asked::default();
    };
    entries.retain(|e| after.upstreams.iter().any(|u| is(e, u)));
    if upstreams.cycle.is_some() {
        return Asked::default();
    }
    let mut missing = Vec::new();
    let mut new: Vec<(&UpstreamRef, &FinishedRun)> = Vec::new();
    for up in &after.upstreams {
        let Some(view) = upstreams.views.get(up) else {
            missing.push(up.to_string());
            continue;
        };
        let Some(entry) = entries.iter_mut().find(|e| is(e, up)) else {
            // First sight: what it finished before starts nothing.
            let newest = view.finished.first();
            entries.push(UpstreamStatus {
                kind: up.kind,
                name: up.name.clone(),
                uid: view.uid.clone(),
                handled_run: newest.map(|r| r.id.clone()),
                handled_time: newest.and_then(|r| r.completion).map(Time),
            });
            continue;
        };
        if entry.uid != view.uid {
            // Deleted and created again: every run of the new object is new.
            entry.uid = view.uid.clone();
            entry.handled_run = None;
            entry.handled_time = None;
        }
        if let Some(run) = newest_unhandled(view, entry, after.when) {
            new.push((up, run));
        }
    }
    let fire = match after.require {
        UpstreamRequire::Any => true,
        UpstreamRequire::All => new.len() == after.upstreams.len(),
    };
    // The run that finished last is the one that starts this run.
    let latest = new.iter().max_by_key(|(_, r)| r.completion).copied();
    let Some((up, run)) = latest.filter(|_| fire) else {
        return Asked {
            trigger: None,
            missing,
        };
    };
    for (up, run) in &new {
        if let Some(entry) = entries.iter_mut().find(|e| is(e, up)) {
            entry.handled_run = Some(run.id.clone());
            entry.handled_time = run.completion.map(Time);
        }
    }
    Asked {
        trigger: Some(Trigger {
            kind: TriggerKind::Upstream,
            scheduled: None,
            retry_of: None,
            upstream: Some(UpstreamRun {
                kind: up.kind,
                name: up.name.clone(),
                run: run.id.clone(),
            }),
        }),
        missing,
    }
}

fn is(entry: &UpstreamStatus, up: &UpstreamRef) -> bool {
    entry.kind == up.kind && entry.name == up.name
}

/// How many objects a cycle search visits at most: `after` graphs are small, and this bounds
/// a pathological one.
const MAX_VISITED: usize = 10_000;

/// A loop of runs through `me`, as text, if there is one: `me` runs after an upstream, which
/// finishes a run when some object runs (a sequence itself; a Sync itself, or any sequence
/// with a step that runs it), which runs after its own upstreams, and so on back to `me`.
/// `runners` gives the objects whose runs finish an upstream; `after_of` the `after` of an
/// object, if it exists and has one.
pub(crate) fn find_cycle(
    me: &UpstreamRef,
    after: &AfterSpec,
    runners: impl Fn(&UpstreamRef) -> Vec<UpstreamRef>,
    after_of: impl Fn(&UpstreamRef) -> Option<AfterSpec>,
) -> Option<String> {
    let hop = |up: &UpstreamRef, runner: &UpstreamRef| match up == runner {
        true => up.to_string(),
        false => format!("{up} (run by {runner})"),
    };
    let mut stack: Vec<(UpstreamRef, Vec<String>)> = Vec::new();
    let push = |stack: &mut Vec<_>, path: &Vec<String>, up: &UpstreamRef| {
        for runner in runners(up) {
            let mut next = path.clone();
            next.push(hop(up, &runner));
            stack.push((runner, next));
        }
    };
    for up in &after.upstreams {
        push(&mut stack, &vec![me.to_string()], up);
    }
    let mut visited = HashSet::new();
    while let Some((node, path)) = stack.pop() {
        if &node == me {
            return Some(path.join(" → "));
        }
        if visited.len() >= MAX_VISITED || !visited.insert(node.clone()) {
            continue;
        }
        for up in after_of(&node).into_iter().flat_map(|a| a.upstreams) {
            push(&mut stack, &path, &up);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::UpstreamKind;

    fn seq(name: &str) -> UpstreamRef {
        UpstreamRef {
            kind: UpstreamKind::SyncSequence,
            name: name.into(),
        }
    }

    fn after(ups: &[&str], on: UpstreamOutcome, require: UpstreamRequire) -> AfterSpec {
        AfterSpec {
            upstreams: ups.iter().map(|u| seq(u)).collect(),
            when: on,
            require,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// An upstream whose runs `(id, phase, finished at)` are given oldest first.
    fn view(uid: &str, runs: &[(i64, RunPhase, i64)]) -> UpstreamView {
        UpstreamView {
            uid: Some(uid.into()),
            finished: runs
                .iter()
                .rev()
                .map(|(id, phase, done)| FinishedRun {
                    id: id.to_string(),
                    phase: *phase,
                    completion: Some(at(*done)),
                })
                .collect(),
        }
    }

    fn world(views: &[(&str, UpstreamView)]) -> Upstreams {
        Upstreams {
            views: views.iter().map(|(n, v)| (seq(n), v.clone())).collect(),
            cycle: None,
        }
    }

    fn started_by(asked: &Asked) -> Option<String> {
        asked
            .trigger
            .as_ref()
            .and_then(|t| t.upstream.as_ref())
            .map(|u| format!("{}#{}", u.name, u.run))
    }

    use RunPhase::{Cancelled, Failed, Succeeded, SucceededWithErrors};

    #[test]
    fn first_sight_is_a_baseline_and_each_new_run_starts_one_run() {
        let spec = after(&["a"], UpstreamOutcome::Succeeded, UpstreamRequire::Any);
        let mut entries = Vec::new();
        let old = world(&[("a", view("u", &[(1, Succeeded, 10)]))]);
        assert_eq!(started_by(&ask(Some(&spec), &mut entries, &old)), None);
        assert_eq!(entries[0].handled_run.as_deref(), Some("1"));
        // Asked again with nothing new: nothing.
        assert_eq!(started_by(&ask(Some(&spec), &mut entries, &old)), None);
        let new = world(&[("a", view("u", &[(1, Succeeded, 10), (2, Succeeded, 20)]))]);
        assert_eq!(
            started_by(&ask(Some(&spec), &mut entries, &new)),
            Some("a#2".into())
        );
        // The same observation again (a replay after a lost reply, a second replica): nothing.
        assert_eq!(started_by(&ask(Some(&spec), &mut entries, &new)), None);
    }

    #[test]
    fn which_runs_count_is_the_users_choice() {
        let table = [
            (UpstreamOutcome::Succeeded, Succeeded, true),
            (UpstreamOutcome::Succeeded, SucceededWithErrors, false),
            (UpstreamOutcome::Succeeded, Failed, false),
            (
                UpstreamOutcome::SucceededWithErrors,
                SucceededWithErrors,
                true,
            ),
            (UpstreamOutcome::SucceededWithErrors, Failed, false),
            (UpstreamOutcome::Finished, Failed, true),
            (UpstreamOutcome::Finished, Cancelled, true),
        ];
        for (on, phase, starts) in table {
            let spec = after(&["a"], on, UpstreamRequire::Any);
            let mut entries = Vec::new();
            ask(Some(&spec), &mut entries, &world(&[("a", view("u", &[]))]));
            let asked = ask(
                Some(&spec),
                &mut entries,
                &world(&[("a", view("u", &[(1, phase, 10)]))]),
            );
            assert_eq!(asked.trigger.is_some(), starts, "{on:?} {phase:?}");
        }
    }

    #[test]
    fn runs_missed_while_away_start_one_run_for_the_newest_that_counts() {
        let spec = after(&["a"], UpstreamOutcome::Succeeded, UpstreamRequire::Any);
        let mut entries = Vec::new();
        ask(
            Some(&spec),
            &mut entries,
            &world(&[("a", view("u", &[(1, Succeeded, 10)]))]),
        );
        // Three runs ended while the controller was down; the newest failed.
        let later = world(&[(
            "a",
            view(
                "u",
                &[
                    (1, Succeeded, 10),
                    (2, Succeeded, 20),
                    (3, Succeeded, 30),
                    (4, Failed, 40),
                ],
            ),
        )]);
        assert_eq!(
            started_by(&ask(Some(&spec), &mut entries, &later)),
            Some("a#3".into())
        );
        assert_eq!(started_by(&ask(Some(&spec), &mut entries, &later)), None);
    }

    #[test]
    fn a_recreated_upstream_is_another_object_and_a_run_out_of_history_does_not_count_again() {
        let spec = after(&["a"], UpstreamOutcome::Succeeded, UpstreamRequire::Any);
        let mut entries = Vec::new();
        ask(
            Some(&spec),
            &mut entries,
            &world(&[("a", view("u1", &[(7, Succeeded, 70)]))]),
        );
        // Recreated: its run 1 is new although 1 < 7.
        let again = world(&[("a", view("u2", &[(1, Succeeded, 80)]))]);
        assert_eq!(
            started_by(&ask(Some(&spec), &mut entries, &again)),
            Some("a#1".into())
        );
        // The handled run left the history (historyLimit); older runs still do not count.
        let rotated = world(&[("a", view("u2", &[(0, Succeeded, 75)]))]);
        assert_eq!(started_by(&ask(Some(&spec), &mut entries, &rotated)), None);
    }

    #[test]
    fn all_waits_for_every_upstream_since_the_last_run_any_takes_each() {
        let all = after(
            &["a", "b"],
            UpstreamOutcome::Succeeded,
            UpstreamRequire::All,
        );
        let mut entries = Vec::new();
        let none = world(&[("a", view("u", &[])), ("b", view("v", &[]))]);
        ask(Some(&all), &mut entries, &none);
        let a_done = world(&[
            ("a", view("u", &[(1, Succeeded, 10)])),
            ("b", view("v", &[])),
        ]);
        assert_eq!(started_by(&ask(Some(&all), &mut entries, &a_done)), None);
        let both = world(&[
            ("a", view("u", &[(1, Succeeded, 10)])),
            ("b", view("v", &[(1, Succeeded, 15)])),
        ]);
        assert_eq!(
            started_by(&ask(Some(&all), &mut entries, &both)),
            Some("b#1".into()),
            "the upstream that finished last started it"
        );
        // Since that run, only a has run again: All waits.
        let a_again = world(&[
            ("a", view("u", &[(1, Succeeded, 10), (2, Succeeded, 30)])),
            ("b", view("v", &[(1, Succeeded, 15)])),
        ]);
        assert_eq!(started_by(&ask(Some(&all), &mut entries, &a_again)), None);

        let any = after(
            &["a", "b"],
            UpstreamOutcome::Succeeded,
            UpstreamRequire::Any,
        );
        let mut entries = Vec::new();
        ask(Some(&any), &mut entries, &none);
        assert_eq!(
            started_by(&ask(Some(&any), &mut entries, &a_done)),
            Some("a#1".into())
        );
        // Both finished at once: one run, and neither starts another.
        let mut entries = Vec::new();
        ask(Some(&any), &mut entries, &none);
        assert!(ask(Some(&any), &mut entries, &both).trigger.is_some());
        assert!(ask(Some(&any), &mut entries, &both).trigger.is_none());
    }

    #[test]
    fn a_missing_upstream_is_reported_and_a_cycle_starts_nothing() {
        let spec = after(
            &["a", "gone"],
            UpstreamOutcome::Succeeded,
            UpstreamRequire::Any,
        );
        let mut entries = Vec::new();
        let asked = ask(Some(&spec), &mut entries, &world(&[("a", view("u", &[]))]));
        assert_eq!(asked.missing, vec!["SyncSequence/gone".to_string()]);
        let mut cyclic = world(&[("a", view("u", &[(1, Succeeded, 10)]))]);
        cyclic.cycle = Some("SyncSequence/x → SyncSequence/a → SyncSequence/x".into());
        assert_eq!(ask(Some(&spec), &mut entries, &cyclic), Asked::default());
    }

    #[test]
    fn loops_of_runs_through_the_object_are_found_and_others_are_not_its_concern() {
        let graph: BTreeMap<&str, &[&str]> = BTreeMap::from([
            ("me", &["a", "x"][..]),
            ("a", &["b"][..]),
            ("b", &["me"][..]),
            ("x", &["y"][..]),
            ("y", &["x"][..]),
            ("self", &["self"][..]),
        ]);
        let after_of = |up: &UpstreamRef| {
            graph
                .get(up.name.as_str())
                .map(|ups| after(ups, UpstreamOutcome::Succeeded, UpstreamRequire::Any))
        };
        let itself = |up: &UpstreamRef| vec![up.clone()];
        let spec = after_of(&seq("me")).unwrap();
        assert_eq!(
            find_cycle(&seq("me"), &spec, itself, after_of).as_deref(),
            Some("SyncSequence/me → SyncSequence/a → SyncSequence/b → SyncSequence/me")
        );
        let spec = after_of(&seq("self")).unwrap();
        assert_eq!(
            find_cycle(&seq("self"), &spec, itself, after_of).as_deref(),
            Some("SyncSequence/self → SyncSequence/self")
        );
        // x and y loop between themselves; an object after x is not in a loop.
        let spec = after(&["x"], UpstreamOutcome::Succeeded, UpstreamRequire::Any);
        assert_eq!(find_cycle(&seq("z"), &spec, itself, after_of), None);

        // A sequence after a Sync that one of its own steps runs: each of its runs would make
        // the Sync succeed, which would start it again.
        let contacts = UpstreamRef {
            kind: UpstreamKind::Sync,
            name: "contacts".into(),
        };
        let runners = |up: &UpstreamRef| match up.kind {
            UpstreamKind::Sync => vec![up.clone(), seq("crm")],
            UpstreamKind::SyncSequence | UpstreamKind::WebhookReceiver => vec![up.clone()],
        };
        let spec = AfterSpec {
            upstreams: vec![contacts.clone()],
            when: UpstreamOutcome::Succeeded,
            require: UpstreamRequire::Any,
        };
        assert_eq!(
            find_cycle(&seq("crm"), &spec, runners, |_: &UpstreamRef| None).as_deref(),
            Some("SyncSequence/crm → Sync/contacts (run by SyncSequence/crm)")
        );
        // Another sequence after the same Sync is no loop.
        assert_eq!(
            find_cycle(&seq("audit"), &spec, runners, |_: &UpstreamRef| None),
            None
        );
    }

    #[test]
    fn a_receivers_deliveries_are_runs_and_combine_with_a_sequence_under_all() {
        let hook = UpstreamRef {
            kind: UpstreamKind::WebhookReceiver,
            name: "dbt".into(),
        };
        let spec = AfterSpec {
            upstreams: vec![hook.clone(), seq("a")],
            when: UpstreamOutcome::Succeeded,
            require: UpstreamRequire::All,
        };
        let delivery = |id: &str, phase, done| FinishedRun {
            id: id.into(),
            phase,
            completion: Some(at(done)),
        };
        let world = |deliveries: Vec<FinishedRun>, a: UpstreamView| Upstreams {
            views: [
                (
                    hook.clone(),
                    UpstreamView {
                        uid: Some("h".into()),
                        finished: deliveries,
                    },
                ),
                (seq("a"), a),
            ]
            .into_iter()
            .collect(),
            cycle: None,
        };
        let mut entries = Vec::new();
        assert_eq!(
            started_by(&ask(
                Some(&spec),
                &mut entries,
                &world(vec![], view("u", &[]))
            )),
            None
        );
        // A failed dbt run does not count; a successful one waits for a as well.
        let failed = vec![delivery("dbt-job-1-run-1", Failed, 5)];
        let a_done = view("u", &[(1, Succeeded, 6)]);
        assert_eq!(
            started_by(&ask(
                Some(&spec),
                &mut entries,
                &world(failed.clone(), a_done.clone())
            )),
            None
        );
        let ok = [vec![delivery("dbt-job-1-run-2", Succeeded, 7)], failed].concat();
        assert_eq!(
            started_by(&ask(
                Some(&spec),
                &mut entries,
                &world(ok.clone(), a_done.clone())
            ))
            .as_deref(),
            Some("dbt#dbt-job-1-run-2")
        );
        // Both are taken into account: the same state starts nothing more.
        assert_eq!(
            started_by(&ask(Some(&spec), &mut entries, &world(ok, a_done))),
            None
        );
    }

    #[test]
    fn removing_after_or_an_upstream_forgets_what_was_handled() {
        let spec = after(
            &["a", "b"],
            UpstreamOutcome::Succeeded,
            UpstreamRequire::Any,
        );
        let mut entries = Vec::new();
        let w = world(&[("a", view("u", &[])), ("b", view("v", &[]))]);
        ask(Some(&spec), &mut entries, &w);
        assert_eq!(entries.len(), 2);
        ask(
            Some(&after(
                &["b"],
                UpstreamOutcome::Succeeded,
                UpstreamRequire::Any,
            )),
            &mut entries,
            &w,
        );
        assert_eq!(entries.len(), 1);
        ask(None, &mut entries, &w);
        assert!(entries.is_empty());
    }
}
