//! The one error of this crate.

/// What went wrong talking to the registry or moving a snapshot through it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry reference is not `HOST[:PORT]/REPOSITORY`.
    #[error("invalid registry reference \"{value}\": {reason}")]
    InvalidReference {
        /// The value given (escaped).
        value: String,
        /// What to write instead.
        reason: String,
    },
    /// The credentials configuration (the Docker config, a credential helper) is unusable.
    #[error("registry credentials: {0}")]
    Credentials(String),
    /// The registry did not answer (connection refused, timeout, reset).
    #[error("the registry {registry} is unreachable: {message}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// What failed.
        message: String,
    },
    /// The registry refused the credentials or the operation.
    #[error("the registry {registry} refused access: {message}")]
    Denied {
        /// The registry host.
        registry: String,
        /// Its answer.
        message: String,
    },
    /// A blob's content does not match its digest: corrupted in the registry or on the
    /// way. Nothing of it was kept.
    #[error("a blob from the registry does not match its digest ({0}); it was refused")]
    DigestMismatch(String),
    /// The manifest under a snapshot tag is not a headstart snapshot of this format.
    #[error("{reference} is not a headstart snapshot: {reason}")]
    NotASnapshot {
        /// The reference pulled.
        reference: String,
        /// What did not match.
        reason: String,
    },
    /// The registry does not allow deleting manifests.
    #[error(
        "the registry {0} does not allow deleting manifests (enable deletes in its configuration)"
    )]
    DeleteUnsupported(String),
    /// Any other answer of the registry.
    #[error("the registry {registry} failed: {message}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What it said.
        message: String,
    },
    /// The local snapshot store failed.
    #[error(transparent)]
    Local(#[from] sandbox_core::Error),
    /// Reading or writing local files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// The stable snake_case kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidReference { .. } => "invalid_registry",
            Self::Credentials(_) => "registry_credentials",
            Self::Unreachable { .. } => "registry_unreachable",
            Self::Denied { .. } => "registry_denied",
            Self::DigestMismatch(_) => "digest_mismatch",
            Self::NotASnapshot { .. } => "not_a_snapshot",
            Self::DeleteUnsupported(_) => "registry_delete_unsupported",
            Self::Registry { .. } => "registry_error",
            Self::Local(e) => e.kind(),
            Self::Io { .. } => "io",
        }
    }

    /// True when the input (reference, credentials configuration) is at fault.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::InvalidReference { .. } | Self::Credentials(_))
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Maps an oci-client error for `registry`.
    pub(crate) fn oci(registry: &str, e: oci_client::errors::OciDistributionError) -> Self {
        use oci_client::errors::OciDistributionError as O;
        let registry = registry.to_owned();
        match e {
            O::DigestError(d) => Self::DigestMismatch(d.to_string()),
            O::UnauthorizedError { .. } | O::AuthenticationFailure(_) => Self::Denied {
                registry,
                message: e.to_string(),
            },
            O::RequestError(r)
                if r.is_connect() || r.is_timeout() || r.is_request() || r.is_body() =>
            {
                Self::Unreachable {
                    registry,
                    message: chain(&r),
                }
            }
            O::IoError(io) => Self::Unreachable {
                registry,
                message: io.to_string(),
            },
            other => Self::Registry {
                registry,
                message: other.to_string(),
            },
        }
    }
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

impl From<Error> for snapshot_refresh::RemoteError {
    fn from(e: Error) -> Self {
        snapshot_refresh::RemoteError::new(e.kind(), e.to_string())
    }
}
