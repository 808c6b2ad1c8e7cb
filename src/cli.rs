//! The `syncseq` command line: the controller, CRD generation and schedule preview.

use std::io::Write;

use clap::{Parser, Subcommand};

use crate::schedule;

#[derive(Parser, Debug)]
#[command(
    name = "syncseq",
    version,
    about = "Runs ordered, scheduled chains of data syncs on Kubernetes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller.
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd {
        /// As the Helm chart's template (`charts/syncseq/templates/crds.yaml`).
        #[arg(long)]
        helm: bool,
    },
    /// Schedule tools.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// The kubectl plugin: run, retry, cancel, suspend, resume, backfill, status, history,
    /// graph, logs, dashboard, completion.
    ///
    /// Installed (copied or symlinked) as `kubectl-syncseq` on PATH, the binary runs these
    /// commands as `kubectl syncseq ...`.
    Plugin(crate::plugin::PluginArgs),
}

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "SYNCSEQ_NAMESPACE")]
    pub namespace: Option<String>,
    /// Reconcile only the SyncSequences, Syncs and WebhookReceivers this label selector
    /// matches (e.g. `sharding.syncseq.dev/shard=a`, or `!sharding.syncseq.dev/shard` for the
    /// objects of no shard); their Jobs follow them. Each selector elects its own leader on a
    /// Lease named after it. See docs/sharding.md.
    #[arg(long, env = "SYNCSEQ_SHARD_SELECTOR", value_name = "SELECTOR")]
    pub shard_selector: Option<String>,
    /// Log format.
    #[arg(long, env = "SYNCSEQ_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `syncseq=debug`).
    #[arg(long, env = "SYNCSEQ_LOG", default_value = "info")]
    pub log_level: String,
    /// Instance name reported in Events and used as the leader-election identity
    /// (defaults to a name made of the host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Address of the /metrics, /healthz and /readyz endpoints (port 0 picks a free port).
    #[arg(long, env = "SYNCSEQ_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: String,
    /// Export each object's own series, labelled by `name` (and `step`): its state, runs and
    /// steps. `--metrics-per-object=false` leaves the aggregates by kind and namespace alone,
    /// which the chart's alerts and dashboard work with: kilobytes per namespace instead of
    /// about 1 KB per sequence.
    #[arg(
        long,
        env = "SYNCSEQ_METRICS_PER_OBJECT",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub metrics_per_object: bool,
    /// Export per-object series only for the objects of these namespaces (all when unset);
    /// the others count in the aggregates only. Repeat, or separate with commas.
    #[arg(
        long,
        env = "SYNCSEQ_METRICS_PER_OBJECT_NAMESPACES",
        value_delimiter = ',',
        value_name = "NAMESPACE"
    )]
    pub metrics_per_object_namespaces: Vec<String>,
    /// How many of its schedule's intervals an object may go without a success before it
    /// counts in `syncseq_objects_stale` (the chart's `metrics.prometheusRule.staleIntervals`).
    #[arg(long, env = "SYNCSEQ_METRICS_STALE_INTERVALS", default_value_t = 3.0, value_parser = stale_intervals)]
    pub metrics_stale_intervals: f64,
    /// Take part in Lease-based leader election; only the leader reconciles (the default).
    #[arg(long, overrides_with = "no_leader_election")]
    pub leader_election: bool,
    /// Reconcile without leader election (a single replica).
    #[arg(long, overrides_with = "leader_election")]
    pub no_leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "syncseq-controller")]
    pub lease_name: String,
    /// Namespace of the Lease (defaults to the watched namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds a lease lasts without renewal: how long a standby waits after the leader dies.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Hosts or CIDRs alert webhooks may reach although they are loopback, link-local or
    /// unspecified addresses (refused by default). Repeat, or separate with commas.
    #[arg(long, env = "SYNCSEQ_WEBHOOK_ALLOW", value_delimiter = ',')]
    pub webhook_allow: Vec<String>,
    /// A PEM file of CA certificates alert webhooks trust besides the operating system's
    /// (a private CA, a TLS-inspecting proxy's). Webhooks also honour HTTPS_PROXY, HTTP_PROXY
    /// and NO_PROXY.
    #[arg(long, env = "SYNCSEQ_WEBHOOK_CA_BUNDLE", value_name = "PATH")]
    pub webhook_ca_bundle: Option<std::path::PathBuf>,
    /// Seconds a watch may keep failing (or, doubled, a reconcile may run) before /healthz
    /// fails.
    #[arg(long, env = "SYNCSEQ_HEALTH_STALL_SECONDS", default_value_t = 60)]
    pub health_stall_seconds: u64,
    /// Seconds a request to the API server (other than a watch) may go unanswered before it is
    /// abandoned and the reconcile retried.
    #[arg(long, env = "SYNCSEQ_API_TIMEOUT_SECONDS", default_value_t = 30)]
    pub api_timeout_seconds: u64,
    /// Requests to the API server in flight at once (watches count only while they start);
    /// more wait for a place. Bounds the controller's connections and memory when many runs
    /// start at once.
    #[arg(long, env = "SYNCSEQ_API_MAX_IN_FLIGHT", default_value_t = 32)]
    pub api_max_in_flight: usize,
    /// Reconciles of each kind (sequences, Syncs) at once; 0 for no limit. Like the Job and
    /// CronJob controllers' `--concurrent-*-syncs`: what waits beyond it costs only a queue
    /// entry. A run in progress and a scheduled time that has come may take every place; other
    /// work (manual requests, idle objects' checks) half of them.
    #[arg(long, env = "SYNCSEQ_CONCURRENT_RECONCILES", default_value_t = 64)]
    pub concurrent_reconciles: u16,
    /// Address of the webhook endpoint for WebhookReceivers (e.g. `0.0.0.0:9292`); off when
    /// unset. Every replica serves it, standbys too.
    #[arg(long, env = "SYNCSEQ_RECEIVER_ADDRESS")]
    pub receiver_address: Option<String>,
    /// Deliveries each WebhookReceiver takes per second, sustained; more get 429.
    #[arg(long, env = "SYNCSEQ_RECEIVER_RATE", default_value_t = std::num::NonZeroU32::new(5).unwrap())]
    pub receiver_rate: std::num::NonZeroU32,
    /// Deliveries each WebhookReceiver takes at once, above its rate.
    #[arg(long, env = "SYNCSEQ_RECEIVER_BURST", default_value_t = std::num::NonZeroU32::new(20).unwrap())]
    pub receiver_burst: std::num::NonZeroU32,
    /// Seconds a delivery waits on the API server (reading the Secret, recording it) before
    /// it is answered 503; the sender retries.
    #[arg(long, env = "SYNCSEQ_RECEIVER_TIMEOUT_SECONDS", default_value_t = 5)]
    pub receiver_timeout_seconds: u64,
}

