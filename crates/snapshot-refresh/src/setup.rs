//! Making a [`FastStart`]: [`FastStartBuilder`] (and [`FastStart::local`] with the
//! `local` feature).
//!
//! This module only wires a provider, a [`SnapshotBuilder`] and a data directory
//! together; what a start does is in `fast_start`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sandbox_core::SandboxProvider;

use crate::builder::{SnapshotBuilder, Spawn};
use crate::error::{Error, Result};
use crate::fast_start::FastStart;
use crate::remote::RemoteSnapshots;
use crate::state::FailureCache;

/// Type state of a [`FastStartBuilder`] that has no provider yet: `build` is not
/// available until [`provider`](FastStartBuilder::provider) is called.
#[derive(Debug, Clone, Copy)]
pub struct NoProvider;

/// Builds a [`FastStart`]: `FastStart::builder().provider(p).data_dir(d).build()?`.
///
/// - [`provider`](Self::provider) (required, checked at compile time): where sandboxes
///   and snapshots live;
/// - [`data_dir`](Self::data_dir): the directory of headstart's own state; the
///   snapshot builder keeps its locks, failure cache, seeds and job files in
///   `<data_dir>/state`. Use the provider's data directory (for a
///   `LocalProvider`, its `home`) so one directory holds everything;
/// - [`state_dir`](Self::state_dir): that state directory itself, when it must be
///   elsewhere. One of `data_dir` and `state_dir` is required (checked by `build`).
///
/// - [`remote`](Self::remote): a shared snapshot registry, for both the builder and
///   the starts.
///
/// Everything else ([`recipe`](FastStart::recipe), [`eligibility`](FastStart::eligibility),
/// credentials, limits) is set on the built [`FastStart`].
#[must_use]
pub struct FastStartBuilder<P = NoProvider> {
    provider: P,
    data_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    failures: Option<FailureCache>,
    spawn: Spawn,
    remote: Option<(Arc<dyn RemoteSnapshots>, Duration)>,
}

impl<P> std::fmt::Debug for FastStartBuilder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastStartBuilder")
            .field("data_dir", &self.data_dir)
            .field("state_dir", &self.state_dir)
            .field("spawn", &self.spawn)
            .field("remote", &self.remote.as_ref().map(|(_, bound)| bound))
            .finish_non_exhaustive()
    }
}

impl FastStartBuilder<NoProvider> {
    pub(crate) fn new() -> Self {
        Self {
            provider: NoProvider,
            data_dir: None,
            state_dir: None,
            failures: None,
            spawn: Spawn::InProcess,
            remote: None,
        }
    }
}

impl<P> FastStartBuilder<P> {
    /// Starts sandboxes on `provider` (any [`SandboxProvider`], e.g. provisioners'
    /// `LocalProvider`).
    pub fn provider(
        self,
        provider: impl SandboxProvider + 'static,
    ) -> FastStartBuilder<Arc<dyn SandboxProvider>> {
        self.shared_provider(Arc::new(provider))
    }

    /// Like [`provider`](Self::provider), for a provider already shared.
    pub fn shared_provider(
        self,
        provider: Arc<dyn SandboxProvider>,
    ) -> FastStartBuilder<Arc<dyn SandboxProvider>> {
        FastStartBuilder {
            provider,
            data_dir: self.data_dir,
            state_dir: self.state_dir,
            failures: self.failures,
            spawn: self.spawn,
            remote: self.remote,
        }
    }

    /// The data directory; builder state goes to `<data_dir>/state` unless
    /// [`state_dir`](Self::state_dir) says otherwise.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Where the snapshot builder keeps its state (default `<data_dir>/state`).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Replaces the failure cache (e.g. a shorter backoff after a failed build).
    pub fn failure_cache(mut self, failures: FailureCache) -> Self {
        self.failures = Some(failures);
        self
    }

    /// Where builds run (default: tokio tasks of this process).
    pub fn spawn(mut self, spawn: Spawn) -> Self {
        self.spawn = spawn;
        self
    }

    /// Shares snapshots through `remote` (e.g. snapshot-registry's
    /// `RegistrySnapshots`): the snapshot builder pushes what it builds
    /// ([`SnapshotBuilder::with_remote`]) and a start that misses locally pulls,
    /// waiting at most `bound` ([`FastStart::remote`]).
    pub fn remote(mut self, remote: Arc<dyn RemoteSnapshots>, bound: Duration) -> Self {
        self.remote = Some((remote, bound));
        self
    }
}

impl FastStartBuilder<Arc<dyn SandboxProvider>> {
    /// The [`FastStart`], with its [`SnapshotBuilder`] on the same provider.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`](sandbox_core::Error::InvalidOptions) (through
    /// [`Error::Core`]) when neither a data directory nor a state directory was given;
    /// [`Error::State`] when the state directory cannot be created.
    pub fn build(self) -> Result<FastStart> {
        let provider = self.provider;
        let state_dir = match (self.state_dir, self.data_dir) {
            (Some(s), _) => s,
            (None, Some(d)) => d.join("state"),
            (None, None) => {
                return Err(sandbox_core::Error::InvalidOptions(
                    "FastStart::builder() needs .data_dir(DIR) (state goes to DIR/state) or .state_dir(DIR)"
                        .into(),
                )
                .into());
            }
        };
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| Error::state(format!("creating {}", state_dir.display()), e))?;
        let mut builder = SnapshotBuilder::new(provider.clone(), state_dir).with_spawn(self.spawn);
        if let Some(f) = self.failures {
            builder = builder.with_failure_cache(f);
        }
        if let Some((remote, _)) = &self.remote {
            builder = builder.with_remote(Arc::clone(remote));
        }
        let fast = FastStart::new(provider, Arc::new(builder));
        Ok(match self.remote {
            Some((remote, bound)) => fast.remote(remote, bound),
            None => fast,
        })
    }
}

impl FastStart {
    /// A [`FastStartBuilder`]: `FastStart::builder().provider(p).data_dir(d).build()?`.
    ///
    /// (The snapshot builder of a built `FastStart` is
    /// [`snapshot_builder`](Self::snapshot_builder).)
    pub fn builder() -> FastStartBuilder<NoProvider> {
        FastStartBuilder::new()
    }

    /// A `FastStart` on a `LocalProvider` (sandboxes are directories, no isolation)
    /// keeping everything under `data_dir`: sandboxes, snapshots, and the builder state
    /// in `<data_dir>/state`. Needs the `local` feature.
    ///
    /// # Errors
    /// As [`FastStartBuilder::build`].
    #[cfg(feature = "local")]
    pub fn local(data_dir: impl Into<PathBuf>) -> Result<Self> {
        let data_dir = data_dir.into();
        Self::builder()
            .provider(provisioners::LocalProvider::new(&data_dir))
            .data_dir(data_dir)
            .build()
    }
}
