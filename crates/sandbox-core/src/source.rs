//! What to check out: [`Source`].

use crate::error::Error;
use crate::names::BranchName;
use crate::url::RepoUrl;

/// What a sandbox should hold: a repository, which branch, and whether to start from a
/// prebuilt (snapshot) workspace.
///
/// `prebuilt` has three states: unset (the default: whoever starts the sandbox decides;
/// `FastStart` uses a ready snapshot when there is one), [`prebuilt(true)`](Self::prebuilt)
/// (use a ready snapshot; without one the start is still cold) and
/// [`prebuilt(false)`](Self::prebuilt) (never use a snapshot: always a fresh clone).
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
    /// `None`: not asked (the starter decides).
    #[serde(skip_serializing_if = "Option::is_none")]
    prebuilt: Option<bool>,
}

impl Source {
    /// A source on the remote default branch.
    pub fn new(url: RepoUrl) -> Self {
        Self {
            url,
            branch: None,
            new_branch: None,
            prebuilt: None,
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
        not_both(self.new_branch.as_ref(), &branch)?;
        self.branch = Some(branch);
        Ok(self)
    }

    /// Creates and checks out a new branch.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when it equals the branch.
    pub fn with_new_branch(mut self, new_branch: BranchName) -> Result<Self, Error> {
        not_both(self.branch.as_ref(), &new_branch)?;
        self.new_branch = Some(new_branch);
        Ok(self)
    }

    /// Asks for a workspace from a prebuilt snapshot (`true`, synced to the branch) or
    /// explicitly refuses one (`false`: always a fresh clone). Not calling it leaves the
    /// choice to the starter (see [`prebuilt_choice`](Self::prebuilt_choice)).
    #[must_use]
    pub fn prebuilt(mut self, prebuilt: bool) -> Self {
        self.prebuilt = Some(prebuilt);
        self
    }

    /// Forgets any [`prebuilt`](Self::prebuilt) choice: the starter decides again.
    #[must_use]
    pub fn prebuilt_unset(mut self) -> Self {
        self.prebuilt = None;
        self
    }

    /// The caller's choice: `Some(true)` use a snapshot when one is ready, `Some(false)`
    /// never, `None` not asked (the starter decides; `FastStart` uses one when ready).
    pub fn prebuilt_choice(&self) -> Option<bool> {
        self.prebuilt
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

    /// True when a prebuilt snapshot was asked for explicitly ([`prebuilt(true)`](Self::prebuilt)).
    pub fn is_prebuilt(&self) -> bool {
        self.prebuilt == Some(true)
    }

    /// True unless snapshots were refused with [`prebuilt(false)`](Self::prebuilt).
    pub fn allows_prebuilt(&self) -> bool {
        self.prebuilt != Some(false)
    }
}

/// Refuses a branch that is also the other one of branch and new branch.
fn not_both(other: Option<&BranchName>, branch: &BranchName) -> Result<(), Error> {
    if other == Some(branch) {
        return Err(Error::InvalidOptions(format!(
            "branch and new branch are both `{branch}`; use one of them"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Source;

    #[test]
    fn prebuilt_is_tri_state() {
        let s = Source::parse("https://example.com/acme/app").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.prebuilt_choice(), None);
        assert!(s.allows_prebuilt() && !s.is_prebuilt());
        let on = s.clone().prebuilt(true);
        assert_eq!(on.prebuilt_choice(), Some(true));
        assert!(on.is_prebuilt() && on.allows_prebuilt());
        let off = s.clone().prebuilt(false);
        assert_eq!(off.prebuilt_choice(), Some(false));
        assert!(!off.is_prebuilt() && !off.allows_prebuilt());
        assert_eq!(off.prebuilt_unset(), s);
    }
}
