//! Read-only questions about a workspace for listings: which repository it is a
//! checkout of and which branch HEAD names.
//!
//! Never fails a listing: anything that is not a readable git workspace answers
//! `None`. Not here: anything that writes, fetches or needs the network.

use std::path::Path;

use git2::Repository;

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
