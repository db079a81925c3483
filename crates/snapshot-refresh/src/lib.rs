//! Per-repository base snapshots for headstart: keys, lookup, builds, the background
//! builder and the [`FastStart`] orchestration that the CLI and library users call.
//!
//! ```text
//! FastStart::start(source)
//!   key    = SnapshotKey::for_repo(url, recipe)          (host/owner/repo + recipe digest)
//!   lookup = provider.snapshots().latest_ready(key)      (follows every page)
//!   hit  → provider.connect(base = hit) → git::sync      (depth-1 fetch of one branch)
//!   miss → provider.connect()           → git::clone     → SnapshotBuilder::kick(seed = the clone)
//! ```
//!
//! The [`SnapshotBuilder`] runs one build per key at a time (in-process single flight plus a
//! lock file per key across processes), skips keys in their failure-cache backoff, and
//! tracks its tasks so [`SnapshotBuilder::shutdown`] can wait for them. Builds start from a
//! *seed* of the cold start's clone (hard-linked git objects), so a cold start does not
//! pay for a second clone.
//!
//! Not a provider: this crate talks to sandboxes and stores only through the
//! `sandbox-core` traits, and never knows whether they are directories or containers
//! (the `local` feature adds one convenience constructor, [`FastStart::local`], on
//! provisioners' `LocalProvider`).
//!
//! # Start here
//!
//! One flow needs only this crate: the `sandbox-core` types in its signatures are
//! re-exported ([`Source`], [`ConnectOptions`], [`ExecRequest`], [`Sandbox`],
//! [`SandboxProvider`], ...; the whole crate as [`sandbox_core`]), and [`prelude`]
//! brings in what a start needs. Errors of `sandbox-core` convert into [`Error`]
//! (`?` works), and [`Error::kind`] gives the same stable names for both.
//!
//! ```
//! # #[cfg(feature = "local")]
//! # fn main() -> Result<(), snapshot_refresh::Error> {
//! use snapshot_refresh::prelude::*;
//!
//! # let tmp = tempfile::tempdir().expect("a temp dir");
//! # let data_dir = tmp.path();
//! let fast = FastStart::local(data_dir)?          // or FastStart::builder().provider(p)...
//!     .recipe(Recipe::empty().command(RecipeCommand::new(["true"])?));
//! let source = Source::parse("https://github.com/acme/app")?.prebuilt(false);
//! assert_eq!(fast.key_for(&source)?.identity(), "github.com/acme/app");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "local"))]
//! # fn main() {}
//! ```
//!
//! [`FastStart`] has a complete cold → snapshot → warm example; a whole program is
//! [`_example`]: `examples/fast-start.rs` in the repository (`cargo run --example
//! fast-start`).
//!
//! # Features
//!
//! - `local` (default): [`FastStart::local`] and the [`LocalProvider`] re-export
//!   (depends on `provisioners`).
#![deny(missing_docs)]

mod builder;
mod cleanup;
mod error;
mod fast_start;
mod guard;
mod hooks;
mod key;
mod policy;
mod reconnect;
mod refresh;
mod remote;
mod setup;
mod state;

#[allow(deprecated)]
pub use builder::Builder;
pub use builder::{DetachedSpawner, JobFile, KickOutcome, SnapshotBuilder, Spawn};
pub use cleanup::{BUILD_MARKER_VAR, CleanupReport};
pub use error::{BuildError, Error, NotEligible, Result};
pub use fast_start::{DEFAULT_PULL_BOUND, FastStart, OriginAlias, SnapshotSource, Started};
pub use guard::SandboxGuard;
pub use hooks::run_after_start_hooks;
pub use setup::{FastStartBuilder, NoProvider};

/// The vocabulary crate, for what is not re-exported below.
pub use sandbox_core;
pub use sandbox_core::git::ProgressFn;
pub use sandbox_core::{
    BranchName, CancelToken, ConnectOptions, Connected, Credentials, ExecOutput, ExecRequest,
    HeadInfo, Phase, PhaseTiming, RepoUrl, Sandbox, SandboxName, SandboxProvider, SnapshotId,
    SnapshotMeta, SnapshotStatus, SnapshotStore, Source, StartPath, StartupReport, TransferLimits,
};

/// The local provider (sandboxes are directories; no isolation), from `provisioners`.
#[cfg(feature = "local")]
pub use provisioners::LocalProvider;

/// What one flow needs: `use snapshot_refresh::prelude::*;`.
///
/// Types only (no `Result` or `Error`, which would shadow your own): the start
/// ([`FastStart`], [`Started`], [`SandboxGuard`], [`SnapshotBuilder`], [`Recipe`]),
/// what to start ([`Source`], [`BranchName`], [`ConnectOptions`], [`SandboxName`]),
/// what to do with it ([`ExecRequest`], [`StartPath`]) and the traits whose methods
/// you call ([`Sandbox`], [`SandboxProvider`], [`SnapshotStore`]).
pub mod prelude {
    #[cfg(feature = "local")]
    pub use crate::LocalProvider;
    pub use crate::{
        BranchName, ConnectOptions, ExecRequest, FastStart, Recipe, RecipeCommand, Sandbox,
        SandboxGuard, SandboxName, SandboxProvider, SnapshotBuilder, SnapshotStore, Source,
        StartPath, Started,
    };
}
/// The fast-start example program, `examples/fast-start.rs` in the repository: a cold
/// start, the background snapshot, an upstream commit, a warm start, both reports side
/// by side. Run it with `cargo run --example fast-start [REPO]` from the repository.
/// (Documentation only: this module is empty.)
///
/// ```ignore
#[doc = include_str!("../../../examples/fast-start.rs")]
/// ```
pub mod _example {}

pub use key::{Recipe, RecipeCommand, SnapshotKey};
pub use policy::{Drift, Eligibility};
pub use refresh::{
    BuildReport, CommandRecord, DEFAULT_BUILD_DEADLINE, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_OUTPUT_LIMIT, RefreshOptions, build_sandbox_name, refresh_base_snapshot,
};
pub use remote::{Lease, Pulled, PushRecord, Pushed, RemoteError, RemoteSnapshots};
pub use state::{BuildLock, FailureCache, FailureRecord};
