//! Integration tests against a real registry on loopback (`docker-registry`, skipped
//! with a printed reason when it is not installed, failing under
//! `HEADSTART_REQUIRE_REGISTRY=1`): two data directories are two hosts sharing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // test code

mod faults;
mod hosts;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use provisioners::local::LocalProvider;
use sandbox_core::{ConnectOptions, SandboxName, SandboxProvider};
use snapshot_refresh::{FastStart, RemoteSnapshots, SnapshotBuilder};
use snapshot_registry::{RegistryConfig, RegistryRef, RegistrySnapshots};

/// One "host": a data directory with its provider, builder and remote.
pub(crate) struct Host {
    pub(crate) home: tempfile::TempDir,
    pub(crate) provider: Arc<LocalProvider>,
    pub(crate) builder: Arc<SnapshotBuilder>,
    pub(crate) remote: Arc<RegistrySnapshots>,
    pub(crate) reference: String,
    pub(crate) holder: String,
}

impl Host {
    pub(crate) fn new(reference: &str, holder: &str) -> Self {
        Self::with_config(reference, holder, |_| {})
    }

    pub(crate) fn with_config(
        reference: &str,
        holder: &str,
        tweak: impl FnOnce(&mut RegistryConfig),
    ) -> Self {
        let home = tempfile::Builder::new()
            .prefix("hs-host-")
            .tempdir()
            .unwrap();
        let provider = Arc::new(LocalProvider::new(home.path()));
        let remote = Arc::new(remote_for(reference, holder, home.path(), tweak));
        let dyn_remote: Arc<dyn RemoteSnapshots> = remote.clone();
        let builder = Arc::new(
            SnapshotBuilder::new(provider.clone(), home.path().join("state"))
                .with_remote(dyn_remote),
        );
        Self {
            home,
            provider,
            builder,
            remote,
            reference: reference.to_owned(),
            holder: holder.to_owned(),
        }
    }

    /// A FastStart with this host's remote (a fresh `RegistrySnapshots`, as a separate
    /// process would have) and pull bound.
    pub(crate) fn fast(&self, bound: Duration) -> FastStart {
        let provider: Arc<dyn SandboxProvider> = self.provider.clone();
        let remote: Arc<dyn RemoteSnapshots> = Arc::new(remote_for(
            &self.reference,
            &self.holder,
            self.home.path(),
            |_| {},
        ));
        FastStart::new(provider, self.builder.clone()).remote(remote, bound)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        test_support::unmount_all_under(self.home.path());
    }
}

pub(crate) fn remote_for(
    reference: &str,
    holder: &str,
    home: &Path,
    tweak: impl FnOnce(&mut RegistryConfig),
) -> RegistrySnapshots {
    let mut config = RegistryConfig::new(RegistryRef::parse(reference).unwrap());
    config.holder = holder.to_owned();
    tweak(&mut config);
    RegistrySnapshots::new(config, home).unwrap()
}

pub(crate) fn named(n: &str) -> ConnectOptions {
    ConnectOptions::new().name(SandboxName::new(n).unwrap())
}

/// Files under `dir` (recursively), for "nothing half-written" checks.
pub(crate) fn entries_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(entries_under(&e.path()));
        }
    }
    out
}
