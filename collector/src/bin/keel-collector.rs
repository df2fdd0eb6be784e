//! The keel-collector binary.
fn main() -> anyhow::Result<()> {
    Ok(())
}
