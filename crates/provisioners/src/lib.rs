//! Sandbox providers for headstart.
//!
//! Will own: `local` (the embedded default, workspace directories), `docker`
//! (bollard) and `cloud` (VM hosts on DigitalOcean, Hetzner and GCP). Providers
//! implement the traits of `sandbox-core`; this crate is not where snapshots are
//! keyed or scheduled (that is `snapshot-refresh`).

/// Cloud VM hosts (DigitalOcean, Hetzner, GCP) over their REST APIs; not sandboxes.
pub mod cloud;
pub mod docker;
pub mod local;

pub use local::{LocalProvider, LocalSandbox, LocalSnapshotStore, RestoreMethod};
