//! Read-only looks at a workspace: which repository its `origin` names, where HEAD
//! is, and whether it holds local changes ([`inspect`]); and the never-failing
//! [`summary`] listings show. Nothing here writes or reaches the network;
//! an orchestrator uses it to decide whether a reconnect may honour a different
//! request (another branch) without losing anyone's work.

use std::path::Path;

use git2::{Repository, Status, StatusOptions};

use super::{git_err, open_workspace};
use crate::error::Result;
use crate::report::HeadInfo;
use crate::url::RepoUrl;

/// What a workspace holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The URL of its `origin` remote (userinfo redacted, secrets scrubbed); `None`
    /// when it has none.
    pub origin: Option<String>,
    /// `origin` parsed, when it is a URL headstart accepts.
    pub origin_url: Option<RepoUrl>,
    /// Branch and commit of HEAD; `None` when HEAD is detached or unborn.
    pub head: Option<HeadInfo>,
    /// Its local changes.
    pub changes: LocalChanges,
}

/// Local changes of a worktree, as `git status` (ignored files are not changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalChanges {
    /// Tracked paths changed in the index or the worktree (staged, modified, deleted,
    /// renamed, added to the index), at most [`LocalChanges::SAMPLE`] of them.
    pub tracked: Vec<String>,
    /// How many tracked paths changed.
    pub tracked_count: usize,
    /// Untracked, not ignored paths (a new directory counts once), at most
    /// [`LocalChanges::SAMPLE`].
    pub untracked: Vec<String>,
    /// How many untracked paths.
    pub untracked_count: usize,
}

impl LocalChanges {
    /// How many paths of each kind are kept as a sample.
    pub const SAMPLE: usize = 5;

    /// True when nothing changed (tracked or untracked).
    pub fn is_clean(&self) -> bool {
        self.tracked_count == 0 && self.untracked_count == 0
    }

    /// A short description: `2 changed tracked files (a.rs, b.rs) and 1 untracked file (x)`.
    pub fn describe(&self) -> String {
        fn part(n: usize, what: &str, sample: &[String]) -> Option<String> {
            (n > 0).then(|| {
                let more = if n > sample.len() { ", …" } else { "" };
                format!(
                    "{n} {what} file{} ({}{more})",
                    if n == 1 { "" } else { "s" },
                    sample.join(", ")
                )
            })
        }
        let parts: Vec<String> = [
            part(self.tracked_count, "changed tracked", &self.tracked),
            part(self.untracked_count, "untracked", &self.untracked),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "no local changes".into()
        } else {
            parts.join(" and ")
        }
    }
}

/// Looks at `workspace`: origin, HEAD and local changes. Writes nothing (not even the
/// index's cached stat data).
///
/// # Errors
/// [`Error::Git`](crate::Error::Git) when `workspace` is not a repository or its status cannot be read.
pub fn inspect(workspace: &Path) -> Result<Inspection> {
    let op = "inspect";
    let repo = open_workspace(workspace, op)?;
    let origin = match repo.find_remote("origin") {
        Ok(r) => r.url().ok().map(str::to_owned),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(git_err(op)(e)),
    };
    let origin_url = origin.as_deref().and_then(|u| RepoUrl::parse(u).ok());
    let origin = origin.map(|u| crate::scrub::scrub(&crate::url::redact_userinfo(&u)).into_owned());
    let head = super::head(workspace).ok();
    let changes = local_changes(&repo)?;
    Ok(Inspection {
        origin,
        origin_url,
        head,
        changes,
    })
}

