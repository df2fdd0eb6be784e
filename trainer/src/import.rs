//! `keel-trainer import`.

/// Arguments of `keel-trainer import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {}

/// Runs `keel-trainer import`.
///
/// # Errors
/// Any failure, with context.
pub fn run(_args: ImportArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel-trainer import is not built yet")
}
