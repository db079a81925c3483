//! The app layer's one error type: what went wrong, a stable `kind`, whether it was
//! the caller's input, and a hint that names no command line (the CLI adds its own
//! words in `output.rs`).

use std::time::Duration;

use sandbox_core::{SandboxName, SandboxState};

/// A failed app-layer operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// From the vocabulary, the git engine or a provider.
    #[error(transparent)]
    Core(#[from] sandbox_core::Error),
    /// From the snapshot lifecycle or `FastStart`.
    #[error(transparent)]
    Snapshot(#[from] snapshot_refresh::Error),
    /// From feature flags.
    #[error(transparent)]
    Flags(#[from] feature_flags::Error),
    /// From the snapshot registry (a bad reference, credentials, an answer).
    #[error(transparent)]
    Registry(#[from] snapshot_registry::Error),
    /// The caller's input is not valid (a bad setting, recipe or option).
    #[error("{0}")]
    InvalidInput(String),
    /// A file could not be read or written.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Another error, with what was being done.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: Box<Error>,
    },
    /// An operation that failed for a reason no other variant names.
    #[error("{0}")]
    Failed(String),
    /// A snapshot build not tried because recent builds of the key failed.
    #[error("{0}")]
    BackingOff(String),
    /// The credential daemon could not be started or reached, or refused a request.
    #[error("{0}")]
    Daemon(String),
    /// The sandbox is in use (a command or a start holds it) and the operation does not
    /// wait for it.
    #[error("{0}")]
    Busy(String),
    /// A start stopped by its cancel token or its deadline.
    #[error("starting sandbox {} was stopped", .0.name)]
    Stopped(Box<Stopped>),
}

/// What a stopped start left behind.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// The sandbox the start was making.
    pub name: SandboxName,
    /// Its state now: `None` when it was removed, `Ready` when it existed before and
    /// is kept, `Creating` when the cleanup did not finish (`Interrupted` when, on the
    /// local provider, it ended without removing it).
    pub left: Option<SandboxState>,
    /// False when the start did not return within the cleanup grace (or it was
    /// abandoned): a transfer may still hold a thread.
    pub returned: bool,
    /// The deadline that stopped it (`None`: the cancel token did).
    pub deadline: Option<Duration>,
}

/// The app layer's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable snake_case kind (`sandbox_not_found`, `invalid_url`, ...;
    /// `invalid_input` for the app's own checks, `other` for anything else).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Core(e) => e.kind(),
            Self::Snapshot(e) => e.kind(),
            Self::Flags(e) => e.kind(),
            Self::Registry(e) => e.kind(),
            Self::InvalidInput(_) => "invalid_input",
            Self::Context { source, .. } => source.kind(),
            Self::Stopped(s) if s.deadline.is_some() => "timeout",
            Self::Stopped(_) => "cancelled",
            Self::BackingOff(_) => "backing_off",
            Self::Daemon(_) => "daemon",
            Self::Busy(_) => "busy",
            Self::Io { .. } | Self::Failed(_) => "other",
        }
    }

    /// True when the error is the caller's input (the CLI exits 2 for those).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Core(e) => e.is_user_error(),
            Self::Snapshot(e) => e.is_user_error(),
            Self::Flags(e) => matches!(
                e,
                feature_flags::Error::UnknownFastPath { .. }
                    | feature_flags::Error::BadOverride { .. }
            ),
            Self::Registry(e) => e.is_user_error(),
            Self::InvalidInput(_) => true,
            Self::Context { source, .. } => source.is_user_error(),
            Self::Io { .. }
            | Self::Failed(_)
            | Self::BackingOff(_)
            | Self::Daemon(_)
            | Self::Busy(_)
            | Self::Stopped(_) => false,
        }
    }

    /// What to do next, in words that name no command line; `None` when the message
    /// says it all. Front ends add their own (the CLI names its commands and flags).
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self.kind() {
            "sandbox_not_found" => "list the sandboxes that exist",
            "snapshot_not_found" => "list the snapshots that exist",
            "no_space" => "free some space (collect snapshots, prune sandboxes) and retry",
            "network" => "check the host, your network and any proxy, then retry",
            "too_slow" => "the server is stalling: check it and your network, then retry",
            "command_not_found" => "give a path, or a program on the sandbox's PATH",
            "invalid_registry" => {
                "name the registry as HOST[:PORT]/REPOSITORY, e.g. ghcr.io/acme/headstart"
            }
            "registry_unreachable" => "check the registry host, your network and any proxy",
            "registry_denied" | "registry_credentials" => {
                "log in to the registry (Docker config) or set a registry token"
            }
            "registry_delete_unsupported" => {
                "enable deletes in the registry, or delete tags with its own tools"
            }
            "busy" => "wait for the command or start to finish, then retry",
            _ => return None,
        })
    }

    /// This error with `context` (what was being done) in front of it.
    pub fn context(self, context: impl Into<String>) -> Self {
        Self::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_first_typed_error() {
        let e = Error::from(sandbox_core::Error::SandboxNotFound { name: "x".into() })
            .context("removing sandbox x");
        assert_eq!(e.kind(), "sandbox_not_found");
        assert!(e.is_user_error());
        assert!(e.hint().is_some_and(|h| !h.contains("headstart")));
        assert_eq!(Error::InvalidInput("bad".into()).kind(), "invalid_input");
        assert_eq!(Error::Failed("x".into()).kind(), "other");
    }
}
