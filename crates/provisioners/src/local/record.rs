//! The on-disk record of a local sandbox (`sandboxes/<name>/sandbox.json`) and the
//! small file helpers the provider and store share: atomic JSON writes and `flock`s.
//!
//! The record is also the snapshot **lease**: a sandbox whose record names a base
//! snapshot keeps that snapshot from GC and deletion for as long as the record exists.
//! Environment variables are deliberately not recorded (they may hold tokens).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
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
    /// lock, it means the creating process died: the sandbox is replaced.
    Creating,
    /// Usable.
    Ready,
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
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&json)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
    _file: fs::File,
}

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
        Ok(Self { _file: file })
    }

    /// Takes the exclusive lock on an existing `path` if nobody holds it.
    /// `Ok(None)` when another process (or handle) holds it.
    pub(crate) fn try_exclusive(path: &Path) -> io::Result<Option<Self>> {
        let file = fs::OpenOptions::new().read(true).write(true).open(path)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Locks an already open file exclusively (non-blocking; it is new, so it is free).
    pub(crate) fn hold(file: fs::File) -> io::Result<Self> {
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
        Ok(Self { _file: file })
    }
}
