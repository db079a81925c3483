//! The background builder: single flight across tasks and "processes", the failure
//! cache, and refreshes without a seed.

use std::sync::Arc;
use std::time::Duration;

use sandbox_core::{
    ConnectOptions, SandboxName, SandboxProvider, SnapshotStatus, Source, StartPath,
};
use snapshot_refresh::{
    KickOutcome, Recipe, RecipeCommand, RefreshOptions, SnapshotBuilder, SnapshotKey,
    refresh_base_snapshot,
};
use test_support::{GitHttpServer, Upstream};

use crate::{Rig, state_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_cold_starts_build_exactly_one_snapshot() {
    let up = Upstream::new("main", 100).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    // A second builder over the same state directory stands for another process: the
    // per-key lock file must stop it as well.
    let other: Arc<dyn SandboxProvider> = rig.provider.clone();
    let other_builder = Arc::new(SnapshotBuilder::new(
        other.clone(),
        state_dir(rig.home.path()),
    ));
    let slow = Recipe::empty().command(RecipeCommand::new(["sleep", "2"]).unwrap());
    let a = Arc::new(rig.fast().recipe(slow.clone()));
    let b = Arc::new(snapshot_refresh::FastStart::new(other, other_builder.clone()).recipe(slow));

    let mut tasks = Vec::new();
    for i in 0..16 {
        let fast = if i % 2 == 0 { a.clone() } else { b.clone() };
        let source = source.clone();
        tasks.push(tokio::spawn(async move {
            let opts = ConnectOptions::new().name(SandboxName::new(format!("s{i}")).unwrap());
            fast.start(&source, &opts).await.unwrap()
        }));
    }
    let mut started = Vec::new();
    for t in tasks {
        started.push(t.await.unwrap());
    }
    assert!(started.iter().all(|s| s.report.path == StartPath::Cold));
    let kicked: Vec<_> = started.iter().map(|s| s.build.clone().unwrap()).collect();
    let n_started = kicked
        .iter()
        .filter(|k| **k == KickOutcome::Started)
        .count();
    assert_eq!(n_started, 1, "exactly one build started: {kicked:?}");
    assert!(
        kicked
            .iter()
            .all(|k| matches!(k, KickOutcome::Started | KickOutcome::AlreadyBuilding))
    );

    let key = started[0].key.clone().unwrap();
    let done = match rig.builder.wait(&key).await {
        Some(r) => r,
        None => other_builder.wait(&key).await.unwrap(),
    };
    let report = done.unwrap();
    assert!(report.from_seed);
    // 16 clones for 16 starts (one ref advertisement each), and none for the builder:
    // it planted the seed of a cold start's clone.
    let adverts = server
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(adverts, 16);
    let page = rig
        .provider
        .snapshots()
        .list(Some(key.as_str()), None, 100)
        .await
        .unwrap();
    let ready: Vec<_> = page
        .items
        .iter()
        .filter(|m| m.status == SnapshotStatus::Ready)
        .collect();
    assert_eq!(ready.len(), 1, "{:#?}", page.items);
}

#[tokio::test]
async fn a_repository_that_cannot_be_cloned_is_not_rebuilt_inside_the_failure_window() {
    let up = Upstream::new("main", 1).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url("missing.git")).unwrap();
    let rig = Rig::with_backoff(Duration::from_millis(1500));
    let key = SnapshotKey::for_repo(source.url(), &Recipe::empty()).unwrap();
    let options = RefreshOptions::new(source.clone(), key.clone(), Recipe::empty());

    assert_eq!(
        rig.builder.kick(options.clone(), None).unwrap(),
        KickOutcome::Started
    );
    let err = rig.builder.wait(&key).await.unwrap().unwrap_err();
    assert!(err.message().contains("not found"), "{err}");
    assert_eq!(err.kind(), "repo_not_found", "{err}");
    let attempts = server.requests().len();
    assert!(attempts > 0);

    for _ in 0..3 {
        match rig.builder.kick(options.clone(), None).unwrap() {
            KickOutcome::BackingOff {
                failures,
                last_error,
                ..
            } => {
                assert_eq!(failures, 1);
                assert!(last_error.contains("not found"), "{last_error}");
            }
            other => panic!("expected backoff, got {other:?}"),
        }
    }
    assert_eq!(
        server.requests().len(),
        attempts,
        "no new attempt inside the window"
    );
    let record = rig.builder.failures().get(key.as_str()).unwrap();
    assert!(record.last_error.contains("not found"));

    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        rig.builder.kick(options, None).unwrap(),
        KickOutcome::Started
    );
    rig.builder.wait(&key).await.unwrap().unwrap_err();
    assert!(
        server.requests().len() > attempts,
        "retried after the window"
    );
    assert_eq!(
        rig.builder.failures().get(key.as_str()).unwrap().failures,
        2
    );
}

#[tokio::test]
async fn refresh_without_a_seed_clones_and_a_failed_recipe_leaves_nothing_visible() {
    let up = Upstream::new("trunk", 20).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let key = SnapshotKey::for_repo(source.url(), &Recipe::empty()).unwrap();
    let report = refresh_base_snapshot(
        rig.provider.as_ref(),
        &RefreshOptions::new(source.clone(), key.clone(), Recipe::empty()),
    )
    .await
    .unwrap();
    assert!(!report.from_seed);
    assert_eq!(
        report.snapshot.commit.as_deref(),
        Some(up.tip("trunk").unwrap().as_str())
    );
    assert_eq!(report.snapshot.branch.as_deref(), Some("trunk"));
    assert!(
        rig.provider.list().await.unwrap().is_empty(),
        "the build sandbox is gone"
    );

    let bad =
        Recipe::empty().command(RecipeCommand::new(["sh", "-c", "echo oops >&2; exit 7"]).unwrap());
    let bad_key = SnapshotKey::for_repo(source.url(), &bad).unwrap();
    let err = refresh_base_snapshot(
        rig.provider.as_ref(),
        &RefreshOptions::new(source, bad_key.clone(), bad),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("oops"), "{err}");
    assert!(
        rig.provider
            .snapshots()
            .latest_ready(bad_key.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        rig.provider.list().await.unwrap().is_empty(),
        "the build sandbox is gone"
    );
}

#[tokio::test]
async fn build_deadline_stops_a_slow_recipe() {
    let up = Upstream::new("main", 1).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let slow = Recipe::empty().command(RecipeCommand::new(["sleep", "30"]).unwrap());
    let key = SnapshotKey::for_repo(source.url(), &slow).unwrap();
    let mut options = RefreshOptions::new(source, key.clone(), slow);
    options.deadline = Duration::from_secs(2);
    let t = std::time::Instant::now();
    let err = refresh_base_snapshot(rig.provider.as_ref(), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, snapshot_refresh::Error::BuildDeadline { .. }),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(
        rig.provider
            .snapshots()
            .latest_ready(key.as_str())
            .await
            .unwrap()
            .is_none()
    );
}
