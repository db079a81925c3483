//! Which ref updates a grant allows: the sandbox's own branch, branch patterns, tags,
//! deletions. Pure decisions on parsed commands; it does not read or answer HTTP.

use sandbox_core::BranchName;
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;

/// The object id git sends as `new` for a deletion (and as `old` for a creation).
const ZERO_OID_CHAR: char = '0';

/// One command of a push: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The object the client believes the ref points at (all zeros: a creation).
    pub old: String,
    /// The object the ref should point at (all zeros: a deletion).
    pub new: String,
    /// The full ref name (`refs/heads/main`).
    pub name: String,
}

impl RefUpdate {
    /// True when the command deletes the ref.
    pub fn is_delete(&self) -> bool {
        is_zero(&self.new)
    }
}

fn is_zero(oid: &str) -> bool {
    !oid.is_empty() && oid.chars().all(|c| c == ZERO_OID_CHAR)
}

/// What a grant may push.
///
/// [`own_branch`](Self::own_branch) allows updating (and creating) exactly
/// `refs/heads/<branch>`; [`allow_branches`](Self::allow_branches) widens it with glob
/// patterns on branch names (`feature/*`: `*` and `?` stay within one `/` segment,
/// `**` crosses them); tags and deletions are refused unless allowed. Refs outside
/// `refs/heads/` and `refs/tags/` are always refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PushPolicy {
    branches: Vec<String>,
    tags: Vec<String>,
    deletes: bool,
}

impl PushPolicy {
    /// Nothing may be pushed (fetch only).
    pub fn read_only() -> Self {
        Self::default()
    }

    /// Only `refs/heads/<branch>` may be updated or created.
    pub fn own_branch(branch: &BranchName) -> Self {
        Self {
            branches: vec![branch.as_str().to_owned()],
            ..Self::default()
        }
    }

    /// Also allows the branches matching `pattern` (`feature/*`, `agent/**`).
    ///
    /// # Errors
    /// [`BrokerError::InvalidPattern`] for an empty pattern, one with whitespace,
    /// `..`, a leading `-` or `/`, or a full ref name.
    pub fn allow_branches(mut self, pattern: &str) -> Result<Self, BrokerError> {
        check_pattern(pattern)?;
        self.branches.push(pattern.to_owned());
        Ok(self)
    }

    /// Allows pushing the tags matching `pattern` (`*` for every tag).
    ///
    /// # Errors
    /// As [`allow_branches`](Self::allow_branches).
    pub fn allow_tags(mut self, pattern: &str) -> Result<Self, BrokerError> {
        check_pattern(pattern)?;
        self.tags.push(pattern.to_owned());
        Ok(self)
    }

    /// Allows deleting the refs this policy allows updating.
    #[must_use]
    pub fn allow_deletes(mut self) -> Self {
        self.deletes = true;
        self
    }

    /// The branch patterns (the own branch first).
    pub fn branch_patterns(&self) -> &[String] {
        &self.branches
    }

    /// The tag patterns.
    pub fn tag_patterns(&self) -> &[String] {
        &self.tags
    }

    /// Whether allowed refs may be deleted.
    pub fn deletes_allowed(&self) -> bool {
        self.deletes
    }

    /// `Ok` when `update` is allowed, else why not; the refusal's `Display` is the
    /// line git shows the user (`headstart: pushing to main is not allowed for this
    /// sandbox`).
    ///
    /// # Errors
    /// [`PushRefused`] when the policy does not allow the update.
    pub fn check(&self, update: &RefUpdate) -> Result<(), PushRefused> {
        let (allowed, what) = if let Some(branch) = update.name.strip_prefix("refs/heads/") {
            (
                self.branches.iter().any(|p| glob_match(p, branch)),
                format!("pushing to {branch}"),
            )
        } else if let Some(tag) = update.name.strip_prefix("refs/tags/") {
            (
                self.tags.iter().any(|p| glob_match(p, tag)),
                format!("pushing tag {tag}"),
            )
        } else {
            (false, format!("pushing to {}", update.name))
        };
        if !allowed {
            return Err(PushRefused::NotAllowed {
                refname: update.name.clone(),
                what,
            });
        }
        if update.is_delete() && !self.deletes {
            return Err(PushRefused::Delete {
                refname: update.name.clone(),
            });
        }
        Ok(())
    }
}

