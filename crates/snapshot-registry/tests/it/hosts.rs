//! Host A builds and pushes; host B starts warm from the registry, then locally; many
//! starts on B pull once; leases; GC.

use std::time::Duration;

use sandbox_core::{Phase, SandboxProvider, SnapshotStatus, Source, StartPath};
use snapshot_refresh::{FastStart, SnapshotSource};
use snapshot_registry::{ARTIFACT_TYPE, GIT_LAYER_MEDIA_TYPE, TREE_LAYER_MEDIA_TYPE, annotations};
use test_support::{GitHttpServer, Registry, Upstream};

use crate::{Host, named};

const BOUND: Duration = Duration::from_secs(60);

fn clean_status(ws: &std::path::Path) -> usize {
    let repo = git2::Repository::open(ws).unwrap();
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true);
    repo.statuses(Some(&mut opts)).unwrap().len()
}

/// A builds (cold start + background build + push) and returns the pushed snapshot.
async fn build_on_a(a: &Host, source: &Source) -> sandbox_core::SnapshotMeta {
    let fast = a.fast(BOUND);
    let cold = fast.start(source, &named("a1")).await.unwrap();
    assert_eq!(cold.report.path, StartPath::Cold, "{}", cold.report.reason);
    let built = a
        .builder
        .wait(cold.key.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    let push = built.push.clone().expect("a push record");
    assert!(push.error.is_none(), "push failed: {push:?}");
    assert!(push.pushed.as_ref().unwrap().bytes > 0);
    built.snapshot
}

#[tokio::test]
async fn host_b_starts_warm_from_the_registry_then_locally() {
    let Some(registry) = Registry::start_or_skip("host_b_starts_warm_from_the_registry") else {
        return;
    };
    let up = Upstream::new("trunk", 120).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let reference = registry.reference("team/headstart");
    let a = Host::new(&reference, "host-a");
    let snap = build_on_a(&a, &source).await;

    // the artifact: our type, two layers, the annotations
    let m = a
        .remote
        .describe(&snap.name)
        .await
        .unwrap()
        .expect("the <key> tag");
    assert_eq!(m.artifact_type.as_deref(), Some(ARTIFACT_TYPE));
    let types: Vec<&str> = m.layers.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, [GIT_LAYER_MEDIA_TYPE, TREE_LAYER_MEDIA_TYPE]);
    assert_eq!(m.annotations[annotations::KEY], snap.name);
    assert_eq!(m.annotations[annotations::ID], snap.id.as_str());
    assert_eq!(
        Some(&m.annotations[annotations::COMMIT]),
        snap.commit.as_ref()
    );
    assert_eq!(m.annotations[annotations::BRANCH], "trunk");
    assert_eq!(
        m.annotations[annotations::RECIPE_DIGEST],
        snap.recipe_digest
    );
    assert_eq!(
        m.annotations[annotations::SIZE],
        snap.size_bytes.to_string()
    );
    assert!(m.annotations.contains_key(annotations::CREATED));
    assert!(m.annotations.contains_key(annotations::VERSION));
    let versioned = a
        .remote
        .describe(&format!("{}-{}", snap.name, snap.id))
        .await
        .unwrap()
        .expect("the <key>-<id> tag");
    assert_eq!(versioned.digest, m.digest);

    // upstream moves on; B (an empty data directory) starts warm from the registry
    let tip = up.advance("trunk", 2).unwrap();
    let b = Host::new(&reference, "host-b");
    server.clear_log();
    let first = b.fast(BOUND).start(&source, &named("b1")).await.unwrap();
    assert_eq!(
        first.report.path,
        StartPath::Warm,
        "{}",
        first.report.reason
    );
    assert_eq!(first.snapshot_source, Some(SnapshotSource::Registry));
    assert!(
        first.report.reason.contains("pulled from the registry"),
        "{}",
        first.report.reason
    );
    assert!(first.report.phase(Phase::SnapshotPull).is_some());
    assert!(
        first.report.phase(Phase::GitClone).is_none(),
        "no clone on B"
    );
    assert_eq!(first.report.head.as_ref().unwrap().commit, tip);
    assert_eq!(
        clean_status(first.sandbox.workspace()),
        0,
        "a clean checkout"
    );
    assert!(first.build.is_none());
    // the fetch was a catch-up of one ref, not a clone: one advertisement
    let adverts = server
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(adverts, 1);

    // B's store now holds it, ready, under A's id
    let local = b
        .provider
        .snapshots()
        .latest_ready(&snap.name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(local.id, snap.id);
    assert_eq!(local.status, SnapshotStatus::Ready);
    // like a captured one: git objects read-only (hardlink restores share them)
    let objects = b
        .home
        .path()
        .join("snapshots")
        .join(&snap.name)
        .join(snap.id.as_str())
        .join("workspace/.git/objects/pack");
    let packs: Vec<_> = std::fs::read_dir(&objects).unwrap().flatten().collect();
    assert!(!packs.is_empty(), "{}", objects.display());
    for p in packs {
        use std::os::unix::fs::PermissionsExt;
        let mode = p.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "{} is writable", p.path().display());
    }

    // B's second start is a local warm start: no pull
    let gets = registry.blob_gets();
    let second = b.fast(BOUND).start(&source, &named("b2")).await.unwrap();
    assert_eq!(
        second.report.path,
        StartPath::Warm,
        "{}",
        second.report.reason
    );
    assert_eq!(second.snapshot_source, Some(SnapshotSource::Local));
    assert!(second.report.phase(Phase::SnapshotPull).is_none());
    assert_eq!(registry.blob_gets(), gets, "no download");
}

