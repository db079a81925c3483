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
//! - **Workspaces**: host directories bind-mounted at `/workspace`, managed by the
//!   [`local`](crate::local) provider's machinery under [`DockerConfig::data_dir`] (records,
//!   snapshot leases, restores by overlay mount, reflink or copy; an overlay is mounted
//!   on the host *before* the container starts, and re-made on reconnect). Two kinds:
//!   a **headstart workspace** (the default: `headstart up <repo> --provider docker`
//!   clones or restores into it, and `headstart down` deletes it), or, with
//!   [`ConnectOptions::workdir`], **the user's own directory** (`headstart up
//!   --workdir .` and the `sandbox` fast path for a local coding agent), bind-mounted
//!   as is and never deleted. The git engine works on the host side in-process, as for
//!   every provider.
//! - **Images**: local first, pulled only when missing and allowed
//!   ([`DockerConfig::allow_pull`]); without an image the offline base image is built
//!   from a static busybox on this machine, or else from this machine's own programs
//!   and their shared libraries ([`build_base_image`]), and reused once built.
//! - **Exec**: an argv through the engine's exec API, output streamed to the sink,
//!   exit status, timeout (the process is killed), optional terminal;
//!   [`DockerSandbox::exec_interactive`] also feeds standard input.
//! - **Lifecycle**: [`Sandbox::stop`] stops the container (the workspace stays);
//!   [`SandboxProvider::remove`] removes both; [`DockerProvider::prune`] removes
//!   sandboxes past their TTL and workspaces left without a container.
//! - **Snapshots**: [`Sandbox::snapshot`] stores the workspace, then commits the
//!   container to `headstart-snapshot/<key>:<id>` with the metadata in labels; a warm
//!   start creates the container from that image (pinned by id) and restores the
//!   workspace. [`DockerSnapshotStore`] lists by label, newest first, in pages.
//!
//! ```no_run
//! use provisioners::docker::{DockerConfig, DockerProvider};
//! use sandbox_core::{ConnectOptions, ExecRequest, SandboxName, SandboxProvider};
//!
//! # async fn demo() -> sandbox_core::Result<()> {
//! let provider = DockerProvider::from_env(DockerConfig::from_env()?).await?;
//! let options = ConnectOptions::new().name(SandboxName::new("demo")?);
//! let (sandbox, _) = provider.connect(&options).await?;
//! // the git engine writes `sandbox.workspace()` on the host; the container sees it
//! let out = sandbox.exec(&ExecRequest::new(["ls", "-a"])?).await?;
//! assert!(out.success());
//! provider.remove(sandbox.name()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Not here: deciding when to snapshot or which snapshot to use (`snapshot-refresh`),
//! cloning or syncing (`sandbox_core::git`), registries and pushing, or Dockerfile builds.

mod engine;
mod exec;
mod hostfs;
mod image;
mod snapshot;
mod tar;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount, MountType,
};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use sandbox_core::{
    ConnectOptions, Connected, Error, ExecOutput, ExecRequest, Result, Sandbox, SandboxInfo,
    SandboxName, SandboxProvider, SnapshotId, SnapshotMeta, SnapshotRequest, SnapshotStore,
};

pub use engine::{DEFAULT_ENGINE_HOST, EngineHost, connect, connect_from_env};
pub use image::{
    BASE_IMAGE_REPO, BaseImageSpec, ImageRef, LABEL_BASE_DIGEST, build_base_image, ensure_image,
    local_image,
};
pub use snapshot::{
    DockerSnapshotStore, IMAGE_PIN, LABEL_SNAPSHOT_CREATED, LABEL_SNAPSHOT_ID, LABEL_SNAPSHOT_META,
    LABEL_SNAPSHOT_NAME, LABEL_SNAPSHOT_STATUS, SNAPSHOT_IMAGE_REPO, snapshot_image_repo,
};

use crate::local::{LocalProvider, RestoreMethod};
use engine::{engine_error, is_not_found};

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
    /// This provider's own directory: headstart workspaces and stored snapshot
    /// workspaces live here, in the local provider's layout (`sandboxes/`,
    /// `snapshots/`). [`DockerConfig::from_env`] uses `<headstart data dir>/docker`.
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
    /// How snapshot workspaces are restored (the local store's methods; `Auto` picks
    /// the fastest this machine supports).
    pub restore_method: RestoreMethod,
}

