//! The traits providers implement.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::lifecycle::{GcPolicy, GcReport, PruneReport};
use crate::names::{SandboxName, SnapshotId};
use crate::options::{ConnectOptions, ExecOutput, ExecRequest, PublishedPort};
use crate::snapshot::{Cursor, Page, SnapshotMeta, SnapshotRequest, SnapshotStatus};

/// A running (or stopped) sandbox holding a workspace.
///
/// The workspace is a directory on **this** host: the git engine works on it in-process
/// (git2 cannot write a remote disk). Container providers bind-mount it.
#[async_trait]
pub trait Sandbox: Send + Sync + fmt::Debug {
    /// The provider's id for it (a container id, a directory name).
    fn id(&self) -> &str;
    /// Its name.
    fn name(&self) -> &SandboxName;
    /// The workspace directory on the host.
    fn workspace(&self) -> &Path;
    /// The snapshot it was restored from, if any.
    fn base_snapshot(&self) -> Option<&SnapshotId>;
    /// The clean seal of the snapshot this sandbox was just restored from
    /// ([`crate::git::CleanSeal`]), when the restore guarantees the workspace is byte
    /// for byte the captured one and nothing ran in it since; a warm sync then skips
    /// proving it clean. `None` (the default) takes the proving walk.
    fn clean_seal(&self) -> Option<crate::git::CleanSeal> {
        None
    }
    /// Runs an argv in the workspace (never through a shell).
    async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput>;
    /// Snapshots the workspace (and image, for container providers). The snapshot is
    /// visible to the store only once complete.
    async fn snapshot(&self, request: &SnapshotRequest) -> Result<SnapshotMeta>;
    /// The ports published on the host, read from the running sandbox; `None` when its
    /// processes bind host ports directly (no isolation: the local provider).
    async fn ports(&self) -> Result<Option<Vec<PublishedPort>>> {
        Ok(None)
    }
    /// Stops running processes; the workspace stays. `connect` by name revives it.
    async fn stop(&self) -> Result<()>;
    /// Declares a sandbox created with
    /// [`ConnectOptions::defer_ready`](crate::ConnectOptions::defer_ready) complete: its
    /// record becomes `ready` (atomically) and the name's lock is released. A no-op for
    /// a sandbox that is already ready.
    async fn mark_ready(&self) -> Result<()> {
        Ok(())
    }
    /// Stops and deletes this sandbox and its workspace (a user's own `workdir` is
    /// never deleted). Works on a `creating` sandbox whose lock this handle holds.
    async fn remove(&self) -> Result<()> {
        Err(crate::Error::provider(
            "sandbox",
            "this provider cannot remove a sandbox through its handle; use SandboxProvider::remove",
        ))
    }
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Being created: a start of the name is in progress (it holds the name's start
    /// lock). Never offered (`get`, a reconnect, `exec`) until it is `ready`.
    Creating,
    /// A creation whose process is gone (killed, crashed, the machine rebooted): the
    /// record still says `creating` but nobody holds the name's start lock, so it will
    /// never become `ready`. Never offered; `prune` removes it, the next start of the
    /// name replaces it, and removing the sandbox (`down`) removes it. Providers derive
    /// it when listing, with the same lock test `prune` uses; no record stores it.
    Interrupted,
    /// Complete and usable.
    Ready,
    /// Complete, its processes stopped (the workspace is kept).
    Stopped,
    /// Its workspace directory is gone (removed from outside headstart): nothing can
    /// run in it and a start of the name refuses it. Removing the sandbox (or a
    /// `prune`) clears it.
    Broken,
}

impl SandboxState {
    /// True for a creation that never finished: `Creating` (in progress) or
    /// `Interrupted` (its process is gone). Such a sandbox is never offered to a
    /// command or a reconnect.
    #[must_use]
    pub fn is_unfinished(self) -> bool {
        matches!(self, Self::Creating | Self::Interrupted)
    }
}

/// A summary of a sandbox for listings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SandboxInfo {
    /// Its name.
    pub name: SandboxName,
    /// The provider's id.
    pub id: String,
    /// The provider kind.
    pub provider: String,
    /// The workspace directory on the host.
    pub workspace: std::path::PathBuf,
    /// The snapshot it was restored from.
    pub base_snapshot: Option<SnapshotId>,
    /// Whether it is running (providers without processes say `true`).
    pub running: bool,
    /// Where it is in its life (listings show finished ones, not `creating` or
    /// `interrupted`, unless asked for all).
    pub state: SandboxState,
    /// When it was created, when the provider knows.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_at: Option<time::OffsetDateTime>,
}

