//! The git engine: clone and sync in-process through git2 (libgit2).
//!
//! No `git` subprocess and no shell: URLs and branch names are validated types and go
//! to libgit2 as data. Credentials reach libgit2 only through a credential callback,
//! only for the repository's own host, and are never written to `.git/config`.
//!
//! All functions here **block**; async callers use `tokio::task::spawn_blocking`.

use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::report::HeadInfo;
use crate::source::Source;
use crate::url::RepoUrl;

/// How much history a clone fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The newest `n` commits of the branch (default: 1).
    Shallow(NonZeroU32),
    /// All history.
    Full,
}

impl Default for Depth {
    fn default() -> Self {
        Self::Shallow(NonZeroU32::MIN)
    }
}

/// Transfer progress, as libgit2 reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Objects received so far.
    pub received_objects: usize,
    /// Objects the server will send.
    pub total_objects: usize,
    /// Deltas resolved so far.
    pub indexed_deltas: usize,
    /// Deltas to resolve.
    pub total_deltas: usize,
    /// Bytes received so far.
    pub received_bytes: usize,
}

/// Receives [`Progress`] during transfers.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Options for [`clone`] and [`sync`].
#[derive(Clone, Default)]
pub struct GitOptions {
    /// Credentials for the repository's host.
    pub credentials: Credentials,
    /// History depth for clones (sync always fetches depth 1 where the transport
    /// allows it).
    pub depth: Depth,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
}

impl fmt::Debug for GitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitOptions")
            .field("credentials", &self.credentials)
            .field("depth", &self.depth)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// The result of a clone or sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// Branch and commit HEAD is on.
    pub head: HeadInfo,
    /// Bytes received from the remote.
    pub received_bytes: u64,
    /// Objects received from the remote.
    pub received_objects: u64,
}

/// Clones `source` into `dest` (which must not exist or be empty) and checks out the
/// branch the source asks for: `branch`, else the remote's default branch; with
/// `new_branch`, a new branch from that tip (an error if the remote has it already).
///
/// # Errors
/// [`Error::BranchNotFound`], [`Error::NewBranchExists`], [`Error::AuthFailed`],
/// [`Error::RepoNotFound`], [`Error::Network`], [`Error::UnsupportedRepository`],
/// [`Error::Git`].
pub fn clone(source: &Source, dest: &Path, options: &GitOptions) -> Result<Checkout> {
    let _ = (source, dest, options);
    Err(Error::Git { op: "clone", message: "not implemented yet".into() })
}

/// Brings an existing checkout (a restored snapshot) to the branch `source` asks for:
/// fetches exactly `+refs/heads/B:refs/remotes/origin/B` at depth 1, then does the
/// equivalent of `git checkout -B B origin/B` and removes untracked files left from
/// the snapshot's older tree.
///
/// # Errors
/// [`Error::OriginMismatch`] when the workspace's `origin` is another repository, and
/// the errors of [`clone`].
pub fn sync(source: &Source, workspace: &Path, options: &GitOptions) -> Result<Checkout> {
    let _ = (source, workspace, options);
    Err(Error::Git { op: "sync", message: "not implemented yet".into() })
}

/// The remote's default branch (its `HEAD` symref), read from the remote.
///
/// # Errors
/// As [`clone`].
pub fn remote_default_branch(url: &RepoUrl, credentials: &Credentials) -> Result<String> {
    let _ = (url, credentials);
    Err(Error::Git { op: "ls-remote", message: "not implemented yet".into() })
}

/// The branch and commit of a workspace's HEAD.
///
/// # Errors
/// [`Error::Git`] when `workspace` is not a repository or HEAD is detached.
pub fn head(workspace: &Path) -> Result<HeadInfo> {
    let _ = workspace;
    Err(Error::Git { op: "head", message: "not implemented yet".into() })
}
