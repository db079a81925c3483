//! [`RegistrySnapshots`]: the local store's snapshots pushed to and pulled from an OCI
//! registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::{Client, Reference};
use provisioners::LocalSnapshotStore;
use sandbox_core::{SnapshotId, SnapshotMeta, SnapshotStatus, SnapshotStore};
use snapshot_refresh::{Lease, Pulled, Pushed, RemoteError, RemoteSnapshots};
use time::OffsetDateTime;

use crate::archive::{self, Part};
use crate::auth::Auth;
use crate::error::Error;
use crate::reference::{RegistryRef, check_tag};

/// The `artifactType` of a local-provider snapshot.
pub const ARTIFACT_TYPE: &str = "application/vnd.headstart.snapshot.v1";
/// The media type of its config blob (the snapshot's metadata as JSON).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.headstart.snapshot.config.v1+json";
/// The media type of the layer holding the workspace's `.git` directory.
pub const GIT_LAYER_MEDIA_TYPE: &str = "application/vnd.headstart.snapshot.git.v1.tar+zstd";
/// The media type of the layer holding the rest of the workspace.
pub const TREE_LAYER_MEDIA_TYPE: &str = "application/vnd.headstart.snapshot.tree.v1.tar+zstd";
/// The config media type of a build lease manifest (`<key>-building`).
pub const LEASE_MEDIA_TYPE: &str = "application/vnd.headstart.lease.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The annotation keys every snapshot manifest carries.
pub mod annotations {
    /// The snapshot key.
    pub const KEY: &str = "dev.headstart.snapshot.key";
    /// The snapshot id on the host that built it.
    pub const ID: &str = "dev.headstart.snapshot.id";
    /// The commit the workspace was at.
    pub const COMMIT: &str = "dev.headstart.snapshot.commit";
    /// The branch the workspace was on.
    pub const BRANCH: &str = "dev.headstart.snapshot.branch";
    /// The recipe digest.
    pub const RECIPE_DIGEST: &str = "dev.headstart.snapshot.recipe-digest";
    /// The workspace size in bytes (unpacked).
    pub const SIZE: &str = "dev.headstart.snapshot.size";
    /// The headstart version that pushed it.
    pub const VERSION: &str = "dev.headstart.version";
    /// When the snapshot was made (RFC 3339).
    pub const CREATED: &str = "org.opencontainers.image.created";
    /// Who holds a build lease.
    pub const LEASE_HOLDER: &str = "dev.headstart.lease.holder";
    /// When a build lease expires (RFC 3339).
    pub const LEASE_EXPIRES: &str = "dev.headstart.lease.expires";
}

/// A manifest as [`RegistrySnapshots::describe`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteManifest {
    /// Its digest.
    pub digest: String,
    /// Its `artifactType`.
    pub artifact_type: Option<String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// Its layers' media types and sizes.
    pub layers: Vec<(String, i64)>,
}

/// How to reach the registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Where snapshots go.
    pub reference: RegistryRef,
    /// The credentials.
    pub auth: Auth,
    /// Plain HTTP to a host that is not loopback (loopback hosts always may).
    pub insecure: bool,
    /// Connect timeout of each request.
    pub connect_timeout: Duration,
    /// Read timeout of each request (a stalled transfer fails after it).
    pub read_timeout: Duration,
    /// Who takes build leases (empty: the host name and a digest of the data
    /// directory, the same for every process of one data directory).
    pub holder: String,
    /// The version written into manifests.
    pub version: String,
}

impl RegistryConfig {
    /// Anonymous, HTTPS (HTTP for loopback), 5 s connect and 30 s read timeouts.
    pub fn new(reference: RegistryRef) -> Self {
        Self {
            reference,
            auth: Auth::Anonymous,
            insecure: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            holder: String::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// The local store's snapshots shared through an OCI registry (see the crate docs for
/// the format). Pulls write into the local store of `data_dir`, under a per-key lock
/// in `<data_dir>/registry/`.
pub struct RegistrySnapshots {
    config: RegistryConfig,
    client: Client,
    store: LocalSnapshotStore,
    work: PathBuf,
}

impl std::fmt::Debug for RegistrySnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySnapshots")
            .field("reference", &self.config.reference.to_string())
            .field("auth", &self.config.auth)
            .finish_non_exhaustive()
    }
}

impl RegistrySnapshots {
    /// Shares the snapshots of the local store under `data_dir`.
    ///
    /// HTTPS is used unless the host is loopback or `config.insecure` is set.
    ///
    /// # Errors
    /// None today; kept for configurations that can be refused.
    pub fn new(config: RegistryConfig, data_dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let data_dir = data_dir.into();
        let mut config = config;
        if config.holder.is_empty() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "host".into());
            let dir = sha256(data_dir.to_string_lossy().as_bytes());
            config.holder = format!("{host}/{}", &dir[7..15]);
        }
        let plain = config.reference.is_loopback() || config.insecure;
        let protocol = if plain {
            ClientProtocol::HttpsExcept(vec![config.reference.registry().to_owned()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(config.connect_timeout),
            read_timeout: Some(config.read_timeout),
            ..ClientConfig::default()
        });
        Ok(Self {
            client,
            store: LocalSnapshotStore::new(&data_dir),
            work: data_dir.join("registry"),
            config,
        })
    }