/// A positive, finite number of intervals.
fn stale_intervals(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("{value:?} is not a positive number of intervals")),
    }
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Print the next fire times of a schedule, one RFC 3339 timestamp a line.
    ///
    /// Several schedules (as `spec.schedules` lists them) print the fire times of their union,
    /// each line followed by the schedules that fire then; `--jitter-seconds` with the object's
    /// UID adds when each run starts.
    Next {
        /// A schedule as `spec.schedule` takes it, e.g. '0 9 * * 1-5' or '@every 90m'; several
        /// as `spec.schedules` (an `@every` among several counts from --from, as from the
        /// object's creation).
        #[arg(required = true, num_args = 1..=16)]
        expr: Vec<String>,
        /// IANA time zone the schedule is evaluated in (UTC when unset).
        #[arg(long)]
        time_zone: Option<String>,
        /// Start after this time (RFC 3339); now when unset.
        #[arg(long)]
        from: Option<String>,
        /// How many fire times to print.
        #[arg(short = 'n', default_value_t = 5)]
        count: usize,
        /// `spec.jitterSeconds`: also print when each run starts, the object's offset later.
        #[arg(long, requires = "uid", value_parser = clap::value_parser!(i32).range(0..=3600))]
        jitter_seconds: Option<i32>,
        /// The object's `metadata.uid`, which its jitter offset derives from
        /// (`kubectl get syncseq NAME -o jsonpath='{.metadata.uid}'`).
        #[arg(long)]
        uid: Option<String>,
    },
}

