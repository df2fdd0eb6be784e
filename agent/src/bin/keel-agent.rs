//! The keel-agent binary.
fn main() -> anyhow::Result<()> {
    Ok(())
}
