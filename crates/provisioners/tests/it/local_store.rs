//! The local snapshot store: snapshots become visible only complete, listing pages
//! newest first, `latest_ready` looks behind pages, corrupt manifests are skipped,
//! interrupted writes are cleaned up, GC keeps N / respects age / honours leases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::time::{Duration, SystemTime};

use provisioners::local::{LocalSnapshotStore, RestoreMethod};
use sandbox_core::GcPolicy;
use sandbox_core::{
    ConnectOptions, Cursor, Error, SandboxName, SandboxProvider, SnapshotId, SnapshotMeta,
    SnapshotRequest, SnapshotStatus, SnapshotStore,
};

use crate::local_support::{TestHome, assert_same_tree, fingerprint, git, make_repo};

fn name(s: &str) -> SandboxName {
    SandboxName::new(s).unwrap()
}

async fn snapshot_of(p: &provisioners::LocalProvider, sandbox: &str, key: &str) -> SnapshotMeta {
    let (s, _) = p
        .connect(&ConnectOptions::new().name(name(sandbox)))
        .await
        .unwrap();
    fs::write(s.workspace().join("who"), sandbox).unwrap();
    s.snapshot(&SnapshotRequest::new(key, "digest-1"))
        .await
        .unwrap()
}

async fn all_pages(
    store: &LocalSnapshotStore,
    key: Option<&str>,
    limit: usize,
) -> Vec<SnapshotMeta> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = store.list(key, cursor.as_ref(), limit).await.unwrap();
        assert!(page.items.len() <= limit);
        out.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn a_snapshot_has_a_full_manifest_and_its_workspace() {
    let home = TestHome::new();
    let p = home.provider();
    let (s, _) = p
        .connect(&ConnectOptions::new().name(name("build")))
        .await
        .unwrap();
    make_repo(s.workspace(), 20);
    let head = git(s.workspace(), &["rev-parse", "HEAD"]).trim().to_owned();
    let req = SnapshotRequest::new("example.com-acme-app-abc123", "recipe-d1")
        .at("main", &head)
        .source_url("https://example.com/acme/app");
    let meta = s.snapshot(&req).await.unwrap();
    assert_eq!(meta.name, "example.com-acme-app-abc123");
    assert_eq!(meta.status, SnapshotStatus::Ready);
    assert_eq!(meta.commit.as_deref(), Some(head.as_str()));
    assert_eq!(meta.branch.as_deref(), Some("main"));
    assert_eq!(meta.recipe_digest, "recipe-d1");
    assert_eq!(
        meta.source_url.as_deref(),
        Some("https://example.com/acme/app")
    );
    assert!(meta.size_bytes > 0);
    assert!((time::OffsetDateTime::now_utc() - meta.created_at).whole_seconds() < 60);

    let store = p.store();
    assert_eq!(store.get(&meta.id).await.unwrap().as_ref(), Some(&meta));
    let ws = store.workspace_of(&meta.id).unwrap();
    assert_eq!(
        ws,
        p.home()
            .join("snapshots")
            .join(&meta.name)
            .join(meta.id.as_str())
            .join("workspace")
    );
    assert_same_tree(
        &fingerprint(&ws),
        &fingerprint(s.workspace()),
        "the snapshot is a copy",
    );
    // nothing is left in the temp area
    assert_eq!(
        fs::read_dir(p.home().join("snapshots/.tmp"))
            .unwrap()
            .count(),
        0
    );

    let err = s
        .snapshot(&SnapshotRequest::new("../escape", "d"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
}

#[tokio::test]
async fn listing_is_newest_first_with_cursors_and_latest_ready_looks_behind_pages() {
    let home = TestHome::new();
    let p = home.provider();
    let store = LocalSnapshotStore::new(p.home()).with_page_size(2);
    let key = "repo-key";
    let ready = snapshot_of(&p, "b1", key).await;
    let _other_key = snapshot_of(&p, "b2", "other-key").await;
    let mut failed = Vec::new();
    for i in 0..5 {
        let status = if i % 2 == 0 {
            SnapshotStatus::Failed
        } else {
            SnapshotStatus::Building
        };
        let meta = SnapshotMeta {
            status,
            error: Some(format!("boom {i}")),
            ..ready.clone()
        };
        let meta = SnapshotMeta {
            created_at: time::OffsetDateTime::now_utc(),
            ..meta
        };
        failed.push(store.record(meta).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let listed = all_pages(&store, Some(key), 2).await;
    let ids: Vec<_> = listed.iter().map(|m| m.id.clone()).collect();
    let mut expected: Vec<_> = failed.iter().rev().map(|m| m.id.clone()).collect();
    expected.push(ready.id.clone());
    assert_eq!(ids, expected, "newest first, every item once");
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );

    // five non-ready entries are more than two pages of two
    let found = store
        .latest_ready(key)
        .await
        .unwrap()
        .expect("found behind the failed pages");
    assert_eq!(found.id, ready.id);
    assert_eq!(store.latest_ready("no-such-key").await.unwrap(), None);
    assert_eq!(all_pages(&store, None, 3).await.len(), 7, "all names");

    let err = store
        .list(Some(key), Some(&Cursor("garbage".into())), 2)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
}

#[tokio::test]
async fn failed_builds_are_recorded_with_their_error() {
    let home = TestHome::new();
    let store = home.provider().store();
    let meta = store
        .record_failed("repo-key", "d1", "clone failed: repository not found")
        .await
        .unwrap();
    let listed = store.list(Some("repo-key"), None, 10).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, meta.id);
    assert_eq!(listed[0].status, SnapshotStatus::Failed);
    assert_eq!(
        listed[0].error.as_deref(),
        Some("clone failed: repository not found")
    );
    assert_eq!(store.latest_ready("repo-key").await.unwrap(), None);
    let bad = SnapshotMeta {
        status: SnapshotStatus::Ready,
        ..meta
    };
    assert!(
        store.record(bad).await.is_err(),
        "a ready snapshot needs a workspace"
    );
}

#[tokio::test]
async fn a_corrupt_manifest_is_skipped_not_fatal() {
    let home = TestHome::new();
    let p = home.provider();
    let good = snapshot_of(&p, "b1", "k").await;
    let bad = snapshot_of(&p, "b2", "k").await;
    let manifest = p
        .home()
        .join("snapshots/k")
        .join(bad.id.as_str())
        .join("manifest.json");
    fs::write(&manifest, "{ not json").unwrap();
    let store = p.store();
    let listed = store.list(Some("k"), None, 10).await.unwrap().items;
    assert_eq!(listed.iter().map(|m| &m.id).collect::<Vec<_>>(), [&good.id]);
    assert_eq!(
        store.latest_ready("k").await.unwrap().map(|m| m.id),
        Some(good.id.clone())
    );
    assert!(store.get(&bad.id).await.is_err(), "get says what is wrong");
    // a sandbox cannot be made from it either, and nothing is left behind
    let err = p
        .clone()
        .with_restore_method(RestoreMethod::Copy)
        .connect(
            &ConnectOptions::new()
                .name(name("from-bad"))
                .base_snapshot(bad.id.clone()),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("manifest"), "{err}");
    assert!(!p.home().join("sandboxes/from-bad").exists());
    // the store can still delete it
    store.delete(&bad.id).await.unwrap();
    assert!(!manifest.exists());
}

/// A snapshot writer in another process: `flock(1)` holding an exclusive lock on a
/// file until it is killed.
///
/// Not a lock held by the test process itself: dropping an fd does not release its
/// `flock` while a child that another test thread is spawning at that moment still
/// holds a copy of the fd table (between `fork` and `exec`, before close-on-exec runs),
/// so "drop, then the lock is free" is not true in a multi-threaded process that starts
/// processes. A writer's death is: the kernel closes a process's files before `wait`
/// returns.
struct LockHolder(Option<std::process::Child>);

impl LockHolder {
    fn start(path: &std::path::Path) -> Self {
        use std::io::BufRead;
        // `-o`: the command does not inherit the lock fd, so only `flock` holds it
        let mut child = std::process::Command::new("flock")
            .args(["-o", "-x"])
            .arg(path)
            .args(["sh", "-c", "echo locked; exec sleep 600"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        Self(Some(child))
    }

    /// SIGKILL to its process group, then reap it: the lock is free on return.
    fn die(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let pgid = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            child.wait().unwrap();
        }
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn an_interrupted_write_is_invisible_and_cleaned_up() {
    let home = TestHome::new();
    let p = home.provider();
    let done = snapshot_of(&p, "b1", "k").await;
    let tmp = p.home().join("snapshots/.tmp");
    // a writer killed mid-way: its temp dir, a complete-looking manifest, an unheld lock
    let dead = tmp.join("0000000000001-deadbeef");
    fs::create_dir_all(dead.join("workspace")).unwrap();
    fs::write(dead.join("workspace/file"), "partial").unwrap();
    let mut fake = done.clone();
    fake.id = SnapshotId::new("0000000000001-deadbeef").unwrap();
    fs::write(
        dead.join("manifest.json"),
        serde_json::to_vec(&fake).unwrap(),
    )
    .unwrap();
    fs::write(dead.join(".lock"), "").unwrap();
    // a writer that is still running: another process holding its lock
    let live = tmp.join("0000000000002-a11ea11e");
    fs::create_dir_all(&live).unwrap();
    let writer = LockHolder::start(&live.join(".lock"));
    // a dir whose writer died before making its lock: stale once old
    let young = tmp.join("0000000000003-0000aaaa");
    let old = tmp.join("0000000000004-0000bbbb");
    fs::create_dir_all(&young).unwrap();
    fs::create_dir_all(&old).unwrap();
    fs::File::open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();

    let store = p.store();
    let listed = store.list(None, None, 100).await.unwrap().items;
    assert_eq!(listed.len(), 1, "only the complete snapshot is visible");
    assert!(store.get(&fake.id).await.unwrap().is_none());
    assert_eq!(
        store.latest_ready("k").await.unwrap().map(|m| m.id),
        Some(done.id.clone())
    );

    assert_eq!(store.cleanup_stale().unwrap(), 2);
    assert!(!dead.exists(), "the dead writer's dir is removed");
    assert!(!old.exists());
    assert!(live.exists(), "a live writer's dir is kept");
    assert!(
        young.exists(),
        "a brand-new dir may be about to get its lock"
    );
    writer.die();
    assert_eq!(store.cleanup_stale().unwrap(), 1);
    assert!(!live.exists());

    // the next snapshot cleans up by itself
    fs::create_dir_all(dead.join("workspace")).unwrap();
    fs::write(dead.join(".lock"), "").unwrap();
    snapshot_of(&p, "b2", "k").await;
    assert!(!dead.exists());
}

#[tokio::test]
async fn gc_keeps_newest_n_respects_age_and_never_removes_a_leased_snapshot() {
    let home = TestHome::new();
    let p = home.provider().with_restore_method(RestoreMethod::Copy);
    let mut snaps = Vec::new();
    for i in 0..4 {
        snaps.push(snapshot_of(&p, &format!("b{i}"), "k").await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let other = snapshot_of(&p, "o", "other").await;
    // a sandbox made from the oldest holds a lease on it
    let (user, _) = p
        .connect(
            &ConnectOptions::new()
                .name(name("user"))
                .base_snapshot(snaps[0].id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(user.base_snapshot(), Some(&snaps[0].id));
    let store = p.store();
    let report = store.gc(&GcPolicy::new(2, None)).await.unwrap();
    assert_eq!(report.removed, vec![snaps[1].id.clone()]);
    assert_eq!(report.kept_in_use, vec![snaps[0].id.clone()]);
    let left: Vec<_> = store
        .list(Some("k"), None, 10)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        left,
        [
            snaps[3].id.clone(),
            snaps[2].id.clone(),
            snaps[0].id.clone()
        ]
    );
    assert!(
        store.get(&other.id).await.unwrap().is_some(),
        "other keys keep their own N"
    );

    // explicit delete refuses a leased snapshot, says who holds it
    let err = store.delete(&snaps[0].id).await.unwrap_err();
    assert!(err.to_string().contains("user"), "{err}");

    // age: make snapshot 3 look a month old
    let manifest = p
        .home()
        .join("snapshots/k")
        .join(snaps[3].id.as_str())
        .join("manifest.json");
    let mut meta: SnapshotMeta = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    meta.created_at -= time::Duration::days(30);
    fs::write(&manifest, serde_json::to_vec(&meta).unwrap()).unwrap();
    let report = store
        .gc(&GcPolicy::new(
            10,
            Some(Duration::from_secs(14 * 24 * 3600)),
        ))
        .await
        .unwrap();
    assert_eq!(report.removed, vec![snaps[3].id.clone()]);

    // once the sandbox is gone, so is the lease
    p.remove(&name("user")).await.unwrap();
    let report = store.gc(&GcPolicy::new(1, None)).await.unwrap();
    assert_eq!(report.removed, vec![snaps[0].id.clone()]);
    assert!(report.kept_in_use.is_empty());
    store.delete(&snaps[2].id).await.unwrap();
    assert!(matches!(
        store.delete(&snaps[2].id).await.unwrap_err(),
        Error::SnapshotNotFound { .. }
    ));
    assert!(
        store
            .list(Some("k"), None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        fs::read_dir(p.home().join("snapshots/.trash"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn snapshot_git_objects_are_read_only() {
    let home = TestHome::new();
    let p = home.provider();
    let (s, _) = p
        .connect(&ConnectOptions::new().name(name("b")))
        .await
        .unwrap();
    make_repo(s.workspace(), 5);
    // make one object writable in the sandbox: the snapshot must not keep that
    let pack = fs::read_dir(s.workspace().join(".git/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pack"))
        .unwrap();
    fs::set_permissions(&pack, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let meta = s.snapshot(&SnapshotRequest::new("k", "d")).await.unwrap();
    let ws = p.store().workspace_of(&meta.id).unwrap();
    let snap_pack = ws.join(pack.strip_prefix(s.workspace()).unwrap());
    assert_eq!(fs::metadata(&snap_pack).unwrap().mode() & 0o222, 0);
    assert_ne!(
        fs::metadata(ws.join("README.md")).unwrap().mode() & 0o200,
        0,
        "worktree files stay writable"
    );
}

#[tokio::test]
async fn gc_racing_restores_never_removes_a_snapshot_under_a_sandbox() {
    let home = TestHome::new();
    let p = home.provider().with_restore_method(RestoreMethod::Copy);
    let snap = snapshot_of(&p, "b", "k").await;
    let store = p.store();
    let restores: Vec<_> = (0..6)
        .map(|i| {
            let p = p.clone();
            let id = snap.id.clone();
            tokio::spawn(async move {
                p.connect(
                    &ConnectOptions::new()
                        .name(name(&format!("r{i}")))
                        .base_snapshot(id),
                )
                .await
            })
        })
        .collect();
    let gcs: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.gc(&GcPolicy::new(0, None)).await.unwrap() })
        })
        .collect();
    let mut made = Vec::new();
    for r in restores {
        match r.await.unwrap() {
            Ok((s, _)) => made.push(s),
            // GC got there first: a clean refusal, nothing half-made
            Err(Error::SnapshotNotFound { .. }) => {}
            Err(e) => panic!("a restore failed otherwise: {e}"),
        }
    }
    for g in gcs {
        g.await.unwrap();
    }
    for s in &made {
        assert_eq!(
            fs::read_to_string(s.workspace().join("who")).unwrap(),
            "b",
            "complete restore"
        );
    }
    let still_there = store.get(&snap.id).await.unwrap().is_some();
    assert_eq!(still_there, !made.is_empty(), "kept exactly while leased");
    let names: Vec<_> = p
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(
        names.len(),
        made.len() + 1,
        "no half-created sandboxes (plus the builder)"
    );
}
