//! Shared helpers for the git engine tests: serving an [`Upstream`] over each
//! transport and reading a workspace's state.

use std::path::Path;

use sandbox_core::{BranchName, RepoUrl, Source};
use test_support::{GitDaemon, GitHttpServer, Upstream, git_in};

/// A transport the tests serve an upstream over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// `git daemon` (git://).
    Daemon,
    /// Smart HTTP through `git http-backend`.
    Http,
    /// `file://`.
    File,
}

/// A running server (kept alive while the test needs it).
#[allow(dead_code)]
pub(crate) enum Server {
    Daemon(GitDaemon),
    Http(GitHttpServer),
    File,
}

impl Server {
    pub(crate) fn http(&self) -> &GitHttpServer {
        match self {
            Server::Http(h) => h,
            _ => panic!("not an HTTP server"),
        }
    }
}

/// Serves `up` over `via` and returns the server and the URL.
pub(crate) fn serve(up: &Upstream, via: Via) -> anyhow::Result<(Server, RepoUrl)> {
    Ok(match via {
        Via::Daemon => {
            let d = GitDaemon::start(up.root())?;
            let url = RepoUrl::parse(&d.url(up.name()))?;
            (Server::Daemon(d), url)
        }
        Via::Http => {
            let h = GitHttpServer::start(up.root())?;
            let url = RepoUrl::parse(&h.url(up.name()))?;
            (Server::Http(h), url)
        }
        Via::File => (Server::File, RepoUrl::parse(&up.file_url())?),
    })
}

/// A source on `url` with optional branch and new branch.
pub(crate) fn source(
    url: &RepoUrl,
    branch: Option<&str>,
    new_branch: Option<&str>,
) -> anyhow::Result<Source> {
    let mut s = Source::new(url.clone());
    if let Some(b) = branch {
        s = s.with_branch(BranchName::new(b)?)?;
    }
    if let Some(nb) = new_branch {
        s = s.with_new_branch(BranchName::new(nb)?)?;
    }
    Ok(s)
}

/// HEAD's branch name, commit and tree, read with git2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) branch: String,
    pub(crate) commit: String,
    pub(crate) tree: String,
}

pub(crate) fn state(ws: &Path) -> anyhow::Result<State> {
    let repo = git2::Repository::open(ws)?;
    let head = repo.head()?;
    anyhow::ensure!(head.is_branch(), "HEAD is not a branch");
    let commit = head.peel_to_commit()?;
    Ok(State {
        branch: head.shorthand().unwrap_or_default().to_owned(),
        commit: commit.id().to_string(),
        tree: commit.tree_id().to_string(),
    })
}

/// Asserts index and worktree equal HEAD and nothing untracked is left
/// (`git status --porcelain --untracked-files=all` is empty).
pub(crate) fn assert_clean(ws: &Path) -> anyhow::Result<()> {
    let status = git_in(ws, &["status", "--porcelain", "--untracked-files=all"])?;
    anyhow::ensure!(status.is_empty(), "workspace not clean:\n{status}");
    Ok(())
}

/// The number of commits reachable from HEAD.
pub(crate) fn commit_count(ws: &Path) -> anyhow::Result<usize> {
    Ok(git_in(ws, &["rev-list", "--count", "HEAD"])?.parse()?)
}

/// The commits listed in `.git/shallow` (empty when the repository is complete).
pub(crate) fn shallow_commits(ws: &Path) -> Vec<String> {
    std::fs::read_to_string(ws.join(".git/shallow"))
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `git commit -qm message` in `work` under a test identity (the machine may have none).
pub(crate) fn commit_in(work: &Path, message: &str) -> anyhow::Result<String> {
    git_in(
        work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            message,
        ],
    )
}
