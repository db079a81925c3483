//! `headstart snapshot build|ls|rm|gc|pull|run-job`: arguments and rendering. `ls` shows
//! the snapshots of every provider that answers, newest first, with sizes in
//! KiB/MiB, ages such as `3 min ago`, the branch each was built from, and recent
//! build failures.
//!
//! Not here: building, removing or collecting snapshots (the app layer's
//! `Headstart::snapshot_*`, over `snapshot-refresh` and `provisioners`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use headstart::{
    Headstart, ProviderKind, RunJobOutcome, SnapshotBuildRequest, SnapshotLsOutcome,
    SnapshotPullRequest,
};

use super::{output, parse_provider};

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Build a base snapshot of a repository now (and wait for it).
    Build {
        /// The repository.
        repo: String,
        /// Branch (default: the remote's default branch).
        #[arg(long, short)]
        branch: Option<String>,
        /// Setup recipe file (JSON).
        #[arg(long, value_name = "FILE")]
        recipe: Option<PathBuf>,
        /// Forget recent failures of this repository first.
        #[arg(long)]
        force: bool,
        /// Provider (default: local).
        #[arg(long, value_parser = parse_provider)]
        provider: Option<ProviderKind>,
        /// Print one JSON object: the snapshot and the recipe's commands.
        #[arg(long)]
        json: bool,
    },
    /// List snapshots (local, and Docker's when an engine answers) and recent build
    /// failures.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only this provider's snapshots (default: every provider that answers).
        #[arg(long, value_parser = parse_provider)]
        provider: Option<ProviderKind>,
    },
    /// Remove a snapshot.
    Rm {
        /// The snapshot id.
        id: String,
        /// Provider (default: the one `snapshot ls` lists it under).
        #[arg(long, value_parser = parse_provider)]
        provider: Option<ProviderKind>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Garbage-collect snapshots.
    Gc {
        /// Keep this many newest ready snapshots per repository.
        #[arg(long, default_value_t = 2)]
        keep: usize,
        /// Remove snapshots older than this many days.
        #[arg(long, default_value_t = 14)]
        max_age_days: u64,
        /// Provider (default: local).
        #[arg(long, value_parser = parse_provider)]
        provider: Option<ProviderKind>,
        /// Collect the shared registry instead (this one, else HEADSTART_REGISTRY):
        /// keep the newest `--keep` snapshots per key, delete the older manifests.
        #[arg(
            long,
            value_name = "REF",
            num_args = 0..=1,
            default_missing_value = "",
            conflicts_with_all = ["provider", "max_age_days"]
        )]
        registry: Option<String>,
        /// Print one JSON object: what was removed and kept.
        #[arg(long)]
        json: bool,
    },
    /// Prefetch a repository's newest snapshot from the shared registry into this
    /// host's store (an init container, a new worker), so the next start is warm and
    /// local. A snapshot already here is not pulled again.
    Pull {
        /// The repository.
        repo: String,
        /// Setup recipe file (JSON) the snapshots are built with (part of the key).
        #[arg(long, value_name = "FILE")]
        recipe: Option<PathBuf>,
        /// Provider (default: local).
        #[arg(long, value_parser = parse_provider)]
        provider: Option<ProviderKind>,
        /// The registry (default: HEADSTART_REGISTRY).
        #[arg(long, value_name = "REF")]
        registry: Option<String>,
        /// Print one JSON object: the snapshot, where it came from, what was downloaded.
        #[arg(long)]
        json: bool,
    },
    /// Run a build job file (what detached build processes do).
    #[command(hide = true)]
    RunJob {
        /// The job file.
        file: PathBuf,
        /// Provider.
        #[arg(long, value_parser = parse_provider, default_value = "local")]
        provider: ProviderKind,
    },
}

impl SnapshotCommand {
    /// True with `--json`.
    pub(crate) fn json(&self) -> bool {
        match self {
            Self::Build { json, .. }
            | Self::Ls { json, .. }
            | Self::Gc { json, .. }
            | Self::Rm { json, .. }
            | Self::Pull { json, .. } => *json,
            Self::RunJob { .. } => false,
        }
    }
}

