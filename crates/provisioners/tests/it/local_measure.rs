//! Measures the restore methods on this machine (ignored by default; speed belongs in
//! measurements, not in pass/fail tests):
//!
//! ```text
//! cargo test -p provisioners --test it local_measure -- --ignored --nocapture
//! ```
//!
//! For 1,000- and 10,000-file repositories: snapshot capture, restore by each method
//! (and copy threads 1/2/4), and the first `git status` after the restore, with the
//! refreshed index and with the snapshot's unrefreshed index put back (what a restore
//! without the refresh would leave). Medians of a few runs; page cache warm.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout
)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use provisioners::LocalProvider;
use provisioners::local::RestoreMethod;
use sandbox_core::{ConnectOptions, SandboxName, SandboxProvider, SnapshotId, SnapshotRequest};

use crate::local_support::{TestHome, git, is_root};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:8.1} ms", d.as_secs_f64() * 1e3)
}

/// A repository of `files` files (~3 KiB of text each, 40 directories, 3 commits).
fn big_repo(dir: &Path, files: usize) {
    fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..files {
        let p = dir.join(format!("src/m{:02}/sub{}/f{i:05}.rs", i % 40, i % 7));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut text = String::with_capacity(3100);
        while text.len() < 3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(&format!("let v{} = {:x};\n", seed % 1000, seed));
        }
        fs::write(&p, text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "one"]);
    for n in 0..2 {
        fs::write(dir.join(format!("CHANGES-{n}")), "x\n").unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-qm", "more"]);
    }
    git(dir, &["repack", "-adq"]);
}

fn time_git_status(dir: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    t.elapsed()
}

async fn measure(home: &Path, label: &str, files: usize, methods: &[(RestoreMethod, usize)]) {
    let base = LocalProvider::new(home);
    let (b, _) = base
        .connect(&ConnectOptions::new().name(SandboxName::new("build").unwrap()))
        .await
        .unwrap();
    big_repo(b.workspace(), files);
    let t = Instant::now();
    let meta = b.snapshot(&SnapshotRequest::new("k", "d")).await.unwrap();
    let capture = t.elapsed();
    base.remove(b.name()).await.unwrap();
    let snap_ws = base.store().workspace_of(&meta.id).unwrap();
    let snap_index = fs::read(snap_ws.join(".git/index")).unwrap();
    println!(
        "\n{label}: {files} files, snapshot capture {}",
        ms(capture).trim()
    );
    println!(
        "  {:<22} {:>11} {:>16} {:>22}",
        "method", "restore", "git status", "status, index as copied"
    );
    for &(method, threads) in methods {
        let p = base
            .clone()
            .with_restore_method(method)
            .with_copy_threads(threads);
        let mut restore = Vec::new();
        let mut status = Vec::new();
        let mut stale_status = Vec::new();
        for run in 0..RUNS {
            let name = SandboxName::new(format!("r{run}")).unwrap();
            let t = Instant::now();
            let (s, _) = p
                .connect(
                    &ConnectOptions::new()
                        .name(name.clone())
                        .base_snapshot(SnapshotId::clone(&meta.id)),
                )
                .await
                .unwrap();
            restore.push(t.elapsed());
            status.push(time_git_status(s.workspace()));
            if method != RestoreMethod::Overlay {
                // the index as a restore without the refresh would leave it
                fs::write(s.workspace().join(".git/index"), &snap_index).unwrap();
                stale_status.push(time_git_status(s.workspace()));
            }
            p.remove(&name).await.unwrap();
        }
        let stale = if stale_status.is_empty() {
            "-".to_owned()
        } else {
            ms(median(stale_status))
        };
        println!(
            "  {:<22} {} {:>16} {:>22}",
            format!("{method} ({threads} thr)"),
            ms(median(restore)),
            ms(median(status)),
            stale
        );
    }
}

#[tokio::test]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn local_measure_restore_methods() {
    let probe_home = TestHome::new();
    let p = probe_home.provider();
    let t = Instant::now();
    let caps = p.capabilities().unwrap();
    println!(
        "probe: {caps:?} in {}; auto picks {}",
        ms(t.elapsed()).trim(),
        caps.best()
    );

    let mut methods = vec![
        (RestoreMethod::Copy, 1),
        (RestoreMethod::Copy, 2),
        (RestoreMethod::Copy, 4),
        (RestoreMethod::HardlinkCopy, 2),
    ];
    if caps.overlay {
        methods.insert(0, (RestoreMethod::Overlay, 1));
    }
    for files in [1_000, 10_000] {
        let home = TestHome::new();
        measure(
            &home.path().join("home"),
            "root filesystem (ext4)",
            files,
            &methods,
        )
        .await;
    }

    // reflink needs a filesystem that has it: an XFS loop image
    if !is_root() || !Path::new("/usr/sbin/mkfs.xfs").exists() {
        println!("no XFS measurements (needs root and mkfs.xfs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    fs::File::create(&img).unwrap().set_len(2 << 30).unwrap();
    assert!(
        Command::new("/usr/sbin/mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&img)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .status()
            .unwrap()
            .success()
    );
    let methods = [
        (RestoreMethod::Overlay, 1),
        (RestoreMethod::Reflink, 2),
        (RestoreMethod::Copy, 2),
        (RestoreMethod::HardlinkCopy, 2),
    ];
    for files in [1_000, 10_000] {
        let home = mnt.join(format!("home{files}"));
        let methods: Vec<_> = methods
            .iter()
            .copied()
            .filter(|(m, _)| *m != RestoreMethod::Overlay || caps.overlay)
            .collect();
        measure(&home, "XFS reflink=1 loop image", files, &methods).await;
    }
    for m in crate::local_support::mounts_under(&mnt) {
        let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH);
    }
}
