//! Builders for the plugin's tests.

use crate::api::{StepPhase, StepStatus};

/// Step `name` of a run, running the Sync of the same name, in `phase`, with nothing else
/// recorded yet: tests set the fields they look at (`StepStatus { .., ..step(name, phase) }`).
pub(crate) fn step(name: &str, phase: StepPhase) -> StepStatus {
    StepStatus {
        name: name.into(),
        sync: name.into(),
        phase,
        job_name: None,
        job_uid: None,
        attempt_failure: None,
        attempts: 0,
        start_time: None,
        completion_time: None,
        rows_synced: None,
        rows_rejected: None,
        message: None,
    }
}
