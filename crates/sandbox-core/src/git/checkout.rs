//! Putting a fetched commit into the worktree: the equivalent of
//! `git checkout -B <branch> <commit>` (force, untracked files removed), branch
//! upstream configuration, and the refusal of trees the checkout cannot fill
//! (submodules, Git LFS). A sync of a clean worktree checks out only the paths the
//! two trees differ in (see `plan_sync`); a clone's new repository gets its whole tree
//! from the same parallel writer (see `fresh_checkout`).
//!
//! Not here: talking to a remote (see `transfer`).

use git2::build::CheckoutBuilder;
use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::apply;
use super::seal::CleanSeal;
use crate::error::Error;
use crate::report::HeadInfo;
use crate::url::RepoUrl;

fn git_err(op: &'static str) -> impl Fn(git2::Error) -> Error {
    move |e| Error::Git {
        op,
        message: crate::scrub::scrub(e.message()).into_owned(),
    }
}

/// Refuses trees whose checkout would be silently incomplete: submodules (gitlink
/// entries) and Git LFS (`filter=lfs` in any `.gitattributes`).
///
/// The engine checks out exactly one tree and fetches no submodule and no LFS
/// object; a sandbox missing those files would look fine and behave wrongly, so this
/// is an [`Error::UnsupportedRepository`] naming the paths.
///
/// Returns what the tree's `.gitattributes` files say (the changed-path writer then
/// checks each written path's attributes).
pub(crate) fn refuse_incomplete(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    url: &RepoUrl,
) -> Result<apply::TreeAttributes, Error> {
    let mut attributes = apply::TreeAttributes::default();
    let mut submodules: Vec<String> = Vec::new();
    let mut lfs: Vec<String> = Vec::new();
    let mut walk_error: Option<git2::Error> = None;
    tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        let name = entry.name().unwrap_or("");
        match entry.kind() {
            Some(ObjectType::Commit) => submodules.push(format!("{root}{name}")),
            Some(ObjectType::Blob) if name == ".gitattributes" => {
                attributes.present = true;
                match repo.find_blob(entry.id()) {
                    Ok(blob) => {
                        let text = String::from_utf8_lossy(blob.content());
                        attributes.converting |= apply::sets_a_checkout_attribute(&text);
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
        return Ok(attributes);
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

/// `git clean -fd`: removes untracked files that are not ignored (by the worktree's
/// current `.gitignore` files), then directories they leave empty. Returns how many
/// files went. `within`: only these paths (relative to the worktree, directories
/// included with what they hold) can hold untracked files; `None`: anywhere.
fn clean_untracked(
    repo: &Repository,
    within: Option<&[std::path::PathBuf]>,
) -> Result<usize, Error> {
    let op = "clean";
    let Some(workdir) = repo.workdir().map(std::path::Path::to_path_buf) else {
        return Ok(0);
    };
    let mut opts = git2::StatusOptions::new();
    if let Some(paths) = within {
        if paths.is_empty() {
            return Ok(0);
        }
        opts.disable_pathspec_match(true);
        for p in paths {
            opts.pathspec(p);
        }
    }
    opts.show(git2::StatusShow::Workdir)
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut opts)).map_err(git_err(op))?;
    let mut removed = 0;
    let mut dirs = std::collections::BTreeSet::new();
    for entry in statuses
        .iter()
        .filter(|e| e.status().contains(git2::Status::WT_NEW))
    {
        if let Some(stop) = super::watch::stopped_error() {
            return Err(stop);
        }
        let Ok(rel) = entry.path() else { continue };
        let path = workdir.join(rel);
        if path.join(".git").exists() {
            // A nested repository: `git clean -fd` keeps those too (it needs -ff).
            continue;
        }
        let result = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!("removing untracked {}", path.display()),
                    e,
                ));
            }
        }
        let mut parent = path.parent();
        while let Some(p) = parent.filter(|p| *p != workdir.as_path()) {
            dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
    }
    // Deepest first; a directory that still holds anything (ignored files) stays.
    for dir in dirs.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(removed)
}