/// Whether `connect` made a new sandbox or found one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connected {
    /// A new sandbox.
    Created,
    /// An existing sandbox of that name.
    Reconnected,
}

/// Makes sandboxes.
#[async_trait]
pub trait SandboxProvider: Send + Sync {
    /// The provider kind (`local`, `docker`, ...).
    fn kind(&self) -> &'static str;
    /// Reconnects to the named sandbox, or creates one (from `base_snapshot` if set).
    /// With `force_create`, an existing sandbox of that name is removed first.
    async fn connect(&self, options: &ConnectOptions) -> Result<(Box<dyn Sandbox>, Connected)>;
    /// The named sandbox, if it exists.
    async fn get(&self, name: &SandboxName) -> Result<Option<Box<dyn Sandbox>>>;
    /// All sandboxes of this provider, in every state: unfinished creations too, each
    /// `creating` while its start holds the name's lock and `interrupted` once that lock
    /// is free (the test [`prune`](Self::prune) uses to tell a dead start from a busy one).
    async fn list(&self) -> Result<Vec<SandboxInfo>>;
    /// Stops and deletes the named sandbox and its workspace (a user's own `workdir`
    /// is never deleted).
    ///
    /// # Errors
    /// [`Error::SandboxNotFound`](crate::Error::SandboxNotFound) when it does not exist.
    async fn remove(&self, name: &SandboxName) -> Result<()>;
    /// The store holding this provider's snapshots.
    fn snapshots(&self) -> Arc<dyn SnapshotStore>;
    /// Removes what has expired or was left behind: sandboxes past their TTL,
    /// interrupted creations, halves of sandboxes whose other half is gone. A sandbox
    /// being started or removed by another process is left alone (reported `busy`).
    async fn prune(&self) -> Result<PruneReport>;
}

/// Default page size for [`SnapshotStore::latest_ready`].
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// Where snapshots live.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// One page of the snapshots called `name` (all names when `None`), newest first.
    async fn list(
        &self,
        name: Option<&str>,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<SnapshotMeta>>;
    /// One snapshot by id.
    async fn get(&self, id: &SnapshotId) -> Result<Option<SnapshotMeta>>;
    /// Deletes a snapshot.
    async fn delete(&self, id: &SnapshotId) -> Result<()>;
    /// Removes the snapshots `policy` does not keep (see [`GcPolicy::doomed`]), except
    /// those a sandbox still uses, and what interrupted writes left.
    async fn gc(&self, policy: &GcPolicy) -> Result<GcReport>;
    /// The page size [`latest_ready`](Self::latest_ready) asks for.
    fn page_size(&self) -> usize {
        DEFAULT_PAGE_SIZE
    }
    /// Every snapshot called `name` (all names when `None`), newest first, following
    /// every page.
    async fn list_all(&self, name: Option<&str>) -> Result<Vec<SnapshotMeta>> {
        let mut out = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = self
                .list(name, cursor.as_ref(), self.page_size().max(1))
                .await?;
            out.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }
    /// The newest [`Ready`](SnapshotStatus::Ready) snapshot called `name`, following
    /// **every** page (a ready snapshot behind pages of failed ones is still found).
    async fn latest_ready(&self, name: &str) -> Result<Option<SnapshotMeta>> {
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = self
                .list(Some(name), cursor.as_ref(), self.page_size().max(1))
                .await?;
            if let Some(hit) = page
                .items
                .into_iter()
                .find(|m| m.status == SnapshotStatus::Ready)
            {
                return Ok(Some(hit));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(None),
            }
        }
    }
}
