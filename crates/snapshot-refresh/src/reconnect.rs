//! What a start may do with a workspace that already exists (a sandbox of the name it
//! asked for, or a user's directory that is already a checkout) when the request
//! differs from what is there.
//!
//! The rules ([`decide`]):
//! - **Another repository** (not [`RepoUrl::same_repository`]: any URL form of the
//!   same repository is the same, and so is an origin the start's
//!   `FastStart::origin_alias` accepts) → refused, naming both; use another name or
//!   `force_create`.
//! - **No branch asked**, or the branch it is on → used as it is (no git).
//! - **Another branch** (`branch`, or a `new_branch` it is not on) → switched with
//!   [`git::sync`](sandbox_core::git::sync) (which fetches the branch, checks it out and
//!   removes untracked files) when the worktree has **no local changes**: no changed
//!   tracked file (staged or not) and no untracked, not-ignored file (the switch would
//!   delete those). Ignored files (builds, dependencies) do not count and stay.
//!   Otherwise refused, saying which files and what to do (commit or stash them, or
//!   `force_create`).
//!
//! A workspace that is no git checkout is used as it is when nothing was asked of it
//! (a plain directory given as a workdir), and refused otherwise.

use sandbox_core::git::Inspection;
use sandbox_core::{RepoUrl, Source};

use crate::error::{Error, Result};

/// What to do with the existing workspace.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Leave it as it is.
    AsIs,
    /// Sync it to this source (same repository, another branch).
    Switch(Source),
}

/// Decides for the workspace of `what` (e.g. "sandbox `t1`") holding `found` (`None`:
/// not a git checkout). `asks_repo` is false when the source only names the workspace
/// itself (a workdir started without a repository). An origin for which `alias` is
/// true stands for the source's repository.
pub(crate) fn decide(
    what: &str,
    source: &Source,
    asks_repo: bool,
    found: Option<&Inspection>,
    alias: Option<&(dyn Fn(&RepoUrl) -> bool + Send + Sync)>,
) -> Result<Decision> {
    let wanted = source.new_branch().or(source.branch());
    let Some(found) = found else {
        if asks_repo {
            return Err(Error::Refused(format!(
                "{what} is not a git checkout, so it does not hold {}; use another name, or \
                 replace the sandbox",
                source.url()
            )));
        }
        if let Some(b) = wanted {
            return Err(Error::Refused(format!(
                "{what} is not a git checkout; cannot switch it to branch `{b}`"
            )));
        }
        return Ok(Decision::AsIs);
    };
    let origin = found.origin_url.as_ref();
    let same = |o: &RepoUrl| o.same_repository(source.url()) || alias.is_some_and(|a| a(o));
    if asks_repo && !origin.is_some_and(same) {
        return Err(Error::Refused(format!(
            "{what} holds {}, not {}; use another name, or replace the sandbox",
            holds(found),
            source.url()
        )));
    }
    let current = found.head.as_ref().map(|h| h.branch.as_str());
    let Some(wanted) = wanted else {
        return Ok(Decision::AsIs);
    };
    if current == Some(wanted.as_str()) {
        return Ok(Decision::AsIs);
    }
    if !found.changes.is_clean() {
        return Err(Error::Refused(format!(
            "{what} is on {} with local changes: {}; switching it to branch `{wanted}` as asked \
             would lose them. Commit or stash them first (e.g. `git stash -u` in the sandbox), \
             or replace the sandbox",
            current.map_or_else(|| "a detached HEAD".to_owned(), |b| format!("branch `{b}`")),
            found.changes.describe(),
        )));
    }
    let source = if asks_repo {
        source.clone()
    } else {
        // the source names the workspace itself: fetch from its origin
        let Some(origin) = origin else {
            return Err(Error::Refused(format!(
                "{what} has no `origin` remote headstart can fetch branch `{wanted}` from; \
                 give the repository URL too"
            )));
        };
        with_branches(origin.clone(), source)?
    };
    Ok(Decision::Switch(source.prebuilt(true)))
}

/// `source`'s branch and new branch on another URL.
fn with_branches(url: RepoUrl, source: &Source) -> Result<Source> {
    let mut s = Source::new(url);
    if let Some(b) = source.branch() {
        s = s.with_branch(b.clone())?;
    }
    if let Some(n) = source.new_branch() {
        s = s.with_new_branch(n.clone())?;
    }
    Ok(s)
}

/// "URL, branch B at C" (or what is known of it).
pub(crate) fn holds(found: &Inspection) -> String {
    let repo = found
        .origin
        .clone()
        .unwrap_or_else(|| "a repository without `origin`".to_owned());
    match &found.head {
        Some(h) => format!(
            "{repo} (branch `{}` at {})",
            h.branch,
            &h.commit[..h.commit.len().min(12)]
        ),
        None => format!("{repo} (detached or unborn HEAD)"),
    }
}
