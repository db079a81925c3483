//! Cloud VM hosts on DigitalOcean, Hetzner Cloud and Google Compute Engine, over their
//! REST APIs (reqwest; no `doctl`, `hcloud` or `gcloud`).
//!
//! A [`VmProvisioner`] creates, waits for, lists and destroys VMs; [`up`] runs the
//! whole start (`vm_create`, `vm_active`, `ssh_ready`) and destroys the VM when any
//! step after its creation fails; [`VmHost`] runs argv commands on a ready VM over SSH.
//!
//! The image comes from [`VmSpec::images`] ([`PrebuiltImages`]; which experiment or
//! option turned them on is the caller's business):
//!
//! | cloud | prebuilt image wanted | otherwise |
//! |---|---|---|
//! | DigitalOcean | `marketplace`: the Docker marketplace image, no user data | Ubuntu 24.04 + cloud-init installing Docker |
//! | Hetzner | `docker_ready`: the `docker-ce` app image, no user data | Ubuntu 24.04 + cloud-init installing Docker |
//! | GCP | `docker_ready`: Container-Optimized OS (`cos-stable`) | Ubuntu 24.04 LTS + a `startup-script` installing Docker |
//!
//! Common guarantees: names are idempotent (a retried create finds the VM it already
//! made), 429 answers are retried after the wait the API asks for (bounded), every
//! wait has a deadline, and tokens never appear in URLs, errors, logs or `Debug`.
//!
//! What this is **not**: a [`SandboxProvider`](sandbox_core::SandboxProvider). VMs are
//! hosts (for Docker sandboxes or commands over SSH); `headstart up` does not put a
//! repository on a VM, because the git engine writes local disks only.

mod common;
mod config;
pub mod digitalocean;
mod error;
pub mod gcp;
pub mod hetzner;
mod http;
mod ready;
mod spec;
pub mod ssh;

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sandbox_core::{ExecOutput, ExecRequest};

pub use config::{
    ApiToken, CloudConfig, DIGITALOCEAN_TOKEN_VAR, DIGITALOCEAN_TOKEN_VAR_ALT,
    DIGITALOCEAN_URL_VAR, GCP_PROJECT_VAR, GCP_TOKEN_VAR, GCP_URL_VAR, HETZNER_TOKEN_VAR,
    HETZNER_URL_VAR, TOKEN_VARS,
};
pub use error::{CloudError, Result};
pub use ready::{Readiness, wait_ssh, wait_tcp};
pub use spec::{
    Cloud, DEFAULT_USER_DATA, ImageChoice, OWNER_LABEL, OwnerTag, PrebuiltImages, SshPublicKey, Vm,
    VmName, VmSpec, VmStatus,
};
pub use ssh::SshTarget;

/// A point in time a wait must end by, and the budget it came from (for messages).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// When the wait ends.
    pub until: Instant,
    /// The whole budget.
    pub budget: Duration,
}

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self {
            until: Instant::now() + budget,
            budget,
        }
    }

    /// Time left (zero when passed).
    pub fn left(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }

    /// The timeout error for `what`.
    pub fn timeout(&self, what: impl Into<String>) -> CloudError {
        CloudError::Timeout {
            what: what.into(),
            after: self.budget,
        }
    }

    /// Sleeps `interval`, or errors with a timeout for `what` when the deadline would
    /// pass first.
    pub(crate) async fn pause(
        &self,
        interval: Duration,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.left().is_zero() {
            return Err(self.timeout(what()));
        }
        tokio::time::sleep(interval.min(self.left())).await;
        Ok(())
    }
}

/// Poll intervals that start at a third of `max` and grow by half up to `max`: quick
/// answers for fast clouds, few requests for slow ones.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Self { next: max / 3, max }
    }

    pub(crate) fn next_wait(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 3 / 2).min(self.max);
        now
    }
}

/// Creates, waits for, lists and destroys VMs on one cloud.
#[async_trait]
pub trait VmProvisioner: Send + Sync + fmt::Debug {
    /// The cloud.
    fn cloud(&self) -> Cloud;

    /// Creates a VM, or returns the one this owner already has under that name (a
    /// retried create never makes a second VM).
    ///
    /// # Errors
    /// [`CloudError::NameInUse`] when the name belongs to a VM not managed for this
    /// owner; API errors otherwise.
    async fn create(&self, spec: &VmSpec) -> Result<Vm>;