/// Aborts the checkout (at the next file libgit2 plans to update) once the operation
/// is cancelled or out of time; libgit2's progress callback cannot abort, its notify
/// callback can.
fn stop_when_asked(cb: &mut CheckoutBuilder<'_>) {
    cb.notify_on(git2::CheckoutNotificationType::UPDATED);
    cb.notify(|_, _, _, _, _| super::watch::proceed());
}

/// A forced checkout of the whole tree: libgit2 compares every worktree file (an
/// `lstat` each, a `readdir` per directory) with the target.
fn full_checkout(repo: &Repository, commit: &git2::Commit<'_>) -> Result<(), Error> {
    let mut cb = CheckoutBuilder::new();
    cb.force();
    stop_when_asked(&mut cb);
    let t = std::time::Instant::now();
    repo.checkout_tree(commit.as_object(), Some(&mut cb))
        .map_err(git_err("checkout"))?;
    tracing::debug!(
        elapsed_ms = t.elapsed().as_millis() as u64,
        route = "full",
        "checked out the tree"
    );
    Ok(())
}

/// A direct write (`route`) that failed hands over to libgit2's forced checkout, which
/// repairs what it left; an operation that was stopped fails with that instead.
fn hand_over(route: &'static str, failed: &apply::Failed) -> Result<(), Error> {
    if let Some(stop) = super::watch::stopped_error() {
        return Err(stop);
    }
    tracing::debug!(
        route,
        reason = %failed.0,
        "the direct write failed; libgit2's checkout takes over"
    );
    Ok(())
}

/// The checkout of a clone. A new repository (HEAD unborn, empty index) gets the whole
/// tree from the parallel changed-path writer, every path an addition, as a far sync
/// does (the worktree is the clone's new, empty directory); anything the writer cannot
/// do exactly as libgit2 would (see [`apply::far_refusal`]: a converting attribute or
/// setting; an entry that is not a file or symlink) goes to libgit2's forced checkout,
/// which also repairs a write that failed half-way.
fn fresh_checkout(
    repo: &Repository,
    commit: &git2::Commit<'_>,
    attributes: apply::TreeAttributes,
) -> Result<(), Error> {
    let t = std::time::Instant::now();
    let unborn = repo.head().is_err() && repo.index().is_ok_and(|i| i.is_empty());
    let changes = if unborn {
        commit
            .tree()
            .ok()
            .and_then(|tree| repo.diff_tree_to_tree(None, Some(&tree), None).ok())
            .and_then(|diff| apply::changes(&diff))
    } else {
        None
    };
    let why = match &changes {
        None => "not a new repository, or an entry the writer does not handle",
        Some(changes) => match apply::far_refusal(repo, changes, attributes) {
            Some(why) => why,
            None => match apply::apply(repo, changes) {
                Ok(()) => {
                    tracing::debug!(
                        elapsed_ms = t.elapsed().as_millis() as u64,
                        route = "fresh",
                        written = changes.len(),
                        "checked out the tree"
                    );
                    return Ok(());
                }
                Err(failed) => {
                    hand_over("fresh", &failed)?;
                    "the fresh write failed"
                }
            },
        },
    };
    tracing::debug!(reason = why, "checking out the clone with libgit2");
    full_checkout(repo, commit)
}

