//! The error type of the cloud VM provisioners.
//!
//! Every message here is credential-free: API response text passes through the
//! client's redaction before it lands in an error, and no variant holds a token.

use std::time::Duration;

use super::Cloud;

/// Everything that can go wrong while creating, waiting for, using or destroying a
/// cloud VM. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    /// A required setting (token, project) is missing from the environment.
    #[error("{cloud}: {var} is not set; {hint}")]
    MissingConfig {
        /// The cloud.
        cloud: Cloud,
        /// The environment variable that is missing.
        var: &'static str,
        /// Where to get the value.
        hint: &'static str,
    },
    /// The VM spec cannot be honoured (bad name, competing user data, ...).
    #[error("invalid VM spec: {0}")]
    InvalidSpec(String),
    /// The API refused the token (401, or 403 for a token without write scope).
    #[error(
        "{cloud}: the API refused the token ({status}: {message}); check that {var} holds a valid token with write access{}",
        token_hint(*cloud)
    )]
    Unauthorized {
        /// The cloud.
        cloud: Cloud,
        /// The HTTP status.
        status: u16,
        /// What the API said (redacted).
        message: String,
        /// Where the token came from.
        var: &'static str,
    },
    /// The API refused the request (422, 403 limits, 400, 404 ...).
    #[error("{cloud}: the API refused the request ({status} {code}): {message}{}", hint_suffix(*status, code, message))]
    Rejected {
        /// The cloud.
        cloud: Cloud,
        /// The HTTP status.
        status: u16,
        /// The API's error code (`unprocessable_entity`, `uniqueness_error`, ...).
        code: String,
        /// What the API said (redacted).
        message: String,
    },
    /// A VM of that name exists but is not one headstart manages for this owner.
    #[error(
        "{cloud}: a VM named `{name}` already exists and is not managed by headstart for this owner; pick another name or delete it in the cloud console"
    )]
    NameInUse {
        /// The cloud.
        cloud: Cloud,
        /// The VM name.
        name: String,
    },
    /// 429 Too Many Requests, still after the bounded retries.
    #[error(
        "{cloud}: rate limited ({attempts} attempts, last wait {last_wait:?}); wait a minute and try again"
    )]
    RateLimited {
        /// The cloud.
        cloud: Cloud,
        /// How many requests were made.
        attempts: u32,
        /// The last wait the server asked for.
        last_wait: Duration,
    },
    /// The API failed on its side (5xx).
    #[error("{cloud}: the API failed ({status}): {message}; try again later")]
    Server {
        /// The cloud.
        cloud: Cloud,
        /// The HTTP status.
        status: u16,
        /// What the API said (redacted).
        message: String,
    },
    /// The API could not be reached, or answered something we cannot read.
    #[error("{cloud}: {message} (check your network, proxy and the API base URL)")]
    Transport {
        /// The cloud.
        cloud: Cloud,
        /// What went wrong (redacted).
        message: String,
    },
    /// The cloud reported that an operation on the VM failed.
    #[error("{cloud}: {message}")]
    Failed {
        /// The cloud.
        cloud: Cloud,
        /// What failed (redacted).
        message: String,
    },
    /// A step ran out of time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was running.
        what: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The `ssh` client failed or could not be started.
    #[error("ssh: {0}")]
    Ssh(String),
    /// A local filesystem or process error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No VM of that name (for this owner) exists.
    #[error("{cloud}: no VM named `{name}`")]
    NotFound {
        /// The cloud.
        cloud: Cloud,
        /// The name asked for.
        name: String,
    },
    /// A step failed after the VM was created, and destroying it failed too.
    #[error("{error}; destroying VM `{vm}` afterwards failed too ({cleanup}): it still exists")]
    CleanupFailed {
        /// The cloud.
        cloud: Cloud,
        /// The VM name.
        vm: String,
        /// The step that failed.
        error: Box<CloudError>,
        /// Why destroying it failed.
        cleanup: Box<CloudError>,
    },
}

fn token_hint(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Gcp => {
            " (access tokens expire after about an hour: set it again from `gcloud auth print-access-token`)"
        }
        Cloud::DigitalOcean | Cloud::Hetzner => "",
    }
}

fn hint_suffix(status: u16, code: &str, message: &str) -> &'static str {
    let text = format!("{code} {message}").to_ascii_lowercase();
    if text.contains("limit") || text.contains("quota") {
        "; raise the limit in the cloud console or delete unused VMs"
    } else if status == 422 || status == 400 || text.contains("invalid") {
        "; check the size, region and image for this cloud"
    } else if status == 404 {
        "; check the project, region/zone and that the resource still exists"
    } else {
        ""
    }
}

impl CloudError {
    /// An [`CloudError::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// True when retrying the same request could succeed (server errors, transport).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Transport { .. })
    }

    /// True when the user can fix it by changing input or settings (a spec, a missing
    /// or refused token, a name, a size or region the API refused, a quota), as
    /// opposed to the cloud or the network failing. The CLI exits with status 2.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::MissingConfig { .. }
            | Self::InvalidSpec(_)
            | Self::Unauthorized { .. }
            | Self::NameInUse { .. }
            | Self::NotFound { .. }
            | Self::Rejected { .. } => true,
            Self::CleanupFailed { .. }
            | Self::RateLimited { .. }
            | Self::Server { .. }
            | Self::Transport { .. }
            | Self::Failed { .. }
            | Self::Timeout { .. }
            | Self::Ssh(_)
            | Self::Io { .. } => false,
        }
    }

    /// True for 404 answers (the resource is gone).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Rejected { status: 404, .. } | Self::NotFound { .. }
        )
    }
}

impl From<CloudError> for sandbox_core::Error {
    fn from(e: CloudError) -> Self {
        match e {
            CloudError::Timeout { what, after } => Self::Timeout { what, after },
            CloudError::Io { context, source } => Self::Io { context, source },
            other => Self::Provider {
                provider: "cloud",
                message: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}

/// `Result` with [`CloudError`].
pub type Result<T, E = CloudError> = std::result::Result<T, E>;
