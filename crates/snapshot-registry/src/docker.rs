//! [`DockerRegistrySnapshots`]: Docker-provider snapshots as normal images in the
//! registry, pushed and pulled by the engine itself.
//!
//! # Why the engine
//!
//! A Docker snapshot is a committed image (the recipe's tools) plus a stored
//! workspace. The engine already holds the image's layers, compresses them, skips the
//! base layers the registry has, verifies every digest on pull and speaks the
//! registry's auth; exporting the layers ourselves would mean reading each one out of
//! the engine uncompressed (`docker save`) and re-implementing that. So the image
//! goes through the engine (`docker push`/`docker pull`; engines allow plain HTTP to
//! `127.0.0.0/8` registries by default, like this crate does), and `oci-client` is
//! used only for what the engine cannot do: reading a tag's digest and labels without
//! pulling it, build leases and GC.
//!
//! # Format
//!
//! Repository `<REF>/docker` (a sibling of the local snapshots' repository: both
//! providers use the same keys), tags `<key>-<id>` and `<key>` (the newest). The image
//! is the snapshot's committed image plus one layer holding the stored workspace at
//! `/workspace`, so `docker run` of it sees the repository and the tools; its labels
//! carry the snapshot metadata and the [`annotations`](crate::annotations) keys.
//! Build leases are `<key>-building` in that repository.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use provisioners::docker::DockerSnapshotStore;
use sandbox_core::{SnapshotMeta, SnapshotStore};
use secrecy::ExposeSecret;
use snapshot_refresh::{Lease, Pulled, Pushed, RemoteError, RemoteSnapshots};
use time::OffsetDateTime;

use crate::archive;
use crate::auth::Auth;
use crate::error::Error;
use crate::reference::{RegistryRef, check_tag};
use crate::store::{RegistryConfig, RegistrySnapshots, annotations, check_pushable};

/// The repository below the configured one that Docker snapshot images go to.
pub const DOCKER_REPOSITORY: &str = "docker";

/// The directory the workspace layer puts the workspace in (the mount point).
const WORKSPACE_DIR: &str = "workspace";

/// Docker-provider snapshots shared through an OCI registry as normal images (see
/// the module docs).
pub struct DockerRegistrySnapshots {
    oci: RegistrySnapshots,
    store: Arc<DockerSnapshotStore>,
    credentials: Option<DockerCredentials>,
}

impl std::fmt::Debug for DockerRegistrySnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRegistrySnapshots")
            .field("reference", &self.oci.reference().to_string())
            .finish_non_exhaustive()
    }
}

impl DockerRegistrySnapshots {
    /// Shares the snapshots of `store` through the registry of `config` (images go to
    /// `<config.reference>/docker`); locks and scratch files under `data_dir`.
    ///
    /// # Errors
    /// As [`RegistrySnapshots::new`].
    pub fn new(
        config: RegistryConfig,
        store: Arc<DockerSnapshotStore>,
        data_dir: impl Into<std::path::PathBuf>,
    ) -> Result<Self, Error> {
        let mut config = config;
        config.reference = config.reference.child(DOCKER_REPOSITORY);
        let credentials = match &config.auth {
            Auth::Anonymous => None,
            Auth::Basic { username, password } => Some(DockerCredentials {
                username: Some(username.clone()),
                password: Some(password.expose_secret().to_owned()),
                serveraddress: Some(config.reference.registry().to_owned()),
                ..DockerCredentials::default()
            }),
        };
        Ok(Self {
            oci: RegistrySnapshots::new(config, data_dir)?,
            store,
            credentials,
        })
    }

    /// The repository the images go to (`<REF>/docker`).
    pub fn reference(&self) -> &RegistryRef {
        self.oci.reference()
    }

