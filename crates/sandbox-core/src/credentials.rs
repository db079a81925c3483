//! Credentials for private repositories.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A token (and optional user name) for a private repository.
///
/// The token lives in a [`SecretString`]: `Debug` prints `[redacted]`, it is never part
/// of a URL, and the git engine hands it to libgit2 only through a credential callback
/// for the repository's own host. An empty token is the same as no token.
#[derive(Clone, Default)]
pub struct Credentials {
    username: Option<String>,
    token: Option<SecretString>,
}

impl Credentials {
    /// No credentials (public repositories).
    pub fn none() -> Self {
        Self::default()
    }

    /// A token; empty or all-whitespace means no token.
    pub fn token(token: impl Into<String>) -> Self {
        let token: String = token.into();
        if token.trim().is_empty() {
            return Self::none();
        }
        Self {
            username: None,
            token: Some(SecretString::from(token)),
        }
    }

    /// Sets the user name sent with the token (default `x-access-token`, which GitHub,
    /// GitLab and Gitea accept for tokens).
    #[must_use]
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// True when there is no token.
    pub fn is_empty(&self) -> bool {
        self.token.is_none()
    }

    /// The user name to send with the token.
    pub fn username(&self) -> &str {
        self.username.as_deref().unwrap_or("x-access-token")
    }

    /// The token itself. Only the git engine's credential callback should need this.
    pub fn expose_token(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.expose_secret())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field(
                "token",
                &if self.token.is_some() {
                    "[redacted]"
                } else {
                    "none"
                },
            )
            .finish()
    }
}