/// What `syncseq schedule next` previews.
#[derive(Debug)]
pub struct SchedulePreview<'a> {
    pub exprs: &'a [String],
    pub time_zone: Option<&'a str>,
    pub from: Option<&'a str>,
    pub count: usize,
    pub jitter_seconds: Option<i32>,
    pub uid: Option<&'a str>,
}

/// `syncseq schedule next`: each fire time in UTC, followed by the same instant in the
/// schedule's zone with its offset, so DST changes are visible at a glance; with jitter, the
/// run's start; with several schedules, which of them fire.
pub fn schedule_next(preview: SchedulePreview<'_>, out: &mut impl Write) -> anyhow::Result<()> {
    let members = preview
        .exprs
        .iter()
        .map(|e| schedule::Schedule::parse(e))
        .collect::<Result<Vec<_>, _>>()?;
    let tz = schedule::parse_time_zone(preview.time_zone)?;
    let from = match preview.from {
        Some(f) => f
            .parse::<jiff::Timestamp>()
            .map_err(|e| anyhow::anyhow!("invalid --from {f:?}: {e}"))?,
        None => jiff::Timestamp::now(),
    };
    let set = schedule::ScheduleSet::new(members, from)
        .ok_or_else(|| anyhow::anyhow!("no schedule given"))?;
    let jitter = schedule::jitter_offset(
        preview.uid.unwrap_or_default(),
        preview.jitter_seconds.unwrap_or(0),
    );
    for t in schedule::preview(&set, &tz, from, preview.count) {
        let local = t.to_zoned(tz.clone());
        let mut line = format!(
            "{}  {}",
            t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            local.strftime("%Y-%m-%dT%H:%M:%S%:z")
        );
        if preview.jitter_seconds.is_some() {
            let start = t.checked_add(jitter).unwrap_or(t);
            line.push_str(&format!(
                "  starts {} (+{:.3}s)",
                start.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
                jitter.as_secs_f64()
            ));
        }
        if preview.exprs.len() > 1 {
            let firing: Vec<String> = schedule::firing_at(&set, &tz, t)
                .map(ToString::to_string)
                .collect();
            line.push_str(&format!("  {}", firing.join(", ")));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview(exprs: &[&str], jitter: Option<(i32, &str)>) -> String {
        let exprs: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
        let mut out = Vec::new();
        schedule_next(
            SchedulePreview {
                exprs: &exprs,
                time_zone: Some("Europe/Berlin"),
                from: Some("2027-01-08T00:00:00Z"),
                count: 3,
                jitter_seconds: jitter.map(|(n, _)| n),
                uid: jitter.map(|(_, uid)| uid),
            },
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn several_schedules_print_their_union_and_which_fire() {
        assert_eq!(
            preview(&["0 6 * * *", "0 18 * * 1-5", "0 */12 * * *"], None),
            "2027-01-08T05:00:00Z  2027-01-08T06:00:00+01:00  0 6 * * *\n\
             2027-01-08T11:00:00Z  2027-01-08T12:00:00+01:00  0 */12 * * *\n\
             2027-01-08T17:00:00Z  2027-01-08T18:00:00+01:00  0 18 * * 1-5\n"
        );
        // A fire time two schedules share is one line, naming both.
        assert_eq!(
            preview(&["0 6 * * *", "0 6,18 * * *"], None).lines().next(),
            Some("2027-01-08T05:00:00Z  2027-01-08T06:00:00+01:00  0 6 * * *, 0 6,18 * * *")
        );
    }

    #[test]
    fn jitter_prints_when_each_run_starts() {
        // The UID's offset in a 600 s window is 540.781 s (pinned in schedule::jitter).
        let out = preview(
            &["0 6 * * *"],
            Some((600, "6f1b3c2a-9d4e-4f5a-8b7c-0e1d2c3b4a59")),
        );
        assert_eq!(
            out.lines().next(),
            Some(
                "2027-01-08T05:00:00Z  2027-01-08T06:00:00+01:00  starts 2027-01-08T05:09:00.781Z (+540.781s)"
            )
        );
    }
}
