//! The changed-path sync: a proven-clean worktree brought to a new tree by writing
//! exactly the paths a tree-to-tree diff names, on several threads, and updating only
//! those index entries; the cost follows the change, not the tree.
//!
//! libgit2's checkout, even limited to a path list, walks the index and the worktree
//! and plans every path; this writes the diff's blobs directly (what
//! `git checkout` ends up doing for those paths when nothing else differs) and is
//! taken only when nothing can make the result differ from libgit2's: the worktree
//! is proven clean (see `checkout::plan_sync`), no `.gitignore`/`.gitattributes`
//! changes (except in a far diff, see [`is_far`]: then the new tree's attribute files
//! are read from their blobs and the caller cleans by the new ignore rules), no
//! checkout filter or line-ending conversion applies to a written path,
//! and symlinks are real symlinks. Any failure while writing hands over to the full
//! checkout, which repairs whatever was half done (a forced checkout compares every
//! path with the target).
//!
//! Not here: deciding that the worktree is clean (`checkout::plan_sync`).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use git2::{Delta, FileMode, Oid, Repository};

/// One side of a changed path: the blob and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Side {
    id: Oid,
    kind: Kind,
}

/// What a blob entry is in the worktree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Executable,
    Symlink,
}

impl Kind {
    fn of(mode: FileMode) -> Option<Kind> {
        match mode {
            FileMode::Blob | FileMode::BlobGroupWritable => Some(Kind::File),
            FileMode::BlobExecutable => Some(Kind::Executable),
            FileMode::Link => Some(Kind::Symlink),
            _ => None,
        }
    }

    fn index_mode(self) -> u32 {
        match self {
            Kind::File => 0o100_644,
            Kind::Executable => 0o100_755,
            Kind::Symlink => 0o120_000,
        }
    }

    /// File and executable are both regular files: one is rewritten in place of the other.
    fn same_inode_type(self, other: Kind) -> bool {
        (self == Kind::Symlink) == (other == Kind::Symlink)
    }
}

/// A path the tree diff names, with what it was and what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) path: Vec<u8>,
    old: Option<Side>,
    new: Option<Side>,
}

/// A diff is far from the old tree when it writes more than this share (1/N) of the
/// new tree's files: an orphan branch, a rewritten tree. On an overlay restore
/// (3,000 old files, 3,000 new ones; `measure_far` in the engine's tests) the cost is
/// one whiteout per old file (100-370 ms in all) and one creation per new file
/// (1.2-2.9 s on the loaded test machine) whichever route runs, so what the far route
/// changes is that a changed `.gitignore` or `.gitattributes` no longer sends the whole
/// tree to libgit2's single-threaded checkout (paired against a depth-1 clone of the
/// branch: 2.39 before, 0.81-1.07 after, on that machine).
const FAR_SHARE: usize = 2;

/// True when `changes` write more than half of the new tree's files (see
/// [`FAR_SHARE`]); `old_entries`: the index's entries (the old tree's files).
pub(crate) fn is_far(changes: &[Change], old_entries: usize) -> bool {
    let added = changes.iter().filter(|c| c.old.is_none()).count();
    let deleted = changes.iter().filter(|c| c.new.is_none()).count();
    let written = changes.len() - deleted;
    let new_files = (old_entries + added).saturating_sub(deleted);
    written > 0 && written * FAR_SHARE > new_files
}

/// The changes of a tree-to-tree diff; `None` when a delta is of a kind the writer
/// does not handle (submodules, trees, renames), which sends the sync to libgit2.
pub(crate) fn changes(diff: &git2::Diff<'_>) -> Option<Vec<Change>> {
    let side = |f: git2::DiffFile<'_>| {
        Some(Side {
            id: f.id(),
            kind: Kind::of(f.mode())?,
        })
    };
    let mut out = Vec::with_capacity(diff.deltas().len());
    for delta in diff.deltas() {
        let (old, new) = match delta.status() {
            Delta::Added => (None, Some(side(delta.new_file())?)),
            Delta::Deleted => (Some(side(delta.old_file())?), None),
            Delta::Modified | Delta::Typechange => {
                (Some(side(delta.old_file())?), Some(side(delta.new_file())?))
            }
            _ => return None,
        };
        let path = delta
            .new_file()
            .path_bytes()
            .or(delta.old_file().path_bytes())?;
        out.push(Change {
            path: path.to_vec(),
            old,
            new,
        });
    }
    Some(out)
}

