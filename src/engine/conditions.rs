//! kstatus-style conditions, so Flux, Argo CD and `kubectl wait` understand the resource.
//!
//! `Ready`, `Reconciling` and `Stalled` describe the spec's health; `Running`,
//! `LastRunSucceeded` and `ScheduleStopped` describe data runs, which must not block a GitOps
//! deploy (a schedule that failed runs stopped is not a spec that cannot work: not `Stalled`).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::reasons;

pub(crate) const READY: &str = "Ready";
pub(crate) const RECONCILING: &str = "Reconciling";
pub(crate) const STALLED: &str = "Stalled";
pub(crate) const RUNNING: &str = "Running";
pub(crate) const LAST_RUN_SUCCEEDED: &str = "LastRunSucceeded";
pub(crate) const STATUS_RECOVERED: &str = "StatusRecovered";
pub(crate) const SCHEDULE_STOPPED: &str = "ScheduleStopped";

/// One condition's desired state.
pub(crate) struct Desired<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

/// Sets a condition, keeping `lastTransitionTime` unless the status flips.
pub(crate) fn set(
    conditions: &mut Vec<Condition>,
    d: Desired,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if d.status { "True" } else { "False" }.to_string();
    let new = |transition: Time| Condition {
        type_: d.type_.to_string(),
        status: status.clone(),
        reason: d.reason.to_string(),
        message: d.message.clone(),
        observed_generation: generation,
        last_transition_time: transition,
    };
    match conditions.iter_mut().find(|c| c.type_ == d.type_) {
        Some(c) => {
            let transition = if c.status == status {
                c.last_transition_time.clone()
            } else {
                Time(now)
            };
            *c = new(transition);
        }
        None => conditions.push(new(Time(now))),
    }
}

/// `Running`: True with what is in progress (`Some(message)`), or False with `idle`.
pub(crate) fn set_running(
    conditions: &mut Vec<Condition>,
    in_progress: Option<String>,
    idle: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let desired = match in_progress {
        Some(message) => Desired {
            type_: RUNNING,
            status: true,
            reason: reasons::RUN_IN_PROGRESS,
            message,
        },
        None => Desired {
            type_: RUNNING,
            status: false,
            reason: reasons::IDLE,
            message: idle.into(),
        },
    };
    set(conditions, desired, generation, now);
}

/// `LastRunSucceeded`, as the last finished run ended: `Some((succeeded, reason, message))`;
/// Unknown with `NoRunYet` while no run has finished (`None`). Shared by both kinds.
pub(crate) fn set_last_run(
    conditions: &mut Vec<Condition>,
    ended: Option<(bool, &str, String)>,
    generation: Option<i64>,
    now: Timestamp,
) {
    match ended {
        Some((status, reason, message)) => set(
            conditions,
            Desired {
                type_: LAST_RUN_SUCCEEDED,
                status,
                reason,
                message,
            },
            generation,
            now,
        ),
        None => set_unknown(
            conditions,
            LAST_RUN_SUCCEEDED,
            reasons::NO_RUN_YET,
            "no run has finished yet",
            generation,
            now,
        ),
    }
}