impl DockerConfig {
    /// Defaults with workspaces under `<headstart data dir>/docker` (`HEADSTART_HOME`,
    /// else the XDG data directory) and the restore method `HEADSTART_RESTORE_METHOD`
    /// forces (as the local provider reads them).
    ///
    /// # Errors
    /// As [`crate::local::LocalConfig::from_env`].
    pub fn from_env() -> Result<Self> {
        let local = crate::local::LocalConfig::from_env()?;
        Ok(Self::new(local.home.join(PROVIDER)).restore_method(local.restore_method))
    }

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
            restore_method: RestoreMethod::Auto,
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

    /// Forces a restore method for snapshot workspaces.
    #[must_use]
    pub fn restore_method(mut self, method: RestoreMethod) -> Self {
        self.restore_method = method;
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

/// What [`DockerProvider::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerPruneReport {
    /// Sandboxes removed because their TTL passed.
    pub expired: Vec<SandboxName>,
    /// Workspaces removed because no container was left for them.
    pub orphans: Vec<SandboxName>,
}

/// How long a timed-out creation may still run before its leftovers are removed.
const CREATE_SETTLE: Duration = Duration::from_secs(60);

/// Sandboxes as Docker containers. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DockerProvider {
    docker: Docker,
    config: Arc<DockerConfig>,
    local: LocalProvider,
    store: Arc<DockerSnapshotStore>,
}

impl DockerProvider {
    /// A provider on an engine connection (see [`connect`]). Workspaces and stored
    /// snapshot workspaces live under [`DockerConfig::data_dir`], managed by the local
    /// provider's machinery (records, leases, overlay/reflink/copy restores).
    pub fn new(docker: Docker, config: DockerConfig) -> Self {
        let local =
            LocalProvider::new(config.data_dir.clone()).with_restore_method(config.restore_method);
        let store = Arc::new(DockerSnapshotStore::new(
            docker.clone(),
            local.store(),
            config.scope_labels.clone(),
        ));
        Self {
            docker,
            config: Arc::new(config),
            local,
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

    /// The restore method warm starts use for workspaces here (the forced one, or
    /// what `Auto` picks on this machine).
    ///
    /// # Errors
    /// As [`LocalProvider::effective_restore_method`].
    pub fn effective_restore_method(&self) -> Result<RestoreMethod> {
        self.local.effective_restore_method()
    }

    /// [`SandboxProvider::connect`], typed: the [`DockerSandbox`] itself (for
    /// [`DockerSandbox::exec_interactive`] and the container's name and image).
    ///
    /// # Errors
    /// As [`SandboxProvider::connect`].
    pub async fn connect_sandbox(
        &self,
        options: &ConnectOptions,
    ) -> Result<(DockerSandbox, Connected)> {
        let name = options.name.clone().unwrap_or_else(SandboxName::generate);
        if !options.force_create {
            if let Some(mut sandbox) = self.reconnect(&name).await? {
                // The container keeps the env it was created with; what this connect
                // asks for applies to every command run through this handle.
                sandbox.env = options.env.clone();
                return Ok((sandbox, Connected::Reconnected));
            }
        } else if self.inspect(&name).await?.is_some() {
            self.destroy(&name).await?;
        }
        let sandbox = match options.timeout {
            None => self.create(&name, options).await?,
            Some(limit) => {
                let create = self.create(&name, options);
                tokio::pin!(create);
                match tokio::time::timeout(limit, &mut create).await {
                    Ok(r) => r?,
                    Err(_) => {
                        // Parts of a creation run on blocking threads that a dropped
                        // future cannot stop: let it finish (bounded), then remove
                        // whatever it made, so a timed-out start leaves nothing behind.
                        let _ = tokio::time::timeout(CREATE_SETTLE, &mut create).await;
                        if let Err(e) = self.destroy(&name).await {
                            tracing::warn!(%name, %e, "cleanup after a timed-out create failed");
                        }
                        return Err(Error::Timeout {
                            what: format!("creating docker sandbox {name}"),
                            after: limit,
                        });
                    }
                }
            }
        };
        Ok((sandbox, Connected::Created))
    }

    /// Removes sandboxes whose TTL passed (container and workspace) and workspaces
    /// left without a container for over a minute (a creation killed midway), then
    /// runs the local machinery's own prune (crashed creations, stale snapshot
    /// writes). The user's own workdirs are never deleted.
    ///
    /// # Errors
    /// [`Error::Provider`] when the engine fails; I/O errors.
    pub async fn prune(&self) -> Result<DockerPruneReport> {
        let mut report = DockerPruneReport::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        for info in self.list().await? {
            let Some(c) = self.inspect(&info.name).await? else {
                continue;
            };
            let expires = c
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_EXPIRES))
                .and_then(|v| v.parse::<u64>().ok());
            if expires.is_some_and(|t| t <= now) {
                self.destroy(&info.name).await?;
                report.expired.push(info.name);
            }
        }
        let grace = Duration::from_secs(60);
        for info in self.local.list().await? {
            if self.inspect(&info.name).await?.is_some() {
                continue;
            }
            let record = self
                .config
                .data_dir
                .join("sandboxes")
                .join(info.name.as_str());
            let age = std::fs::metadata(&record)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or(Duration::ZERO);
            if age >= grace {
                match self.local.remove(&info.name).await {
                    Ok(()) | Err(Error::SandboxNotFound { .. }) => report.orphans.push(info.name),
                    Err(e) => return Err(e),
                }
            }
        }
        self.local.prune().await?;
        Ok(report)
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
                let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
                if label(LABEL_OWNER) != Some(OWNER) || label(LABEL_SANDBOX) != Some(name.as_str())
                {
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
            local: self.local.clone(),
            store: self.store.clone(),
            id: c.id.clone().unwrap_or_default(),
            name: name.clone(),
            workspace: label(LABEL_WORKSPACE)
                .map(PathBuf::from)
                .unwrap_or_default(),
            workdir: label(LABEL_WORKSPACE_KIND).as_deref() == Some(KIND_WORKDIR),
            base: label(LABEL_BASE_SNAPSHOT).and_then(|s| SnapshotId::new(s).ok()),
            image: c.image.clone().unwrap_or_default(),
            env: BTreeMap::new(),
        }
    }

