use clap::Parser;
use syncseq::cli::{Cli, Command, ScheduleCommand, SchedulePreview, schedule_next};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    #[cfg(feature = "failpoints")]
    let _failpoints = syncseq::failpoints::setup();
    if syncseq::invoked_as_plugin() {
        return syncseq::plugin_main().await;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { helm } => match helm {
            false => syncseq::api::crds_yaml(),
            true => syncseq::api::crds_helm_template(),
        }
        .map(|y| print!("{y}"))
        .map_err(anyhow::Error::from),
        Command::Schedule(ScheduleCommand::Next {
            expr,
            time_zone,
            from,
            count,
            jitter_seconds,
            uid,
        }) => schedule_next(
            SchedulePreview {
                exprs: &expr,
                time_zone: time_zone.as_deref(),
                from: from.as_deref(),
                count,
                jitter_seconds,
                uid: uid.as_deref(),
            },
            &mut std::io::stdout(),
        ),
        Command::Controller(args) => syncseq::run_controller(args).await,
        Command::Plugin(args) => syncseq::run_plugin(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