/// Runs `headstart snapshot ...`.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(app: &Headstart, cmd: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SnapshotCommand::Build {
            repo,
            branch,
            recipe,
            force,
            provider,
            json,
        } => {
            let mut req = SnapshotBuildRequest::new(repo);
            req.branch = branch;
            req.recipe_file = recipe;
            req.force = force;
            req.provider = provider;
            let r = app.snapshot_build(req).await?;
            if json {
                output::print_outcome(&r)?;
                return Ok(ExitCode::SUCCESS);
            }
            output::say(format!(
                "snapshot {} of {} ready in {:.1} s",
                r.snapshot.id,
                r.key,
                r.duration.as_secs_f64()
            ));
            for c in &r.commands {
                output::say(format!("  {:?} -> {:?} ({} ms)", c.argv, c.exit_code, c.ms));
            }
        }
        SnapshotCommand::Ls { json, provider } => {
            let out = app.snapshot_ls(provider).await?;
            if json {
                output::print_outcome(&out)?;
            } else {
                print_ls(&out);
            }
        }
        SnapshotCommand::Rm { id, provider, json } => {
            let out = app.snapshot_rm(&id, provider).await?;
            if json {
                output::print_outcome(&out)?;
            } else {
                for id in &out.removed {
                    output::say(format!("removed snapshot {id}"));
                }
            }
        }
        SnapshotCommand::Gc {
            keep,
            registry: Some(registry),
            json,
            ..
        } => {
            let given = Some(registry.as_str()).filter(|r| !r.is_empty());
            let out = app.snapshot_gc_registry(given, keep).await?;
            if json {
                output::print_outcome(&out)?;
            } else {
                for tag in &out.removed {
                    output::say(format!("removed {}:{tag}", out.registry));
                }
                output::say(format!(
                    "removed {} snapshot(s) from {}, kept {}",
                    out.removed.len(),
                    out.registry,
                    out.kept.len()
                ));
            }
        }
        SnapshotCommand::Gc {
            keep,
            max_age_days,
            provider,
            registry: None,
            json,
        } => {
            let max_age = Duration::from_secs(max_age_days * 86_400);
            let out = app.snapshot_gc(keep, max_age, provider).await?;
            if json {
                output::print_outcome(&out)?;
            } else if out.provider == "docker" {
                for id in &out.removed {
                    output::say(format!("removed snapshot {id} (and its image)"));
                }
                output::say(format!("removed {} snapshot(s)", out.removed.len()));
            } else {
                for id in &out.removed {
                    output::say(format!("removed snapshot {id}"));
                }
                for id in &out.kept_in_use {
                    output::say(format!("kept snapshot {id}: a sandbox still uses it"));
                }
                output::say(format!(
                    "removed {} snapshot(s) and {} interrupted write(s)",
                    out.removed.len(),
                    out.interrupted_writes_removed
                ));
            }
        }
        SnapshotCommand::Pull {
            repo,
            recipe,
            provider,
            registry,
            json,
        } => {
            let mut req = SnapshotPullRequest::new(repo);
            req.recipe_file = recipe;
            req.provider = provider;
            req.registry = registry;
            let r = app.snapshot_pull(req).await?;
            if json {
                output::print_outcome(&r)?;
            } else if r.downloaded {
                output::say(format!(
                    "pulled snapshot {} of {} from {} ({}, {:.1} s)",
                    r.snapshot.id,
                    r.key,
                    r.reference,
                    output::human_bytes(r.bytes),
                    r.ms as f64 / 1e3
                ));
            } else {
                output::say(format!(
                    "snapshot {} of {} is here already; nothing pulled",
                    r.snapshot.id, r.key
                ));
            }
        }
        SnapshotCommand::RunJob { file, provider } => {
            match app.snapshot_run_job(&file, provider).await? {
                RunJobOutcome::Built { id, duration } => {
                    println!("snapshot {id} ready in {:.1} s", duration.as_secs_f64())
                }
                RunJobOutcome::AlreadyBuilding => {
                    println!("another process is building this snapshot")
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text form of `snapshot ls`.
#[allow(clippy::print_stdout)]
fn print_ls(out: &SnapshotLsOutcome) {
    if output::quiet() {
        for s in &out.snapshots {
            println!("{}", s.meta.id);
        }
        return;
    }
    let now = time::OffsetDateTime::now_utc();
    if out.snapshots.is_empty() {
        println!("no snapshots");
    } else {
        let rows: Vec<Vec<String>> = out
            .snapshots
            .iter()
            .map(|row| {
                let s = &row.meta;
                let repo = s
                    .source_url
                    .as_deref()
                    .map_or_else(|| s.name.clone(), output::short_repo);
                vec![
                    s.id.to_string(),
                    row.provider.to_owned(),
                    format!("{:?}", s.status).to_lowercase(),
                    s.branch.clone().unwrap_or_else(|| "-".into()),
                    if s.size_bytes == 0 {
                        "-".to_owned()
                    } else {
                        output::human_bytes(s.size_bytes)
                    },
                    output::ago(s.created_at, now),
                    match &row.push {
                        None => "-".to_owned(),
                        Some(p) if p.error.is_none() => "pushed".to_owned(),
                        Some(p) => format!(
                            "push failed ({})",
                            p.error_kind.as_deref().unwrap_or("error")
                        ),
                    },
                    match &s.error {
                        Some(e) => format!("{repo} ({e})"),
                        None => repo,
                    },
                ]
            })
            .collect();
        output::print_table(
            &[
                "ID", "PROVIDER", "STATUS", "BRANCH", "SIZE", "CREATED", "REGISTRY", "REPO",
            ],
            &rows,
        );
    }
    for f in &out.failures {
        println!(
            "{}",
            sandbox_core::scrub(&format!(
                "build of {} failed {} time(s), last {}: {}; next try {}",
                f.key,
                f.failures,
                output::ago(f.failed_at, now),
                f.last_error,
                if f.retry_after > now {
                    format!("in {} min", (f.retry_after - now).whole_minutes().max(1))
                } else {
                    "on the next start".to_owned()
                }
            ))
        );
    }
}