    /// Reconnects to an existing container: re-makes the workspace's mount when it is
    /// gone (an overlay after a reboot) and starts the container when it is stopped.
    /// The mount must exist before `start`, which bind-mounts whatever is there.
    async fn reconnect(&self, name: &SandboxName) -> Result<Option<DockerSandbox>> {
        let Some(c) = self.inspect(name).await? else {
            return Ok(None);
        };
        let sandbox = self.sandbox_from(name, &c);
        if self.local.get(name).await?.is_none() {
            return Err(Error::provider(
                PROVIDER,
                format!(
                    "sandbox {name} has a container but its workspace record is gone; recreate \
                     it with --force-create"
                ),
            ));
        }
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running {
            self.docker
                .start_container(&sandbox.id, None)
                .await
                .map_err(|e| engine_error(format!("restarting sandbox {name}"), e))?;
        }
        Ok(Some(sandbox))
    }

    /// Removes the container and the workspace (a user's workdir stays: only the
    /// record pointing at it goes). Returns whether anything existed.
    async fn destroy(&self, name: &SandboxName) -> Result<bool> {
        let cname = container_name(name);
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let container = match self.docker.remove_container(&cname, Some(options)).await {
            Ok(()) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(engine_error(format!("removing container {cname}"), e)),
        };
        let workspace = match self.local.remove(name).await {
            Ok(()) => true,
            Err(Error::SandboxNotFound { .. }) => false,
            Err(e) => return Err(e),
        };
        Ok(container || workspace)
    }

    async fn create(&self, name: &SandboxName, options: &ConnectOptions) -> Result<DockerSandbox> {
        let mut made = Made::default();
        let result = self.create_inner(name, options, &mut made).await;
        if result.is_err() {
            // Nothing half-made stays: the container this call created and the
            // headstart workspace it made go (by id: never someone else's container of
            // that name); a user's workdir is never touched.
            self.undo(name, &made).await;
        }
        result
    }

