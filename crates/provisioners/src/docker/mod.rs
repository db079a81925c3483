//! The Docker provider: a container per sandbox, the workspace bind-mounted at
//! `/workspace`, snapshots as committed images plus stored workspaces.
//!
//! - **Engine**: the one named by `DOCKER_HOST` or the default socket
//!   ([`EngineHost::from_env`], [`connect`]); when none answers, the error says how to
//!   start one.
//! - **Sandboxes**: container `headstart-<name>`, labelled with the sandbox name, the
//!   base snapshot and key, the workspace and [`LABEL_OWNER`]` = `[`OWNER`]; a
//!   keep-alive entrypoint; env and resource limits from [`ConnectOptions`]; the host
//!   user's `uid:gid` by default so files the agent writes stay the user's.
//!   `connect` reconnects by name unless `force_create`. Any failure after the
//!   container exists removes it (and a workspace made for it).
//! - **Workspaces**: a headstart workspace under the data directory, or with
//!   [`ConnectOptions::workdir`] the user's own directory, bind-mounted as is and never
//!   deleted. The git engine works on the host side in-process, as for every provider.
//! - **Images**: local first, pulled only when missing and allowed
//!   ([`DockerConfig::allow_pull`]); without an image the offline base image is built
//!   from a static busybox on this machine ([`build_base_image`]).
//! - **Snapshots**: [`Sandbox::snapshot`] stores the workspace, then commits the
//!   container to `headstart-snapshot/<key>:<id>` with the metadata in labels; a warm
//!   start creates the container from that image (pinned by id) and restores the
//!   workspace. [`DockerSnapshotStore`] lists by label, newest first, in pages.
//!
//! Not here: deciding when to snapshot or which snapshot to use (`snapshot-refresh`),
//! cloning or syncing (`sandbox_core::git`), registries and pushing, or Dockerfile builds.

mod engine;
mod exec;
mod image;
mod snapshot;
mod tar;
mod workspace;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use sandbox_core::{
    ConnectOptions, Connected, Error, ExecOutput, ExecRequest, Result, Sandbox, SandboxInfo,
    SandboxName, SandboxProvider, SnapshotId, SnapshotMeta, SnapshotRequest, SnapshotStatus,
    SnapshotStore,
};

pub use engine::{DEFAULT_ENGINE_HOST, EngineHost, connect, connect_from_env};
pub use image::{
    BASE_IMAGE_REPO, BaseImageSpec, ImageRef, LABEL_BASE_DIGEST, build_base_image, ensure_image,
    local_image,
};
pub use snapshot::{
    DockerSnapshotStore, GcPolicy, LABEL_SNAPSHOT_CREATED, LABEL_SNAPSHOT_ID, LABEL_SNAPSHOT_META,
    LABEL_SNAPSHOT_NAME, LABEL_SNAPSHOT_STATUS, SNAPSHOT_IMAGE_REPO, snapshot_image_repo,
};

use engine::{engine_error, is_not_found};
use workspace::Workspaces;

pub(crate) const PROVIDER: &str = "docker";

/// Where the workspace is mounted in every container (and the working directory).
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// Container names are this prefix plus the sandbox name.
pub const CONTAINER_PREFIX: &str = "headstart-";
/// Ownership label on everything this provider creates.
pub const LABEL_OWNER: &str = "dev.headstart.owner";
/// The value of [`LABEL_OWNER`].
pub const OWNER: &str = "headstart";
/// Label: the sandbox name.
pub const LABEL_SANDBOX: &str = "dev.headstart.sandbox";
/// Label: the id of the snapshot the sandbox was restored from (empty if none).
pub const LABEL_BASE_SNAPSHOT: &str = "dev.headstart.base-snapshot";
/// Label: the snapshot key (name) the sandbox was restored from (empty if none).
pub const LABEL_SNAPSHOT_KEY: &str = "dev.headstart.snapshot-key";
/// Label: the host workspace directory.
pub const LABEL_WORKSPACE: &str = "dev.headstart.workspace";
/// Label: `managed` (a headstart workspace) or `workdir` (the user's own directory).
pub const LABEL_WORKSPACE_KIND: &str = "dev.headstart.workspace-kind";
/// Label: when the sandbox expires (unix seconds), if it has a TTL.
pub const LABEL_EXPIRES: &str = "dev.headstart.expires-at";

const KIND_MANAGED: &str = "managed";
const KIND_WORKDIR: &str = "workdir";

