//! Credentials for private repositories.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// A token (and optional user name) for a private repository.
///
/// The token lives in a [`SecretString`]: `Debug` prints `[redacted]`, it is never part
/// of a URL, and the git engine hands it to libgit2 only through a credential callback
/// for the repository's own origin (scheme, host, port). An empty token is the same as no token.
#[derive(Clone, Default)]
pub struct Credentials {
    username: Option<String>,
    token: Option<SecretString>,
    ssh_key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    token_host: Option<String>,
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
        crate::scrub::register_secret(&token);
        Self {
            token: Some(SecretString::from(token)),
            ..Self::default()
        }
    }

    /// Sets the user name sent with the token (default `x-access-token`, which GitHub,
    /// GitLab and Gitea accept for tokens).
    #[must_use]
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// An ssh private key file (without passphrase) for `ssh://` and `user@host:path`
    /// URLs. The git engine offers it only to the repository's own origin, after
    /// verifying the host key against a `known_hosts` file (see
    /// [`with_known_hosts`](Self::with_known_hosts)).
    pub fn ssh_key(private_key: impl Into<PathBuf>) -> Self {
        Self {
            ssh_key: Some(private_key.into()),
            ..Self::default()
        }
    }

    /// Sets the ssh private key file (see [`ssh_key`](Self::ssh_key)).
    #[must_use]
    pub fn with_ssh_key(mut self, private_key: impl Into<PathBuf>) -> Self {
        self.ssh_key = Some(private_key.into());
        self
    }

    /// Sets the `known_hosts` file ssh host keys are verified against (default:
    /// `~/.ssh/known_hosts`). An unknown or changed host key is an error, never a
    /// prompt or a silent accept.
    #[must_use]
    pub fn with_known_hosts(mut self, known_hosts: impl Into<PathBuf>) -> Self {
        self.known_hosts = Some(known_hosts.into());
        self
    }

    /// The ssh private key file, if any.
    pub fn ssh_key_path(&self) -> Option<&Path> {
        self.ssh_key.as_deref()
    }

    /// The `known_hosts` file set with [`with_known_hosts`](Self::with_known_hosts).
    pub fn known_hosts_path(&self) -> Option<&Path> {
        self.known_hosts.as_deref()
    }

    /// Sends the token only to `host` (case-insensitive; any scheme and port): e.g.
    /// `github.com` for a `GITHUB_TOKEN`, which no other server should be handed.
    #[must_use]
    pub fn with_token_only_for(mut self, host: impl Into<String>) -> Self {
        self.token_host = Some(host.into().to_ascii_lowercase());
        self
    }

    /// The only host the token is sent to, if it is limited to one.
    pub fn token_host(&self) -> Option<&str> {
        self.token_host.as_deref()
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
            .field("ssh_key", &self.ssh_key)
            .field("known_hosts", &self.known_hosts)
            .field("token_host", &self.token_host)
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
