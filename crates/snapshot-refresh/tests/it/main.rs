//! Integration tests for `snapshot-refresh`: FastStart, the builder and refreshes on the
//! local provider, against real git servers on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod builder;
mod fast_start;
mod orchestration;
mod reconnect;
mod secrets;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use provisioners::local::LocalProvider;
use sandbox_core::SandboxProvider;
use snapshot_refresh::{Builder, FailureCache, FastStart};

/// A local provider, builder and FastStart over one temporary home.
pub(crate) struct Rig {
    pub(crate) home: tempfile::TempDir,
    pub(crate) provider: Arc<LocalProvider>,
    pub(crate) builder: Arc<Builder>,
}

impl Rig {
    pub(crate) fn new() -> Self {
        let home = tempfile::Builder::new()
            .prefix("hs-rig-")
            .tempdir()
            .unwrap();
        let provider = Arc::new(LocalProvider::new(home.path()));
        let builder = Arc::new(Builder::new(provider.clone(), state_dir(home.path())));
        Self {
            home,
            provider,
            builder,
        }
    }

    pub(crate) fn with_backoff(base: Duration) -> Self {
        let mut rig = Self::new();
        let failures = FailureCache::new(&state_dir(rig.home.path())).with_backoff(base, base * 4);
        rig.builder = Arc::new(
            Builder::new(rig.provider.clone(), state_dir(rig.home.path()))
                .with_failure_cache(failures),
        );
        rig
    }

    pub(crate) fn fast(&self) -> FastStart {
        let provider: Arc<dyn SandboxProvider> = self.provider.clone();
        FastStart::new(provider, self.builder.clone())
    }
}

impl Drop for Rig {
    /// Warm sandboxes are overlay mounts under the home: undo them so the temporary
    /// directory goes away and no mount outlives the test.
    fn drop(&mut self) {
        test_support::unmount_all_under(self.home.path());
    }
}

pub(crate) fn state_dir(home: &Path) -> PathBuf {
    home.join("state")
}