/// How the Docker provider makes containers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DockerConfig {
    /// Where headstart workspaces and stored snapshot workspaces live
    /// (`<data_dir>/docker/...`).
    pub data_dir: PathBuf,
    /// The image for sandboxes that name none and have no snapshot (`None`: the offline
    /// base image, built on first use).
    pub default_image: Option<String>,
    /// Pull an image that is missing locally (off by default: many engines have no
    /// registry access).
    pub allow_pull: bool,
    /// The user commands run as (`uid:gid` or a name in the image); `None`: the host
    /// user's `uid:gid`, so files written in the workspace stay the user's.
    pub user: Option<String>,
    /// The container's keep-alive entrypoint (default `sleep infinity`).
    pub keep_alive: Vec<String>,
    /// Labels put on every container and image this provider creates, and required
    /// when listing: a scope (e.g. one per test run).
    pub scope_labels: BTreeMap<String, String>,
    /// What the offline base image is made from.
    pub base_image: BaseImageSpec,
}

impl DockerConfig {
    /// Defaults with workspaces under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            default_image: None,
            allow_pull: false,
            user: None,
            keep_alive: vec!["sleep".into(), "infinity".into()],
            scope_labels: BTreeMap::new(),
            base_image: BaseImageSpec::default(),
        }
    }

    /// Sets the user commands run as (`"1000:1000"`).
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the default image.
    #[must_use]
    pub fn default_image(mut self, image: impl Into<String>) -> Self {
        self.default_image = Some(image.into());
        self
    }

    /// Allows pulling missing images.
    #[must_use]
    pub fn allow_pull(mut self, allow: bool) -> Self {
        self.allow_pull = allow;
        self
    }

    /// Sets the keep-alive entrypoint.
    #[must_use]
    pub fn keep_alive<I: IntoIterator<Item = S>, S: Into<String>>(mut self, argv: I) -> Self {
        self.keep_alive = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a scope label.
    #[must_use]
    pub fn scope_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.scope_labels.insert(key.into(), value.into());
        self
    }
}

/// The host user as `uid:gid`.
pub fn host_user() -> String {
    format!(
        "{}:{}",
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    )
}

/// The container name for a sandbox.
pub fn container_name(name: &SandboxName) -> String {
    format!("{CONTAINER_PREFIX}{name}")
}

/// Sandboxes as Docker containers. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DockerProvider {
    docker: Docker,
    config: Arc<DockerConfig>,
    store: Arc<DockerSnapshotStore>,
}

impl DockerProvider {
    /// A provider on an engine connection (see [`connect`]).
    pub fn new(docker: Docker, config: DockerConfig) -> Self {
        let workspaces = Arc::new(Workspaces::new(config.data_dir.join("docker")));
        let store = Arc::new(DockerSnapshotStore::new(
            docker.clone(),
            workspaces,
            config.scope_labels.clone(),
        ));
        Self {
            docker,
            config: Arc::new(config),
            store,
        }
    }

    /// Connects to the engine the environment names and makes a provider.
    ///
    /// # Errors
    /// As [`connect`].
    pub async fn from_env(config: DockerConfig) -> Result<Self> {
        Ok(Self::new(connect_from_env().await?, config))
    }

    /// The engine connection.
    pub fn engine(&self) -> &Docker {
        &self.docker
    }

    /// The configuration.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The snapshot store, typed (for [`DockerSnapshotStore::gc`]).
    pub fn store(&self) -> &Arc<DockerSnapshotStore> {
        &self.store
    }

    /// The user containers run as.
    fn user(&self) -> String {
        self.config.user.clone().unwrap_or_else(host_user)
    }

    async fn inspect(&self, name: &SandboxName) -> Result<Option<ContainerInspectResponse>> {
        let cname = container_name(name);
        match self.docker.inspect_container(&cname, None).await {
            Ok(c) => {
                let labels = c.config.as_ref().and_then(|c| c.labels.as_ref());
                let ours = labels.and_then(|l| l.get(LABEL_OWNER)).map(String::as_str)
                    == Some(OWNER)
                    && labels
                        .and_then(|l| l.get(LABEL_SANDBOX))
                        .map(String::as_str)
                        == Some(name.as_str());
                if !ours {
                    return Err(Error::provider(
                        PROVIDER,
                        format!(
                            "a container named {cname} exists but headstart did not create it; \
                             remove it (`docker rm -f {cname}`) or pick another sandbox name"
                        ),
                    ));
                }
                Ok(Some(c))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine_error(format!("inspecting container {cname}"), e)),
        }
    }