/// The attributes and settings that make a checkout transform a blob on its way to
/// the worktree; any of them set for a written path sends the sync to libgit2.
const FILTER_ATTRIBUTES: [&str; 6] = [
    "filter",
    "text",
    "eol",
    "crlf",
    "ident",
    "working-tree-encoding",
];

/// What the `.gitattributes` files of a tree say, as far as the writer cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TreeAttributes {
    /// The tree holds at least one `.gitattributes` file.
    pub(crate) present: bool,
    /// One of them may make a checkout transform a blob: it sets (not unsets) one of
    /// the [`FILTER_ATTRIBUTES`] for some pattern, or defines a macro. Read from the
    /// tree's own blobs, so it holds before they are in the worktree.
    pub(crate) converting: bool,
}

/// True when a `.gitattributes` text may set a checkout transformation for some
/// path (see [`TreeAttributes::converting`]); unsetting (`-text`, `binary`) or
/// unspecifying (`!eol`) one does not.
pub(crate) fn sets_a_checkout_attribute(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return false;
        }
        if line.starts_with("[attr]") {
            return true;
        }
        line.split_whitespace().skip(1).any(|attr| {
            if attr.starts_with('-') || attr.starts_with('!') {
                return false;
            }
            let name = attr.split('=').next().unwrap_or(attr);
            FILTER_ATTRIBUTES.contains(&name)
        })
    })
}

/// Why the far-branch write (every path of a diff that replaces most of the tree,
/// `.gitignore`/`.gitattributes` changes included) cannot be used, or `None` when it
/// can. The attributes that decide a checkout are the new tree's (`tree`), read from
/// its blobs, and those from outside the tree (checked per path, as [`refusal`] does).
pub(crate) fn far_refusal(
    repo: &Repository,
    changes: &[Change],
    tree: TreeAttributes,
) -> Option<&'static str> {
    if tree.converting {
        return Some("a .gitattributes of the new tree sets a checkout attribute");
    }
    refusal(repo, changes, false)
}

/// Why the writer cannot be used for these changes (checked before anything is
/// written), or `None` when it can.
pub(crate) fn refusal(
    repo: &Repository,
    changes: &[Change],
    has_attributes: bool,
) -> Option<&'static str> {
    let Ok(cfg) = repo.config() else {
        return Some("the configuration is unreadable");
    };
    let set = |key: &str| cfg.get_entry(key).is_ok();
    if cfg.get_bool("core.autocrlf").unwrap_or(false)
        || cfg.get_string("core.autocrlf").is_ok_and(|v| v == "input")
        || set("core.eol")
    {
        return Some("line-ending conversion is configured");
    }
    if !cfg.get_bool("core.symlinks").unwrap_or(true) {
        return Some("core.symlinks is off");
    }
    let attributes = has_attributes
        || set("core.attributesfile")
        || repo.path().join("info").join("attributes").exists()
        || std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .is_some_and(|d| d.join("git").join("attributes").exists());
    if attributes {
        for c in changes.iter().filter(|c| c.new.is_some()) {
            let path = Path::new(OsStr::from_bytes(&c.path));
            for attr in FILTER_ATTRIBUTES {
                match repo.get_attr_bytes(path, attr, git2::AttrCheckFlags::FILE_THEN_INDEX) {
                    Ok(None) => {}
                    _ => return Some("a checkout attribute applies to a changed path"),
                }
            }
        }
    }
    None
}

/// Below this many writes one thread does them all (opening a repository per
/// thread costs more than it saves).
const PARALLEL_FROM: usize = 48;
/// Threads for many writes: the cost is file creation latency, not CPU.
const MAX_THREADS: usize = 8;

/// What went wrong while writing; the caller falls back to the full checkout.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) String);

/// Applies `changes` to the worktree and index of `repo` (see the module docs).
pub(crate) fn apply(repo: &Repository, changes: &[Change]) -> Result<(), Failed> {
    apply_surveyed(repo, changes, false).map(drop)
}

