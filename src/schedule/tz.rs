//! `spec.timeZone`: IANA names only, resolved against the tz database bundled into the
//! binary so that results do not depend on the container image's `/usr/share/zoneinfo`.

use jiff::tz::{TimeZone, TimeZoneDatabase};

use super::ScheduleError;

/// `None` or empty => UTC. Accepts IANA names only (e.g. "Europe/Berlin"); rejects
/// garbage and "Local".
///
/// The checks mirror Kubernetes' `validateTimeZone` (apis/batch/validation): each
/// `/`-separated part must be 1–14 characters of `[A-Za-z0-9._+-]`, must not be `.` or
/// `..` and must not start with `-`; `Local` (any case) is refused because it would
/// mean "wherever the controller runs". Unlike jiff, Go's `time.LoadLocation` is
/// case-sensitive, so `europe/berlin` is refused too (with a suggestion).
/// Kubernetes rejects an empty string; here it means "not set", as the API asks.
pub(crate) fn parse_time_zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    let name = match name {
        None | Some("") => return Ok(TimeZone::UTC),
        Some(name) => name,
    };
    let reject = |reason: String| ScheduleError::UnknownTimeZone {
        name: name.to_string(),
        reason,
    };
    if name.eq_ignore_ascii_case("local") {
        return Err(reject(
            "the time zone must be an explicit IANA name such as \"Europe/Berlin\", \
             not the controller's local zone"
                .to_string(),
        ));
    }
    for part in name.split('/') {
        let valid_chars = (1..=14).contains(&part.len())
            && part
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'));
        if !valid_chars || part == "." || part == ".." || part.starts_with('-') {
            return Err(reject(
                "not an IANA time zone name (expected something like \"America/New_York\")"
                    .to_string(),
            ));
        }
    }
    let tz = TimeZoneDatabase::bundled()
        .get(name)
        .map_err(|_| reject("no such time zone in the IANA time zone database".to_string()))?;
    match tz.iana_name() {
        Some(canonical) if canonical != name => Err(reject(format!(
            "time zone names are case-sensitive; did you mean {canonical:?}?"
        ))),
        _ => Ok(tz),
    }
}
