//! Faults: a registry that dies mid-pull, one that stalls past the bound, one that is
//! not there, a corrupted blob. Each start goes cold and says why; nothing
//! half-written stays.

use std::time::Duration;

use sandbox_core::{SandboxProvider, Source, StartPath};
use snapshot_refresh::FastStart;
use test_support::{GitHttpServer, Registry, StallProxy, Upstream};

use crate::{Host, entries_under, named};

async fn pushed_snapshot(registry: &Registry, source: &Source) -> sandbox_core::SnapshotMeta {
    let a = Host::new(&registry.reference("headstart"), "host-a");
    let fast = a.fast(Duration::from_secs(60));
    let cold = fast.start(source, &named("a1")).await.unwrap();
    let built = a
        .builder
        .wait(cold.key.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(built.push.unwrap().error.is_none());
    built.snapshot
}

/// B's start must not have kept A's snapshot, and no temp dir may remain.
async fn assert_nothing_half_written(
    b: &Host,
    fast: &FastStart,
    started: &snapshot_refresh::Started,
    a_id: &sandbox_core::SnapshotId,
) {
    // let the cold start's own build finish so the store is quiet
    if let Some(key) = &started.key {
        let _ = fast.snapshot_builder().wait(key).await;
    }
    assert!(
        b.provider.snapshots().get(a_id).await.unwrap().is_none(),
        "A's snapshot is not in B's store"
    );
    let tmp = b.home.path().join("snapshots/.tmp");
    assert!(entries_under(&tmp).is_empty(), "{:?}", entries_under(&tmp));
    let scratch = b.home.path().join("registry/tmp");
    assert!(
        entries_under(&scratch).is_empty(),
        "{:?}",
        entries_under(&scratch)
    );
}

#[tokio::test]
async fn a_registry_dying_mid_pull_means_a_cold_start_and_nothing_half_written() {
    let Some(registry) = Registry::start_or_skip("registry dying mid-pull") else {
        return;
    };
    let up = Upstream::new("trunk", 400).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let snap = pushed_snapshot(&registry, &source).await;

    // B reaches the registry through a proxy that lets the manifest and config through
    // and cuts the connection in the middle of the first layer
    let proxy =
        StallProxy::start(registry.addr(), Some(6_000), Duration::from_millis(200)).unwrap();
    let via = proxy
        .url("headstart")
        .trim_start_matches("http://")
        .to_owned();
    let b = Host::new(&via, "host-b");
    let fast = b.fast(Duration::from_secs(60));
    let started = fast.start(&source, &named("b1")).await.unwrap();
    assert_eq!(
        started.report.path,
        StartPath::Cold,
        "{}",
        started.report.reason
    );
    assert!(
        started
            .report
            .reason
            .contains("pulling the snapshot from the registry"),
        "{}",
        started.report.reason
    );
    assert!(proxy.stalls() > 0, "the proxy cut a transfer");
    assert_nothing_half_written(&b, &fast, &started, &snap.id).await;
}

#[tokio::test]
async fn a_registry_slower_than_the_bound_means_a_cold_start_that_says_so() {
    let Some(registry) = Registry::start_or_skip("registry slower than the bound") else {
        return;
    };
    let up = Upstream::new("trunk", 400).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let snap = pushed_snapshot(&registry, &source).await;

    let proxy = StallProxy::start(registry.addr(), Some(6_000), Duration::from_secs(8)).unwrap();
    let via = proxy
        .url("headstart")
        .trim_start_matches("http://")
        .to_owned();
    let b = Host::new(&via, "host-b");
    let fast = b.fast(Duration::from_secs(1));
    let started = fast.start(&source, &named("b1")).await.unwrap();
    assert_eq!(
        started.report.path,
        StartPath::Cold,
        "{}",
        started.report.reason
    );
    assert!(
        started
            .report
            .reason
            .contains("did not deliver the snapshot within 1 s"),
        "{}",
        started.report.reason
    );
    let pull = started
        .report
        .phase(sandbox_core::Phase::SnapshotPull)
        .unwrap();
    assert!(pull < Duration::from_secs(5), "the bound held: {pull:?}");
    assert_nothing_half_written(&b, &fast, &started, &snap.id).await;
}

#[tokio::test]
async fn a_stopped_registry_means_a_cold_start_that_says_it_is_unreachable() {
    let Some(mut registry) = Registry::start_or_skip("stopped registry") else {
        return;
    };
    let up = Upstream::new("trunk", 10).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let reference = registry.reference("headstart");
    registry.stop();
    let b = Host::new(&reference, "host-b");
    let fast = b.fast(Duration::from_secs(30));
    let started = fast.start(&source, &named("b1")).await.unwrap();
    assert_eq!(started.report.path, StartPath::Cold);
    assert!(
        started.report.reason.contains("unreachable"),
        "{}",
        started.report.reason
    );
    // the build still runs; its push fails, is recorded, and fails nothing
    let built = fast
        .snapshot_builder()
        .wait(started.key.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    let push = built.push.unwrap();
    assert_eq!(push.error_kind.as_deref(), Some("registry_unreachable"));
    assert_eq!(push.attempts, 3);
    let recorded =
        snapshot_refresh::PushRecord::read(&b.home.path().join("state"), &built.snapshot.id)
            .unwrap();
    assert_eq!(recorded, push);
}

#[tokio::test]
async fn a_corrupted_blob_is_refused() {
    let Some(registry) = Registry::start_or_skip("corrupted blob") else {
        return;
    };
    let up = Upstream::new("trunk", 50).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let snap = pushed_snapshot(&registry, &source).await;

    // rewrite the largest blob (a layer) in the registry's storage, same length
    let (digest, path) = registry
        .blob_files()
        .into_iter()
        .max_by_key(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let b = Host::new(&registry.reference("headstart"), "host-b");
    let err = b.remote.pull_snapshot(&snap.name).await.unwrap_err();
    assert_eq!(err.kind(), "digest_mismatch", "{err}");
    assert!(
        err.to_string()
            .contains(digest.trim_start_matches("sha256:"))
            || err.to_string().contains("digest"),
        "{err}"
    );

    let fast = b.fast(Duration::from_secs(30));
    let started = fast.start(&source, &named("b1")).await.unwrap();
    assert_eq!(started.report.path, StartPath::Cold);
    assert!(
        started.report.reason.contains("does not match its digest"),
        "{}",
        started.report.reason
    );
    assert_nothing_half_written(&b, &fast, &started, &snap.id).await;
}
