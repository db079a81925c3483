//! The command line's commands: clap types, a call into the app layer
//! ([`headstart::Headstart`]) and the rendering of its outcome as text or JSON.
//!
//! Not here: anything a library user needs (the app layer has it), or how the
//! process speaks in general (`output.rs`, `render.rs`, `progress.rs`).

pub(crate) mod completions;
pub(crate) mod daemon;
pub(crate) mod error;
pub(crate) mod flags;
pub(crate) mod gitinit;
pub(crate) mod interrupt;
pub(crate) mod lifecycle;
pub(crate) mod output;
pub(crate) mod ports;
pub(crate) mod progress;
pub(crate) mod render;
pub(crate) mod sandbox;
pub(crate) mod snapshot;
pub(crate) mod up;
pub(crate) mod vm;

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use headstart::{Config, Headstart, ProviderKind};

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start a sandbox holding a repository (warm from a snapshot when one is ready).
    Up(up::UpArgs),
    /// Run a command (argv, no shell) in a sandbox: `headstart exec NAME cmd args...`.
    Exec(sandbox::ExecArgs),
    /// Stop and remove sandboxes and their workspaces (`down a b`, `down --all`).
    Down(sandbox::DownArgs),
    /// List sandboxes: name, provider, state (running, stopped, hibernated, broken; with
    /// `--all` also creating and interrupted), repository, branch, age, last use and when
    /// an idle one is stopped.
    Ls(sandbox::LsArgs),
    /// Show which host address reaches which sandbox port (`up --port`).
    Ports(ports::PortsArgs),
    /// Commit a Docker sandbox's container to an image and remove it (its workspace is
    /// kept); the next `exec`, `ports` or `up --name` resumes it.
    Hibernate(lifecycle::HibernateArgs),
    /// Build, list, remove and garbage-collect base snapshots.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Remove sandboxes past their TTL and orphaned workspaces and mounts.
    Prune(sandbox::PruneArgs),
    /// Evaluate feature flags offline and show the fast-provisioning decision.
    Flags(flags::FlagsArgs),
    /// Create, list, use and delete cloud VM hosts (DigitalOcean, Hetzner, GCP).
    Vm(vm::VmArgs),
    /// The host daemon: the git broker sandboxes fetch and push through, and the idle
    /// watch that stops idle sandboxes.
    #[command(subcommand)]
    Daemon(daemon::DaemonCommand),
}

impl Command {
    /// True when the command was asked for JSON output (`--json`).
    pub(crate) fn json(&self) -> bool {
        match self {
            Self::Up(a) => a.json,
            Self::Exec(a) => a.json,
            Self::Down(a) => a.json,
            Self::Ls(a) => a.json,
            Self::Ports(a) => a.json,
            Self::Hibernate(a) => a.json,
            Self::Prune(a) => a.json,
            Self::Snapshot(s) => s.json(),
            Self::Flags(a) => a.json(),
            Self::Vm(a) => a.json(),
            Self::Daemon(d) => d.json(),
        }
    }
}

/// The app layer, configured from the environment; detached snapshot builds run
/// this very binary (`headstart snapshot run-job`).
fn app(registry: Option<&str>) -> anyhow::Result<Headstart> {
    let mut config = Config::from_env()?;
    if let Some(r) = registry {
        config.registry = Some(r.to_owned());
    }
    config.build_runner = std::env::current_exe().ok();
    config.daemon_runner = config.build_runner.clone();
    Ok(Headstart::new(config))
}

/// Runs one command.
pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let registry = match &command {
        Command::Up(a) => a.registry.clone(),
        _ => None,
    };
    let app = app(registry.as_deref())?;
    match command {
        Command::Up(args) => up::up(&app, args).await,
        Command::Exec(args) => sandbox::exec(&app, args).await,
        Command::Down(args) => sandbox::down(&app, args).await,
        Command::Ls(args) => sandbox::ls(&app, args).await,
        Command::Ports(args) => ports::ports(&app, args).await,
        Command::Hibernate(args) => lifecycle::hibernate(&app, args).await,
        Command::Snapshot(cmd) => snapshot::run(&app, cmd).await,
        Command::Prune(args) => sandbox::prune(&app, args).await,
        Command::Flags(args) => flags::run(&app, args).await,
        Command::Vm(args) => vm::run(&app, args).await,
        Command::Daemon(cmd) => daemon::run(&app, cmd).await,
    }
}

/// `90s`, `30m`, `2h`, `1d`, or plain seconds ([`headstart::parse_duration`]).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    headstart::parse_duration(s).map_err(|e| e.to_string())
}

/// `local` or `docker`.
pub(crate) fn parse_provider(s: &str) -> Result<ProviderKind, String> {
    match s {
        "local" => Ok(ProviderKind::Local),
        "docker" => Ok(ProviderKind::Docker),
        other => Err(format!("unknown provider `{other}`; use local or docker")),
    }
}
