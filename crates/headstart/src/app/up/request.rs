//! What [`Headstart::up`](crate::Headstart::up) is asked ([`UpRequest`]) and what it
//! answers ([`UpOutcome`], the value `up --json` prints).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use feature_flags::BetaRequest;
use sandbox_core::git::{GitIdentity, ProgressFn};
use sandbox_core::{
    CancelToken, PortRequest, PublishedPort, SandboxName, SnapshotId, StartupReport,
};
use serde::Serialize;
use snapshot_refresh::{KickOutcome, SnapshotBuilder};

use crate::app::choice::ProviderKind;
use crate::app::daemon::GrantInfo;
use crate::app::grant::{CredentialsMode, RegisterHintFn};

/// What to start, and how.
#[derive(Default)]
#[non_exhaustive]
pub struct UpRequest {
    /// Repository: https://, ssh://, git@host:owner/repo, git://, file:// or a local
    /// path. Not needed with [`workdir`](Self::workdir).
    pub repo: Option<String>,
    /// Branch to check out (default: the remote's default branch).
    pub branch: Option<String>,
    /// A new branch to create and check out (from `branch`, else the default).
    pub new_branch: Option<String>,
    /// Sandbox name (default: generated; with a workdir, the one of that directory).
    /// An existing sandbox of that name is reused: another repository is refused,
    /// another branch is switched to only when it has no local changes.
    pub name: Option<String>,
    /// Replace an existing sandbox of the same name.
    pub force_create: bool,
    /// The provider (default: chosen from the fast paths, else local).
    pub provider: Option<ProviderKind>,
    /// Use this directory as the workspace (nothing deleted on removal; never inside
    /// the data directory). With a repository: cloned into it when empty or missing,
    /// used when already a checkout of it, refused otherwise.
    pub workdir: Option<PathBuf>,
    /// Start cold and build no snapshot.
    pub no_snapshot: bool,
    /// The container image (container providers; default: the provider's, e.g.
    /// `HEADSTART_IMAGE`, else a recipe's `base_image`).
    pub image: Option<String>,
    /// The git identity of the workspace, `Name <email>` (default:
    /// [`Config::git_user`](crate::Config::git_user)): written into its `.git/config`
    /// on every start, kept by later ones.
    pub git_user: Option<String>,
    /// Sandbox TCP ports to publish on the host's loopback (Docker: a new sandbox's
    /// container; local sandboxes bind host ports directly).
    pub ports: Vec<PortRequest>,
    /// Remove the sandbox after this long (by [`Headstart::prune`](crate::Headstart::prune)).
    pub ttl: Option<Duration>,
    /// Stop the sandbox after this long with no command, start or look at its ports
    /// (by the host daemon, started on demand; zero: never). Default: the recipe's
    /// `idle_timeout`, else [`Config::idle_timeout`](crate::Config::idle_timeout), else
    /// what an earlier start of the name recorded.
    pub idle_timeout: Option<Duration>,
    /// Hibernate the (Docker) sandbox after this long without activity (zero: never).
    /// Default: the recipe's `hibernate_after`, else an earlier start's.
    pub hibernate_after: Option<Duration>,
    /// A setup recipe file (JSON; see [`read_recipe`](super::read_recipe)).
    pub recipe_file: Option<PathBuf>,
    /// Build a missing snapshot in this process and wait for it.
    pub wait_snapshot: bool,
    /// Give up when the whole start takes longer; what it made is removed. With or
    /// without it, git transfers fail below the default low-speed limit
    /// ([`LowSpeed`](sandbox_core::LowSpeed): 1 KiB/s for 30 s).
    pub timeout: Option<Duration>,
    /// Fast paths asked for explicitly.
    pub beta: BetaRequest,
    /// Cancel to stop the start (it cleans up, then `up` fails with
    /// [`Error::Stopped`](crate::Error::Stopped)); after the start, it stops a `wait_snapshot` wait.
    pub cancel: CancelToken,
    /// Cancel to stop waiting for a stopped start's cleanup (it is then left
    /// unfinished: `creating` while this process lives, `interrupted` once it is gone,
    /// for the next start of the name, `prune` or `down` to repair).
    pub abandon: CancelToken,
    /// Transfer progress of the clone or sync.
    pub progress: Option<ProgressFn>,
    /// Told what happens along the way.
    pub notify: Option<NoticeFn>,
    /// How the sandbox's git reaches the upstream (default: a broker grant on Docker
    /// when a token is configured and the repository is http(s); none otherwise).
    pub credentials: Option<CredentialsMode>,
    /// More branch patterns a broker grant may push (`feature/*`).
    pub allow_push: Vec<String>,
    /// What the broker tells the sandbox when its grant expired or was revoked.
    pub grant_renew_hint: Option<String>,
    /// What the broker tells the sandbox when its grant lost its token (a daemon
    /// restart), made from the sandbox's name and repository.
    pub grant_register_hint: Option<RegisterHintFn>,
}