#[tokio::test]
async fn eight_concurrent_starts_on_b_download_once() {
    let Some(registry) = Registry::start_or_skip("eight_concurrent_starts_on_b_download_once")
    else {
        return;
    };
    let up = Upstream::new("trunk", 80).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let reference = registry.reference("headstart");
    let a = Host::new(&reference, "host-a");
    build_on_a(&a, &source).await;
    let before = registry.blob_gets();

    let b = Host::new(&reference, "host-b");
    let fasts: Vec<FastStart> = (0..8).map(|_| b.fast(BOUND)).collect();
    let starts = fasts.iter().enumerate().map(|(i, f)| {
        let source = source.clone();
        async move { f.start(&source, &named(&format!("b{i}"))).await }
    });
    let results = futures_util::future::join_all(starts).await;
    let mut from_registry = 0;
    for r in results {
        let s = r.unwrap();
        assert_eq!(s.report.path, StartPath::Warm, "{}", s.report.reason);
        assert_eq!(s.snapshot_source, Some(SnapshotSource::Registry));
        from_registry += 1;
    }
    assert_eq!(from_registry, 8);
    // one download: the config blob and two layers, once
    assert_eq!(registry.blob_gets() - before, 3, "{}", registry.log());
    let all = b.provider.snapshots().list_all(None).await.unwrap();
    assert_eq!(all.len(), 1, "one snapshot in B's store: {all:#?}");
}

