//! A memory cgroup for the controller, limited to the Helm chart's memory limit, so that the
//! benchmark shows whether the chart's default would keep the controller alive (acceptance:
//! no restart). cgroup v1 and v2; `None` where the machine does not allow one.

use std::path::{Path, PathBuf};

pub struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
}

/// This process's cgroup path for the memory controller (v1) or the unified hierarchy (v2).
fn own_path() -> Option<(String, bool)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let ours = if v2 {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == "memory")
        };
        ours.then(|| (path.trim_start_matches('/').to_string(), v2))
    })
}

impl MemoryCgroup {
    pub fn create(limit_bytes: u64) -> Result<Self, String> {
        let (path, v2) = own_path().ok_or("no memory cgroup in /proc/self/cgroup")?;
        let root = if v2 {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/memory")
        };
        let dir = root
            .join(path)
            .join(format!("syncseq-bench-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cgroup = MemoryCgroup { dir, v2 };
        let (limit, swap) = if v2 {
            ("memory.max", "memory.swap.max")
        } else {
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        };
        cgroup.write(limit, &limit_bytes.to_string())?;
        // No swap to hide an overrun in (absent when the kernel accounts no swap).
        let no_swap = if v2 {
            "0".to_string()
        } else {
            limit_bytes.to_string()
        };
        let _ = cgroup.write(swap, &no_swap);
        Ok(cgroup)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.dir.join(file), value)
            .map_err(|e| format!("writing {file} of {}: {e}", self.dir.display()))
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    pub fn add(&self, pid: u32) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// The most memory the cgroup was charged, as the kernel counts it for an OOM kill.
    pub fn peak_bytes(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        self.read(file).trim().parse().ok()
    }

    /// How many processes the kernel killed for going over the limit.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.read(file)
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once the controller is gone.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The chart's default memory limit (`resources.limits.memory` in values.yaml), in bytes.
pub fn chart_limit(values: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(values).map_err(|e| format!("{}: {e}", values.display()))?;
    let doc: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
    let quantity = doc["resources"]["limits"]["memory"]
        .as_str()
        .ok_or("values.yaml has no resources.limits.memory")?;
    let (digits, unit) = quantity.split_at(
        quantity
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(quantity.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("memory limit {quantity:?}"))?;
    let scale = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(format!("memory limit {quantity:?}: unknown unit")),
    };
    Ok(n * scale)
}