    /// The VM's current state.
    async fn get(&self, vm: &Vm) -> Result<Vm>;

    /// Waits until the cloud says the VM runs and it has a public IPv4 (following the
    /// cloud's create action / operation first where it has one).
    async fn wait_active(&self, vm: &Vm, deadline: Deadline) -> Result<Vm>;

    /// Deletes the VM. A VM that is already gone is not an error.
    async fn destroy(&self, vm: &Vm) -> Result<()>;

    /// The VMs carrying this owner's tag.
    async fn list(&self, owner: &OwnerTag) -> Result<Vec<Vm>>;

    /// This owner's VM called `name`, if any.
    async fn find(&self, owner: &OwnerTag, name: &str) -> Result<Option<Vm>> {
        Ok(self
            .list(owner)
            .await?
            .into_iter()
            .find(|vm| vm.name == name))
    }

    /// Readiness: [`wait_active`](Self::wait_active), then TCP port 22 with an SSH
    /// banner, then an SSH command answering, all within `readiness.deadline`.
    async fn wait_ready(&self, vm: &Vm, readiness: &Readiness) -> Result<Vm> {
        let deadline = Deadline::after(readiness.deadline);
        let vm = self.wait_active(vm, deadline).await?;
        wait_ssh_steps(&vm, readiness, deadline).await?;
        Ok(vm)
    }
}

/// The TCP and SSH steps of readiness for an active VM.
async fn wait_ssh_steps(vm: &Vm, readiness: &Readiness, deadline: Deadline) -> Result<()> {
    let ip = vm.public_ipv4.ok_or_else(|| CloudError::Failed {
        cloud: vm.cloud,
        message: format!("VM `{}` has no public IPv4 address", vm.name),
    })?;
    let addr = std::net::SocketAddr::new(ip, readiness.ssh_port);
    wait_tcp(
        addr,
        deadline.until,
        readiness.retry_interval,
        deadline.budget,
    )
    .await?;
    if readiness.ssh_command {
        let target = VmHost::target_for(vm, readiness);
        wait_ssh(
            &target,
            deadline.until,
            readiness.retry_interval,
            deadline.budget,
        )
        .await?;
    }
    Ok(())
}

/// Builds the provisioner for `config.cloud`.
///
/// # Errors
/// [`CloudError::MissingConfig`] when GCP has no project; transport errors when the
/// HTTP client cannot be built.
pub fn provisioner(config: CloudConfig) -> Result<Box<dyn VmProvisioner>> {
    Ok(match config.cloud {
        Cloud::DigitalOcean => Box::new(digitalocean::DigitalOcean::new(config)?),
        Cloud::Hetzner => Box::new(hetzner::Hetzner::new(config)?),
        Cloud::Gcp => Box::new(gcp::Gcp::new(config)?),
    })
}

/// A phase of `headstart vm up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmPhase {
    /// The create request (and finding an existing VM of that name).
    VmCreate,
    /// Until the cloud says it runs with a public IPv4.
    VmActive,
    /// Until port 22 answers and an SSH command runs.
    SshReady,
}

impl VmPhase {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VmCreate => "vm_create",
            Self::VmActive => "vm_active",
            Self::SshReady => "ssh_ready",
        }
    }
}

/// How long one phase took.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VmPhaseTiming {
    /// The phase.
    pub name: VmPhase,
    /// Milliseconds.
    pub ms: f64,
}

/// What `up` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VmReport {
    /// The VM as it ended up.
    pub vm: Vm,
    /// Phases in order.
    pub phases: Vec<VmPhaseTiming>,
    /// The whole start in milliseconds.
    pub total_ms: f64,
}

