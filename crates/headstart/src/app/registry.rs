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

impl Headstart {
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
        match kind {
            ProviderKind::Local => Ok(self.registry(None)?.map(|r| r as Arc<dyn RemoteSnapshots>)),
            ProviderKind::Docker => {
                let Some(config) = self.registry_config(None)? else {
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
