//! The Docker [`SnapshotStore`]: snapshot images found by label, plus the stored
//! workspaces that go with them.
//!
//! A Docker snapshot is two things: an image committed from the sandbox's container
//! (the tools the recipe installed) and a stored copy of the host workspace (the
//! repository). The image carries the snapshot's metadata in labels and is the source
//! of truth for listing; it is committed last, so a snapshot is visible only when both
//! halves exist. This module does not decide when snapshots are built or which one a
//! start uses (`snapshot-refresh` does).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};
use sandbox_core::{
    Cursor, Error, GcPolicy, GcReport, Page, Result, SnapshotId, SnapshotMeta, SnapshotStore,
};
use time::OffsetDateTime;

use super::engine::{engine_error, is_conflict, is_not_found, list_containers};
use super::{LABEL_OWNER, OWNER, PROVIDER};
use crate::local::LocalSnapshotStore;
use crate::local::store::{decode_cursor, page_after, sort_key};

/// Label on snapshot images: the snapshot id.
pub const LABEL_SNAPSHOT_ID: &str = "dev.headstart.snapshot.id";
/// Label on snapshot images: the snapshot name (key).
pub const LABEL_SNAPSHOT_NAME: &str = "dev.headstart.snapshot.name";
/// Label on snapshot images: the status (`ready`).
pub const LABEL_SNAPSHOT_STATUS: &str = "dev.headstart.snapshot.status";
/// Label on snapshot images: the creation time (RFC 3339).
pub const LABEL_SNAPSHOT_CREATED: &str = "dev.headstart.snapshot.created-at";
/// Label on snapshot images: the whole [`SnapshotMeta`] as JSON.
pub const LABEL_SNAPSHOT_META: &str = "dev.headstart.snapshot.meta";

/// The file beside a stored workspace's manifest that pins the snapshot's image.
pub const IMAGE_PIN: &str = "image.json";

/// The repository snapshot images are tagged into: `headstart-snapshot/<key>:<id>`.
pub const SNAPSHOT_IMAGE_REPO: &str = "headstart-snapshot";

/// The image repository for snapshots called `name`: lowercase, with characters a
/// repository name cannot hold replaced by `-`.
pub fn snapshot_image_repo(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    let mut out: String = out.trim_end_matches('-').chars().take(100).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("snapshot");
    }
    format!("{SNAPSHOT_IMAGE_REPO}/{out}")
}

/// Snapshots of Docker sandboxes: images listed by label, newest first, and their
/// stored workspaces.
#[derive(Debug, Clone)]
pub struct DockerSnapshotStore {
    docker: Docker,
    local: Arc<LocalSnapshotStore>,
    scope: BTreeMap<String, String>,
    page_size: usize,
}

impl DockerSnapshotStore {
    pub(crate) fn new(
        docker: Docker,
        local: Arc<LocalSnapshotStore>,
        scope: BTreeMap<String, String>,
    ) -> Self {
        Self {
            docker,
            local,
            scope,
            page_size: sandbox_core::DEFAULT_PAGE_SIZE,
        }
    }

    /// Sets the page size [`latest_ready`](SnapshotStore::latest_ready) uses.
    #[must_use]
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// The local store holding the snapshots' workspaces.
    pub fn workspaces(&self) -> &Arc<LocalSnapshotStore> {
        &self.local
    }

    /// The engine connection.
    pub(crate) fn engine(&self) -> &Docker {
        &self.docker
    }

    /// The scope labels' keys.
    pub(crate) fn scope_keys(&self) -> impl Iterator<Item = &String> {
        self.scope.keys()
    }