/// Checks out the `.gitattributes` files of `tree` (and removes those of HEAD's tree
/// it lacks) before the whole-tree checkout. libgit2's checkout keeps the attribute
/// files it read in a session for the whole checkout, and reads them while it plans
/// (hashing a worktree file whose stat data is racy goes through the filters): the
/// old tree's `.gitattributes` then decided how the new files were written (seen:
/// `eol=crlf` of an orphan branch's `.gitattributes` not applied, now and then, under
/// load; the other way round, old conversions would apply to new files). `git
/// checkout` judges by the new tree's.
/// Nothing is done when the two trees' `.gitattributes` files are the same.
fn attributes_first(repo: &Repository, tree: &git2::Tree<'_>) -> Result<(), Error> {
    type Files = std::collections::BTreeMap<Vec<u8>, Oid>;
    let collect = |t: &git2::Tree<'_>| -> Result<Files, Error> {
        let mut out = Files::new();
        t.walk(TreeWalkMode::PreOrder, |root, entry| {
            if entry.name_bytes() == b".gitattributes" {
                let mut p = root.as_bytes().to_vec();
                p.extend_from_slice(entry.name_bytes());
                out.insert(p, entry.id());
            }
            TreeWalkResult::Ok
        })
        .map_err(git_err("checkout"))?;
        Ok(out)
    };
    let new = collect(tree)?;
    let old = match repo.head().ok().and_then(|h| h.peel_to_tree().ok()) {
        Some(t) => collect(&t)?,
        None => Files::new(),
    };
    let paths: std::collections::BTreeSet<&Vec<u8>> = new
        .keys()
        .chain(old.keys())
        .filter(|p| new.get(*p) != old.get(*p))
        .collect();
    if paths.is_empty() {
        return Ok(());
    }
    tracing::debug!(
        changed = paths.len(),
        "checking out the new .gitattributes first"
    );
    let mut cb = CheckoutBuilder::new();
    cb.force().disable_pathspec_match(true);
    stop_when_asked(&mut cb);
    for p in &paths {
        cb.path(p.as_slice());
    }
    repo.checkout_tree(tree.as_object(), Some(&mut cb))
        .map_err(git_err("checkout"))
}

/// How [`sync_worktree`] brings the worktree to the new tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SyncPlan {
    /// The worktree and index equal HEAD's tree, no untracked file is there and the
    /// ignore rules do not change: bringing these paths (those that differ between
    /// HEAD's tree and the new one) to the new tree is the whole job.
    Paths(Vec<apply::Change>),
    /// As `Paths`, for a diff that writes most of the new tree (see [`apply::is_far`]):
    /// a fresh checkout of the new tree written by the parallel writer, taken even
    /// when `.gitignore`/`.gitattributes` files change (the writer's attribute check
    /// then reads the new tree's blobs), followed by `git clean -fd` when a
    /// `.gitignore` changed (the new rules decide which ignored files stay).
    Far {
        changes: Vec<apply::Change>,
        ignore_rules: bool,
    },
    /// Anything else: a forced checkout of the whole tree, then `git clean -fd`.
    Full(&'static str),
}

/// Files whose change alters how other, unchanged paths are treated (what is
/// ignored, how files are filtered on checkout): a diff touching one of them takes
/// the full path.
const RULE_FILES: [&[u8]; 2] = [b".gitignore", b".gitattributes"];

fn is_rule_file(path: &[u8]) -> bool {
    RULE_FILES.contains(&file_name(path))
}

fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|b| *b == b'/').next().unwrap_or(path)
}