    fn sandbox_from(&self, name: &SandboxName, c: &ContainerInspectResponse) -> DockerSandbox {
        let labels = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
        DockerSandbox {
            docker: self.docker.clone(),
            store: self.store.clone(),
            id: c.id.clone().unwrap_or_default(),
            name: name.clone(),
            workspace: label(LABEL_WORKSPACE)
                .map(PathBuf::from)
                .unwrap_or_default(),
            managed: label(LABEL_WORKSPACE_KIND).as_deref() != Some(KIND_WORKDIR),
            base: label(LABEL_BASE_SNAPSHOT).and_then(|s| SnapshotId::new(s).ok()),
            image: c.image.clone().unwrap_or_default(),
        }
    }

    /// Reconnects to an existing container, starting it (after re-making the
    /// workspace's mount) when it is stopped.
    async fn reconnect(&self, name: &SandboxName) -> Result<Option<DockerSandbox>> {
        let Some(c) = self.inspect(name).await? else {
            return Ok(None);
        };
        let sandbox = self.sandbox_from(name, &c);
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running {
            if sandbox.managed {
                self.store.workspaces().ensure_mounted(name)?;
            }
            self.docker
                .start_container(&sandbox.id, None)
                .await
                .map_err(|e| engine_error(format!("restarting sandbox {name}"), e))?;
        }
        Ok(Some(sandbox))
    }

    /// Removes the container (if any) and, for a headstart workspace, the workspace.
    async fn destroy(
        &self,
        name: &SandboxName,
        container_exists: bool,
        managed: bool,
    ) -> Result<()> {
        if container_exists {
            let cname = container_name(name);
            let options = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match self.docker.remove_container(&cname, Some(options)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(engine_error(format!("removing container {cname}"), e)),
            }
        }
        if managed {
            self.store.workspaces().remove(name)?;
        }
        Ok(())
    }

    async fn create(&self, name: &SandboxName, options: &ConnectOptions) -> Result<DockerSandbox> {
        // The workspace first: a headstart one (empty or restored) or the user's own.
        let (workspace, managed) = match &options.workdir {
            Some(dir) => {
                let dir = std::fs::canonicalize(dir)
                    .map_err(|e| Error::io(format!("workdir {}", dir.display()), e))?;
                if !dir.is_dir() {
                    return Err(Error::InvalidOptions(format!(
                        "workdir {} is not a directory",
                        dir.display()
                    )));
                }
                (dir, false)
            }
            None => (self.store.workspaces().sandbox_dir(name), true),
        };
        let result = self.create_inner(name, options, &workspace, managed).await;
        if result.is_err() {
            // Nothing half-made stays: the container (if it was created) and a
            // headstart workspace go; a user's workdir is never touched.
            if let Err(e) = self.destroy(name, true, managed).await {
                tracing::warn!(%name, %e, "cleanup after a failed create failed");
            }
        }
        result
    }