    /// The reference snapshots go to.
    pub fn reference(&self) -> &RegistryRef {
        &self.config.reference
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn insecure(&self) -> bool {
        self.config.insecure
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.config.auth
    }

    fn err(&self, e: oci_client::errors::OciDistributionError) -> Error {
        Error::oci(self.config.reference.registry(), e)
    }

    pub(crate) fn scratch(&self) -> Result<tempfile_dir::Scratch, Error> {
        tempfile_dir::Scratch::new(&self.work.join("tmp"))
    }

    /// The manifest under `tag`, or `None` when the registry has no such tag.
    pub(crate) async fn manifest(
        &self,
        tag: &str,
    ) -> Result<Option<(OciImageManifest, String)>, Error> {
        let reference = self.config.reference.tag(tag);
        match self
            .client
            .pull_image_manifest(&reference, &self.config.auth.to_oci())
            .await
        {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// What the registry holds under `tag` (`<key>`, `<key>-<id>`, `<key>-building`):
    /// the manifest digest, its `artifactType` and annotations; `None` when no such tag.
    ///
    /// # Errors
    /// As [`Error`].
    pub async fn describe(&self, tag: &str) -> Result<Option<RemoteManifest>, Error> {
        check_tag(tag)?;
        Ok(self.manifest(tag).await?.map(|(m, digest)| RemoteManifest {
            digest,
            artifact_type: m.artifact_type,
            annotations: m.annotations.unwrap_or_default(),
            layers: m
                .layers
                .into_iter()
                .map(|l| (l.media_type, l.size))
                .collect(),
        }))
    }

    /// The labels in the image config under `tag` (a Docker snapshot image), or `None`
    /// when no such tag.
    ///
    /// # Errors
    /// As [`Error`].
    pub async fn image_labels(&self, tag: &str) -> Result<Option<BTreeMap<String, String>>, Error> {
        check_tag(tag)?;
        let Some((manifest, _)) = self.manifest(tag).await? else {
            return Ok(None);
        };
        let mut config = Vec::new();
        self.client
            .pull_blob(
                &self.config.reference.tag(tag),
                &manifest.config,
                &mut config,
            )
            .await
            .map_err(|e| self.err(e))?;
        #[derive(serde::Deserialize)]
        struct Image {
            #[serde(default)]
            config: Option<Config>,
        }
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(rename = "Labels", default)]
            labels: Option<BTreeMap<String, String>>,
        }
        let image: Image = serde_json::from_slice(&config).map_err(|e| Error::NotASnapshot {
            reference: format!("{}:{tag}", self.config.reference),
            reason: format!("unreadable image config: {e}"),
        })?;
        Ok(Some(
            image.config.and_then(|c| c.labels).unwrap_or_default(),
        ))
    }

    /// Pushes the ready local snapshot `meta` as `<key>-<id>` and `<key>`.
    ///
    /// # Errors
    /// As [`Error`]; nothing is tagged unless every blob went up.
    pub async fn push_snapshot(&self, meta: &SnapshotMeta) -> Result<Pushed, Error> {
        check_pushable(meta)?;
        let workspace = self.store.workspace_of(&meta.id)?;
        let scratch = self.scratch()?;
        let dir = scratch.path().to_owned();
        // each layer is packed into a file, hashed as it is read back, and streamed up:
        // a push holds one 4 MiB chunk a layer in memory, not the layers
        let layers: Vec<(OciDescriptor, PathBuf)> = tokio::task::spawn_blocking(move || {
            [
                (GIT_LAYER_MEDIA_TYPE, Part::Git, "git.tar.zst"),
                (TREE_LAYER_MEDIA_TYPE, Part::Tree, "tree.tar.zst"),
            ]
            .into_iter()
            .map(|(media_type, part, name)| {
                let path = dir.join(name);
                archive::pack(&workspace, part, &path)
                    .map_err(Error::io(format!("packing {}", workspace.display())))?;
                let (digest, size) =
                    sha256_file(&path).map_err(Error::io(format!("reading {}", path.display())))?;
                let desc = OciDescriptor {
                    media_type: media_type.into(),
                    digest,
                    size: i64::try_from(size).unwrap_or(i64::MAX),
                    ..OciDescriptor::default()
                };
                Ok::<_, Error>((desc, path))
            })
            .collect::<Result<Vec<_>, Error>>()
        })
        .await
        .map_err(|e| Error::io("packing the snapshot")(std::io::Error::other(e)))??;

        let mut stored = meta.clone();
        stored.provider_data = serde_json::Value::Null;
        let config_bytes = serde_json::to_vec(&stored)
            .map_err(|e| Error::io("encoding the snapshot metadata")(std::io::Error::other(e)))?;
        let config = OciDescriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: sha256(&config_bytes),
            size: i64::try_from(config_bytes.len()).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        let versioned = self
            .config
            .reference
            .tag(&format!("{}-{}", meta.name, meta.id));
        let mut bytes = config_bytes.len() as u64;
        for (desc, path) in &layers {
            bytes += u64::try_from(desc.size).unwrap_or(0);
            self.put_blob_file(&versioned, desc, path).await?;
        }
        self.put_blob(&versioned, &config.digest, config_bytes)
            .await?;

        let notes = self.annotations_of(meta);
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.into()),
            config,
            layers: layers.into_iter().map(|(d, _)| d).collect(),
            subject: None,
            artifact_type: Some(ARTIFACT_TYPE.into()),
            annotations: Some(notes),
        };
        let body = serde_json::to_vec(&manifest)
            .map_err(|e| Error::io("encoding the manifest")(std::io::Error::other(e)))?;
        let digest = sha256(&body);
        self.put_manifest(&versioned, &body).await?;
        // `<key>` names the newest: a slower build of an older snapshot leaves it
        let newer_there = match self.manifest(&meta.name).await? {
            Some((m, _)) => m
                .annotations
                .as_ref()
                .and_then(|n| n.get(annotations::CREATED))
                .and_then(|c| {
                    OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
                })
                .is_some_and(|there| there > meta.created_at),
            None => false,
        };
        if !newer_there {
            self.put_manifest(&self.config.reference.tag(&meta.name), &body)
                .await?;
        }
        Ok(Pushed {
            reference: format!("{}:{}-{}", self.config.reference, meta.name, meta.id),
            digest,
            bytes,
        })
    }

    /// The annotations a pushed snapshot carries (labels, on a Docker snapshot image).
    pub(crate) fn annotations_of(&self, meta: &SnapshotMeta) -> BTreeMap<String, String> {
        let mut notes = BTreeMap::new();
        notes.insert(annotations::KEY.into(), meta.name.clone());
        notes.insert(annotations::ID.into(), meta.id.to_string());
        if let Some(c) = &meta.commit {
            notes.insert(annotations::COMMIT.into(), c.clone());
        }
        if let Some(b) = &meta.branch {
            notes.insert(annotations::BRANCH.into(), b.clone());
        }
        notes.insert(
            annotations::RECIPE_DIGEST.into(),
            meta.recipe_digest.clone(),
        );
        notes.insert(annotations::SIZE.into(), meta.size_bytes.to_string());
        notes.insert(annotations::VERSION.into(), self.config.version.clone());
        notes.insert(annotations::CREATED.into(), rfc3339(meta.created_at));
        notes
    }

    async fn put_blob(&self, image: &Reference, digest: &str, data: Vec<u8>) -> Result<(), Error> {
        // blobs the registry has (a git layer shared with an older snapshot) stay
        let exists = self
            .client
            .blob_exists(image, digest)
            .await
            .unwrap_or(false);
        if exists {
            return Ok(());
        }
        self.client
            .push_blob(image, data, digest)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Streams the blob in file `path` (digest and size in `desc`) unless the registry
    /// has it, in chunks of 4 MiB.
    async fn put_blob_file(
        &self,
        image: &Reference,
        desc: &OciDescriptor,
        path: &Path,
    ) -> Result<(), Error> {
        let exists = self
            .client
            .blob_exists(image, &desc.digest)
            .await
            .unwrap_or(false);
        if exists {
            return Ok(());
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(Error::io(format!("opening {}", path.display())))?;
        let chunks = futures_util::stream::unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; PUSH_CHUNK];
            let mut filled = 0;
            // fill the chunk (a read may return less): each item is one PATCH
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        return Some((
                            Err(oci_client::errors::OciDistributionError::IoError(e)),
                            file,
                        ));
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            Some((Ok(bytes::Bytes::from(buf)), file))
        });
        self.client
            .push_blob_stream(image, chunks, &desc.digest, u64::try_from(desc.size).ok())
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub(crate) async fn put_manifest(&self, image: &Reference, body: &[u8]) -> Result<(), Error> {
        self.client
            .store_auth_if_needed(image.resolve_registry(), &self.config.auth.to_oci())
            .await;
        self.client
            .push_manifest_raw(
                image,
                body.to_vec(),
                MANIFEST_MEDIA_TYPE.parse().map_err(|_| {
                    Error::io("manifest type")(std::io::ErrorKind::InvalidInput.into())
                })?,
            )
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Pulls the newest snapshot of `key` into the local store (see
    /// [`RemoteSnapshots::pull`]).
    ///
    /// # Errors
    /// As [`Error`]; a blob whose content does not match its digest is
    /// [`Error::DigestMismatch`], and nothing of the snapshot is kept.
    pub async fn pull_snapshot(&self, key: &str) -> Result<Option<Pulled>, Error> {
        check_tag(key)?;
        let t0 = std::time::Instant::now();
        let lock = self.lock_key(key).await?;
        if let Some(meta) = self.store.latest_ready(key).await? {
            // a start on this host pulled it while this one waited for the lock
            return Ok(Some(Pulled {
                snapshot: meta,
                downloaded: false,
                bytes: 0,
                reference: format!("{}:{key}", self.config.reference),
            }));
        }
        let Some((manifest, _digest)) = self.manifest(key).await? else {
            return Ok(None);
        };
        let reference = format!("{}:{key}", self.config.reference);
        let not_snapshot = |reason: String| Error::NotASnapshot {
            reference: reference.clone(),
            reason,
        };
        if manifest.artifact_type.as_deref() != Some(ARTIFACT_TYPE)
            || manifest.config.media_type != CONFIG_MEDIA_TYPE
        {
            return Err(not_snapshot(format!(
                "artifact type {:?}, config {}",
                manifest.artifact_type, manifest.config.media_type
            )));
        }
        let mut parts = Vec::new();
        for layer in &manifest.layers {
            parts.push(match layer.media_type.as_str() {
                GIT_LAYER_MEDIA_TYPE => Part::Git,
                TREE_LAYER_MEDIA_TYPE => Part::Tree,
                other => return Err(not_snapshot(format!("unknown layer type {other}"))),
            });
        }
        let image = self.config.reference.tag(key);
        let scratch = self.scratch()?;
        let files: Vec<PathBuf> = (0..parts.len())
            .map(|i| scratch.path().join(format!("{i}.tar.zst")))
            .collect();
        // the config and the layers download at once (each verified against its digest
        // by `pull_blob` as it streams), each layer into a file through a large buffer
        let get_config = async {
            let mut config = Vec::new();
            self.client
                .pull_blob(&image, &manifest.config, &mut config)
                .await
                .map_err(|e| self.err(e))?;
            Ok::<_, Error>(config)
        };
        let get_layers = futures_util::future::try_join_all(
            manifest.layers.iter().zip(&files).map(|(layer, path)| {
                let image = &image;
                async move {
                    let file = tokio::fs::File::create(path)
                        .await
                        .map_err(Error::io(format!("creating {}", path.display())))?;
                    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
                    self.client
                        .pull_blob(image, layer, &mut out)
                        .await
                        .map_err(|e| self.err(e))?;
                    Ok::<_, Error>(out.get_ref().metadata().await.map_or(0, |m| m.len()))
                }
            }),
        );
        let (config, sizes) = tokio::try_join!(get_config, get_layers)?;
        let downloaded_ms = t0.elapsed().as_secs_f64() * 1e3;
        let meta: SnapshotMeta = serde_json::from_slice(&config)
            .map_err(|e| not_snapshot(format!("unreadable metadata: {e}")))?;
        if meta.name != key || SnapshotId::new(meta.id.as_str()).is_err() {
            return Err(not_snapshot(format!(
                "it holds snapshot {:?} of key {:?}",
                meta.id.as_str(),
                meta.name
            )));
        }
        let bytes = config.len() as u64 + sizes.iter().sum::<u64>();
        let store = self.store.clone();
        let meta = SnapshotMeta {
            provider_data: serde_json::json!({ "pulled_from": reference }),
            ..meta
        };
        // the lock and the scratch dir live until the import ends, even when the
        // caller stops waiting (a timeout): a later start finds it complete or absent
        let imported = tokio::task::spawn_blocking(move || {
            let _lock = lock;
            let _scratch = scratch;
            let mut unpacked_ms = 0.0;
            let imported = store.import(meta, |ws| {
                std::fs::create_dir_all(ws)?;
                // the layers hold disjoint parts (`.git/` and the rest, which `unpack`
                // checks), so they unpack side by side
                let total = std::thread::scope(|s| {
                    let jobs: Vec<_> = files
                        .iter()
                        .zip(&parts)
                        .map(|(f, &part)| s.spawn(move || archive::unpack(f, ws, part)))
                        .collect();
                    let mut total = 0;
                    let mut failed = None;
                    for job in jobs {
                        match job.join() {
                            Ok(Ok(n)) => total += n,
                            Ok(Err(e)) => failed = failed.or(Some(e)),
                            Err(_) => {
                                failed = failed.or(Some(std::io::Error::other(
                                    "a thread unpacking a layer panicked",
                                )));
                            }
                        }
                    }
                    failed.map_or(Ok(total), Err)
                })?;
                unpacked_ms = t0.elapsed().as_secs_f64() * 1e3;
                Ok(total)
            });
            tracing::debug!(
                downloaded_ms,
                unpacked_ms,
                imported_ms = t0.elapsed().as_secs_f64() * 1e3,
                "pulled a snapshot"
            );
            imported
        })
        .await
        .map_err(|e| Error::io("importing the snapshot")(std::io::Error::other(e)))??;
        Ok(Some(Pulled {
            snapshot: imported,
            downloaded: true,
            bytes,
            reference,
        }))
    }

    pub(crate) async fn lock_key(&self, key: &str) -> Result<KeyLock, Error> {
        self.lock_named(&format!("{key}.lock")).await
    }

    /// An exclusive lock on `<data_dir>/registry/locks/<name>`, held until dropped.
    pub(crate) async fn lock_named(&self, name: &str) -> Result<KeyLock, Error> {
        let dir = self.work.join("locks");
        let path = dir.join(name);
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
            KeyLock::acquire(&path)
        })
        .await
        .map_err(|e| Error::io("locking the key")(std::io::Error::other(e)))?
    }

    /// Takes the build lease of `key` (see [`RemoteSnapshots::lease`]).
    ///
    /// # Errors
    /// As [`Error`].
    pub async fn take_lease(&self, key: &str, ttl: Duration) -> Result<Lease, Error> {
        check_tag(key)?;
        let tag = format!("{key}-building");
        if let Some(Some(other)) = self.lease_of(&tag).await? {
            return Ok(other);
        }
        let expires = OffsetDateTime::now_utc() + ttl;
        self.write_lease(&tag, expires).await?;
        // two hosts may have written at once: the one whose lease stands builds
        match self.lease_of(&tag).await? {
            Some(Some(other)) => Ok(other),
            _ => Ok(Lease::Taken),
        }
    }

    /// `None`: no lease; `Some(None)`: ours or expired; `Some(Some(_))`: another's.
    async fn lease_of(&self, tag: &str) -> Result<Option<Option<Lease>>, Error> {
        let Some((m, _)) = self.manifest(tag).await? else {
            return Ok(None);
        };
        let notes = m.annotations.unwrap_or_default();
        let holder = notes
            .get(annotations::LEASE_HOLDER)
            .cloned()
            .unwrap_or_default();
        let expires = notes.get(annotations::LEASE_EXPIRES).and_then(|e| {
            OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339).ok()
        });
        match expires {
            Some(expires_at)
                if holder != self.config.holder && expires_at > OffsetDateTime::now_utc() =>
            {
                Ok(Some(Some(Lease::HeldElsewhere { holder, expires_at })))
            }
            _ => Ok(Some(None)),
        }
    }

    async fn write_lease(&self, tag: &str, expires: OffsetDateTime) -> Result<(), Error> {
        let image = self.config.reference.tag(tag);
        let empty = b"{}".to_vec();
        let digest = sha256(&empty);
        self.put_blob(&image, &digest, empty).await?;
        let desc = OciDescriptor {
            media_type: LEASE_MEDIA_TYPE.into(),
            digest: digest.clone(),
            size: 2,
            ..OciDescriptor::default()
        };
        let mut notes = BTreeMap::new();
        notes.insert(annotations::LEASE_HOLDER.into(), self.config.holder.clone());
        notes.insert(annotations::LEASE_EXPIRES.into(), rfc3339(expires));
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.into()),
            config: desc.clone(),
            layers: vec![OciDescriptor {
                media_type: "application/vnd.oci.empty.v1+json".into(),
                ..desc
            }],
            subject: None,
            artifact_type: Some(LEASE_MEDIA_TYPE.into()),
            annotations: Some(notes),
        };
        let body = serde_json::to_vec(&manifest)
            .map_err(|e| Error::io("encoding the lease")(std::io::Error::other(e)))?;
        self.put_manifest(&image, &body).await
    }

    /// Gives back a lease this host holds (writes it as expired; works on registries
    /// that refuse deletes).
    ///
    /// # Errors
    /// As [`Error`].
    pub async fn release_lease(&self, key: &str) -> Result<(), Error> {
        check_tag(key)?;
        let tag = format!("{key}-building");
        match self.manifest(&tag).await? {
            Some((m, _))
                if m.annotations
                    .as_ref()
                    .and_then(|n| n.get(annotations::LEASE_HOLDER))
                    == Some(&self.config.holder) =>
            {
                self.write_lease(&tag, OffsetDateTime::now_utc()).await
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl RemoteSnapshots for RegistrySnapshots {
    fn location(&self) -> String {
        self.config.reference.to_string()
    }

    async fn pull(&self, key: &str) -> Result<Option<Pulled>, RemoteError> {
        Ok(self.pull_snapshot(key).await?)
    }

    async fn push(&self, snapshot: &SnapshotMeta) -> Result<Pushed, RemoteError> {
        Ok(self.push_snapshot(snapshot).await?)
    }

    async fn lease(&self, key: &str, ttl: Duration) -> Result<Lease, RemoteError> {
        Ok(self.take_lease(key, ttl).await?)
    }

    async fn release(&self, key: &str) -> Result<(), RemoteError> {
        Ok(self.release_lease(key).await?)
    }
}

pub(crate) fn is_not_found(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::{OciDistributionError as O, OciErrorCode};
    match e {
        O::ImageManifestNotFoundError(_) => true,
        O::ServerError { code: 404, .. } => true,
        O::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            matches!(
                x.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

/// The bytes a streamed push holds at once per layer (oci-client's chunk size).
const PUSH_CHUNK: usize = 4 << 20;

/// The `sha256:` digest and size of file `path`, read in 1 MiB pieces.
fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

/// A snapshot can be pushed: its name is a valid tag and it is ready.
pub(crate) fn check_pushable(meta: &SnapshotMeta) -> Result<(), Error> {
    check_tag(&meta.name)?;
    if meta.status != SnapshotStatus::Ready {
        return Err(Error::Local(sandbox_core::Error::InvalidOptions(format!(
            "snapshot {} is not ready",
            meta.id
        ))));
    }
    Ok(())
}

pub(crate) fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An exclusive `flock` on a per-key file, released on drop.
pub(crate) struct KeyLock {
    _file: std::fs::File,
}

impl KeyLock {
    fn acquire(path: &Path) -> Result<Self, Error> {
        use rustix::fs::{FlockOperation, flock};
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(Error::io(format!("opening {}", path.display())))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| Error::io(format!("locking {}", path.display()))(e.into()))?;
        Ok(Self { _file: file })
    }
}

/// A scratch directory removed on drop.
pub(crate) mod tempfile_dir {
    use std::path::{Path, PathBuf};

    use crate::error::Error;

    pub(crate) struct Scratch(PathBuf);

    impl Scratch {
        pub(crate) fn new(parent: &Path) -> Result<Self, Error> {
            std::fs::create_dir_all(parent)
                .map_err(Error::io(format!("creating {}", parent.display())))?;
            remove_stale(parent);
            let dir = parent.join(uuid::Uuid::new_v4().simple().to_string());
            std::fs::create_dir(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
            Ok(Self(dir))
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    /// Scratch dirs a killed process left (older than an hour: no transfer of ours
    /// lasts that long without a read timeout firing).
    fn remove_stale(parent: &Path) {
        let hour = std::time::Duration::from_secs(3600);
        for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > hour);
            if old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
