//! Clean seals through the local provider: a snapshot records the seal its capture
//! proved; only an overlay restore (the snapshot itself as the read-only lower layer,
//! a new empty upper layer) hands it to the warm sync, which then skips the proving
//! walk. A snapshot written after capture is never served dirty. Results are compared
//! file by file with a cold clone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use provisioners::LocalProvider;
use provisioners::local::RestoreMethod;
use sandbox_core::git::{self, GitOptions};
use sandbox_core::{
    BranchName, ConnectOptions, SandboxName, SandboxProvider, SnapshotMeta, Source,
};
use test_support::capture_tracing;

use crate::local_support::{TestHome, cloned_snapshot, fingerprint, git, make_repo, mounts_under};

const HOLDS: &str = "the snapshot's clean seal holds";
const STALE: &str = "the snapshot's clean seal does not match";
const WALK: &str = "checked the worktree against HEAD";

fn name(s: &str) -> SandboxName {
    SandboxName::new(s).unwrap()
}

/// The worktree (not `.git`) of `dir`: type, mode and content per path.
fn worktree(dir: &Path) -> BTreeMap<PathBuf, (char, u32, Vec<u8>)> {
    fingerprint(dir)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(".git"))
        .collect()
}

/// An upstream, a snapshot of a git-engine clone of it, and the source.
async fn sealed_snapshot(home: &TestHome, p: &LocalProvider) -> (PathBuf, Source, SnapshotMeta) {
    let upstream = home.path().join("upstream");
    make_repo(&upstream, 300); // enough entries for the path-limited checkout
    let source = Source::parse(&format!("file://{}", upstream.display()))
        .unwrap()
        .with_branch(BranchName::new("main").unwrap())
        .unwrap();
    let (meta, _) = cloned_snapshot(p, &source).await;
    // upstream moves on: a change, an addition, a deletion
    fs::write(upstream.join("README.md"), "third commit\n").unwrap();
    fs::write(upstream.join("src/added.txt"), "added\n").unwrap();
    fs::remove_file(upstream.join("src/d01/file00001.txt")).unwrap();
    git(&upstream, &["add", "-A"]);
    git(&upstream, &["commit", "-qm", "third"]);
    (upstream, source, meta)
}

/// Restores `meta` by `method` as `n`, syncs it with the seal the provider hands out
/// and returns the seal's presence, the engine's log and the workspace.
async fn warm(
    p: &LocalProvider,
    method: RestoreMethod,
    meta: &SnapshotMeta,
    source: &Source,
    n: &str,
) -> (bool, String, PathBuf) {
    let pm = p.clone().with_restore_method(method);
    let (s, _) = pm
        .connect(
            &ConnectOptions::new()
                .name(name(n))
                .base_snapshot(meta.id.clone()),
        )
        .await
        .unwrap();
    let seal = s.clean_seal();
    let sealed = seal.is_some();
    let (ws, src) = (s.workspace().to_path_buf(), source.clone());
    let log = tokio::task::spawn_blocking(move || {
        let opts = GitOptions {
            clean_seal: seal,
            ..GitOptions::default()
        };
        let (r, log) = capture_tracing(|| git::sync(&src, &ws, &opts));
        r.unwrap();
        log.text()
    })
    .await
    .unwrap();
    (sealed, log, s.workspace().to_path_buf())
}

fn cold_clone(home: &TestHome, source: &Source, n: &str) -> PathBuf {
    let cold = home.path().join(n);
    git::clone(source, &cold, &GitOptions::default()).unwrap();
    cold
}

#[tokio::test]
async fn only_an_overlay_restore_hands_the_seal_and_the_sync_equals_a_cold_clone() {
    let home = TestHome::new();
    let p = home.provider();
    let (_up, source, meta) = sealed_snapshot(&home, &p).await;
    assert!(
        meta.provider_data
            .get("clean_seal")
            .is_some_and(|v| !v.is_null()),
        "the capture recorded a seal: {}",
        meta.provider_data
    );
    let cold = cold_clone(&home, &source, "cold");
    let caps = p.capabilities().unwrap();
    for method in RestoreMethod::CONCRETE
        .into_iter()
        .filter(|m| caps.supports(*m))
    {
        let (sealed, log, ws) = warm(&p, method, &meta, &source, &format!("w-{method}")).await;
        let overlay = method == RestoreMethod::Overlay;
        assert_eq!(
            sealed, overlay,
            "{method}: only an overlay restore is sealed"
        );
        assert_eq!(log.contains(HOLDS), overlay, "{method}: {log}");
        assert_eq!(log.contains(WALK), !overlay, "{method}: {log}");
        assert!(log.contains("route=\"paths\""), "{method}: {log}");
        assert_eq!(worktree(&ws), worktree(&cold), "{method}");
        assert_eq!(git(&ws, &["status", "--porcelain"]), "", "{method}");
        assert_eq!(
            git(&ws, &["rev-parse", "HEAD"]),
            git(&cold, &["rev-parse", "HEAD"])
        );
    }
    let _ = fs::remove_dir_all(&cold);
}

