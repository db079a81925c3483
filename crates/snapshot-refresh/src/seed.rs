//! Seeds: the work a cold start already did, kept for the background build.
//!
//! Right after a cold clone, [`capture`] copies the workspace's git metadata and
//! hard-links its object files (immutable, so sharing them is safe) into the state
//! directory: a few milliseconds, no second clone. The background build then
//! [`plant`]s the seed into its own build sandbox and checks out from it, so a cold
//! start on a 2-core machine does not pay for the repository twice over the network.
//!
//! Not a snapshot: a seed holds no worktree and is deleted once planted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Captures the `.git` of `workspace` into a fresh directory under `seeds_dir`.
///
/// # Errors
/// [`Error::State`] when the copy fails (the partial seed is removed).
pub fn capture(workspace: &Path, seeds_dir: &Path, key: &str) -> Result<PathBuf> {
    let rand = uuid::Uuid::new_v4().simple().to_string();
    let dest = seeds_dir.join(format!("{key}.{}", &rand[..12]));
    let res = copy_git_dir(&workspace.join(".git"), &dest.join(".git"));
    if let Err(e) = res {
        let _ = fs::remove_dir_all(&dest);
        return Err(Error::state(
            format!("capturing a seed from {}", workspace.display()),
            e,
        ));
    }
    Ok(dest)
}

/// Plants a seed into an empty `workspace`: its `.git` (objects hard-linked), HEAD on
/// the remote branch that was cloned, and a forced checkout of the worktree. Returns
/// the branch HEAD names.
///
/// # Errors
/// [`Error::State`] for file errors, [`Error::Core`] for git errors.
pub fn plant(seed: &Path, workspace: &Path) -> Result<()> {
    copy_git_dir(&seed.join(".git"), &workspace.join(".git"))
        .map_err(|e| Error::state(format!("planting seed {}", seed.display()), e))?;
    let git_err = |op: &'static str| {
        move |e: git2::Error| sandbox_core::Error::Git {
            op,
            message: e.message().to_owned(),
        }
    };
    let repo = git2::Repository::open(workspace).map_err(git_err("open"))?;
    // A cold start with `new_branch` leaves HEAD on the user's new branch: the
    // snapshot belongs on the remote branch it came from.
    let remote_branches: Vec<String> = repo
        .branches(Some(git2::BranchType::Remote))
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
                if let Ok(mut b) = repo.find_branch(&h, git2::BranchType::Local) {
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

/// Removes a seed (best effort).
pub fn discard(seed: &Path) {
    if let Err(e) = fs::remove_dir_all(seed) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(seed = %seed.display(), error = %e, "could not remove a seed");
        }
    }
}

/// Copies a `.git` directory, hard-linking object files (falling back to a copy across
/// filesystems) and skipping the index (the checkout rewrites it) and logs.
fn copy_git_dir(src: &Path, dest: &Path) -> io::Result<()> {
    fn walk(src: &Path, dest: &Path, in_objects: bool) -> io::Result<()> {
        fs::create_dir_all(dest)?;
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            let name = entry.file_name();
            let from = entry.path();
            let to = dest.join(&name);
            let ty = entry.file_type()?;
            let objects = in_objects || name == "objects";
            if ty.is_dir() {
                if !in_objects && (name == "logs" || name == "lfs") {
                    continue;
                }
                walk(&from, &to, objects)?;
            } else if ty.is_file() {
                if !in_objects && name == "index" {
                    continue;
                }
                if in_objects {
                    if fs::hard_link(&from, &to).is_err() {
                        fs::copy(&from, &to)?;
                    }
                } else {
                    fs::copy(&from, &to)?;
                }
            }
        }
        Ok(())
    }
    walk(src, dest, false)
}
