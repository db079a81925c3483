//! Docker snapshots as normal images in a registry, through the engine's own push and
//! pull (so any Docker host can `docker run` them, and the engine's layer dedupe,
//! compression and credentials handling apply).
//!
//! A published snapshot image is the snapshot's committed image plus one layer: its
//! stored workspace at [`WORKSPACE_MOUNT`](super::WORKSPACE_MOUNT) (a sandbox mounts
//! the host workspace over it, a plain `docker run` sees it). Its labels are the
//! snapshot image's, with the data directory and scope labels blanked and the owner
//! set to [`PUBLISHED_OWNER`], so no data directory lists it as its own snapshot.
//!
//! Adopting one on another host ([`DockerSnapshotStore::adopt_image`]) is the reverse:
//! the workspace is copied out of the pulled image into the local store (by the
//! caller, which owns the archive format checks), then the image is committed again
//! with this data directory's labels as `headstart-snapshot/<key>:<id>`. The image is
//! committed last, so the snapshot is listed only when both halves exist.
//!
//! Which registry, which tags and when are the caller's (`snapshot-registry`).

use std::collections::HashMap;
use std::path::Path;

use bollard::auth::DockerCredentials;
use bollard::models::{ContainerConfig, ContainerCreateBody};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    PushImageOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    TagImageOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use sandbox_core::{Error, Result, SnapshotMeta, SnapshotStatus};

use super::engine::{engine_error, is_not_found};
use super::snapshot::{DockerSnapshotStore, LABEL_SNAPSHOT_META, snapshot_image_repo};
use super::{LABEL_DATA_DIR, LABEL_OWNER, PROVIDER, WORKSPACE_MOUNT};

/// The owner label of a published snapshot image (not [`OWNER`](super::OWNER): no data
/// directory lists it as its own).
pub const PUBLISHED_OWNER: &str = "headstart-published";

/// What [`DockerSnapshotStore::publish_image`] pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishedImage {
    /// The published image's id on this engine.
    pub image_id: String,
    /// Its size as the engine reports it (all layers, unpacked).
    pub size_bytes: u64,
}

/// A created (never started) container, removed on [`Self::remove`], or in the
/// background when dropped before that (a caller that stopped waiting: a start's pull
/// bound).
struct Scratch {
    docker: bollard::Docker,
    id: Option<String>,
}

impl Scratch {
    async fn create(docker: &bollard::Docker, image: &str) -> Result<Self> {
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            // never started; an entrypoint is still required by some engines' checks
            entrypoint: Some(vec!["true".into()]),
            labels: Some(HashMap::from([(
                LABEL_OWNER.to_owned(),
                PUBLISHED_OWNER.to_owned(),
            )])),
            ..Default::default()
        };
        let created = docker
            .create_container(None, body)
            .await
            .map_err(|e| engine_error(format!("creating a container from {image}"), e))?;
        Ok(Self {
            docker: docker.clone(),
            id: Some(created.id),
        })
    }

    fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    async fn remove(mut self) {
        if let Some(id) = self.id.take() {
            remove_container(&self.docker, &id).await;
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let (Some(id), Ok(rt)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let docker = self.docker.clone();
            rt.spawn(async move { remove_container(&docker, &id).await });
        }
    }
}

async fn remove_container(docker: &bollard::Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    if let Err(e) = docker.remove_container(id, Some(options)).await
        && !is_not_found(&e)
    {
        tracing::warn!(container = %id, %e, "could not remove a scratch container");
    }
}

/// A file as an upload body's chunks, 1 MiB at a time (never whole in memory): pass
/// them to `bollard::body_try_stream`.
pub(crate) async fn file_chunks(
    path: &Path,
) -> Result<impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf.into()), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    Ok(chunks)
}

/// Splits `repo:tag` (the tag after the last `:` that follows the last `/`).
fn split_tag(reference: &str) -> (&str, Option<&str>) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (reference, None),
    }
}

