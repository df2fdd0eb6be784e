//! `keel-agent replay`: the agents on recorded traces under a virtual clock.

/// Arguments of `keel-agent replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}

/// Runs `keel-agent replay`.
///
/// # Errors
/// Any failure, with context.
pub fn run(_args: ReplayArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel-agent replay is not built yet")
}
