//! `headstart ls` and `headstart down`: the sandboxes of this data directory, on every
//! provider that answers (local always, Docker when an engine does).
//!
//! `ls` shows each sandbox's repository (its workspace's `origin`, credential-free)
//! and branch (what HEAD names), read in-process through `sandbox_core::git`, and its
//! age from the provider's creation time. `down` takes several names or `--all`; it
//! checks every name first, so a typo removes nothing.
//!
//! Not here: creating sandboxes (`up`) or expiring them (`prune`).

use std::process::ExitCode;

use clap::Args;
use sandbox_core::{SandboxInfo, SandboxName, SandboxProvider};
use serde_json::{Value, json};

use crate::choice::ProviderKind;
use crate::commands::{Ctx, find_sandbox, make_provider, parse_provider, sandbox_name};
use crate::output;

/// `headstart down ...`
#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// The sandboxes to remove.
    #[arg(
        required_unless_present = "all",
        conflicts_with = "all",
        value_name = "NAME"
    )]
    names: Vec<String>,
    /// Remove every sandbox (of `--provider`, else of every provider that answers).
    #[arg(long)]
    all: bool,
    /// Provider (default: wherever each sandbox is).
    #[arg(long, value_parser = parse_provider)]
    provider: Option<ProviderKind>,
    /// Print one JSON object: `{"removed": [{"name", "provider"}]}`.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `headstart ls`
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Print a JSON array.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Every sandbox of the providers asked for (`None`: local, and Docker if it answers).
async fn list_all(
    home: &Ctx,
    only: Option<ProviderKind>,
) -> anyhow::Result<Vec<(std::sync::Arc<dyn SandboxProvider>, SandboxInfo)>> {
    let mut all = Vec::new();
    for kind in [ProviderKind::Local, ProviderKind::Docker] {
        if only.is_some_and(|k| k != kind) {
            continue;
        }
        match make_provider(home, kind).await {
            Ok(p) => {
                for info in p.list().await? {
                    if is_running_build(&info) {
                        continue;
                    }
                    all.push((p.clone(), info));
                }
            }
            Err(e) if kind == ProviderKind::Docker && only.is_none() => {
                tracing::debug!(error = %e, "docker unavailable")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(all)
}

/// Runs `headstart down`.
pub(crate) async fn down(home: &Ctx, args: DownArgs) -> anyhow::Result<ExitCode> {
    let mut targets: Vec<(std::sync::Arc<dyn SandboxProvider>, SandboxName)> = Vec::new();
    if args.all {
        for (p, info) in list_all(home, args.provider).await? {
            targets.push((p, info.name));
        }
    } else {
        // Every name is checked before anything is removed.
        for n in &args.names {
            let name = sandbox_name(n)?;
            if targets.iter().any(|(_, t)| *t == name) {
                continue;
            }
            let (provider, _) = find_sandbox(home, &name, args.provider).await?;
            targets.push((provider, name));
        }
    }
    let mut removed = Vec::new();
    let mut failed: Option<anyhow::Error> = None;
    for (provider, name) in &targets {
        match provider.remove(name).await {
            Ok(()) => {
                if !args.json {
                    output::say(format!("removed {name}"));
                }
                removed.push(json!({"name": name.as_str(), "provider": provider.kind()}));
            }
            Err(e) => {
                tracing::warn!(sandbox = %name, error = %e, "could not remove");
                failed.get_or_insert_with(|| {
                    anyhow::Error::from(e).context(format!("removing sandbox {name}"))
                });
            }
        }
    }
    if let Some(e) = failed {
        let done: Vec<&str> = removed.iter().filter_map(|r| r["name"].as_str()).collect();
        return Err(if done.is_empty() {
            e
        } else {
            e.context(format!("removed {} before the failure", done.join(", ")))
        });
    }
    if args.json {
        output::print_json(&json!({"removed": removed}));
    } else if targets.is_empty() {
        output::say("no sandboxes");
    }
    Ok(ExitCode::SUCCESS)
}

/// What `ls` shows about one sandbox beyond [`SandboxInfo`].
fn row_json(info: &SandboxInfo) -> Value {
    let git = sandbox_core::git::summary(&info.workspace);
    let mut v = serde_json::to_value(info).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("repo".into(), json!(git.origin));
        m.insert("branch".into(), json!(git.branch));
        m.insert("commit".into(), json!(git.commit));
    }
    v
}

fn state(info: &SandboxInfo) -> String {
    match info.state {
        sandbox_core::SandboxState::Ready if !info.running => "stopped".to_owned(),
        s => serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// Runs `headstart ls`.
#[allow(clippy::print_stdout)]
pub(crate) async fn ls(home: &Ctx, args: LsArgs) -> anyhow::Result<ExitCode> {
    let all: Vec<SandboxInfo> = list_all(home, None)
        .await?
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    let rows: Vec<Value> = all.iter().map(row_json).collect();
    if args.json {
        output::print_json(&Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if output::quiet() {
        // Names only, one a line (like `docker ps -q`): for scripts.
        for info in &all {
            println!("{}", info.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no sandboxes");
        return Ok(ExitCode::SUCCESS);
    }
    let now = time::OffsetDateTime::now_utc();
    let table: Vec<Vec<String>> = all
        .iter()
        .zip(&rows)
        .map(|(info, row)| {
            vec![
                info.name.to_string(),
                info.provider.clone(),
                state(info),
                row["repo"]
                    .as_str()
                    .map_or("-".to_owned(), output::short_repo),
                row["branch"].as_str().unwrap_or("-").to_owned(),
                info.created_at
                    .map_or("-".to_owned(), |t| output::ago(t, now)),
            ]
        })
        .collect();
    print!(
        "{}",
        sandbox_core::scrub(&output::table(
            &["NAME", "PROVIDER", "STATE", "REPO", "BRANCH", "AGE"],
            &table
        ))
    );
    Ok(ExitCode::SUCCESS)
}

/// A snapshot build's own sandbox while it builds (`build-<16 hex>`, `creating`):
/// internal, never a sandbox of the user's, so listings leave it out.
fn is_running_build(info: &sandbox_core::SandboxInfo) -> bool {
    info.state == sandbox_core::SandboxState::Creating
        && info
            .name
            .as_str()
            .strip_prefix("build-")
            .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}
