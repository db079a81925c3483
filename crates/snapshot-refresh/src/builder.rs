//! The background builder: one build per key at a time, a failure cache, tracked tasks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandbox_core::scrub::scrub;
use sandbox_core::{Credentials, RepoUrl, SandboxProvider, Source};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::cleanup::{self, CleanupReport};
use crate::error::{BuildError, Error, Result};
use crate::key::{Recipe, SnapshotKey};
use crate::refresh::{BuildReport, RefreshOptions, refresh_shared};
use crate::remote::{RemoteSnapshots, push_with_retries};
use crate::state::{BuildLock, FailureCache, FailureRecord, write_atomic};
use sandbox_core::git::seed;

/// Starts a detached build process for a job file and returns its pid. The CLI passes
/// one that runs `headstart snapshot run-job FILE` in a new process group, so `up`
/// returns at once and the build outlives it.
pub type DetachedSpawner = Arc<dyn Fn(&Path) -> std::io::Result<u32> + Send + Sync>;

/// Where builds run.
#[derive(Clone, Default)]
pub enum Spawn {
    /// As tokio tasks in this process; [`SnapshotBuilder::shutdown`] waits for them.
    #[default]
    InProcess,
    /// In a detached child process (see [`DetachedSpawner`]).
    Detached(DetachedSpawner),
}

impl std::fmt::Debug for Spawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InProcess => "InProcess",
            Self::Detached(_) => "Detached",
        })
    }
}

/// What [`SnapshotBuilder::kick`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "build", rename_all = "snake_case")]
pub enum KickOutcome {
    /// A build started in this process.
    Started,
    /// A detached build process started.
    Detached {
        /// Its pid.
        pid: u32,
    },
    /// A build of this key is already running (here or in another process).
    AlreadyBuilding,
    /// The key failed recently; no build until the backoff window ends.
    BackingOff {
        /// Consecutive failures.
        failures: u32,
        /// The last error (scrubbed of secrets).
        last_error: String,
        /// When a build may be tried again.
        #[serde(with = "time::serde::rfc3339")]
        retry_after: OffsetDateTime,
    },
}

impl From<FailureRecord> for KickOutcome {
    fn from(r: FailureRecord) -> Self {
        Self::BackingOff {
            failures: r.failures,
            last_error: scrub(&r.last_error).into_owned(),
            retry_after: r.retry_after,
        }
    }
}

/// A build's report, or why it failed (scrubbed of secrets).
type BuildResult = std::result::Result<BuildReport, BuildError>;

/// Runs snapshot builds in the background, deduplicated per key in this process
/// (single-flight) and across processes (a lock file per key), skipping keys inside
/// their failure-cache window, and tracking tasks so shutdown can wait for them.
///
/// Every build first removes what dead builds left behind
/// ([`cleanup_stale`](Self::cleanup_stale)), and records only scrubbed text: failure
/// records, error strings and recipe output never hold a registered secret.
///
/// Not the builder pattern: this is the *snapshot* builder (make one with
/// [`SnapshotBuilder::new`], or let [`FastStart::builder`](crate::FastStart::builder)
/// make it). [`FastStart`](crate::FastStart) hands it the builds of cold starts; it
/// is reachable again through [`FastStart::snapshot_builder`](crate::FastStart::snapshot_builder).
pub struct SnapshotBuilder {
    provider: Arc<dyn SandboxProvider>,
    state_dir: PathBuf,
    failures: FailureCache,
    spawn: Spawn,
    remote: Option<Arc<dyn RemoteSnapshots>>,
    inflight: Mutex<HashMap<String, JoinHandle<BuildResult>>>,
}

impl std::fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("provider", &self.provider.kind())
            .field("state_dir", &self.state_dir)
            .field("spawn", &self.spawn)
            .finish_non_exhaustive()
    }
}

/// A build job as written for a detached build process.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobFile {
    /// The repository URL.
    pub url: RepoUrl,
    /// The branch, if not the default.
    pub branch: Option<sandbox_core::BranchName>,
    /// The recipe.
    pub recipe: Recipe,
    /// The seed directory, if one was captured.
    pub seed: Option<PathBuf>,
    /// Build deadline in seconds.
    pub deadline_secs: u64,
    /// Output kept per stream.
    pub output_limit: usize,
    /// Largest workspace to snapshot.
    pub max_size_bytes: Option<u64>,
}