    async fn create_inner(
        &self,
        name: &SandboxName,
        options: &ConnectOptions,
        workspace: &Path,
        managed: bool,
    ) -> Result<DockerSandbox> {
        let (image, base_key) = match &options.base_snapshot {
            Some(id) => {
                let (meta, image) = self.store.image_of(id).await?;
                if managed {
                    self.store.workspaces().restore(id, name)?;
                }
                (image, Some(meta.name))
            }
            None => {
                if managed {
                    self.store.workspaces().create_empty(name)?;
                }
                let image = match options
                    .image
                    .as_deref()
                    .or(self.config.default_image.as_deref())
                {
                    Some(reference) => {
                        ensure_image(&self.docker, reference, self.config.allow_pull).await?
                    }
                    None => build_base_image(&self.docker, &self.config.base_image).await?,
                };
                (image.id, None)
            }
        };
        let user = self.user();
        if managed {
            chown_for(workspace, &user)?;
        }

        let mut labels: HashMap<String, String> = options
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.extend(
            self.config
                .scope_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        labels.insert(LABEL_OWNER.into(), OWNER.into());
        labels.insert(LABEL_SANDBOX.into(), name.to_string());
        labels.insert(
            LABEL_BASE_SNAPSHOT.into(),
            options
                .base_snapshot
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        );
        labels.insert(LABEL_SNAPSHOT_KEY.into(), base_key.unwrap_or_default());
        labels.insert(LABEL_WORKSPACE.into(), workspace.display().to_string());
        labels.insert(
            LABEL_WORKSPACE_KIND.into(),
            if managed { KIND_MANAGED } else { KIND_WORKDIR }.into(),
        );
        let expires = options.ttl.map(|ttl| {
            (SystemTime::now() + ttl)
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs()
        });
        labels.insert(
            LABEL_EXPIRES.into(),
            expires.map(|s| s.to_string()).unwrap_or_default(),
        );

        let host_config = HostConfig {
            binds: Some(vec![format!("{}:{WORKSPACE_MOUNT}", workspace.display())]),
            nano_cpus: options.resources.cpus.map(|c| (c * 1e9) as i64),
            memory: options
                .resources
                .memory_bytes
                .and_then(|m| i64::try_from(m).ok()),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(self.config.keep_alive.clone()),
            cmd: Some(Vec::new()),
            env: Some(
                options
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            labels: Some(labels),
            working_dir: Some(WORKSPACE_MOUNT.into()),
            user: Some(user),
            host_config: Some(host_config),
            ..Default::default()
        };
        let cname = container_name(name);
        let created = self
            .docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name(&cname)
                        .build(),
                ),
                body,
            )
            .await
            .map_err(|e| engine_error(format!("creating container {cname}"), e))?;
        self.docker
            .start_container(&created.id, None)
            .await
            .map_err(|e| engine_error(format!("starting container {cname} (is the keep-alive entrypoint {:?} in the image?)", self.config.keep_alive), e))?;
        // The keep-alive must still be running: a bad entrypoint may exit at once.
        let c = self
            .docker
            .inspect_container(&created.id, None)
            .await
            .map_err(|e| engine_error(format!("inspecting container {cname}"), e))?;
        if c.state.as_ref().and_then(|s| s.running) != Some(true) {
            return Err(Error::provider(
                PROVIDER,
                format!(
                    "container {cname} exited right after it started; its keep-alive entrypoint {:?} must run until stopped",
                    self.config.keep_alive
                ),
            ));
        }
        tracing::info!(%name, container = %created.id, %image, "docker sandbox created");
        Ok(self.sandbox_from(name, &c))
    }
}

