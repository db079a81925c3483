//! Cold then warm starts of real repositories served over smart HTTP.

use sandbox_core::{
    BranchName, ConnectOptions, Phase, SandboxName, SandboxProvider, SnapshotStatus, Source,
    StartPath,
};
use snapshot_refresh::{Drift, Eligibility, KickOutcome, Recipe, RecipeCommand};
use test_support::{Change, GitHttpServer, Upstream};

use crate::Rig;

fn named(n: &str) -> ConnectOptions {
    ConnectOptions::new().name(SandboxName::new(n).unwrap())
}

fn head_of(ws: &std::path::Path) -> (String, String) {
    let head = sandbox_core::git::head(ws).unwrap();
    (head.branch, head.commit)
}

#[tokio::test]
async fn second_start_is_warm_on_the_new_commit_with_one_fetch_of_one_ref() {
    let up = Upstream::new("trunk", 200).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let fast = rig.fast();

    let cold = fast.start(&source, &named("cold")).await.unwrap();
    assert_eq!(cold.report.path, StartPath::Cold, "{}", cold.report.reason);
    assert!(cold.report.phase(Phase::GitClone).is_some());
    assert_eq!(cold.build, Some(KickOutcome::Started));
    let key = cold.key.clone().unwrap();
    let built = rig.builder.wait(&key).await.unwrap().unwrap();
    assert!(
        built.from_seed,
        "the build reuses the cold clone instead of cloning again"
    );
    assert_eq!(built.snapshot.status, SnapshotStatus::Ready);
    assert_eq!(built.snapshot.branch.as_deref(), Some("trunk"));

    let new_tip = up.advance("trunk", 3).unwrap();
    server.clear_log();
    let warm = fast.start(&source, &named("warm")).await.unwrap();
    assert_eq!(warm.report.path, StartPath::Warm, "{}", warm.report.reason);
    assert!(warm.report.phase(Phase::GitSync).is_some());
    assert!(warm.report.phase(Phase::GitClone).is_none());
    assert_eq!(warm.snapshot.as_ref().unwrap().id, built.snapshot.id);
    let head = warm.report.head.clone().unwrap();
    assert_eq!(
        (head.branch.as_str(), head.commit.as_str()),
        ("trunk", new_tip.as_str())
    );
    assert_eq!(
        head_of(warm.sandbox.workspace()),
        ("trunk".to_owned(), new_tip.clone())
    );
    assert_eq!(warm.build, None, "no drift, no rebuild");

    // One fetch session (one ref advertisement), every negotiation round asking for
    // exactly the one new tip at depth 1, and every round carrying the snapshot's
    // shallow commit or a `have`: a fetch into the restored repository, not a clone.
    let log = server.requests();
    let adverts = log.iter().filter(|r| r.method == "GET").count();
    assert_eq!(adverts, 1, "one ref advertisement: {log:#?}");
    let posts = server.upload_pack_posts();
    assert!(!posts.is_empty() && posts.len() <= 2, "{posts:#?}");
    for p in &posts {
        let req = p.upload_pack.clone().unwrap();
        assert_eq!(req.wants, 1, "one ref wanted: {req:?}");
        assert_eq!(req.deepen, Some(1), "{req:?}");
        assert!(
            req.shallows + req.haves > 0,
            "a clone would send neither: {req:?}"
        );
    }

    // The cold sandbox is untouched by the warm one.
    assert_ne!(head_of(cold.sandbox.workspace()).1, new_tip);
}

