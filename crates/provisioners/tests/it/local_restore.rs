//! Restoring snapshots by every method: content and git state intact, the index's stat
//! data matching (no re-hash on the first `git status`), and isolation: writes in one
//! sandbox (worktree and `.git`: a commit, a gc) change neither the snapshot nor a
//! second sandbox made from it. One run on an XFS `reflink=1` loop image.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use provisioners::LocalProvider;
use provisioners::local::RestoreMethod;
use sandbox_core::{
    ConnectOptions, Connected, GcPolicy, SandboxName, SandboxProvider, SnapshotMeta,
    SnapshotRequest, SnapshotStore as _,
};

use crate::local_support::{
    TestHome, assert_same_tree, cloned_snapshot, files_of, fingerprint, git, is_root, make_repo,
    mounts_under, same_inode, status_rewrote_index,
};

fn name(s: &str) -> SandboxName {
    SandboxName::new(s).unwrap()
}

/// A snapshot of a fixture repository built in a sandbox.
async fn repo_snapshot(p: &LocalProvider, files: usize) -> (SnapshotMeta, PathBuf) {
    let (b, _) = p
        .connect(&ConnectOptions::new().name(name("build")))
        .await
        .unwrap();
    make_repo(b.workspace(), files);
    fs::write(
        b.workspace().join("untracked-build-output.bin"),
        vec![1u8; 5000],
    )
    .unwrap();
    let meta = b.snapshot(&SnapshotRequest::new("k", "d")).await.unwrap();
    p.remove(&name("build")).await.unwrap();
    let ws = p.store().workspace_of(&meta.id).unwrap();
    (meta, ws)
}

/// Which methods this machine can run; the rest are skipped with a printed reason.
fn runnable(p: &LocalProvider, m: RestoreMethod) -> bool {
    let caps = p.capabilities().unwrap();
    if caps.supports(m) {
        true
    } else {
        eprintln!(
            "skipping restore method {m}: not supported here ({caps:?}); run as root for overlay, on XFS/btrfs for reflink"
        );
        false
    }
}

/// Restores by `method`, checks the result, then proves isolation.
async fn restore_and_isolate(p: &LocalProvider, method: RestoreMethod) {
    let p = p.clone().with_restore_method(method);
    assert_eq!(p.effective_restore_method().unwrap(), method);
    let (meta, snap_ws) = repo_snapshot(&p, 60).await;
    let snap_before = fingerprint(&snap_ws);
    let snap_index = fs::read(snap_ws.join(".git/index")).unwrap();

    let opts = |n: &str| {
        ConnectOptions::new()
            .name(name(n))
            .base_snapshot(meta.id.clone())
    };
    let (a, how) = p.connect(&opts("a")).await.unwrap();
    assert_eq!(how, Connected::Created);
    assert_eq!(a.base_snapshot(), Some(&meta.id));
    let (b, _) = p.connect(&opts("b")).await.unwrap();
    assert_same_tree(
        &fingerprint(a.workspace()),
        &snap_before,
        &format!("{method}: the restore is exact"),
    );

    // the index matches the restored files: git status is clean and need not re-hash
    let (status, rewrote) = status_rewrote_index(a.workspace());
    assert_eq!(status, "?? untracked-build-output.bin\n", "{method}");
    assert!(
        !rewrote,
        "{method}: git status had to refresh the index (stat data did not match)"
    );

    // how files are shared with the snapshot
    for rel in files_of(a.workspace()) {
        let shared = same_inode(&snap_ws.join(&rel), &a.workspace().join(&rel));
        let pack_data = rel.starts_with(".git/objects/pack")
            && rel
                .extension()
                .is_some_and(|e| ["pack", "idx", "rev", "bitmap"].iter().any(|x| e == *x));
        let loose = rel.starts_with(".git/objects")
            && rel
                .parent()
                .and_then(|d| d.file_name())
                .is_some_and(|d| d.len() == 2);
        let object = pack_data || loose;
        match method {
            RestoreMethod::HardlinkCopy if object => {
                assert!(shared, "{}: objects are hardlinked", rel.display());
                let mode = fs::metadata(a.workspace().join(&rel)).unwrap().mode();
                assert_eq!(
                    mode & 0o222,
                    0,
                    "{}: a shared file is read-only",
                    rel.display()
                );
            }
            _ => assert!(!shared, "{method}: {} must not be shared", rel.display()),
        }
    }

    // write everywhere in `a`: worktree, index, refs, config, objects (commit + gc)
    let ws = a.workspace();
    fs::write(ws.join("README.md"), "changed in a\n").unwrap();
    fs::write(ws.join("src/d00/file00000.txt"), "also changed\n").unwrap();
    fs::write(ws.join("new-file"), "new\n").unwrap();
    fs::remove_file(ws.join("src/d01/file00001.txt")).unwrap();
    // renaming a directory from the snapshot (EXDEV on an overlay without redirect_dir)
    git(ws, &["mv", "src/d02", "src/moved"]);
    git(ws, &["add", "-A"]);
    git(ws, &["commit", "-qm", "in a"]);
    git(ws, &["config", "core.sandboxmark", "a"]);
    git(ws, &["gc", "-q", "--prune=now", "--aggressive"]);
    git(ws, &["fsck", "--no-progress"]);
    // truncating-and-rewriting every file in a (what a careless tool might do) still
    // only touches a's files (hardlinked objects are read-only, so skip them there)
    for rel in files_of(ws) {
        let p = ws.join(&rel);
        if p.symlink_metadata().unwrap().is_file() && fs::metadata(&p).unwrap().mode() & 0o200 != 0
        {
            fs::write(&p, b"clobbered").unwrap();
        }
    }

    assert_same_tree(
        &fingerprint(&snap_ws),
        &snap_before,
        &format!("{method}: the snapshot is unchanged"),
    );
    assert_eq!(fs::read(snap_ws.join(".git/index")).unwrap(), snap_index);
    assert_same_tree(
        &fingerprint(b.workspace()),
        &snap_before,
        &format!("{method}: the second sandbox is unchanged"),
    );
    git(b.workspace(), &["fsck", "--no-progress"]);
    assert_eq!(
        git(b.workspace(), &["log", "--format=%s"]),
        "second\nfirst\n"
    );

    p.remove(&name("a")).await.unwrap();
    p.remove(&name("b")).await.unwrap();
    assert_same_tree(
        &fingerprint(&snap_ws),
        &snap_before,
        &format!("{method}: removing sandboxes leaves the snapshot"),
    );
    assert!(
        mounts_under(p.home()).is_empty(),
        "{method}: no mounts left"
    );
}