#[tokio::test]
async fn a_fresh_lease_elsewhere_means_cold_without_building_and_an_expired_one_is_ignored() {
    let Some(registry) = Registry::start_or_skip("lease") else {
        return;
    };
    let up = Upstream::new("trunk", 10).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let reference = registry.reference("headstart");
    let a = Host::new(&reference, "host-a");
    let b = Host::new(&reference, "host-b");
    let fast_b = b.fast(BOUND);
    let key = fast_b.key_for(&source).unwrap();

    // A holds a fresh lease: B starts cold and builds nothing
    let lease = a
        .remote
        .take_lease(key.as_str(), Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(lease, snapshot_refresh::Lease::Taken);
    let cold = fast_b.start(&source, &named("b1")).await.unwrap();
    assert_eq!(cold.report.path, StartPath::Cold);
    assert!(cold.build.is_none(), "{:?}", cold.build);
    assert!(
        cold.report.reason.contains("lease held by host-a"),
        "{}",
        cold.report.reason
    );

    // A gives it back (written as expired): B builds and pushes
    a.remote.release_lease(key.as_str()).await.unwrap();
    let cold = fast_b.start(&source, &named("b2")).await.unwrap();
    assert_eq!(cold.report.path, StartPath::Cold);
    assert!(cold.build.is_some(), "{}", cold.report.reason);
    let built = b.builder.wait(&key).await.unwrap().unwrap();
    assert!(built.push.unwrap().error.is_none());
    // B's own build released its lease: A may build again
    let lease = a
        .remote
        .take_lease(key.as_str(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(lease, snapshot_refresh::Lease::Taken);
}

#[tokio::test]
async fn gc_keeps_the_newest_per_key_and_the_key_tag_still_pulls() {
    let Some(registry) = Registry::start_or_skip("gc") else {
        return;
    };
    let reference = registry.reference("headstart");
    let a = Host::new(&reference, "host-a");
    let key = "example.com-acme-gc-0123456789abcdef";
    let mut ids = Vec::new();
    let mut metas = Vec::new();
    for i in 0..3 {
        let (sandbox, _) = a
            .provider
            .connect(&sandbox_core::ConnectOptions::new())
            .await
            .unwrap();
        std::fs::write(sandbox.workspace().join("f"), format!("{i}")).unwrap();
        let meta = sandbox
            .snapshot(&sandbox_core::SnapshotRequest::new(key, "digest"))
            .await
            .unwrap();
        a.remote.push_snapshot(&meta).await.unwrap();
        ids.push(meta.id.clone());
        metas.push(meta);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // a late push of an older snapshot does not move `<key>` back
    a.remote.push_snapshot(&metas[0]).await.unwrap();
    let newest = a.remote.describe(key).await.unwrap().unwrap();
    assert_eq!(newest.annotations[annotations::ID], ids[2].as_str());
    let report = a.remote.gc(1).await.unwrap();
    assert_eq!(report.kept, [format!("{key}-{}", ids[2])]);
    assert_eq!(report.removed.len(), 2, "{report:?}");
    for old in &ids[..2] {
        assert!(
            a.remote
                .describe(&format!("{key}-{old}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    // the <key> tag still names the newest, and it pulls
    let b = Host::new(&reference, "host-b");
    let pulled = b.remote.pull_snapshot(key).await.unwrap().unwrap();
    assert_eq!(pulled.snapshot.id, ids[2]);
    let ws = b
        .provider
        .snapshots()
        .latest_ready(key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ws.id, ids[2]);
}

/// `len` bytes of hex text from a fixed pseudo-random sequence (compresses about 2:1).
fn noise(len: usize, seed: u64) -> String {
    let mut x = seed | 1;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(len);
    out
}

#[tokio::test]
async fn a_layer_larger_than_one_push_chunk_streams_up_and_arrives_intact() {
    let Some(registry) = Registry::start_or_skip("a_layer_larger_than_one_push_chunk") else {
        return;
    };
    let up = Upstream::new("trunk", 3).unwrap();
    // 24 MB of hex text: a tree layer of ~12 MB compressed, three 4 MiB push chunks
    let big = noise(24 << 20, 0x5eed);
    up.commit("trunk", &[test_support::Change::write("big.txt", &big)])
        .unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let reference = registry.reference("team/big");
    let a = Host::new(&reference, "host-a");
    let snap = build_on_a(&a, &source).await;
    let m = a.remote.describe(&snap.name).await.unwrap().unwrap();
    let tree = m
        .layers
        .iter()
        .find(|(t, _)| t == TREE_LAYER_MEDIA_TYPE)
        .unwrap()
        .1;
    assert!(
        tree > 2 * (4 << 20),
        "the tree layer spans several chunks: {tree}"
    );

    let b = Host::new(&reference, "host-b");
    let first = b.fast(BOUND).start(&source, &named("b1")).await.unwrap();
    assert_eq!(
        first.snapshot_source,
        Some(SnapshotSource::Registry),
        "{}",
        first.report.reason
    );
    let got = std::fs::read_to_string(first.sandbox.workspace().join("big.txt")).unwrap();
    assert!(got == big, "big.txt arrived changed");
    assert_eq!(clean_status(first.sandbox.workspace()), 0);
}
