//! Creating a sandbox under its name's lock: the start record, then the image, the
//! workspace, the labels and the container, each a step of its own, bounded by the
//! start's deadline and cancellation; a failure undoes what this start made (by id).
//!
//! What it is not: deciding whether to create (reconnecting is `provider.rs`) or
//! building images (`image.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount, MountType, PortBinding,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use sandbox_core::{
    CancelToken, ConnectOptions, Error, Result, SandboxName, SandboxProvider, SandboxState,
};

use super::engine::engine_error;
use super::state::StartRecord;
use super::{
    DockerProvider, DockerSandbox, KIND_MANAGED, KIND_WORKDIR, LABEL_BASE_SNAPSHOT, LABEL_EXPIRES,
    LABEL_OWNER, LABEL_SANDBOX, LABEL_SNAPSHOT_KEY, LABEL_START, LABEL_WORKSPACE,
    LABEL_WORKSPACE_KIND, OWNER, PROVIDER, WORKSPACE_MOUNT, default_image, ensure_image, user,
};

/// How long a timed-out creation may still run before its leftovers are removed.
const CREATE_SETTLE: Duration = Duration::from_secs(60);

impl DockerProvider {
    /// Creates sandbox `name` under its lock: the start record first (`creating`), then
    /// the container and workspace, bounded by `deadline` and `options.cancel`. A
    /// failure removes what this start made (by id) and its record.
    pub(super) async fn create(
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

    /// The steps of a creation, in order: the image, the workspace, the container.
    /// Records in `made` what needs undoing should a later step fail.
    async fn create_inner(
        &self,
        name: &SandboxName,
        options: &ConnectOptions,
        start: &str,
        made: &mut Made,
    ) -> Result<DockerSandbox> {
        let (image, base_key) = self.resolve_image(options).await?;
        let user = self.user();
        let workspace = self.make_workspace(name, options, &user, made).await?;
        let labels = self.container_labels(name, options, start, base_key, &workspace);
        let body = self.container_body(&image, options, labels, &workspace, &user);
        let cname = self.container_name(name);
        let id = self.create_container(&cname, body, made).await?;
        let c = self.start_and_check(&cname, &id, &user).await?;
        tracing::info!(%name, container = %id, %image, "docker sandbox created");
        Ok(self.sandbox_from(name, &c))
    }

    /// The image first (cheapest to fail): the snapshot's, pinned by id, or the
    /// requested/default one, or the offline base image. Returns the image id and the
    /// snapshot key when restoring one.
    async fn resolve_image(&self, options: &ConnectOptions) -> Result<(String, Option<String>)> {
        Ok(match &options.base_snapshot {
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
        })
    }

    /// The workspace, through the local provider: empty, restored from the
    /// snapshot's stored workspace (overlay mounts happen here, before the container
    /// starts), or the user's own directory. A headstart workspace is handed to the
    /// container `user` ([`chown_for`]).
    async fn make_workspace(
        &self,
        name: &SandboxName,
        options: &ConnectOptions,
        user: &str,
        made: &mut Made,
    ) -> Result<PathBuf> {
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
        if options.workdir.is_none() {
            let (ws, user) = (workspace.clone(), user.to_owned());
            tokio::task::spawn_blocking(move || chown_for(&ws, &user))
                .await
                .map_err(|e| {
                    Error::provider(PROVIDER, format!("a background task failed: {e}"))
                })??;
        }
        Ok(workspace)
    }

    /// The container's labels: the connect's own, the scope, then what this provider
    /// reads back (owner, name, start, base snapshot and key, workspace and its kind,
    /// expiry).
    fn container_labels(
        &self,
        name: &SandboxName,
        options: &ConnectOptions,
        start: &str,
        base_key: Option<String>,
        workspace: &Path,
    ) -> HashMap<String, String> {
        let workdir = options.workdir.is_some();
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
        labels
    }

    /// The container's definition: the image, the keep-alive entrypoint, env, labels,
    /// the user, the workspace mounted at [`WORKSPACE_MOUNT`], resource limits and the
    /// network.
    fn container_body(
        &self,
        image: &str,
        options: &ConnectOptions,
        labels: HashMap<String, String>,
        workspace: &Path,
        user: &str,
    ) -> ContainerCreateBody {
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
            // The host as the container sees it (the credential broker listens there);
            // with the host's network the container reaches it at 127.0.0.1 instead.
            extra_hosts: (self.config.network_mode.as_deref() != Some("host"))
                .then(|| vec!["host.docker.internal:host-gateway".to_owned()]),
            // published on the host's loopback only, never on every interface
            port_bindings: (!options.ports.is_empty()).then(|| {
                options
                    .ports
                    .iter()
                    .map(|p| {
                        let binding = PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some(p.host.map(|h| h.to_string()).unwrap_or_default()),
                        };
                        (format!("{}/tcp", p.container), Some(vec![binding]))
                    })
                    .collect()
            }),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(image.to_owned()),
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
            exposed_ports: (!options.ports.is_empty()).then(|| {
                options
                    .ports
                    .iter()
                    .map(|p| format!("{}/tcp", p.container))
                    .collect()
            }),
            working_dir: Some(WORKSPACE_MOUNT.into()),
            user: Some(user.to_owned()),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    /// Creates container `cname` from `body` and records its id in `made`.
    async fn create_container(
        &self,
        cname: &str,
        body: ContainerCreateBody,
        made: &mut Made,
    ) -> Result<String> {
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(cname).build()),
                body,
            )
            .await
            .map_err(|e| engine_error(format!("creating container {cname}"), e))?;
        made.container = Some(created.id.clone());
        Ok(created.id)
    }

    /// Gives the container's `user` a passwd entry and a home when it needs one, starts
    /// the container and checks that its keep-alive is still running.
    async fn start_and_check(
        &self,
        cname: &str,
        id: &str,
        user: &str,
    ) -> Result<ContainerInspectResponse> {
        user::prepare(&self.docker, id, user).await?;
        self.docker.start_container(id, None).await.map_err(|e| {
            let said = e.to_string();
            if said.contains("port is already allocated") || said.contains("address already in use")
            {
                // the caller's choice of host port, not the image: say so, and no retry
                return Error::InvalidOptions(format!(
                    "cannot start container {cname}: a host port it publishes is already in \
                     use ({}); publish another host port, or stop what holds that one",
                    sandbox_core::scrub(&said)
                ));
            }
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
            .inspect_container(id, None)
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
        Ok(c)
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