/// Someone writes into the stored snapshot after capture (a staged change, a stray
/// file): the seal no longer matches its index, the sync walks, and the result is
/// still exactly the cold clone.
#[tokio::test]
async fn a_snapshot_written_after_capture_takes_the_walk_and_is_never_served_dirty() {
    let home = TestHome::new();
    let p = home.provider();
    if !p.capabilities().unwrap().supports(RestoreMethod::Overlay) {
        eprintln!("skipping: overlay restores need root");
        return;
    }
    let (_up, source, meta) = sealed_snapshot(&home, &p).await;
    let stored = p.store().workspace_of(&meta.id).unwrap();
    fs::write(
        stored.join("src/d02/file00002.txt"),
        "written after capture\n",
    )
    .unwrap();
    git(&stored, &["add", "src/d02/file00002.txt"]);
    fs::write(stored.join("stray.txt"), "written after capture\n").unwrap();

    let (sealed, log, ws) = warm(&p, RestoreMethod::Overlay, &meta, &source, "w").await;
    assert!(sealed, "the provider cannot know; the engine checks");
    assert!(log.contains(STALE), "{log}");
    assert!(log.contains(WALK), "{log}");
    assert!(log.contains("route=\"full\""), "{log}");
    let cold = cold_clone(&home, &source, "cold");
    assert_eq!(worktree(&ws), worktree(&cold));
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    p.remove(&name("w")).await.unwrap();
    assert!(mounts_under(home.path()).is_empty());
}

/// A far branch through every restore method: an orphan branch (no shared path, blob
/// or commit; its own `.gitignore` and `.gitattributes`; an executable, a symlink,
/// nested directories; `src` a file where the snapshot has a directory, `run.sh/` a
/// directory where it has a file) is written by the far route, and the workspace
/// equals a cold clone of that branch with a clean status. Through an overlay every
/// old file becomes a whiteout of the read-only lower layer.
#[tokio::test]
async fn a_far_orphan_branch_through_every_restore_equals_a_cold_clone() {
    use std::os::unix::fs::PermissionsExt;
    let home = TestHome::new();
    let p = home.provider();
    let (upstream, _, meta) = sealed_snapshot(&home, &p).await;
    git(&upstream, &["checkout", "-q", "--orphan", "pages"]);
    git(&upstream, &["rm", "-rqf", "."]);
    let write = |rel: &str, text: &str| {
        let f = upstream.join(rel);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, text).unwrap();
    };
    write(".gitignore", "*.tmp\n");
    write(".gitattributes", "*.bin binary\n");
    write("src", "a file where the snapshot has a directory\n");
    write(
        "run.sh/inner.txt",
        "a directory where the snapshot has a file\n",
    );
    write("tools/deploy.sh", "#!/bin/sh\necho deploy\n");
    fs::set_permissions(
        upstream.join("tools/deploy.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    for i in 0..80 {
        write(
            &format!("site/a/b{}/page{i:03}.html", i % 4),
            &format!("<p>{i}</p>\n"),
        );
    }
    std::os::unix::fs::symlink("site/a/b0/page000.html", upstream.join("index.html")).unwrap();
    git(&upstream, &["add", "-A"]);
    git(&upstream, &["commit", "-qm", "pages"]);
    git(&upstream, &["checkout", "-qf", "main"]);
    let source = Source::parse(&format!("file://{}", upstream.display()))
        .unwrap()
        .with_branch(BranchName::new("pages").unwrap())
        .unwrap();
    let cold = cold_clone(&home, &source, "cold");
    let caps = p.capabilities().unwrap();
    for method in RestoreMethod::CONCRETE
        .into_iter()
        .filter(|m| caps.supports(*m))
    {
        let n = format!("far-{method}");
        let (_, log, ws) = warm(&p, method, &meta, &source, &n).await;
        assert!(log.contains("route=\"far\""), "{method}: {log}");
        assert_eq!(worktree(&ws), worktree(&cold), "{method}");
        assert_eq!(git(&ws, &["status", "--porcelain"]), "", "{method}");
        assert_eq!(
            git(&ws, &["rev-parse", "HEAD"]),
            git(&cold, &["rev-parse", "HEAD"]),
            "{method}"
        );
        p.remove(&name(&n)).await.unwrap();
    }
    assert!(mounts_under(home.path()).is_empty());
}
