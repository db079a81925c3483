//! The snapshot registry wiring: [`Config::registry`](super::Config::registry) (or a
//! request's own) turned into a `snapshot-registry` remote for the local provider's
//! starts and builds, and registry GC.

use std::sync::Arc;

use snapshot_refresh::RemoteSnapshots;
use snapshot_registry::{
    Auth, DockerRegistrySnapshots, RegistryConfig, RegistryRef, RegistrySnapshots,
};

use super::{Headstart, ProviderKind, Result};

/// What registry GC did (`snapshot gc --registry`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegistryGcOutcome {
    /// The registry and repository collected.
    pub registry: String,
    /// Snapshot tags whose manifests were deleted.
    pub removed: Vec<String>,
    /// Snapshot tags kept (the newest per key).
    pub kept: Vec<String>,
}

/// What to prefetch (`snapshot pull`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SnapshotPullRequest {
    /// The repository whose snapshot to pull.
    pub repo: String,
    /// The recipe file its snapshots are built with (part of the key).
    pub recipe_file: Option<std::path::PathBuf>,
    /// Provider (default: local).
    pub provider: Option<ProviderKind>,
    /// The registry (default: the configured one).
    pub registry: Option<String>,
}

impl SnapshotPullRequest {
    /// Pull the snapshot of `repo`.
    pub fn new(repo: impl Into<String>) -> Self {
        Self {
            repo: repo.into(),
            recipe_file: None,
            provider: None,
            registry: None,
        }
    }
}

/// What a prefetch did (`docs/json/snapshot-pull.schema.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotPullOutcome {
    /// The snapshot key.
    pub key: String,
    /// The provider whose store holds it now.
    pub provider: &'static str,
    /// The registry repository asked.
    pub registry: String,
    /// Where it came from (`<registry>:<key>`).
    pub reference: String,
    /// False when the snapshot was here already (nothing downloaded).
    pub downloaded: bool,
    /// Bytes downloaded (compressed).
    pub bytes: u64,
    /// Wall time in milliseconds.
    pub ms: u64,
    /// The snapshot, ready in the local store.
    pub snapshot: sandbox_core::SnapshotMeta,
}

impl Headstart {
    /// Prefetches the newest snapshot of a repository from the registry into this
    /// host's store (what an init container or a new worker runs before any start), so
    /// the next start is a local warm start. A snapshot already here is not pulled
    /// again.
    ///
    /// # Errors
    /// Bad input or no registry ([`Error::InvalidInput`](super::Error::InvalidInput)),
    /// no snapshot of the repository in the registry (`snapshot_not_found`), a failed
    /// pull ([`Error::Failed`](super::Error::Failed), saying why).
    pub async fn snapshot_pull(&self, req: SnapshotPullRequest) -> Result<SnapshotPullOutcome> {
        let kind = req.provider.unwrap_or(ProviderKind::Local);
        let source = super::source_from(&req.repo, None, None)?;
        let recipe = super::read_recipe(req.recipe_file.as_deref())?;
        let key = snapshot_refresh::SnapshotKey::for_repo(source.url(), &recipe)
            .map_err(|e| super::Error::InvalidInput(e.to_string()))?;
        let Some(remote) = self.remote_at(kind, req.registry.as_deref()).await? else {
            return Err(super::Error::InvalidInput(
                "no registry to pull from: pass --registry REF or set HEADSTART_REGISTRY".into(),
            ));
        };
        let started = std::time::Instant::now();
        let pulled = match tokio::time::timeout(
            self.config.registry_timeout,
            remote.pull(key.as_str()),
        )
        .await
        {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => {
                return Err(sandbox_core::Error::SnapshotNotFound {
                    id: format!("{}:{key}", remote.location()),
                }
                .into());
            }
            Ok(Err(e)) => {
                return Err(super::Error::Failed(format!(
                    "pulling the snapshot of {} from {} failed ({}): {e}",
                    req.repo,
                    remote.location(),
                    e.kind()
                )));
            }
            Err(_) => {
                return Err(super::Error::Failed(format!(
                    "the registry {} did not deliver the snapshot within {} s (HEADSTART_REGISTRY_TIMEOUT)",
                    remote.location(),
                    self.config.registry_timeout.as_secs_f64()
                )));
            }
        };
        Ok(SnapshotPullOutcome {
            key: key.as_str().to_owned(),
            provider: kind.as_str(),
            registry: remote.location(),
            reference: pulled.reference,
            downloaded: pulled.downloaded,
            bytes: pulled.bytes,
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            snapshot: pulled.snapshot,
        })
    }

