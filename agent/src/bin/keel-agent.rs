//! The `keel-agent` binary: thin glue over the library's subcommands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_agent::{daemon, lcc_cli, replay};

// The interaction models' interpreter allocates a term for almost every step it takes.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keel's host agent: negotiates VM migrations with peers in LCC, replays traces, checks LCC.
#[derive(Debug, Parser)]
#[command(name = "keel-agent", version, about)]
struct Cli {
    #[command(flatten)]
    log: keel_core::cli::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, format or run LCC interaction models.
    Lcc(lcc_cli::LccArgs),
    /// Replay recorded traces with the agents under a virtual clock, against CloudSim's baselines.
    Replay(replay::ReplayArgs),
    /// Run the agent daemon on this host.
    Run(daemon::RunArgs),
    /// Sign and publish a policy bundle (interaction models and stability model) to peers.
    Publish(daemon::PublishArgs),
    /// Run a fleet of real agents on 127.0.0.1 replaying a dataset, for trying Keel and for tests.
    Cluster(daemon::ClusterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let result = match cli.command {
        Command::Lcc(a) => lcc_cli::run(a),
        Command::Replay(a) => replay::run(a).map(|()| ExitCode::SUCCESS),
        Command::Run(a) => daemon::run(a).map(|()| ExitCode::SUCCESS),
        Command::Publish(a) => daemon::publish(a).map(|()| ExitCode::SUCCESS),
        Command::Cluster(a) => daemon::cluster(a).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
