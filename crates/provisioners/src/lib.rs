//! Sandbox providers for headstart.
//!
//! - [`local`]: the embedded default; sandboxes are workspace directories under the
//!   data directory, snapshots are stored workspaces restored by overlay, reflink or
//!   hardlink+copy. No isolation. Always built.
//! - `docker` (feature `docker`): a container per sandbox (bollard) with the workspace
//!   bind-mounted at `/workspace`; snapshots are committed images plus stored
//!   workspaces.
//! - `cloud` (feature `cloud`): VM hosts on DigitalOcean, Hetzner and GCP over their
//!   REST APIs (reqwest; their own `VmProvisioner` trait: hosts, not sandboxes).
//! - [`workdir`]: the check every provider makes before using the user's own
//!   directory as a workspace (never inside or around the data directory).
//!
//! # Cargo features
//!
//! | feature | default | brings |
//! |---|---|---|
//! | `docker` | yes | the `docker` module; bollard (and hyper with it) |
//! | `cloud` | yes | the `cloud` module; reqwest (and hyper with it) |
//!
//! A program that only wants the local provider depends on this crate with
//! `default-features = false` and builds no HTTP client at all.
//!
//! Providers implement the traits of `sandbox-core`. This crate is not where snapshots
//! are keyed, scheduled or looked up (that is `snapshot-refresh`), and not where a
//! provider or an image is chosen from experiments: it takes plain options and knows
//! nothing of feature flags.
//!
//! ```
//! use provisioners::LocalProvider;
//! use sandbox_core::{ConnectOptions, ExecRequest, Sandbox, SandboxProvider};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let home = tempfile::tempdir()?;
//! let provider = LocalProvider::new(home.path()); // a data directory; no daemon
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let (sandbox, _) = provider.connect(&ConnectOptions::new()).await?;
//!     let out = sandbox.exec(&ExecRequest::new(["pwd"])?).await?;
//!     assert!(out.success());
//!     sandbox.remove().await // sandboxes persist until removed
//! })?;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "cloud")]
pub mod cloud;
#[cfg(feature = "docker")]
pub mod docker;
mod exec_io;
pub mod local;
pub mod workdir;

pub use local::{LocalProvider, LocalSandbox, LocalSnapshotStore, RestoreMethod};
