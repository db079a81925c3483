//! The `headstart` command line. A thin layer: it parses arguments, wires the crates
//! together and renders progress and reports; no logic a library user needs lives here.
//!
//! Exit status: 0 on success, 2 for bad input (unknown sandbox, malformed URL, missing
//! branch, bad flags), 1 for everything else (a `up --timeout` that passed too); `exec`
//! exits with the command's status; an `up` stopped by SIGINT or SIGTERM exits 130 or
//! 143 after removing what it created.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod config;
mod flags;
mod interrupt;
mod render;
mod vm;
mod workdir;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Start coding sandboxes with a git repository ready in seconds.
#[derive(Debug, Parser)]
#[command(name = "headstart", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level filter (also `RUST_LOG`), e.g. `debug` or `headstart=trace`.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a sandbox holding a repository (warm from a snapshot when one is ready).
    Up(commands::UpArgs),
    /// Run a command (argv, no shell) in a sandbox.
    Exec(commands::ExecArgs),
    /// Stop and remove a sandbox and its workspace.
    Down(commands::DownArgs),
    /// List sandboxes.
    Ls(commands::LsArgs),
    /// Build, list, remove and garbage-collect base snapshots.
    #[command(subcommand)]
    Snapshot(commands::SnapshotCommand),
    /// Remove sandboxes past their TTL and orphaned workspaces and mounts.
    Prune(commands::PruneArgs),
    /// Evaluate feature flags offline and show the fast-provisioning decision.
    Flags(flags::FlagsArgs),
    /// Create, list, use and delete cloud VM hosts (DigitalOcean, Hetzner, GCP).
    Vm(vm::VmArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    render::init_tracing(cli.log.as_deref());
    match commands::run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render::chain(&e));
            ExitCode::from(if commands::is_user_error(&e) { 2 } else { 1 })
        }
    }
}
