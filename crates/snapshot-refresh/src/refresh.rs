//! Building one base snapshot: [`refresh_base_snapshot`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sandbox_core::git::{self, Depth, GitOptions};
use sandbox_core::scrub::{self, scrub};
use sandbox_core::{
    ConnectOptions, Credentials, ExecRequest, SandboxName, SandboxProvider, SnapshotMeta,
    SnapshotRequest, Source,
};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::key::{Recipe, SnapshotKey};
use crate::remote::PushRecord;
use sandbox_core::git::seed;

/// Default deadline for a whole build.
pub const DEFAULT_BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// Default deadline for one recipe command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Default cap on the output kept per command stream.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;

/// What to build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RefreshOptions {
    /// The repository (and branch) to snapshot; a `new_branch` is ignored.
    pub source: Source,
    /// The key to store it under.
    pub key: SnapshotKey,
    /// Setup commands and base image.
    pub recipe: Recipe,
    /// Credentials for the clone.
    pub credentials: Credentials,
    /// A seed captured from a cold start: used instead of a clone when present.
    pub seed: Option<PathBuf>,
    /// Deadline for the whole build.
    pub deadline: Duration,
    /// Output kept per command stream.
    pub output_limit: usize,
    /// Largest workspace to snapshot, in bytes.
    pub max_size_bytes: Option<u64>,
    /// Set as `HEADSTART_BUILD` in every recipe command's environment, so processes a
    /// dead build left behind can be found and killed ([`SnapshotBuilder`](crate::SnapshotBuilder)
    /// sets it; `None` sets nothing).
    pub build_marker: Option<String>,
}

impl RefreshOptions {
    /// Options with the defaults for `source`, `key` and `recipe`.
    pub fn new(source: Source, key: SnapshotKey, recipe: Recipe) -> Self {
        Self {
            source,
            key,
            recipe,
            credentials: Credentials::none(),
            seed: None,
            deadline: DEFAULT_BUILD_DEADLINE,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            max_size_bytes: None,
            build_marker: None,
        }
    }
}

/// What one recipe command did. Its output (and argv) are scrubbed of every registered
/// secret ([`sandbox_core::scrub()`]) before they are recorded here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommandRecord {
    /// The argv.
    pub argv: Vec<String>,
    /// Exit code (`None` when killed).
    pub exit_code: Option<i32>,
    /// Killed by its deadline.
    pub timed_out: bool,
    /// Captured stdout (capped).
    pub stdout: String,
    /// Captured stderr (capped).
    pub stderr: String,
    /// True when the output was cut at the cap.
    pub truncated: bool,
    /// Wall time in milliseconds.
    pub ms: u128,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The ready snapshot.
    pub snapshot: SnapshotMeta,
    /// The recipe commands and their results.
    pub commands: Vec<CommandRecord>,
    /// Whether the build planted a seed (no clone) or cloned.
    pub from_seed: bool,
    /// Wall time.
    pub duration: Duration,
    /// How the push to a shared registry went (phase `snapshot_push`); `None` when the
    /// builder has no remote.
    pub push: Option<PushRecord>,
}

/// The name of the build sandbox for `key` (stable, so a crashed build's sandbox is
/// replaced by the next one through `force_create`).
pub fn build_sandbox_name(key: &SnapshotKey) -> SandboxName {
    build_sandbox_name_of(key.as_str())
}

/// [`build_sandbox_name`] of a key as stored.
pub(crate) fn build_sandbox_name_of(key: &str) -> SandboxName {
    let digest = hex::encode(&Sha256::digest(key.as_bytes())[..8]);
    SandboxName::new(format!("build-{digest}")).unwrap_or_else(|_| SandboxName::generate())
}

/// Builds a base snapshot: a named build sandbox with `force_create`, a clone (or the
/// seed a cold start left), the recipe's commands with per-command deadlines and
/// captured output, the snapshot, and the build sandbox removed. On any failure the
/// build sandbox is removed too and no snapshot becomes visible (providers only
/// publish complete snapshots).
///
/// Recipe commands see no secret unless the recipe names it (see [`Recipe`]), and
/// what they print is scrubbed before it is recorded or put into an error.
///
/// # Errors
/// [`Error::RecipeFailed`], [`Error::BuildDeadline`], and provider or git errors.
pub async fn refresh_base_snapshot(
    provider: &dyn SandboxProvider,
    options: &RefreshOptions,
) -> Result<BuildReport> {
    let started = Instant::now();
    options.recipe.validate()?;
    let name = build_sandbox_name(&options.key);
    let result = tokio::time::timeout(options.deadline, build(provider, options, &name)).await;
    let result = match result {
        Ok(r) => r,
        Err(_) => Err(Error::BuildDeadline {
            key: options.key.to_string(),
            after: options.deadline,
        }),
    };
    if let Err(e) = provider.remove(&name).await {
        if !matches!(e, sandbox_core::Error::SandboxNotFound { .. }) {
            tracing::warn!(sandbox = %name, error = %e, "could not remove the build sandbox");
        }
    }
    if let Some(seed) = &options.seed {
        seed::discard(seed);
    }
    match result {
        Ok((snapshot, commands, from_seed)) => Ok(BuildReport {
            snapshot,
            commands,
            from_seed,
            duration: started.elapsed(),
            push: None,
        }),
        Err(e) => {
            tracing::error!(key = %options.key, error = %scrub(&e.to_string()), "snapshot build failed");
            Err(e)
        }
    }
}