/// As [`apply`]; with `survey`, also returns the worktree's top-level entries (but
/// `.git`) that are left once the removals are done, before anything is written: in a
/// worktree proven clean, every file the writes do not create is under one of them,
/// so a clean by new ignore rules need look nowhere else.
pub(crate) fn apply_surveyed(
    repo: &Repository,
    changes: &[Change],
    survey: bool,
) -> Result<Vec<PathBuf>, Failed> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| Failed("a bare repository".into()))?
        .to_path_buf();
    let abs = |p: &[u8]| workdir.join(OsStr::from_bytes(p));
    let stop = AtomicBool::new(false);
    let t = std::time::Instant::now();
    // 1. Removals: deleted paths and paths whose inode type changes (file <->
    //    symlink), so the writes below never follow or keep an old symlink.
    let removals: Vec<&Change> = changes
        .iter()
        .filter(|c| match (c.old, c.new) {
            (Some(_), None) => true,
            (Some(o), Some(n)) => !o.kind.same_inode_type(n.kind),
            _ => false,
        })
        .collect();
    run_parallel(repo, &removals, &stop, |_, c| {
        match std::fs::remove_file(abs(&c.path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Failed(format!("removing a changed path: {e}"))),
        }
    })?;
    // 2. Directories the deletions left empty go, deepest first (as git does); one
    //    still holding anything (ignored files) stays.
    let mut dirs = std::collections::BTreeSet::new();
    for c in changes.iter().filter(|c| c.new.is_none()) {
        let mut p = c.path.as_slice();
        while let Some(i) = p.iter().rposition(|b| *b == b'/') {
            p = &p[..i];
            if !dirs.insert(p) {
                break;
            }
        }
    }
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(abs(d));
    }
    let mut leftovers = Vec::new();
    if survey {
        let entries = std::fs::read_dir(&workdir)
            .map_err(|e| Failed(format!("reading the worktree: {e}")))?;
        for entry in entries {
            let name = entry
                .map_err(|e| Failed(format!("reading the worktree: {e}")))?
                .file_name();
            if name != ".git" {
                leftovers.push(PathBuf::from(name));
            }
        }
    }
    let removed_ms = t.elapsed().as_millis() as u64;
    // 3. Writes, each returning its index entry.
    let writes: Vec<&Change> = changes.iter().filter(|c| c.new.is_some()).collect();
    let mut entries = run_parallel(repo, &writes, &stop, |r, c| write_one(r, &workdir, c))?;
    // In path order, each entry lands at the end of libgit2's sorted entry list (the
    // threads return theirs interleaved: inserting those costs a move of half the list
    // each, quadratic in a whole tree's entries).
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let written_ms = t.elapsed().as_millis() as u64 - removed_ms;
    // 4. The index: only the changed entries move.
    let err = |e: git2::Error| Failed(format!("updating the index: {}", e.message()));
    let mut index = repo.index().map_err(err)?;
    for c in changes.iter().filter(|c| c.new.is_none()) {
        index
            .remove_path(Path::new(OsStr::from_bytes(&c.path)))
            .map_err(err)?;
    }
    for e in &entries {
        index.add(e).map_err(err)?;
    }
    index.write().map_err(err)?;
    tracing::debug!(
        removals = removals.len(),
        removed_ms,
        writes = writes.len(),
        written_ms,
        index_ms = (t.elapsed().as_millis() as u64).saturating_sub(removed_ms + written_ms),
        "wrote the changed paths"
    );
    Ok(leftovers)
}