#[tokio::test]
async fn warm_start_switches_to_another_branch_and_new_branch() {
    let up = Upstream::new("trunk", 50).unwrap();
    let feature_tip = up.create_branch("feature/x", "trunk").unwrap();
    let feature_tip = {
        let _ = feature_tip;
        up.commit("feature/x", &[Change::write("feature.txt", "x\n")])
            .unwrap()
    };
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let rig = Rig::new();
    let fast = rig.fast();
    let cold = fast
        .start(&Source::parse(&url).unwrap(), &named("a"))
        .await
        .unwrap();
    rig.builder
        .wait(cold.key.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();

    let feature = Source::parse(&url)
        .unwrap()
        .with_branch(BranchName::new("feature/x").unwrap())
        .unwrap();
    let warm = fast.start(&feature, &named("b")).await.unwrap();
    assert_eq!(warm.report.path, StartPath::Warm);
    assert_eq!(
        head_of(warm.sandbox.workspace()),
        ("feature/x".to_owned(), feature_tip)
    );
    assert!(warm.sandbox.workspace().join("feature.txt").exists());

    let topic = Source::parse(&url)
        .unwrap()
        .with_new_branch(BranchName::new("topic").unwrap())
        .unwrap();
    let warm2 = fast.start(&topic, &named("c")).await.unwrap();
    assert_eq!(warm2.report.path, StartPath::Warm);
    assert_eq!(
        head_of(warm2.sandbox.workspace()),
        ("topic".to_owned(), up.tip("trunk").unwrap())
    );
}

#[tokio::test]
async fn missing_branch_fails_clearly_and_leaves_no_sandbox() {
    let up = Upstream::new("trunk", 10).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let rig = Rig::new();
    let fast = rig.fast();
    let src = Source::parse(&server.url(up.name()))
        .unwrap()
        .with_branch(BranchName::new("nope").unwrap())
        .unwrap();
    let err = fast.start(&src, &named("bad")).await.unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert!(
        err.to_string().contains("nope") && err.to_string().contains("trunk"),
        "{err}"
    );
    assert!(
        rig.provider.list().await.unwrap().is_empty(),
        "the failed start cleaned up"
    );

    // The same on the warm path.
    let ok = fast
        .start(
            &Source::parse(&server.url(up.name())).unwrap(),
            &named("ok"),
        )
        .await
        .unwrap();
    rig.builder
        .wait(ok.key.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    let err = fast.start(&src, &named("bad2")).await.unwrap_err();
    assert!(err.is_user_error(), "{err}");
    let names: Vec<String> = rig
        .provider
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, vec!["ok".to_owned()]);
}

#[tokio::test]
async fn drift_by_fetched_bytes_kicks_a_refresh() {
    let up = Upstream::new("main", 20).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let fast = rig.fast().drift(Drift {
        max_age: std::time::Duration::from_secs(3600),
        max_fetch_bytes: 0,
    });
    let cold = fast.start(&source, &named("a")).await.unwrap();
    let key = cold.key.clone().unwrap();
    let first = rig.builder.wait(&key).await.unwrap().unwrap();
    up.advance("main", 2).unwrap();
    let warm = fast.start(&source, &named("b")).await.unwrap();
    assert_eq!(warm.report.path, StartPath::Warm);
    assert!(
        warm.report.reason.contains("refreshing"),
        "{}",
        warm.report.reason
    );
    assert_eq!(warm.build, Some(KickOutcome::Started));
    let second = rig.builder.wait(&key).await.unwrap().unwrap();
    assert_ne!(second.snapshot.id, first.snapshot.id);
    assert_eq!(
        second.snapshot.commit.as_deref(),
        Some(up.tip("main").unwrap().as_str())
    );
    let latest = rig
        .provider
        .snapshots()
        .latest_ready(key.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        latest.id, second.snapshot.id,
        "the newest ready snapshot wins"
    );
}

#[tokio::test]
async fn recipe_runs_on_cold_start_and_is_baked_into_the_snapshot() {
    let up = Upstream::new("main", 5).unwrap();
    up.commit("main", &[Change::write(".gitignore", "deps/\n")])
        .unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let recipe = Recipe::empty().command(
        RecipeCommand::new(["sh", "-c", "mkdir -p deps && echo ready > deps/installed"]).unwrap(),
    );
    let fast = rig.fast().recipe(recipe).setup_on_cold(true);
    let cold = fast.start(&source, &named("a")).await.unwrap();
    assert!(cold.report.phase(Phase::Setup).is_some());
    assert!(cold.sandbox.workspace().join("deps/installed").exists());
    let built = rig
        .builder
        .wait(cold.key.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(built.commands.len(), 1);
    assert_eq!(built.commands[0].exit_code, Some(0));
    up.advance("main", 1).unwrap();
    let warm = fast.start(&source, &named("b")).await.unwrap();
    assert_eq!(warm.report.path, StartPath::Warm);
    assert!(
        warm.report.phase(Phase::Setup).is_none(),
        "the snapshot already has it"
    );
    // Ignored recipe outputs (dependencies, build caches) survive the catch-up sync.
    assert!(warm.sandbox.workspace().join("deps/installed").exists());
}

#[tokio::test]
async fn failing_recipe_fails_the_cold_start_and_cleans_up() {
    let up = Upstream::new("main", 5).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let fast = rig
        .fast()
        .setup_on_cold(true)
        .recipe(Recipe::empty().command(RecipeCommand::new(["sh", "-c", "exit 3"]).unwrap()));
    let err = fast.start(&source, &named("a")).await.unwrap_err();
    assert!(err.to_string().contains("exit 3"), "{err}");
    assert!(rig.provider.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn no_snapshot_policy_starts_cold_and_builds_nothing() {
    let up = Upstream::new("main", 5).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let fast = rig.fast().eligibility(Eligibility::none());
    let a = fast.start(&source, &named("a")).await.unwrap();
    assert_eq!(a.report.path, StartPath::Cold);
    assert_eq!(a.build, None);
    assert!(
        a.report.reason.contains("switched off"),
        "{}",
        a.report.reason
    );
    let b = fast.start(&source, &named("b")).await.unwrap();
    assert_eq!(b.report.path, StartPath::Cold);
}

#[tokio::test]
async fn reconnect_by_name_returns_the_same_workspace_untouched() {
    let up = Upstream::new("main", 5).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let fast = rig.fast();
    let a = fast.start(&source, &named("same")).await.unwrap();
    std::fs::write(a.sandbox.workspace().join("work.txt"), "mine").unwrap();
    let b = fast.start(&source, &named("same")).await.unwrap();
    assert_eq!(b.report.path, StartPath::Reconnected);
    assert_eq!(b.sandbox.workspace(), a.sandbox.workspace());
    assert!(b.sandbox.workspace().join("work.txt").exists());
    let c = fast
        .start(&source, &named("same").force_create(true))
        .await
        .unwrap();
    assert_ne!(c.report.path, StartPath::Reconnected);
    assert!(
        !c.sandbox.workspace().join("work.txt").exists(),
        "force_create replaced it"
    );
}

/// Deterministic incompressible bytes (xorshift): a pack big enough to stall in.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn concurrent_starts_of_one_name_clone_once_and_the_others_reconnect() {
    let up = Upstream::new("main", 200).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let fast = std::sync::Arc::new(rig.fast().eligibility(Eligibility::none()));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let fast = fast.clone();
            let source = source.clone();
            tokio::spawn(async move { fast.start(&source, &named("same")).await.unwrap() })
        })
        .collect();
    let mut paths = Vec::new();
    let mut workspaces = std::collections::BTreeSet::new();
    for t in tasks {
        let s = t.await.unwrap();
        paths.push(s.report.path);
        workspaces.insert(s.sandbox.workspace().to_path_buf());
    }
    let cold = paths.iter().filter(|p| **p == StartPath::Cold).count();
    let again = paths
        .iter()
        .filter(|p| **p == StartPath::Reconnected)
        .count();
    assert_eq!((cold, again), (1, 5), "{paths:?}");
    assert_eq!(workspaces.len(), 1);
    let ws = workspaces.into_iter().next().unwrap();
    assert_eq!(head_of(&ws).1, up.tip("main").unwrap());
    let status = test_support::git_in(&ws, &["status", "--porcelain"]).unwrap();
    assert!(status.trim().is_empty(), "{status}");
}

#[tokio::test]
async fn a_cancelled_start_is_never_ready_and_removes_what_it_created() {
    let up = Upstream::new("main", 5).unwrap();
    up.commit("main", &[Change::Write("blob.bin".into(), noise(2 << 20))])
        .unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let proxy = test_support::StallProxy::start(
        server.addr(),
        Some(96 * 1024),
        std::time::Duration::from_secs(3),
    )
    .unwrap();
    let source = Source::parse(&proxy.url(up.name())).unwrap();
    let rig = Rig::new();
    let token = sandbox_core::CancelToken::new();
    let fast = std::sync::Arc::new(
        rig.fast()
            .eligibility(Eligibility::none())
            .cancel_token(token.clone()),
    );
    let task = {
        let fast = fast.clone();
        let source = source.clone();
        tokio::spawn(async move { fast.start(&source, &named("c")).await })
    };
    let stalled = tokio::task::spawn_blocking(move || {
        let ok = proxy.wait_for_stall(0, std::time::Duration::from_secs(60));
        (ok, proxy)
    })
    .await
    .unwrap();
    assert!(stalled.0, "the clone reached the stall");
    // mid-clone: the sandbox exists but is not offered
    let name = SandboxName::new("c").unwrap();
    assert_eq!(
        rig.provider.state(&name).unwrap(),
        Some(sandbox_core::SandboxState::Creating)
    );
    assert!(rig.provider.get(&name).await.unwrap().is_none());
    token.cancel();
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            snapshot_refresh::Error::Core(sandbox_core::Error::Cancelled { .. })
        ),
        "{err:?}"
    );
    assert_eq!(rig.provider.state(&name).unwrap(), None, "removed");
    assert!(rig.provider.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_start_past_its_deadline_fails_with_timeout_and_leaves_nothing() {
    let up = Upstream::new("main", 5).unwrap();
    up.commit("main", &[Change::Write("blob.bin".into(), noise(2 << 20))])
        .unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let proxy = test_support::StallProxy::start(
        server.addr(),
        Some(96 * 1024),
        std::time::Duration::from_secs(3),
    )
    .unwrap();
    let source = Source::parse(&proxy.url(up.name())).unwrap();
    let rig = Rig::new();
    let fast =
        rig.fast()
            .eligibility(Eligibility::none())
            .limits(sandbox_core::TransferLimits::within(
                std::time::Duration::from_secs(1),
            ));
    let err = fast.start(&source, &named("late")).await.unwrap_err();
    assert!(
        matches!(
            err,
            snapshot_refresh::Error::Core(sandbox_core::Error::Timeout { .. })
        ),
        "{err:?}"
    );
    assert!(proxy.stalls() > 0);
    let name = SandboxName::new("late").unwrap();
    assert_eq!(rig.provider.state(&name).unwrap(), None);
}

#[tokio::test]
async fn prebuilt_false_never_uses_a_snapshot_and_true_or_unset_do() {
    let up = Upstream::new("trunk", 20).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let fast = rig.fast();

    // prebuilt(false) on a repository with no snapshot: cold, and no build either
    let off = fast
        .start(&source.clone().prebuilt(false), &named("off-1"))
        .await
        .unwrap();
    assert_eq!(off.report.path, StartPath::Cold);
    assert!(
        off.report.reason.contains("prebuilt(false)"),
        "{}",
        off.report.reason
    );
    assert_eq!(off.build, None);
    let key = off.key.clone().unwrap();
    assert!(rig.builder.wait(&key).await.is_none());

    // unset: cold, builds one
    let unset = fast.start(&source, &named("unset-1")).await.unwrap();
    assert_eq!(unset.report.path, StartPath::Cold);
    rig.builder.wait(&key).await.unwrap().unwrap();

    // with a ready snapshot: prebuilt(false) still clones, and says why
    let off = fast
        .start(&source.clone().prebuilt(false), &named("off-2"))
        .await
        .unwrap();
    assert_eq!(off.report.path, StartPath::Cold, "{}", off.report.reason);
    assert!(off.report.phase(Phase::GitClone).is_some());
    assert!(off.snapshot.is_none());
    assert!(
        off.report.reason.contains("prebuilt(false)"),
        "{}",
        off.report.reason
    );

    // prebuilt(true) and unset use it
    let on = fast
        .start(&source.clone().prebuilt(true), &named("on"))
        .await
        .unwrap();
    assert_eq!(on.report.path, StartPath::Warm, "{}", on.report.reason);
    let unset = fast.start(&source, &named("unset-2")).await.unwrap();
    assert_eq!(
        unset.report.path,
        StartPath::Warm,
        "{}",
        unset.report.reason
    );
    assert_eq!(
        head_of(on.sandbox.workspace()),
        head_of(off.sandbox.workspace())
    );
}

/// Two servers on one host holding unrelated repositories at the same path (two ports):
/// a start of one never boots from the other's snapshot, whose objects (a secret file
/// here) would be readable in its sandbox.
#[tokio::test]
async fn a_server_on_another_port_of_the_host_never_boots_from_this_ones_snapshot() {
    let a = Upstream::new("trunk", 3).unwrap();
    let secret = a
        .commit("trunk", &[Change::write("secret.txt", "SECRET-A\n")])
        .unwrap();
    let b = Upstream::new("trunk", 3).unwrap();
    let server_a = GitHttpServer::start(a.root()).unwrap();
    let server_b = GitHttpServer::start(b.root()).unwrap();
    let (url_a, url_b) = (server_a.url(a.name()), server_b.url(b.name()));
    assert_eq!(
        url_a.rsplit_once(':').unwrap().1.split_once('/').unwrap().1,
        url_b.rsplit_once(':').unwrap().1.split_once('/').unwrap().1,
        "the same host and path, another port"
    );
    let rig = Rig::new();
    let fast = rig.fast();

    let cold_a = fast
        .start(&Source::parse(&url_a).unwrap(), &named("ra"))
        .await
        .unwrap();
    let key_a = cold_a.key.clone().unwrap();
    rig.builder.wait(&key_a).await.unwrap().unwrap();

    let start_b = fast
        .start(&Source::parse(&url_b).unwrap(), &named("rb"))
        .await
        .unwrap();
    assert_eq!(
        start_b.report.path,
        StartPath::Cold,
        "{}",
        start_b.report.reason
    );
    assert_ne!(start_b.key.as_ref(), Some(&key_a));
    let ws = start_b.sandbox.workspace();
    assert!(
        test_support::git_in(ws, &["cat-file", "-e", &secret]).is_err(),
        "the other repository's commit is in this sandbox"
    );
    assert!(!ws.join("secret.txt").exists());
}