/// Decides between the changed-path sync and the full checkout. Errors while planning
/// choose the full path (which reports its own errors).
///
/// The changed-path sync is equivalent to `checkout -B` + `clean -fd` only when
/// the worktree holds nothing but HEAD's tree and ignored files: then the only paths
/// that can differ from the new tree are those in the tree-to-tree diff, and with the
/// `.gitignore` files unchanged no ignored file becomes untracked. That is proved by a
/// status of the worktree against the index and of the index against HEAD (untracked
/// directories are not recursed into, ignored ones not entered): one walk of the
/// worktree instead of the two of the full path (the checkout's and the clean's).
/// A `seal` from the snapshot's capture that still matches HEAD and the index
/// replaces the walk (the restore guaranteed the worktree is the captured one).
fn plan_sync(repo: &Repository, new_tree: &git2::Tree<'_>, seal: Option<&CleanSeal>) -> SyncPlan {
    let Some(old_tree) = repo.head().ok().and_then(|h| h.peel_to_tree().ok()) else {
        return SyncPlan::Full("HEAD names no tree");
    };
    let mut changes = Vec::new();
    let mut far = false;
    if old_tree.id() != new_tree.id() {
        let Ok(diff) = repo.diff_tree_to_tree(Some(&old_tree), Some(new_tree), None) else {
            return SyncPlan::Full("the tree diff failed");
        };
        let Some(c) = apply::changes(&diff) else {
            return SyncPlan::Full("the diff holds an entry that is not a file or symlink");
        };
        far = apply::is_far(&c, repo.index().map(|i| i.len()).unwrap_or(0));
        if !far && c.iter().any(|c| is_rule_file(&c.path)) {
            return SyncPlan::Full("the diff changes a .gitignore or .gitattributes");
        }
        changes = c;
    }
    // A seal from the snapshot's capture, still matching HEAD and the index, is the
    // proof the walk would give (the restore guaranteed the worktree is the captured one).
    if seal.is_some_and(|s| s.holds(repo)) {
        tracing::debug!("the snapshot's clean seal holds: no status walk");
    } else {
        if seal.is_some() {
            tracing::debug!("the snapshot's clean seal does not match HEAD and the index");
        }
        match super::seal::worktree_is_clean(repo) {
            Ok(true) => {}
            Ok(false) => {
                return SyncPlan::Full("the worktree has local changes or untracked files");
            }
            Err(_) => return SyncPlan::Full("the status of the worktree failed"),
        }
    }
    if far {
        let ignore_rules = changes.iter().any(|c| file_name(&c.path) == b".gitignore");
        return SyncPlan::Far {
            changes,
            ignore_rules,
        };
    }
    SyncPlan::Paths(changes)
}

/// When the changed-path writer cannot be used (see [`apply::refusal`]), libgit2's
/// path-limited checkout is taken while the diff names at most one path per this
/// many index entries, else its whole-tree checkout. Measured on overlay restores
/// (`cargo xtask bench-startup`): 188 paths of 30,415 entries are checked out faster
/// by path, 187 of 3,000 by the whole tree.
const PATHS_PER_ENTRY: usize = 50;

/// libgit2's checkout of the changed paths of a proven-clean worktree (no clean
/// needed: nothing can be untracked).
fn libgit2_paths(
    repo: &Repository,
    commit: &git2::Commit<'_>,
    changes: &[apply::Change],
) -> Result<&'static str, Error> {
    let mut paths: Vec<&[u8]> = changes.iter().map(|c| c.path.as_slice()).collect();
    paths.dedup();
    let entries = repo.index().map(|i| i.len()).unwrap_or(0);
    if paths.len() * PATHS_PER_ENTRY > entries {
        full_checkout(repo, commit)?;
        return Ok("whole tree");
    }
    let mut cb = CheckoutBuilder::new();
    cb.force().disable_pathspec_match(true);
    stop_when_asked(&mut cb);
    for p in paths {
        cb.path(p);
    }
    repo.checkout_tree(commit.as_object(), Some(&mut cb))
        .map_err(git_err("checkout"))?;
    Ok("libgit2 paths")
}

