//! The app layer: what "headstart" means to a Rust program. [`Headstart`] is built
//! from a [`Config`] (explicit, or [`Config::from_env`]) and offers every command as a
//! method returning a typed, serializable outcome (the very values the CLI prints with
//! `--json`).
//!
//! It owns the data directory, the provider factory and choice, the FastStart and
//! builder wiring and telemetry. It is not: argument parsing, text rendering, signal
//! handling or exit statuses (the binary's `cli` modules), nor sandbox, git, snapshot
//! or flag logic (the library crates).

mod choice;
mod config;
pub mod daemon;
mod error;
mod flags;
mod grant;
mod lifecycle;
mod ports;
mod prune;
mod registry;
mod sandboxes;
mod snapshots;
mod start;
mod up;
mod vm;
mod workdir;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use provisioners::local::LocalProvider;
use sandbox_core::{BranchName, SandboxProvider, Source};
use snapshot_refresh::{Recipe, SnapshotBuilder, Spawn};

pub use choice::{ProviderChoice, ProviderKind, choose_provider, prebuilt_images};
pub use config::{Config, register_secrets};
pub use error::{Error, Result, Stopped};
pub use flags::{FLUSH_ON_EXIT, FlagsStatus};
pub use grant::{CredentialsMode, RegisterHintFn};
pub use lifecycle::{Activity, HibernateOutcome, Resumed, ResumedFn, RunState, parse_duration};
pub use ports::{DIRECT, PortsOutcome};
pub use prune::{DeadBuilds, PruneOutcome, Pruned};
pub use registry::{RegistryGcOutcome, SnapshotPullOutcome, SnapshotPullRequest};
pub use sandboxes::{DownOutcome, ExecOutcome, ExecRequest, LsOutcome, Removed, SandboxRow};
pub use snapshots::{
    FailureRecord, GcOutcome, RunJobOutcome, SnapshotBuildOutcome, SnapshotBuildRequest,
    SnapshotLsOutcome, SnapshotRmOutcome, SnapshotRow,
};
pub use start::CLEANUP_GRACE;
pub use up::{
    Notice, NoticeFn, PendingBuilds, SandboxRef, SnapshotRef, UpOutcome, UpRequest, Waited,
};
pub use vm::VmSettings;

/// headstart, configured: start, list, use and remove sandboxes and snapshots.
pub struct Headstart {
    config: Config,
}

