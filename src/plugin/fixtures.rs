//! Builders for the plugin's tests.

use crate::api::{StepPhase, StepStatus};

/// Step `name` of a run, running the Sync of the same name, in `phase`, with nothing else
/// recorded yet: tests set the fields they look at (`StepStatus { .., ..step(name, phase) }`).
pub(crate) fn step(name: &str, phase: StepPhase) -> StepStatus {
    StepStatus {
        phase,
        ..StepStatus::pending(name, name)
    }
}
