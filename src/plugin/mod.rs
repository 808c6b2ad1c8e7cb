//! The kubectl plugin: the `syncseq` binary installed as `kubectl-syncseq` offers
//! `kubectl syncseq run|retry|cancel|suspend|resume|backfill|status|history|graph|logs`, for SyncSequences (a bare
//! name) and standalone Syncs (`sync/NAME`). The same commands are reachable as
//! `syncseq plugin ...`.
//!
//! Layout: this file holds the arguments and the dispatch, [`target`] what a name refers to and
//! one view of both kinds, [`client`] the connection (kubectl's flags and error wording),
//! [`commands`] what each command does, [`backfill`] checking a backfill request as the
//! controller checks it, [`wait`] following a request through the status for
//! `--wait`, [`logs`] the step logs, [`jsonpath`] `-o jsonpath=`, and [`render`] the human
//! output (pure, unit-tested).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) mod backfill;
pub(crate) mod client;
pub(crate) mod commands;
pub(crate) mod dashboard;
#[cfg(test)]
mod fixtures;
pub(crate) mod graph;
pub(crate) mod jsonpath;
pub(crate) mod logs;
pub(crate) mod render;
pub(crate) mod target;
pub(crate) mod wait;

use target::Target;

/// The executable name kubectl looks for on `PATH` for `kubectl syncseq`.
pub(crate) const PLUGIN_NAME: &str = "kubectl-syncseq";

/// `kubectl syncseq ...`: the plugin's own command line, used when the binary runs as
/// `kubectl-syncseq`.
#[derive(Parser, Debug)]
#[command(
    name = PLUGIN_NAME,
    bin_name = "kubectl syncseq",
    version,
    about = "Run, cancel, suspend and inspect SyncSequences and Syncs"
)]
pub(crate) struct PluginCli {
    #[command(flatten)]
    pub args: PluginArgs,
}

/// The plugin's flags and command (also `syncseq plugin ...`).
#[derive(clap::Args, Debug)]
pub struct PluginArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// kubectl's connection flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectionArgs {
    /// Namespace of the object (default: the kubeconfig context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The kubeconfig cluster to use.
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    /// The kubeconfig user to use.
    #[arg(long, global = true)]
    pub user: Option<String>,
}

