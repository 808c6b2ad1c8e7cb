//! `--wait`: following a run or cancel request through the object's status. What a status
//! says about a request is decided by pure functions; [`watch`] feeds them from a watch.

use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher;

use super::target::Runnable;
use crate::api::{RunPhase, RunStatus, TriggerKind};

/// Where a run request stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunRequest {
    /// The controller has not handled the request yet.
    NotHandled,
    /// Handled; the run waits behind the run in progress (`concurrencyPolicy: Queue`).
    Queued,
    /// The run it started is in progress.
    Running(RunStatus),
    /// The run it started has finished: its phase and, when it is `status.lastRun`, the full
    /// run with its steps.
    Finished {
        id: i64,
        phase: RunPhase,
        run: Option<RunStatus>,
        message: Option<String>,
    },
    /// Handled, but no run started or queued: a run was in progress and the concurrency
    /// policy dropped the request.
    Skipped,
}

/// What `status` says about the request `request` for a run of kind `kind` (`Manual` for
/// `syncseq.dev/requestedAt`, `Retry` for `syncseq.dev/retryRequestedAt`), made when the newest
/// run number was `before`: the request started the first run of that kind numbered above
/// `before`.
pub(crate) fn run_request(
    status: &Runnable,
    kind: TriggerKind,
    request: &str,
    before: i64,
) -> RunRequest {
    let ours = |id: i64, trigger: TriggerKind| id > before && trigger == kind;
    let handled = match kind {
        TriggerKind::Retry => &status.book.last_handled_retry_at,
        _ => &status.book.last_handled_request_at,
    };
    let finished = status
        .book
        .runs
        .iter()
        .filter(|r| ours(r.id, r.trigger))
        .map(|r| (r.id, r.phase, r.message.clone()))
        .chain(
            status
                .last_run
                .iter()
                .filter(|r| ours(r.id, r.trigger))
                .map(|r| (r.id, r.phase, r.message.clone())),
        )
        .min_by_key(|(id, ..)| *id);
    let running = status
        .book
        .current_run
        .as_ref()
        .filter(|r| ours(r.id, r.trigger) && !r.phase.is_finished());
    match (running, finished) {
        (Some(run), Some((id, ..))) if run.id < id => RunRequest::Running(run.as_ref().clone()),
        (_, Some((id, phase, message))) => RunRequest::Finished {
            id,
            phase,
            run: status
                .last_run
                .as_ref()
                .filter(|r| r.id == id)
                .or(status.book.current_run.as_deref().filter(|r| r.id == id))
                .cloned(),
            message,
        },
        (Some(run), None) => RunRequest::Running(run.as_ref().clone()),
        (None, None) if handled.as_deref() != Some(request) => RunRequest::NotHandled,
        (None, None)
            if status
                .book
                .queued_run
                .as_ref()
                .is_some_and(|q| q.trigger == kind) =>
        {
            RunRequest::Queued
        }
        (None, None) => RunRequest::Skipped,
    }
}

/// The run `kubectl syncseq retry` retries: `run`, else the last finished run. Refused, with
/// the reason, when there is nothing to retry: no run has finished, run `run` is neither the
/// last finished run nor in `status.runs`, the run succeeded outright, or its `status.runs`
/// entry keeps no steps (written before the history kept the steps that succeeded). The
/// controller refuses the same runs; refusing here writes nothing.
pub(crate) fn retry_of(status: &Runnable, run: Option<i64>) -> Result<i64, String> {
    let name = status.target.reference();
    // (id, phase, whether the steps that succeeded are known): `lastRun` keeps every step;
    // a line of the history keeps them from when the controller records them there.
    let finished: Vec<(i64, RunPhase, bool)> = status
        .last_run
        .iter()
        .chain(status.book.current_run.as_deref())
        .filter(|r| r.phase.is_finished())
        .map(|r| (r.id, r.phase, true))
        .chain(
            status
                .book
                .runs
                .iter()
                .map(|r| (r.id, r.phase, r.succeeded_steps.is_some())),
        )
        .collect();
    let Some(last) = finished.iter().map(|(id, ..)| *id).max() else {
        return Err(format!("{name} has no finished run to retry"));
    };
    let id = run.unwrap_or(last);
    let Some((_, phase, known)) = finished.iter().find(|(i, ..)| *i == id) else {
        let kept: Vec<String> = status.book.runs.iter().map(|r| r.id.to_string()).collect();
        return Err(format!(
            "run {id} of {name} is not the last finished run ({last}) nor in its history (runs {})",
            if kept.is_empty() {
                "none".into()
            } else {
                kept.join(", ")
            }
        ));
    };
    if *phase == RunPhase::Succeeded {
        return Err(format!(
            "run {id} of {name} Succeeded: nothing to retry (`run` starts a new run)"
        ));
    }
    if !known {
        return Err(format!(
            "run {id} of {name} cannot be retried: its history entry was written before the history kept the steps that succeeded (only the last finished run, {last}, can be)"
        ));
    }
    Ok(id)
}

