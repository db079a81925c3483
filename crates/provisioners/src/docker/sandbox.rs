//! [`DockerSandbox`]: one container and its host workspace; exec, interactive exec,
//! snapshots (stored workspace plus committed image), stop, mark ready and remove.
//!
//! What it is not: how containers are found or created (`lookup.rs`, `create.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bollard::query_parameters::{CommitContainerOptionsBuilder, KillContainerOptionsBuilder};
use futures_util::StreamExt;
use sandbox_core::{
    Error, ExecOutput, ExecRequest, PublishedPort, Result, Sandbox, SandboxName, SandboxProvider,
    SandboxState, SnapshotId, SnapshotMeta, SnapshotRequest, SnapshotStore,
};

use super::engine::{engine_error, is_not_found};
use super::state::{StartLock, StartRecord};
use super::{DockerProvider, PROVIDER, exec, snapshot_image_repo};

/// One Docker sandbox: a container and its host workspace.
///
/// Cloning shares the name's lock when this handle holds it (a start with
/// [`ConnectOptions::defer_ready`](sandbox_core::ConnectOptions::defer_ready)): [`Sandbox::mark_ready`] and [`Sandbox::remove`]
/// through any clone release it.
#[derive(Debug, Clone)]
pub struct DockerSandbox {
    pub(super) provider: DockerProvider,
    pub(super) id: String,
    /// The container's name.
    pub(super) container: String,
    /// The start that made it ([`LABEL_START`]; `None` for an older version's).
    pub(super) start: Option<String>,
    pub(super) name: SandboxName,
    pub(super) workspace: PathBuf,
    pub(super) workdir: bool,
    pub(super) base: Option<SnapshotId>,
    pub(super) image: String,
    /// Env from the `connect` that returned this handle (on top of the container's).
    pub(super) env: BTreeMap<String, String>,
    /// The name's lock, while this handle's start is `creating`.
    pub(super) held: Arc<std::sync::Mutex<Option<StartLock>>>,
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
    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, Option<StartLock>> {
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
    /// [`ConnectOptions::defer_ready`](sandbox_core::ConnectOptions::defer_ready) and not yet marked ready or removed).
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

    /// The container's published TCP ports, from its inspect (so a reconnect sees
    /// them): `127.0.0.1:HOST` each, sorted by container port.
    async fn ports(&self) -> Result<Option<Vec<PublishedPort>>> {
        let c = self
            .provider
            .docker
            .inspect_container(&self.id, None)
            .await
            .map_err(|e| {
                engine_error(
                    format!("inspecting the container of sandbox {}", self.name),
                    e,
                )
            })?;
        Ok(Some(published_ports(
            c.network_settings.and_then(|n| n.ports).unwrap_or_default(),
        )))
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
        let lock = match held {
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
            lock.unlink();
        }
        Ok(())
    }
}

/// The bound ports of an inspect's port map (`"3000/tcp" → [127.0.0.1:49153]`).
pub(super) fn published_ports(map: bollard::models::PortMap) -> Vec<PublishedPort> {
    let mut out: Vec<PublishedPort> = map
        .into_iter()
        .filter_map(|(key, bindings)| {
            let container = key.strip_suffix("/tcp")?.parse().ok()?;
            let b = bindings?
                .into_iter()
                .find(|b| b.host_port.as_deref().is_some_and(|p| !p.is_empty()))?;
            let ip = b
                .host_ip
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            Some(PublishedPort {
                container,
                host_address: format!("{ip}:{}", b.host_port.unwrap_or_default()),
            })
        })
        .collect();
    out.sort_by_key(|p| p.container);
    out
}
