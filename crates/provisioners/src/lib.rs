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
//!
//! Providers implement the traits of `sandbox-core`. This crate is not where snapshots
//! are keyed, scheduled or looked up: that is `snapshot-refresh`.
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

pub mod choice;
pub mod cloud;
pub mod docker;
pub mod local;

pub use choice::{ProviderChoice, ProviderKind, choose_provider};
pub use local::{LocalProvider, LocalSandbox, LocalSnapshotStore, RestoreMethod};