impl UpRequest {
    /// A start of `repo` with every default.
    pub fn new(repo: impl Into<String>) -> Self {
        Self {
            repo: Some(repo.into()),
            ..Self::default()
        }
    }
}

/// Told each [`Notice`] of a start.
pub type NoticeFn = Arc<dyn Fn(&Notice) + Send + Sync>;

/// Something worth telling the user while `up` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A fast path wanted another provider that is not available; why local was used.
    ProviderFallback(String),
    /// The snapshot build waited for is ready.
    SnapshotReady(SnapshotId),
    /// The snapshot build waited for failed.
    SnapshotFailed(String),
}

/// A started sandbox and what the start did (`docs/json/up.schema.json`).
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct UpOutcome {
    /// The sandbox.
    pub sandbox: SandboxRef,
    /// The repository the workspace holds (the URL cloned or synced, or what a
    /// reconnected workspace's origin says).
    pub repo: Option<String>,
    /// The provider it runs on.
    pub provider: &'static str,
    /// Why that provider.
    pub provider_reason: String,
    /// The fast paths the start ran with (`None` when not decided before the start
    /// and not needed).
    pub fast_paths: Option<Vec<&'static str>>,
    /// The workspace's git identity (its own `.git/config`), when it has one.
    pub git_identity: Option<GitIdentity>,
    /// Sandbox ports and the host address reaching each (`direct` on local).
    pub ports: Vec<PublishedPort>,
    /// Path, reason, phases, HEAD, totals.
    #[serde(flatten)]
    pub report: StartupReport,
    /// The snapshot a warm start restored.
    pub snapshot: Option<SnapshotRef>,
    /// Set when the sandbox of that name was stopped (or hibernated) and this start
    /// started it again (its after-start hooks ran as for any start).
    pub resumed: Option<crate::app::Resumed>,
    /// What the background builder did.
    pub build: Option<KickOutcome>,
    /// The sandbox's broker grant (never its capability in full).
    pub grant: Option<GrantInfo>,
    /// How the build `wait_snapshot` waited for ended (`None`: nothing was waited for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited: Option<Waited>,
    /// True when [`UpRequest::cancel`] stopped a `wait_snapshot` wait after the
    /// sandbox was ready (it is kept).
    #[serde(skip)]
    pub interrupted: bool,
    /// Background builds still running.
    #[serde(skip)]
    pub builds: PendingBuilds,
}

/// How a build waited for (`--wait-snapshot`) ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Waited {
    /// The snapshot is ready.
    Ready {
        /// Its id.
        id: SnapshotId,
    },
    /// The build failed (scrubbed of secrets).
    Failed {
        /// Why.
        error: String,
    },
}

/// A sandbox, as an outcome names it.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxRef {
    /// The provider's id.
    pub id: String,
    /// The name.
    pub name: SandboxName,
    /// The workspace directory (on the host).
    pub workspace: PathBuf,
}

/// A snapshot and its key.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRef {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its key.
    pub key: String,
    /// Where it came from: `local` (this host's store) or `registry` (pulled by this
    /// start).
    pub source: Option<snapshot_refresh::SnapshotSource>,
}

/// The background builds a start left running in this process.
#[derive(Default)]
pub struct PendingBuilds(pub(super) Option<Arc<SnapshotBuilder>>);

impl std::fmt::Debug for PendingBuilds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingBuilds")
    }
}

impl PendingBuilds {
    /// Waits for them, at most `max`; returns how many were still running.
    pub async fn wait(&self, max: Duration) -> usize {
        match &self.0 {
            Some(b) => b.shutdown(max).await,
            None => 0,
        }
    }
}
