//! The `keel-trainer` binary: thin glue over the library's subcommands.

use clap::{Parser, Subcommand};
use keel_trainer::{eval, hosts, import, summary, train};

/// Keel's offline trainer: import traces, build host series, train and evaluate stability models.
#[derive(Debug, Parser)]
#[command(name = "keel-trainer", version, about)]
struct Cli {
    #[command(flatten)]
    log: keel_core::cli::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import a real trace (PlanetLab, Bitbrains) into the canonical Parquet schema.
    Import(import::ImportArgs),
    /// Summarise a canonical Parquet file: rows, entities, time span, step, nulls, percentiles.
    Summary(summary::SummaryArgs),
    /// Place a VM-only dataset's VMs on hosts (deterministic) and write host series.
    Hosts(hosts::HostsArgs),
    /// Train a stability model.
    Train(train::TrainArgs),
    /// Evaluate a stability model.
    Eval(eval::EvalArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let result = match cli.command {
        Command::Import(a) => import::run(a),
        Command::Summary(a) => summary::run(a),
        Command::Hosts(a) => hosts::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
