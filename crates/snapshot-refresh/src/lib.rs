//! Per-repository base snapshots for headstart: keys, lookup, builds, the background
//! builder and the [`FastStart`] orchestration that the CLI and library users call.
//!
//! ```text
//! FastStart::start(source)
//!   key    = SnapshotKey::for_repo(url, recipe)          (host/owner/repo + recipe digest)
//!   lookup = provider.snapshots().latest_ready(key)      (follows every page)
//!   hit  → provider.connect(base = hit) → git::sync      (depth-1 fetch of one branch)
//!   miss → provider.connect()           → git::clone     → Builder::kick(seed = the clone)
//! ```
//!
//! The [`Builder`] runs one build per key at a time (in-process single flight plus a
//! lock file per key across processes), skips keys in their failure-cache backoff, and
//! tracks its tasks so [`Builder::shutdown`] can wait for them. Builds start from a
//! *seed* of the cold start's clone (hard-linked git objects), so a cold start does not
//! pay for a second clone.
//!
//! Not a provider: this crate talks to sandboxes and stores only through the
//! `sandbox-core` traits, and never knows whether they are directories or containers.
#![deny(missing_docs)]

mod builder;
mod cleanup;
mod error;
mod fast_start;
mod key;
mod policy;
mod reconnect;
mod refresh;
pub mod seed;
mod state;

pub use builder::{Builder, DetachedSpawner, JobFile, KickOutcome, Spawn};
pub use cleanup::{BUILD_MARKER_VAR, CleanupReport};
pub use error::{Error, Result};
pub use fast_start::{FastStart, Started};
pub use key::{Recipe, RecipeCommand, SnapshotKey};
pub use policy::{Drift, Eligibility};
pub use refresh::{
    BuildReport, CommandRecord, DEFAULT_BUILD_DEADLINE, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_OUTPUT_LIMIT, RefreshOptions, build_sandbox_name, refresh_base_snapshot,
};
pub use state::{BuildLock, FailureCache, FailureRecord};
