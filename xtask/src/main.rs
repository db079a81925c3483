//! Project automation for headstart, run as `cargo xtask <command>`.

fn main() -> anyhow::Result<()> {
    Ok(())
}
