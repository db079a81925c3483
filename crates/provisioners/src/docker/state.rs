//! The Docker provider's own per-name state under its data directory: the **start
//! record** and the **start lock**.
//!
//! ```text
//! <data_dir>/containers/<name>.json   the record: creating | ready, the container id,
//!                                     the id of the start that made it, its pid, and
//!                                     while hibernated the image and definition
//! <data_dir>/containers/<name>.lock   the lock: one start (or removal) per name at a time
//! ```
//!
//! A start takes the lock, writes a `creating` record (atomically: written aside, then
//! renamed), creates, and writes `ready`; with
//! [`ConnectOptions::defer_ready`](sandbox_core::ConnectOptions::defer_ready) the
//! handle keeps holding the lock until `mark_ready`. So a `creating` record whose lock
//! is free is an interrupted start (`list` says `interrupted`, `prune` removes it).
//! The lock is a `flock`: released by the kernel when
//! the process dies, and held per open file, so two opens in one process exclude each
//! other too (a handle that holds it must reuse it, never reopen it).
//!
//! Not here: what lives in the engine (containers, labels) or the workspace (the local
//! provider's machinery); this module only reads and writes these two files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sandbox_core::{CancelToken, Error, Result, SandboxName, SandboxState};

use super::PROVIDER;
use crate::local::FileLock;

/// The directory holding records and locks.
pub(crate) const STATE_DIR: &str = "containers";

/// What is stored about one start of a named sandbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct StartRecord {
    /// The sandbox name.
    pub(crate) name: SandboxName,
    /// `creating` until the start completed (or `mark_ready`), then `ready`; never
    /// `interrupted` (`list` says that of a `creating` one whose lock is free).
    pub(crate) state: SandboxState,
    /// The id of this start; the container carries it in
    /// [`LABEL_START`](super::LABEL_START).
    pub(crate) start: String,
    /// The container's id once it exists.
    #[serde(default)]
    pub(crate) container: Option<String>,
    /// The process that made it (for messages only: pids are reused).
    pub(crate) pid: u32,
    /// When the start began (unix seconds).
    pub(crate) created_at: u64,
    /// Set while the sandbox is hibernated: its container was committed to an image
    /// and removed (`hibernate.rs`); the next open recreates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hibernated: Option<super::hibernate::Hibernation>,
}

impl StartRecord {
    /// A `creating` record for a new start by this process.
    pub(crate) fn begin(name: &SandboxName) -> Self {
        Self {
            name: name.clone(),
            state: SandboxState::Creating,
            start: uuid::Uuid::new_v4().simple().to_string(),
            container: None,
            pid: std::process::id(),
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            hibernated: None,
        }
    }
}