async fn build(
    provider: &dyn SandboxProvider,
    options: &RefreshOptions,
    name: &SandboxName,
) -> Result<(SnapshotMeta, Vec<CommandRecord>, bool)> {
    // A build sandbox is never a user's: it stays `creating` (hidden from `ls` and
    // reconnects, its name locked while this build runs) and is removed when done.
    let mut connect = ConnectOptions::new()
        .name(name.clone())
        .force_create(true)
        .defer_ready(true);
    if let Some(image) = &options.recipe.base_image {
        connect = connect.image(image.clone());
    }
    let (sandbox, _) = provider.connect(&connect).await?;
    let workspace = sandbox.workspace().to_path_buf();

    // The snapshot is of the branch, never of a user's new branch.
    let mut source = sandbox_core::Source::new(options.source.url().clone());
    if let Some(b) = options.source.branch() {
        source = source.with_branch(b.clone())?;
    }
    let seed = options.seed.clone().filter(|s| s.exists());
    let from_seed = seed.is_some();
    let git_opts = GitOptions {
        credentials: options.credentials.clone(),
        depth: Depth::default(),
        ..GitOptions::default()
    };
    let ws = workspace.clone();
    let head = tokio::task::spawn_blocking(move || -> Result<sandbox_core::HeadInfo> {
        match seed {
            Some(seed) => {
                seed::plant(&seed, &ws)?;
                Ok(git::head(&ws)?)
            }
            None => Ok(git::clone(&source, &ws, &git_opts)?.head),
        }
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;

    let env = recipe_env(options);
    let mut records = Vec::new();
    for cmd in &options.recipe.commands {
        let mut req = ExecRequest::new(cmd.argv.clone())?
            .timeout(cmd.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT));
        req.output_limit = options.output_limit;
        req.env = env.clone();
        let out = sandbox.exec(&req).await?;
        let stderr = scrub_bytes(&out.stderr, out.truncated);
        let record = CommandRecord {
            argv: cmd.argv.iter().map(|a| scrub(a).into_owned()).collect(),
            exit_code: out.exit_code,
            timed_out: out.timed_out,
            stdout: scrub_bytes(&out.stdout, out.truncated),
            stderr: stderr.clone(),
            truncated: out.truncated,
            ms: out.duration.as_millis(),
        };
        let ok = out.success();
        let command = record.argv.join(" ");
        records.push(record);
        if !ok {
            let detail = if out.timed_out {
                "timed out".to_owned()
            } else {
                let tail: String = stderr
                    .chars()
                    .rev()
                    .take(400)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("{}; stderr: {}", exit_detail(out.exit_code), tail.trim())
            };
            return Err(Error::RecipeFailed {
                command,
                detail: scrub(&detail).into_owned(),
            });
        }
    }

    let request = SnapshotRequest::new(options.key.as_str(), options.recipe.digest())
        .at(head.branch.clone(), head.commit.clone())
        .source_url(options.source.url().to_string());
    let meta = sandbox.snapshot(&request).await?;
    if let Some(max) = options.max_size_bytes {
        if meta.size_bytes > max {
            let _ = provider.snapshots().delete(&meta.id).await;
            return Err(Error::InvalidRecipe(format!(
                "the workspace is {} bytes, over the {max}-byte snapshot cap",
                meta.size_bytes
            )));
        }
    }
    Ok((meta, records, from_seed))
}

/// The environment of every recipe command: the secrets the recipe names (from this
/// process's environment; the git token variables fall back to the credentials'
/// token) and the build marker. Nothing else: a sandbox's commands get no secret by
/// default.
fn recipe_env(options: &RefreshOptions) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for name in &options.recipe.secrets {
        let value = std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| {
                scrub::GIT_TOKEN_VARS
                    .contains(&name.as_str())
                    .then(|| options.credentials.expose_token().map(str::to_owned))
                    .flatten()
            });
        match value {
            Some(v) => {
                // it is a secret: whatever prints it is scrubbed
                sandbox_core::register_secret(&v);
                env.insert(name.clone(), v);
            }
            None => {
                tracing::warn!(key = %options.key, variable = %name, "the recipe asks for a secret that is not set");
            }
        }
    }
    if let Some(marker) = &options.build_marker {
        env.insert(crate::cleanup::BUILD_MARKER_VAR.to_owned(), marker.clone());
    }
    env
}

/// Output bytes as text, scrubbed (also of a secret cut at the output limit).
fn scrub_bytes(bytes: &[u8], truncated: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    if truncated {
        scrub::scrub_cut(&text).into_owned()
    } else {
        scrub(&text).into_owned()
    }
}

/// Runs [`refresh_base_snapshot`] with a shared provider (for spawned tasks).
pub(crate) async fn refresh_shared(
    provider: Arc<dyn SandboxProvider>,
    options: RefreshOptions,
) -> Result<BuildReport> {
    refresh_base_snapshot(provider.as_ref(), &options).await
}

/// A recipe command's end in words: `exit status 3`, or `killed by a signal` when it
/// has no exit code.
pub(crate) fn exit_detail(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_owned(),
    }
}
