//! The case "warm start on a fresh host from the registry": the primed rig's snapshot
//! is pushed once to a real registry on loopback (`docker-registry`), then every
//! repetition is a fresh data directory (a new host) whose start pulls it
//! (`snapshot_pull`), restores it and catches up (warm), beside `git clone --depth=1`.
//!
//! What it is not: a registry benchmark across a network (loopback only), nor a test
//! (the snapshot-registry tests check behaviour).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sandbox_core::{SandboxName, Source, StartPath};
use snapshot_refresh::{FastStart, RemoteSnapshots, SnapshotSource};
use snapshot_registry::{RegistryConfig, RegistryRef, RegistrySnapshots};

use super::cases::{start_sample, timed_start};
use super::measure::{CaseResult, Sample};
use super::{Ctx, Rig, Served, no_drift};

/// A running registry holding the primed rig's snapshot.
pub(super) struct Shared {
    pub(super) reference: String,
    _registry: test_support::Registry,
}

fn remote(reference: &str, home: &Path) -> anyhow::Result<RegistrySnapshots> {
    let config = RegistryConfig::new(RegistryRef::parse(reference)?);
    Ok(RegistrySnapshots::new(config, home)?)
}

/// Starts a registry and pushes the primed rig's snapshot of `source`; `Err` says why
/// the case cannot run.
pub(super) async fn share(rig: &Rig, source: &Source) -> Result<Shared, String> {
    let inner = async {
        let registry = test_support::Registry::start().context("starting docker-registry")?;
        let reference = registry.reference("bench/headstart");
        let home = rig.home.as_ref().context("not a local rig")?;
        let key = rig.fast.key_for(source)?;
        let snap = rig
            .provider
            .snapshots()
            .latest_ready(key.as_str())
            .await?
            .context("the rig has no snapshot")?;
        let pushed = remote(&reference, home)?.push_snapshot(&snap).await?;
        eprintln!(
            "  (registry {reference}: pushed {} bytes of snapshot {})",
            pushed.bytes, snap.id
        );
        Ok::<_, anyhow::Error>(Shared {
            reference,
            _registry: registry,
        })
    };
    if !Path::new(test_support::REGISTRY_BIN).is_file() {
        return Err(format!(
            "skipped: {} is not installed (apt-get install docker-registry)",
            test_support::REGISTRY_BIN
        ));
    }
    inner.await.map_err(|e| format!("FAILED: {e:#}"))
}

/// Fresh rigs (a new data directory each: a new host) pulling from `reference`.
pub(super) fn fresh_host_rigs(
    ctx: &Ctx,
    reference: &str,
) -> impl Fn(usize) -> anyhow::Result<Rig> + Sync + use<> {
    let reference = reference.to_owned();
    ctx.fresh_rigs(
        |rep| format!("fresh-host-{rep}"),
        move |mut rig: Rig| {
            let home = rig.scratch.clone().context("a fresh rig has a home")?;
            let remote: Arc<dyn RemoteSnapshots> = Arc::new(remote(&reference, &home)?);
            rig.fast = FastStart::new(rig.provider.clone(), rig.builder.clone())
                .drift(no_drift())
                .remote(remote, Duration::from_secs(120));
            Ok(rig)
        },
    )
}

/// The case's result, empty.
pub(super) fn result(served: &Served) -> CaseResult {
    CaseResult::new(
        "hs_registry_fresh_host_1",
        "headstart warm start on a fresh host from the registry, 1 ahead",
        "headstart",
        "http",
        &served.fixture.name,
    )
}

/// One start on a fresh host: it must pull and go warm; checked, then disposed of.
pub(super) async fn rep(
    rig: Rig,
    source: &Source,
    rep: usize,
    branch: &str,
    expect: &str,
) -> anyhow::Result<Sample> {
    let name = SandboxName::new(format!("fresh-{rep}"))?;
    let (started, wall) = timed_start(&rig.fast, source, &name).await?;
    if started.report.path != StartPath::Warm
        || started.snapshot_source != Some(SnapshotSource::Registry)
    {
        bail!(
            "expected a warm start from the registry, got {:?}: {}",
            started.report.path,
            started.report.reason
        );
    }
    let sample = start_sample(wall, &started, branch, expect)?;
    drop(started);
    rig.dispose().await;
    Ok(sample)
}