impl DockerSnapshotStore {
    /// Publishes the ready snapshot `meta`: commits its image plus `workspace_tar` (a
    /// plain tar whose entries sit under `workspace/`) with `extra_labels` added, tags
    /// it as each of `references` (`REGISTRY/REPO:TAG`) and pushes them through the
    /// engine with `credentials`, in order. The local tags are removed afterwards.
    ///
    /// # Errors
    /// [`Error::SnapshotNotFound`], or [`Error::Provider`] when the engine cannot
    /// commit or push (the message carries the registry's answer).
    pub async fn publish_image(
        &self,
        meta: &SnapshotMeta,
        workspace_tar: &Path,
        extra_labels: &HashMap<String, String>,
        references: &[String],
        credentials: Option<DockerCredentials>,
    ) -> Result<PublishedImage> {
        let (meta, image) = self.image_of(&meta.id).await?;
        let docker = self.engine();
        let scratch = Scratch::create(docker, &image).await?;
        let result = async {
            docker
                .upload_to_container(
                    scratch.id(),
                    Some(UploadToContainerOptionsBuilder::default().path("/").build()),
                    bollard::body_try_stream(file_chunks(workspace_tar).await?),
                )
                .await
                .map_err(|e| engine_error("copying the workspace into the image", e))?;
            let mut labels = self.image_labels(&meta)?;
            labels.insert(LABEL_OWNER.into(), PUBLISHED_OWNER.into());
            labels.insert(LABEL_DATA_DIR.into(), String::new());
            for key in self.scope_keys() {
                labels.insert(key.clone(), String::new());
            }
            labels.extend(extra_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            let Some((first, rest)) = references.split_first() else {
                return Err(Error::InvalidOptions("no reference to publish to".into()));
            };
            let (repo, tag) = split_tag(first);
            let options = CommitContainerOptionsBuilder::default()
                .container(scratch.id())
                .repo(repo)
                .tag(tag.unwrap_or("latest"))
                .comment(&format!("headstart snapshot {} of {}", meta.id, meta.name))
                .build();
            let committed = docker
                .commit_container(
                    options,
                    ContainerConfig {
                        labels: Some(labels),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| engine_error("committing the image to publish", e))?;
            for r in rest {
                let (repo, tag) = split_tag(r);
                let mut options = TagImageOptionsBuilder::default().repo(repo);
                if let Some(tag) = tag {
                    options = options.tag(tag);
                }
                docker
                    .tag_image(&committed.id, Some(options.build()))
                    .await
                    .map_err(|e| engine_error(format!("tagging {r}"), e))?;
            }
            let pushed = self.push_all(references, credentials).await;
            for r in references {
                let options = RemoveImageOptionsBuilder::default().build();
                if let Err(e) = docker.remove_image(r, Some(options), None).await
                    && !is_not_found(&e)
                {
                    tracing::debug!(reference = %r, %e, "could not untag a published image");
                }
            }
            pushed?;
            let size = docker
                .inspect_image(&committed.id)
                .await
                .ok()
                .and_then(|i| i.size)
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0);
            Ok(PublishedImage {
                image_id: committed.id,
                size_bytes: size,
            })
        }
        .await;
        scratch.remove().await;
        result
    }

    async fn push_all(
        &self,
        references: &[String],
        credentials: Option<DockerCredentials>,
    ) -> Result<()> {
        for r in references {
            let (repo, tag) = split_tag(r);
            let mut options = PushImageOptionsBuilder::default();
            if let Some(tag) = tag {
                options = options.tag(tag);
            }
            let mut stream =
                self.engine()
                    .push_image(repo, Some(options.build()), credentials.clone());
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| engine_error(format!("pushing {r}"), e))?;
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(Error::provider(PROVIDER, format!("pushing {r}: {e}")));
                }
            }
        }
        Ok(())
    }

    /// Pulls the published snapshot image `reference` through the engine and returns
    /// the snapshot it holds (its metadata label; status ready).
    ///
    /// # Errors
    /// [`Error::Provider`] when the pull fails or the image is not a published
    /// snapshot.
    pub async fn pull_published(
        &self,
        reference: &str,
        credentials: Option<DockerCredentials>,
    ) -> Result<SnapshotMeta> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(reference)
            .build();
        let mut stream = self.engine().create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| engine_error(format!("pulling {reference}"), e))?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::provider(
                    PROVIDER,
                    format!("pulling {reference}: {e}"),
                ));
            }
        }
        let inspect = self
            .engine()
            .inspect_image(reference)
            .await
            .map_err(|e| engine_error(format!("inspecting {reference}"), e))?;
        let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
        let not_one = |why: &str| {
            Error::provider(
                PROVIDER,
                format!("{reference} is not a published headstart snapshot: {why}"),
            )
        };
        if labels.get(LABEL_OWNER).map(String::as_str) != Some(PUBLISHED_OWNER) {
            return Err(not_one("its owner label is not ours"));
        }
        let json = labels
            .get(LABEL_SNAPSHOT_META)
            .ok_or_else(|| not_one("no snapshot metadata label"))?;
        let meta: SnapshotMeta = serde_json::from_str(json)
            .map_err(|e| not_one(&format!("unreadable snapshot metadata ({e})")))?;
        if meta.status != SnapshotStatus::Ready {
            return Err(not_one("the snapshot is not ready"));
        }
        Ok(meta)
    }

    /// Copies the workspace out of the (pulled) image `reference` into the file `to`,
    /// as the engine's plain tar of [`WORKSPACE_MOUNT`](super::WORKSPACE_MOUNT)
    /// (entries under `workspace/`), streamed.
    ///
    /// # Errors
    /// [`Error::Provider`] from the engine, [`Error::Io`] writing `to`.
    pub async fn export_workspace(&self, reference: &str, to: &Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let docker = self.engine();
        let scratch = Scratch::create(docker, reference).await?;
        let result = async {
            let file = tokio::fs::File::create(to)
                .await
                .map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
            let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
            let options = DownloadFromContainerOptionsBuilder::default()
                .path(WORKSPACE_MOUNT)
                .build();
            let mut stream = docker.download_from_container(scratch.id(), Some(options));
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    engine_error(format!("copying the workspace out of {reference}"), e)
                })?;
                bytes += chunk.len() as u64;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| Error::io(format!("writing {}", to.display()), e))?;
            }
            out.flush()
                .await
                .map_err(|e| Error::io(format!("writing {}", to.display()), e))?;
            Ok(bytes)
        }
        .await;
        scratch.remove().await;
        result
    }

    /// Makes the pulled image `reference` this data directory's snapshot `meta`, whose
    /// workspace is already in [`workspaces`](Self::workspaces): commits it again with
    /// this store's labels as `headstart-snapshot/<key>:<id>`, pins it, and untags
    /// `reference`. Returns the snapshot as this store lists it.
    ///
    /// # Errors
    /// [`Error::Provider`] from the engine.
    pub async fn adopt_image(&self, reference: &str, meta: &SnapshotMeta) -> Result<SnapshotMeta> {
        let docker = self.engine();
        let repo = snapshot_image_repo(&meta.name);
        let mut meta = meta.clone();
        meta.provider_data = serde_json::json!({
            "image": format!("{repo}:{}", meta.id),
            "pulled_from": reference,
        });
        let scratch = Scratch::create(docker, reference).await?;
        let committed = async {
            let options = CommitContainerOptionsBuilder::default()
                .container(scratch.id())
                .repo(&repo)
                .tag(meta.id.as_str())
                .comment(&format!(
                    "headstart snapshot {} pulled from {reference}",
                    meta.id
                ))
                .build();
            docker
                .commit_container(
                    options,
                    ContainerConfig {
                        labels: Some(self.image_labels(&meta)?),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| engine_error(format!("committing {reference} as a snapshot"), e))
        }
        .await;
        scratch.remove().await;
        let committed = committed?;
        if let serde_json::Value::Object(m) = &mut meta.provider_data {
            m.insert("image_id".into(), committed.id.clone().into());
        }
        if let Err(e) = self.write_image_pin(&meta) {
            tracing::warn!(snapshot = %meta.id, %e, "could not write the image pin beside the manifest");
        }
        let options = RemoveImageOptionsBuilder::default().build();
        if let Err(e) = docker.remove_image(reference, Some(options), None).await
            && !is_not_found(&e)
        {
            tracing::debug!(%reference, %e, "could not untag a pulled image");
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn tags_split_after_the_last_slash_only() {
        assert_eq!(
            split_tag("127.0.0.1:5000/hs/docker:key-1"),
            ("127.0.0.1:5000/hs/docker", Some("key-1"))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/hs/docker"),
            ("127.0.0.1:5000/hs/docker", None)
        );
    }
}