/// The worktree part of a sync: index and worktree become `commit`'s tree and
/// untracked files go, as `git checkout -f` + `git clean -fd` would do. Takes the
/// changed-path route when [`plan_sync`] proves it equivalent, else the full one.
/// `attributes`: what the new tree's `.gitattributes` files say.
fn sync_worktree(
    repo: &Repository,
    commit: &git2::Commit<'_>,
    seal: Option<&CleanSeal>,
    attributes: apply::TreeAttributes,
) -> Result<(), Error> {
    let op = "checkout";
    let tree = commit.tree().map_err(git_err(op))?;
    let t = std::time::Instant::now();
    let reason = match plan_sync(repo, &tree, seal) {
        SyncPlan::Paths(changes) => {
            let changed = changes.len();
            let route = if changes.is_empty() {
                Some("paths")
            } else if let Some(why) = apply::refusal(repo, &changes, attributes.present) {
                tracing::debug!(reason = why, "not writing the changed paths directly");
                Some(libgit2_paths(repo, commit, &changes)?)
            } else {
                match apply::apply(repo, &changes) {
                    Ok(()) => Some("paths"),
                    Err(failed) => {
                        hand_over("paths", &failed)?;
                        None
                    }
                }
            };
            match route {
                Some(route) => {
                    // The same message as the full checkout (the startup bench reads
                    // it); the time includes the status that replaced the checkout's walk.
                    tracing::debug!(
                        elapsed_ms = t.elapsed().as_millis() as u64,
                        route,
                        changed,
                        "checked out the tree"
                    );
                    return Ok(());
                }
                None => "the changed-path write failed",
            }
        }
        SyncPlan::Far {
            changes,
            ignore_rules,
        } => match apply::far_refusal(repo, &changes, attributes) {
            Some(why) => {
                tracing::debug!(reason = why, "not writing the far tree directly");
                "a checkout attribute or setting applies to the far tree"
            }
            None => match apply::apply_surveyed(repo, &changes, ignore_rules) {
                Ok(leftovers) => {
                    // The new `.gitignore` files decide which ignored files stay; the
                    // only candidates are what the removals left (the worktree was
                    // proven to hold nothing untracked, the writes add tracked files).
                    let removed = if ignore_rules {
                        clean_untracked(repo, Some(&leftovers))?
                    } else {
                        0
                    };
                    tracing::debug!(
                        elapsed_ms = t.elapsed().as_millis() as u64,
                        route = "far",
                        changed = changes.len(),
                        removed,
                        "checked out the tree"
                    );
                    return Ok(());
                }
                Err(failed) => {
                    hand_over("far", &failed)?;
                    "the far-tree write failed"
                }
            },
        },
        SyncPlan::Full(reason) => reason,
    };
    tracing::debug!(reason, "checking out the whole tree");
    attributes_first(repo, &tree)?;
    full_checkout(repo, commit)?;
    // A forced checkout leaves the index entry of a path the two trees agree on
    // alone even when it holds a staged change: read the tree into the index
    // (entries whose blob did not change keep their stat data).
    let mut index = repo.index().map_err(git_err(op))?;
    index.read_tree(&tree).map_err(git_err(op))?;
    index.write().map_err(git_err(op))?;
    // After the checkout, so the *new* tree's .gitignore files decide what is
    // ignored (libgit2's remove_untracked judges by the old ones): `git clean -fd`.
    let t = std::time::Instant::now();
    let removed = clean_untracked(repo, None)?;
    tracing::debug!(
        removed,
        elapsed_ms = t.elapsed().as_millis() as u64,
        "removed untracked files"
    );
    Ok(())
}

/// `git checkout -B <local> <tip>`: points `refs/heads/<local>` at `tip` (even if it is
/// the current branch), makes index and worktree equal the tip's tree, with
/// `remove_untracked` also removes untracked files as `git clean -fd` would after the
/// checkout (ignored files stay: they are the build outputs and dependency caches a
/// snapshot recipe produced), and points HEAD at the branch.
///
/// `upstream`: the remote branch to track (`Some(B)` for `checkout -B B origin/B`),
/// or `None` for a new branch, which gets no upstream until pushed.
pub(crate) fn checkout_branch(
    repo: &Repository,
    local: &str,
    tip: Oid,
    upstream: Option<&str>,
    remove_untracked: bool,
    seal: Option<&CleanSeal>,
    attributes: apply::TreeAttributes,
) -> Result<HeadInfo, Error> {
    let op = "checkout";
    let commit = repo.find_commit(tip).map_err(git_err(op))?;
    let refname = format!("refs/heads/{local}");
    if remove_untracked {
        sync_worktree(repo, &commit, seal, attributes)?;
    } else {
        fresh_checkout(repo, &commit, attributes)?;
    }
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