#[tokio::test]
async fn restore_by_copy() {
    let home = TestHome::new();
    restore_and_isolate(&home.provider(), RestoreMethod::Copy).await;
}

#[tokio::test]
async fn restore_by_hardlinked_objects_and_copies() {
    let home = TestHome::new();
    restore_and_isolate(&home.provider(), RestoreMethod::HardlinkCopy).await;
}

#[tokio::test]
async fn restore_by_overlay() {
    let home = TestHome::new();
    let p = home.provider();
    if runnable(&p, RestoreMethod::Overlay) {
        restore_and_isolate(&p, RestoreMethod::Overlay).await;
    }
}

#[tokio::test]
async fn restore_by_reflink_where_the_data_dir_supports_it() {
    let home = TestHome::new();
    let p = home.provider();
    if runnable(&p, RestoreMethod::Reflink) {
        restore_and_isolate(&p, RestoreMethod::Reflink).await;
    }
}

#[tokio::test]
async fn a_forced_method_that_cannot_work_is_a_clear_error() {
    let home = TestHome::new();
    let p = home.provider();
    let caps = p.capabilities().unwrap();
    for m in [RestoreMethod::Overlay, RestoreMethod::Reflink] {
        if !caps.supports(m) {
            let err = p
                .clone()
                .with_restore_method(m)
                .effective_restore_method()
                .unwrap_err();
            assert!(err.to_string().contains(m.as_str()), "{err}");
        }
    }
    // auto picks the best supported one
    let auto = p.effective_restore_method().unwrap();
    assert_eq!(auto, caps.best());
    if is_root() {
        assert_eq!(
            auto,
            RestoreMethod::Overlay,
            "root on ext4 can mount overlays"
        );
    }
}

