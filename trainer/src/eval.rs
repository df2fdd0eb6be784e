//! `keel-trainer eval`.

/// Arguments of `keel-trainer eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {}

/// Runs `keel-trainer eval`.
///
/// # Errors
/// Any failure, with context.
pub fn run(_args: EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel-trainer eval is not built yet")
}
