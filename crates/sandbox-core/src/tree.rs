//! Copying a workspace tree: plain copies, copy-on-write clones, hardlinked git objects;
//! and writing one small file so that readers never see it half-written
//! ([`write_atomic`]).
//!
//! The one tree-copy routine of the workspace: the local provider's snapshot and restore
//! paths and the cold start's seed ([`crate::git::seed`]) all copy through [`copy_tree`].
//!
//! One walk lists the tree, directories are made in order, then files are copied by a
//! few threads pulling from a shared counter. Modes and modification times are kept
//! (git's index compares them), and the new stat data of every worktree file is
//! collected so the restored repository's index can be refreshed without re-reading a
//! byte (the local provider's `gitindex` module does). This is not a general-purpose `cp -a`: owners,
//! extended attributes and special files (fifos, sockets, devices) are not copied.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How a file's bytes reach the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMethod {
    /// `copy_file_range` (the kernel copies; falls back to read/write).
    Copy,
    /// `FICLONE`: the copy shares blocks with the original until either is written.
    Reflink,
}

/// What [`copy_tree`] does.
#[derive(Debug, Clone, Copy)]
pub struct CopyPlan {
    /// How file contents are copied.
    pub data: DataMethod,
    /// Hardlink immutable git objects (loose objects, pack files) instead of copying.
    pub hardlink_git_objects: bool,
    /// Make git object files read-only in the copy (snapshots do, so that hardlinked
    /// restores share only read-only files).
    pub readonly_git_objects: bool,
    /// Collect the new stat data of worktree files (outside `.git`).
    pub collect_stats: bool,
    /// Copy only the repository's metadata: `.git` without its index, reflog and LFS
    /// cache, and nothing of the worktree (what a seed keeps).
    pub git_metadata_only: bool,
    /// Copy threads.
    pub threads: usize,
}

impl CopyPlan {
    /// A metadata-only copy (what a seed keeps): `.git` without index, reflogs or LFS
    /// cache, objects hard-linked (copied across filesystems), two threads.
    pub const GIT_METADATA: CopyPlan = CopyPlan {
        data: DataMethod::Copy,
        hardlink_git_objects: true,
        readonly_git_objects: false,
        collect_stats: false,
        git_metadata_only: true,
        threads: 2,
    };
}

/// Stat data of one copied worktree file, as git's index stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatData {
    /// Status change time (seconds, nanoseconds).
    pub ctime: (i64, i64),
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// File type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
}

impl StatData {
    /// The stat data of `m`.
    pub fn from_meta(m: &fs::Metadata) -> Self {
        Self {
            ctime: (m.ctime(), m.ctime_nsec()),
            mtime: (m.mtime(), m.mtime_nsec()),
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
        }
    }
}

/// Worktree path (relative, `/`-separated bytes, as in git's index) to its stat data.
pub type StatMap = HashMap<Vec<u8>, StatData>;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files copied (bytes moved or cloned).
    pub files: u64,
    /// Directories made.
    pub dirs: u64,
    /// Symbolic links made.
    pub symlinks: u64,
    /// Files hard-linked instead of copied.
    pub hardlinks: u64,
    /// Bytes copied.
    pub bytes: u64,
}

#[derive(Debug)]
enum Kind {
    Dir,
    File,
    Symlink,
}

#[derive(Debug)]
struct Entry {
    rel: PathBuf,
    kind: Kind,
}

/// True for files under `.git/objects` that git never writes in place: loose objects
/// (`xx/<hash>`) and pack data (`pack/*.pack`, `*.idx`, `*.rev`, `*.bitmap`). Git and
/// libgit2 write these to a temporary name and rename them into place; an existing
/// object is at most "freshened" (its mtime touched), never rewritten.
pub fn is_immutable_git_object(rel: &Path) -> bool {
    let bytes = rel.as_os_str().as_bytes();
    let Some(rest) = bytes.strip_prefix(b".git/objects/") else {
        return false;
    };
    if let Some(name) = rest.strip_prefix(b"pack/") {
        return !name.contains(&b'/')
            && name.starts_with(b"pack-")
            && [&b".pack"[..], b".idx", b".rev", b".bitmap"]
                .iter()
                .any(|ext| name.ends_with(ext));
    }
    // xx/<38 or 62 hex digits>
    rest.len() > 3
        && rest[2] == b'/'
        && matches!(rest.len() - 3, 38 | 62)
        && rest
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_hexdigit())
}

