//! The order of a sequence's steps: which steps each one waits for, and whether its `runWhen`
//! rule is met by how they ended. Pure, and shared by the engine and the plugin.

use crate::api::{RunWhen, Step, StepPhase, StepStatus};

/// The names of the steps step `i` waits for: its `dependsOn`, or the step listed before it.
///
/// Only steps listed before `i` count. The API server refuses any other name, so this only
/// matters for an object written past its CRD's rules: an unknown or later name is ignored
/// rather than waited for forever, and no cycle can form.
pub(crate) fn parents(steps: &[Step], i: usize) -> Vec<&str> {
    let Some(step) = steps.get(i) else {
        return Vec::new();
    };
    match &step.depends_on {
        None => i
            .checked_sub(1)
            .and_then(|p| steps.get(p))
            .map(|p| p.name.as_str())
            .into_iter()
            .collect(),
        Some(names) => {
            let earlier = &steps[..i];
            let mut out: Vec<&str> = Vec::new();
            for name in names {
                if let Some(p) = earlier.iter().find(|p| p.name == *name)
                    && !out.contains(&p.name.as_str())
                {
                    out.push(p.name.as_str());
                }
            }
            out
        }
    }
}

/// How a step that ended counts for the steps that wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Succeeded, or failed under a `Continue` policy.
    Succeeded,
    /// Failed (under either policy: for `AnyFailed`, a tolerated failure is a failure too).
    /// `stopped` when its policy was `Stop`.
    Failed { stopped: bool },
    /// Skipped or cancelled: it did not run to its end.
    NotRun,
}

/// What a step's rule says, given how its parents stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The step may start.
    Run,
    /// Some parent has not ended and the rule may still be met: wait for these.
    Wait(Vec<String>),
    /// The rule can no longer be met.
    Skip {
        reason: &'static str,
        /// The step whose outcome decided it (a failed or skipped parent).
        because: String,
    },
}

/// Applies `rule` to the parents (name, how it ended, or None while it has not).
///
/// `AllSucceeded` is decided as soon as one parent failed under `Stop` or did not run: it
/// cannot be met any more, so the step is skipped at once rather than after its other parents.
/// The other rules need every parent ended.
pub(crate) fn verdict(rule: RunWhen, parents: &[(&str, Option<Ended>)]) -> Verdict {
    let waiting: Vec<String> = parents
        .iter()
        .filter(|(_, e)| e.is_none())
        .map(|(n, _)| n.to_string())
        .collect();
    let blocker = parents.iter().find(|(_, e)| {
        matches!(
            e,
            Some(Ended::Failed { stopped: true }) | Some(Ended::NotRun)
        )
    });
    match rule {
        RunWhen::AllSucceeded => match blocker {
            Some((name, _)) => Verdict::Skip {
                reason: super::reasons::SKIP_UPSTREAM_FAILED,
                because: name.to_string(),
            },
            None if waiting.is_empty() => Verdict::Run,
            None => Verdict::Wait(waiting),
        },
        RunWhen::AllFinished if waiting.is_empty() => Verdict::Run,
        RunWhen::AnyFailed if waiting.is_empty() => {
            if parents
                .iter()
                .any(|(_, e)| matches!(e, Some(Ended::Failed { .. })))
            {
                Verdict::Run
            } else {
                Verdict::Skip {
                    reason: super::reasons::SKIP_UPSTREAM_SUCCEEDED,
                    because: parents
                        .first()
                        .map(|(n, _)| n.to_string())
                        .unwrap_or_default(),
                }
            }
        }
        RunWhen::AllFinished | RunWhen::AnyFailed => Verdict::Wait(waiting),
    }
}

