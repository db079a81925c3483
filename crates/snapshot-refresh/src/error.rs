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
}

impl Error {
    pub(crate) fn state(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::State {
            context: context.into(),
            source,
        }
    }

    /// A stable snake_case name for the variant; a wrapped [`sandbox_core::Error`]
    /// gives its own kind (`branch_not_found`, not `core`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Core(e) => e.kind(),
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidRecipe(_) => "invalid_recipe",
            Self::RecipeFailed { .. } => "recipe_failed",
            Self::BuildDeadline { .. } => "build_deadline",
            Self::State { .. } => "state",
            Self::Task(_) => "task",
            Self::Refused(_) => "refused",
        }
    }

    /// True when the error is the caller's input (see
    /// [`sandbox_core::Error::is_user_error`]).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Core(e) => e.is_user_error(),
            Self::InvalidKey(_) | Self::InvalidRecipe(_) | Self::Refused(_) => true,
            _ => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
