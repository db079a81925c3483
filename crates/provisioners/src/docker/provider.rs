//! [`DockerProvider`]: the provider's state, reconnecting or starting a sandbox under
//! the name's lock, pruning, and the [`SandboxProvider`] impl.
//!
//! What it is not: finding containers (`lookup.rs`), creating them (`create.rs`) or a
//! sandbox's own operations (`sandbox.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use sandbox_core::{
    ConnectOptions, Connected, Error, PruneReport, Result, Sandbox, SandboxInfo, SandboxName,
    SandboxProvider, SandboxState, SnapshotId, SnapshotStore,
};

use super::config::canonical_dir;
use super::engine::engine_error;
use super::lookup::{Found, ready_container};
use super::state::{StartLock, StartRecord, StateDir};
use super::{
    DockerConfig, DockerSandbox, DockerSnapshotStore, KIND_WORKDIR, LABEL_BASE_SNAPSHOT,
    LABEL_DATA_DIR, LABEL_EXPIRES, LABEL_START, LABEL_WORKSPACE, LABEL_WORKSPACE_KIND, PROVIDER,
    connect_from_env, container_name, host_user,
};
use crate::local::{LocalProvider, RestoreMethod};

/// Sandboxes as Docker containers. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct DockerProvider {
    pub(super) docker: Docker,
    pub(super) config: Arc<DockerConfig>,
    pub(super) local: LocalProvider,
    pub(super) store: Arc<DockerSnapshotStore>,
    /// The canonical data directory (labels, container names).
    pub(super) data_dir: Arc<PathBuf>,
    /// The scope labels plus [`LABEL_DATA_DIR`]: on everything made, required of
    /// everything touched.
    pub(super) scope: Arc<BTreeMap<String, String>>,
    pub(super) states: StateDir,
}

impl DockerProvider {
    /// A provider on an engine connection (see [`connect`](super::connect)). Workspaces and stored
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
    /// As [`connect`](super::connect).
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

