//! Helpers for the local provider tests: a data directory that unmounts what tests
//! left mounted, git fixtures made with the git CLI, and tree fingerprints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use provisioners::local::LocalProvider;

/// A temporary data directory that unmounts what a test left mounted (see
/// [`test_support::TempHome`]), with a local provider over `<dir>/home`.
pub(crate) struct TestHome(test_support::TempHome);

impl TestHome {
    pub(crate) fn new() -> Self {
        Self(test_support::TempHome::new("hs-local-"))
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }

    pub(crate) fn provider(&self) -> LocalProvider {
        LocalProvider::new(self.path().join("home"))
    }
}

pub(crate) use test_support::mounts_under;

/// Sends `signal` through `token` once the command wrote a line to `file` (it then runs
/// and has set up what the test looks at); the task ends after sending.
pub(crate) fn signal_when_written(
    file: PathBuf,
    token: sandbox_core::SignalToken,
    signal: sandbox_core::ExecSignal,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !fs::read_to_string(&file).is_ok_and(|t| t.ends_with('\n')) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        token.send(signal);
    })
}

/// True while process `pid` lives on this host (a zombie counts as dead).
pub(crate) fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits up to 5 s for process `pid` to be gone; fails saying `what` it was otherwise.
pub(crate) async fn assert_gone(pid: i32, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(pid), "{what} {pid} is still running");
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs git (the CLI, test code only) in `dir`; panics with its output on failure.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args([
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes `dir` a repository with `files` tracked files in subdirectories, an
/// executable, a symlink, one packed and one loose commit, and worktree mtimes in the
/// past with the index refreshed after them (so the fixture itself has no racily
/// clean entries and `git status` does not rewrite its index).
pub(crate) fn make_repo(dir: &Path, files: usize) {
    fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    for i in 0..files {
        let p = dir.join(format!("src/d{:02}/file{i:05}.txt", i % 37));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("file {i}\n{}\n", "lorem ipsum ".repeat(i % 50))).unwrap();
    }
    fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("run.sh", dir.join("link-to-run")).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "first"]);
    git(dir, &["repack", "-adq"]);
    fs::write(dir.join("README.md"), "second commit\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "second"]);
    age_worktree(dir);
}

/// Sets every worktree file's mtime an hour back and refreshes the index.
pub(crate) fn age_worktree(dir: &Path) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    for f in files_of(dir) {
        if f.starts_with(".git") {
            continue;
        }
        let p = dir.join(&f);
        if p.symlink_metadata().unwrap().is_file() {
            fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
    }
    git(dir, &["update-index", "-q", "--refresh"]);
}

/// Relative paths of every file and symlink under `dir`.
pub(crate) fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// What a tree holds: per path, its type, permission bits and content (or link
/// target; for `.git/index`, its entries). Timestamps are left out on purpose.
pub(crate) fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (char, u32, Vec<u8>)> {
    files_of(dir)
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let m = p.symlink_metadata().unwrap();
            let v = if rel == Path::new(".git/index") {
                // stat data differs by design after a restore: compare the entries
                (
                    'i',
                    m.mode() & 0o7777,
                    git(dir, &["ls-files", "--stage"]).into_bytes(),
                )
            } else if m.file_type().is_symlink() {
                (
                    'l',
                    0,
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else {
                ('f', m.mode() & 0o7777, fs::read(&p).unwrap())
            };
            (rel, v)
        })
        .collect()
}

/// Runs `git status --porcelain` and says whether it rewrote the index (it does when
/// the cached stat data did not match the files and it had to re-hash them).
pub(crate) fn status_rewrote_index(dir: &Path) -> (String, bool) {
    let before = fs::metadata(dir.join(".git/index")).unwrap();
    let bytes = fs::read(dir.join(".git/index")).unwrap();
    let status = git(dir, &["status", "--porcelain"]);
    let after = fs::metadata(dir.join(".git/index")).unwrap();
    let rewrote = after.ino() != before.ino() || fs::read(dir.join(".git/index")).unwrap() != bytes;
    (status, rewrote)
}

/// A file on the snapshot side and the sandbox side share an inode?
pub(crate) fn same_inode(a: &Path, b: &Path) -> bool {
    let (a, b) = (a.symlink_metadata().unwrap(), b.symlink_metadata().unwrap());
    a.ino() == b.ino() && a.dev() == b.dev()
}

/// Asserts two trees hold the same files, naming the paths that differ.
pub(crate) fn assert_same_tree(
    left: &BTreeMap<PathBuf, (char, u32, Vec<u8>)>,
    right: &BTreeMap<PathBuf, (char, u32, Vec<u8>)>,
    what: &str,
) {
    let mut diffs = Vec::new();
    for (p, v) in left {
        match right.get(p) {
            None => diffs.push(format!("only left: {}", p.display())),
            Some(w) if w != v => diffs.push(format!(
                "differs: {} ({}{:o} {}B vs {}{:o} {}B)",
                p.display(),
                v.0,
                v.1,
                v.2.len(),
                w.0,
                w.1,
                w.2.len()
            )),
            Some(_) => {}
        }
    }
    for p in right.keys().filter(|p| !left.contains_key(*p)) {
        diffs.push(format!("only right: {}", p.display()));
    }
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

/// A snapshot (key `k`, recipe `d`) of a clone of `source`, made in a build sandbox
/// that is removed afterwards; with the HEAD the clone checked out.
pub(crate) async fn cloned_snapshot(
    p: &LocalProvider,
    source: &sandbox_core::Source,
) -> (sandbox_core::SnapshotMeta, sandbox_core::HeadInfo) {
    use sandbox_core::git::{self, GitOptions};
    use sandbox_core::{ConnectOptions, SandboxName, SandboxProvider, SnapshotRequest};
    let build = SandboxName::new("build").unwrap();
    let (b, _) = p
        .connect(&ConnectOptions::new().name(build.clone()))
        .await
        .unwrap();
    let (ws, src) = (b.workspace().to_path_buf(), source.clone());
    let head = tokio::task::spawn_blocking(move || git::clone(&src, &ws, &GitOptions::default()))
        .await
        .unwrap()
        .unwrap()
        .head;
    let meta = b
        .snapshot(&SnapshotRequest::new("k", "d").at(&head.branch, &head.commit))
        .await
        .unwrap();
    p.remove(&build).await.unwrap();
    (meta, head)
}
