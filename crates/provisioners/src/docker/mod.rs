//! The Docker provider: a container per sandbox, the workspace bind-mounted at
//! `/workspace`, snapshots as committed images plus stored workspaces.
//!
//! - **Engine**: the one named by `DOCKER_HOST` or the default socket
//!   ([`EngineHost::from_env`], [`connect`]); when none answers, the error says how to
//!   start one.
//! - **Sandboxes**: container `headstart-<name>-<tag>` ([`container_name`]: the tag
//!   names the data directory, so two data directories never share a container name),
//!   labelled with the sandbox name, the canonical data directory ([`LABEL_DATA_DIR`]),
//!   the start that made it ([`LABEL_START`]), the base snapshot and key, the workspace
//!   and [`LABEL_OWNER`]` = `[`OWNER`]; a keep-alive entrypoint; env and resource
//!   limits from [`ConnectOptions`]; the host user's `uid:gid` by default so files the
//!   agent writes stay the user's. Every lookup (reconnect, `get`, `list`, `remove`,
//!   `prune`, `force_create`'s replacement) matches the data directory and scope
//!   labels: another data directory's containers are never touched.
//! - **States**: one start per name at a time (a `flock` per name under the data
//!   directory, see `state.rs`), and a start record `containers/<name>.json` saying
//!   `creating` or `ready`. Only `ready` sandboxes are reconnected to or returned by
//!   `get`; with [`ConnectOptions::defer_ready`] a new sandbox stays `creating`, its
//!   handle holding the name's lock, until [`Sandbox::mark_ready`]. A `creating` record
//!   whose lock is free is an interrupted start (a crash, Ctrl-C during the clone): the
//!   next `connect` of the name replaces it and [`DockerProvider::prune`] removes it.
//!   A failed start removes only what it made itself (its container by id, the
//!   workspace it made).
//! - **Workspaces**: host directories bind-mounted at `/workspace`, managed by the
//!   [`local`](crate::local) provider's machinery under [`DockerConfig::data_dir`] (records,
//!   snapshot leases, restores by overlay mount, reflink or copy; an overlay is mounted
//!   on the host *before* the container starts, and re-made on reconnect). Two kinds:
//!   a **headstart workspace** (the default: `headstart up <repo> --provider docker`
//!   clones or restores into it, and `headstart down` deletes it), or, with
//!   [`ConnectOptions::workdir`], **the user's own directory** (`headstart up
//!   --workdir .` and the `sandbox` fast path for a local coding agent), bind-mounted
//!   as is and never deleted; it may be neither inside [`DockerConfig::data_dir`] nor
//!   contain it ([`crate::workdir::check_workdir`]). The git engine works on the host side in-process, as for
//!   every provider.
//! - **Images**: local first, pulled only when missing and allowed
//!   ([`DockerConfig::allow_pull`]); without an image ([`default_image`]) the pinned
//!   [`PUBLIC_BASE_IMAGE`] when pulls are allowed, else the offline base image with
//!   git: a Debian made with `mmdebstrap` (run as an argv subprocess), or else this
//!   machine's own programs and their shared libraries ([`build_base_image`]), reused
//!   once built. Any numeric container user gets a passwd entry and a home.
//! - **Exec**: an argv through the engine's exec API, output streamed to the sink,
//!   exit status, timeout (the process is killed), optional terminal;
//!   [`DockerSandbox::exec_interactive`] also feeds standard input.
//! - **Lifecycle**: [`Sandbox::stop`] stops the container (the workspace stays);
//!   [`SandboxProvider::remove`] and [`Sandbox::remove`] remove both;
//!   [`DockerProvider::prune`] removes sandboxes past their TTL, interrupted starts
//!   and workspaces left without a container.
//! - **Snapshot images** carry the data directory label too: a data directory sees
//!   only its own (their stored workspaces live in it).
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

mod debian;
mod engine;
mod exec;
mod hostfs;
mod image;
mod snapshot;
mod state;
mod tar;
mod user;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummaryStateEnum, HostConfig, Mount,
    MountType,
};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use sandbox_core::{
    CancelToken, ConnectOptions, Connected, Error, ExecOutput, ExecRequest, Result, Sandbox,
    SandboxInfo, SandboxName, SandboxProvider, SandboxState, SnapshotId, SnapshotMeta,
    SnapshotRequest, SnapshotStore,
};

