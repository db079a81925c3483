//! The one error type of `sandbox-core`.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in `sandbox-core` and in the providers that implement
/// its traits. Messages say what to do next; none of them contains a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A repository URL was refused.
    #[error("invalid repository URL `{url}`: {reason}")]
    InvalidUrl {
        /// The input, with any userinfo replaced by `***`.
        url: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A name (branch, sandbox, snapshot) was refused.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidName {
        /// What kind of name (`branch`, `sandbox name`, ...).
        what: &'static str,
        /// The value, with control characters escaped.
        value: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// Options that contradict each other or cannot be honoured.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The branch does not exist on the remote.
    #[error("branch `{branch}` not found in {url}{}", available_hint(available))]
    BranchNotFound {
        /// The branch asked for.
        branch: String,
        /// The repository URL (no secrets).
        url: String,
        /// A few branches that do exist.
        available: Vec<String>,
    },
    /// `new_branch` names a branch the remote already has.
    #[error(
        "branch `{branch}` already exists in {url}; check it out as the branch, or pick another new branch name"
    )]
    NewBranchExists {
        /// The branch asked for.
        branch: String,
        /// The repository URL.
        url: String,
    },
    /// The server refused the credentials (or demanded some and none were given).
    #[error("authentication failed for {url}: {hint}")]
    AuthFailed {
        /// The repository URL.
        url: String,
        /// What to do about it.
        hint: String,
    },
    /// The repository does not exist (or is hidden from these credentials).
    #[error("{}", repo_not_found(url))]
    RepoNotFound {
        /// The repository URL.
        url: String,
    },
    /// The server could not be reached.
    #[error("cannot reach {url}: {message} (check the host, your network and any proxy)")]
    Network {
        /// The repository URL.
        url: String,
        /// What the transport said (credential-free).
        message: String,
    },
    /// A workspace's `origin` is a different repository than the source asked for.
    #[error(
        "the workspace at {workspace} is a checkout of {actual}, not {expected}; start without the prebuilt snapshot, or replace the sandbox"
    )]
    OriginMismatch {
        /// The workspace directory.
        workspace: PathBuf,
        /// The URL asked for.
        expected: String,
        /// The URL the workspace has.
        actual: String,
    },
    /// The repository uses something the checkout cannot provide (submodules, LFS).
    #[error("{0}")]
    UnsupportedRepository(String),
    /// Any other git failure.
    #[error("git {op} failed: {message}")]
    Git {
        /// The operation (`clone`, `fetch`, `checkout`, ...).
        op: &'static str,
        /// What libgit2 said (credential-free).
        message: String,
    },
    /// No sandbox of that name exists.
    #[error("no sandbox named `{name}`")]
    SandboxNotFound {
        /// The name asked for.
        name: String,
    },
    /// No snapshot with that id exists.
    #[error("no snapshot `{id}`")]
    SnapshotNotFound {
        /// The id asked for.
        id: String,
    },
    /// An operation ran out of time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was running.
        what: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// A transfer stayed below the low-speed limit
    /// ([`TransferLimits::low_speed`](crate::TransferLimits)) for its whole window.
    #[error(
        "{what} failed: the server sent less than {bytes_per_sec} B/s for {window:?}; check the network and the server, or relax the low-speed limit"
    )]
    TooSlow {
        /// What was running.
        what: String,
        /// The limit, in bytes per second.
        bytes_per_sec: u64,
        /// How long the rate stayed below it.
        window: Duration,
    },
    /// The operation was cancelled (Ctrl-C, SIGTERM, or a [`CancelToken`](crate::CancelToken)).
    #[error("{what} was interrupted")]
    Cancelled {
        /// What was running.
        what: String,
    },
    /// A filesystem ran out of space.
    #[error("no space left on {path} while {context}; free some space and retry")]
    NoSpace {
        /// The directory being written.
        path: PathBuf,
        /// What was being done.
        context: String,
    },
    /// The program to run does not exist (shells exit 127 for this).
    #[error("{program}: command not found (give a path or a program on the sandbox's PATH)")]
    CommandNotFound {
        /// The program (argv\[0\]).
        program: String,
    },
    /// The program exists but cannot be run: not executable, a directory, not a format
    /// the kernel runs (shells exit 126 for this).
    #[error("{program}: cannot run it: {reason}")]
    CommandNotExecutable {
        /// The program (argv\[0\]).
        program: String,
        /// Why (`permission denied`, `exec format error`, ...).
        reason: String,
    },
    /// A filesystem or process error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A provider back-end failed (Docker engine, store, cloud API).
    #[error("{provider}: {message}")]
    Provider {
        /// The provider kind (`local`, `docker`, ...).
        provider: &'static str,
        /// What went wrong and what to do.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

fn available_hint(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!("; branches that exist include: {}", available.join(", "))
    }
}