    /// The registry snapshots are shared through: `registry` when given, else the
    /// configured one; `None` when neither is set.
    ///
    /// # Errors
    /// A bad reference or unusable credentials configuration (user errors).
    pub fn registry(&self, registry: Option<&str>) -> Result<Option<Arc<RegistrySnapshots>>> {
        let Some(config) = self.registry_config(registry)? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(RegistrySnapshots::new(
            config,
            &self.config.data_dir,
        )?)))
    }

    /// How to reach the registry `registry` (else the configured one); `None` when
    /// neither is set.
    fn registry_config(&self, registry: Option<&str>) -> Result<Option<RegistryConfig>> {
        let Some(value) = registry.or(self.config.registry.as_deref()) else {
            return Ok(None);
        };
        let reference = RegistryRef::parse(value)?;
        let mut config = RegistryConfig::new(reference.clone());
        config.insecure = self.config.registry_insecure;
        config.auth = match (&self.config.registry_token, &self.config.docker_config) {
            (Some(token), _) => Auth::token(token.clone()),
            (None, Some(path)) => {
                let auth = Auth::from_docker_config(path, reference.registry())?;
                if let Auth::Basic { password, .. } = &auth {
                    // a password from the Docker config is a secret like the token
                    sandbox_core::register_secret(secrecy::ExposeSecret::expose_secret(password));
                }
                auth
            }
            (None, None) => Auth::Anonymous,
        };
        Ok(Some(config))
    }

    /// The remote starts and builds on `kind` use: the configured registry; Docker
    /// snapshots go there as images (`<REF>/docker`) through the engine of
    /// `provider` (that provider's snapshot store).
    pub(crate) async fn remote_for(
        &self,
        kind: ProviderKind,
    ) -> Result<Option<Arc<dyn RemoteSnapshots>>> {
        self.remote_at(kind, None).await
    }

    /// As [`remote_for`](Self::remote_for), at `registry` when given.
    async fn remote_at(
        &self,
        kind: ProviderKind,
        registry: Option<&str>,
    ) -> Result<Option<Arc<dyn RemoteSnapshots>>> {
        match kind {
            ProviderKind::Local => Ok(self
                .registry(registry)?
                .map(|r| r as Arc<dyn RemoteSnapshots>)),
            ProviderKind::Docker => {
                let Some(config) = self.registry_config(registry)? else {
                    return Ok(None);
                };
                let store = self.docker_provider().await?.store().clone();
                Ok(Some(Arc::new(DockerRegistrySnapshots::new(
                    config,
                    store,
                    &self.config.data_dir,
                )?)))
            }
        }
    }

    /// Keeps the newest `keep` snapshots per key in the registry and deletes the older
    /// manifests.
    ///
    /// # Errors
    /// No registry configured or given ([`Error::InvalidInput`](super::Error::InvalidInput)),
    /// a registry that refuses deletes (`registry_delete_unsupported`), or unreachable.
    pub async fn snapshot_gc_registry(
        &self,
        registry: Option<&str>,
        keep: usize,
    ) -> Result<RegistryGcOutcome> {
        let Some(remote) = self.registry(registry)? else {
            return Err(super::Error::InvalidInput(
                "no registry is configured to collect".into(),
            ));
        };
        let mut report = remote.gc(keep).await?;
        // Docker snapshot images live in `<REF>/docker`
        if let Some(mut config) = self.registry_config(registry)? {
            config.reference = config.reference.child(snapshot_registry::DOCKER_REPOSITORY);
            let images = RegistrySnapshots::new(config, &self.config.data_dir)?;
            let more = images.gc(keep).await?;
            let prefix = |t: String| format!("{}/{t}", snapshot_registry::DOCKER_REPOSITORY);
            report.removed.extend(more.removed.into_iter().map(prefix));
            report.kept.extend(more.kept.into_iter().map(prefix));
        }
        Ok(RegistryGcOutcome {
            registry: remote.reference().to_string(),
            removed: report.removed,
            kept: report.kept,
        })
    }
}
