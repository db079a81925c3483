//! The orchestration of one start: [`FastStart`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sandbox_core::git::{self, Checkout, Depth, GitOptions, ProgressFn};
use sandbox_core::{
    CancelToken, ConnectOptions, Connected, Credentials, ExecRequest, HeadInfo, Phase, PhaseClock,
    Sandbox, SandboxProvider, SnapshotMeta, Source, StartPath, StartupReport, TransferLimits,
};
use time::OffsetDateTime;

use crate::builder::{KickOutcome, SnapshotBuilder};
use crate::error::{Error, Result};
use crate::key::{Recipe, SnapshotKey};
use crate::policy::{Drift, Eligibility};
use crate::reconnect;
use crate::refresh::{DEFAULT_COMMAND_TIMEOUT, RefreshOptions};
use crate::remote::{Lease, Pulled, RemoteSnapshots};

/// A started sandbox and what the start did.
///
/// # What persists
///
/// Dropping a `Started` does **not** remove the sandbox: sandboxes persist by design,
/// in the provider's data directory, so the next start of the same
/// [`name`](sandbox_core::ConnectOptions::name) reconnects to it and a CLI can `exec`
/// into it later. Remove it with [`remove`](Self::remove), or opt in to removal on drop
/// with [`remove_on_drop`](Self::remove_on_drop).
#[derive(Debug)]
pub struct Started {
    /// The sandbox, ready to use.
    pub sandbox: Box<dyn Sandbox>,
    /// Path, reason, phases and durations.
    pub report: StartupReport,
    /// The snapshot key of the repository (`None` when not eligible).
    pub key: Option<SnapshotKey>,
    /// The snapshot a warm start restored.
    pub snapshot: Option<SnapshotMeta>,
    /// Where that snapshot came from (`None` when no snapshot was restored).
    pub snapshot_source: Option<SnapshotSource>,
    /// What the background builder did (cold starts and drifted warm starts).
    pub build: Option<KickOutcome>,
    /// The repository the workspace holds: the URL a new start cloned or synced, or
    /// the `origin` of an existing workspace (a reconnect, a workdir; userinfo
    /// redacted). `None` when it is no git checkout.
    pub repository: Option<String>,
}

impl Started {
    /// A start that restored no snapshot and started no build.
    fn without_snapshot(
        sandbox: Box<dyn Sandbox>,
        report: StartupReport,
        repository: Option<String>,
    ) -> Self {
        Self {
            sandbox,
            report,
            key: None,
            snapshot: None,
            snapshot_source: None,
            build: None,
            repository,
        }
    }
}

/// Where the snapshot of a warm start came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotSource {
    /// It was in this host's store.
    Local,
    /// It was pulled from the shared registry by this start (or by a concurrent start on
    /// this host that this one waited for).
    Registry,
}