    async fn undo(&self, name: &SandboxName, made: &Made) {
        if let Some(id) = &made.container {
            let options = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match self.docker.remove_container(id, Some(options)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    tracing::warn!(%name, %e, "could not remove the container of a failed create")
                }
            }
        }
        if made.workspace {
            match self.local.remove(name).await {
                Ok(()) | Err(Error::SandboxNotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(%name, %e, "could not remove the workspace of a failed create")
                }
            }
        }
    }

    async fn create_inner(
        &self,
        name: &SandboxName,
        options: &ConnectOptions,
        made: &mut Made,
    ) -> Result<DockerSandbox> {
        // The image first (cheapest to fail): the snapshot's, pinned by id, or the
        // requested/default one, or the offline base image.
        let (image, base_key) = match &options.base_snapshot {
            Some(id) => {
                let (meta, image) = self.store.image_of(id).await?;
                (image, Some(meta.name))
            }
            None => {
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

        // The workspace, through the local provider: empty, restored from the
        // snapshot's stored workspace (overlay mounts happen here, before the container
        // starts), or the user's own directory.
        let mut local_options = ConnectOptions::new().name(name.clone()).force_create(true);
        local_options.workdir = options.workdir.clone();
        if options.workdir.is_none() {
            local_options.base_snapshot = options.base_snapshot.clone();
        }
        local_options.ttl = options.ttl;
        local_options.labels = options.labels.clone();
        let (ws, _) = self.local.connect(&local_options).await?;
        made.workspace = true;
        let workspace = ws.workspace().to_path_buf();
        let workdir = options.workdir.is_some();
        let user = self.user();
        if !workdir {
            let (ws, user) = (workspace.clone(), user.clone());
            tokio::task::spawn_blocking(move || chown_for(&ws, &user))
                .await
                .map_err(|e| {
                    Error::provider(PROVIDER, format!("a background task failed: {e}"))
                })??;
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
            if workdir { KIND_WORKDIR } else { KIND_MANAGED }.into(),
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
            // A mount, not a `src:dst` bind string: any path works (`:` and `,` too).
            mounts: Some(vec![Mount {
                target: Some(WORKSPACE_MOUNT.into()),
                source: Some(workspace.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(false),
                ..Default::default()
            }]),
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
        made.container = Some(created.id.clone());
        self.docker.start_container(&created.id, None).await.map_err(|e| {
            engine_error(
                format!(
                    "starting container {cname} (the keep-alive entrypoint {:?} must exist in the \
                     image, and the user must be one it knows or a numeric uid:gid)",
                    self.config.keep_alive
                ),
                e,
            )
        })?;
        // A keep-alive that exits at once is caught here when the engine already noticed.
        let c = self
            .docker
            .inspect_container(&created.id, None)
            .await
            .map_err(|e| engine_error(format!("inspecting container {cname}"), e))?;
        if c.state.as_ref().and_then(|s| s.running) != Some(true) {
            return Err(Error::provider(
                PROVIDER,
                format!(
                    "container {cname} exited right after it started; its keep-alive \
                     entrypoint {:?} must run until stopped",
                    self.config.keep_alive
                ),
            ));
        }
        tracing::info!(%name, container = %created.id, %image, "docker sandbox created");
        Ok(self.sandbox_from(name, &c))
    }
}

/// What a create made so far (undone when it fails).
#[derive(Debug, Default)]
struct Made {
    container: Option<String>,
    workspace: bool,
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
        let (sandbox, how) = self.connect_sandbox(options).await?;
        Ok((Box::new(sandbox), how))
    }

    /// The named sandbox, ready to use: like a reconnect, its workspace mount is
    /// re-made and a stopped container started.
    async fn get(&self, name: &SandboxName) -> Result<Option<Box<dyn Sandbox>>> {
        Ok(self
            .reconnect(name)
            .await?
            .map(|s| Box::new(s) as Box<dyn Sandbox>))
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
                state: sandbox_core::SandboxState::Ready,
                created_at: c
                    .created
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove(&self, name: &SandboxName) -> Result<()> {
        // Refuse someone else's container of that name before touching anything.
        self.inspect(name).await?;
        if self.destroy(name).await? {
            Ok(())
        } else {
            Err(Error::SandboxNotFound {
                name: name.to_string(),
            })
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
    local: LocalProvider,
    store: Arc<DockerSnapshotStore>,
    id: String,
    name: SandboxName,
    workspace: PathBuf,
    workdir: bool,
    base: Option<SnapshotId>,
    image: String,
    /// Env from the `connect` that returned this handle (on top of the container's).
    env: BTreeMap<String, String>,
}

impl DockerSandbox {
    /// `request` with this handle's env under its own.
    fn with_env<'a>(&self, request: &'a ExecRequest) -> std::borrow::Cow<'a, ExecRequest> {
        if self.env.is_empty() {
            return std::borrow::Cow::Borrowed(request);
        }
        let mut request = request.clone();
        for (k, v) in &self.env {
            request.env.entry(k.clone()).or_insert_with(|| v.clone());
        }
        std::borrow::Cow::Owned(request)
    }
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

    /// Runs `request` interactively: standard input from `stdin`, output (both
    /// streams) to `output`, a terminal of `size` (columns, rows) when `request.tty`
    /// is set; for coding agents a user talks to. Returns the exit code (`None` when
    /// killed or timed out). Still an argv, never a shell string.
    ///
    /// # Errors
    /// [`Error::Provider`] when the engine fails; [`Error::InvalidOptions`] for a
    /// `cwd` outside the workspace.
    pub async fn exec_interactive<R, W>(
        &self,
        request: &ExecRequest,
        size: Option<(u16, u16)>,
        stdin: R,
        output: W,
    ) -> Result<Option<i32>>
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send,
    {
        exec::run_interactive(
            &self.docker,
            &self.id,
            &self.with_env(request),
            size,
            stdin,
            output,
        )
        .await
    }

    /// True when the workspace is the user's own directory (never deleted).
    pub fn is_workdir(&self) -> bool {
        self.workdir
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
        exec::run(&self.docker, &self.id, &self.with_env(request)).await
    }

    /// Stores the workspace through the local store (written aside, then renamed into
    /// place), then commits the container to `headstart-snapshot/<key>:<id>` with the
    /// metadata in labels. The store lists images, so the snapshot appears only once
    /// both exist; a failed commit removes the stored workspace.
    async fn snapshot(&self, request: &SnapshotRequest) -> Result<SnapshotMeta> {
        let ws = self.local.get(&self.name).await?.ok_or_else(|| {
            Error::provider(
                PROVIDER,
                format!(
                    "the workspace record of sandbox {} is gone; recreate it",
                    self.name
                ),
            )
        })?;
        let mut meta = ws.snapshot(request).await?;
        let id = meta.id.clone();
        let repo = snapshot_image_repo(&request.name);
        let mut data = match meta.provider_data.take() {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        data.insert("image".into(), format!("{repo}:{id}").into());
        data.insert("base_image_id".into(), self.image.clone().into());
        meta.provider_data = serde_json::Value::Object(data);
        let committed = async {
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
            self.docker
                .commit_container(options, config)
                .await
                .map_err(|e| {
                    engine_error(format!("committing sandbox {} to an image", self.name), e)
                })
        }
        .await;
        match committed {
            Ok(committed) => {
                if let serde_json::Value::Object(m) = &mut meta.provider_data {
                    m.insert("image_id".into(), committed.id.into());
                }
                // Pin the image next to the stored workspace's manifest too.
                if let Err(e) = self.store.write_image_pin(&meta) {
                    tracing::warn!(snapshot = %id, %e, "could not write the image pin beside the manifest");
                }
                tracing::info!(snapshot = %id, name = %request.name, "docker snapshot ready");
                Ok(meta)
            }
            Err(e) => {
                if let Err(cleanup) = self.store.workspaces().delete(&id).await {
                    tracing::warn!(snapshot = %id, %cleanup, "could not remove the stored workspace of a failed snapshot");
                }
                Err(e)
            }
        }
    }

    /// Stops the container (the workspace stays); `connect` by name starts it again.
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
            // not running
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => return Err(engine_error(format!("stopping sandbox {}", self.name), e)),
        }
        let mut wait = self.docker.wait_container(
            &self.id,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        while let Some(r) = wait.next().await {
            if r.is_err() {
                break;
            }
        }
        Ok(())
    }
}
