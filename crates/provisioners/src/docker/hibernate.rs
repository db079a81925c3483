//! Stopping a Docker sandbox by name, hibernating it, and waking a hibernated one.
//!
//! - **Stop** ([`DockerProvider::stop_sandbox`]): the container is killed (its
//!   keep-alive has nothing to shut down). Container, image, workspace and start record
//!   stay; the next open (`get`, a reconnecting `connect`) starts it again.
//! - **Hibernate** ([`DockerProvider::hibernate`]): the container is stopped, committed
//!   to the image `headstart-hibernated:<container name>` ([`HIBERNATED_IMAGE_REPO`]:
//!   its filesystem, so tools installed outside the workspace are kept) and removed.
//!   The start record keeps the image and the container's definition (entrypoint, env,
//!   labels, user, the workspace mount, network, published ports and the host ports
//!   they had). The workspace is a host directory bind-mounted at `/workspace`, never
//!   part of the image: it stays as it is, byte for byte, uncommitted changes included.
//! - **Wake** (`wake`, under the name's lock, from `get` and `connect`): the container
//!   is made again from that definition and image, on the host ports it had when they
//!   are free (else on new ones, as first asked), and started; the record names it and
//!   is `ready` as before.
//!
//! Crash safety: the record names the image before the container is removed, and a
//! wake that still finds the container starts it instead of making another. Nothing
//! here deletes a workspace; `remove` (and `prune` past a TTL) delete a hibernated
//! sandbox's image with it. Each hibernation of a container made from an earlier one
//! adds a layer on top of it (Docker allows 125).

use std::time::{SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, PortMap};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use sandbox_core::{Error, PublishedPort, Result, Sandbox, SandboxName, SandboxProvider};
use serde::{Deserialize, Serialize};

use super::engine::{engine_error, is_not_found};
use super::lookup::ready_container;
use super::sandbox::published_ports;
use super::state::StartRecord;
use super::{DockerProvider, LABEL_DATA_DIR, PROVIDER};

/// The repository of hibernated sandboxes' images (tag: the container name).
pub const HIBERNATED_IMAGE_REPO: &str = "headstart-hibernated";
/// Label on a hibernated sandbox's image (the sandbox name), and on a container made
/// again from one (the image's id: removed with the container).
pub const LABEL_HIBERNATED: &str = "dev.headstart.hibernated";

/// What the start record keeps of a hibernated sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hibernation {
    /// The committed image's id.
    pub(crate) image: String,
    /// Its reference (`headstart-hibernated:<container name>`).
    pub(crate) tag: String,
    /// The container's definition, `image` in it.
    pub(crate) body: ContainerCreateBody,
    /// The host ports the container had (tried first on wake).
    #[serde(default)]
    pub(crate) bound_ports: Option<PortMap>,
    /// When it was hibernated (unix seconds).
    pub(crate) at: u64,
}

impl Hibernation {
    /// A label of the hibernated container (`LABEL_EXPIRES`, ...).
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.body
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map(String::as_str)
    }
}

/// What [`DockerProvider::hibernate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hibernated {
    /// The image holding the container's filesystem.
    pub image: String,
    /// True when the sandbox was already hibernated (nothing was done).
    pub already: bool,
}

impl DockerProvider {
    /// True when sandbox `name` is hibernated (its container committed and removed).
    ///
    /// # Errors
    /// When its start record cannot be read.
    pub fn is_hibernated(&self, name: &SandboxName) -> Result<bool> {
        Ok(self
            .states
            .read(name)?
            .is_some_and(|r| r.hibernated.is_some()))
    }

    /// The published ports of sandbox `name`, read from its container without starting
    /// it (a listing must not wake a stopped sandbox); empty when it has no container.
    ///
    /// # Errors
    /// [`Error::Provider`] when the engine fails.
    pub async fn published_ports(&self, name: &SandboxName) -> Result<Vec<PublishedPort>> {
        let record = self.states.read(name)?;
        let found = self.ours(Some(name)).await?;
        let Some(c) = ready_container(record.as_ref(), &found) else {
            return Ok(Vec::new());
        };
        let c = self.inspect(name, &c.id).await?;
        Ok(published_ports(
            c.network_settings.and_then(|n| n.ports).unwrap_or_default(),
        ))
    }