impl JobFile {
    fn from_options(o: &RefreshOptions) -> Self {
        Self {
            url: o.source.url().clone(),
            branch: o.source.branch().cloned(),
            recipe: o.recipe.clone(),
            seed: o.seed.clone(),
            deadline_secs: o.deadline.as_secs(),
            output_limit: o.output_limit,
            max_size_bytes: o.max_size_bytes,
        }
    }

    /// The refresh options this job describes (credentials come from the caller: they
    /// are never written to the job file).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when no key can be derived.
    pub fn into_options(self, credentials: Credentials) -> Result<RefreshOptions> {
        let mut source = Source::new(self.url);
        if let Some(b) = self.branch {
            source = source.with_branch(b)?;
        }
        let key = SnapshotKey::for_repo(source.url(), &self.recipe)?;
        let mut o = RefreshOptions::new(source, key, self.recipe);
        o.credentials = credentials;
        o.seed = self.seed;
        o.deadline = Duration::from_secs(self.deadline_secs.max(1));
        o.output_limit = self.output_limit;
        o.max_size_bytes = self.max_size_bytes;
        Ok(o)
    }
}

/// The old name of [`SnapshotBuilder`].
#[deprecated(
    note = "renamed SnapshotBuilder (it builds snapshots; it is not a builder-pattern type)"
)]
pub type Builder = SnapshotBuilder;

