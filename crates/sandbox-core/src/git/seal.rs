//! Clean seals: a snapshot proves once, when it is captured, that its worktree holds
//! exactly HEAD's tree, so a warm start need not prove it again.
//!
//! [`seal_clean`] runs the walk [`sync`](super::sync) would run (a status of the
//! worktree against the index and of the index against HEAD, untracked files
//! included, ignored ones not) on the captured workspace, off the warm path, and
//! returns a [`CleanSeal`]: HEAD's commit and the index file's checksum (its trailing
//! SHA-1). A provider whose restore guarantees the workspace is byte for byte the
//! captured one (an overlay whose read-only lower layer is the snapshot, with a new,
//! empty upper layer) hands the seal to [`GitOptions::clean_seal`](super::GitOptions);
//! the sync then verifies that HEAD and the index checksum still match (reading the
//! last 20 bytes of the index) and checks out the tree diff without the walk.
//!
//! Anything else takes the proving walk: no seal, a seal that does not match (the
//! snapshot's index was written after capture), an index written without a checksum
//! (`index.skipHash`). What a seal cannot see is a worktree file of the snapshot
//! rewritten behind git's back; the local provider never writes a snapshot after
//! capture and never gives a sandbox a writable path into one, which is what makes
//! the restore's guarantee.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use git2::Repository;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a capture proved about a workspace: its worktree and index equal the tree of
/// commit `head`, with no untracked file, and its index file had checksum `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanSeal {
    /// HEAD's commit id (hex).
    pub head: String,
    /// The checksum that ends `.git/index` (hex SHA-1).
    pub index: String,
}

/// Length of the index file's trailing checksum (SHA-1 repositories only).
const CHECKSUM_LEN: usize = 20;

/// The hex checksum ending `<git dir>/index`; `None` when there is none to trust (no
/// index, a short file, or the all-zero checksum of `index.skipHash`).
fn index_checksum(git_dir: &Path) -> Option<String> {
    let mut f = std::fs::File::open(git_dir.join("index")).ok()?;
    let len = f.metadata().ok()?.len();
    if len < 12 + CHECKSUM_LEN as u64 {
        return None;
    }
    f.seek(SeekFrom::End(-(CHECKSUM_LEN as i64))).ok()?;
    let mut sum = [0u8; CHECKSUM_LEN];
    f.read_exact(&mut sum).ok()?;
    if sum.iter().all(|b| *b == 0) {
        return None;
    }
    Some(sum.iter().map(|b| format!("{b:02x}")).collect())
}

/// True when nothing differs between HEAD, the index and the worktree, and no
/// untracked file is there (ignored files are allowed): the proof
/// [`sync`](super::sync)'s path-limited checkout needs.
pub(crate) fn worktree_is_clean(repo: &Repository) -> std::result::Result<bool, git2::Error> {
    let mut opts = git2::StatusOptions::new();
    opts.show(git2::StatusShow::IndexAndWorkdir)
        .include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .include_unmodified(false)
        .exclude_submodules(true)
        .renames_head_to_index(false)
        .renames_index_to_workdir(false);
    let t = std::time::Instant::now();
    let dirty = repo.statuses(Some(&mut opts))?.len();
    tracing::debug!(
        dirty,
        elapsed_ms = t.elapsed().as_millis() as u64,
        "checked the worktree against HEAD"
    );
    Ok(dirty == 0)
}

/// Proves `workspace` clean (see the module docs) and returns its seal; `None` when it
/// is not clean, has no commit checked out, or its index carries no checksum.
///
/// # Errors
/// [`Error::Git`] when `workspace` is not a git workspace or the status fails.
pub fn seal_clean(workspace: &Path) -> Result<Option<CleanSeal>> {
    let repo = super::open_workspace(workspace, "seal")?;
    let err = |e: git2::Error| Error::Git {
        op: "seal",
        message: crate::scrub::scrub(e.message()).into_owned(),
    };
    let Some(head) = repo.head().ok().and_then(|h| h.peel_to_commit().ok()) else {
        return Ok(None);
    };
    // The checksum before and after the walk: a status may rewrite the index (to
    // refresh racy entries), and the seal names the index the walk proved.
    let before = index_checksum(repo.path());
    if !worktree_is_clean(&repo).map_err(err)? {
        return Ok(None);
    }
    let after = index_checksum(repo.path());
    match (before, after) {
        (Some(b), Some(a)) if a == b => Ok(Some(CleanSeal {
            head: head.id().to_string(),
            index: a,
        })),
        _ => Ok(None),
    }
}

impl CleanSeal {
    /// True when `repo`'s HEAD and index are still the sealed ones.
    pub(crate) fn holds(&self, repo: &Repository) -> bool {
        let head = repo
            .head()
            .ok()
            .and_then(|h| h.target())
            .map(|o| o.to_string());
        head.as_deref() == Some(self.head.as_str())
            && index_checksum(repo.path()).as_deref() == Some(self.index.as_str())
    }
}