    /// The snapshot store, typed (for [`SnapshotStore::gc`](sandbox_core::SnapshotStore::gc) and more).
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
        let mut record = self.states.read(&name)?;
        if !options.force_create {
            if let Some(r) = record.as_mut().filter(|r| r.hibernated.is_some()) {
                self.wake(&name, r).await?;
            }
        }
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
        let sandbox = match self.create(&name, options, deadline).await {
            Ok(s) => s,
            Err(e) => {
                // a failed start leaves no record: its name no longer exists
                if matches!(self.states.read(&name), Ok(None)) {
                    lock.unlink();
                }
                return Err(e);
            }
        };
        if options.defer_ready {
            *sandbox.held() = Some(lock);
        }
        Ok((sandbox, Connected::Created))
    }

    async fn prune_containers(&self) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let mut names: Vec<SandboxName> = self.states.names()?;
        names.extend(self.ours(None).await?.into_iter().map(|c| c.name));
        // workspaces whose own record is ready (unfinished ones are the local prune's)
        names.extend(
            self.local
                .list()
                .await?
                .into_iter()
                .filter(|i| !i.state.is_unfinished())
                .map(|i| i.name),
        );
        names.sort();
        names.dedup();
        let grace = Duration::from_secs(60);
        for name in names {
            let Some(_lock) = self.states.try_lock(&name)? else {
                tracing::debug!(%name, "prune skips a sandbox being started or removed");
                report.busy.push(name);
                continue;
            };
            let record = self.states.read(&name)?;
            let found = self.ours(Some(&name)).await?;
            if let Some(h) = record.as_ref().and_then(|r| r.hibernated.as_ref()) {
                // hibernated: no container to find, kept until its TTL passes
                let expires = h.label(LABEL_EXPIRES).and_then(|v| v.parse::<u64>().ok());
                if expires.is_some_and(|t| t <= now) {
                    self.clear(&name, &found).await?;
                    report.expired.push(name);
                }
                continue;
            }
            if let Some(c) = ready_container(record.as_ref(), &found) {
                let expires = c
                    .labels
                    .get(LABEL_EXPIRES)
                    .and_then(|v| v.parse::<u64>().ok());
                if expires.is_some_and(|t| t <= now) {
                    self.clear(&name, &found).await?;
                    report.expired.push(name);
                } else if c
                    .labels
                    .get(LABEL_WORKSPACE)
                    .is_some_and(|w| workspace_gone(Path::new(w)))
                {
                    tracing::info!(%name, "removing a docker sandbox whose workspace is gone");
                    self.clear(&name, &found).await?;
                    report.orphans.push(name);
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
        report.stale_locks += self.prune_locks().await?;
        self.local.prune().await?;
        Ok(report)
    }

    /// Unlinks the lock files of names with neither a record nor a container, each
    /// while holding it (a busy one is skipped): what a removal or a failed start
    /// could not remove, and what older versions left (one per name ever tried).
    async fn prune_locks(&self) -> Result<usize> {
        let mut removed = 0;
        for name in self.states.lock_names()? {
            if self.states.read(&name)?.is_some() {
                continue;
            }
            let Some(lock) = self.states.try_lock(&name)? else {
                continue;
            };
            // under the lock nobody is starting it: check again, then unlink
            if self.states.read(&name)?.is_some() || !self.ours(Some(&name)).await?.is_empty() {
                continue;
            }
            lock.unlink();
            removed += 1;
        }
        Ok(removed)
    }

    /// The user containers run as.
    pub(super) fn user(&self) -> String {
        self.config.user.clone().unwrap_or_else(host_user)
    }

    pub(super) fn sandbox_from(
        &self,
        name: &SandboxName,
        c: &ContainerInspectResponse,
    ) -> DockerSandbox {
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

    /// Takes the name's lock for an operation that should not wait long (a removal):
    /// a clear error when a start holds it.
    pub(super) async fn lock_briefly(&self, name: &SandboxName, doing: &str) -> Result<StartLock> {
        let deadline = Instant::now().checked_add(Duration::from_secs(10));
        match self.states.lock(name, deadline, None).await {
            Err(Error::Timeout { .. }) => Err(self.states.busy(name, doing)),
            other => other,
        }
    }
}

#[async_trait]
impl SandboxProvider for DockerProvider {
    fn kind(&self) -> &'static str {
        PROVIDER
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
    async fn prune(&self) -> Result<PruneReport> {
        self.prune_containers().await
    }

    async fn connect(&self, options: &ConnectOptions) -> Result<(Box<dyn Sandbox>, Connected)> {
        let (sandbox, how) = self.connect_sandbox(options).await?;
        Ok((Box::new(sandbox), how))
    }

    /// The named sandbox if it is ready, ready to use: like a reconnect, its workspace
    /// mount is re-made, a stopped container started and a hibernated one made again.
    /// A sandbox still `creating` (or interrupted) is not returned.
    async fn get(&self, name: &SandboxName) -> Result<Option<Box<dyn Sandbox>>> {
        let mut record = self.states.read(name)?;
        if record.as_ref().is_some_and(|r| r.hibernated.is_some()) {
            let _lock = self.lock_briefly(name, "resume").await?;
            record = self.states.read(name)?;
            if let Some(r) = record.as_mut().filter(|r| r.hibernated.is_some()) {
                self.wake(name, r).await?;
            }
        }
        let found = self.ours(Some(name)).await?;
        let Some(c) = ready_container(record.as_ref(), &found) else {
            return Ok(None);
        };
        Ok(Some(Box::new(self.open(name, &c.id).await?)))
    }

    /// This data directory's containers (matching the scope labels), with their state:
    /// `ready` (or `stopped` when not running) for a completed start; for one that did
    /// not complete, `creating` while a start holds the name's lock and `interrupted`
    /// once nobody does (its process died: the lock test `prune` uses, the record read
    /// again under the lock); a hibernated sandbox (no container, no id) is `stopped`.
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
            let mut ready = ready_container(record, &same).is_some_and(|r| r.id == c.id);
            let mut interrupted = false;
            if !ready {
                if let Some(_lock) = self.states.try_lock(&c.name)? {
                    // nobody starts it: unless the start completed meanwhile, it died
                    let record = self.states.read(&c.name)?;
                    ready = ready_container(record.as_ref(), &same).is_some_and(|r| r.id == c.id);
                    interrupted = !ready;
                }
            }
            let workspace = c
                .labels
                .get(LABEL_WORKSPACE)
                .map(PathBuf::from)
                .unwrap_or_default();
            let gone = ready && workspace_gone(&workspace);
            out.push(SandboxInfo {
                name: c.name.clone(),
                id: c.id.clone(),
                provider: PROVIDER.into(),
                workspace,
                base_snapshot: c
                    .labels
                    .get(LABEL_BASE_SNAPSHOT)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| SnapshotId::new(s.clone()).ok()),
                running: c.running && !gone,
                state: match (ready, c.running) {
                    _ if gone => SandboxState::Broken,
                    (false, _) if interrupted => SandboxState::Interrupted,
                    (false, _) => SandboxState::Creating,
                    (true, true) => SandboxState::Ready,
                    (true, false) => SandboxState::Stopped,
                },
                created_at: c
                    .created
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()),
            });
        }
        // hibernated sandboxes have no container: their records say what they are
        for name in self.states.names()? {
            if found.iter().any(|c| c.name == name) {
                continue;
            }
            let Some(record) = self.states.read(&name)? else {
                continue;
            };
            let Some(h) = &record.hibernated else {
                continue;
            };
            out.push(SandboxInfo {
                name: name.clone(),
                id: String::new(),
                provider: PROVIDER.into(),
                workspace: h
                    .label(LABEL_WORKSPACE)
                    .map(PathBuf::from)
                    .unwrap_or_default(),
                base_snapshot: h
                    .label(LABEL_BASE_SNAPSHOT)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| SnapshotId::new(s.to_owned()).ok()),
                running: false,
                state: SandboxState::Stopped,
                created_at: i64::try_from(record.created_at)
                    .ok()
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
        let lock = self.lock_briefly(name, "remove").await?;
        let found = self.ours(Some(name)).await?;
        if self.clear(name, &found).await? {
            lock.unlink();
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

/// True when a sandbox's host workspace `dir` was removed from outside headstart (an
/// empty label says nothing).
fn workspace_gone(dir: &Path) -> bool {
    !dir.as_os_str().is_empty() && !dir.exists()
}
