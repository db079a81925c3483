//! The on-disk record of a local sandbox (`sandboxes/<name>/sandbox.json`) and the
//! small file helpers the provider and store share: atomic JSON writes and `flock`s.
//!
//! The record is also the snapshot **lease**: a sandbox whose record names a base
//! snapshot keeps that snapshot from GC and deletion for as long as the record exists.
//! Environment variables are deliberately not recorded (they may hold tokens).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sandbox_core::{SandboxName, SnapshotId};
use time::OffsetDateTime;

use super::config::RestoreMethod;

/// File name of the record inside a sandbox directory.
pub(crate) const RECORD_FILE: &str = "sandbox.json";

/// Whether a sandbox finished being created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RecordState {
    /// Being created (restore in progress). Found by a later `connect` under the name
    /// lock, it means the creating process died: the sandbox is replaced. Listed as
    /// `interrupted` when the name's lock is free (never stored as such).
    Creating,
    /// Usable.
    Ready,
}

impl From<RecordState> for sandbox_core::SandboxState {
    fn from(s: RecordState) -> Self {
        match s {
            RecordState::Creating => Self::Creating,
            RecordState::Ready => Self::Ready,
        }
    }
}

/// What is stored about a sandbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SandboxRecord {
    pub(crate) id: String,
    pub(crate) name: SandboxName,
    pub(crate) state: RecordState,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
    /// The snapshot it was restored from (the lease).
    pub(crate) base_snapshot: Option<SnapshotId>,
    /// That snapshot's name (key).
    pub(crate) snapshot_name: Option<String>,
    /// The concrete restore method used.
    pub(crate) restore_method: Option<RestoreMethod>,
    /// The overlay's lower directory (the snapshot's workspace), for re-mounting.
    pub(crate) lower: Option<PathBuf>,
    /// The workspace directory.
    pub(crate) workspace: PathBuf,
    /// True when the workspace is the user's own directory (never deleted).
    pub(crate) user_workdir: bool,
    /// When `headstart prune` may remove it.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub(crate) expires_at: Option<OffsetDateTime>,
    /// Labels given at creation.
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

/// Writes `value` as JSON to `path` atomically (temp file, rename). Not fsynced: after
/// a power loss a record may be empty, which readers treat as a crashed creation (the
/// sandbox is replaced) or a corrupt manifest (skipped), never as valid data.
pub(crate) fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    sandbox_core::tree::write_atomic(path, &json, 0o666)
}

/// Reads the record in `dir`; `Ok(None)` when there is none.
pub(crate) fn read_record(dir: &Path) -> io::Result<Option<SandboxRecord>> {
    match fs::read(dir.join(RECORD_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", dir.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The record in `dir`, `None` when there is none or it cannot be read (logged as a
/// sandbox the caller is `doing` something with: `removing`, `ignoring`).
pub(crate) fn read_record_or_warn(
    dir: &Path,
    name: &SandboxName,
    doing: &str,
) -> Option<SandboxRecord> {
    read_record(dir).unwrap_or_else(|e| {
        tracing::warn!(sandbox = %name, error = %e, "{doing} a sandbox with an unreadable record");
        None
    })
}

/// Every readable record under `sandboxes_dir` (unreadable ones are logged and skipped).
pub(crate) fn all_records(
    sandboxes_dir: &Path,
) -> io::Result<Vec<(PathBuf, Option<SandboxRecord>)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(sandboxes_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in entries {
        let ent = ent?;
        if !ent.file_type()?.is_dir() || ent.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let dir = ent.path();
        match read_record(&dir) {
            Ok(rec) => out.push((dir, rec)),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable sandbox record");
                out.push((dir, None));
            }
        }
    }
    Ok(out)
}

/// An exclusive or shared `flock` held until dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    file: fs::File,
}

/// How long [`FileLock::acquire_named`] sleeps between attempts, at most.
const POLL_MAX: std::time::Duration = std::time::Duration::from_millis(50);

impl FileLock {
    /// Blocks until the lock on `path` (created if missing) is held.
    pub(crate) fn acquire(path: &Path, exclusive: bool) -> io::Result<Self> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let op = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op)?;
        Ok(Self { file })
    }

    /// Takes the exclusive lock on an existing `path` if nobody holds it.
    /// `Ok(None)` when another process (or handle) holds it.
    pub(crate) fn try_exclusive(path: &Path) -> io::Result<Option<Self>> {
        let file = fs::OpenOptions::new().read(true).write(true).open(path)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self { file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Locks an already open file exclusively (non-blocking; it is new, so it is free).
    pub(crate) fn hold(file: fs::File) -> io::Result<Self> {
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
        Ok(Self { file })
    }

    /// The exclusive lock of a lock file that may be **unlinked** by whoever holds it
    /// (a per-name lock whose name no longer exists): waits while another holds it,
    /// asking `stop` between attempts (`Ok(None)` once it says stop).
    ///
    /// Unlinking a held lock file races with a waiter that opened the old file: it
    /// would lock an inode nobody else can see, while a newcomer creates and locks a
    /// new file at the path. So after locking, the path must still name the locked
    /// inode; when it does not, the lock is dropped and taken again.
    pub(crate) fn acquire_named(path: &Path, stop: &dyn Fn() -> bool) -> io::Result<Option<Self>> {
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            if let Some(lock) = Self::try_named(path, true)? {
                return Ok(Some(lock));
            }
            if stop() {
                return Ok(None);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// [`acquire_named`](Self::acquire_named) without waiting: `Ok(None)` when another
    /// holds it (or, with `create` false, when the file does not exist).
    pub(crate) fn try_named(path: &Path, create: bool) -> io::Result<Option<Self>> {
        loop {
            let file = match fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(path)
            {
                Ok(f) => f,
                Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            let lock = Self { file };
            if lock.is_at(path)? {
                return Ok(Some(lock));
            }
            if !create {
                return Ok(None);
            }
            // unlinked (or replaced) while we waited: lock what the path names now
        }
    }

    /// True when `path` names the locked file.
    fn is_at(&self, path: &Path) -> io::Result<bool> {
        let held = rustix::fs::fstat(&self.file)?;
        match rustix::fs::stat(path) {
            Ok(now) => Ok(now.st_dev == held.st_dev && now.st_ino == held.st_ino),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Unlinks `path` while this lock is held, when it still names the locked file
    /// (lockers of named locks check that after locking, so nobody else holds it).
    pub(crate) fn unlink_held(&self, path: &Path) -> io::Result<()> {
        if self.is_at(path)? {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
