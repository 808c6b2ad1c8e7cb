//! The API server's audit log (hack/cluster-up.sh records every write made with the admin
//! credentials), read to show who wrote what and when.

use std::path::PathBuf;

use jiff::Timestamp;

/// One write the API server answered.
#[derive(Debug, Clone)]
pub struct AuditWrite {
    pub verb: String,
    pub uri: String,
    /// `jobs`, `syncsequences/status`, `events`, ...
    pub resource: String,
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

/// The writes whose User-Agent contains `agent`, from the audit log and its rotated backups.
pub fn writes_by(agent: &str) -> Vec<AuditWrite> {
    let path = path();
    let dir = path.parent().expect("the audit log's directory");
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("audit")
        .to_string();
    // kube-apiserver rotates `audit.log` to `audit-<time>.log`.
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{stem}-")) && n.ends_with(".log"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.push(path);
    files.iter().flat_map(|file| read(file, agent)).collect()
}

fn read(path: &std::path::Path, agent: &str) -> Vec<AuditWrite> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return vec![];
    };
    text.lines()
        .filter(|l| l.contains(agent))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter(|e| e["userAgent"].as_str().is_some_and(|a| a.contains(agent)))
        .filter_map(|e| {
            let object = &e["objectRef"];
            let resource = match (object["resource"].as_str(), object["subresource"].as_str()) {
                (Some(r), Some(sub)) => format!("{r}/{sub}"),
                (Some(r), None) => r.to_string(),
                _ => String::new(),
            };
            Some(AuditWrite {
                verb: e["verb"].as_str()?.to_string(),
                uri: e["requestURI"].as_str()?.to_string(),
                resource,
                user_agent: e["userAgent"].as_str()?.to_string(),
                code: e["responseStatus"]["code"].as_i64(),
                received: e["requestReceivedTimestamp"].as_str()?.parse().ok()?,
            })
        })
        .collect()
}
