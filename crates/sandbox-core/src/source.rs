//! What to check out: [`Source`].

use crate::error::Error;
use crate::names::BranchName;
use crate::url::RepoUrl;

/// What a sandbox should hold: a repository, which branch, and whether to start from a
/// prebuilt (snapshot) workspace.
///
/// - no branch, no new branch: the remote's **default** branch (read from the remote,
///   never assumed to be `main`);
/// - `branch`: that branch;
/// - `new_branch`: a new local branch created from `branch` if given, else from the
///   remote default branch tip, with no upstream until pushed. It must not exist on the
///   remote already.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    url: RepoUrl,
    branch: Option<BranchName>,
    new_branch: Option<BranchName>,
    prebuilt: bool,
}

impl Source {
    /// A source on the remote default branch.
    pub fn new(url: RepoUrl) -> Self {
        Self {
            url,
            branch: None,
            new_branch: None,
            prebuilt: false,
        }
    }

    /// Parses the URL and builds a source on the default branch.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`].
    pub fn parse(url: &str) -> Result<Self, Error> {
        Ok(Self::new(RepoUrl::parse(url)?))
    }

    /// Checks out `branch`.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when it equals the new branch.
    pub fn with_branch(mut self, branch: BranchName) -> Result<Self, Error> {
        if self.new_branch.as_ref() == Some(&branch) {
            return Err(Error::InvalidOptions(format!(
                "branch and new branch are both `{branch}`; use one of them"
            )));
        }
        self.branch = Some(branch);
        Ok(self)
    }

    /// Creates and checks out a new branch.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when it equals the branch.
    pub fn with_new_branch(mut self, new_branch: BranchName) -> Result<Self, Error> {
        if self.branch.as_ref() == Some(&new_branch) {
            return Err(Error::InvalidOptions(format!(
                "branch and new branch are both `{new_branch}`; use one of them"
            )));
        }
        self.new_branch = Some(new_branch);
        Ok(self)
    }

    /// Whether the workspace comes from a prebuilt snapshot (and is synced) rather
    /// than a fresh clone.
    #[must_use]
    pub fn prebuilt(mut self, prebuilt: bool) -> Self {
        self.prebuilt = prebuilt;
        self
    }

    /// The repository.
    pub fn url(&self) -> &RepoUrl {
        &self.url
    }

    /// The branch to check out (or to branch from), if given.
    pub fn branch(&self) -> Option<&BranchName> {
        self.branch.as_ref()
    }

    /// The new branch to create, if any.
    pub fn new_branch(&self) -> Option<&BranchName> {
        self.new_branch.as_ref()
    }

    /// True when the workspace comes from a snapshot.
    pub fn is_prebuilt(&self) -> bool {
        self.prebuilt
    }
}
