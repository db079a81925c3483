//! Base snapshots: [`Headstart::snapshot_build`] (now, and wait), `snapshot_ls` (every
//! provider that answers, newest first, with recent build failures), `snapshot_rm`,
//! `snapshot_gc`, and `snapshot_run_job` (what a detached build process does).
//!
//! Not here: how snapshots are built, stored or restored (`snapshot-refresh`,
//! `provisioners`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::choice::ProviderKind;
use sandbox_core::{GcPolicy, SnapshotId, SnapshotMeta};
use serde::Serialize;
use snapshot_refresh::{CommandRecord, FastStart, KickOutcome, RefreshOptions, SnapshotBuilder};

pub use snapshot_refresh::FailureRecord;

use super::sandboxes::ms;
use super::{Error, Headstart, Result, read_recipe, source_from};

/// A snapshot to build now.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SnapshotBuildRequest {
    /// The repository.
    pub repo: String,
    /// Branch (default: the remote's default branch).
    pub branch: Option<String>,
    /// Setup recipe file (JSON).
    pub recipe_file: Option<PathBuf>,
    /// Forget recent failures of this repository first.
    pub force: bool,
    /// Provider (default: local).
    pub provider: Option<ProviderKind>,
}

impl SnapshotBuildRequest {
    /// A build of `repo` with every default.
    pub fn new(repo: impl Into<String>) -> Self {
        Self {
            repo: repo.into(),
            ..Self::default()
        }
    }
}

/// A built snapshot (`docs/json/snapshot-build.schema.json`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SnapshotBuildOutcome {
    /// The ready snapshot.
    pub snapshot: SnapshotMeta,
    /// Its provider.
    pub provider: &'static str,
    /// Its key.
    pub key: String,
    /// Wall time of the build.
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
    /// How the push to the shared registry went (phase `snapshot_push`); `None` when
    /// no registry is configured.
    pub push: Option<snapshot_refresh::PushRecord>,
    /// The recipe's commands and their results.
    pub commands: Vec<CommandRecord>,
}

/// One snapshot as `snapshot ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRow {
    /// The snapshot.
    #[serde(flatten)]
    pub meta: SnapshotMeta,
    /// Its provider.
    pub provider: &'static str,
    /// How its push to the registry went (`None`: no push was tried).
    pub push: Option<snapshot_refresh::PushRecord>,
}

/// Every snapshot and recent build failures (`docs/json/snapshot-ls.schema.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotLsOutcome {
    /// Newest first.
    pub snapshots: Vec<SnapshotRow>,
    /// Recent build failures.
    pub failures: Vec<FailureRecord>,
}

/// A removed snapshot (`docs/json/snapshot-rm.schema.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRmOutcome {
    /// What was removed.
    pub removed: Vec<SnapshotId>,
}

/// What a snapshot collection did (`docs/json/snapshot-gc.schema.json`).
#[derive(Debug, Clone, Serialize)]
pub struct GcOutcome {
    /// The provider collected.
    pub provider: &'static str,
    /// Snapshots removed.
    pub removed: Vec<SnapshotId>,
    /// Snapshots kept because a sandbox still uses them.
    pub kept_in_use: Vec<SnapshotId>,
    /// Interrupted snapshot writes removed.
    pub interrupted_writes_removed: usize,
}

/// What running a build job file did.
#[derive(Debug, Clone)]
pub enum RunJobOutcome {
    /// The snapshot is ready.
    Built {
        /// The snapshot.
        id: SnapshotId,
        /// Wall time.
        duration: Duration,
    },
    /// Another process is building it.
    AlreadyBuilding,
}

impl Headstart {
    /// Builds a base snapshot of a repository now and waits for it.
    ///
    /// # Errors
    /// Bad input, a build already running or backing off after failures, a failed
    /// build.
    pub async fn snapshot_build(&self, req: SnapshotBuildRequest) -> Result<SnapshotBuildOutcome> {
        let kind = req.provider.unwrap_or(ProviderKind::Local);
        let source = source_from(&req.repo, req.branch.as_deref(), None)?;
        let recipe = read_recipe(req.recipe_file.as_deref())?;
        let p = self.provider(kind).await?;
        let builder = self.builder_for(p.clone(), kind, false, self.remote_for(kind).await?);
        let fast = FastStart::new(p, Arc::new(builder)).recipe(recipe.clone());
        let key = fast
            .key_for(&source)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        if req.force {
            fast.snapshot_builder().failures().clear(key.as_str());
        }
        let mut options = RefreshOptions::new(source, key.clone(), recipe);
        options.credentials = self.config.credentials.clone();
        match fast.snapshot_builder().kick(options, None)? {
            KickOutcome::Started | KickOutcome::Detached { .. } => {}
            KickOutcome::AlreadyBuilding => {
                return Err(Error::Failed(format!(
                    "a build of {key} is already running"
                )));
            }
            KickOutcome::BackingOff {
                last_error,
                retry_after,
                failures,
            } => {
                return Err(Error::BackingOff(format!(
                    "{key} failed {failures} time(s) recently ({last_error}); next try after {retry_after}"
                )));
            }
        }
        match fast.snapshot_builder().wait(&key).await {
            Some(Ok(r)) => Ok(SnapshotBuildOutcome {
                snapshot: r.snapshot,
                provider: kind.as_str(),
                key: key.as_str().to_owned(),
                duration: r.duration,
                commands: r.commands,
                push: r.push,
            }),
            Some(Err(e)) => Err(Error::Failed(format!("snapshot build failed: {e}"))),
            None => Err(Error::Failed("the build did not start".into())),
        }
    }