    /// The registry access the leases, digests and GC use.
    pub fn registry(&self) -> &RegistrySnapshots {
        &self.oci
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.oci.reference())
    }

    /// The creation time the image under `tag` carries in its labels, if any.
    async fn created_of(&self, tag: &str) -> Result<Option<OffsetDateTime>, Error> {
        let Some(labels) = self.oci.image_labels(tag).await? else {
            return Ok(None);
        };
        Ok(labels.get(annotations::CREATED).and_then(|c| {
            OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
        }))
    }

    /// Pushes the ready Docker snapshot `meta` as `<key>-<id>` and, unless the registry
    /// has a newer one there, `<key>`.
    ///
    /// # Errors
    /// As [`Error`]; an engine failure is [`Error::Local`].
    pub async fn push_image(&self, meta: &SnapshotMeta) -> Result<Pushed, Error> {
        check_pushable(meta)?;
        let workspace = self.store.workspaces().workspace_of(&meta.id)?;
        let scratch = self.oci.scratch()?;
        let tar = scratch.path().join("workspace.tar");
        let out = tar.clone();
        tokio::task::spawn_blocking(move || archive::pack_plain(&workspace, WORKSPACE_DIR, &out))
            .await
            .map_err(|e| Error::io("packing the workspace")(std::io::Error::other(e)))?
            .map_err(Error::io("packing the workspace"))?;
        let versioned = format!("{}-{}", meta.name, meta.id);
        let mut references = vec![self.image(&versioned)];
        let newer_there = self
            .created_of(&meta.name)
            .await?
            .is_some_and(|there| there > meta.created_at);
        if !newer_there {
            references.push(self.image(&meta.name));
        }
        let labels: HashMap<String, String> = self.oci.annotations_of(meta).into_iter().collect();
        self.store
            .publish_image(meta, &tar, &labels, &references, self.credentials.clone())
            .await?;
        drop(scratch);
        let pushed = self
            .oci
            .describe(&versioned)
            .await?
            .ok_or_else(|| Error::Registry {
                registry: self.oci.reference().registry().to_owned(),
                message: format!("the engine pushed {versioned} but the registry does not list it"),
            })?;
        let bytes = pushed
            .layers
            .iter()
            .map(|(_, size)| u64::try_from(*size).unwrap_or(0))
            .sum();
        Ok(Pushed {
            reference: self.image(&versioned),
            digest: pushed.digest,
            bytes,
        })
    }

    /// Pulls the newest Docker snapshot of `key` into this data directory (image
    /// through the engine, workspace into the local store, atomically; the image is
    /// committed last).
    ///
    /// # Errors
    /// As [`Error`]; nothing half-made stays (a workspace whose image could not be
    /// made is removed).
    pub async fn pull_image(&self, key: &str) -> Result<Option<Pulled>, Error> {
        check_tag(key)?;
        let t0 = std::time::Instant::now();
        let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e3;
        let _lock = self.oci.lock_named(&format!("docker-{key}.lock")).await?;
        let reference = self.image(key);
        if let Some(meta) = self.store.latest_ready(key).await? {
            // a start on this host pulled it while this one waited for the lock
            return Ok(Some(Pulled {
                snapshot: meta,
                downloaded: false,
                bytes: 0,
                reference,
            }));
        }
        let Some(remote) = self.oci.describe(key).await? else {
            return Ok(None);
        };
        let meta = self
            .store
            .pull_published(&reference, self.credentials.clone())
            .await?;
        let pulled_ms = ms(t0);
        if meta.name != key {
            return Err(Error::NotASnapshot {
                reference,
                reason: format!("it holds a snapshot of key {:?}", meta.name),
            });
        }
        let bytes = remote
            .layers
            .iter()
            .map(|(_, size)| u64::try_from(*size).unwrap_or(0))
            .sum();
        let workspaces = self.store.workspaces().clone();
        let imported = if workspaces.workspace_of(&meta.id).is_ok() {
            false // an earlier pull stopped after the workspace: reuse it
        } else {
            let scratch = self.oci.scratch()?;
            let tar = scratch.path().join("workspace.tar");
            self.store.export_workspace(&reference, &tar).await?;
            let m = meta.clone();
            tokio::task::spawn_blocking(move || {
                let _scratch = scratch;
                workspaces.import(m, |ws| {
                    std::fs::create_dir_all(ws)?;
                    archive::unpack_plain(&tar, ws, WORKSPACE_DIR)
                })
            })
            .await
            .map_err(|e| Error::io("importing the workspace")(std::io::Error::other(e)))??;
            true
        };
        let imported_ms = ms(t0);
        match self.store.adopt_image(&reference, &meta).await {
            Ok(_) => {}
            Err(e) => {
                if imported && let Err(cleanup) = self.store.workspaces().delete(&meta.id).await {
                    tracing::warn!(snapshot = %meta.id, %cleanup, "could not remove the workspace of a failed pull");
                }
                return Err(e.into());
            }
        }
        tracing::debug!(
            pulled_ms,
            imported_ms,
            adopted_ms = ms(t0),
            "pulled a Docker snapshot"
        );
        let snapshot = self.store.get(&meta.id).await?.ok_or_else(|| {
            Error::Local(sandbox_core::Error::SnapshotNotFound {
                id: meta.id.to_string(),
            })
        })?;
        Ok(Some(Pulled {
            snapshot,
            downloaded: true,
            bytes,
            reference,
        }))
    }
}

#[async_trait]
impl RemoteSnapshots for DockerRegistrySnapshots {
    fn location(&self) -> String {
        self.oci.reference().to_string()
    }

    async fn pull(&self, key: &str) -> Result<Option<Pulled>, RemoteError> {
        Ok(self.pull_image(key).await?)
    }

    async fn push(&self, snapshot: &SnapshotMeta) -> Result<Pushed, RemoteError> {
        Ok(self.push_image(snapshot).await?)
    }

    async fn lease(&self, key: &str, ttl: Duration) -> Result<Lease, RemoteError> {
        Ok(self.oci.take_lease(key, ttl).await?)
    }

    async fn release(&self, key: &str) -> Result<(), RemoteError> {
        Ok(self.oci.release_lease(key).await?)
    }
}
