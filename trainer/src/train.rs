//! `keel-trainer train`.

/// Arguments of `keel-trainer train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {}

/// Runs `keel-trainer train`.
///
/// # Errors
/// Any failure, with context.
pub fn run(_args: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel-trainer train is not built yet")
}
