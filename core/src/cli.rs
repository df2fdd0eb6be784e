//! Logging flags shared by `keel-collector`, `keel-trainer` and `keel-agent`: `--log-filter`
//! (or `LOG_FILTER`) takes an `EnvFilter` directive; `-v`/`-vv` raise the default level.

/// Logging options; flatten into a binary's clap `Cli`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Log filter directive, e.g. `info,keel_agent=debug` (overrides -v).
    #[arg(long, env = "LOG_FILTER", global = true)]
    pub log_filter: Option<String>,
    /// More logging: -v for debug, -vv for trace.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl LogArgs {
    /// Installs a `tracing` subscriber writing to stderr. Safe to call more than once (later
    /// calls do nothing).
    pub fn init(&self) {
        let default = match self.verbose {
            0 => "warn",
            1 => "debug",
            _ => "trace",
        };
        let filter = self.log_filter.as_deref().unwrap_or(default);
        let filter = tracing_subscriber::EnvFilter::try_new(filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}
