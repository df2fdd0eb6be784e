//! `keel-trainer summary`.

/// Arguments of `keel-trainer summary`.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {}

/// Runs `keel-trainer summary`.
///
/// # Errors
/// Any failure, with context.
pub fn run(_args: SummaryArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel-trainer summary is not built yet")
}
