//! `cargo xtask man [--out DIR]`: the man pages of `headstart`, generated from its clap
//! definitions by the binary itself (`headstart generate-man DIR`, hidden), so xtask
//! needs no copy of the command line. Default output: `target/man/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// Arguments of `cargo xtask man`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Where to write `headstart.1` and `headstart-<command>.1`.
    #[arg(long, default_value = "target/man")]
    out: PathBuf,
}

/// Builds and runs `headstart generate-man`.
pub(crate) fn run(args: &ManArgs) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "run",
            "--quiet",
            "--package",
            "headstart",
            "--",
            "generate-man",
        ])
        .arg(&args.out)
        .status()
        .context("running cargo to build headstart")?;
    if !status.success() {
        bail!("headstart generate-man failed ({status})");
    }
    println!(
        "man pages in {}; view one with `man -l {}/headstart.1`",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