/// How a step of a run ended, if it did. `stopped` says whether its failure was under `Stop`.
/// A step removed from the spec mid-run is out of the graph: the steps after it go on as if
/// it had succeeded, as they did when a run was a line.
pub(crate) fn ended(step: &StepStatus, stopped: bool) -> Option<Ended> {
    // Closed when status was behind its Jobs, which showed a step after it started: it must
    // have let that step start.
    if [
        super::reasons::SKIP_STEP_REMOVED,
        super::reasons::SKIP_STATUS_BEHIND_JOBS,
    ]
    .iter()
    .any(|r| step.reason.as_deref() == Some(*r))
    {
        return Some(Ended::Succeeded);
    }
    match step.phase {
        StepPhase::Succeeded => Some(Ended::Succeeded),
        StepPhase::Failed => Some(Ended::Failed { stopped }),
        StepPhase::Skipped | StepPhase::Cancelled => Some(Ended::NotRun),
        StepPhase::Pending | StepPhase::Waiting | StepPhase::Running => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fixtures::step;
    use crate::engine::reasons::{SKIP_UPSTREAM_FAILED, SKIP_UPSTREAM_SUCCEEDED};

    fn after(name: &str, deps: &[&str]) -> Step {
        Step {
            depends_on: Some(deps.iter().map(|d| d.to_string()).collect()),
            ..step(name)
        }
    }

    #[test]
    fn parents_default_to_the_step_listed_before_and_ignore_what_the_api_refuses() {
        let steps = vec![
            step("accounts"),
            after("workspaces", &["accounts"]),
            after("deals", &["accounts"]),
            after("contacts", &["workspaces", "deals", "deals"]),
            after("audit", &[]),
            step("summary"),
            // Names the API server refuses: unknown, itself, a later step.
            after("odd", &["nope", "odd", "later", "audit"]),
            step("later"),
        ];
        let all: Vec<Vec<&str>> = (0..steps.len()).map(|i| parents(&steps, i)).collect();
        assert_eq!(
            all,
            vec![
                vec![],
                vec!["accounts"],
                vec!["accounts"],
                vec!["workspaces", "deals"],
                vec![],
                vec!["audit"],
                vec!["audit"],
                vec!["odd"],
            ]
        );
        assert!(parents(&steps, 99).is_empty());
    }

    #[test]
    fn each_rule_runs_waits_or_skips_by_how_the_parents_ended() {
        use Ended::*;
        let ok = Some(Succeeded);
        let tolerated = Some(Failed { stopped: false });
        let stopped = Some(Failed { stopped: true });
        let not_run = Some(NotRun);
        let run = Verdict::Run;
        let wait = |n: &[&str]| Verdict::Wait(n.iter().map(|s| s.to_string()).collect());
        let skip = |reason, because: &str| Verdict::Skip {
            reason,
            because: because.into(),
        };
        type Case<'a> = (RunWhen, Vec<(&'a str, Option<Ended>)>, Verdict);
        let cases: Vec<Case> = vec![
            (RunWhen::AllSucceeded, vec![], run.clone()),
            (
                RunWhen::AllSucceeded,
                vec![("a", ok), ("b", tolerated)],
                run.clone(),
            ),
            (
                RunWhen::AllSucceeded,
                vec![("a", ok), ("b", None)],
                wait(&["b"]),
            ),
            // Decided before the other parent ends.
            (
                RunWhen::AllSucceeded,
                vec![("a", None), ("b", stopped)],
                skip(SKIP_UPSTREAM_FAILED, "b"),
            ),
            (
                RunWhen::AllSucceeded,
                vec![("a", not_run), ("b", ok)],
                skip(SKIP_UPSTREAM_FAILED, "a"),
            ),
            (
                RunWhen::AllFinished,
                vec![("a", stopped), ("b", None)],
                wait(&["b"]),
            ),
            (
                RunWhen::AllFinished,
                vec![("a", stopped), ("b", not_run)],
                run.clone(),
            ),
            (
                RunWhen::AnyFailed,
                vec![("a", tolerated), ("b", ok)],
                run.clone(),
            ),
            (
                RunWhen::AnyFailed,
                vec![("a", stopped), ("b", None)],
                wait(&["b"]),
            ),
            (
                RunWhen::AnyFailed,
                vec![("a", ok), ("b", not_run)],
                skip(SKIP_UPSTREAM_SUCCEEDED, "a"),
            ),
        ];
        for (rule, parents, want) in cases {
            assert_eq!(verdict(rule, &parents), want, "{rule:?} {parents:?}");
        }
    }
}