/// When the container user is a numeric `uid:gid` other than this process's and this
/// process may change owners (root), hands the headstart workspace to that user.
fn chown_for(workspace: &Path, user: &str) -> Result<()> {
    let Some((uid, gid)) = user.split_once(':') else {
        return Ok(());
    };
    let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
        return Ok(());
    };
    let me = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    if (uid, gid) == me || !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if std::fs::symlink_metadata(p)?.is_dir() {
            for entry in std::fs::read_dir(p)? {
                walk(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(workspace, uid, gid).map_err(|e| {
        Error::io(
            format!("giving workspace {} to {user}", workspace.display()),
            e,
        )
    })
}

#[async_trait]
impl SandboxProvider for DockerProvider {
    fn kind(&self) -> &'static str {
        PROVIDER
    }

    async fn connect(&self, options: &ConnectOptions) -> Result<(Box<dyn Sandbox>, Connected)> {
        let name = options.name.clone().unwrap_or_else(SandboxName::generate);
        if !options.force_create {
            if let Some(sandbox) = self.reconnect(&name).await? {
                return Ok((Box::new(sandbox), Connected::Reconnected));
            }
        } else if let Some(existing) = self.inspect(&name).await? {
            let managed = self.sandbox_from(&name, &existing).managed;
            self.destroy(&name, true, managed).await?;
        }
        let sandbox = match options.timeout {
            None => self.create(&name, options).await?,
            Some(limit) => match tokio::time::timeout(limit, self.create(&name, options)).await {
                Ok(r) => r?,
                Err(_) => {
                    let _ = self.destroy(&name, true, options.workdir.is_none()).await;
                    return Err(Error::Timeout {
                        what: format!("creating docker sandbox {name}"),
                        after: limit,
                    });
                }
            },
        };
        Ok((Box::new(sandbox), Connected::Created))
    }

    async fn get(&self, name: &SandboxName) -> Result<Option<Box<dyn Sandbox>>> {
        Ok(self
            .inspect(name)
            .await?
            .map(|c| Box::new(self.sandbox_from(name, &c)) as Box<dyn Sandbox>))
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>> {
        let mut label_filters = vec![format!("{LABEL_OWNER}={OWNER}"), LABEL_SANDBOX.to_owned()];
        label_filters.extend(
            self.config
                .scope_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        let filters = HashMap::from([("label".to_owned(), label_filters)]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| engine_error("listing containers", e))?;
        let mut out = Vec::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let Some(name) = labels
                .get(LABEL_SANDBOX)
                .and_then(|n| SandboxName::new(n.clone()).ok())
            else {
                continue;
            };
            out.push(SandboxInfo {
                name,
                id: c.id.unwrap_or_default(),
                provider: PROVIDER.into(),
                workspace: labels
                    .get(LABEL_WORKSPACE)
                    .map(PathBuf::from)
                    .unwrap_or_default(),
                base_snapshot: labels
                    .get(LABEL_BASE_SNAPSHOT)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| SnapshotId::new(s.clone()).ok()),
                running: c.state.map(|s| s.to_string()).as_deref() == Some("running"),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove(&self, name: &SandboxName) -> Result<()> {
        match self.inspect(name).await? {
            Some(c) => {
                let managed = self.sandbox_from(name, &c).managed;
                self.destroy(name, true, managed).await
            }
            None => {
                let dir = self.store.workspaces().sandbox_dir(name);
                if dir.exists() {
                    // An orphaned workspace (the container was removed outside headstart).
                    self.store.workspaces().remove(name)
                } else {
                    Err(Error::SandboxNotFound {
                        name: name.to_string(),
                    })
                }
            }
        }
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStore> {
        self.store.clone()
    }
}

/// One Docker sandbox: a container and its host workspace.
#[derive(Debug, Clone)]
pub struct DockerSandbox {
    docker: Docker,
    store: Arc<DockerSnapshotStore>,
    id: String,
    name: SandboxName,
    workspace: PathBuf,
    managed: bool,
    base: Option<SnapshotId>,
    image: String,
}

impl DockerSandbox {
    /// The container name.
    pub fn container_name(&self) -> String {
        container_name(&self.name)
    }

    /// The image id the container was created from.
    pub fn image_id(&self) -> &str {
        &self.image
    }

    /// True when the workspace is the user's own directory (never deleted).
    pub fn is_workdir(&self) -> bool {
        !self.managed
    }
}

#[async_trait]
impl Sandbox for DockerSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &SandboxName {
        &self.name
    }

    fn workspace(&self) -> &Path {
        &self.workspace
    }

    fn base_snapshot(&self) -> Option<&SnapshotId> {
        self.base.as_ref()
    }

    async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput> {
        exec::run(&self.docker, &self.id, request).await
    }

    async fn snapshot(&self, request: &SnapshotRequest) -> Result<SnapshotMeta> {
        let id = SnapshotId::generate();
        let repo = snapshot_image_repo(&request.name);
        let mut meta = SnapshotMeta {
            id: id.clone(),
            name: request.name.clone(),
            status: SnapshotStatus::Ready,
            created_at: time::OffsetDateTime::now_utc(),
            commit: request.commit.clone(),
            branch: request.branch.clone(),
            source_url: request.source_url.clone(),
            recipe_digest: request.recipe_digest.clone(),
            size_bytes: 0,
            error: None,
            provider_data: serde_json::json!({
                "image": format!("{repo}:{id}"),
                "base_image_id": self.image,
                "sandbox": self.name.as_str(),
            }),
        };
        // The workspace first (written aside, then published), then the image: the
        // store lists images, so the snapshot appears only once both exist.
        meta.size_bytes = self.store.workspaces().save(&self.workspace, &meta)?;
        let labels = self.store.image_labels(&meta)?;
        let options = CommitContainerOptionsBuilder::default()
            .container(&self.id)
            .repo(&repo)
            .tag(id.as_str())
            .comment(&format!("headstart snapshot {id} of {}", request.name))
            .pause(true)
            .build();
        let config = bollard::models::ContainerConfig {
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.commit_container(options, config).await {
            Ok(committed) => {
                if let serde_json::Value::Object(m) = &mut meta.provider_data {
                    m.insert("image_id".into(), committed.id.into());
                }
                tracing::info!(snapshot = %id, name = %request.name, "docker snapshot ready");
                Ok(meta)
            }
            Err(e) => {
                let _ = self.store.workspaces().delete_saved(&id);
                Err(engine_error(
                    format!("committing sandbox {} to an image", self.name),
                    e,
                ))
            }
        }
    }

    async fn stop(&self) -> Result<()> {
        // The keep-alive ignores SIGTERM as PID 1; there is nothing to shut down
        // gracefully, so kill it.
        let options = KillContainerOptionsBuilder::default()
            .signal("KILL")
            .build();
        match self.docker.kill_container(&self.id, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {
                return Err(Error::SandboxNotFound {
                    name: self.name.to_string(),
                });
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => return Err(engine_error(format!("stopping sandbox {}", self.name), e)),
        }
        let mut wait = self.docker.wait_container(
            &self.id,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        use futures_util::StreamExt;
        while let Some(r) = wait.next().await {
            if r.is_err() {
                break;
            }
        }
        Ok(())
    }
}
