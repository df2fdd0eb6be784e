//! The networked agent: `keel-agent run`, `publish` and `cluster`.

/// Arguments of `keel-agent run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Arguments of `keel-agent publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {}

/// Arguments of `keel-agent cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {}

/// Runs `keel-agent run`.
///
/// # Errors
/// Any failure, with context.
pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel-agent run is not built yet")
}

/// Runs `keel-agent publish`.
///
/// # Errors
/// Any failure, with context.
pub fn publish(_args: PublishArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel-agent publish is not built yet")
}

/// Runs `keel-agent cluster`.
///
/// # Errors
/// Any failure, with context.
pub fn cluster(_args: ClusterArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel-agent cluster is not built yet")
}