fn is_worktree(rel: &Path) -> bool {
    let b = rel.as_os_str().as_bytes();
    !(b == b".git" || b.starts_with(b".git/"))
}

/// True for what a metadata-only copy leaves out: the worktree, and the parts of `.git`
/// that a checkout rewrites or that are history of the copy's source (index, reflogs,
/// LFS cache).
fn outside_git_metadata(rel: &Path) -> bool {
    let b = rel.as_os_str().as_bytes();
    is_worktree(rel)
        || [&b".git/index"[..], b".git/logs", b".git/lfs"]
            .iter()
            .any(|skip| b == *skip || (b.starts_with(skip) && b.get(skip.len()) == Some(&b'/')))
}

/// Lists `src` (depth first, parents before children), leaving out what `skip` names.
fn walk(src: &Path, skip: impl Fn(&Path) -> bool) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let abs = if dir.as_os_str().is_empty() {
            src.to_path_buf()
        } else {
            src.join(&dir)
        };
        let mut children: Vec<(OsString, fs::FileType)> = Vec::new();
        for ent in fs::read_dir(&abs)? {
            let ent = ent?;
            children.push((ent.file_name(), ent.file_type()?));
        }
        for (name, ft) in children {
            let rel = dir.join(&name);
            if skip(&rel) {
                continue;
            }
            if ft.is_dir() {
                out.push(Entry {
                    rel: rel.clone(),
                    kind: Kind::Dir,
                });
                stack.push(rel);
            } else if ft.is_file() {
                out.push(Entry {
                    rel,
                    kind: Kind::File,
                });
            } else if ft.is_symlink() {
                out.push(Entry {
                    rel,
                    kind: Kind::Symlink,
                });
            } else {
                tracing::debug!(path = %src.join(&rel).display(), "skipping a special file");
            }
        }
    }
    Ok(out)
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Copies the tree at `src` to `dst`, which must not exist (its parent must) or, for a
/// metadata-only copy, may be an empty directory.
///
/// # Errors
/// The first file error, with the path it concerns. A failed copy leaves a partial
/// `dst` for the caller to remove.
pub fn copy_tree(src: &Path, dst: &Path, plan: &CopyPlan) -> io::Result<(CopyStats, StatMap)> {
    let root_meta = fs::metadata(src).map_err(|e| ctx(e, "reading", src))?;
    let empty_dir = |d: &Path| fs::read_dir(d).is_ok_and(|mut r| r.next().is_none());
    match fs::DirBuilder::new()
        .mode(root_meta.mode() & 0o7777)
        .create(dst)
    {
        Ok(()) => {}
        Err(e)
            if e.kind() == io::ErrorKind::AlreadyExists
                && plan.git_metadata_only
                && empty_dir(dst) => {}
        Err(e) => return Err(ctx(e, "creating", dst)),
    }
    let entries = if plan.git_metadata_only {
        walk(src, outside_git_metadata)
    } else {
        walk(src, |_| false)
    }
    .map_err(|e| ctx(e, "listing", src))?;
    let mut stats = CopyStats::default();
    let mut files: Vec<&Entry> = Vec::with_capacity(entries.len());
    for e in &entries {
        match e.kind {
            Kind::Dir => {
                let to = dst.join(&e.rel);
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&to)
                    .map_err(|err| ctx(err, "creating", &to))?;
                stats.dirs += 1;
            }
            Kind::File | Kind::Symlink => files.push(e),
        }
    }
    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let counts = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]; // files, symlinks, hardlinks
    let map = Mutex::new(StatMap::new());
    let threads = plan.threads.clamp(1, 16).min(files.len().max(1));
    let result: io::Result<()> = std::thread::scope(|scope| {
        let worker = || -> io::Result<()> {
            let mut local = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(e) = files.get(i) else { break };
                let from = src.join(&e.rel);
                let to = dst.join(&e.rel);
                let want_stat = plan.collect_stats && is_worktree(&e.rel);
                let stat = match e.kind {
                    Kind::Symlink => {
                        copy_symlink(&from, &to)?;
                        counts[1].fetch_add(1, Ordering::Relaxed);
                        if want_stat {
                            Some(StatData::from_meta(&fs::symlink_metadata(&to)?))
                        } else {
                            None
                        }
                    }
                    _ if plan.hardlink_git_objects && is_immutable_git_object(&e.rel) => {
                        match fs::hard_link(&from, &to) {
                            Ok(()) => {
                                counts[2].fetch_add(1, Ordering::Relaxed);
                            }
                            // Across filesystems a link cannot be made: copy instead.
                            Err(err) if err.kind() == io::ErrorKind::CrossesDevices => {
                                let (n, _) = copy_file(&from, &to, plan.data, true, false)?;
                                bytes.fetch_add(n, Ordering::Relaxed);
                                counts[0].fetch_add(1, Ordering::Relaxed);
                            }
                            Err(err) => return Err(ctx(err, "linking", &to)),
                        }
                        None
                    }
                    _ => {
                        let readonly = plan.readonly_git_objects && is_immutable_git_object(&e.rel);
                        let (n, st) = copy_file(&from, &to, plan.data, readonly, want_stat)?;
                        bytes.fetch_add(n, Ordering::Relaxed);
                        counts[0].fetch_add(1, Ordering::Relaxed);
                        st
                    }
                };
                if let Some(st) = stat {
                    local.push((e.rel.as_os_str().as_bytes().to_vec(), st));
                }
            }
            if !local.is_empty() {
                map.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(local);
            }
            Ok(())
        };
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(worker)).collect();
        let mut result = worker();
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a copy thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    });
    result?;
    stats.files = counts[0].load(Ordering::Relaxed);
    stats.symlinks = counts[1].load(Ordering::Relaxed);
    stats.hardlinks = counts[2].load(Ordering::Relaxed);
    stats.bytes = bytes.load(Ordering::Relaxed);
    let map = map
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok((stats, map))
}