fn local_changes(repo: &Repository) -> Result<LocalChanges> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true)
        .update_index(false);
    let statuses = repo.statuses(Some(&mut opts)).map_err(git_err("status"))?;
    let mut out = LocalChanges::default();
    for entry in statuses.iter() {
        let s = entry.status();
        let path = String::from_utf8_lossy(entry.path_bytes()).into_owned();
        if s == Status::WT_NEW {
            out.untracked_count += 1;
            if out.untracked.len() < LocalChanges::SAMPLE {
                out.untracked.push(path);
            }
        } else if !s.is_empty() && !s.contains(Status::IGNORED) {
            out.tracked_count += 1;
            if out.tracked.len() < LocalChanges::SAMPLE {
                out.tracked.push(path);
            }
        }
    }
    Ok(out)
}

/// What a listing shows about a workspace's checkout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceSummary {
    /// The `origin` remote's URL, with any userinfo and secret scrubbed.
    pub origin: Option<String>,
    /// The branch HEAD names (also when it has no commit yet); `None` when detached.
    pub branch: Option<String>,
    /// The commit HEAD points at, if any.
    pub commit: Option<String>,
}

/// The origin URL and branch of the checkout at `workspace`; all `None` when it is
/// no git workspace (a `--workdir` that is not a repository, a vanished directory).
pub fn summary(workspace: &Path) -> WorkspaceSummary {
    let Ok(repo) = Repository::open(workspace) else {
        return WorkspaceSummary::default();
    };
    let origin = repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().ok().map(|u| crate::scrub::scrub(u).into_owned()));
    let branch = repo.find_reference("HEAD").ok().and_then(|head| {
        let target = head.symbolic_target().ok().flatten()?;
        Some(
            target
                .strip_prefix("refs/heads/")
                .unwrap_or(target)
                .to_owned(),
        )
    });
    let commit = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| c.id().to_string());
    WorkspaceSummary {
        origin,
        branch,
        commit,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sees_origin_head_and_changes() {
        let t = tempfile::tempdir().unwrap();
        let repo = Repository::init(t.path()).unwrap();
        repo.remote("origin", "https://example.com/acme/app.git")
            .unwrap();
        std::fs::write(t.path().join("a.txt"), "a").unwrap();
        std::fs::write(t.path().join(".gitignore"), "target/\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("a.txt")).unwrap();
        index.add_path(Path::new(".gitignore")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        index.write().unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "one", &tree, &[])
            .unwrap();

        let clean = inspect(t.path()).unwrap();
        assert_eq!(
            clean.origin.as_deref(),
            Some("https://example.com/acme/app.git")
        );
        assert!(clean.origin_url.is_some());
        assert!(clean.head.is_some());
        assert!(clean.changes.is_clean(), "{:?}", clean.changes);

        std::fs::create_dir(t.path().join("target")).unwrap();
        std::fs::write(t.path().join("target/x"), "ignored").unwrap();
        assert!(inspect(t.path()).unwrap().changes.is_clean());

        std::fs::write(t.path().join("new.txt"), "n").unwrap();
        let c = inspect(t.path()).unwrap().changes;
        assert_eq!((c.tracked_count, c.untracked_count), (0, 1), "{c:?}");

        std::fs::write(t.path().join("a.txt"), "changed").unwrap();
        let c = inspect(t.path()).unwrap().changes;
        assert_eq!(c.tracked, vec!["a.txt".to_owned()]);
        assert!(c.describe().contains("1 changed tracked file (a.txt)"));
    }
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    #[test]
    fn a_directory_that_is_no_repository_has_nothing_to_say() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(summary(dir.path()), WorkspaceSummary::default());
    }

    #[test]
    fn origin_branch_and_commit_of_a_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        repo.remote("origin", "https://user:hunter2secret@example.com/o/r.git")
            .unwrap();
        repo.set_head("refs/heads/feature").unwrap();
        let s = summary(dir.path());
        assert_eq!(s.branch.as_deref(), Some("feature"), "an unborn branch too");
        assert!(s.commit.is_none());
        let origin = s.origin.unwrap();
        assert!(origin.contains("example.com/o/r.git"), "{origin}");
        assert!(!origin.contains("hunter2secret"), "{origin}");
    }
}
