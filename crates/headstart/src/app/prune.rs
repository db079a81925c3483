//! [`Headstart::prune`]: remove sandboxes past their TTL, orphaned workspaces,
//! interrupted starts and what dead snapshot builds left, for the local provider and
//! Docker when an engine answers. Not here: how each provider finds them
//! (`provisioners`, `snapshot-refresh`).

use std::path::PathBuf;
use std::sync::Arc;

use sandbox_core::{PruneReport, SandboxName, SandboxProvider};
use serde::Serialize;
use snapshot_refresh::SnapshotBuilder;

use super::choice::ProviderKind;
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
    fn absorb(&mut self, provider: &'static str, report: PruneReport) {
        let named =
            |names: Vec<SandboxName>| names.into_iter().map(move |n| Pruned::named(n, provider));
        self.expired.extend(named(report.expired));
        self.orphans.extend(named(report.orphans));
        self.orphans
            .extend(report.orphan_workspaces.into_iter().map(|dir| Pruned {
                name: None,
                workspace: Some(dir),
                provider,
            }));
        self.interrupted.extend(named(report.interrupted));
        self.busy.extend(named(report.busy));
        self.stale_locks += report.stale_locks;
        self.interrupted_snapshot_writes += report.interrupted_snapshot_writes;
    }

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
        let mut out = PruneOutcome {
            dead_builds: DeadBuilds {
                processes_killed: cleaned.processes_killed,
                sandboxes_removed: cleaned.sandboxes_removed,
                seeds_removed: cleaned.seeds_removed,
                jobs_removed: cleaned.jobs_removed,
            },
            ..PruneOutcome::default()
        };
        let mut providers: Vec<Arc<dyn SandboxProvider>> = vec![Arc::new(p)];
        // Docker sandboxes too, when an engine answers (nothing to do otherwise).
        match self.provider(ProviderKind::Docker).await {
            Ok(docker) => providers.push(docker),
            Err(e) => tracing::debug!(error = %e, "no Docker engine: nothing to prune there"),
        }
        for provider in providers {
            out.absorb(provider.kind(), provider.prune().await?);
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