/// Sets a condition to Unknown (`LastRunSucceeded` before any run).
fn set_unknown(
    conditions: &mut Vec<Condition>,
    type_: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == "Unknown" => {
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        Some(c) => {
            *c = Condition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: reason.into(),
                message: message.into(),
                observed_generation: generation,
                last_transition_time: Time(now),
            }
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: "Unknown".into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
}

/// `Ready` is false while an upstream of `spec.after` does not exist: its runs cannot start
/// this object's.
pub(crate) fn upstream_not_found(missing: &[String]) -> (&'static str, String) {
    (
        reasons::UPSTREAM_NOT_FOUND,
        format!(
            "upstream(s) of spec.after not found: {}; their runs cannot start this one's",
            missing.join(", ")
        ),
    )
}

/// The status of a condition, if present.
pub(crate) fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The spec-health conditions, shared by sequences and Syncs. `Stalled` when the spec cannot
/// work (with a Warning Event when it becomes so); `Ready` unless stalled or `not_ready` gives
/// a reason and message; `Reconciling` false, since a decision is recorded in one apply.
#[allow(clippy::too_many_arguments)]
pub(crate) fn set_spec_health(
    conds: &mut Vec<Condition>,
    old: &[Condition],
    spec_error: Option<(&'static str, &str)>,
    not_ready: Option<(&str, String)>,
    ready_message: &str,
    generation: Option<i64>,
    now: Timestamp,
    actions: &mut Vec<super::Action>,
) {
    match spec_error {
        Some((reason, err)) => {
            if !is_true(old, STALLED) {
                actions.push(super::Event::warning(
                    reason,
                    "ValidateSpec",
                    err.to_string(),
                ));
            }
            set(
                conds,
                Desired {
                    type_: STALLED,
                    status: true,
                    reason,
                    message: err.into(),
                },
                generation,
                now,
            );
            set(
                conds,
                Desired {
                    type_: READY,
                    status: false,
                    reason,
                    message: err.into(),
                },
                generation,
                now,
            );
        }
        None => {
            set(
                conds,
                Desired {
                    type_: STALLED,
                    status: false,
                    reason: reasons::SPEC_VALID,
                    message: String::new(),
                },
                generation,
                now,
            );
            let ready = match not_ready {
                Some((reason, message)) => Desired {
                    type_: READY,
                    status: false,
                    reason,
                    message,
                },
                None => Desired {
                    type_: READY,
                    status: true,
                    reason: reasons::RECONCILED,
                    message: ready_message.into(),
                },
            };
            set(conds, ready, generation, now);
        }
    }
    set(
        conds,
        Desired {
            type_: RECONCILING,
            status: false,
            reason: reasons::RECONCILED,
            message: String::new(),
        },
        generation,
        now,
    );
}

/// `StatusRecovered`: present (True) from the reconcile in which the stale-status guard gave up
/// and rebuilt status from the object's Jobs until the next run finishes, so that `kubectl
/// describe` shows why steps of that run say "skipped: status was behind its Jobs" and the
/// wait before it is not silent. Absent otherwise (it is not a health condition).
pub(crate) fn set_recovered(
    conditions: &mut Vec<Condition>,
    recovered: Option<String>,
    run_finished: bool,
    generation: Option<i64>,
    now: Timestamp,
) {
    match recovered {
        Some(message) => set(
            conditions,
            Desired {
                type_: STATUS_RECOVERED,
                status: true,
                reason: reasons::STATUS_BEHIND_JOBS,
                message,
            },
            generation,
            now,
        ),
        None if run_finished => conditions.retain(|c| c.type_ != STATUS_RECOVERED),
        None => {}
    }
}

/// `ScheduleStopped`, present while `spec.stopScheduleAfterFailures` is set (`stop`: whether
/// failed runs in a row stopped the schedule, and the message). True with a Warning Event once,
/// when it becomes so; absent once the field is unset.
pub(crate) fn set_schedule_stopped(
    conditions: &mut Vec<Condition>,
    stop: Option<(bool, String)>,
    generation: Option<i64>,
    now: Timestamp,
    actions: &mut Vec<super::Action>,
) {
    let Some((stopped, message)) = stop else {
        conditions.retain(|c| c.type_ != SCHEDULE_STOPPED);
        return;
    };
    if stopped && !is_true(conditions, SCHEDULE_STOPPED) {
        actions.push(super::Event::warning(
            reasons::CONSECUTIVE_FAILURES,
            "StopSchedule",
            message.clone(),
        ));
    }
    let reason = match stopped {
        true => reasons::CONSECUTIVE_FAILURES,
        false => reasons::BELOW_FAILURE_LIMIT,
    };
    set(
        conditions,
        Desired {
            type_: SCHEDULE_STOPPED,
            status: stopped,
            reason,
            message,
        },
        generation,
        now,
    );
}