/// Where a cancel request stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CancelRequest {
    /// The controller has not handled the request yet.
    NotHandled,
    /// Handled; no run was in progress when the request was made.
    NothingToCancel,
    /// Handled; the run that was in progress has ended (cancelled, or finished on its own
    /// just before), with the full run when it is `status.lastRun`.
    Ended {
        id: i64,
        phase: RunPhase,
        run: Option<Box<RunStatus>>,
    },
}

/// What `status` says about the cancel request `request`, made while run `running` (if any)
/// was in progress.
pub(crate) fn cancel_request(
    status: &Runnable,
    request: &str,
    running: Option<i64>,
) -> CancelRequest {
    if status.book.last_handled_cancel_at.as_deref() != Some(request) {
        return CancelRequest::NotHandled;
    }
    let Some(id) = running else {
        return CancelRequest::NothingToCancel;
    };
    if let Some(run) = status.last_run.as_ref().filter(|r| r.id == id) {
        return CancelRequest::Ended {
            id,
            phase: run.phase,
            run: Some(Box::new(run.clone())),
        };
    }
    match status.book.runs.iter().find(|r| r.id == id) {
        Some(r) => CancelRequest::Ended {
            id,
            phase: r.phase,
            run: None,
        },
        None => match status.book.current_run.as_deref().filter(|r| r.id == id) {
            Some(r) if r.phase.is_finished() => CancelRequest::Ended {
                id,
                phase: r.phase,
                run: Some(Box::new(r.clone())),
            },
            // Still running after the request was handled, or gone from the history.
            Some(_) => CancelRequest::NotHandled,
            None => CancelRequest::NothingToCancel,
        },
    }
}