pub use debian::{DEBIAN_PACKAGES, DEFAULT_MIRROR, DEFAULT_SUITE, DebianSpec};
pub use engine::{DEFAULT_ENGINE_HOST, EngineHost, connect, connect_from_env};
pub use image::{
    BASE_IMAGE_REPO, BaseImageSpec, BaseRecipe, IMAGE_ENV, ImageRef, LABEL_BASE_DIGEST,
    LABEL_BASE_RECIPE, PUBLIC_BASE_IMAGE, build_base_image, default_image, ensure_image,
    local_image,
};
pub use snapshot::{
    DockerSnapshotStore, IMAGE_PIN, LABEL_SNAPSHOT_CREATED, LABEL_SNAPSHOT_ID, LABEL_SNAPSHOT_META,
    LABEL_SNAPSHOT_NAME, LABEL_SNAPSHOT_STATUS, SNAPSHOT_IMAGE_REPO, snapshot_image_repo,
};
pub use user::SANDBOX_USER;

use crate::local::{LocalProvider, RestoreMethod};
use engine::{engine_error, is_not_found};
use state::{StartLock, StartRecord, StateDir};

pub(crate) const PROVIDER: &str = "docker";

/// Where the workspace is mounted in every container (and the working directory).
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// Container names are this prefix, the sandbox name and the data directory's tag
/// ([`container_name`]).
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
/// Label on every container and snapshot image: the canonical data directory of the
/// provider that made it. A provider touches only objects carrying its own.
pub const LABEL_DATA_DIR: &str = "dev.headstart.data-dir";
/// Label: the id of the start that made the container (its start record names it too).
pub const LABEL_START: &str = "dev.headstart.start";

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
    /// The containers' network (`None`: the engine's default bridge; `"host"` shares
    /// the host's network, loopback included; `"none"` cuts it off).
    pub network_mode: Option<String>,
}

impl DockerConfig {
    /// Defaults with workspaces under `<headstart data dir>/docker` (`HEADSTART_HOME`,
    /// else the XDG data directory), the restore method `HEADSTART_RESTORE_METHOD`
    /// forces (as the local provider reads them) and the default image
    /// `HEADSTART_IMAGE` names ([`IMAGE_ENV`]; unset or empty: [`default_image`]).
    ///
    /// # Errors
    /// As [`crate::local::LocalConfig::from_env`].
    pub fn from_env() -> Result<Self> {
        let local = crate::local::LocalConfig::from_env()?;
        let config = Self::new(local.home.join(PROVIDER)).restore_method(local.restore_method);
        Ok(match std::env::var(IMAGE_ENV) {
            Ok(image) if !image.trim().is_empty() => config.default_image(image.trim()),
            _ => config,
        })
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
            network_mode: None,
        }
    }

    /// Sets the containers' network (`"host"`, `"none"`, a network name).
    #[must_use]
    pub fn network_mode(mut self, mode: impl Into<String>) -> Self {
        self.network_mode = Some(mode.into());
        self
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

/// The container name of sandbox `name` of the data directory `data_dir`:
/// `headstart-<name>-<tag>`, the tag being [`data_dir_tag`]. Pass the canonical data
/// directory ([`DockerProvider::data_dir`]; [`DockerProvider::container_name`] does):
/// the same name in two data directories gives two container names.
pub fn container_name(name: &SandboxName, data_dir: &Path) -> String {
    format!("{CONTAINER_PREFIX}{name}-{}", data_dir_tag(data_dir))
}

/// Eight hex digits of the SHA-256 of a data directory's path: what tells two data
/// directories' container names apart.
pub fn data_dir_tag(data_dir: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..4])
}

/// `path` made absolute with symlinks resolved, also before it exists: the longest
/// existing ancestor is canonicalised and the rest appended.
fn canonical_dir(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut base = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(base) {
            return rest.iter().rev().fold(canonical, |p, c| p.join(c));
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(last)) => {
                rest.push(last.to_os_string());
                base = parent;
            }
            _ => return absolute,
        }
    }
}