/// A SyncSequence by NAME, or a Sync by sync/NAME.
const TARGET_HELP: &str = "NAME of a SyncSequence, or sync/NAME of a Sync";

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Start a run now (sets the syncseq.dev/requestedAt annotation to a new value).
    Run {
        #[arg(value_parser = Target::parse, help = TARGET_HELP)]
        target: Target,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Retry what failed: a new run that reuses the steps that succeeded in run N (default: the
    /// last finished run) and runs the failed and skipped ones, in graph order (sets the
    /// syncseq.dev/retryRequestedAt annotation, and syncseq.dev/retryRun with --run).
    Retry {
        #[arg(value_parser = Target::parse, help = "NAME of a SyncSequence")]
        target: Target,
        /// The run to retry: the last finished run (the default) or any run of `history`
        /// that did not succeed.
        #[arg(long, value_name = "N")]
        run: Option<i64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Cancel the run in progress (sets the syncseq.dev/cancelRequestedAt annotation).
    Cancel {
        #[arg(value_parser = Target::parse, help = TARGET_HELP)]
        target: Target,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop new scheduled runs (spec.suspend: true); the run in progress goes on.
    Suspend {
        #[arg(value_parser = Target::parse, help = TARGET_HELP)]
        target: Target,
    },
    /// Resume scheduled runs (spec.suspend: false), and restart a schedule that failed runs in
    /// a row stopped (stopScheduleAfterFailures; sets syncseq.dev/resumeScheduleRequestedAt).
    Resume {
        #[arg(value_parser = Target::parse, help = TARGET_HELP)]
        target: Target,
    },
    /// Run the schedule's past fire times in [--from, --to): one run each, oldest first, one at
    /// a time, each with its fire time's data interval (sets syncseq.dev/backfill and
    /// syncseq.dev/backfillRequestedAt). The range is checked as the controller checks it
    /// before anything is written; --dry-run lists the fire times; --cancel stops a backfill.
    Backfill(backfill::BackfillArgs),
    /// The current run (or the last finished one) as a step timeline; without a name, one line
    /// per SyncSequence and Sync of the namespace (or of all namespaces with -A).
    Status {
        #[arg(value_parser = Target::parse, help = TARGET_HELP)]
        target: Option<Target>,
        /// List the objects of every namespace.
        #[arg(short = 'A', long, conflicts_with = "target")]
        all_namespaces: bool,
        /// After the first output, print it again whenever the status changes (for a list, one
        /// line per object that changed).
        #[arg(short, long)]
        watch: bool,
        /// Output format: json, yaml (the whole `status` object instead of the timeline) or
        /// jsonpath=TEMPLATE (e.g. jsonpath='{.lastRun.phase}').
        #[arg(short, long, value_parser = OutputFormat::parse)]
        output: Option<OutputFormat>,
    },
    /// The finished runs, newest first (after the run in progress, if any).
    History {
        #[arg(value_parser = Target::parse, help = TARGET_HELP)]
        target: Target,
        /// Output format: json, yaml (the `status.runs` list instead of the table) or
        /// jsonpath=TEMPLATE.
        #[arg(short, long, value_parser = OutputFormat::parse)]
        output: Option<OutputFormat>,
    },
    /// The steps of a SyncSequence as a graph (Mermaid or Graphviz DOT): each step a node, an
    /// edge from each step it waits for, coloured by the phases of a run.
    Graph {
        #[arg(value_parser = Target::parse, help = "NAME of a SyncSequence")]
        target: Target,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "mermaid")]
        output: graph::GraphFormat,
        /// Colour the steps by this run's phases (default: the current run, else the last
        /// finished one; only those two are kept with their steps).
        #[arg(long, value_name = "N")]
        run: Option<i64>,
    },
    /// The container log of a step's Pod: by default the failed step of the last run, else the
    /// step running now, else the last step that ran.
    Logs {
        #[arg(value_parser = Target::parse, help = TARGET_HELP)]
        target: Target,
        #[command(flatten)]
        args: logs::LogArgs,
    },
    /// Serve a read-only dashboard on localhost: every SyncSequence and Sync with its last
    /// result and what it does now, and per object a timeline of its recent runs, their Events
    /// and the log of a failed step. It reads as your kubeconfig's user.
    Dashboard {
        /// Show the objects of every namespace (those your RBAC may list).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Port on 127.0.0.1 (0: any free port; the address is printed).
        #[arg(long, default_value_t = 8377)]
        port: u16,
    },
    /// Print a shell completion script for `kubectl-syncseq` (bash, zsh, fish, elvish or
    /// powershell), e.g. `source <(kubectl syncseq completion bash)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `--wait` and its `--timeout`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WaitArgs {
    /// Wait until the controller has handled the request and the run has ended, then print
    /// its step timeline. For `run` and `retry`, exits 1 unless the run Succeeded. For
    /// `backfill`, until the backfill has ended, printing its progress; exits 1 unless it
    /// Succeeded.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (e.g. 30s, 10m, 1h30m; default: no limit).
    #[arg(long, requires = "wait", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("expected a duration such as 30s, 10m or 1h30m: {e}"))?;
    std::time::Duration::try_from(d).map_err(|e| e.to_string())
}

/// Machine-readable output formats.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    Json,
    Yaml,
    JsonPath(jsonpath::Template),
}

impl OutputFormat {
    fn parse(s: &str) -> Result<OutputFormat, String> {
        match s {
            "json" => Ok(OutputFormat::Json),
            "yaml" => Ok(OutputFormat::Yaml),
            _ => match s.split_once('=') {
                Some(("jsonpath", template)) => template.parse().map(OutputFormat::JsonPath),
                _ => Err(format!(
                    "unknown output format {s:?}: expected json, yaml or jsonpath=TEMPLATE"
                )),
            },
        }
    }
}

/// Whether `argv0` names the plugin executable (`kubectl-syncseq`, with any directory or
/// extension), as when kubectl runs it for `kubectl syncseq`.
pub(crate) fn is_plugin_name(argv0: &OsStr) -> bool {
    Path::new(argv0).file_stem() == Some(OsStr::new(PLUGIN_NAME))
}

