//! The keel-trainer binary.
fn main() -> anyhow::Result<()> {
    Ok(())
}