    /// The labels a snapshot image carries (scope labels included).
    pub(crate) fn image_labels(&self, meta: &SnapshotMeta) -> Result<HashMap<String, String>> {
        let mut labels: HashMap<String, String> = self
            .scope
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(LABEL_OWNER.into(), OWNER.into());
        labels.insert(LABEL_SNAPSHOT_ID.into(), meta.id.to_string());
        labels.insert(LABEL_SNAPSHOT_NAME.into(), meta.name.clone());
        labels.insert(
            LABEL_SNAPSHOT_STATUS.into(),
            serde_json::to_value(meta.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        );
        labels.insert(
            LABEL_SNAPSHOT_CREATED.into(),
            meta.created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        );
        let json = serde_json::to_string(meta)
            .map_err(|e| Error::provider(PROVIDER, format!("encoding snapshot metadata: {e}")))?;
        labels.insert(LABEL_SNAPSHOT_META.into(), json);
        Ok(labels)
    }

    /// Every snapshot image matching the scope (and `name`), newest first.
    async fn all(&self, name: Option<&str>, id: Option<&SnapshotId>) -> Result<Vec<SnapshotMeta>> {
        let mut label_filters = vec![
            format!("{LABEL_OWNER}={OWNER}"),
            LABEL_SNAPSHOT_ID.to_owned(),
        ];
        label_filters.extend(self.scope.iter().map(|(k, v)| format!("{k}={v}")));
        if let Some(name) = name {
            label_filters.push(format!("{LABEL_SNAPSHOT_NAME}={name}"));
        }
        if let Some(id) = id {
            label_filters.push(format!("{LABEL_SNAPSHOT_ID}={id}"));
        }
        let filters = HashMap::from([("label".to_owned(), label_filters)]);
        let images = self
            .docker
            .list_images(Some(
                ListImagesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| engine_error("listing snapshot images", e))?;
        let mut metas = Vec::with_capacity(images.len());
        for image in images {
            let Some(json) = image.labels.get(LABEL_SNAPSHOT_META) else {
                continue;
            };
            let mut meta: SnapshotMeta = match serde_json::from_str(json) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(image = %image.id, %e, "snapshot image with unreadable metadata; skipped");
                    continue;
                }
            };
            if let Some(status) = image.labels.get(LABEL_SNAPSHOT_STATUS)
                && let Ok(s) = serde_json::from_value(serde_json::Value::String(status.clone()))
            {
                meta.status = s;
            }
            let mut data = match meta.provider_data.take() {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            data.insert("image_id".into(), image.id.clone().into());
            if let Some(tag) = image.repo_tags.first() {
                data.insert("image".into(), tag.clone().into());
            }
            meta.provider_data = serde_json::Value::Object(data);
            metas.push(meta);
        }
        metas.sort_by_key(|m| std::cmp::Reverse(sort_key(m)));
        metas.dedup_by(|a, b| a.id == b.id);
        Ok(metas)
    }

    /// Writes `image.json` (image id, tag, base image id) beside the stored
    /// workspace's manifest, atomically.
    pub(crate) fn write_image_pin(&self, meta: &SnapshotMeta) -> Result<()> {
        let workspace = self.local.workspace_of(&meta.id)?;
        let Some(dir) = workspace.parent() else {
            return Ok(());
        };
        let pin = serde_json::json!({
            "image_id": meta.provider_data.get("image_id"),
            "image": meta.provider_data.get("image"),
            "base_image_id": meta.provider_data.get("base_image_id"),
        });
        let tmp = dir.join(".image.json.tmp");
        let bytes = serde_json::to_vec_pretty(&pin)
            .map_err(|e| Error::provider(PROVIDER, format!("encoding the image pin: {e}")))?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, dir.join(IMAGE_PIN)))
            .map_err(|e| Error::io(format!("writing {}", dir.join(IMAGE_PIN).display()), e))
    }

    /// The image id of snapshot `id`, pinned (not a tag).
    pub(crate) async fn image_of(&self, id: &SnapshotId) -> Result<(SnapshotMeta, String)> {
        let meta = self
            .get(id)
            .await?
            .ok_or_else(|| Error::SnapshotNotFound { id: id.to_string() })?;
        let image = meta
            .provider_data
            .get("image_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::provider(PROVIDER, format!("snapshot {id} has no image id")))?;
        Ok((meta, image))
    }
}

#[async_trait]
impl SnapshotStore for DockerSnapshotStore {
    /// Removes snapshots past `policy`, images and stored workspaces both. A snapshot
    /// whose image a container still uses is kept.
    async fn gc(&self, policy: &GcPolicy) -> Result<GcReport> {
        let mut report = GcReport::default();
        let all = self.all(None, None).await?;
        for meta in policy.doomed(all, OffsetDateTime::now_utc()) {
            match self.delete(&meta.id).await {
                Ok(()) => report.removed.push(meta.id),
                Err(e) => {
                    tracing::info!(id = %meta.id, %e, "gc kept a snapshot");
                    report.kept_in_use.push(meta.id);
                }
            }
        }
        Ok(report)
    }

    async fn list(
        &self,
        name: Option<&str>,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<SnapshotMeta>> {
        let after = cursor.map(decode_cursor).transpose()?;
        let all = self.all(name, None).await?;
        Ok(page_after(all, after, limit.max(1)))
    }

    async fn get(&self, id: &SnapshotId) -> Result<Option<SnapshotMeta>> {
        Ok(self.all(None, Some(id)).await?.into_iter().next())
    }

    /// Deletes a snapshot: its stored workspace (refused while a sandbox holds a lease
    /// on it) and its image (refused while a container uses it).
    async fn delete(&self, id: &SnapshotId) -> Result<()> {
        let found = self.get(id).await?;
        let image = found
            .as_ref()
            .and_then(|m| m.provider_data.get("image_id"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        let users = self.containers_using(&image).await?;
        if !users.is_empty() {
            return Err(Error::InvalidOptions(format!(
                "snapshot {id} is in use by container(s) {}; remove those sandboxes first",
                users.join(", ")
            )));
        }
        let workspace = match self.local.delete(id).await {
            Ok(()) => true,
            Err(Error::SnapshotNotFound { .. }) => false,
            Err(e) => return Err(e),
        };
        if found.is_none() {
            return if workspace {
                Ok(())
            } else {
                Err(Error::SnapshotNotFound { id: id.to_string() })
            };
        }
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        match self.docker.remove_image(&image, Some(options), None).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if is_conflict(&e) => Err(engine_error(
                format!("snapshot {id} is still in use; remove the sandboxes made from it first"),
                e,
            )),
            Err(e) => Err(engine_error(
                format!("removing the image of snapshot {id}"),
                e,
            )),
        }
    }

    fn page_size(&self) -> usize {
        self.page_size
    }
}

impl DockerSnapshotStore {
    async fn containers_using(&self, image_id: &str) -> Result<Vec<String>> {
        if image_id.is_empty() {
            return Ok(Vec::new());
        }
        let filters = HashMap::from([("ancestor".to_owned(), vec![image_id.to_owned()])]);
        let list = list_containers(&self.docker, &filters).await?;
        Ok(list
            .into_iter()
            .filter(|c| c.image_id.as_deref() == Some(image_id))
            .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_are_valid() {
        assert_eq!(
            snapshot_image_repo("github.com/Acme/App"),
            "headstart-snapshot/github-com-acme-app"
        );
        assert_eq!(snapshot_image_repo("--"), "headstart-snapshot/snapshot");
        assert_eq!(snapshot_image_repo("a__b--c"), "headstart-snapshot/a-b-c");
    }
}
