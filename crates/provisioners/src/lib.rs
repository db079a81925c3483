//! Sandbox providers for headstart.
//!
//! - [`local`]: the embedded default; sandboxes are workspace directories under the
//!   data directory, snapshots are stored workspaces restored by overlay, reflink or
//!   hardlink+copy. No isolation.
//! - [`docker`]: a container per sandbox (bollard) with the workspace bind-mounted at
//!   `/workspace`; snapshots are committed images plus stored workspaces.
//! - [`cloud`]: VM hosts on DigitalOcean, Hetzner and GCP over their REST APIs (their
//!   own `VmProvisioner` trait: hosts, not sandboxes).
//! - [`choice`]: which provider a start uses (explicit flag, else the fast paths).
//! - [`workdir`]: the check every provider makes before using the user's own
//!   directory as a workspace (never inside or around the data directory).
//!
//! Providers implement the traits of `sandbox-core`. This crate is not where snapshots
//! are keyed, scheduled or looked up: that is `snapshot-refresh`.

pub mod choice;
pub mod cloud;
pub mod docker;
pub mod local;
pub mod workdir;

pub use choice::{ProviderChoice, ProviderKind, choose_provider};
pub use local::{LocalProvider, LocalSandbox, LocalSnapshotStore, RestoreMethod};
