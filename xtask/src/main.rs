//! Project automation for headstart, run as `cargo xtask <command>` (the alias in
//! `.cargo/config.toml` builds this crate in release mode, so benchmarks measure
//! optimised code).
//!
//! - `bench-startup`: headstart's cold and warm starts next to the git CLI, on
//!   generated fixtures served over smart HTTP and `git daemon` on loopback; a markdown
//!   table, JSON results and an SVG chart under `target/bench-startup/`.
//! - `bench-broker`: `git fetch` of a ~20 MiB pack through the credential broker vs
//!   directly from the same loopback upstream, interleaved pairs.
//! - `man`: the `headstart` man pages under `target/man/` (generated from its clap
//!   definitions by the binary's hidden `generate-man` command).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod bench_broker;
mod man;

use clap::{Parser, Subcommand};

/// headstart project automation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Cold vs warm starts vs the git CLI, measured side by side (see docs/benchmarks.md).
    BenchStartup(bench::BenchArgs),
    /// `git fetch` through the credential broker vs direct (see docs/benchmarks.md).
    BenchBroker(bench_broker::BenchBrokerArgs),
    /// Write headstart's man pages (headstart.1, headstart-up.1, ...) to target/man.
    Man(man::ManArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Man(args) = &cli.command {
        return man::run(args);
    }
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::{EnvFilter, Layer as _, filter::Targets};
        let filter =
            EnvFilter::try_from_env("XTASK_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .with(bench::gitsplit::GitSplitLayer.with_filter(
                Targets::new().with_target("sandbox_core::git", tracing::Level::DEBUG),
            ))
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::BenchStartup(args) => runtime.block_on(bench::run(args)),
        Command::BenchBroker(args) => runtime.block_on(bench_broker::run(args)),
        Command::Man(_) => Ok(()),
    }
}
