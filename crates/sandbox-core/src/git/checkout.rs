//! Putting a fetched commit into the worktree: the equivalent of
//! `git checkout -B <branch> <commit>` (force, untracked files removed), branch
//! upstream configuration, and the refusal of trees the checkout cannot fill
//! (submodules, Git LFS).
//!
//! Not here: talking to a remote (see `transfer`).

use git2::build::CheckoutBuilder;
use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use crate::error::Error;
use crate::report::HeadInfo;
use crate::url::RepoUrl;

fn git_err(op: &'static str) -> impl Fn(git2::Error) -> Error {
    move |e| Error::Git {
        op,
        message: e.message().to_owned(),
    }
}

/// Refuses trees whose checkout would be silently incomplete: submodules (gitlink
/// entries) and Git LFS (`filter=lfs` in any `.gitattributes`).
///
/// The engine checks out exactly one tree and fetches no submodule and no LFS
/// object; a sandbox missing those files would look fine and behave wrongly, so this
/// is an [`Error::UnsupportedRepository`] naming the paths.
pub(crate) fn refuse_incomplete(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    url: &RepoUrl,
) -> Result<(), Error> {
    let mut submodules: Vec<String> = Vec::new();
    let mut lfs: Vec<String> = Vec::new();
    let mut walk_error: Option<git2::Error> = None;
    tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        let name = entry.name().unwrap_or("");
        match entry.kind() {
            Some(ObjectType::Commit) => submodules.push(format!("{root}{name}")),
            Some(ObjectType::Blob) if name == ".gitattributes" => {
                match repo.find_blob(entry.id()) {
                    Ok(blob) => {
                        let text = String::from_utf8_lossy(blob.content());
                        for line in text.lines() {
                            let line = line.trim();
                            if line.starts_with('#') {
                                continue;
                            }
                            let mut parts = line.split_whitespace();
                            let pattern = parts.next().unwrap_or("");
                            if parts.any(|attr| attr == "filter=lfs") {
                                lfs.push(format!("{root}{pattern}"));
                            }
                        }
                    }
                    Err(e) => {
                        walk_error = Some(e);
                        return TreeWalkResult::Abort;
                    }
                }
            }
            _ => {}
        }
        TreeWalkResult::Ok
    })
    .or_else(|e| if walk_error.is_some() { Ok(()) } else { Err(e) })
    .map_err(git_err("checkout"))?;
    if let Some(e) = walk_error {
        return Err(git_err("checkout")(e));
    }
    // A `.gitmodules` without gitlinks names nothing to check out: not a problem.
    let mut problems = Vec::new();
    if !submodules.is_empty() {
        problems.push(format!(
            "git submodules ({}), which headstart does not check out: their directories would be empty",
            list(&submodules)
        ));
    }
    if !lfs.is_empty() {
        problems.push(format!(
            "Git LFS (for {}), which headstart does not download: those files would be LFS pointer stubs",
            list(&lfs)
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::UnsupportedRepository(format!(
        "{url} uses {}. headstart refuses rather than start a sandbox with an incomplete checkout; \
         use a repository without them, or clone it yourself inside a plain sandbox",
        problems.join(" and ")
    )))
}

fn list(items: &[String]) -> String {
    const MAX: usize = 5;
    let mut s = items
        .iter()
        .take(MAX)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX {
        s.push_str(&format!(", and {} more", items.len() - MAX));
    }
    s
}

/// `git checkout -B <local> <tip>`: points `refs/heads/<local>` at `tip` (even if it is
/// the current branch), makes index and worktree equal the tip's tree, removes
/// untracked files (ignored files stay: they are the build outputs and dependency
/// caches a snapshot recipe produced), and points HEAD at the branch.
///
/// `upstream`: the remote branch to track (`Some(B)` for `checkout -B B origin/B`),
/// or `None` for a new branch, which gets no upstream until pushed.
pub(crate) fn checkout_branch(
    repo: &Repository,
    local: &str,
    tip: Oid,
    upstream: Option<&str>,
    remove_untracked: bool,
) -> Result<HeadInfo, Error> {
    let op = "checkout";
    let commit = repo.find_commit(tip).map_err(git_err(op))?;
    let refname = format!("refs/heads/{local}");
    let mut cb = CheckoutBuilder::new();
    cb.force();
    if remove_untracked {
        cb.remove_untracked(true);
    }
    let t = std::time::Instant::now();
    repo.checkout_tree(commit.as_object(), Some(&mut cb))
        .map_err(git_err(op))?;
    tracing::debug!(
        elapsed_ms = t.elapsed().as_millis() as u64,
        "checked out the tree"
    );
    repo.reference(
        &refname,
        tip,
        true,
        &format!("headstart: checkout -B {local}"),
    )
    .map_err(git_err(op))?;
    repo.set_head(&refname).map_err(git_err(op))?;
    // The repository's own config file only; writes are skipped when the value is
    // already right (each write rewrites .git/config through a lock file).
    let mut cfg = repo
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
        .map_err(git_err(op))?;
    match upstream {
        Some(b) => {
            let merge = format!("refs/heads/{b}");
            for (key, value) in [("remote", "origin"), ("merge", merge.as_str())] {
                let key = format!("branch.{local}.{key}");
                if cfg.get_string(&key).ok().as_deref() != Some(value) {
                    cfg.set_str(&key, value).map_err(git_err(op))?;
                }
            }
        }
        None => {
            for key in ["remote", "merge"] {
                match cfg.remove(&format!("branch.{local}.{key}")) {
                    Ok(()) => {}
                    Err(e) if e.code() == git2::ErrorCode::NotFound => {}
                    Err(e) => return Err(git_err(op)(e)),
                }
            }
        }
    }
    Ok(HeadInfo {
        branch: local.to_owned(),
        commit: tip.to_string(),
    })
}