/// Where one data directory keeps its records and locks.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join(STATE_DIR),
        }
    }

    fn record_path(&self, name: &SandboxName) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn lock_path(&self, name: &SandboxName) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    fn ensure(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))
    }

    /// The record of `name`: `Ok(None)` when there is none. An unreadable one (a power
    /// loss mid-write) reads as `creating`: an interrupted start.
    pub(crate) fn read(&self, name: &SandboxName) -> Result<Option<StartRecord>> {
        let path = self.record_path(name);
        match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StartRecord>(&bytes) {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), %e, "an unreadable start record counts as an interrupted start");
                    Ok(Some(StartRecord {
                        start: String::new(),
                        pid: 0,
                        created_at: 0,
                        ..StartRecord::begin(name)
                    }))
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Writes the record atomically (aside, then renamed over the old one).
    pub(crate) fn write(&self, record: &StartRecord) -> Result<()> {
        self.ensure()?;
        let path = self.record_path(&record.name);
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::io(format!("encoding {}", path.display()), io::Error::other(e)))?;
        let result = sandbox_core::tree::write_atomic(&path, &json, 0o666);
        result.map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Deletes the record (none is fine).
    pub(crate) fn delete(&self, name: &SandboxName) -> Result<()> {
        let path = self.record_path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }

    /// The names that have a record.
    pub(crate) fn names(&self) -> Result<Vec<SandboxName>> {
        self.names_with(".json")
    }

    fn names_with(&self, suffix: &str) -> Result<Vec<SandboxName>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", self.dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
            let file = entry.file_name();
            let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(suffix)) else {
                continue;
            };
            if let Ok(name) = SandboxName::new(stem) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Takes the lock of `name` if nobody holds it (`Ok(None)` when someone does, this
    /// process included). The lock file may be unlinked by whoever holds it (a name
    /// that no longer exists): after locking, the path must still name the locked
    /// file, else the new one is locked ([`FileLock::try_named`]).
    pub(crate) fn try_lock(&self, name: &SandboxName) -> Result<Option<StartLock>> {
        self.ensure()?;
        let path = self.lock_path(name);
        match FileLock::try_named(&path, true) {
            Ok(Some(lock)) => Ok(Some(StartLock {
                lock,
                name: name.clone(),
                path,
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    /// The names that have a lock file (a record or not).
    pub(crate) fn lock_names(&self) -> Result<Vec<SandboxName>> {
        self.names_with(".lock")
    }

    /// Waits for the lock of `name` until `deadline` (none: as long as it takes) or
    /// until `cancel` is cancelled. Polls: a blocking `flock` could not be given up.
    ///
    /// # Errors
    /// [`Error::Timeout`] or [`Error::Cancelled`] while another start holds it.
    pub(crate) async fn lock(
        &self,
        name: &SandboxName,
        deadline: Option<Instant>,
        cancel: Option<&CancelToken>,
    ) -> Result<StartLock> {
        let began = Instant::now();
        let mut pause = Duration::from_millis(5);
        let mut said = false;
        loop {
            if let Some(lock) = self.try_lock(name)? {
                return Ok(lock);
            }
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(Error::Cancelled {
                    what: format!("waiting for another start of docker sandbox {name}"),
                });
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout {
                    what: format!(
                        "waiting for another start of docker sandbox {name} to finish{}",
                        self.holder(name)
                    ),
                    after: now.duration_since(began),
                });
            }
            if !said && now.duration_since(began) > Duration::from_secs(2) {
                said = true;
                tracing::info!(%name, "waiting for another start of this sandbox to finish{}", self.holder(name));
            }
            let mut sleep = pause;
            if let Some(d) = deadline {
                sleep = sleep.min(d.saturating_duration_since(now));
            }
            tokio::time::sleep(sleep).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// ` (process N)` when the record names the process holding the start.
    fn holder(&self, name: &SandboxName) -> String {
        match self.read(name) {
            Ok(Some(r)) if r.pid != 0 => format!(" (process {})", r.pid),
            _ => String::new(),
        }
    }

    /// An error saying the name is busy (for operations that do not wait).
    pub(crate) fn busy(&self, name: &SandboxName, doing: &str) -> Error {
        Error::provider(
            PROVIDER,
            format!(
                "cannot {doing} docker sandbox {name}: another start or removal of it is running{}; \
                 wait for it to finish (or stop it; a prune then removes what it left)",
                self.holder(name)
            ),
        )
    }
}

/// The held lock of one sandbox name; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct StartLock {
    lock: FileLock,
    name: SandboxName,
    path: PathBuf,
}

impl StartLock {
    /// The name it locks.
    pub(crate) fn name(&self) -> &SandboxName {
        &self.name
    }

    /// Unlinks the lock file of a name that no longer exists (its sandbox removed),
    /// while this lock is held: lockers re-check the path after locking, so no other
    /// start can hold the unlinked file. A failure leaves the file for `prune`.
    pub(crate) fn unlink(&self) {
        if let Err(e) = self.lock.unlink_held(&self.path) {
            tracing::debug!(error = %e, path = %self.path.display(), "could not remove a lock file; prune will");
        }
    }
}