/// Runs `f` on every item, on up to [`MAX_THREADS`] threads (each with its own
/// repository handle) when there are many; stops early on the first failure or when
/// the operation is cancelled or out of time.
fn run_parallel<T: Sync, R: Send>(
    repo: &Repository,
    items: &[T],
    stop: &AtomicBool,
    f: impl Fn(&Repository, &T) -> Result<R, Failed> + Sync,
) -> Result<Vec<R>, Failed> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, MAX_THREADS)
        .min(items.len().div_ceil(PARALLEL_FROM / 2).max(1));
    let check = || -> Result<(), Failed> {
        if stop.load(Ordering::Relaxed) {
            return Err(Failed("stopped".into()));
        }
        if let Some(e) = super::watch::stopped_error() {
            stop.store(true, Ordering::Relaxed);
            return Err(Failed(e.to_string()));
        }
        Ok(())
    };
    if items.len() < PARALLEL_FROM || threads < 2 {
        return items
            .iter()
            .map(|t| {
                check()?;
                f(repo, t)
            })
            .collect();
    }
    let git_dir = repo.path().to_path_buf();
    let chunk = |k: usize| items.iter().skip(k).step_by(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads)
            .map(|k| {
                let (git_dir, f) = (&git_dir, &f);
                s.spawn(move || {
                    let r = Repository::open(git_dir)
                        .map_err(|e| Failed(format!("opening the repository: {}", e.message())))?;
                    chunk(k)
                        .map(|t| {
                            if stop.load(Ordering::Relaxed) {
                                return Err(Failed("stopped".into()));
                            }
                            f(&r, t).inspect_err(|_| stop.store(true, Ordering::Relaxed))
                        })
                        .collect::<Result<Vec<R>, Failed>>()
                })
            })
            .collect();
        // This thread takes a share too, and watches for a cancel meanwhile.
        let mine: Result<Vec<R>, Failed> = chunk(0)
            .map(|t| {
                check()?;
                f(repo, t).inspect_err(|_| stop.store(true, Ordering::Relaxed))
            })
            .collect();
        let mut out = mine?;
        for h in handles {
            let part = h
                .join()
                .map_err(|_| Failed("a writer thread panicked".into()))??;
            out.extend(part);
        }
        Ok(out)
    })
}

/// Writes one changed path's new blob and returns its index entry (with the stat
/// data of the file written, so a later status does not rehash it).
fn write_one(
    repo: &Repository,
    workdir: &Path,
    change: &Change,
) -> Result<git2::IndexEntry, Failed> {
    let Some(new) = change.new else {
        return Err(Failed("nothing to write".into()));
    };
    let io = |what: &str, e: std::io::Error| Failed(format!("{what}: {e}"));
    let blob = repo
        .find_blob(new.id)
        .map_err(|e| Failed(format!("reading a blob: {}", e.message())))?;
    let path = workdir.join(OsStr::from_bytes(&change.path));
    let meta = match new.kind {
        Kind::Symlink => {
            let target = OsStr::from_bytes(blob.content());
            with_parent(&path, || std::os::unix::fs::symlink(target, &path))
                .map_err(|e| io("creating a symlink", e))?;
            std::fs::symlink_metadata(&path).map_err(|e| io("reading a symlink", e))?
        }
        Kind::File | Kind::Executable => {
            let mode = if new.kind == Kind::Executable {
                0o777
            } else {
                0o666
            };
            let open = || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
            };
            let mut file = match with_parent(&path, open) {
                // An ignored symlink where the new tree has a file: replace it.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                    std::fs::remove_file(&path).map_err(|e| io("replacing a symlink", e))?;
                    open()
                }
                other => other,
            }
            .map_err(|e| io("writing a file", e))?;
            file.write_all(blob.content())
                .map_err(|e| io("writing a file", e))?;
            let mut meta = file.metadata().map_err(|e| io("writing a file", e))?;
            // A file rewritten in place keeps its old mode: set the executable bits
            // where it is readable (as git does) or clear them.
            let perm = meta.permissions().mode();
            let exec = perm & 0o111 != 0;
            if exec != (new.kind == Kind::Executable) {
                let want = if exec {
                    perm & !0o111
                } else {
                    perm | ((perm & 0o444) >> 2)
                };
                file.set_permissions(std::fs::Permissions::from_mode(want))
                    .map_err(|e| io("setting a file's mode", e))?;
                meta = file.metadata().map_err(|e| io("writing a file", e))?;
            }
            meta
        }
    };
    // The index keeps 32-bit stat fields (truncated, as git does).
    Ok(git2::IndexEntry {
        ctime: git2::IndexTime::new(meta.ctime() as i32, meta.ctime_nsec() as u32),
        mtime: git2::IndexTime::new(meta.mtime() as i32, meta.mtime_nsec() as u32),
        dev: meta.dev() as u32,
        ino: meta.ino() as u32,
        mode: new.kind.index_mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        file_size: meta.size() as u32,
        id: new.id,
        flags: 0,
        flags_extended: 0,
        path: change.path.clone(),
    })
}

/// Runs `op`, creating `path`'s parent directories and retrying once when they are
/// missing.
fn with_parent<T>(path: &Path, op: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    match op() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            op()
        }
        other => other,
    }
}
