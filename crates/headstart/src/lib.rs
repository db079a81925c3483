//! headstart as a library: start coding sandboxes with a git repository ready in
//! seconds, exactly as the `headstart` command does.
//!
//! [`Headstart`] is the app layer over the library crates (`sandbox-core`,
//! `provisioners`, `snapshot-refresh`, `feature-flags`): built from a [`Config`]
//! (explicit, or [`Headstart::from_env`]), it offers `up`, `exec`, `down`, `ls`,
//! `prune`, the `snapshot_*` operations and `flags_status`, each returning a typed
//! outcome that serializes to what `headstart … --json` prints. The binary parses
//! arguments and renders those outcomes; nothing it does is needed to use headstart
//! from Rust.
//!
//! ```no_run
//! # async fn demo() -> headstart::Result<()> {
//! use headstart::{Headstart, UpRequest};
//!
//! let app = Headstart::from_env()?;
//! let up = app.up(UpRequest::new("https://github.com/owner/repo")).await?;
//! println!("{} at {}", up.sandbox.name, up.sandbox.workspace.display());
//! up.builds.wait(std::time::Duration::from_secs(600)).await;
//! # Ok(()) }
//! ```
//!
//! Every environment variable the package reads is named in [`mod@env`].
#![deny(missing_docs)]

mod app;
pub mod env;

pub use app::daemon;
pub use app::{Activity, HibernateOutcome, Resumed, ResumedFn, RunState, parse_duration};
pub use app::{
    CLEANUP_GRACE, Config, CredentialsMode, DIRECT, DeadBuilds, DownOutcome, Error, ExecOutcome,
    ExecRequest, FailureRecord, FlagsStatus, GcOutcome, Headstart, LsOutcome, Notice, NoticeFn,
    PendingBuilds, PortsOutcome, PruneOutcome, Pruned, RegisterHintFn, RegistryGcOutcome, Removed,
    Result, RunJobOutcome, SandboxRef, SandboxRow, SnapshotBuildOutcome, SnapshotBuildRequest,
    SnapshotLsOutcome, SnapshotPullOutcome, SnapshotPullRequest, SnapshotRef, SnapshotRmOutcome,
    SnapshotRow, Stopped, UpOutcome, UpRequest, VmSettings, Waited, docker_answers, read_recipe,
    register_secrets, source_from,
};
pub use app::{FLUSH_ON_EXIT, ProviderChoice, ProviderKind, choose_provider, prebuilt_images};
pub use feature_flags::BetaRequest;