impl SnapshotBuilder {
    /// A builder for `provider` keeping its state (locks, failure cache, seeds, job
    /// files) under `state_dir`.
    pub fn new(provider: Arc<dyn SandboxProvider>, state_dir: impl Into<PathBuf>) -> Self {
        let state_dir = state_dir.into();
        Self {
            failures: FailureCache::new(&state_dir),
            provider,
            state_dir,
            spawn: Spawn::InProcess,
            remote: None,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the failure cache (e.g. a shorter backoff).
    #[must_use]
    pub fn with_failure_cache(mut self, failures: FailureCache) -> Self {
        self.failures = failures;
        self
    }

    /// Chooses where builds run.
    #[must_use]
    pub fn with_spawn(mut self, spawn: Spawn) -> Self {
        self.spawn = spawn;
        self
    }

    /// Publishes every snapshot this builder builds to `remote` (phase `snapshot_push`
    /// of the build: retried, recorded as a [`PushRecord`](crate::PushRecord), never failing the build).
    #[must_use]
    pub fn with_remote(mut self, remote: Arc<dyn RemoteSnapshots>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The remote builds are published to, if any.
    pub fn remote(&self) -> Option<&Arc<dyn RemoteSnapshots>> {
        self.remote.as_ref()
    }

    /// The failure cache.
    pub fn failures(&self) -> &FailureCache {
        &self.failures
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Starts a build of `options.key` unless one is running or the key is backing
    /// off. When `seed_from` names a fresh checkout of the repository, its git data is
    /// captured as a seed (hard links, milliseconds) so the build needs no clone.
    ///
    /// # Errors
    /// [`Error::State`] when the state directory is unusable.
    pub fn kick(
        &self,
        mut options: RefreshOptions,
        seed_from: Option<&Path>,
    ) -> Result<KickOutcome> {
        let key = options.key.as_str().to_owned();
        let mut inflight = self
            .inflight
            .lock()
            .map_err(|_| Error::Task("builder lock poisoned".into()))?;
        if inflight.get(&key).is_some_and(|h| !h.is_finished()) {
            return Ok(KickOutcome::AlreadyBuilding);
        }
        if let Some(record) = self.failures.blocked(&key) {
            tracing::debug!(key, failures = record.failures, "build backing off");
            return Ok(record.into());
        }
        let Some(lock) = BuildLock::try_acquire(&self.state_dir, &key)? else {
            return Ok(KickOutcome::AlreadyBuilding);
        };
        if let Some(ws) = seed_from {
            match seed::capture(ws, &self.state_dir.join("seeds"), &key) {
                Ok(s) => options.seed = Some(s),
                Err(e) => tracing::warn!(key, error = %e, "no seed; the build will clone"),
            }
        }
        options.build_marker = Some(cleanup::marker(&self.state_dir, &key));
        match &self.spawn {
            Spawn::InProcess => {
                let provider = self.provider.clone();
                let failures = self.failures.clone();
                let state_dir = self.state_dir.clone();
                let task_key = key.clone();
                let remote = self.remote.clone();
                let handle = tokio::spawn(async move {
                    let _lock = lock;
                    before_build(provider.as_ref(), &state_dir, &options).await;
                    let result = refresh_shared(provider, options).await;
                    let result = publish(remote.as_deref(), &state_dir, &task_key, result).await;
                    settle(&failures, &task_key, result)
                });
                inflight.insert(key, handle);
                Ok(KickOutcome::Started)
            }
            Spawn::Detached(spawner) => {
                let jobs = self.state_dir.join("jobs");
                std::fs::create_dir_all(&jobs)
                    .map_err(|e| Error::state(format!("creating {}", jobs.display()), e))?;
                let rand = uuid::Uuid::new_v4().simple().to_string();
                let path = jobs.join(format!("{key}.{}.json", &rand[..8]));
                let bytes = serde_json::to_vec_pretty(&JobFile::from_options(&options))
                    .map_err(|e| Error::Task(e.to_string()))?;
                write_atomic(&path, &bytes)?;
                // The child takes the lock itself; release ours first.
                drop(lock);
                match spawner(&path) {
                    Ok(pid) => Ok(KickOutcome::Detached { pid }),
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        if let Some(s) = &options.seed {
                            seed::discard(s);
                        }
                        Err(Error::state("starting the detached build process", e))
                    }
                }
            }
        }
    }

    /// Runs a job file in this process (what a detached build process does). Returns
    /// `Ok(None)` when another process is already building the key.
    ///
    /// # Errors
    /// The build's error (also recorded in the failure cache).
    pub async fn run_job_file(
        &self,
        path: &Path,
        credentials: Credentials,
    ) -> Result<Option<BuildReport>> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::state(format!("reading {}", path.display()), e))?;
        let job: JobFile = match serde_json::from_slice(&bytes) {
            Ok(j) => j,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(Error::InvalidRecipe(format!(
                    "job file {}: {e}",
                    path.display()
                )));
            }
        };
        let mut options = match job.into_options(credentials) {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        let key = options.key.as_str().to_owned();
        // The job file stays until the lock is ours: while it exists, a cleanup leaves
        // this key (and the job's seed) alone. The lock may be held for a moment by a
        // cleanup that started before the job was written: try a few times.
        let mut lock = None;
        for attempt in 0..20 {
            lock = BuildLock::try_acquire(&self.state_dir, &key)?;
            if lock.is_some() || attempt == 19 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = std::fs::remove_file(path);
        let Some(lock) = lock else {
            if let Some(s) = &options.seed {
                seed::discard(s);
            }
            return Ok(None);
        };
        options.build_marker = Some(cleanup::marker(&self.state_dir, &key));
        before_build(self.provider.as_ref(), &self.state_dir, &options).await;
        let result = refresh_shared(self.provider.clone(), options).await;
        let result = publish(self.remote.as_deref(), &self.state_dir, &key, result).await;
        drop(lock);
        match settle(&self.failures, &key, result) {
            Ok(r) => Ok(Some(r)),
            Err(e) => Err(Error::Task(e.to_string())),
        }
    }

    /// Removes what dead builds left behind, for every key whose build lock is free
    /// (never a running build's files): the processes their recipes started (found by
    /// their `HEADSTART_BUILD` marker), their build sandboxes, their seeds, and job
    /// files whose detached build never started. Every build does this first; `prune`
    /// should too.
    ///
    /// # Errors
    /// [`Error::State`] when the state directory is unusable.
    pub async fn cleanup_stale(&self) -> Result<CleanupReport> {
        cleanup::cleanup(self.provider.as_ref(), &self.state_dir, None).await
    }

    /// Waits for the build of `key` started by this builder, if any, and returns its
    /// result (`None` when no build of that key was started here, e.g. a snapshot was
    /// already ready, another process is building it, or it was already waited for).
    ///
    /// ```
    /// # #[cfg(feature = "local")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use snapshot_refresh::prelude::*;
    /// # let upstream = test_support::Upstream::new("trunk", 1)?;
    /// # let tmp = tempfile::tempdir()?;
    /// # let data_dir = tmp.path().join("data");
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let fast = FastStart::local(&data_dir)?;
    /// let source = Source::parse(&upstream.file_url())?;
    /// let started = fast.start(&source, &ConnectOptions::new()).await?; // cold: builds one
    /// if let Some(key) = &started.key {
    ///     match fast.snapshot_builder().wait(key).await {
    ///         Some(Ok(report)) => println!("snapshot {} is ready", report.snapshot.id),
    ///         Some(Err(e)) if e.kind() == "recipe_failed" => eprintln!("fix the recipe: {e}"),
    ///         Some(Err(e)) => eprintln!("build failed ({}): {e}", e.kind()),
    ///         None => {} // nothing built here: a snapshot was ready, or someone else builds it
    ///     }
    ///     // a second wait finds nothing: the result was taken
    ///     assert!(fast.snapshot_builder().wait(key).await.is_none());
    /// }
    /// # started.remove().await?;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "local"))]
    /// # fn main() {}
    /// ```
    pub async fn wait(&self, key: &SnapshotKey) -> Option<BuildResult> {
        let handle = self.inflight.lock().ok()?.remove(key.as_str())?;
        Some(
            handle
                .await
                .unwrap_or_else(|e| Err(BuildError::task(format!("build task failed: {e}")))),
        )
    }

    /// Waits up to `timeout` for every build started here; returns how many were still
    /// running when it gave up (those are aborted: their lock is released and no
    /// half-written snapshot is ever visible).
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        let handles: Vec<JoinHandle<BuildResult>> = match self.inflight.lock() {
            Ok(mut m) => m.drain().map(|(_, h)| h).collect(),
            Err(_) => return 0,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut left = 0;
        for mut h in handles {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                h.abort();
                left += 1;
            }
        }
        left
    }
}

/// The cleanup every build does first (its own key included: its lock is ours; its own
/// seed is kept). A failed cleanup does not stop the build.
async fn before_build(provider: &dyn SandboxProvider, state_dir: &Path, options: &RefreshOptions) {
    let own = (options.key.as_str(), options.seed.as_deref());
    if let Err(e) = cleanup::cleanup(provider, state_dir, Some(own)).await {
        tracing::warn!(error = %e, "could not clean up after dead builds");
    }
}

/// Pushes a built snapshot to the remote, if any, and gives the build lease back.
async fn publish(
    remote: Option<&dyn RemoteSnapshots>,
    state_dir: &Path,
    key: &str,
    result: Result<BuildReport>,
) -> Result<BuildReport> {
    let Some(remote) = remote else {
        return result;
    };
    let result = match result {
        Ok(mut report) => {
            report.push = Some(push_with_retries(remote, &report.snapshot, state_dir).await);
            Ok(report)
        }
        Err(e) => Err(e),
    };
    if let Err(e) = remote.release(key).await {
        tracing::debug!(key, error = %e, "could not release the build lease; it expires");
    }
    result
}

fn settle(failures: &FailureCache, key: &str, result: Result<BuildReport>) -> BuildResult {
    match result {
        Ok(report) => {
            failures.clear(key);
            tracing::info!(
                key,
                snapshot = %report.snapshot.id,
                ms = report.duration.as_millis() as u64,
                from_seed = report.from_seed,
                "snapshot ready"
            );
            Ok(report)
        }
        Err(e) => {
            let err = BuildError::from_error(&e);
            if let Err(w) = failures.record_failure(key, err.message()) {
                tracing::warn!(key, error = %w, "could not record the build failure");
            }
            Err(err)
        }
    }
}