fn copy_symlink(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from).map_err(|e| ctx(e, "reading", from))?;
    let target = fs::read_link(from).map_err(|e| ctx(e, "reading", from))?;
    std::os::unix::fs::symlink(&target, to).map_err(|e| ctx(e, "creating", to))?;
    let ts = |s: i64, ns: i64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts(meta.atime(), meta.atime_nsec()),
        last_modification: ts(meta.mtime(), meta.mtime_nsec()),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        to,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| ctx(e.into(), "setting times of", to))
}

/// Copies one file's bytes, mode and times. Returns the bytes copied and, when asked,
/// the copy's stat data (taken after its times were set).
fn copy_file(
    from: &Path,
    to: &Path,
    data: DataMethod,
    readonly: bool,
    want_stat: bool,
) -> io::Result<(u64, Option<StatData>)> {
    let src = File::open(from).map_err(|e| ctx(e, "opening", from))?;
    let meta = src.metadata().map_err(|e| ctx(e, "reading", from))?;
    let mut mode = meta.mode() & 0o7777;
    if readonly {
        mode &= !0o222;
    }
    let dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(to)
        .map_err(|e| ctx(e, "creating", to))?;
    let len = meta.len();
    if len > 0 {
        match data {
            DataMethod::Reflink => rustix::fs::ioctl_ficlone(&dst, &src)
                .map_err(|e| ctx(e.into(), "cloning (FICLONE) into", to))?,
            DataMethod::Copy => {
                copy_range(&src, &dst, len).map_err(|e| ctx(e, "copying into", to))?
            }
        }
    }
    let times = FileTimes::new()
        .set_modified(meta.modified()?)
        .set_accessed(meta.accessed()?);
    dst.set_times(times)
        .map_err(|e| ctx(e, "setting times of", to))?;
    let stat = if want_stat {
        Some(StatData::from_meta(&dst.metadata()?))
    } else {
        None
    };
    Ok((len, stat))
}

