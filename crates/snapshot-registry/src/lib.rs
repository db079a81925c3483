//! Snapshots shared between hosts through an OCI registry (GHCR, ECR, GAR, Harbor,
//! Docker Hub, `registry:2` on a LAN): [`RegistrySnapshots`] implements
//! snapshot-refresh's [`RemoteSnapshots`](snapshot_refresh::RemoteSnapshots) on the
//! ORAS project's `oci-client`, so the OCI stack stays out of `sandbox-core` and the
//! providers.
//!
//! # Format
//!
//! A local-provider snapshot is an OCI artifact: `artifactType`
//! [`ARTIFACT_TYPE`], a config blob ([`CONFIG_MEDIA_TYPE`]: the snapshot's
//! metadata as JSON) and two tar+zstd layers, the workspace's `.git` directory
//! ([`GIT_LAYER_MEDIA_TYPE`]) and the rest ([`TREE_LAYER_MEDIA_TYPE`]). The manifest's [`annotations`] carry the key,
//! id, commit, branch, recipe digest, creation time, size and headstart version. Tags:
//! `<key>-<id>` for each snapshot and `<key>` for the newest pushed; `<key>-building`
//! is a build lease (holder and expiry in its annotations).
//!
//! # What it is not
//!
//! Not a snapshot store of its own: pulls land in the local store
//! ([`LocalSnapshotStore::import`](provisioners::LocalSnapshotStore::import), atomic)
//! and starts restore from there. It does not decide when to pull or push
//! (`FastStart` and the `SnapshotBuilder` do), and it reads no environment variable:
//! the app layer passes the reference, credentials and the insecure setting.
//!
//! Docker-provider snapshots are normal images pushed and pulled by the engine
//! ([`DockerRegistrySnapshots`], in `<REF>/docker`; see its module for why).
//!
//! # Example
//!
//! A [`FastStart`](snapshot_refresh::FastStart) that pulls on a local miss and pushes
//! what it builds (nothing is contacted until a start or a build needs the registry):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use snapshot_refresh::prelude::*;
//! use snapshot_registry::{RegistryConfig, RegistryRef, RegistrySnapshots};
//!
//! # let tmp = tempfile::tempdir()?;
//! # let data_dir = tmp.path();
//! let reference = RegistryRef::parse("ghcr.io/acme/headstart-snapshots")?;
//! // anonymous here; `Auth::token` or `Auth::from_docker_config` for a private registry
//! let registry = RegistrySnapshots::new(RegistryConfig::new(reference), data_dir)?;
//! let fast = FastStart::builder()
//!     .provider(LocalProvider::new(data_dir))
//!     .data_dir(data_dir)
//!     .remote(Arc::new(registry), Duration::from_secs(30)) // pull at most 30 s, then clone
//!     .build()?;
//! assert!(fast.snapshot_builder().remote().is_some());
//! # Ok(())
//! # }
//! ```

mod archive;
mod auth;
mod docker;
mod error;
mod gc;
mod reference;
mod store;

pub use auth::{Auth, TOKEN_USERNAME};
pub use docker::{DOCKER_REPOSITORY, DockerRegistrySnapshots};
pub use error::Error;
pub use gc::RegistryGcReport;
pub use reference::RegistryRef;
pub use store::{
    ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, GIT_LAYER_MEDIA_TYPE, LEASE_MEDIA_TYPE, RegistryConfig,
    RegistrySnapshots, RemoteManifest, TREE_LAYER_MEDIA_TYPE, annotations,
};
