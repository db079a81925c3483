//! [`Headstart::prune`]: remove sandboxes past their TTL, orphaned workspaces,
//! interrupted starts and what dead snapshot builds left, for the local provider and
//! Docker when an engine answers. Not here: how each provider finds them
//! (`provisioners`, `snapshot-refresh`).

use std::path::PathBuf;
use std::sync::Arc;

use sandbox_core::SandboxName;
use serde::Serialize;
use snapshot_refresh::SnapshotBuilder;

use super::{Headstart, Result};

/// One sandbox (or workspace) prune dealt with.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    /// The sandbox (absent for a local orphaned workspace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<SandboxName>,
    /// The workspace directory (local orphans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
    /// The provider.
    pub provider: &'static str,
}

impl Pruned {
    fn named(name: SandboxName, provider: &'static str) -> Self {
        Self {
            name: Some(name),
            workspace: None,
            provider,
        }
    }
}

/// What dead snapshot builds left that was cleaned up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadBuilds {
    /// Recipe processes killed.
    pub processes_killed: usize,
    /// Build sandboxes removed.
    pub sandboxes_removed: Vec<SandboxName>,
    /// Seeds removed.
    pub seeds_removed: usize,
    /// Job files removed.
    pub jobs_removed: usize,
}

impl DeadBuilds {
    /// True when nothing was cleaned.
    pub fn is_empty(&self) -> bool {
        self.processes_killed == 0
            && self.sandboxes_removed.is_empty()
            && self.seeds_removed == 0
            && self.jobs_removed == 0
    }
}

/// What prune removed (`docs/json/prune.schema.json`).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct PruneOutcome {
    /// Sandboxes removed because their TTL passed.
    pub expired: Vec<Pruned>,
    /// Workspaces without a sandbox, removed.
    pub orphans: Vec<Pruned>,
    /// Interrupted starts, removed.
    pub interrupted: Vec<Pruned>,
    /// Sandboxes left alone: a start or removal of them is in progress.
    pub busy: Vec<Pruned>,
    /// Lock files of sandboxes that no longer exist, removed.
    pub stale_locks: usize,
    /// Interrupted snapshot writes, removed.
    pub interrupted_snapshot_writes: usize,
    /// What dead snapshot builds left.
    pub dead_builds: DeadBuilds,
}

impl PruneOutcome {
    /// True when nothing was done.
    pub fn is_empty(&self) -> bool {
        self.expired.is_empty()
            && self.orphans.is_empty()
            && self.interrupted.is_empty()
            && self.stale_locks == 0
            && self.interrupted_snapshot_writes == 0
            && self.dead_builds.is_empty()
    }
}

impl Headstart {
    /// Removes what has expired or was left behind.
    ///
    /// # Errors
    /// When the local provider or a Docker engine that answers fails.
    pub async fn prune(&self) -> Result<PruneOutcome> {
        let p = self.local_provider();
        // a killed builder's recipe processes, seeds and build sandbox (only dead builds')
        let cleaned = SnapshotBuilder::new(Arc::new(p.clone()), self.state_dir())
            .cleanup_stale()
            .await?;
        let report = p.prune().await?;
        let local = |names: Vec<SandboxName>| -> Vec<Pruned> {
            names
                .into_iter()
                .map(|n| Pruned::named(n, "local"))
                .collect()
        };
        let mut out = PruneOutcome {
            expired: local(report.expired),
            orphans: report
                .orphans
                .into_iter()
                .map(|dir| Pruned {
                    name: None,
                    workspace: Some(dir),
                    provider: "local",
                })
                .collect(),
            interrupted: local(report.interrupted),
            busy: local(report.busy),
            stale_locks: report.stale_locks,
            interrupted_snapshot_writes: report.stale_snapshots,
            dead_builds: DeadBuilds {
                processes_killed: cleaned.processes_killed,
                sandboxes_removed: cleaned.sandboxes_removed,
                seeds_removed: cleaned.seeds_removed,
                jobs_removed: cleaned.jobs_removed,
            },
        };
        // Docker sandboxes too, when an engine answers (nothing to do otherwise).
        match self.docker_provider().await {
            Ok(docker) => {
                let report = docker.prune().await?;
                let docker =
                    |names: Vec<SandboxName>| names.into_iter().map(|n| Pruned::named(n, "docker"));
                out.expired.extend(docker(report.expired));
                out.orphans.extend(docker(report.orphans));
                out.interrupted.extend(docker(report.interrupted));
            }
            Err(e) => tracing::debug!(error = %e, "no Docker engine: nothing to prune there"),
        }
        // A removed sandbox's broker grants go with it.
        for p in out.expired.iter().chain(&out.interrupted) {
            if let Some(name) = &p.name {
                self.revoke_grants(name).await;
            }
        }
        Ok(out)
    }
}