/// Starts sandboxes fast: looks up the repository's newest ready base snapshot; on a
/// hit, restores it and catches up with a depth-1 fetch of one branch (warm); on a
/// miss, clones and asks the [`SnapshotBuilder`] for a snapshot for next time (cold), seeded
/// from the clone it just made.
///
/// A store error or a corrupt snapshot never fails a start: it falls back to the cold
/// path and says why in the report. A failed start removes the sandbox it created.
///
/// Make one with [`FastStart::builder`] (or [`FastStart::local`] with the `local`
/// feature); a complete program is `examples/fast-start.rs` in the repository.
///
/// # Snapshots or not: [`Source::prebuilt`]
///
/// - unset (the default) or `prebuilt(true)`: a ready snapshot is used when there is
///   one (warm); without one the start clones (cold) and builds one in the background;
/// - `prebuilt(false)`: never a snapshot: the start clones, builds none, and its
///   report's reason says so.
///
/// # What persists
///
/// Sandboxes and snapshots persist by design, in the provider's data directory: a
/// sandbox is meant to be reconnected to (by name) and a snapshot to make the next
/// start warm. Dropping a [`Started`] removes nothing; call [`Started::remove`] or
/// [`Started::remove_on_drop`]. Snapshots are kept until removed (the CLI's
/// `headstart prune`/`snapshot` commands, or [`SnapshotStore::delete`](sandbox_core::SnapshotStore::delete)).
///
/// # Example
///
/// A cold start, its background snapshot build, then a warm start after the upstream
/// moved on, an `exec` and the removal; the upstream is served by `git daemon` on
/// loopback (the hidden lines make it with the repository's test fixtures):
///
/// ```
/// # #[cfg(feature = "local")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use snapshot_refresh::prelude::*;
///
/// # let upstream = test_support::Upstream::new("trunk", 3)?;
/// # let daemon = test_support::GitDaemon::start(upstream.root())?;
/// # let url = daemon.url(upstream.name());
/// # let tmp = tempfile::tempdir()?;
/// # let data_dir = tmp.path().join("data");
/// // `url` names a git repository (here git://127.0.0.1:<port>/app.git), `data_dir`
/// // is where sandboxes, snapshots and the builder's state live
/// let rt = tokio::runtime::Runtime::new()?;
/// rt.block_on(async {
///     let fast = FastStart::local(&data_dir)?;
///     let source = Source::parse(&url)?;
///
///     let cold = fast.start(&source, &ConnectOptions::new()).await?;
///     assert_eq!(cold.report.path, StartPath::Cold);
///     let key = cold.key.as_ref().expect("the repository gets a snapshot key");
///     let built = fast.snapshot_builder().wait(key).await.expect("a build started")?;
///     println!("snapshot {} built in {:?}", built.snapshot.id, built.duration);
/// #   let tip = upstream.advance("trunk", 1)?;
///
///     // ... the upstream moves on; a warm start restores the snapshot and fetches
///     let warm = fast.start(&source, &ConnectOptions::new()).await?;
///     println!("{}", warm.report); // warm in 40.3 ms on trunk@1f2e3d4c (...)
///     assert_eq!(warm.report.path, StartPath::Warm);
/// #   assert_eq!(warm.report.head.as_ref().map(|h| h.commit.as_str()), Some(tip.as_str()));
///     let out = warm.sandbox.exec(&ExecRequest::new(["cat", "README.md"])?).await?;
///     assert_eq!(out.stdout_lossy(), "# fixture\n");
///
///     cold.remove().await?; // sandboxes persist until removed
///     warm.remove().await?;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "local"))]
/// # fn main() {}
/// ```
///
/// # One start per name, and no lies
///
/// A new sandbox is created `creating` ([`ConnectOptions::defer_ready`]) and marked
/// ready only after its clone or sync (and setup, when it runs) succeeded, so a start
/// that dies half-way never leaves a sandbox that reconnects as ready. The provider's
/// per-name lock is held meanwhile: a concurrent start of the same name waits, then
/// finds the finished sandbox and reconnects to it (no git, nothing deleted). A start
/// only ever removes what it created itself.
///
/// # Reconnecting to what exists
///
/// A start whose name names a ready sandbox (without `force_create`) reconnects to it,
/// and honours what it asks only when nothing is lost: another repository is refused
/// ([`Error::Refused`]); another branch switches a worktree without local changes
/// (a sync of that branch) and is refused otherwise; no branch, or the one it is on,
/// leaves it as it is. The report then names the sandbox's actual repository, branch
/// and commit, and says when the request differed. See the rules in `reconnect.rs`.
/// Reconnecting starts of one workspace take turns (a lock in its `.git`): each looks
/// at it only once the switch of the one before is complete. Commands already running
/// in the sandbox are not stopped by a switch.
///
/// # The user's own directory
///
/// With [`ConnectOptions::workdir`] the directory is the workspace and gets no
/// snapshot. When `source` names a repository (not the directory itself), the start
/// clones it into the directory if that is empty or missing, uses it (with the branch
/// rules above) if it is already a checkout of the same repository, and refuses
/// anything else ([`Error::WorkdirUnusable`]): it never clones over files. When `source` is
/// the directory itself (`RepoUrl::from_path(dir)`, what `headstart up --workdir DIR`
/// passes), the directory is used as it is.
///
/// # Stopping
///
/// [`cancel_token`](Self::cancel_token) and [`limits`](Self::limits) reach the provider
/// and the git engine; a cancelled or timed-out start fails with
/// [`Cancelled`](sandbox_core::Error::Cancelled) or
/// [`Timeout`](sandbox_core::Error::Timeout) after removing what it created.
pub struct FastStart {
    provider: Arc<dyn SandboxProvider>,
    builder: Arc<SnapshotBuilder>,
    recipe: Recipe,
    eligibility: Eligibility,
    drift: Drift,
    credentials: Credentials,
    progress: Option<ProgressFn>,
    max_size_bytes: Option<u64>,
    setup_on_cold: bool,
    cancel: Option<CancelToken>,
    limits: TransferLimits,
    identity: Option<git::GitIdentity>,
    remote: Option<Arc<dyn RemoteSnapshots>>,
    remote_bound: Duration,
    origin_alias: Option<OriginAlias>,
}

/// How long a start waits for a pull from the registry by default before it goes cold.
pub const DEFAULT_PULL_BOUND: Duration = Duration::from_secs(120);
/// How long a build lease in the registry lasts.
const LEASE_TTL: Duration = Duration::from_secs(15 * 60);

/// Says whether an existing workspace's `origin` stands for the repository of the
/// start (see [`FastStart::origin_alias`]).
pub type OriginAlias = Arc<dyn Fn(&sandbox_core::RepoUrl) -> bool + Send + Sync>;

