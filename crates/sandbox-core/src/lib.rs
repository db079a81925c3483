//! The vocabulary of headstart and its in-process git engine.
//!
//! headstart starts coding sandboxes with a git repository ready in seconds: from a
//! per-repository base snapshot plus a shallow catch-up fetch when one exists, from a
//! clone otherwise. This crate owns the words every other crate speaks:
//!
//! - what to check out: [`Source`] (a validated [`RepoUrl`], [`BranchName`]s, `prebuilt`)
//!   and [`Credentials`] (a secret token, redacted everywhere);
//! - how to get a sandbox: [`ConnectOptions`] (reconnect by [`SandboxName`] unless
//!   `force_create`), and the traits providers implement: [`SandboxProvider`],
//!   [`Sandbox`], [`SnapshotStore`], with their lifecycle ([`GcPolicy`], [`GcReport`],
//!   [`PruneReport`]);
//! - what a start did: [`StartupReport`] with [`Phase`] timings;
//! - the [`git`] engine: clone, sync and seeds through git2, never a `git` subprocess;
//! - [`tree`]: the one routine that copies a workspace tree (snapshots, restores, seeds).
//!
//! It is **not** a provider (no Docker, no HTTP, no directories of its own) and does
//! not decide when snapshots are built; `provisioners` and `snapshot-refresh` do.
//!
//! ```
//! use sandbox_core::{BranchName, Source};
//!
//! let source = Source::parse("https://example.com/acme/app.git")?
//!     .with_branch(BranchName::new("feature/x")?)?;
//! assert_eq!(source.url().host(), Some("example.com"));
//! assert!(Source::parse("https://user:secret@example.com/acme/app").is_err());
//! # Ok::<(), sandbox_core::Error>(())
//! ```
#![deny(missing_docs)]

mod cancel;
mod credentials;
mod error;
pub mod git;
mod lifecycle;
mod names;
mod options;
mod report;
pub mod scrub;
mod snapshot;
mod source;
mod traits;
pub mod tree;
mod url;

pub use cancel::{CancelToken, ExecSignal, LowSpeed, SIGNAL_GRACE, SignalToken, TransferLimits};
pub use credentials::Credentials;
pub use error::{Error, Result};
pub use lifecycle::{GcPolicy, GcReport, PruneReport};
pub use names::{BranchName, SandboxName, SnapshotId};
pub use options::{
    ConnectOptions, ExecOutput, ExecRequest, ExecStdin, OutputSink, PortRequest, PublishedPort,
    Resources, Stream,
};
pub use report::{HeadInfo, Phase, PhaseClock, PhaseTiming, StartPath, StartupReport};
pub use scrub::{register_secret, scrub};
pub use snapshot::{Cursor, Page, SnapshotMeta, SnapshotRequest, SnapshotStatus};
pub use source::Source;
pub use traits::{
    Connected, DEFAULT_PAGE_SIZE, Sandbox, SandboxInfo, SandboxProvider, SandboxState,
    SnapshotStore,
};
pub use url::{Origin, RepoUrl, Transport};