/// Watches the object `name` (`what` in messages) and hands each version to `step` until it
/// returns a value. Fails when the object is deleted or the watch keeps failing.
pub(crate) async fn watch<K, T>(
    api: Api<K>,
    name: &str,
    what: &str,
    mut step: impl FnMut(&K) -> Option<T>,
) -> anyhow::Result<T>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use kube::runtime::WatchStreamExt;
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut failures = 0;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                failures = 0;
                if let Some(v) = step(&obj) {
                    return Ok(v);
                }
            }
            Ok(watcher::Event::Delete(_)) => anyhow::bail!("{what} was deleted"),
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures >= 5 {
                    return Err(anyhow::Error::from(e).context(format!("watching {what}")));
                }
            }
        }
    }
    anyhow::bail!("the watch on {what} ended")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{QueuedRun, RunBook, RunSummary};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn run(id: i64, trigger: TriggerKind, phase: RunPhase) -> RunStatus {
        RunStatus {
            id,
            trigger,
            retry_of: None,
            upstream: None,
            scheduled_time: None,
            start_time: Time("2026-05-01T10:00:00Z".parse().unwrap()),
            completion_time: None,
            phase,
            stopped_by: None,
            progress: "1/1".into(),
            steps: vec![],
            message: None,
        }
    }

    fn summary(r: &RunStatus) -> RunSummary {
        RunSummary {
            id: r.id,
            scheduled_time: None,
            trigger: r.trigger,
            retry_of: None,
            upstream: None,
            phase: r.phase,
            start_time: r.start_time.clone(),
            completion_time: None,
            failed_step: None,
            message: Some(format!("run {} message", r.id)),
            succeeded_steps: None,
        }
    }

    fn handled(value: &str) -> RunBook {
        RunBook {
            last_handled_request_at: Some(value.into()),
            ..Default::default()
        }
    }

    fn status(book: RunBook, last_run: Option<RunStatus>) -> Runnable {
        let mut seq = crate::engine::fixtures::sequence(vec![]);
        seq.status = Some(crate::api::SyncSequenceStatus {
            book,
            last_run: last_run.map(Box::new),
            ..Default::default()
        });
        Runnable::from(&seq)
    }

    #[test]
    fn a_run_request_is_pending_until_the_controller_echoes_it() {
        let st = status(
            RunBook {
                last_handled_request_at: Some("older".into()),
                current_run: Some(Box::new(run(2, TriggerKind::Manual, RunPhase::Running))),
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            run_request(&st, TriggerKind::Manual, "mine", 2),
            RunRequest::NotHandled
        );
        assert_eq!(
            run_request(
                &status(Default::default(), None),
                TriggerKind::Manual,
                "mine",
                0
            ),
            RunRequest::NotHandled
        );
    }

    #[test]
    fn a_run_request_follows_the_first_manual_run_after_it() {
        // A scheduled run that started meanwhile is not ours.
        let st = status(
            RunBook {
                current_run: Some(Box::new(run(3, TriggerKind::Schedule, RunPhase::Running))),
                ..handled("mine")
            },
            None,
        );
        assert_eq!(
            run_request(&st, TriggerKind::Manual, "mine", 2),
            RunRequest::Skipped
        );

        let ours = run(3, TriggerKind::Manual, RunPhase::Running);
        let st = status(
            RunBook {
                current_run: Some(Box::new(ours.clone())),
                ..handled("mine")
            },
            None,
        );
        assert_eq!(
            run_request(&st, TriggerKind::Manual, "mine", 2),
            RunRequest::Running(ours.clone())
        );

        let mut done = ours.clone();
        done.phase = RunPhase::Succeeded;
        let st = status(
            RunBook {
                runs: vec![
                    summary(&done),
                    summary(&run(2, TriggerKind::Manual, RunPhase::Failed)),
                ],
                ..handled("mine")
            },
            Some(done.clone()),
        );
        assert_eq!(
            run_request(&st, TriggerKind::Manual, "mine", 2),
            RunRequest::Finished {
                id: 3,
                phase: RunPhase::Succeeded,
                run: Some(done.clone()),
                message: Some("run 3 message".into()),
            }
        );
        // Someone else's later request has been handled since: ours is still found.
        let st = status(
            RunBook {
                current_run: Some(Box::new(run(4, TriggerKind::Manual, RunPhase::Running))),
                runs: vec![summary(&done)],
                ..handled("theirs")
            },
            Some(done.clone()),
        );
        assert!(matches!(
            run_request(&st, TriggerKind::Manual, "mine", 2),
            RunRequest::Finished { id: 3, .. }
        ));
        // Only the summary is left when newer runs have finished since.
        let st = status(
            RunBook {
                runs: vec![
                    summary(&run(4, TriggerKind::Schedule, RunPhase::Succeeded)),
                    summary(&done),
                ],
                ..handled("mine")
            },
            Some(run(4, TriggerKind::Schedule, RunPhase::Succeeded)),
        );
        assert!(matches!(
            run_request(&st, TriggerKind::Manual, "mine", 2),
            RunRequest::Finished {
                id: 3,
                run: None,
                ..
            }
        ));
    }

    #[test]
    fn a_run_request_dropped_or_queued_by_the_concurrency_policy() {
        let busy = RunBook {
            current_run: Some(Box::new(run(2, TriggerKind::Schedule, RunPhase::Running))),
            ..handled("mine")
        };
        assert_eq!(
            run_request(&status(busy.clone(), None), TriggerKind::Manual, "mine", 2),
            RunRequest::Skipped
        );
        let queued = status(
            RunBook {
                queued_run: Some(Box::new(QueuedRun {
                    trigger: TriggerKind::Manual,
                    retry_of: None,
                    upstream: None,
                    scheduled_time: None,
                })),
                ..busy
            },
            None,
        );
        assert_eq!(
            run_request(&queued, TriggerKind::Manual, "mine", 2),
            RunRequest::Queued
        );
    }

    #[test]
    fn a_cancel_request_reports_the_run_it_ended() {
        let mut cancelled = run(5, TriggerKind::Manual, RunPhase::Cancelled);
        cancelled.message = Some("run cancelled by request".into());
        let st = status(
            RunBook {
                last_handled_cancel_at: Some("c1".into()),
                runs: vec![summary(&cancelled)],
                ..Default::default()
            },
            Some(cancelled.clone()),
        );
        assert_eq!(
            cancel_request(&st, "c2", Some(5)),
            CancelRequest::NotHandled
        );
        assert_eq!(
            cancel_request(&st, "c1", Some(5)),
            CancelRequest::Ended {
                id: 5,
                phase: RunPhase::Cancelled,
                run: Some(Box::new(cancelled))
            }
        );
        assert_eq!(
            cancel_request(&st, "c1", None),
            CancelRequest::NothingToCancel
        );
    }

    #[test]
    fn a_retry_request_follows_the_first_retry_run_and_its_own_echo() {
        let mut retry = run(4, TriggerKind::Retry, RunPhase::Running);
        retry.retry_of = Some(3);
        // A manual request's echo says nothing about a retry request.
        let st = status(handled("mine"), None);
        assert_eq!(
            run_request(&st, TriggerKind::Retry, "mine", 3),
            RunRequest::NotHandled
        );
        let st = status(
            RunBook {
                last_handled_retry_at: Some("mine".into()),
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            run_request(&st, TriggerKind::Retry, "mine", 3),
            RunRequest::Skipped
        );
        // A manual run that started meanwhile is not the retry.
        let st = status(
            RunBook {
                last_handled_retry_at: Some("mine".into()),
                current_run: Some(Box::new(run(4, TriggerKind::Manual, RunPhase::Running))),
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            run_request(&st, TriggerKind::Retry, "mine", 3),
            RunRequest::Skipped
        );
        let st = status(
            RunBook {
                last_handled_retry_at: Some("mine".into()),
                current_run: Some(Box::new(retry.clone())),
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            run_request(&st, TriggerKind::Retry, "mine", 3),
            RunRequest::Running(retry)
        );
    }

    #[test]
    fn retry_refuses_when_there_is_nothing_to_retry() {
        let never = status(Default::default(), None);
        assert_eq!(
            retry_of(&never, None),
            Err("syncsequence.syncseq.dev/crm has no finished run to retry".into())
        );
        // Only a run in progress: nothing has finished yet.
        let running = status(
            RunBook {
                current_run: Some(Box::new(run(1, TriggerKind::Manual, RunPhase::Running))),
                ..Default::default()
            },
            None,
        );
        assert!(retry_of(&running, None).is_err());

        let failed = run(5, TriggerKind::Manual, RunPhase::Failed);
        let st = status(
            RunBook {
                runs: vec![
                    summary(&failed),
                    summary(&run(4, TriggerKind::Schedule, RunPhase::Succeeded)),
                    summary(&run(
                        3,
                        TriggerKind::Schedule,
                        RunPhase::SucceededWithErrors,
                    )),
                ],
                ..Default::default()
            },
            Some(failed),
        );
        assert_eq!(retry_of(&st, None), Ok(5), "the last finished run");
        assert_eq!(
            retry_of(&st, Some(3)),
            Err("run 3 of syncsequence.syncseq.dev/crm cannot be retried: its history entry was written before the history kept the steps that succeeded (only the last finished run, 5, can be)".into())
        );
        let mut st = st;
        st.book.runs[2].succeeded_steps = Some(vec![]);
        assert_eq!(retry_of(&st, Some(3)), Ok(3), "a run of the history");
        assert_eq!(
            retry_of(&st, Some(2)),
            Err("run 2 of syncsequence.syncseq.dev/crm is not the last finished run (5) nor in its history (runs 5, 4, 3)".into())
        );
        assert_eq!(
            retry_of(&st, Some(4)),
            Err("run 4 of syncsequence.syncseq.dev/crm Succeeded: nothing to retry (`run` starts a new run)".into())
        );
    }
}