/// Unmounts `ws` as a reboot would. Right after an exec in it, the exec's process can
/// hold the mount for a moment after it was reaped (seen: EBUSY once in a full run), so
/// a busy mount is tried again for up to a second.
fn unmount_like_a_reboot(ws: &std::path::Path) {
    for _ in 0..50 {
        match rustix::mount::unmount(ws, rustix::mount::UnmountFlags::empty()) {
            Err(rustix::io::Errno::BUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stayed busy for a second", ws.display());
}

#[tokio::test]
async fn overlay_is_remounted_on_reconnect_and_unmounted_on_remove() {
    let home = TestHome::new();
    let p = home.provider().with_restore_method(RestoreMethod::Overlay);
    if !runnable(&p, RestoreMethod::Overlay) {
        return;
    }
    let (meta, _) = repo_snapshot(&p, 5).await;
    let (s, _) = p
        .connect(
            &ConnectOptions::new()
                .name(name("ov"))
                .base_snapshot(meta.id.clone()),
        )
        .await
        .unwrap();
    let ws = s.workspace().to_path_buf();
    fs::write(ws.join("mine.txt"), "upper layer").unwrap();
    assert_eq!(mounts_under(p.home()), vec![ws.clone()]);

    // what a reboot does: the mount is gone, the directories stay
    unmount_like_a_reboot(&ws);
    assert!(!ws.join("mine.txt").exists());
    assert!(!ws.join("README.md").exists());
    let (again, how) = p
        .connect(&ConnectOptions::new().name(name("ov")))
        .await
        .unwrap();
    assert_eq!(how, Connected::Reconnected);
    assert_eq!(again.id(), s.id());
    assert_eq!(
        fs::read_to_string(ws.join("mine.txt")).unwrap(),
        "upper layer",
        "writes survive"
    );
    assert_eq!(
        fs::read_to_string(ws.join("README.md")).unwrap(),
        "second commit\n"
    );

    // get() and exec on an old handle re-mount too
    unmount_like_a_reboot(&ws);
    let out = s
        .exec(&sandbox_core::ExecRequest::new(["cat", "mine.txt"]).unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"upper layer");
    unmount_like_a_reboot(&ws);
    assert!(p.get(&name("ov")).await.unwrap().is_some());
    assert!(ws.join("mine.txt").exists());

    // force_create replaces a mounted sandbox cleanly
    let (fresh, _) = p
        .connect(
            &ConnectOptions::new()
                .name(name("ov"))
                .base_snapshot(meta.id.clone())
                .force_create(true),
        )
        .await
        .unwrap();
    assert!(!fresh.workspace().join("mine.txt").exists());
    assert_eq!(mounts_under(p.home()).len(), 1);

    p.remove(&name("ov")).await.unwrap();
    assert!(mounts_under(p.home()).is_empty());
    assert!(!p.home().join("sandboxes/ov").exists());
}

/// An XFS image with reflink, loop-mounted in a temp dir; `None` (with the reason
/// printed) when this machine cannot make one.
struct XfsImage {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl XfsImage {
    fn make() -> Option<Self> {
        if !is_root() {
            eprintln!("skipping the XFS reflink test: needs root for loop mounts");
            return None;
        }
        let mkfs = ["/usr/sbin/mkfs.xfs", "/sbin/mkfs.xfs"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(mkfs) = mkfs else {
            eprintln!(
                "skipping the XFS reflink test: mkfs.xfs not installed (apt-get install xfsprogs)"
            );
            return None;
        };
        if !Path::new("/dev/loop-control").exists() {
            eprintln!("skipping the XFS reflink test: no loop devices (/dev/loop-control)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("hs-xfs-")
            .tempdir()
            .unwrap();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        fs::File::create(&img).unwrap().set_len(512 << 20).unwrap();
        let ok = Command::new(mkfs)
            .args(["-q", "-m", "reflink=1"])
            .arg(&img)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipping the XFS reflink test: mkfs.xfs -m reflink=1 failed");
            return None;
        }
        let ok = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipping the XFS reflink test: mount -o loop failed (no free loop device?)");
            return None;
        }
        Some(Self { mnt, _dir: dir })
    }
}

impl Drop for XfsImage {
    fn drop(&mut self) {
        for m in mounts_under(&self.mnt) {
            let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn used_bytes(dir: &Path) -> u64 {
    let s = rustix::fs::statvfs(dir).unwrap();
    (s.f_blocks - s.f_bfree) * s.f_frsize
}

#[tokio::test]
async fn reflink_on_an_xfs_loop_image() {
    let Some(xfs) = XfsImage::make() else { return };
    let p = LocalProvider::new(xfs.mnt.join("home"));
    let caps = p.capabilities().unwrap();
    assert!(
        caps.reflink,
        "XFS with reflink=1 supports FICLONE: {caps:?}"
    );
    restore_and_isolate(&p, RestoreMethod::Reflink).await;

    // clones share blocks: restoring a 64 MiB file costs (almost) no space
    let p = p.with_restore_method(RestoreMethod::Reflink);
    let (b, _) = p
        .connect(&ConnectOptions::new().name(name("big")))
        .await
        .unwrap();
    make_repo(b.workspace(), 3);
    fs::write(b.workspace().join("big.bin"), vec![0x5au8; 64 << 20]).unwrap();
    let meta = b.snapshot(&SnapshotRequest::new("big", "d")).await.unwrap();
    let before = used_bytes(&xfs.mnt);
    let (c, _) = p
        .connect(
            &ConnectOptions::new()
                .name(name("big2"))
                .base_snapshot(meta.id.clone()),
        )
        .await
        .unwrap();
    let grew = used_bytes(&xfs.mnt).saturating_sub(before);
    assert!(
        grew < 16 << 20,
        "a reflinked restore of 64 MiB used {grew} bytes"
    );
    assert_eq!(
        fs::metadata(c.workspace().join("big.bin")).unwrap().len(),
        64 << 20
    );
    // writing the clone leaves the snapshot alone
    fs::write(c.workspace().join("big.bin"), b"small now").unwrap();
    let snap = p.store().workspace_of(&meta.id).unwrap();
    assert_eq!(fs::metadata(snap.join("big.bin")).unwrap().len(), 64 << 20);
    p.remove(&name("big")).await.unwrap();
    p.remove(&name("big2")).await.unwrap();
}

#[tokio::test]
async fn the_probe_is_cached_and_auto_falls_back_when_overlay_fails() {
    let home = TestHome::new();
    // overlay mount options cannot carry a `,` in a path: mounts here always fail
    let data = home.path().join("da,ta");
    fs::create_dir_all(&data).unwrap();
    let probe = data.join(".restore-probe.json");
    let fresh = LocalProvider::new(&data).capabilities().unwrap();
    assert!(
        !fresh.overlay,
        "the probe itself finds overlay unusable here"
    );
    assert!(probe.is_file(), "the probe result is cached");

    // a stale cache that still claims overlay works
    let mut cached: serde_json::Value = serde_json::from_slice(&fs::read(&probe).unwrap()).unwrap();
    cached["caps"]["overlay"] = true.into();
    fs::write(&probe, serde_json::to_vec(&cached).unwrap()).unwrap();
    let p = LocalProvider::new(&data);
    assert!(
        p.capabilities().unwrap().overlay,
        "a new provider reads the cache instead of probing"
    );
    assert_eq!(
        p.effective_restore_method().unwrap(),
        RestoreMethod::Overlay
    );

    let (meta, snap_ws) = repo_snapshot(&p, 5).await;
    let (s, _) = p
        .connect(
            &ConnectOptions::new()
                .name(name("fb"))
                .base_snapshot(meta.id.clone()),
        )
        .await
        .expect("auto falls back to a copy when the overlay mount fails");
    assert!(mounts_under(home.path()).is_empty());
    assert_same_tree(
        &fingerprint(s.workspace()),
        &fingerprint(&snap_ws),
        "the fallback restore is exact",
    );
    assert!(
        !probe.exists(),
        "the stale cache is dropped so the next process probes again"
    );

    // a forced overlay does not fall back: it fails and leaves nothing
    let forced = LocalProvider::new(&data).with_restore_method(RestoreMethod::Overlay);
    let err = forced
        .connect(
            &ConnectOptions::new()
                .name(name("forced"))
                .base_snapshot(meta.id.clone()),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("overlay"), "{err}");
    assert!(!data.join("sandboxes/forced").exists());
}

#[tokio::test]
async fn index_versions_3_and_4_are_refreshed_and_sha256_repositories_stay_correct() {
    let home = TestHome::new();
    let p = home.provider().with_restore_method(RestoreMethod::Copy);
    // (variant, git commands after the fixture, refresh expected)
    let variants: [(&str, &[&[&str]], bool); 3] = [
        (
            "v3",
            &[&["update-index", "--skip-worktree", "run.sh"]],
            true,
        ),
        ("v4", &[&["update-index", "--index-version", "4"]], true),
        ("split", &[&["update-index", "--split-index"]], false),
    ];
    for (i, (variant, commands, refreshed)) in variants.into_iter().enumerate() {
        let build = name(&format!("b{i}"));
        let (b, _) = p
            .connect(&ConnectOptions::new().name(build.clone()))
            .await
            .unwrap();
        make_repo(b.workspace(), 30);
        for c in commands {
            git(b.workspace(), c);
        }
        crate::local_support::age_worktree(b.workspace());
        let expected = git(b.workspace(), &["status", "--porcelain"]);
        let meta = b
            .snapshot(&SnapshotRequest::new(format!("k{i}"), "d"))
            .await
            .unwrap();
        let (s, _) = p
            .connect(
                &ConnectOptions::new()
                    .name(name(&format!("r{i}")))
                    .base_snapshot(meta.id.clone()),
            )
            .await
            .unwrap();
        let (status, rewrote) = status_rewrote_index(s.workspace());
        assert_eq!(status, expected, "{variant}: git sees the same state");
        if refreshed {
            assert!(!rewrote, "{variant}: the index was refreshed");
        }
    }

    // a SHA-256 repository: the index is left alone (git re-hashes), still correct
    let (b, _) = p
        .connect(&ConnectOptions::new().name(name("sha256")))
        .await
        .unwrap();
    git(b.workspace(), &["init", "-q", "--object-format=sha256"]);
    fs::write(b.workspace().join("a.txt"), "a\n").unwrap();
    git(b.workspace(), &["add", "-A"]);
    git(b.workspace(), &["commit", "-qm", "one"]);
    let meta = b
        .snapshot(&SnapshotRequest::new("k256", "d"))
        .await
        .unwrap();
    let (s, _) = p
        .connect(
            &ConnectOptions::new()
                .name(name("r256"))
                .base_snapshot(meta.id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(git(s.workspace(), &["status", "--porcelain"]), "");
    git(s.workspace(), &["fsck", "--no-progress"]);
}

/// The warm path end to end on each method: a snapshot of a clone made by the git
/// engine, upstream moves on, a restored sandbox is synced by the git engine (libgit2,
/// which compares inodes: a stale index would show every file modified).
#[tokio::test]
async fn the_git_engine_syncs_a_restored_workspace_for_every_method() {
    use sandbox_core::git::{self, GitOptions};
    use sandbox_core::{BranchName, Source};

    let home = TestHome::new();
    let upstream = home.path().join("upstream");
    make_repo(&upstream, 20);
    let source = Source::parse(&format!("file://{}", upstream.display()))
        .unwrap()
        .with_branch(BranchName::new("main").unwrap())
        .unwrap();
    let p = home.provider();
    let (meta, head) = cloned_snapshot(&p, &source).await;

    fs::write(upstream.join("README.md"), "third commit\n").unwrap();
    git(&upstream, &["commit", "-qam", "third"]);
    let new_head = git(&upstream, &["rev-parse", "HEAD"]).trim().to_owned();
    assert_ne!(new_head, head.commit);

    let caps = p.capabilities().unwrap();
    for method in RestoreMethod::CONCRETE
        .into_iter()
        .filter(|m| caps.supports(*m))
    {
        let pm = p.clone().with_restore_method(method);
        let n = name(&format!("warm-{method}"));
        let (s, _) = pm
            .connect(
                &ConnectOptions::new()
                    .name(n.clone())
                    .base_snapshot(meta.id.clone()),
            )
            .await
            .unwrap();
        let (ws, src) = (s.workspace().to_path_buf(), source.clone());
        let synced =
            tokio::task::spawn_blocking(move || git::sync(&src, &ws, &GitOptions::default()))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{method}: sync failed: {e}"));
        assert_eq!(synced.head.commit, new_head, "{method}");
        assert_eq!(synced.head.branch, "main", "{method}");
        assert_eq!(
            fs::read_to_string(s.workspace().join("README.md")).unwrap(),
            "third commit\n"
        );
        assert_eq!(
            git(s.workspace(), &["status", "--porcelain"]),
            "",
            "{method}: clean after sync"
        );
        pm.remove(&n).await.unwrap();
    }
    assert!(mounts_under(home.path()).is_empty());
}

#[tokio::test]
async fn prune_unmounts_an_orphaned_overlay_and_gc_waits_for_it() {
    let home = TestHome::new();
    let p = home.provider().with_restore_method(RestoreMethod::Overlay);
    if !runnable(&p, RestoreMethod::Overlay) {
        return;
    }
    let (meta, snap_ws) = repo_snapshot(&p, 5).await;
    let (s, _) = p
        .connect(
            &ConnectOptions::new()
                .name(name("orphan"))
                .base_snapshot(meta.id.clone()),
        )
        .await
        .unwrap();
    let ws = s.workspace().to_path_buf();
    // a crash lost the record, the mount is still there
    fs::remove_file(p.home().join("sandboxes/orphan/sandbox.json")).unwrap();
    assert_eq!(mounts_under(p.home()), vec![ws.clone()]);
    let err = p.store().gc(&GcPolicy::new(0, None)).await.unwrap_err();
    assert!(
        err.to_string().contains("prune"),
        "GC refuses while a mount has no record: {err}"
    );
    assert!(snap_ws.is_dir());

    let report = p.prune().await.unwrap();
    assert_eq!(
        report.orphan_workspaces,
        vec![p.home().join("sandboxes/orphan")]
    );
    assert!(mounts_under(p.home()).is_empty());
    let gc = p.store().gc(&GcPolicy::new(0, None)).await.unwrap();
    assert_eq!(gc.removed, vec![meta.id.clone()]);
}