/// What [`DockerProvider::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerPruneReport {
    /// Sandboxes removed because their TTL passed.
    pub expired: Vec<SandboxName>,
    /// Workspaces removed because no container was left for them.
    pub orphans: Vec<SandboxName>,
    /// Interrupted starts removed (container and workspace): left `creating` by a
    /// process that is gone.
    pub interrupted: Vec<SandboxName>,
}

/// One of this data directory's containers, from a listing.
#[derive(Debug, Clone)]
struct Found {
    id: String,
    name: SandboxName,
    labels: HashMap<String, String>,
    running: bool,
    /// When the engine created it (seconds since the epoch).
    created: Option<i64>,
    /// Made before containers carried [`LABEL_DATA_DIR`] (its workspace is ours).
    legacy: bool,
}

impl Found {
    fn start(&self) -> Option<&str> {
        self.labels.get(LABEL_START).map(String::as_str)
    }
}

/// The container a start record says is the ready sandbox: the record's container, or
/// with no record an older version's container (which had none).
fn ready_container<'a>(record: Option<&StartRecord>, found: &'a [Found]) -> Option<&'a Found> {
    match record {
        Some(r) if r.state == SandboxState::Ready => found.iter().find(|c| {
            r.container.as_deref() == Some(c.id.as_str())
                || (!r.start.is_empty() && c.start() == Some(r.start.as_str()))
        }),
        Some(_) => None,
        None => found.iter().find(|c| c.legacy),
    }
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
    /// The canonical data directory (labels, container names).
    data_dir: Arc<PathBuf>,
    /// The scope labels plus [`LABEL_DATA_DIR`]: on everything made, required of
    /// everything touched.
    scope: Arc<BTreeMap<String, String>>,
    states: StateDir,
}

