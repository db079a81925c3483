//! The one error type of the broker's API (serving errors are answers to git, not this).

use std::path::PathBuf;

/// What went wrong in a [`Broker`](crate::Broker) call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The grant's upstream is not an `http://` or `https://` URL.
    #[error("the upstream {url} is not an http(s) URL: the broker speaks git smart HTTP only")]
    UnsupportedUpstream {
        /// The URL (validated, so it holds no secret).
        url: String,
    },
    /// No grant has this id.
    #[error("no grant with id {0}")]
    UnknownGrant(String),
    /// A push pattern the broker cannot use.
    #[error("invalid push pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it is refused.
        reason: String,
    },
    /// The operating system gave no random bytes for a capability.
    #[error("no random bytes from the operating system for a grant capability: {0}")]
    Random(String),
    /// The upstream HTTP client could not be built.
    #[error("building the upstream HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// Reading or writing the grants file.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What the broker was doing (`writing grants to`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The grants file is not what [`Broker::save_grants`](crate::Broker::save_grants) writes.
    #[error("reading grants from {}: {reason}", path.display())]
    BadGrantsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The grant was revoked: it cannot be renewed.
    #[error("grant {0} was revoked")]
    Revoked(String),
    /// A renewal named another repository than the grant's.
    #[error("grant {id} is for another repository than {url}")]
    OtherUpstream {
        /// The grant.
        id: String,
        /// The repository asked for (validated, so it holds no secret).
        url: String,
    },
    /// Accepting connections failed.
    #[error("accepting connections: {0}")]
    Serve(#[source] std::io::Error),
}

impl BrokerError {
    /// A stable snake_case name of the variant, for programs and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnsupportedUpstream { .. } => "unsupported_upstream",
            Self::UnknownGrant(_) => "unknown_grant",
            Self::InvalidPattern { .. } => "invalid_pattern",
            Self::Random(_) => "random",
            Self::Client(_) => "client",
            Self::Io { .. } => "io",
            Self::BadGrantsFile { .. } => "bad_grants_file",
            Self::Revoked(_) => "grant_revoked",
            Self::OtherUpstream { .. } => "other_upstream",
            Self::Serve(_) => "serve",
        }
    }
}