impl std::fmt::Debug for FastStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastStart")
            .field("provider", &self.provider.kind())
            .field("recipe", &self.recipe)
            .field("eligibility", &self.eligibility)
            .field("drift", &self.drift)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl FastStart {
    /// Starts on `provider`, building snapshots with `builder` (which should build on
    /// the same provider). [`FastStart::builder`] does this wiring for you.
    pub fn new(provider: Arc<dyn SandboxProvider>, builder: Arc<SnapshotBuilder>) -> Self {
        Self {
            provider,
            builder,
            recipe: Recipe::empty(),
            eligibility: Eligibility::all(),
            drift: Drift::default(),
            credentials: Credentials::none(),
            progress: None,
            max_size_bytes: None,
            setup_on_cold: false,
            cancel: None,
            limits: TransferLimits::none(),
            identity: None,
            remote: None,
            remote_bound: DEFAULT_PULL_BOUND,
            origin_alias: None,
        }
    }

    /// Shares snapshots through `remote`: on a local miss a start pulls the newest
    /// snapshot of its key from it (phase `snapshot_pull`) and goes warm, giving up
    /// after `bound` (then it starts cold and says why); a cold start takes the build
    /// lease first and builds nothing while another host holds a fresh one. Give the
    /// [`SnapshotBuilder`] the same remote ([`SnapshotBuilder::with_remote`]) so builds
    /// are pushed.
    #[must_use]
    pub fn remote(mut self, remote: Arc<dyn RemoteSnapshots>, bound: Duration) -> Self {
        self.remote = Some(remote);
        self.remote_bound = bound;
        self
    }

    /// Accepts an existing workspace (a reconnect, a workdir) whose `origin` is one
    /// for which `alias` is true as holding the start's repository, besides any URL
    /// form of that repository: e.g. a credential broker's URL that stands for it.
    /// The start then treats it as the same repository (it syncs from the source's
    /// URL when it switches branches, never from the alias).
    #[must_use]
    pub fn origin_alias(mut self, alias: OriginAlias) -> Self {
        self.origin_alias = Some(alias);
        self
    }

    /// Stops starts when `token` is cancelled: the provider's creation and the git
    /// transfer see it; the start removes what it created and fails with
    /// [`Cancelled`](sandbox_core::Error::Cancelled).
    #[must_use]
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Sets the deadline and low-speed limit of git transfers (the deadline is also
    /// checked between the steps of a start).
    #[must_use]
    pub fn limits(mut self, limits: TransferLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the setup recipe (baked into snapshots; see [`setup_on_cold`](Self::setup_on_cold)).
    #[must_use]
    pub fn recipe(mut self, recipe: Recipe) -> Self {
        self.recipe = recipe;
        self
    }

    /// Writes this `user.name`/`user.email` into the repository config of every
    /// started workspace (`.git/config`, never a global file), before the recipe's
    /// after-start hooks.
    #[must_use]
    pub fn git_identity(mut self, identity: git::GitIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Also runs the recipe on cold starts (default: off, so a cold start costs a clone
    /// and nothing more; the recipe runs in the background build and every warm start
    /// has its results).
    #[must_use]
    pub fn setup_on_cold(mut self, on: bool) -> Self {
        self.setup_on_cold = on;
        self
    }

    /// Sets which repositories get snapshots.
    #[must_use]
    pub fn eligibility(mut self, eligibility: Eligibility) -> Self {
        self.max_size_bytes = eligibility.max_size_bytes;
        self.eligibility = eligibility;
        self
    }

    /// Sets when a warm start refreshes its snapshot.
    #[must_use]
    pub fn drift(mut self, drift: Drift) -> Self {
        self.drift = drift;
        self
    }

    /// Sets credentials for private repositories.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sets a transfer progress callback.
    #[must_use]
    pub fn progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The snapshot builder: wait for a build with
    /// [`wait`](SnapshotBuilder::wait), start one with [`kick`](SnapshotBuilder::kick).
    pub fn snapshot_builder(&self) -> &Arc<SnapshotBuilder> {
        &self.builder
    }

    /// The provider sandboxes are started on.
    pub fn provider(&self) -> &Arc<dyn SandboxProvider> {
        &self.provider
    }

    /// The snapshot key `source` would use.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the URL gives no key, [`Error::NotEligible`] when the
    /// [`Eligibility`] rules exclude the repository.
    pub fn key_for(&self, source: &Source) -> Result<SnapshotKey> {
        let key = SnapshotKey::for_repo(source.url(), &self.recipe)?;
        self.eligibility.check(&key)?;
        Ok(key)
    }

    /// Starts a sandbox holding `source`.
    ///
    /// # Errors
    /// Bad input (unknown branch, a new branch that exists, a bad URL), provider
    /// failures and clone failures; the sandbox this call created is removed first.
    pub async fn start(&self, source: &Source, connect: &ConnectOptions) -> Result<Started> {
        let mut clock = PhaseClock::start();
        self.check("starting a sandbox")?;

        // A quick look without the lock; `connect` decides again under it.
        if let Some(name) = &connect.name {
            if !connect.force_create {
                if let Some(sandbox) = self.provider.get(name).await? {
                    return self.reconnect(source, sandbox, clock).await;
                }
            }
        }

        if let Some(dir) = &connect.workdir {
            return self.start_workdir(source, connect, dir, clock).await;
        }

        let key = self.key_for(source);
        let mut reason_prefix = String::new();
        let hit = match &key {
            Ok(_) if !source.allows_prebuilt() => {
                reason_prefix =
                    "the source asked for no prebuilt snapshot (prebuilt(false)); ".into();
                None
            }
            Ok(key) => {
                let store = self.provider.snapshots();
                match clock
                    .time(Phase::SnapshotLookup, store.latest_ready(key.as_str()))
                    .await
                {
                    Ok(hit) => hit,
                    Err(e) => {
                        tracing::warn!(error = %e, "snapshot lookup failed; starting cold");
                        reason_prefix = format!("snapshot lookup failed ({e}); ");
                        None
                    }
                }
            }
            Err(Error::NotEligible(why)) => {
                reason_prefix = format!("no snapshot for this repository: {why}; ");
                None
            }
            Err(why) => {
                reason_prefix = format!("no snapshot for this repository: {why}; ");
                None
            }
        };

        let mut source_of_hit = SnapshotSource::Local;
        let hit = match (hit, &key, &self.remote) {
            (None, Ok(k), Some(remote)) if source.allows_prebuilt() && reason_prefix.is_empty() => {
                match self.pull(remote.as_ref(), k, &mut clock).await {
                    Ok(p) => {
                        source_of_hit = SnapshotSource::Registry;
                        Some(p.snapshot)
                    }
                    Err(why) => {
                        reason_prefix = format!("{why}; ");
                        None
                    }
                }
            }
            (hit, _, _) => hit,
        };

        if let (Some(meta), Ok(k)) = (hit, &key) {
            match self.warm(source, connect, k, &meta, &mut clock).await {
                Ok(Warm::Reconnected(sandbox)) => {
                    return self.reconnect(source, sandbox, clock).await;
                }
                Ok(Warm::Synced(sandbox, checkout, build, drift_reason)) => {
                    let mut reason = match source_of_hit {
                        SnapshotSource::Local => format!("snapshot {} is ready", meta.id),
                        SnapshotSource::Registry => format!(
                            "snapshot {} pulled from the registry {}",
                            meta.id,
                            self.remote
                                .as_ref()
                                .map(|r| r.location())
                                .unwrap_or_default()
                        ),
                    };
                    if let Some(d) = drift_reason {
                        reason.push_str(&format!("; refreshing it in the background: {d}"));
                    }
                    let report = clock.finish(
                        StartPath::Warm,
                        reason,
                        Some(checkout.head),
                        checkout.received_bytes,
                    );
                    return Ok(Started {
                        sandbox,
                        report,
                        key: Some(k.clone()),
                        snapshot: Some(meta),
                        snapshot_source: Some(source_of_hit),
                        build,
                        repository: Some(source.url().to_string()),
                    });
                }
                Err(WarmError::Sync(e)) if e.is_user_error() || is_remote_error(&e) => {
                    return Err(e);
                }
                // the hook would fail the same way on a cold start
                Err(WarmError::Hook(e)) => return Err(e),
                Err(WarmError::Sync(e) | WarmError::Restore(e)) if is_interrupt(&e) => {
                    return Err(e);
                }
                Err(WarmError::Sync(e) | WarmError::Restore(e)) => {
                    tracing::warn!(snapshot = %meta.id, error = %e, "warm start failed; starting cold");
                    reason_prefix = format!("warm start from snapshot {} failed ({e}); ", meta.id);
                }
            }
        }

        let (sandbox, checkout) = match self.cold(source, connect, &mut clock).await? {
            Made::Created(sandbox, checkout) => (sandbox, checkout),
            Made::Reconnected(sandbox) => return self.reconnect(source, sandbox, clock).await,
        };
        let leased_elsewhere = match (&key, &self.remote) {
            (Ok(k), Some(remote)) if source.allows_prebuilt() => {
                match remote.lease(k.as_str(), LEASE_TTL).await {
                    Ok(Lease::Taken) => None,
                    Ok(Lease::HeldElsewhere { holder, expires_at }) => Some(format!(
                        "{reason_prefix}another host is building this snapshot (lease held by \
                         {holder} until {expires_at}); cold start without building"
                    )),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not take the build lease; building anyway");
                        None
                    }
                }
            }
            _ => None,
        };
        let build = match &key {
            Ok(_) if !source.allows_prebuilt() || leased_elsewhere.is_some() => None,
            Ok(k) => match self
                .builder
                .kick(self.refresh_options(source, k), Some(sandbox.workspace()))
            {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start the snapshot build");
                    None
                }
            },
            Err(_) => None,
        };
        if let (Some(remote), Ok(k)) = (&self.remote, &key) {
            if leased_elsewhere.is_none()
                && source.allows_prebuilt()
                && !matches!(
                    build,
                    Some(KickOutcome::Started | KickOutcome::Detached { .. })
                )
            {
                // no build of ours will push: give the lease back
                if let Err(e) = remote.release(k.as_str()).await {
                    tracing::debug!(error = %e, "could not release the build lease; it expires");
                }
            }
        }
        let reason = match (&key, &build) {
            _ if leased_elsewhere.is_some() => leased_elsewhere.unwrap_or_default(),
            (Err(_), _) => format!("{reason_prefix}cold start"),
            (Ok(_), _) if !source.allows_prebuilt() => {
                format!("{reason_prefix}cold start, no snapshot used or built")
            }
            (Ok(_), Some(KickOutcome::BackingOff { last_error, .. })) => format!(
                "{reason_prefix}no ready snapshot; not building one yet, the last build failed: {last_error}"
            ),
            (Ok(_), _) if reason_prefix.is_empty() => {
                "no ready snapshot; building one in the background for next time".to_owned()
            }
            (Ok(_), _) => format!("{reason_prefix}building a snapshot in the background"),
        };
        let report = clock.finish(
            StartPath::Cold,
            reason,
            Some(checkout.head),
            checkout.received_bytes,
        );
        let repository = Some(source.url().to_string());
        Ok(Started {
            key: key.ok(),
            build,
            ..Started::without_snapshot(sandbox, report, repository)
        })
    }

    /// Pulls `key` from the registry within the bound; the error is the reason a cold
    /// start gives.
    async fn pull(
        &self,
        remote: &dyn RemoteSnapshots,
        key: &SnapshotKey,
        clock: &mut PhaseClock,
    ) -> std::result::Result<Pulled, String> {
        let bound = self.remote_bound;
        let pulled = clock
            .time(
                Phase::SnapshotPull,
                tokio::time::timeout(bound, remote.pull(key.as_str())),
            )
            .await;
        match pulled {
            Ok(Ok(Some(p))) => Ok(p),
            Ok(Ok(None)) => Err(format!(
                "no ready snapshot here nor in the registry {}",
                remote.location()
            )),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, kind = e.kind(), "snapshot pull failed; starting cold");
                Err(format!(
                    "pulling the snapshot from the registry {} failed ({e})",
                    remote.location()
                ))
            }
            Err(_) => Err(format!(
                "the registry {} did not deliver the snapshot within {} s",
                remote.location(),
                bound.as_secs_f64()
            )),
        }
    }

    /// The result of a start that found the named sandbox ready: the request
    /// reconciled with what it holds ([`reconnect::decide`]).
    async fn reconnect(
        &self,
        source: &Source,
        sandbox: Box<dyn Sandbox>,
        mut clock: PhaseClock,
    ) -> Result<Started> {
        let name = sandbox.name().clone();
        let what = format!("sandbox `{name}`");
        let r = self.reconcile(&what, source, &*sandbox, &mut clock).await?;
        self.after_start(&*sandbox, Some(&name), &mut clock).await?;
        let reason = match &r.switched_to {
            Some(b) => format!(
                "{what} exists and held {}; reconnected and switched it to branch `{b}` as asked (it had no local changes){}",
                r.held, r.remark
            ),
            None => format!(
                "{what} exists and holds {}; reconnected and left its workspace as it is{}",
                r.held, r.remark
            ),
        };
        let report = clock.finish(StartPath::Reconnected, reason, r.head, r.received_bytes);
        Ok(Started::without_snapshot(sandbox, report, r.repository))
    }

    /// A start in the user's own directory (see the type's docs).
    async fn start_workdir(
        &self,
        source: &Source,
        connect: &ConnectOptions,
        dir: &Path,
        mut clock: PhaseClock,
    ) -> Result<Started> {
        let asks_repo = asks_repository(source, dir);
        let clone = if asks_repo {
            let (d, url) = (dir.to_path_buf(), source.url().clone());
            match tokio::task::spawn_blocking(move || classify_dir(&d, &url))
                .await
                .map_err(|e| Error::Task(e.to_string()))?
            {
                DirState::Empty => true,
                DirState::Checkout => false,
                DirState::Other(why) => {
                    return Err(Error::WorkdirUnusable(format!(
                        "the workdir {} {why}; give an empty (or missing) directory to clone {} into, or a checkout of it",
                        dir.display(),
                        source.url()
                    )));
                }
            }
        } else {
            false
        };
        let opts = self.connect_options(connect);
        let (sandbox, connected) = clock
            .time(Phase::Provision, self.provider.connect(&opts))
            .await?;
        if connected == Connected::Reconnected {
            return self.reconnect(source, sandbox, clock).await;
        }
        let ws = sandbox.workspace().display().to_string();
        if clone {
            let src = source.clone().prebuilt(false);
            let checkout = self
                .git_step(&mut clock, Phase::GitClone, &*sandbox, move |ws, opts| {
                    git::clone(&src, ws, opts)
                })
                .await?;
            self.after_start_or_discard(&*sandbox, &mut clock).await?;
            self.finish(&*sandbox).await?;
            let reason = format!(
                "cloned {} into your directory {ws}, which is the workspace (a workdir gets no snapshot, and `down` never deletes it)",
                source.url()
            );
            let report = clock.finish(
                StartPath::Workdir,
                reason,
                Some(checkout.head),
                checkout.received_bytes,
            );
            let repository = Some(source.url().to_string());
            return Ok(Started::without_snapshot(sandbox, report, repository));
        }
        let what = format!("your directory {ws}");
        let r = match self.reconcile(&what, source, &*sandbox, &mut clock).await {
            Ok(r) => r,
            Err(e) => {
                // only the record this start made goes: the directory is the user's
                self.discard(&*sandbox).await;
                return Err(e);
            }
        };
        self.after_start_or_discard(&*sandbox, &mut clock).await?;
        self.finish(&*sandbox).await?;
        let reason = match &r.switched_to {
            Some(b) => format!(
                "your directory is the workspace; it held {}; switched it to branch `{b}` as asked (it had no local changes){}; no snapshot",
                r.held, r.remark
            ),
            None => format!(
                "your directory is the workspace (it holds {}{}); no clone and no snapshot",
                r.held, r.remark
            ),
        };
        let report = clock.finish(StartPath::Workdir, reason, r.head, r.received_bytes);
        Ok(Started::without_snapshot(sandbox, report, r.repository))
    }

    /// Looks at an existing workspace and does what [`reconnect::decide`] says: leave it,
    /// switch its branch (a sync, timed as `git_sync`), or refuse.
    async fn reconcile(
        &self,
        what: &str,
        source: &Source,
        sandbox: &dyn Sandbox,
        clock: &mut PhaseClock,
    ) -> Result<Reconciled> {
        let ws = sandbox.workspace().to_path_buf();
        if !ws.exists() {
            return Err(Error::Refused(format!(
                "{what}'s workspace {} no longer exists (it was removed from outside \
                 headstart); remove the sandbox or replace it",
                ws.display()
            )));
        }
        let asks_repo = asks_repository(source, &ws);
        // held until the switch (if any) is done: a concurrent start of the name then
        // finds its result, not a checkout in progress
        let _lock = self.lock_workspace(&ws).await?;
        let found = {
            let ws = ws.clone();
            tokio::task::spawn_blocking(move || git::inspect(&ws))
                .await
                .map_err(|e| Error::Task(e.to_string()))?
        };
        let found = match found {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::debug!(error = %e, "the workspace is no git checkout");
                None
            }
        };
        let held = found
            .as_ref()
            .map_or_else(|| "no git checkout".to_owned(), reconnect::holds);
        let alias = self.origin_alias.as_deref();
        match reconnect::decide(what, source, asks_repo, found.as_ref(), alias)? {
            reconnect::Decision::AsIs => {
                let mut remark = String::new();
                let found = found.as_ref();
                if asks_repo
                    && found.and_then(|f| f.origin.as_deref()) != Some(&source.url().to_string())
                {
                    remark.push_str(&format!(
                        "; you asked for {}, the same repository in another form",
                        source.url()
                    ));
                }
                if let Some(b) = source.new_branch().or(source.branch()) {
                    remark.push_str(&format!("; it is on branch `{b}` as asked"));
                }
                Ok(Reconciled {
                    held,
                    switched_to: None,
                    remark,
                    head: found.and_then(|f| f.head.clone()),
                    repository: found.and_then(|f| f.origin.clone()),
                    received_bytes: 0,
                })
            }
            reconnect::Decision::Switch(src) => {
                self.check("switching the branch")?;
                let repository = Some(src.url().to_string());
                let git_opts = self.git_options();
                let checkout = clock
                    .time(
                        Phase::GitSync,
                        tokio::task::spawn_blocking(move || git::sync(&src, &ws, &git_opts)),
                    )
                    .await
                    .map_err(|e| Error::Task(e.to_string()))??;
                Ok(Reconciled {
                    held,
                    switched_to: Some(checkout.head.branch.clone()),
                    remark: String::new(),
                    head: Some(checkout.head),
                    repository,
                    received_bytes: checkout.received_bytes,
                })
            }
        }
    }

    fn refresh_options(&self, source: &Source, key: &SnapshotKey) -> RefreshOptions {
        let mut base = Source::new(source.url().clone());
        if let Some(b) = source.branch() {
            base = base
                .with_branch(b.clone())
                .unwrap_or_else(|_| Source::new(source.url().clone()));
        }
        let mut o = RefreshOptions::new(base, key.clone(), self.recipe.clone());
        o.credentials = self.credentials.clone();
        o.max_size_bytes = self.max_size_bytes;
        o
    }

    fn git_options(&self) -> GitOptions {
        GitOptions {
            credentials: self.credentials.clone(),
            depth: Depth::default(),
            progress: self.progress.clone(),
            limits: self.limits,
            cancel: self.cancel.clone(),
            clean_seal: None,
        }
    }

    /// The options a start connects with: the new sandbox stays `creating` (and the
    /// name locked) until [`finish`](Self::finish) marks it ready.
    fn connect_options(&self, connect: &ConnectOptions) -> ConnectOptions {
        let mut opts = connect.clone().defer_ready(true);
        if opts.cancel.is_none() {
            opts.cancel.clone_from(&self.cancel);
        }
        opts
    }

    /// Takes the lock that serialises reconnecting starts' git work on one existing
    /// workspace (look, decide, switch): `.git/headstart-reconnect.lock`, a `flock`
    /// released on drop or when the process dies. Waits while another start holds it,
    /// until this start is cancelled or out of time. `None` when the workspace has no
    /// `.git` directory (nothing to switch).
    async fn lock_workspace(&self, ws: &Path) -> Result<Option<std::fs::File>> {
        let git_dir = ws.join(".git");
        if !git_dir.is_dir() {
            return Ok(None);
        }
        let path = git_dir.join("headstart-reconnect.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| sandbox_core::Error::io(format!("opening {}", path.display()), e))?;
        let mut pause = Duration::from_millis(5);
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(file)),
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {}
                Err(e) => {
                    let e =
                        sandbox_core::Error::io(format!("locking {}", path.display()), e.into());
                    return Err(e.into());
                }
            }
            self.check("waiting for another start of this sandbox")?;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Fails when the start was cancelled or its deadline passed.
    fn check(&self, what: &str) -> Result<()> {
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Err(sandbox_core::Error::Cancelled { what: what.into() }.into());
        }
        if self.limits.remaining() == Some(Duration::ZERO) {
            return Err(sandbox_core::Error::Timeout {
                what: what.into(),
                after: self.limits.deadline_len.unwrap_or_default(),
            }
            .into());
        }
        Ok(())
    }

    /// The identity and the after-start hooks ([`hooks`](crate::hooks)) in a sandbox
    /// that existed before (`kept`: it stays as it is when they fail).
    async fn after_start(
        &self,
        sandbox: &dyn Sandbox,
        kept: Option<&sandbox_core::SandboxName>,
        clock: &mut PhaseClock,
    ) -> Result<()> {
        self.check("running the after-start hooks")?;
        crate::hooks::after_start(
            sandbox,
            self.identity.as_ref(),
            &self.recipe.after_start,
            kept,
            clock,
        )
        .await
    }

    /// [`after_start`](Self::after_start) in a sandbox this start created: on failure
    /// it is removed (never offered ready).
    async fn after_start_or_discard(
        &self,
        sandbox: &dyn Sandbox,
        clock: &mut PhaseClock,
    ) -> Result<()> {
        let done = self.after_start(sandbox, None, clock).await;
        if done.is_err() {
            self.discard(sandbox).await;
        }
        done
    }

    /// Declares a created sandbox complete (unless the start was stopped meanwhile);
    /// on failure it is removed.
    async fn finish(&self, sandbox: &dyn Sandbox) -> Result<()> {
        let done = match self.check("starting a sandbox") {
            Ok(()) => sandbox.mark_ready().await.map_err(Error::from),
            Err(e) => Err(e),
        };
        if done.is_err() {
            self.discard(sandbox).await;
        }
        done
    }

    async fn warm(
        &self,
        source: &Source,
        connect: &ConnectOptions,
        key: &SnapshotKey,
        meta: &SnapshotMeta,
        clock: &mut PhaseClock,
    ) -> std::result::Result<Warm, WarmError> {
        let mut opts = self.connect_options(connect);
        opts.base_snapshot = Some(meta.id.clone());
        let (sandbox, connected) = clock
            .time(Phase::Provision, self.provider.connect(&opts))
            .await
            .map_err(|e| WarmError::Restore(e.into()))?;
        if connected == Connected::Reconnected {
            // another start of this name finished while we waited for its lock
            return Ok(Warm::Reconnected(sandbox));
        }
        let src = source.clone().prebuilt(true);
        // the provider's word that the workspace is exactly the captured snapshot
        let seal = sandbox.clean_seal();
        let checkout = self
            .git_step(clock, Phase::GitSync, &*sandbox, move |ws, opts| {
                let opts = GitOptions {
                    clean_seal: seal,
                    ..opts.clone()
                };
                git::sync(&src, ws, &opts)
            })
            .await
            .map_err(WarmError::Sync)?;
        self.after_start_or_discard(&*sandbox, clock)
            .await
            .map_err(WarmError::Hook)?;
        self.finish(&*sandbox).await.map_err(WarmError::Sync)?;
        let age = (OffsetDateTime::now_utc() - meta.created_at)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let drift = self.drift.judge(age, checkout.received_bytes);
        let build = match &drift {
            Some(why) => {
                tracing::info!(key = %key, why, "snapshot drifted; refreshing");
                self.builder
                    .kick(self.refresh_options(source, key), None)
                    .ok()
            }
            None => None,
        };
        Ok(Warm::Synced(sandbox, checkout, build, drift))
    }

    async fn cold(
        &self,
        source: &Source,
        connect: &ConnectOptions,
        clock: &mut PhaseClock,
    ) -> Result<Made> {
        let mut opts = self.connect_options(connect);
        opts.base_snapshot = None;
        if opts.image.is_none() {
            opts.image = self.recipe.base_image.clone();
        }
        let (sandbox, connected) = clock
            .time(Phase::Provision, self.provider.connect(&opts))
            .await?;
        if connected == Connected::Reconnected {
            // another start of this name finished while we waited for its lock
            return Ok(Made::Reconnected(sandbox));
        }
        let src = source.clone().prebuilt(false);
        let checkout = self
            .git_step(clock, Phase::GitClone, &*sandbox, move |ws, opts| {
                git::clone(&src, ws, opts)
            })
            .await?;
        if self.setup_on_cold && !self.recipe.commands.is_empty() {
            let t = std::time::Instant::now();
            let setup = match self.check("running the setup recipe") {
                Ok(()) => self.run_setup(&*sandbox).await,
                Err(e) => Err(e),
            };
            clock.record(Phase::Setup, t.elapsed());
            if let Err(e) = setup {
                self.discard(&*sandbox).await;
                return Err(e);
            }
        }
        self.after_start_or_discard(&*sandbox, clock).await?;
        self.finish(&*sandbox).await?;
        Ok(Made::Created(sandbox, checkout))
    }

    /// Runs a blocking git operation on the workspace of a sandbox this start created,
    /// as `phase`; on failure (or when the start was stopped meanwhile) the sandbox is
    /// removed.
    ///
    /// It waits for the operation to end: removing a workspace git is still writing
    /// could leave half of it behind. The engine sees the cancel token and the limits.
    async fn git_step(
        &self,
        clock: &mut PhaseClock,
        phase: Phase,
        sandbox: &dyn Sandbox,
        op: impl FnOnce(&std::path::Path, &GitOptions) -> sandbox_core::Result<Checkout>
        + Send
        + 'static,
    ) -> Result<Checkout> {
        let what = match phase {
            Phase::GitSync => "syncing the workspace",
            _ => "cloning the repository",
        };
        let err = match self.check(what) {
            Err(e) => e,
            Ok(()) => {
                let ws = sandbox.workspace().to_path_buf();
                let git_opts = self.git_options();
                let done = clock
                    .time(
                        phase,
                        tokio::task::spawn_blocking(move || op(&ws, &git_opts)),
                    )
                    .await;
                // an interrupt wins over whatever git made of it
                match (done, self.check(what)) {
                    (Ok(Ok(checkout)), Ok(())) => return Ok(checkout),
                    (_, Err(e)) => e,
                    (Ok(Err(e)), Ok(())) => e.into(),
                    (Err(e), Ok(())) => Error::Task(e.to_string()),
                }
            }
        };
        self.discard(sandbox).await;
        Err(err)
    }

    async fn run_setup(&self, sandbox: &dyn Sandbox) -> Result<()> {
        for cmd in &self.recipe.commands {
            let req = ExecRequest::new(cmd.argv.clone())?
                .timeout(cmd.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT));
            let out = sandbox.exec(&req).await?;
            if !out.success() {
                return Err(Error::RecipeFailed {
                    command: cmd.argv.join(" "),
                    detail: if out.timed_out {
                        "timed out".into()
                    } else {
                        crate::refresh::exit_detail(out.exit_code)
                    },
                });
            }
        }
        Ok(())
    }

    /// Removes a sandbox this start created (callers never pass one it reconnected
    /// to), through its handle: the handle holds the name's lock while the sandbox is
    /// `creating`, and taking it again would wait on ourselves.
    async fn discard(&self, sandbox: &dyn Sandbox) {
        let name = sandbox.name();
        match sandbox.remove().await {
            Ok(()) => tracing::info!(sandbox = %name, "removed the sandbox of a failed start"),
            Err(e) => {
                // a provider that cannot remove through a handle takes no lock in it
                tracing::debug!(sandbox = %name, error = %e, "removing through the handle failed; asking the provider");
                if let Err(e) = self.provider.remove(name).await {
                    tracing::warn!(sandbox = %name, error = %e, "could not remove a failed sandbox; a later prune (SandboxProvider::prune) removes it");
                }
            }
        }
    }
}

