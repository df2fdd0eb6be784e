//! The keel-collector binary: parse flags, read the config, run until a signal.
//!
//! Exit codes: 0 clean shutdown, 2 configuration error, 1 other failure.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use keel_collector::config::{Cli, FileConfig, Settings};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Lifecycle events (start, outages, shutdown counters) are INFO: a manual run shows them
    // without flags. `-v` and `--log-filter`/`LOG_FILTER` work as in the other binaries.
    let mut log = cli.log.clone();
    if log.log_filter.is_none() && log.verbose == 0 {
        log.log_filter = Some("info".to_owned());
    }
    log.init();
    let settings = match load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keel-collector: {e:#}");
            return ExitCode::from(2);
        }
    };
    match serve(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<Settings> {
    let file = match (&cli.config, cli.no_config) {
        (Some(p), false) => {
            FileConfig::load(p).with_context(|| format!("reading config {}", p.display()))?
        }
        _ => FileConfig::default(),
    };
    Ok(Settings::resolve(cli, file)?)
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    // One thread: the work per round is small and a single thread keeps the footprint low.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("Signal received; flushing and stopping.");
            token.cancel();
        });
        keel_collector::run::run(settings, shutdown)
            .await
            .context("collector failed")?;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for SIGTERM; only SIGINT stops the collector.");
            _ = tokio::signal::ctrl_c().await;
        }
    }
}