/// Whether this process was started as `kubectl-syncseq`.
pub fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|a| is_plugin_name(&a))
}

/// Entry point of `kubectl-syncseq`: parses the plugin's command line (usage errors exit 2),
/// runs it, and reports failure as kubectl does: `error: ...` on stderr and exit code 1.
pub async fn main() -> ExitCode {
    let cli = PluginCli::parse();
    match run(cli.args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render::terminal_safe(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Runs one plugin command.
pub async fn run(args: PluginArgs) -> anyhow::Result<()> {
    if let PluginCommand::Completion { shell } = args.command {
        completion(shell, &mut std::io::stdout());
        return Ok(());
    }
    if let PluginCommand::Status {
        target: None,
        output: Some(_),
        ..
    } = &args.command
    {
        anyhow::bail!("-o needs a NAME: it prints one object's status");
    }
    let cluster = client::connect(&args.connection).await?;
    match args.command {
        PluginCommand::Run { target, wait } => commands::run(&cluster, &target, &wait).await,
        PluginCommand::Retry { target, run, wait } => {
            commands::retry(&cluster, &target, run, &wait).await
        }
        PluginCommand::Cancel { target, wait } => commands::cancel(&cluster, &target, &wait).await,
        PluginCommand::Backfill(args) => commands::backfill(&cluster, &args).await,
        PluginCommand::Suspend { target } => commands::set_suspend(&cluster, &target, true).await,
        PluginCommand::Resume { target } => commands::set_suspend(&cluster, &target, false).await,
        PluginCommand::Status {
            target: Some(target),
            watch,
            output,
            ..
        } => commands::status(&cluster, &target, output.as_ref(), watch).await,
        PluginCommand::Status {
            target: None,
            all_namespaces,
            watch,
            ..
        } => commands::overview(&cluster, all_namespaces, watch).await,
        PluginCommand::History { target, output } => {
            commands::history(&cluster, &target, output.as_ref()).await
        }
        PluginCommand::Graph {
            target,
            output,
            run,
        } => commands::graph(&cluster, &target, output, run).await,
        PluginCommand::Logs { target, args } => {
            let obj = cluster.get(&target).await?;
            logs::logs(&cluster, &obj, &args).await
        }
        PluginCommand::Dashboard {
            all_namespaces,
            port,
        } => dashboard::serve(cluster, all_namespaces, port).await,
        PluginCommand::Completion { .. } => unreachable!("handled before connecting"),
    }
}

/// Writes the completion script of the plugin's command line for `shell`. It completes the
/// `kubectl-syncseq` executable; `kubectl syncseq` itself completes plugin arguments only
/// through a `kubectl_complete-syncseq` program, which is not shipped.
fn completion(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    // The executable's own name: "kubectl syncseq", the name in help, is no shell word.
    let mut command = PluginCli::command().bin_name(PLUGIN_NAME);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, PLUGIN_NAME, &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == clap_complete::Shell::Bash {
        // clap_complete 4.6 spells the hyphen of the executable's name `__` where it tracks
        // the subcommand and `__subcmd__` where it matches it, so no subcommand's options
        // would complete; one spelling makes them agree.
        script = script.replace("kubectl__subcmd__syncseq", "kubectl__syncseq");
    }
    let _ = out.write_all(script.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_dispatch_recognises_the_plugin_name_only() {
        for name in [
            "kubectl-syncseq",
            "/home/me/.local/bin/kubectl-syncseq",
            "kubectl-syncseq.exe",
        ] {
            assert!(is_plugin_name(OsStr::new(name)), "{name}");
        }
        for name in [
            "syncseq",
            "/usr/bin/syncseq",
            "kubectl-syncseq-dev",
            "kubectl",
        ] {
            assert!(!is_plugin_name(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn completion_scripts_name_every_command_and_flag() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completion(shell, &mut out);
            let script = String::from_utf8(out).unwrap();
            for word in [
                "kubectl-syncseq",
                "run",
                "retry",
                "cancel",
                "suspend",
                "resume",
                "backfill",
                "status",
                "history",
                "graph",
                "logs",
                "completion",
                // Flags without their dashes: fish spells them `-l wait`.
                "wait",
                "namespace",
                "kubeconfig",
                "dry-run",
            ] {
                assert!(script.contains(word), "{shell:?} script lacks {word}");
            }
        }
    }

    #[test]
    fn plugin_flags_parse_like_kubectl() {
        let cli = PluginCli::try_parse_from([
            "kubectl-syncseq",
            "status",
            "crm",
            "-n",
            "revops",
            "-o",
            "json",
            "--context",
            "prod",
        ])
        .unwrap();
        assert_eq!(cli.args.connection.namespace.as_deref(), Some("revops"));
        assert_eq!(cli.args.connection.context.as_deref(), Some("prod"));
        assert!(matches!(
            cli.args.command,
            PluginCommand::Status { target: Some(ref t), output: Some(OutputFormat::Json), .. } if t.name == "crm"
        ));

        let cli = PluginCli::try_parse_from([
            "kubectl-syncseq",
            "--kubeconfig",
            "/tmp/kc",
            "run",
            "crm",
            "--wait",
            "--timeout",
            "1h30m",
        ])
        .unwrap();
        let PluginCommand::Run { wait, .. } = cli.args.command else {
            panic!("run expected")
        };
        assert!(wait.wait);
        assert_eq!(wait.timeout, Some(std::time::Duration::from_secs(5400)));

        let cli = PluginCli::try_parse_from([
            "kubectl-syncseq",
            "logs",
            "sync/accounts",
            "--run",
            "3",
            "-f",
            "--previous",
        ])
        .unwrap();
        let PluginCommand::Logs { target, args } = cli.args.command else {
            panic!("logs expected")
        };
        assert_eq!(target.kind, target::Kind::Sync);
        assert_eq!(
            (args.run, args.follow, args.previous),
            (Some(3), true, true)
        );

        let cli =
            PluginCli::try_parse_from(["kubectl-syncseq", "retry", "crm", "--run", "12", "--wait"])
                .unwrap();
        let PluginCommand::Retry { target, run, wait } = cli.args.command else {
            panic!("retry expected")
        };
        assert_eq!(
            (target.name.as_str(), run, wait.wait),
            ("crm", Some(12), true)
        );

        let cli = PluginCli::try_parse_from(["kubectl-syncseq", "graph", "crm"]).unwrap();
        assert!(matches!(
            cli.args.command,
            PluginCommand::Graph {
                output: graph::GraphFormat::Mermaid,
                run: None,
                ..
            }
        ));
        let cli = PluginCli::try_parse_from([
            "kubectl-syncseq",
            "graph",
            "crm",
            "-o",
            "dot",
            "--run",
            "4",
        ])
        .unwrap();
        assert!(matches!(
            cli.args.command,
            PluginCommand::Graph {
                output: graph::GraphFormat::Dot,
                run: Some(4),
                ..
            }
        ));

        let cli = PluginCli::try_parse_from(["kubectl-syncseq", "status", "-A", "-w"]).unwrap();
        assert!(matches!(
            cli.args.command,
            PluginCommand::Status {
                target: None,
                all_namespaces: true,
                watch: true,
                output: None
            }
        ));
        let cli = PluginCli::try_parse_from([
            "kubectl-syncseq",
            "history",
            "crm",
            "-o",
            "jsonpath={.runs[*].id}",
        ])
        .unwrap();
        assert!(matches!(
            cli.args.command,
            PluginCommand::History {
                output: Some(OutputFormat::JsonPath(_)),
                ..
            }
        ));

        for bad in [
            vec!["kubectl-syncseq", "run"],
            vec!["kubectl-syncseq", "run", "crm", "--timeout", "5m"],
            vec!["kubectl-syncseq", "status", "crm", "-o", "wide"],
            vec!["kubectl-syncseq", "status", "crm", "-o", "jsonpath={.a"],
            vec!["kubectl-syncseq", "status", "crm", "-A"],
            vec!["kubectl-syncseq", "logs", "job/crm"],
            vec![
                "kubectl-syncseq",
                "logs",
                "crm",
                "-c",
                "a",
                "--all-containers",
            ],
            vec!["kubectl-syncseq", "frobnicate", "crm"],
            vec!["kubectl-syncseq", "retry", "crm", "--run", "last"],
            vec!["kubectl-syncseq", "graph", "crm", "-o", "png"],
        ] {
            let err = PluginCli::try_parse_from(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