impl DockerProvider {
    /// A provider on an engine connection (see [`connect`]). Workspaces and stored
    /// snapshot workspaces live under [`DockerConfig::data_dir`], managed by the local
    /// provider's machinery (records, leases, overlay/reflink/copy restores).
    /// Everything it creates is labelled with the canonical data directory
    /// ([`LABEL_DATA_DIR`]) besides the configured scope labels.
    pub fn new(docker: Docker, config: DockerConfig) -> Self {
        let local =
            LocalProvider::new(config.data_dir.clone()).with_restore_method(config.restore_method);
        let data_dir = canonical_dir(&config.data_dir);
        let mut scope = config.scope_labels.clone();
        scope.insert(LABEL_DATA_DIR.into(), data_dir.display().to_string());
        let store = Arc::new(DockerSnapshotStore::new(
            docker.clone(),
            local.store(),
            scope.clone(),
        ));
        Self {
            docker,
            states: StateDir::new(&config.data_dir),
            config: Arc::new(config),
            local,
            store,
            data_dir: Arc::new(data_dir),
            scope: Arc::new(scope),
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

    /// The canonical data directory: the value of [`LABEL_DATA_DIR`] on everything
    /// this provider makes.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The container name sandbox `name` gets here ([`container_name`] with this
    /// provider's canonical data directory).
    pub fn container_name(&self, name: &SandboxName) -> String {
        container_name(name, &self.data_dir)
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
    /// Takes the name's lock first (waiting for another start of the name, within
    /// `options.timeout`), so that the loser of a race reconnects to the winner's
    /// sandbox once it is ready. Under the lock: a `ready` sandbox is reconnected to
    /// (unless `force_create`); anything else of this data directory under the name
    /// (an interrupted start, or what `force_create` replaces) is removed, then a new
    /// one is created. With `defer_ready` the new one stays `creating` and the handle
    /// keeps the lock until [`Sandbox::mark_ready`] or [`Sandbox::remove`].
    ///
    /// # Errors
    /// As [`SandboxProvider::connect`]; [`Error::Timeout`] or [`Error::Cancelled`]
    /// (`options.cancel`) while waiting or creating, with nothing of this start left.
    pub async fn connect_sandbox(
        &self,
        options: &ConnectOptions,
    ) -> Result<(DockerSandbox, Connected)> {
        if let Some(workdir) = &options.workdir {
            // before the lock and the engine: never inside (or around) our data
            crate::workdir::check_workdir(workdir, &self.config.data_dir)?;
        }
        let name = options.name.clone().unwrap_or_else(SandboxName::generate);
        let deadline = options.timeout.and_then(|t| Instant::now().checked_add(t));
        let lock = self
            .states
            .lock(&name, deadline, options.cancel.as_ref())
            .await?;
        let record = self.states.read(&name)?;
        let found = self.ours(Some(&name)).await?;
        if !options.force_create {
            if let Some(c) = ready_container(record.as_ref(), &found) {
                if record.is_none() {
                    // An older version's sandbox: adopt it.
                    let mut adopted = StartRecord::begin(&name);
                    adopted.state = SandboxState::Ready;
                    adopted.start = c.start().unwrap_or_default().to_owned();
                    adopted.container = Some(c.id.clone());
                    self.states.write(&adopted)?;
                }
                let mut sandbox = self.open(&name, &c.id).await?;
                // The container keeps the env it was created with; what this connect
                // asks for applies to every command run through this handle.
                sandbox.env = options.env.clone();
                return Ok((sandbox, Connected::Reconnected));
            }
        }
        if let Some(r) = record
            .as_ref()
            .filter(|r| r.state == SandboxState::Creating)
        {
            tracing::warn!(%name, pid = r.pid, "replacing a docker sandbox whose start was interrupted");
        }
        self.clear(&name, &found).await?;
        self.refuse_foreign(&name).await?;
        let sandbox = self.create(&name, options, deadline).await?;
        if options.defer_ready {
            *sandbox.held() = Some(lock);
        }
        Ok((sandbox, Connected::Created))
    }

    /// Removes this data directory's stale sandboxes: those whose TTL passed (container
    /// and workspace), interrupted starts (a `creating` record whose lock is free: the
    /// process that made it is gone), workspaces whose container is gone (an older
    /// version's after a minute), then
    /// runs the local machinery's own prune (crashed workspace creations, stale
    /// snapshot writes). Names another process is starting or removing are skipped.
    /// The user's own workdirs are never deleted.
    ///
    /// # Errors
    /// [`Error::Provider`] when the engine fails; I/O errors.
    pub async fn prune(&self) -> Result<DockerPruneReport> {
        let mut report = DockerPruneReport::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let mut names: Vec<SandboxName> = self.states.names()?;
        names.extend(self.ours(None).await?.into_iter().map(|c| c.name));
        names.extend(self.local.list().await?.into_iter().map(|i| i.name));
        names.sort();
        names.dedup();
        let grace = Duration::from_secs(60);
        for name in names {
            let Some(_lock) = self.states.try_lock(&name)? else {
                tracing::debug!(%name, "prune skips a sandbox being started or removed");
                continue;
            };
            let record = self.states.read(&name)?;
            let found = self.ours(Some(&name)).await?;
            if let Some(c) = ready_container(record.as_ref(), &found) {
                let expires = c
                    .labels
                    .get(LABEL_EXPIRES)
                    .and_then(|v| v.parse::<u64>().ok());
                if expires.is_some_and(|t| t <= now) {
                    self.clear(&name, &found).await?;
                    report.expired.push(name);
                }
                continue;
            }
            if record
                .as_ref()
                .is_some_and(|r| r.state == SandboxState::Creating)
                || (record.is_none() && !found.is_empty())
            {
                tracing::info!(%name, "removing an interrupted docker start");
                self.clear(&name, &found).await?;
                report.interrupted.push(name);
            } else if record.is_some() {
                // Ready, but its container is gone (removed by hand).
                self.clear(&name, &found).await?;
                report.orphans.push(name);
            } else {
                // A workspace alone, without a record: an older version's.
                let age =
                    std::fs::metadata(self.config.data_dir.join("sandboxes").join(name.as_str()))
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .unwrap_or(Duration::ZERO);
                if age >= grace {
                    match self.local.remove(&name).await {
                        Ok(()) => report.orphans.push(name),
                        Err(Error::SandboxNotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
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

    /// True when a container with these labels is this data directory's sandbox
    /// (`name`, if given): made by headstart, carrying every scope label and this data
    /// directory, or made by an older version without the data-directory label whose
    /// workspace is one of ours.
    fn is_ours(&self, labels: &HashMap<String, String>, name: Option<&SandboxName>) -> bool {
        let label = |k: &str| labels.get(k).map(String::as_str);
        if label(LABEL_OWNER) != Some(OWNER)
            || label(LABEL_SANDBOX).is_none()
            || name.is_some_and(|n| label(LABEL_SANDBOX) != Some(n.as_str()))
        {
            return false;
        }
        if !self
            .config
            .scope_labels
            .iter()
            .all(|(k, v)| label(k) == Some(v.as_str()))
        {
            return false;
        }
        match label(LABEL_DATA_DIR) {
            Some(dir) => Path::new(dir) == self.data_dir.as_path(),
            None => label(LABEL_WORKSPACE).is_some_and(|w| {
                let w = Path::new(w);
                w.starts_with(self.config.data_dir.join("sandboxes"))
                    || w.starts_with(self.data_dir.join("sandboxes"))
                    // an older workdir sandbox: ours when our workspace record exists
                    || (label(LABEL_WORKSPACE_KIND) == Some(KIND_WORKDIR)
                        && self
                            .config
                            .data_dir
                            .join("sandboxes")
                            .join(label(LABEL_SANDBOX).unwrap_or_default())
                            .exists())
            }),
        }
    }

    /// This data directory's containers (of sandbox `name`, if given), found by label.
    async fn ours(&self, name: Option<&SandboxName>) -> Result<Vec<Found>> {
        let mut label_filters = vec![
            format!("{LABEL_OWNER}={OWNER}"),
            match name {
                Some(n) => format!("{LABEL_SANDBOX}={n}"),
                None => LABEL_SANDBOX.to_owned(),
            },
        ];
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
            if !self.is_ours(&labels, name) {
                continue;
            }
            let (Some(id), Some(sandbox)) = (
                c.id,
                labels
                    .get(LABEL_SANDBOX)
                    .and_then(|n| SandboxName::new(n.clone()).ok()),
            ) else {
                continue;
            };
            out.push(Found {
                id,
                name: sandbox,
                legacy: !labels.contains_key(LABEL_DATA_DIR),
                labels,
                running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                created: c.created,
            });
        }
        Ok(out)
    }

    /// Refuses to create when a container already has the name this sandbox's would
    /// get (it is not ours: ours were removed just before).
    async fn refuse_foreign(&self, name: &SandboxName) -> Result<()> {
        let cname = self.container_name(name);
        match self.docker.inspect_container(&cname, None).await {
            Ok(c) => {
                let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
                let whose = match labels.get(LABEL_DATA_DIR) {
                    Some(dir) if labels.get(LABEL_OWNER).map(String::as_str) == Some(OWNER) => {
                        format!(
                            "it belongs to the headstart data directory {dir} (or another scope)"
                        )
                    }
                    _ => "headstart did not create it".to_owned(),
                };
                Err(Error::provider(
                    PROVIDER,
                    format!(
                        "a container named {cname} exists but is not sandbox {name} of the data \
                         directory {}: {whose}; pick another sandbox name, or remove that \
                         container if you know it is unused (`docker rm -f {cname}`)",
                        self.data_dir.display()
                    ),
                ))
            }
            Err(e) if is_not_found(&e) => Ok(()),
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
            provider: self.clone(),
            id: c.id.clone().unwrap_or_default(),
            container: c
                .name
                .as_deref()
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| self.container_name(name)),
            start: label(LABEL_START),
            name: name.clone(),
            workspace: label(LABEL_WORKSPACE)
                .map(PathBuf::from)
                .unwrap_or_default(),
            workdir: label(LABEL_WORKSPACE_KIND).as_deref() == Some(KIND_WORKDIR),
            base: label(LABEL_BASE_SNAPSHOT).and_then(|s| SnapshotId::new(s).ok()),
            image: c.image.clone().unwrap_or_default(),
            env: BTreeMap::new(),
            held: Arc::default(),
        }
    }

    /// Opens the ready container `id` of sandbox `name`: re-makes the workspace's
    /// mount when it is gone (an overlay after a reboot) and starts the container when
    /// it is stopped. The mount must exist before `start`, which bind-mounts whatever
    /// is there.
    async fn open(&self, name: &SandboxName, id: &str) -> Result<DockerSandbox> {
        let c =
            self.docker.inspect_container(id, None).await.map_err(|e| {
                engine_error(format!("inspecting the container of sandbox {name}"), e)
            })?;
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
        Ok(sandbox)
    }

    /// Removes one container by id; `false` when it was already gone.
    async fn remove_container(&self, id: &str) -> Result<bool> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(engine_error(format!("removing container {id}"), e)),
        }
    }

    /// Removes everything of this data directory under `name`: the containers found
    /// (by id), the workspace (a user's workdir stays: only the record pointing at it
    /// goes) and the start record. Call with the name's lock held. Returns whether
    /// anything existed.
    async fn clear(&self, name: &SandboxName, found: &[Found]) -> Result<bool> {
        let mut any = false;
        for c in found {
            any |= self.remove_container(&c.id).await?;
        }
        match self.local.remove(name).await {
            Ok(()) => any = true,
            Err(Error::SandboxNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        any |= self.states.read(name)?.is_some();
        self.states.delete(name)?;
        Ok(any)
    }

    /// Takes the name's lock for an operation that should not wait long (a removal):
    /// a clear error when a start holds it.
    async fn lock_briefly(&self, name: &SandboxName, doing: &str) -> Result<StartLock> {
        let deadline = Instant::now().checked_add(Duration::from_secs(10));
        match self.states.lock(name, deadline, None).await {
            Err(Error::Timeout { .. }) => Err(self.states.busy(name, doing)),
            other => other,
        }
    }

    /// Creates sandbox `name` under its lock: the start record first (`creating`), then
    /// the container and workspace, bounded by `deadline` and `options.cancel`. A
    /// failure removes what this start made (by id) and its record.
    async fn create(
        &self,
        name: &SandboxName,
        options: &ConnectOptions,
        deadline: Option<Instant>,
    ) -> Result<DockerSandbox> {
        let mut record = StartRecord::begin(name);
        self.states.write(&record)?;
        let mut made = Made::default();
        let outcome = {
            let create = self.create_inner(name, options, &record.start, &mut made);
            bounded(
                create,
                deadline,
                options.timeout,
                options.cancel.as_ref(),
                name,
            )
            .await
        };
        let outcome = match outcome {
            Ok(mut sandbox) => {
                record.container = Some(sandbox.id.clone());
                if !options.defer_ready {
                    record.state = SandboxState::Ready;
                }
                sandbox.start = Some(record.start.clone());
                self.states.write(&record).map(|()| sandbox)
            }
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            // Nothing half-made stays: the container this call created and the
            // headstart workspace it made go (by id: never someone else's container);
            // a user's workdir is never touched.
            self.undo(name, &made).await;
            if let Err(e) = self.states.delete(name) {
                tracing::warn!(%name, %e, "could not remove the start record of a failed create");
            }
        }
        outcome
    }

    async fn undo(&self, name: &SandboxName, made: &Made) {
        if let Some(id) = &made.container {
            if let Err(e) = self.remove_container(id).await {
                tracing::warn!(%name, %e, "could not remove the container of a failed create");
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
        start: &str,
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
                    None => {
                        default_image(
                            &self.docker,
                            &self.config.base_image,
                            self.config.allow_pull,
                        )
                        .await?
                    }
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
        labels.extend(self.scope.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.insert(LABEL_OWNER.into(), OWNER.into());
        labels.insert(LABEL_SANDBOX.into(), name.to_string());
        labels.insert(LABEL_START.into(), start.to_owned());
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
            network_mode: self.config.network_mode.clone(),
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
            user: Some(user.clone()),
            host_config: Some(host_config),
            ..Default::default()
        };
        let cname = self.container_name(name);
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
        user::prepare(&self.docker, &created.id, &user).await?;
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

/// Runs a creation until it finishes, `deadline` passes or `cancel` is cancelled. Parts
/// of a creation run on blocking threads that a dropped future cannot stop: on a stop
/// it is let finish (bounded by [`CREATE_SETTLE`]) before the error returns, so the
/// caller's undo sees everything it made.
async fn bounded<T>(
    create: impl std::future::Future<Output = Result<T>>,
    deadline: Option<Instant>,
    limit: Option<Duration>,
    cancel: Option<&CancelToken>,
    name: &SandboxName,
) -> Result<T> {
    if deadline.is_none() && cancel.is_none() {
        return create.await;
    }
    tokio::pin!(create);
    let stop = async {
        loop {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Error::Cancelled {
                    what: format!("creating docker sandbox {name}"),
                };
            }
            let mut pause = Duration::from_millis(50);
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Error::Timeout {
                        what: format!("creating docker sandbox {name}"),
                        after: limit.unwrap_or_default(),
                    };
                }
                pause = pause.min(left);
            }
            tokio::time::sleep(pause).await;
        }
    };
    tokio::select! {
        biased;
        r = &mut create => r,
        e = stop => {
            let _ = tokio::time::timeout(CREATE_SETTLE, &mut create).await;
            Err(e)
        }
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
///
/// Files with more than one link are left alone: in a restored workspace they are the
/// snapshot's read-only git objects (a hardlink restore), and giving them away would
/// give the container's user the snapshot's files (an owner can `chmod` them back to
/// writable). They stay readable, which is all git needs of them.
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
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(p)?;
        if meta.is_file() && meta.nlink() > 1 {
            return Ok(());
        }
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if meta.is_dir() {
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

    /// The named sandbox if it is ready, ready to use: like a reconnect, its workspace
    /// mount is re-made and a stopped container started. A sandbox still `creating`
    /// (or interrupted) is not returned.
    async fn get(&self, name: &SandboxName) -> Result<Option<Box<dyn Sandbox>>> {
        let record = self.states.read(name)?;
        let found = self.ours(Some(name)).await?;
        let Some(c) = ready_container(record.as_ref(), &found) else {
            return Ok(None);
        };
        Ok(Some(Box::new(self.open(name, &c.id).await?)))
    }

    /// This data directory's containers (matching the scope labels), with their state:
    /// `ready` (or `stopped` when not running) for a completed start, `creating` for one
    /// in progress or interrupted.
    async fn list(&self) -> Result<Vec<SandboxInfo>> {
        let found = self.ours(None).await?;
        let mut records: HashMap<SandboxName, Option<StartRecord>> = HashMap::new();
        for c in &found {
            if !records.contains_key(&c.name) {
                records.insert(c.name.clone(), self.states.read(&c.name)?);
            }
        }
        let mut out = Vec::new();
        for c in &found {
            let same: Vec<Found> = found.iter().filter(|o| o.name == c.name).cloned().collect();
            let record = records.get(&c.name).and_then(Option::as_ref);
            let ready = ready_container(record, &same).is_some_and(|r| r.id == c.id);
            out.push(SandboxInfo {
                name: c.name.clone(),
                id: c.id.clone(),
                provider: PROVIDER.into(),
                workspace: c
                    .labels
                    .get(LABEL_WORKSPACE)
                    .map(PathBuf::from)
                    .unwrap_or_default(),
                base_snapshot: c
                    .labels
                    .get(LABEL_BASE_SNAPSHOT)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| SnapshotId::new(s.clone()).ok()),
                running: c.running,
                state: match (ready, c.running) {
                    (false, _) => SandboxState::Creating,
                    (true, true) => SandboxState::Ready,
                    (true, false) => SandboxState::Stopped,
                },
                created_at: c
                    .created
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Removes this data directory's sandbox `name` (every container of it, its
    /// workspace and record), whatever its state. Waits briefly for a start of the name
    /// in progress, then fails saying so. Another data directory's container of the
    /// same name is never touched.
    async fn remove(&self, name: &SandboxName) -> Result<()> {
        let _lock = self.lock_briefly(name, "remove").await?;
        let found = self.ours(Some(name)).await?;
        if self.clear(name, &found).await? {
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
///
/// Cloning shares the name's lock when this handle holds it (a start with
/// [`ConnectOptions::defer_ready`]): [`Sandbox::mark_ready`] and [`Sandbox::remove`]
/// through any clone release it.
#[derive(Debug, Clone)]
pub struct DockerSandbox {
    provider: DockerProvider,
    id: String,
    /// The container's name.
    container: String,
    /// The start that made it ([`LABEL_START`]; `None` for an older version's).
    start: Option<String>,
    name: SandboxName,
    workspace: PathBuf,
    workdir: bool,
    base: Option<SnapshotId>,
    image: String,
    /// Env from the `connect` that returned this handle (on top of the container's).
    env: BTreeMap<String, String>,
    /// The name's lock, while this handle's start is `creating`.
    held: Arc<std::sync::Mutex<Option<StartLock>>>,
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

    /// The held lock slot (a poisoned mutex still holds a valid lock).
    fn held(&self) -> std::sync::MutexGuard<'_, Option<StartLock>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DockerSandbox {
    /// The container name.
    pub fn container_name(&self) -> &str {
        &self.container
    }

    /// True while this handle holds the name's lock (created with
    /// [`ConnectOptions::defer_ready`] and not yet marked ready or removed).
    pub fn holds_start_lock(&self) -> bool {
        self.held().is_some()
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
            &self.provider.docker,
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
        exec::run(&self.provider.docker, &self.id, &self.with_env(request)).await
    }

    /// Stores the workspace through the local store (written aside, then renamed into
    /// place), then commits the container to `headstart-snapshot/<key>:<id>` with the
    /// metadata in labels. The store lists images, so the snapshot appears only once
    /// both exist; a failed commit removes the stored workspace.
    async fn snapshot(&self, request: &SnapshotRequest) -> Result<SnapshotMeta> {
        let ws = self.provider.local.get(&self.name).await?.ok_or_else(|| {
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
            let labels = self.provider.store.image_labels(&meta)?;
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
            self.provider
                .docker
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
                if let Err(e) = self.provider.store.write_image_pin(&meta) {
                    tracing::warn!(snapshot = %id, %e, "could not write the image pin beside the manifest");
                }
                tracing::info!(snapshot = %id, name = %request.name, "docker snapshot ready");
                Ok(meta)
            }
            Err(e) => {
                if let Err(cleanup) = self.provider.store.workspaces().delete(&id).await {
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
        match self
            .provider
            .docker
            .kill_container(&self.id, Some(options))
            .await
        {
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
        let mut wait = self.provider.docker.wait_container(
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

    /// Writes the start record `ready` and releases the name's lock (a waiting
    /// `connect` of the name then reconnects to this sandbox). A no-op for a handle
    /// that holds no lock (reconnected, or already ready).
    async fn mark_ready(&self) -> Result<()> {
        let mut held = self.held();
        let Some(lock) = held.as_ref() else {
            return Ok(());
        };
        let states = &self.provider.states;
        let mut record = states
            .read(lock.name())?
            .filter(|r| Some(&r.start) == self.start.as_ref())
            .unwrap_or_else(|| StartRecord::begin(&self.name));
        record.state = SandboxState::Ready;
        record.container = Some(self.id.clone());
        if let Some(start) = &self.start {
            record.start.clone_from(start);
        }
        states.write(&record)?;
        *held = None;
        tracing::info!(name = %self.name, container = %self.id, "docker sandbox ready");
        Ok(())
    }

    /// Removes this sandbox: its container (by id) and, when it is still the name's
    /// current sandbox, its workspace (a user's workdir stays) and start record. Uses
    /// the name's lock this handle holds (a `creating` sandbox), else takes it (waiting
    /// briefly). Another data directory's sandbox of the same name is never touched,
    /// nor a newer sandbox that replaced this one.
    async fn remove(&self) -> Result<()> {
        let held = self.held().take();
        let _lock = match held {
            Some(lock) => lock,
            None => self.provider.lock_briefly(&self.name, "remove").await?,
        };
        let states = &self.provider.states;
        let record = states.read(&self.name)?;
        let current = match &record {
            Some(r) => {
                r.container.as_deref() == Some(self.id.as_str())
                    || (self.start.as_ref() == Some(&r.start) && !r.start.is_empty())
            }
            None => self.start.is_none(),
        };
        self.provider.remove_container(&self.id).await?;
        if current {
            match self.provider.local.remove(&self.name).await {
                Ok(()) | Err(Error::SandboxNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            states.delete(&self.name)?;
        }
        Ok(())
    }
}