impl Error {
    /// An [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::Provider`] without an underlying source.
    pub fn provider(provider: &'static str, message: impl Into<String>) -> Self {
        Self::Provider {
            provider,
            message: message.into(),
            source: None,
        }
    }

    /// A stable snake_case name for the variant, for machine-readable output
    /// (`--json` error objects, analytics): never carries data from the error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "invalid_url",
            Self::InvalidName { .. } => "invalid_name",
            Self::InvalidOptions(_) => "invalid_options",
            Self::BranchNotFound { .. } => "branch_not_found",
            Self::NewBranchExists { .. } => "new_branch_exists",
            Self::AuthFailed { .. } => "auth_failed",
            Self::RepoNotFound { .. } => "repo_not_found",
            Self::Network { .. } => "network",
            Self::OriginMismatch { .. } => "origin_mismatch",
            Self::UnsupportedRepository(_) => "unsupported_repository",
            Self::Git { .. } => "git",
            Self::SandboxNotFound { .. } => "sandbox_not_found",
            Self::SnapshotNotFound { .. } => "snapshot_not_found",
            Self::Timeout { .. } => "timeout",
            Self::TooSlow { .. } => "too_slow",
            Self::Cancelled { .. } => "cancelled",
            Self::NoSpace { .. } => "no_space",
            Self::CommandNotFound { .. } => "command_not_found",
            Self::CommandNotExecutable { .. } => "command_not_executable",
            // a full disk met outside the git engine's own checks is still a full disk
            Self::Io { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                "no_space"
            }
            Self::Io { .. } => "io",
            Self::Provider { .. } => "provider",
        }
    }

    /// True when the error is the caller's input (bad URL, name, branch, unknown
    /// sandbox), as opposed to the environment failing. The CLI exits with status 2
    /// for these.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidUrl { .. }
                | Self::InvalidName { .. }
                | Self::InvalidOptions(_)
                | Self::BranchNotFound { .. }
                | Self::NewBranchExists { .. }
                | Self::OriginMismatch { .. }
                | Self::SandboxNotFound { .. }
                | Self::SnapshotNotFound { .. }
                | Self::RepoNotFound { .. }
                | Self::AuthFailed { .. }
        )
    }
}

/// The message of [`Error::RepoNotFound`]: a local path is no checkout's top
/// directory (a token would not help); a remote one may be private.
fn repo_not_found(url: &str) -> String {
    match url.strip_prefix("file://") {
        Some(path) => format!(
            "no git repository at {path}: give the top directory of a checkout (the one \
             holding `.git`) or a bare repository"
        ),
        None => format!(
            "repository not found: {url} (check the URL; a private repository also needs a token)"
        ),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn an_io_error_of_a_full_disk_or_quota_is_of_kind_no_space() {
        let io =
            |errno: i32| Error::io("writing a record", std::io::Error::from_raw_os_error(errno));
        assert_eq!(io(28).kind(), "no_space"); // ENOSPC
        assert_eq!(io(122).kind(), "no_space"); // EDQUOT
        assert_eq!(io(13).kind(), "io"); // EACCES
    }

    #[test]
    fn a_local_repository_not_found_speaks_of_the_path_not_of_a_token() {
        let local = Error::RepoNotFound {
            url: "file:///srv/co/sub".into(),
        }
        .to_string();
        assert!(
            local.contains("no git repository at /srv/co/sub") && !local.contains("token"),
            "{local}"
        );
        let remote = Error::RepoNotFound {
            url: "https://example.com/a/b".into(),
        }
        .to_string();
        assert!(remote.contains("private repository"), "{remote}");
    }
}