    /// The snapshots of `only`, else of every provider that answers, newest first,
    /// and recent build failures.
    ///
    /// # Errors
    /// When a provider fails to list (or `only` cannot be reached).
    pub async fn snapshot_ls(&self, only: Option<ProviderKind>) -> Result<SnapshotLsOutcome> {
        let mut snapshots: Vec<SnapshotRow> = Vec::new();
        for kind in [ProviderKind::Local, ProviderKind::Docker] {
            match only {
                Some(k) if k != kind => continue,
                None if kind == ProviderKind::Docker && !super::docker_answers().await => continue,
                _ => {}
            }
            let Some(p) = self.provider_if_reachable(kind, only.is_none()).await? else {
                continue;
            };
            snapshots.extend(p.snapshots().list_all(None).await?.into_iter().map(|meta| {
                SnapshotRow {
                    push: snapshot_refresh::PushRecord::read(&self.state_dir(), &meta.id),
                    meta,
                    provider: kind.as_str(),
                }
            }));
        }
        snapshots.sort_by_key(|s| std::cmp::Reverse(s.meta.created_at));
        let failures = snapshot_refresh::FailureCache::new(&self.state_dir()).all();
        Ok(SnapshotLsOutcome {
            snapshots,
            failures,
        })
    }

    /// Removes snapshot `id` of `provider` (default: wherever `snapshot ls` lists it,
    /// local first, then Docker when an engine answers).
    ///
    /// # Errors
    /// An unknown snapshot, or a failed removal.
    pub async fn snapshot_rm(
        &self,
        id: &str,
        provider: Option<ProviderKind>,
    ) -> Result<SnapshotRmOutcome> {
        let id = SnapshotId::new(id)?;
        for kind in [ProviderKind::Local, ProviderKind::Docker] {
            match provider {
                Some(k) if k != kind => continue,
                None if kind == ProviderKind::Docker && !super::docker_answers().await => continue,
                _ => {}
            }
            let p = self.provider(kind).await?;
            if p.snapshots().get(&id).await?.is_some() {
                p.snapshots().delete(&id).await?;
                return Ok(SnapshotRmOutcome { removed: vec![id] });
            }
        }
        Err(sandbox_core::Error::SnapshotNotFound { id: id.to_string() }.into())
    }

    /// Collects snapshots: keeps the `keep` newest ready ones per repository and
    /// removes those older than `max_age` (of Docker when asked, else local).
    ///
    /// # Errors
    /// When the store fails (or Docker cannot be reached).
    pub async fn snapshot_gc(
        &self,
        keep: usize,
        max_age: Duration,
        provider: Option<ProviderKind>,
    ) -> Result<GcOutcome> {
        let policy = GcPolicy::new(keep, Some(max_age));
        let provider = self
            .provider(provider.unwrap_or(ProviderKind::Local))
            .await?;
        let report = provider.snapshots().gc(&policy).await?;
        Ok(GcOutcome {
            provider: provider.kind(),
            removed: report.removed,
            kept_in_use: report.kept_in_use,
            interrupted_writes_removed: report.interrupted_writes_removed,
        })
    }

    /// Runs a build job file (what a detached build process does).
    ///
    /// # Errors
    /// A job file that cannot be read, or a failed build.
    pub async fn snapshot_run_job(
        &self,
        file: &Path,
        provider: ProviderKind,
    ) -> Result<RunJobOutcome> {
        let p = self.provider(provider).await?;
        let mut builder = SnapshotBuilder::new(p, self.state_dir());
        if let Some(remote) = self.remote_for(provider).await? {
            builder = builder.with_remote(remote);
        }
        Ok(
            match builder
                .run_job_file(file, self.config.credentials.clone())
                .await?
            {
                Some(r) => RunJobOutcome::Built {
                    id: r.snapshot.id,
                    duration: r.duration,
                },
                None => RunJobOutcome::AlreadyBuilding,
            },
        )
    }
}
