//! The error type of `snapshot-refresh`.

/// What can go wrong while keying, building or starting from snapshots.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A provider, store or git operation failed.
    #[error(transparent)]
    Core(#[from] sandbox_core::Error),
    /// The repository URL cannot be turned into a snapshot key.
    #[error("cannot derive a snapshot key: {0}")]
    InvalidKey(String),
    /// The recipe is malformed.
    #[error("invalid recipe: {0}")]
    InvalidRecipe(String),
    /// A recipe command failed during a snapshot build.
    #[error("recipe command `{command}` failed: {detail}")]
    RecipeFailed {
        /// The command line, for display.
        command: String,
        /// Exit status or timeout, and the tail of its stderr.
        detail: String,
    },
    /// An after-start hook of the recipe failed. A sandbox the start created was
    /// removed; one it reconnected to is kept (`kept`), as it was.
    #[error("after-start hook `{command}` failed: {detail}{}", kept_note(kept.as_ref()))]
    HookFailed {
        /// The command line, for display.
        command: String,
        /// Exit status or timeout, and its output (scrubbed).
        detail: String,
        /// The existing sandbox the hook ran in, which is kept.
        kept: Option<sandbox_core::SandboxName>,
    },
    /// The whole build ran past its deadline.
    #[error("snapshot build for {key} ran past its {after:?} deadline")]
    BuildDeadline {
        /// The snapshot key.
        key: String,
        /// The deadline.
        after: std::time::Duration,
    },
    /// Builder state on disk (locks, failure cache, seeds) could not be used.
    #[error("{context}: {source}")]
    State {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
    /// A start asked an existing sandbox (or a directory to use as a workspace) for
    /// something it cannot honour without changing repository or losing local work:
    /// another repository, or another branch while there are local changes. The
    /// message names what is there, what was asked, and what to do. Bad input.
    #[error("{0}")]
    Refused(String),
    /// A start with a repository was given a workspace directory (`--workdir`) that
    /// is neither empty (or missing) nor a checkout of that repository: nothing is
    /// cloned over the files in it. The message names the directory and what it
    /// holds. Bad input.
    #[error("{0}")]
    WorkdirUnusable(String),
    /// The repository gets no snapshot (see [`Eligibility`](crate::Eligibility)).
    #[error("no snapshot for this repository: {0}")]
    NotEligible(#[from] NotEligible),
    /// A background snapshot build failed ([`SnapshotBuilder::wait`](crate::SnapshotBuilder::wait)
    /// returned it; `?` converts it). Its [`kind`](Error::kind) is the build's.
    #[error("snapshot build failed: {0}")]
    Build(#[from] BuildError),
}

/// Why a repository gets no snapshot: [`Eligibility::check`](crate::Eligibility::check)
/// and [`Eligibility::check_size`](crate::Eligibility::check_size).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotEligible {
    /// Snapshots are switched off ([`Eligibility::none`](crate::Eligibility::none)).
    #[error("snapshots are switched off")]
    Disabled,
    /// The repository matches a deny pattern.
    #[error("{identity} matches the deny pattern `{pattern}`")]
    Denied {
        /// The key's identity (`host/owner/repo`).
        identity: String,
        /// The pattern it matched.
        pattern: String,
    },
    /// Allow patterns are set and the repository matches none.
    #[error("{identity} matches no allow pattern")]
    NotAllowed {
        /// The key's identity (`host/owner/repo`).
        identity: String,
    },
    /// The workspace is larger than the snapshot cap.
    #[error("workspace is {size} bytes, over the {max}-byte snapshot cap")]
    TooLarge {
        /// The workspace size in bytes.
        size: u64,
        /// The cap in bytes.
        max: u64,
    },
}

impl NotEligible {
    /// A stable snake_case name for the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Disabled => "snapshots_disabled",
            Self::Denied { .. } => "denied",
            Self::NotAllowed { .. } => "not_allowed",
            Self::TooLarge { .. } => "too_large",
        }
    }
}

/// Why a background snapshot build failed, as [`SnapshotBuilder::wait`](crate::SnapshotBuilder::wait)
/// returns it.
///
/// A build runs in a task of its own and its failure is also recorded in the failure
/// cache, so what comes back is the error's [`kind`](Self::kind) and its message
/// (scrubbed of every registered secret), not the original error value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    kind: &'static str,
    user_error: bool,
    message: String,
}

impl BuildError {
    pub(crate) fn from_error(e: &Error) -> Self {
        Self {
            kind: e.kind(),
            user_error: e.is_user_error(),
            message: sandbox_core::scrub(&e.to_string()).into_owned(),
        }
    }

    pub(crate) fn task(message: String) -> Self {
        Self {
            kind: "task",
            user_error: false,
            message: sandbox_core::scrub(&message).into_owned(),
        }
    }

    /// The [`Error::kind`] of the failure (`branch_not_found`, `recipe_failed`,
    /// `build_deadline`, `task` when the build task panicked or was aborted, ...).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The message, scrubbed of secrets.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the build failed on the caller's input (a bad URL or branch).
    pub fn is_user_error(&self) -> bool {
        self.user_error
    }
}

impl Error {
    pub(crate) fn state(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::State {
            context: context.into(),
            source,
        }
    }

    /// A stable snake_case name for the variant; a wrapped [`sandbox_core::Error`]
    /// or [`BuildError`] gives its own kind (`branch_not_found`, not `core`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Core(e) => e.kind(),
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidRecipe(_) => "invalid_recipe",
            Self::RecipeFailed { .. } => "recipe_failed",
            Self::HookFailed { .. } => "hook_failed",
            Self::BuildDeadline { .. } => "build_deadline",
            Self::State { .. } => "state",
            Self::Task(_) => "task",
            Self::Refused(_) => "refused",
            Self::WorkdirUnusable(_) => "workdir_unusable",
            Self::NotEligible(_) => "not_eligible",
            Self::Build(e) => e.kind(),
        }
    }

    /// True when the error is the caller's input (see
    /// [`sandbox_core::Error::is_user_error`]).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Core(e) => e.is_user_error(),
            Self::InvalidKey(_)
            | Self::InvalidRecipe(_)
            | Self::Refused(_)
            | Self::WorkdirUnusable(_) => true,
            Self::Build(e) => e.is_user_error(),
            _ => false,
        }
    }
}

fn kept_note(kept: Option<&sandbox_core::SandboxName>) -> String {
    kept.map_or_else(String::new, |n| {
        format!("; sandbox `{n}` existed before and is kept as it is (its hooks did not complete)")
    })
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
