//! The orchestration of one start: [`FastStart`].

use std::sync::Arc;
use std::time::Duration;

use sandbox_core::git::{self, Checkout, Depth, GitOptions, ProgressFn};
use sandbox_core::{
    ConnectOptions, Connected, Credentials, ExecRequest, Phase, PhaseClock, Sandbox,
    SandboxProvider, SnapshotMeta, Source, StartPath, StartupReport,
};
use time::OffsetDateTime;

use crate::builder::{Builder, KickOutcome};
use crate::error::{Error, Result};
use crate::key::{Recipe, SnapshotKey};
use crate::policy::{Drift, Eligibility};
use crate::refresh::{DEFAULT_COMMAND_TIMEOUT, RefreshOptions};

/// A started sandbox and what the start did.
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
    /// What the background builder did (cold starts and drifted warm starts).
    pub build: Option<KickOutcome>,
}

/// Starts sandboxes fast: looks up the repository's newest ready base snapshot; on a
/// hit, restores it and catches up with a depth-1 fetch of one branch (warm); on a
/// miss, clones and asks the [`Builder`] for a snapshot for next time (cold), seeded
/// from the clone it just made.
///
/// A store error or a corrupt snapshot never fails a start: it falls back to the cold
/// path and says why in the report. A failed start removes the sandbox it created.
pub struct FastStart {
    provider: Arc<dyn SandboxProvider>,
    builder: Arc<Builder>,
    recipe: Recipe,
    eligibility: Eligibility,
    drift: Drift,
    credentials: Credentials,
    progress: Option<ProgressFn>,
    max_size_bytes: Option<u64>,
    setup_on_cold: bool,
}

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
    /// Starts on `provider`, building snapshots with `builder`.
    pub fn new(provider: Arc<dyn SandboxProvider>, builder: Arc<Builder>) -> Self {
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
        }
    }

    /// Sets the setup recipe (baked into snapshots; see [`setup_on_cold`](Self::setup_on_cold)).
    #[must_use]
    pub fn recipe(mut self, recipe: Recipe) -> Self {
        self.recipe = recipe;
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

    /// The builder.
    pub fn builder(&self) -> &Arc<Builder> {
        &self.builder
    }

    /// The snapshot key `source` would use, or why it gets no snapshot.
    pub fn key_for(&self, source: &Source) -> std::result::Result<SnapshotKey, String> {
        let key = SnapshotKey::for_repo(source.url(), &self.recipe).map_err(|e| e.to_string())?;
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

        if let Some(name) = &connect.name {
            if !connect.force_create {
                if let Some(sandbox) = self.provider.get(name).await? {
                    let head = git::head(sandbox.workspace()).ok();
                    let report = clock.finish(
                        StartPath::Reconnected,
                        format!(
                            "sandbox `{name}` exists; reconnected and left its workspace as it is"
                        ),
                        head,
                        0,
                    );
                    return Ok(Started {
                        sandbox,
                        report,
                        key: None,
                        snapshot: None,
                        build: None,
                    });
                }
            }
        }

        if connect.workdir.is_some() {
            let (sandbox, _) = clock
                .time(Phase::Provision, self.provider.connect(connect))
                .await?;
            let head = git::head(sandbox.workspace()).ok();
            let report = clock.finish(
                StartPath::Workdir,
                "your directory is the workspace; no clone and no snapshot",
                head,
                0,
            );
            return Ok(Started {
                sandbox,
                report,
                key: None,
                snapshot: None,
                build: None,
            });
        }

        let key = self.key_for(source);
        let mut reason_prefix = String::new();
        let hit = match &key {
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
            Err(why) => {
                reason_prefix = format!("no snapshot for this repository: {why}; ");
                None
            }
        };

        if let (Some(meta), Ok(k)) = (hit, &key) {
            match self.warm(source, connect, k, &meta, &mut clock).await {
                Ok((sandbox, checkout, build, drift_reason)) => {
                    let mut reason = format!("snapshot {} is ready", meta.id);
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
                        build,
                    });
                }
                Err(WarmError::Sync(e)) if e.is_user_error() || is_remote_error(&e) => {
                    return Err(e);
                }
                Err(WarmError::Sync(e) | WarmError::Restore(e)) => {
                    tracing::warn!(snapshot = %meta.id, error = %e, "warm start failed; starting cold");
                    reason_prefix = format!("warm start from snapshot {} failed ({e}); ", meta.id);
                }
            }
        }

        let (sandbox, checkout) = self.cold(source, connect, &mut clock).await?;
        let build = match &key {
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
        let reason = match (&key, &build) {
            (Err(_), _) => format!("{reason_prefix}cold start"),
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
        Ok(Started {
            sandbox,
            report,
            key: key.ok(),
            snapshot: None,
            build,
        })
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
            ..GitOptions::default()
        }
    }

    async fn warm(
        &self,
        source: &Source,
        connect: &ConnectOptions,
        key: &SnapshotKey,
        meta: &SnapshotMeta,
        clock: &mut PhaseClock,
    ) -> std::result::Result<Warm, WarmError> {
        let mut opts = connect.clone();
        opts.base_snapshot = Some(meta.id.clone());
        let (sandbox, connected) = clock
            .time(Phase::Provision, self.provider.connect(&opts))
            .await
            .map_err(|e| WarmError::Restore(e.into()))?;
        let src = source.clone().prebuilt(true);
        let checkout = self
            .git_step(
                clock,
                Phase::GitSync,
                &*sandbox,
                connected,
                move |ws, opts| git::sync(&src, ws, opts),
            )
            .await
            .map_err(WarmError::Sync)?;
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
        Ok((sandbox, checkout, build, drift))
    }

    async fn cold(
        &self,
        source: &Source,
        connect: &ConnectOptions,
        clock: &mut PhaseClock,
    ) -> Result<(Box<dyn Sandbox>, Checkout)> {
        let mut opts = connect.clone();
        opts.base_snapshot = None;
        if opts.image.is_none() {
            opts.image = self.recipe.base_image.clone();
        }
        let (sandbox, connected) = clock
            .time(Phase::Provision, self.provider.connect(&opts))
            .await?;
        let src = source.clone().prebuilt(false);
        let checkout = self
            .git_step(
                clock,
                Phase::GitClone,
                &*sandbox,
                connected,
                move |ws, opts| git::clone(&src, ws, opts),
            )
            .await?;
        if self.setup_on_cold && !self.recipe.commands.is_empty() {
            let t = std::time::Instant::now();
            let setup = self.run_setup(&*sandbox).await;
            clock.record(Phase::Setup, t.elapsed());
            if let Err(e) = setup {
                self.discard(&*sandbox, connected).await;
                return Err(e);
            }
        }
        Ok((sandbox, checkout))
    }

    /// Runs a blocking git operation on the sandbox's workspace as `phase`; on failure
    /// the sandbox this start created is removed.
    async fn git_step(
        &self,
        clock: &mut PhaseClock,
        phase: Phase,
        sandbox: &dyn Sandbox,
        connected: Connected,
        op: impl FnOnce(&std::path::Path, &GitOptions) -> sandbox_core::Result<Checkout>
        + Send
        + 'static,
    ) -> Result<Checkout> {
        let ws = sandbox.workspace().to_path_buf();
        let git_opts = self.git_options();
        let done = clock
            .time(
                phase,
                tokio::task::spawn_blocking(move || op(&ws, &git_opts)),
            )
            .await;
        let err = match done {
            Ok(Ok(checkout)) => return Ok(checkout),
            Ok(Err(e)) => e.into(),
            Err(e) => Error::Task(e.to_string()),
        };
        self.discard(sandbox, connected).await;
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
                        format!("exit status {:?}", out.exit_code)
                    },
                });
            }
        }
        Ok(())
    }

    /// Removes a sandbox this start created (never one it reconnected to).
    async fn discard(&self, sandbox: &dyn Sandbox, connected: Connected) {
        if connected == Connected::Created {
            if let Err(e) = self.provider.remove(sandbox.name()).await {
                tracing::warn!(sandbox = %sandbox.name(), error = %e, "could not remove a failed sandbox");
            }
        }
    }
}

type Warm = (
    Box<dyn Sandbox>,
    Checkout,
    Option<KickOutcome>,
    Option<String>,
);

/// Where a warm start failed: restoring the snapshot (always falls back to cold) or
/// syncing it (bad input and remote errors are the caller's; the rest falls back).
enum WarmError {
    Restore(Error),
    Sync(Error),
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
