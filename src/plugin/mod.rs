//! The kubectl plugin: the `syncseq` binary installed as `kubectl-syncseq` offers
//! `kubectl syncseq run|cancel|suspend|resume|status|history`. The same commands are reachable
//! as `syncseq plugin ...`.
//!
//! Layout: this file holds the arguments and the dispatch, [`client`] the connection (kubectl's
//! flags and error wording), [`commands`] what each command does, [`wait`] following a request
//! through the status for `--wait`, and [`render`] the human output (pure, unit-tested).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub mod client;
pub mod commands;
pub mod render;
pub mod wait;

/// The executable name kubectl looks for on `PATH` for `kubectl syncseq`.
pub const PLUGIN_NAME: &str = "kubectl-syncseq";

/// `kubectl syncseq ...`: the plugin's own command line, used when the binary runs as
/// `kubectl-syncseq`.
#[derive(Parser, Debug)]
#[command(
    name = PLUGIN_NAME,
    bin_name = "kubectl syncseq",
    version,
    about = "Run, cancel, suspend and inspect SyncSequences"
)]
pub struct PluginCli {
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
    /// Namespace of the SyncSequence (default: the kubeconfig context's namespace, else `default`).
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

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Start a run now (sets the syncseq.dev/requestedAt annotation to a new value).
    Run {
        /// Name of the SyncSequence.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Cancel the run in progress (sets the syncseq.dev/cancelRequestedAt annotation).
    Cancel {
        /// Name of the SyncSequence.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop new scheduled runs (spec.suspend: true); the run in progress goes on.
    Suspend {
        /// Name of the SyncSequence.
        name: String,
    },
    /// Resume scheduled runs (spec.suspend: false).
    Resume {
        /// Name of the SyncSequence.
        name: String,
    },
    /// The current run (or the last finished one) as a step timeline.
    Status {
        /// Name of the SyncSequence.
        name: String,
        /// Output format: the whole `status` object instead of the timeline.
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// The finished runs, newest first (after the run in progress, if any).
    History {
        /// Name of the SyncSequence.
        name: String,
        /// Output format: the `status.book.runs` list instead of the table.
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
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
    /// its step timeline. For `run`, exits 1 unless the run Succeeded.
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
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Yaml,
}

/// Whether `argv0` names the plugin executable (`kubectl-syncseq`, with any directory or
/// extension), as when kubectl runs it for `kubectl syncseq`.
pub fn is_plugin_name(argv0: &OsStr) -> bool {
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
    let api = client::sequences(&args.connection).await?;
    match args.command {
        PluginCommand::Run { name, wait } => commands::run(&api, &name, &wait).await,
        PluginCommand::Cancel { name, wait } => commands::cancel(&api, &name, &wait).await,
        PluginCommand::Suspend { name } => commands::set_suspend(&api, &name, true).await,
        PluginCommand::Resume { name } => commands::set_suspend(&api, &name, false).await,
        PluginCommand::Status { name, output } => commands::status(&api, &name, output).await,
        PluginCommand::History { name, output } => commands::history(&api, &name, output).await,
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
                "cancel",
                "suspend",
                "resume",
                "status",
                "history",
                "completion",
                // Flags without their dashes: fish spells them `-l wait`.
                "wait",
                "namespace",
                "kubeconfig",
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
            PluginCommand::Status { ref name, output: Some(OutputFormat::Json) } if name == "crm"
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

        for bad in [
            vec!["kubectl-syncseq", "run"],
            vec!["kubectl-syncseq", "run", "crm", "--timeout", "5m"],
            vec!["kubectl-syncseq", "status", "crm", "-o", "wide"],
            vec!["kubectl-syncseq", "frobnicate", "crm"],
        ] {
            let err = PluginCli::try_parse_from(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
