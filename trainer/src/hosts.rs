//! `keel-trainer hosts`.

/// Arguments of `keel-trainer hosts`.
#[derive(Debug, clap::Args)]
pub struct HostsArgs {}

/// Runs `keel-trainer hosts`.
///
/// # Errors
/// Any failure, with context.
pub fn run(_args: HostsArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel-trainer hosts is not built yet")
}
