//! `headstart daemon run|start|status|stop`: the credential daemon (the app layer's
//! [`headstart::daemon`]) in the foreground, its grants, and stopping it.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use headstart::Headstart;
use headstart::daemon::DaemonStatus;

use super::output;

#[derive(Debug, Subcommand)]
pub(crate) enum DaemonCommand {
    /// Run the daemon in the foreground (`up` starts it when a sandbox needs a grant or
    /// has an idle timeout): the git broker on 127.0.0.1, the control socket and the
    /// idle watch that stops idle sandboxes.
    Run,
    /// Start the credential daemon in the background when none runs (its grants come
    /// back without tokens: each sandbox's next `up` registers its token again).
    Start(JsonArgs),
    /// Show whether the daemon runs, its port and its grants (never a capability).
    Status(JsonArgs),
    /// Stop the daemon (grants stay saved, without tokens).
    Stop(JsonArgs),
}

#[derive(Debug, Args)]
pub(crate) struct JsonArgs {
    /// Print one JSON object instead of text (`start` and `status`:
    /// `docs/json/daemon-status.schema.json`; `stop`: `docs/json/daemon-stop.schema.json`).
    #[arg(long)]
    pub(crate) json: bool,
}

impl DaemonCommand {
    pub(crate) fn json(&self) -> bool {
        matches!(self, Self::Start(a) | Self::Status(a) | Self::Stop(a) if a.json)
    }
}

/// Runs one `daemon` command.
pub(crate) async fn run(app: &Headstart, cmd: DaemonCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DaemonCommand::Run => headstart::daemon::run_daemon(app.data_dir()).await?,
        DaemonCommand::Start(args) => {
            let status = app.daemon_start().await?;
            if args.json {
                output::print_outcome(&status)?;
            } else if !output::quiet() {
                eprintln!(
                    "credential daemon running (pid {}, broker on 127.0.0.1:{})",
                    status.pid.unwrap_or_default(),
                    status.port.unwrap_or_default()
                );
            }
        }
        DaemonCommand::Status(args) => {
            let status = app.daemon_status().await?;
            if args.json {
                output::print_outcome(&status)?;
            } else {
                print_status(&status);
            }
        }
        DaemonCommand::Stop(args) => {
            let stopped = app.daemon_stop().await?;
            if args.json {
                output::print_json(&serde_json::json!({ "stopped": stopped }));
            } else if !output::quiet() {
                eprintln!(
                    "{}",
                    if stopped {
                        "credential daemon stopped"
                    } else {
                        "no credential daemon was running"
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn print_status(s: &DaemonStatus) {
    if !s.running {
        println!("credential daemon: not running");
        return;
    }
    println!(
        "credential daemon: running (pid {}, broker on 127.0.0.1:{})",
        s.pid.unwrap_or_default(),
        s.port.unwrap_or_default()
    );
    if !s.addresses.is_empty() {
        println!(
            "  also listening on {} (Docker bridge)",
            s.addresses.join(", ")
        );
    }
    for g in &s.grants {
        let push = if g.push.is_empty() {
            "read-only".to_owned()
        } else {
            format!("push {}", g.push.join(", "))
        };
        let state = if g.revoked { ", revoked" } else { "" };
        println!(
            "  {} {} {} ({push}; expires {}{state}) cap {}",
            g.id,
            g.sandbox.as_deref().unwrap_or("-"),
            g.repository,
            g.expires_at,
            g.capability_prefix
        );
    }
}
