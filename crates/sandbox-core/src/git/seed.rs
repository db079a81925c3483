//! Seeds: the work a cold start already did, kept for the background build.
//!
//! Right after a cold clone, [`capture`] copies the workspace's git metadata and
//! hard-links its object files (immutable, so sharing them is safe) into a directory of
//! the caller's: a few milliseconds, no second clone. The background build then
//! [`plant`]s the seed into its own build sandbox and checks out from it, so a cold
//! start on a 2-core machine does not pay for the repository twice over the network.
//!
//! Not a snapshot: a seed holds no worktree and is meant to be deleted once planted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use git2::{BranchType, Repository};

use super::git_err;
use crate::error::{Error, Result};
use crate::tree::{self, CopyPlan};

const PLAN: CopyPlan = CopyPlan::GIT_METADATA;

/// Captures the git metadata of `workspace` into a fresh directory under `seeds_dir`
/// named after `key`, and returns that directory.
///
/// # Errors
/// [`Error::Io`] when the copy fails (the partial seed is removed).
pub fn capture(workspace: &Path, seeds_dir: &Path, key: &str) -> Result<PathBuf> {
    let rand = uuid::Uuid::new_v4().simple().to_string();
    let dest = seeds_dir.join(format!("{key}.{}", &rand[..12]));
    let res = fs::create_dir_all(seeds_dir).and_then(|()| tree::copy_tree(workspace, &dest, &PLAN));
    if let Err(e) = res {
        discard(&dest);
        return Err(Error::io(
            format!("capturing a seed from {}", workspace.display()),
            e,
        ));
    }
    Ok(dest)
}

/// Plants a seed into `workspace` (absent or empty): its `.git` (objects hard-linked),
/// HEAD on the remote branch that was cloned, and a forced checkout of the worktree.
///
/// # Errors
/// [`Error::Io`] for file errors, [`Error::Git`] for git errors.
pub fn plant(seed: &Path, workspace: &Path) -> Result<()> {
    tree::copy_tree(seed, workspace, &PLAN)
        .map_err(|e| Error::io(format!("planting seed {}", seed.display()), e))?;
    let repo = Repository::open(workspace).map_err(git_err("open"))?;
    // A cold start with `new_branch` leaves HEAD on the user's new branch: the
    // snapshot belongs on the remote branch it came from.
    let remote_branches: Vec<String> = repo
        .branches(Some(BranchType::Remote))
        .map_err(git_err("branches"))?
        .filter_map(|b| b.ok())
        .filter_map(|(b, _)| b.name().ok().flatten().map(str::to_owned))
        .filter(|n| !n.ends_with("/HEAD"))
        .collect();
    let head_branch = repo
        .head()
        .ok()
        .and_then(|h| h.shorthand().ok().map(str::to_owned));
    let tracked = head_branch.as_ref().is_some_and(|h| {
        remote_branches
            .iter()
            .any(|r| r.strip_prefix("origin/") == Some(h))
    });
    if !tracked {
        if let [only] = remote_branches.as_slice() {
            let local = only.trim_start_matches("origin/");
            let target = repo
                .find_reference(&format!("refs/remotes/{only}"))
                .and_then(|r| r.peel_to_commit())
                .map_err(git_err("resolve"))?;
            repo.branch(local, &target, true)
                .map_err(git_err("branch"))?;
            repo.set_head(&format!("refs/heads/{local}"))
                .map_err(git_err("set-head"))?;
            if let Some(h) = head_branch {
                if let Ok(mut b) = repo.find_branch(&h, BranchType::Local) {
                    let _ = b.delete();
                }
            }
        }
    }
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
    repo.checkout_head(Some(&mut co))
        .map_err(git_err("checkout"))?;
    Ok(())
}

/// Removes a seed (best effort; a failure is logged).
pub fn discard(seed: &Path) {
    if let Err(e) = fs::remove_dir_all(seed) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(seed = %seed.display(), error = %e, "could not remove a seed");
        }
    }
}
