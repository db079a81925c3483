//! The `headstart` command line. A thin layer: it parses arguments, wires the crates
//! together and renders progress and reports; no logic a library user needs lives here.
//!
//! Exit status: 0 on success, 2 for bad input (unknown sandbox, malformed URL, missing
//! branch, bad flags), 1 for everything else (an `up --timeout` that passed too);
//! `exec` exits with the command's status (127 when the program does not exist, 126
//! when it cannot run, 124 on `--timeout`); an `up` stopped by SIGINT or SIGTERM exits
//! 130 or 143 after removing what it created. With `--json`, a failure prints exactly
//! one `{"error": {...}}` object on stdout and exits with the same status.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod choice;
mod commands;
mod completions;
mod config;
mod exec;
mod flags;
mod interrupt;
mod output;
mod progress;
mod render;
mod sandboxes;
mod snapshots;
mod vm;
mod workdir;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Start coding sandboxes with a git repository ready in seconds.
#[derive(Debug, Parser)]
#[command(name = "headstart", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: TopCommand,
    /// Log level filter (also `RUST_LOG`), e.g. `debug` or `headstart=trace`.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// Print nothing but errors (and what was asked for: `--json`, listings' names).
    #[arg(long, short, global = true, conflicts_with = "progress")]
    quiet: bool,
    /// Show transfer progress even when stderr is not a terminal (plain lines).
    #[arg(long, global = true)]
    progress: bool,
}

/// The commands: those that do the work, then the shell conveniences.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum TopCommand {
    #[command(flatten)]
    Run(Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Write man pages (headstart.1 and one per subcommand) into a directory.
    #[command(hide = true)]
    GenerateMan(completions::ManArgs),
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a sandbox holding a repository (warm from a snapshot when one is ready).
    Up(commands::UpArgs),
    /// Run a command (argv, no shell) in a sandbox: `headstart exec NAME cmd args...`.
    Exec(exec::ExecArgs),
    /// Stop and remove sandboxes and their workspaces (`down a b`, `down --all`).
    Down(sandboxes::DownArgs),
    /// List sandboxes: name, provider, state, repository, branch, age.
    Ls(sandboxes::LsArgs),
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

impl Command {
    /// True when the command was asked for JSON output (`--json`).
    fn json(&self) -> bool {
        use commands::SnapshotCommand as S;
        match self {
            Self::Up(a) => a.json,
            Self::Exec(a) => a.json,
            Self::Down(a) => a.json,
            Self::Ls(a) => a.json,
            Self::Prune(a) => a.json,
            Self::Snapshot(S::Build { json, .. } | S::Ls { json, .. } | S::Gc { json, .. }) => {
                *json
            }
            Self::Snapshot(S::Rm { json, .. }) => *json,
            Self::Snapshot(S::RunJob { .. }) => false,
            Self::Flags(a) => a.json(),
            Self::Vm(_) => false,
        }
    }
}

/// True when the raw arguments ask for JSON (before any `--`): what a command line
/// that does not parse is answered with.
fn raw_args_want_json() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

#[tokio::main]
async fn main() -> ExitCode {
    config::register_secrets();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && raw_args_want_json() => {
            let text = e.render().to_string();
            let message = text
                .lines()
                .next()
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ");
            output::print_json(&output::error_value("usage", message));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    output::init(output::Settings {
        quiet: cli.quiet,
        progress: cli.progress,
    });
    let ansi = std::io::stderr().is_terminal() && !config::no_color();
    let filter = cli.log.as_deref().or(cli.quiet.then_some("error"));
    render::init_tracing(filter, ansi);
    let command = match cli.command {
        TopCommand::Run(command) => command,
        TopCommand::Completions(args) => return completions::completions(&args),
        TopCommand::GenerateMan(args) => return completions::man(&args),
    };
    let json = command.json();
    match commands::run(command).await {
        Ok(code) => code,
        Err(e) => {
            if json {
                output::print_json(&output::error_object(&e));
            } else {
                eprintln!("error: {}", sandbox_core::scrub(&render::chain(&e)));
            }
            ExitCode::from(if commands::is_user_error(&e) { 2 } else { 1 })
        }
    }
}
