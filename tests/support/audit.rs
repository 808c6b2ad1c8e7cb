//! The API server's audit log (hack/cluster-up.sh records every write made with the admin
//! credentials), read to show who wrote what and when.

use std::path::PathBuf;

use jiff::Timestamp;

/// One write the API server answered.
#[derive(Debug, Clone)]
pub struct AuditWrite {
    pub verb: String,
    pub uri: String,
    pub user_agent: String,
    pub code: Option<i64>,
    pub received: Timestamp,
}

fn path() -> PathBuf {
    let env = super::repo_root().join(".cluster/env");
    std::fs::read_to_string(&env)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("AUDIT_LOG=").map(PathBuf::from))
        })
        .unwrap_or_else(|| {
            panic!(
                "{} has no AUDIT_LOG: the local control plane predates the audit log; \
                 restart it (make cluster-down cluster)",
                env.display()
            )
        })
}

/// The writes whose User-Agent contains `agent`.
pub fn writes_by(agent: &str) -> Vec<AuditWrite> {
    let path = path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the audit log {}: {e}", path.display()));
    text.lines()
        .filter(|l| l.contains(agent))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter(|e| e["userAgent"].as_str().is_some_and(|a| a.contains(agent)))
        .filter_map(|e| {
            Some(AuditWrite {
                verb: e["verb"].as_str()?.to_string(),
                uri: e["requestURI"].as_str()?.to_string(),
                user_agent: e["userAgent"].as_str()?.to_string(),
                code: e["responseStatus"]["code"].as_i64(),
                received: e["requestReceivedTimestamp"].as_str()?.parse().ok()?,
            })
        })
        .collect()
}