/// What [`FastStart::reconcile`] found and did.
struct Reconciled {
    /// What the workspace held before ([`reconnect::holds`]).
    held: String,
    /// The branch it was switched to, if it was.
    switched_to: Option<String>,
    /// More to say (`; …`), e.g. that the URL differed in form only.
    remark: String,
    head: Option<HeadInfo>,
    repository: Option<String>,
    received_bytes: u64,
}

/// False when `source` only names `workspace` itself (a local path to that very
/// directory, as `headstart up --workdir DIR` passes): nothing is asked of it.
fn asks_repository(source: &Source, workspace: &Path) -> bool {
    let Some(p) = source.url().local_path() else {
        return true;
    };
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(p) != canon(workspace)
}

/// What a workdir holds, for a start that names a repository.
enum DirState {
    /// Missing or empty: clone into it.
    Empty,
    /// A checkout of the same repository: use it.
    Checkout,
    /// Anything else: why it cannot be used.
    Other(String),
}

fn classify_dir(dir: &Path, url: &sandbox_core::RepoUrl) -> DirState {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DirState::Empty,
        Err(e) => return DirState::Other(format!("cannot be read ({e})")),
        Ok(mut entries) => {
            if entries.next().is_none() {
                return DirState::Empty;
            }
        }
    }
    if git::is_clone_running(dir) {
        return DirState::Other(
            "is being cloned into by another start; wait for it to finish, then start again"
                .to_owned(),
        );
    }
    if git::is_interrupted_clone(dir) {
        // a clone starts only in an empty directory: all of it is that clone's
        tracing::warn!(dir = %dir.display(), "clearing what an interrupted clone left, to clone again");
        return match clear_dir(dir) {
            Ok(()) => DirState::Empty,
            Err(e) => DirState::Other(format!(
                "holds what an interrupted clone left and could not be cleared ({e}); empty it"
            )),
        };
    }
    match git::inspect(dir) {
        Ok(found)
            if found
                .origin_url
                .as_ref()
                .is_some_and(|o| o.same_repository(url)) =>
        {
            DirState::Checkout
        }
        Ok(found) => DirState::Other(format!(
            "is not empty: it holds {}, not {url}",
            reconnect::holds(&found)
        )),
        Err(_) => DirState::Other("is not empty and is not a git checkout".to_owned()),
    }
}