    /// Stops sandbox `name`'s container (it is kept, with its workspace); `false` when
    /// it was not running (stopped or hibernated). Waits briefly for a start of the
    /// name in progress, then fails saying so.
    ///
    /// # Errors
    /// [`Error::SandboxNotFound`] when there is no ready sandbox of that name;
    /// [`Error::Provider`] when the engine fails.
    pub async fn stop_sandbox(&self, name: &SandboxName) -> Result<bool> {
        let _lock = self.lock_briefly(name, "stop").await?;
        let record = self.states.read(name)?;
        if record.as_ref().is_some_and(|r| r.hibernated.is_some()) {
            return Ok(false);
        }
        let found = self.ours(Some(name)).await?;
        let Some(c) = ready_container(record.as_ref(), &found) else {
            return Err(not_found(name));
        };
        if !c.running {
            return Ok(false);
        }
        let c = self.inspect(name, &c.id).await?;
        self.sandbox_from(name, &c).stop().await?;
        tracing::info!(%name, "docker sandbox stopped");
        Ok(true)
    }

    /// Hibernates sandbox `name`: stops its container, commits it to the image
    /// `headstart-hibernated:<container name>` (its filesystem: tools installed outside
    /// the workspace are kept) and removes it; the start record keeps the image and the
    /// container's definition, and the next `get` or reconnecting `connect` makes the
    /// container again from them (on the host ports it had, when free). The workspace,
    /// a host directory bind-mounted at `/workspace`, stays as it is.
    ///
    /// # Errors
    /// [`Error::SandboxNotFound`] when there is no ready sandbox of that name;
    /// [`Error::Provider`] when the engine fails (the container is then kept).
    pub async fn hibernate(&self, name: &SandboxName) -> Result<Hibernated> {
        let _lock = self.lock_briefly(name, "hibernate").await?;
        let mut record = self.states.read(name)?.ok_or_else(|| not_found(name))?;
        let found = self.ours(Some(name)).await?;
        if let Some(h) = record.hibernated.clone() {
            // finish one interrupted before its container was removed
            if let Some(id) = record.container.take() {
                if found.iter().any(|c| c.id == id) {
                    self.remove_container(&id).await?;
                }
                self.states.write(&record)?;
            }
            return Ok(Hibernated {
                image: h.tag,
                already: true,
            });
        }
        let Some(c) = ready_container(Some(&record), &found) else {
            return Err(not_found(name));
        };
        let id = c.id.clone();
        let inspect = self.inspect(name, &id).await?;
        self.sandbox_from(name, &inspect).stop().await?;
        let tag = self.container_name(name);
        let mut labels = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        labels.insert(LABEL_HIBERNATED.into(), name.to_string());
        let options = CommitContainerOptionsBuilder::default()
            .container(&id)
            .repo(HIBERNATED_IMAGE_REPO)
            .tag(&tag)
            .comment(&format!("headstart: sandbox {name}, hibernated"))
            .pause(false)
            .build();
        let config = bollard::models::ContainerConfig {
            labels: Some(labels),
            ..Default::default()
        };
        let committed = self
            .docker
            .commit_container(options, config)
            .await
            .map_err(|e| engine_error(format!("committing sandbox {name} to an image"), e))?;
        record.hibernated = Some(Hibernation {
            body: recreate_body(&inspect, &committed.id),
            bound_ports: inspect
                .network_settings
                .as_ref()
                .and_then(|n| n.ports.clone()),
            image: committed.id.clone(),
            tag: format!("{HIBERNATED_IMAGE_REPO}:{tag}"),
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        self.states.write(&record)?;
        self.remove_container(&id).await?;
        record.container = None;
        self.states.write(&record)?;
        // The image it ran from, when an earlier hibernation made it, is the new one's
        // parent layer: it goes when the new one is removed (`remove`, `prune`).
        tracing::info!(%name, image = %committed.id, "docker sandbox hibernated");
        Ok(Hibernated {
            image: format!("{HIBERNATED_IMAGE_REPO}:{tag}"),
            already: false,
        })
    }

    /// Makes the container of a hibernated sandbox again and starts it; `record` then
    /// names it and is no longer hibernated. Call with the name's lock held.
    pub(super) async fn wake(&self, name: &SandboxName, record: &mut StartRecord) -> Result<()> {
        let Some(h) = record.hibernated.clone() else {
            return Ok(());
        };
        let found = self.ours(Some(name)).await?;
        let kept = record
            .container
            .as_ref()
            .is_some_and(|id| found.iter().any(|c| &c.id == id));
        if !kept {
            // the workspace's mount (an overlay) must exist before the container starts
            if self.local.get(name).await?.is_none() {
                return Err(Error::provider(
                    PROVIDER,
                    format!(
                        "sandbox {name} is hibernated but its workspace record is gone; \
                         recreate it"
                    ),
                ));
            }
            let id = match self.recreate(name, &h, true).await {
                Ok(id) => id,
                Err(e) if h.bound_ports.is_some() => {
                    tracing::info!(%name, error = %e, "the host ports it had are taken: new ones");
                    self.recreate(name, &h, false).await?
                }
                Err(e) => return Err(e),
            };
            record.container = Some(id);
        }
        record.hibernated = None;
        self.states.write(record)?;
        tracing::info!(%name, "docker sandbox woken from hibernation");
        Ok(())
    }

    /// Creates and starts the container of `h` (on its old host ports when `pinned`);
    /// removes it again when it does not start.
    async fn recreate(&self, name: &SandboxName, h: &Hibernation, pinned: bool) -> Result<String> {
        let mut body = h.body.clone();
        body.labels
            .get_or_insert_with(Default::default)
            .insert(LABEL_HIBERNATED.into(), h.image.clone());
        if let (true, Some(bound), Some(host)) =
            (pinned, h.bound_ports.clone(), body.host_config.as_mut())
        {
            host.port_bindings = Some(bound);
        }
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
            .map_err(|e| engine_error(format!("re-creating container {cname}"), e))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove_container(&created.id).await;
            return Err(engine_error(format!("starting container {cname}"), e));
        }
        Ok(created.id)
    }

    /// Deletes a hibernated sandbox's image (best effort; only one carrying this data
    /// directory's hibernation labels).
    pub(super) async fn remove_hibernated_image(&self, image: &str) {
        let dir = self.data_dir.display().to_string();
        let ours = match self.docker.inspect_image(image).await {
            Ok(i) => i.config.and_then(|c| c.labels).is_some_and(|l| {
                l.contains_key(LABEL_HIBERNATED)
                    && l.get(LABEL_DATA_DIR).map(String::as_str) == Some(dir.as_str())
            }),
            Err(e) if is_not_found(&e) => return,
            Err(e) => {
                tracing::warn!(%image, %e, "could not inspect a hibernated image");
                return;
            }
        };
        if !ours {
            return;
        }
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        if let Err(e) = self.docker.remove_image(image, Some(options), None).await {
            if !is_not_found(&e) {
                tracing::warn!(%image, %e, "could not remove a hibernated image");
            }
        }
    }

    async fn inspect(&self, name: &SandboxName, id: &str) -> Result<ContainerInspectResponse> {
        self.docker
            .inspect_container(id, None)
            .await
            .map_err(|e| engine_error(format!("inspecting the container of sandbox {name}"), e))
    }
}

fn not_found(name: &SandboxName) -> Error {
    Error::SandboxNotFound {
        name: name.to_string(),
    }
}

/// What creates the container of `c` again from `image`: its entrypoint, command, env,
/// labels, user, working directory, exposed ports and host configuration (mounts,
/// network, port bindings as first asked, limits).
fn recreate_body(c: &ContainerInspectResponse, image: &str) -> ContainerCreateBody {
    let config = c.config.clone().unwrap_or_default();
    ContainerCreateBody {
        image: Some(image.to_owned()),
        entrypoint: config.entrypoint,
        cmd: config.cmd,
        env: config.env,
        labels: config.labels,
        exposed_ports: config.exposed_ports,
        working_dir: config.working_dir,
        user: config.user,
        tty: config.tty,
        host_config: c.host_config.clone(),
        ..Default::default()
    }
}