impl std::fmt::Debug for Headstart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Headstart")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Headstart {
    /// headstart over `config`.
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// headstart configured from the environment ([`Config::from_env`]).
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(Config::from_env()?))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    fn state_dir(&self) -> std::path::PathBuf {
        self.config.data_dir.join("state")
    }

    /// The provider `kind` over this data directory.
    ///
    /// # Errors
    /// When the provider cannot be reached (no Docker engine).
    pub async fn provider(&self, kind: ProviderKind) -> Result<Arc<dyn SandboxProvider>> {
        Ok(match kind {
            ProviderKind::Local => Arc::new(self.local_provider()),
            ProviderKind::Docker => Arc::new(self.docker_provider().await?),
        })
    }

    /// The provider `kind`, or `None` when it cannot be reached and is `optional` (a walk
    /// over every provider skips it; why is logged at debug level).
    ///
    /// # Errors
    /// When it cannot be reached and is not `optional`.
    pub(crate) async fn provider_if_reachable(
        &self,
        kind: ProviderKind,
        optional: bool,
    ) -> Result<Option<Arc<dyn SandboxProvider>>> {
        match self.provider(kind).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if optional => {
                tracing::debug!(error = %e, provider = kind.as_str(), "provider unavailable; skipped");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The Docker provider for this data directory. Containers of another data
    /// directory (another user, a test) are not ours to list or reconnect to: a label
    /// scopes them.
    async fn docker_provider(&self) -> Result<provisioners::docker::DockerProvider> {
        let home = &self.config.data_dir;
        // the label names the directory, not its spelling: a symlinked or relative
        // HEADSTART_HOME finds the same containers
        let scope = provisioners::workdir::resolve_dir(home).unwrap_or_else(|_| home.clone());
        let mut config = provisioners::docker::DockerConfig::new(home.join("docker"))
            .scope_label("dev.headstart.home", scope.display().to_string());
        config.restore_method = self.config.restore_method;
        if let Some(network) = &self.config.docker_network {
            config = config.network_mode(network.clone());
        }
        Ok(provisioners::docker::DockerProvider::from_env(config).await?)
    }

    /// The local provider over the data directory, with the configured restore method.
    fn local_provider(&self) -> LocalProvider {
        LocalProvider::new(&self.config.data_dir).with_restore_method(self.config.restore_method)
    }

    /// A builder for `provider`; detached build processes when `detach` and a build
    /// runner is configured ([`Config::build_runner`]).
    fn builder_for(
        &self,
        provider: Arc<dyn SandboxProvider>,
        kind: ProviderKind,
        detach: bool,
        remote: Option<Arc<dyn snapshot_refresh::RemoteSnapshots>>,
    ) -> SnapshotBuilder {
        let mut builder = SnapshotBuilder::new(provider, self.state_dir());
        // a detached build reads its registry from the environment, like this process
        let registry = remote.as_ref().and(self.config.registry.clone());
        if let Some(remote) = remote {
            builder = builder.with_remote(remote);
        }
        let Some(exe) = self.config.build_runner.clone().filter(|_| detach) else {
            return builder;
        };
        let log_dir = self.state_dir().join("logs");
        let spawner: snapshot_refresh::DetachedSpawner = Arc::new(move |job: &Path| {
            use std::os::unix::process::CommandExt;
            std::fs::create_dir_all(&log_dir)?;
            let log = std::fs::File::create(log_dir.join("last-build.log"))?;
            let mut cmd = std::process::Command::new(&exe);
            if let Some(r) = &registry {
                cmd.env(crate::env::HEADSTART_REGISTRY, r);
            }
            let child = cmd
                .args(["snapshot", "run-job", "--provider", kind.as_str()])
                .arg(job)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()?;
            Ok(child.id())
        });
        builder.with_spawn(Spawn::Detached(spawner))
    }
}

/// True when a Docker engine answers (what the `sandbox` fast path needs).
pub async fn docker_answers() -> bool {
    match provisioners::docker::connect_from_env().await {
        Ok(docker) => tokio::time::timeout(Duration::from_secs(2), docker.ping())
            .await
            .is_ok_and(|r| r.is_ok()),
        Err(_) => false,
    }
}

/// A recipe read from a JSON file (`None`: the empty recipe).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::InvalidInput`] when it is not
/// a recipe.
pub fn read_recipe(path: Option<&Path>) -> Result<Recipe> {
    let Some(path) = path else {
        return Ok(Recipe::empty());
    };
    // a recipe the user named that cannot be read is bad input (exit 2), not a failure
    let bytes = std::fs::read(path).map_err(|e| {
        Error::InvalidInput(format!("cannot read the recipe {}: {e}", path.display()))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::InvalidInput(format!(
            "recipe {} is not valid: {e}; expected {{\"commands\":[{{\"argv\":[\"make\",\"deps\"]}}]}}",
            path.display()
        ))
    })
}

/// A source from a repository, an optional branch and an optional new branch.
///
/// # Errors
/// When the URL or a branch name is not valid.
pub fn source_from(repo: &str, branch: Option<&str>, new_branch: Option<&str>) -> Result<Source> {
    let mut source = Source::parse(repo)?;
    if let Some(b) = branch {
        source = source.with_branch(BranchName::new(b)?)?;
    }
    if let Some(n) = new_branch {
        source = source.with_new_branch(BranchName::new(n)?)?;
    }
    Ok(source)
}