/// Creates the VM and waits until it is ready, reporting each phase to `progress` as
/// it ends. When any step after the create request fails, the VM is destroyed before
/// the error is returned.
///
/// # Errors
/// The failing step's error; [`CloudError::CleanupFailed`] when destroying the VM
/// failed as well (the message says how to delete it by hand).
pub async fn up(
    provisioner: &dyn VmProvisioner,
    spec: &VmSpec,
    readiness: &Readiness,
    mut progress: impl FnMut(VmPhase, Duration) + Send,
) -> Result<VmReport> {
    let started = Instant::now();
    let mut phases = Vec::new();
    let mut record = |phase: VmPhase, d: Duration, phases: &mut Vec<VmPhaseTiming>| {
        progress(phase, d);
        phases.push(VmPhaseTiming {
            name: phase,
            ms: (d.as_secs_f64() * 1e6).round() / 1e3,
        });
    };
    let deadline = Deadline::after(readiness.deadline);
    let t = Instant::now();
    let vm = match tokio::time::timeout(deadline.left(), provisioner.create(spec)).await {
        Ok(created) => created?,
        Err(_) => {
            // The request may have gone through before the deadline cut it off.
            let error = deadline.timeout(format!("creating VM `{}`", spec.name));
            return match provisioner.find(&spec.owner, spec.name.as_str()).await {
                Ok(Some(vm)) => Err(destroy_after_failure(provisioner, &vm, error).await),
                Ok(None) => Err(error),
                Err(lookup) => Err(CloudError::CleanupFailed {
                    cloud: provisioner.cloud(),
                    vm: spec.name.to_string(),
                    error: Box::new(error),
                    cleanup: Box::new(lookup),
                }),
            };
        }
    };
    record(VmPhase::VmCreate, t.elapsed(), &mut phases);
    tracing::info!(cloud = %vm.cloud, vm = %vm.name, id = %vm.id, "VM created");

    let t = Instant::now();
    let vm = match provisioner.wait_active(&vm, deadline).await {
        Ok(active) => active,
        Err(e) => return Err(destroy_after_failure(provisioner, &vm, e).await),
    };
    record(VmPhase::VmActive, t.elapsed(), &mut phases);

    let t = Instant::now();
    if let Err(e) = wait_ssh_steps(&vm, readiness, deadline).await {
        return Err(destroy_after_failure(provisioner, &vm, e).await);
    }
    record(VmPhase::SshReady, t.elapsed(), &mut phases);
    Ok(VmReport {
        vm,
        phases,
        total_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
    })
}

/// Destroys `vm` because `error` happened after it was created; returns the error to
/// report.
pub async fn destroy_after_failure(
    provisioner: &dyn VmProvisioner,
    vm: &Vm,
    error: CloudError,
) -> CloudError {
    tracing::warn!(cloud = %vm.cloud, vm = %vm.name, %error, "destroying the VM after a failed step");
    match provisioner.destroy(vm).await {
        Ok(()) => error,
        Err(cleanup) => CloudError::CleanupFailed {
            cloud: vm.cloud,
            vm: vm.name.clone(),
            error: Box::new(error),
            cleanup: Box::new(cleanup),
        },
    }
}

/// A ready VM to run commands on over SSH. It is a host, not a
/// [`Sandbox`](sandbox_core::Sandbox): it has no local workspace.
#[derive(Debug, Clone)]
pub struct VmHost {
    /// The VM.
    pub vm: Vm,
    /// How to reach it.
    pub target: SshTarget,
}

impl VmHost {
    /// A host for an active VM.
    ///
    /// # Errors
    /// [`CloudError::Failed`] when it has no public IPv4 yet.
    pub fn new(vm: Vm, readiness: &Readiness) -> Result<Self> {
        if vm.public_ipv4.is_none() {
            return Err(CloudError::Failed {
                cloud: vm.cloud,
                message: format!(
                    "VM `{}` has no public IPv4 address yet; wait for its creation to finish",
                    vm.name
                ),
            });
        }
        let target = Self::target_for(&vm, readiness);
        Ok(Self { vm, target })
    }

    fn target_for(vm: &Vm, readiness: &Readiness) -> SshTarget {
        let user = readiness
            .ssh_user
            .clone()
            .unwrap_or_else(|| vm.cloud.ssh_user().to_owned());
        let host = vm
            .public_ipv4
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let mut target =
            SshTarget::new(user, host, readiness.known_hosts.clone()).port(readiness.ssh_port);
        target.identity_file = readiness.identity_file.clone();
        target
    }

    /// Runs an argv on the VM (quoted for the remote shell, never a local shell).
    ///
    /// # Errors
    /// [`CloudError::Ssh`] when the client cannot run.
    pub async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput> {
        self.target.exec(request).await
    }
}

/// Parses an IPv4 address from the API, ignoring junk.
pub(crate) fn parse_ipv4(s: Option<&str>) -> Option<std::net::IpAddr> {
    s.and_then(|s| s.parse::<std::net::Ipv4Addr>().ok())
        .map(std::net::IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_backoff_grows_to_its_bound() {
        let mut b = Backoff::new(Duration::from_secs(3));
        let waits: Vec<u64> = (0..6).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [1000, 1500, 2250, 3000, 3000, 3000]);
    }
}
