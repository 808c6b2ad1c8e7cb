//! Exact percentiles of samples, `/proc` readings and Prometheus text parsing.

use std::collections::BTreeMap;

/// p50 / p90 / p99 / max of a set of samples, nearest-rank, exact (no buckets).
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Self {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((v.len() as f64 * q).ceil() as usize).saturating_sub(1);
            v.get(i).copied().unwrap_or(f64::NAN)
        };
        Summary {
            n: v.len(),
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// "p50 / p90 / p99 / max" in milliseconds, with the sample count.
    pub fn ms(&self) -> String {
        if self.n == 0 {
            return "no samples".into();
        }
        format!(
            "{:.0} / {:.0} / {:.0} / {:.0} ms (n = {})",
            self.p50 * 1e3,
            self.p90 * 1e3,
            self.p99 * 1e3,
            self.max * 1e3,
            self.n
        )
    }
}

/// `a / b`, printed as a ratio, or "—" when either is missing.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "—".into()
    }
}

/// A field of `/proc/<pid>/status`, e.g. `VmHWM:`.
pub fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

/// User plus system CPU seconds of a process, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of every process whose command name is `name` (the control plane's programs).
pub fn cpu_seconds_of(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return f64::NAN;
    };
    // The kernel keeps 15 bytes of a command name: "kube-controller".
    let comm = &name[..name.len().min(15)];
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .map(cpu_seconds)
        .sum()
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// The samples of one metric in Prometheus text format: (labels, value).
pub fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = if let Some(inner) = rest.strip_prefix('{') {
                let (labels, value) = inner.split_once('}')?;
                (parse_labels(labels), value)
            } else if rest.starts_with(' ') {
                (BTreeMap::new(), rest)
            } else {
                return None;
            };
            Some((labels, value.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        out.insert(
            key.trim_start_matches(',').trim().to_string(),
            after[..end].to_string(),
        );
        rest = &after[end + 1..];
    }
    out
}

/// The sum of a metric's samples whose labels include every pair of `select`.
pub fn sum(text: &str, name: &str, select: &[(&str, &str)]) -> f64 {
    samples(text, name)
        .into_iter()
        .filter(|(l, _)| {
            select
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// The percentile of a histogram's increase between two scrapes, as the upper bound of the
/// bucket it falls in (for the API server's and controller manager's own histograms).
pub fn bucket_percentile(
    before: &str,
    after: &str,
    name: &str,
    select: &[(&str, &str)],
    q: f64,
) -> f64 {
    let by_le = |text: &str| {
        let mut m: BTreeMap<String, f64> = BTreeMap::new();
        for (l, v) in samples(text, &format!("{name}_bucket")) {
            if select
                .iter()
                .all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want))
            {
                *m.entry(l.get("le").cloned().unwrap_or_default())
                    .or_default() += v;
            }
        }
        m
    };
    let (b, a) = (by_le(before), by_le(after));
    let mut rows: Vec<(f64, f64)> = a
        .iter()
        .map(|(le, v)| {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            (bound, v - b.get(le).copied().unwrap_or(0.0))
        })
        .collect();
    rows.sort_by(|x, y| x.0.total_cmp(&y.0));
    let total = rows.last().map(|r| r.1).unwrap_or(0.0);
    if total <= 0.0 {
        return f64::NAN;
    }
    rows.iter()
        .find(|(_, c)| *c >= q * total)
        .map(|r| r.0)
        .unwrap_or(f64::NAN)
}
