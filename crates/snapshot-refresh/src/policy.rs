//! Which repositories get snapshots, and when a snapshot is too old.

use std::time::Duration;

use crate::error::NotEligible;
use crate::key::SnapshotKey;

/// Decides which repositories get base snapshots at all.
///
/// Patterns match the key's identity (`host/owner/repo`, or `local/<path>`) with `*`
/// matching any run of characters. A repository is eligible when it matches no deny
/// pattern and (if any allow pattern is set) at least one allow pattern, and when its
/// size is known to be under `max_size_bytes` (if set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eligibility {
    /// Only these repositories (empty: all).
    pub allow: Vec<String>,
    /// Never these repositories.
    pub deny: Vec<String>,
    /// Largest workspace to snapshot, in bytes.
    pub max_size_bytes: Option<u64>,
    /// Snapshots switched off entirely (`headstart up --no-snapshot`).
    pub disabled: bool,
}

impl Eligibility {
    /// Everything is eligible.
    pub fn all() -> Self {
        Self::default()
    }

    /// Nothing is eligible.
    pub fn none() -> Self {
        Self {
            disabled: true,
            ..Self::default()
        }
    }

    /// Whether `key` may get a snapshot.
    ///
    /// # Errors
    /// [`NotEligible`] saying why not (its `Display` is the reason the startup report
    /// gives).
    pub fn check(&self, key: &SnapshotKey) -> Result<(), NotEligible> {
        if self.disabled {
            return Err(NotEligible::Disabled);
        }
        let id = key.identity();
        if let Some(p) = self.deny.iter().find(|p| glob(p, id)) {
            return Err(NotEligible::Denied {
                identity: id.to_owned(),
                pattern: p.clone(),
            });
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| glob(p, id)) {
            return Err(NotEligible::NotAllowed {
                identity: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether a workspace of `size` bytes is under the cap.
    ///
    /// # Errors
    /// [`NotEligible::TooLarge`].
    pub fn check_size(&self, size: u64) -> Result<(), NotEligible> {
        match self.max_size_bytes {
            Some(max) if size > max => Err(NotEligible::TooLarge { size, max }),
            _ => Ok(()),
        }
    }
}

/// When a warm start should refresh its snapshot in the background.
///
/// A depth-1 history has no commit distance, so drift is judged by the snapshot's age
/// and by how many bytes the catch-up fetch had to transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drift {
    /// Refresh when the snapshot is older than this.
    pub max_age: Duration,
    /// Refresh when the catch-up fetch received more than this many bytes.
    pub max_fetch_bytes: u64,
}

impl Default for Drift {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 3600),
            max_fetch_bytes: 8 << 20,
        }
    }
}

impl Drift {
    /// `Some(reason)` when a snapshot of `age` whose catch-up fetched `fetched_bytes`
    /// should be refreshed.
    pub fn judge(&self, age: Duration, fetched_bytes: u64) -> Option<String> {
        if age > self.max_age {
            return Some(format!(
                "snapshot is {}s old (limit {}s)",
                age.as_secs(),
                self.max_age.as_secs()
            ));
        }
        if fetched_bytes > self.max_fetch_bytes {
            return Some(format!(
                "catch-up fetch received {fetched_bytes} bytes (limit {})",
                self.max_fetch_bytes
            ));
        }
        None
    }
}

/// `*` matches any run of characters (including `/`); everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, rest) = parts.split_first().unwrap_or((&"", &[]));
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().unwrap_or((&"", &[]));
    for part in middle {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Recipe;
    use sandbox_core::RepoUrl;

    fn key(url: &str) -> SnapshotKey {
        SnapshotKey::for_repo(&RepoUrl::parse(url).unwrap(), &Recipe::empty()).unwrap()
    }

    #[test]
    fn glob_matches() {
        assert!(glob("github.com/acme/*", "github.com/acme/app"));
        assert!(glob("*", "anything/at/all"));
        assert!(glob("*/app", "gitlab.com/x/app"));
        assert!(glob("github.com/*/app*", "github.com/x/app-server"));
        assert!(!glob("github.com/acme/*", "github.com/other/app"));
        assert!(!glob("a*b*c", "acb"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn eligibility_rules() {
        let e = Eligibility {
            allow: vec!["github.com/acme/*".into()],
            deny: vec!["github.com/acme/huge".into()],
            max_size_bytes: Some(100),
            disabled: false,
        };
        assert!(e.check(&key("https://github.com/acme/app")).is_ok());
        assert!(
            e.check(&key("https://github.com/acme/huge"))
                .unwrap_err()
                .to_string()
                .contains("deny")
        );
        assert!(
            e.check(&key("https://github.com/other/app"))
                .unwrap_err()
                .kind()
                == "not_allowed"
        );
        assert!(e.check_size(100).is_ok());
        assert_eq!(
            e.check_size(101),
            Err(NotEligible::TooLarge {
                size: 101,
                max: 100
            })
        );
        assert_eq!(
            Eligibility::none().check(&key("https://github.com/acme/app")),
            Err(NotEligible::Disabled)
        );
    }

    #[test]
    fn drift_by_age_and_bytes() {
        let d = Drift {
            max_age: Duration::from_secs(60),
            max_fetch_bytes: 1000,
        };
        assert!(d.judge(Duration::from_secs(10), 10).is_none());
        assert!(
            d.judge(Duration::from_secs(61), 10)
                .unwrap()
                .contains("old")
        );
        assert!(
            d.judge(Duration::from_secs(10), 1001)
                .unwrap()
                .contains("bytes")
        );
    }
}