/// Why a [`PushPolicy`] refuses a ref update ([`PushPolicy::check`]). Its `Display`
/// is the one line the broker answers git with (`ng <ref> <reason>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushRefused {
    /// The ref matches none of the allowed branch or tag patterns (or is neither a
    /// branch nor a tag).
    #[error("headstart: {what} is not allowed for this sandbox")]
    NotAllowed {
        /// The full ref name (`refs/heads/main`).
        refname: String,
        /// What was attempted, for the message (`pushing to main`).
        what: String,
    },
    /// The update deletes an allowed ref, and the policy allows no deletions.
    #[error("headstart: deleting {refname} is not allowed for this sandbox")]
    Delete {
        /// The full ref name.
        refname: String,
    },
}

impl PushRefused {
    /// The ref the refusal is about.
    pub fn refname(&self) -> &str {
        match self {
            Self::NotAllowed { refname, .. } | Self::Delete { refname } => refname,
        }
    }

    /// A stable snake_case name for the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotAllowed { .. } => "push_not_allowed",
            Self::Delete { .. } => "delete_not_allowed",
        }
    }
}

fn check_pattern(pattern: &str) -> Result<(), BrokerError> {
    let bad = |reason: &str| BrokerError::InvalidPattern {
        pattern: pattern.to_owned(),
        reason: reason.to_owned(),
    };
    if pattern.is_empty() {
        return Err(bad("it is empty"));
    }
    if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace or control characters"));
    }
    if pattern.starts_with('-') || pattern.starts_with('/') || pattern.ends_with('/') {
        return Err(bad("it may not start with `-` or start or end with `/`"));
    }
    if pattern.contains("..") {
        return Err(bad("it may not contain `..`"));
    }
    if pattern.starts_with("refs/") {
        return Err(bad(
            "give a branch or tag name pattern (`feature/*`), not a ref",
        ));
    }
    Ok(())
}

/// Glob match: `*` any run of characters but `/`, `**` any run, `?` one character but
/// `/`; everything else literal.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = &p[2..];
                (0..=n.len()).any(|i| go(rest, &n[i..]))
            }
            Some(b'*') => {
                let rest = &p[1..];
                for i in 0..=n.len() {
                    if go(rest, &n[i..]) {
                        return true;
                    }
                    if n.get(i) == Some(&b'/') {
                        return false;
                    }
                }
                false
            }
            Some(b'?') => n.first().is_some_and(|&c| c != b'/') && go(&p[1..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str, new: &str) -> RefUpdate {
        RefUpdate {
            old: "1".repeat(40),
            new: new.to_owned(),
            name: name.to_owned(),
        }
    }

    #[test]
    fn globs_stay_within_segments_unless_double() {
        assert!(glob_match("feature/*", "feature/x"));
        assert!(!glob_match("feature/*", "feature/x/y"));
        assert!(glob_match("feature/**", "feature/x/y"));
        assert!(!glob_match("feature/*", "main"));
        assert!(glob_match("v?.*", "v1.2"));
        assert!(glob_match("agent", "agent"));
        assert!(!glob_match("agent", "agent2"));
    }

    #[test]
    fn the_own_branch_only_by_default() -> Result<(), BrokerError> {
        let own =
            BranchName::new("agent/one").map_err(|e| BrokerError::UnknownGrant(e.to_string()))?;
        let p = PushPolicy::own_branch(&own);
        let new = "2".repeat(40);
        assert!(p.check(&update("refs/heads/agent/one", &new)).is_ok());
        let refused = p.check(&update("refs/heads/main", &new)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "headstart: pushing to main is not allowed for this sandbox"
        );
        assert_eq!(
            (refused.kind(), refused.refname()),
            ("push_not_allowed", "refs/heads/main")
        );
        assert!(p.check(&update("refs/tags/v1", &new)).is_err());
        assert!(p.check(&update("refs/notes/commits", &new)).is_err());
        let delete = p.check(&update("refs/heads/agent/one", &"0".repeat(40)));
        assert!(delete.is_err_and(|r| r.kind() == "delete_not_allowed"
            && r.to_string().contains("deleting refs/heads/agent/one")));

        let wide = p
            .allow_branches("feature/*")?
            .allow_tags("v*")?
            .allow_deletes();
        assert!(wide.check(&update("refs/heads/feature/x", &new)).is_ok());
        assert!(wide.check(&update("refs/tags/v1", &new)).is_ok());
        assert!(
            wide.check(&update("refs/heads/feature/x", &"0".repeat(40)))
                .is_ok()
        );
        assert!(
            wide.check(&update("refs/heads/main", &"0".repeat(40)))
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["", "a b", "-x", "/x", "x/", "a..b", "refs/heads/x"] {
            assert!(PushPolicy::read_only().allow_branches(p).is_err(), "{p:?}");
        }
    }
}
