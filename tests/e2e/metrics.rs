//! Metrics that exist from the start (issue 36, acceptance 7): a fresh controller's `/metrics`
//! has every series the chart's PrometheusRule and Grafana dashboard query, so that no panel
//! says "No data" and no `rate()` or `increase()` misses a counter's first sample.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::fixtures::*;
use support::*;
use syncseq::api::RunPhase;

const RULES: &str = include_str!("../../charts/syncseq/files/prometheus-rules.yaml");
const DASHBOARD: &str = include_str!("../../charts/syncseq/files/grafana-dashboard.json");

/// The metric names a shipped file queries, with a histogram's `_bucket`, `_sum` and `_count`
/// taken off as `/metrics` names its family.
fn queried(file: &str) -> Vec<String> {
    let mut names: Vec<String> = file
        .match_indices("syncseq_")
        .map(|(i, _)| {
            let rest = &file[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
                .to_string()
        })
        .filter(|name| name != "syncseq_")
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether the scrape has a sample of `family` (a plain series, or a histogram's buckets).
fn has_sample(scrape: &str, family: &str) -> bool {
    scrape.lines().any(|line| {
        line.strip_prefix(family).is_some_and(|rest| {
            let rest = rest.strip_prefix("_bucket").unwrap_or(rest);
            rest.starts_with('{') || rest.starts_with(' ')
        })
    })
}

#[tokio::test]
async fn a_fresh_controller_exports_every_series_the_shipped_rules_and_dashboard_query() {
    install_crds().await;
    let ns = TestNamespace::new("metrics-start").await;
    // A schedule that does not fire during the test gives the sequence an interval.
    apply_crm(&ns, "300ms", "  schedule: '0 0 1 1 *'\n");
    let controller = ControllerProcess::start(&ns.name);
    let address = controller.metrics_address().await;
    // A run gives the object its last outcome, duration and success; it succeeds, so no
    // failure, rejected row, wait, error or alert delivery has happened.
    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, Duration::from_secs(60)).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Succeeded));
    let finished_in_cache = format!(
        "syncseq_last_run_outcome{{kind=\"SyncSequence\",namespace=\"{}\",name=\"crm\",outcome=\"Succeeded\"}} 1",
        ns.name
    );
    let scrape = eventually(
        Duration::from_secs(10),
        "the finished run in /metrics",
        || async {
            let (code, body) = http_get(&address, "/metrics").await;
            (code == 200 && body.contains(&finished_in_cache)).then_some(body)
        },
    )
    .await;

    let (rules, dashboard) = (queried(RULES), queried(DASHBOARD));
    assert!(
        rules.len() >= 5 && dashboard.len() >= 10,
        "{rules:?} {dashboard:?}"
    );
    let missing: BTreeSet<&String> = rules
        .iter()
        .chain(&dashboard)
        .filter(|name| !has_sample(&scrape, name))
        .collect();
    assert!(
        missing.is_empty(),
        "the shipped rules and dashboard query {missing:?}, which a fresh /metrics lacks:\n{scrape}"
    );

    // At 0 before their first event: per kind, and per step of the sequence once it is seen.
    let mut zeros: Vec<String> = ["SyncSequence", "Sync"]
        .iter()
        .map(|kind| format!("syncseq_reconcile_errors_total{{kind=\"{kind}\"}} 0"))
        .collect();
    for step in CRM_STEPS {
        for family in [
            "syncseq_step_failures_total",
            "syncseq_step_rejected_rows_total",
            "syncseq_step_sync_wait_seconds_total",
        ] {
            zeros.push(format!(
                "{family}{{kind=\"SyncSequence\",namespace=\"{}\",name=\"crm\",step=\"{step}\"}} 0",
                ns.name
            ));
        }
    }
    for outcome in ["SucceededWithErrors", "Failed", "Cancelled"] {
        zeros.push(format!(
            "syncseq_runs_total{{kind=\"SyncSequence\",namespace=\"{}\",name=\"crm\",outcome=\"{outcome}\"}} 0",
            ns.name
        ));
    }
    for series in &zeros {
        assert!(
            scrape
                .lines()
                .any(|l| l == series || l == format!("{series}.0")),
            "{series} not in /metrics:\n{scrape}"
        );
    }
}
