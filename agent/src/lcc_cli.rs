//! `keel-agent lcc`: check, format and run LCC interaction models.

/// Arguments of `keel-agent lcc`.
#[derive(Debug, clap::Args)]
pub struct LccArgs {}

/// Runs `keel-agent lcc`; returns the process exit code.
///
/// # Errors
/// Any failure, with context.
pub fn run(_args: LccArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("keel-agent lcc is not built yet")
}