fn copy_range(src: &File, dst: &File, len: u64) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(src, None, dst, None, want) {
            Ok(0) => break, // the file shrank while we copied
            Ok(n) => done += n as u64,
            Err(e)
                if done == 0
                    && matches!(
                        e,
                        rustix::io::Errno::XDEV
                            | rustix::io::Errno::NOSYS
                            | rustix::io::Errno::INVAL
                            | rustix::io::Errno::OPNOTSUPP
                    ) =>
            {
                let mut r = src;
                let mut w = dst;
                io::copy(&mut r, &mut w)?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a
/// part: into a temporary file beside it (created with permission bits `mode`, e.g.
/// `0o600` for a file holding secrets, before the umask), then renamed over `path`.
/// The temporary file is removed when anything fails. Not fsynced: after a power loss
/// the file may be empty, so readers must treat an unreadable file as absent (see
/// [`write_atomic_durable`] for the few files that must survive one).
///
/// # Errors
/// The I/O error of the create, write or rename, without the path (the caller says
/// what it was writing). The parent directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_aside(path, bytes, mode, false)
}

/// [`write_atomic`], with the data flushed to the disk before the rename.
///
/// # Errors
/// As [`write_atomic`], and the flush's.
pub fn write_atomic_durable(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_aside(path, bytes, mode, true)
}

fn write_aside(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    use std::io::Write as _;
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
    };
    let result = (|| {
        let mut f = match create() {
            // left by a process killed mid-write whose pid this process now has (no
            // live writer can hold this name: it is ours, and the counter never
            // repeats): stale, so it goes
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                create()?
            }
            other => other?,
        };
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a directory tree; a missing one is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ctx(e, "removing", path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_files_with_the_mode_asked_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("grants.json");
        write_atomic(&path, b"old", 0o600).unwrap();
        write_atomic_durable(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let err = write_atomic(&tmp.path().join("no/such/dir/f"), b"x", 0o644).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["grants.json"]);
    }

    #[test]
    fn write_atomic_replaces_the_temporary_of_a_killed_writer_with_a_reused_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("record.json");
        // a killed process with this pid left temporaries for the next counter values
        for n in 0..64 {
            fs::write(
                tmp.path()
                    .join(format!(".record.json.{}.{n}.tmp", std::process::id())),
                b"stale",
            )
            .unwrap();
        }
        write_atomic(&path, b"fresh", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"fresh");
    }

    #[test]
    fn recognises_immutable_objects() {
        let yes = [
            ".git/objects/ab/01234567890123456789012345678901234567".to_owned(),
            ".git/objects/pack/pack-0123abcd.pack".into(),
            ".git/objects/pack/pack-0123abcd.idx".into(),
            ".git/objects/pack/pack-0123abcd.rev".into(),
        ];
        for p in yes {
            assert!(is_immutable_git_object(Path::new(&p)), "{p}");
        }
        assert!(is_immutable_git_object(Path::new(
            ".git/objects/ab/01234567890123456789012345678901234567"
        )));
        for p in [
            ".git/index",
            ".git/config",
            ".git/objects/info/packs",
            ".git/objects/info/commit-graph",
            ".git/objects/pack/pack-0123.keep",
            ".git/objects/ab/xyz",
            "src/.git/objects/ab/01234567890123456789012345678901234567",
            ".git/refs/heads/main",
        ] {
            assert!(!is_immutable_git_object(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn copies_modes_times_symlinks_and_collects_worktree_stats() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::create_dir_all(src.join(".git/objects/ab")).unwrap();
        fs::write(src.join("a/b/f.txt"), b"hello").unwrap();
        fs::write(src.join("empty"), b"").unwrap();
        fs::write(src.join("run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(
            src.join("run.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let obj = ".git/objects/ab/01234567890123456789012345678901234567";
        fs::write(src.join(obj), b"obj").unwrap();
        std::os::unix::fs::symlink("a/b/f.txt", src.join("link")).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        File::options()
            .write(true)
            .open(src.join("a/b/f.txt"))
            .unwrap()
            .set_modified(old)
            .unwrap();

        for (i, plan) in [
            CopyPlan {
                data: DataMethod::Copy,
                hardlink_git_objects: false,
                readonly_git_objects: true,
                collect_stats: true,
                git_metadata_only: false,
                threads: 1,
            },
            CopyPlan {
                data: DataMethod::Copy,
                hardlink_git_objects: true,
                readonly_git_objects: false,
                collect_stats: true,
                git_metadata_only: false,
                threads: 3,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let dst = tmp.path().join(format!("dst{i}"));
            let (stats, map) = copy_tree(&src, &dst, &plan).unwrap();
            assert_eq!(fs::read(dst.join("a/b/f.txt")).unwrap(), b"hello");
            assert_eq!(fs::read(dst.join("empty")).unwrap(), b"");
            assert_eq!(
                fs::read_link(dst.join("link")).unwrap(),
                Path::new("a/b/f.txt")
            );
            assert_eq!(
                fs::metadata(dst.join("run.sh")).unwrap().mode() & 0o777,
                0o755
            );
            assert_eq!(
                fs::metadata(dst.join("a/b/f.txt"))
                    .unwrap()
                    .modified()
                    .unwrap(),
                old
            );
            assert_eq!(stats.symlinks, 1);
            let st = map[&b"a/b/f.txt"[..]];
            assert_eq!(st.ino, fs::metadata(dst.join("a/b/f.txt")).unwrap().ino());
            assert!(map.contains_key(&b"link"[..]));
            assert!(!map.keys().any(|k| k.starts_with(b".git")));
            let same_inode = fs::metadata(dst.join(obj)).unwrap().ino()
                == fs::metadata(src.join(obj)).unwrap().ino();
            if plan.hardlink_git_objects {
                assert!(same_inode);
                assert_eq!(stats.hardlinks, 1);
            } else {
                assert!(!same_inode);
                assert_eq!(
                    fs::metadata(dst.join(obj)).unwrap().mode() & 0o222,
                    0,
                    "objects read-only"
                );
            }
        }
    }

    #[test]
    fn metadata_only_copies_git_without_index_logs_or_worktree_into_an_empty_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        for d in [
            ".git/objects/ab",
            ".git/logs/refs",
            ".git/refs/heads",
            "src",
        ] {
            fs::create_dir_all(src.join(d)).unwrap();
        }
        let obj = ".git/objects/ab/01234567890123456789012345678901234567";
        for f in [
            obj,
            ".git/index",
            ".git/HEAD",
            ".git/logs/HEAD",
            ".git/refs/heads/main",
            "src/lib.rs",
            ".gitignore",
        ] {
            fs::write(src.join(f), f).unwrap();
        }
        let dst = tmp.path().join("dst");
        fs::create_dir(&dst).unwrap();
        let plan = CopyPlan::GIT_METADATA;
        let (stats, _) = copy_tree(&src, &dst, &plan).unwrap();
        assert_eq!(fs::read(dst.join(".git/HEAD")).unwrap(), b".git/HEAD");
        assert!(dst.join(".git/refs/heads/main").is_file());
        for gone in [".git/index", ".git/logs", "src", ".gitignore"] {
            assert!(!dst.join(gone).exists(), "{gone} copied");
        }
        assert_eq!(stats.hardlinks, 1);
        // A non-empty destination is refused, as for a full copy.
        assert!(copy_tree(&src, &dst, &plan).is_err());
    }
}
