//! The commit identity of a workspace: `user.name` and `user.email` in the
//! repository's own `.git/config` (never a global or system file).

use std::path::Path;

use git2::{Config, Repository};

use crate::error::{Error, Result};

/// A commit author, `Name <email>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GitIdentity {
    /// `user.name`.
    pub name: String,
    /// `user.email`.
    pub email: String,
}

impl GitIdentity {
    /// A checked identity: a non-empty name and an email with an `@`, neither holding
    /// `<`, `>` or a line break.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] saying what is wrong.
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Result<Self> {
        let (name, email) = (
            name.into().trim().to_owned(),
            email.into().trim().to_owned(),
        );
        let bad = |s: &str| {
            s.chars()
                .any(|c| matches!(c, '<' | '>' | '\n' | '\r' | '\0'))
        };
        if name.is_empty() || bad(&name) {
            return Err(Error::InvalidOptions(format!(
                "a git identity needs a name without `<`, `>` or line breaks, got `{name}`"
            )));
        }
        if bad(&email) || email.chars().any(char::is_whitespace) || !email.contains('@') {
            return Err(Error::InvalidOptions(format!(
                "a git identity needs an email like `you@example.com`, got `{email}`"
            )));
        }
        Ok(Self { name, email })
    }

    /// Parses `Name <email>`.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when it is not of that form.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let form = || {
            Error::InvalidOptions(format!(
                "a git identity is `Name <email>`, e.g. `Ada Lovelace <ada@example.com>`; got `{s}`"
            ))
        };
        let (name, rest) = s.split_once('<').ok_or_else(form)?;
        let email = rest.strip_suffix('>').ok_or_else(form)?;
        Self::new(name, email)
    }
}

impl std::fmt::Display for GitIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// Writes `user.name` and `user.email` into the repository's own config
/// (`<workspace>/.git/config`). Blocks.
///
/// # Errors
/// [`Error::Git`] when `workspace` is no repository or its config cannot be written.
pub fn set_identity(workspace: &Path, name: &str, email: &str) -> Result<()> {
    let op = "set identity";
    let err = |e: git2::Error| Error::Git {
        op,
        message: crate::scrub::scrub(e.message()).into_owned(),
    };
    let repo = Repository::open(workspace).map_err(err)?;
    let mut config = Config::open(&repo.path().join("config")).map_err(err)?;
    config.set_str("user.name", name).map_err(err)?;
    config.set_str("user.email", email).map_err(err)?;
    Ok(())
}

/// The identity in the repository's own config (`<workspace>/.git/config`), if both
/// `user.name` and `user.email` are set there. Blocks.
pub fn identity(workspace: &Path) -> Option<GitIdentity> {
    let repo = Repository::open(workspace).ok()?;
    let config = Config::open(&repo.path().join("config")).ok()?;
    Some(GitIdentity {
        name: config.get_string("user.name").ok()?,
        email: config.get_string("user.email").ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let id = GitIdentity::parse(" Ada Lovelace <ada@example.com> ").unwrap();
        assert_eq!(
            (id.name.as_str(), id.email.as_str()),
            ("Ada Lovelace", "ada@example.com")
        );
        assert_eq!(id.to_string(), "Ada Lovelace <ada@example.com>");
        for bad in [
            "Ada",
            "<ada@example.com>",
            "Ada <ada>",
            "Ada <a@b",
            "Ada <a b@c>",
            "A<x> <a@b>",
        ] {
            assert!(GitIdentity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_the_repository_config_only() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init(dir.path()).unwrap();
        set_identity(dir.path(), "Ada", "ada@example.com").unwrap();
        let cfg = Config::open(&dir.path().join(".git/config")).unwrap();
        assert_eq!(cfg.get_string("user.name").unwrap(), "Ada");
        assert_eq!(cfg.get_string("user.email").unwrap(), "ada@example.com");
        assert_eq!(
            identity(dir.path()).unwrap().to_string(),
            "Ada <ada@example.com>"
        );
    }
}