/// Removes everything in `dir` (not `dir` itself; links are removed, not followed).
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// What a warm start made.
enum Warm {
    /// A new sandbox from the snapshot, synced and ready.
    Synced(
        Box<dyn Sandbox>,
        Checkout,
        Option<KickOutcome>,
        Option<String>,
    ),
    /// Another start of the name finished first; this is its sandbox.
    Reconnected(Box<dyn Sandbox>),
}

/// What a cold start made.
enum Made {
    /// A new sandbox, cloned and ready.
    Created(Box<dyn Sandbox>, Checkout),
    /// Another start of the name finished first; this is its sandbox.
    Reconnected(Box<dyn Sandbox>),
}

/// A start that was cancelled or ran out of time: never retried another way.
fn is_interrupt(e: &Error) -> bool {
    matches!(
        e,
        Error::Core(sandbox_core::Error::Cancelled { .. } | sandbox_core::Error::Timeout { .. })
    )
}

/// Where a warm start failed: restoring the snapshot (always falls back to cold) or
/// syncing it (bad input and remote errors are the caller's; the rest falls back).
enum WarmError {
    Restore(Error),
    Sync(Error),
    Hook(Error),
}

/// Errors about the remote (unreachable, auth): a cold start would fail the same way.
fn is_remote_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Core(
            sandbox_core::Error::Network { .. }
                | sandbox_core::Error::AuthFailed { .. }
                | sandbox_core::Error::RepoNotFound { .. }
        )
    )
}
