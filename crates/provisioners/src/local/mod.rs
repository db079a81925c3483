//! `local`: the embedded default provider. A sandbox is a workspace directory under a
//! data directory; commands run on this host. No daemon, no network.
//!
//! **It does not isolate.** Commands run as the calling user, on the host, with the
//! host's environment, and can read and write anything that user can. Resource limits
//! ([`sandbox_core::Resources`]), images and terminals are ignored. Use the Docker
//! provider when you need a boundary.
//!
//! # Layout
//!
//! ```text
//! <home>/                                  HEADSTART_HOME, else ~/.local/share/headstart
//!   sandboxes/<name>/sandbox.json          the record (and the snapshot lease)
//!   sandboxes/<name>/workspace/            the workspace (an overlay mount point, or a copy)
//!   sandboxes/<name>/{upper,work}/         the overlay's writable layer
//!   snapshots/<key>/<id>/manifest.json     a snapshot's metadata
//!   snapshots/<key>/<id>/workspace/        its captured workspace
//!   snapshots/.tmp/<id>/                   snapshots being written (invisible)
//!   locks/<name>.lock                      per-sandbox-name locks
//! ```
//!
//! # States and locks
//!
//! A record is `creating` until the sandbox is complete, then `ready` (each write is
//! atomic: written aside, renamed). Only `ready` sandboxes are offered by `get` and
//! reconnecting `connect`s. One creation per name at a time, across processes:
//! `connect` holds `locks/<name>.lock` (a `flock`) while it looks and creates. With
//! [`ConnectOptions::defer_ready`] the returned handle keeps holding it until
//! [`Sandbox::mark_ready`] or [`Sandbox::remove`], so a concurrent `connect` of the name
//! waits and then finds the finished sandbox. A `creating` record whose lock is free
//! was left by a process that died: `list` (and [`LocalProvider::state`]) say
//! `interrupted` for it (`creating` only while its lock is held, by the lock test
//! `prune` uses), the next `connect` of the name replaces it, and
//! [`prune`](sandbox_core::SandboxProvider::prune) removes it. Lock files of names that no longer exist are
//! unlinked by whoever holds them (removal, prune); lockers re-check after locking
//! that the path still names the file they locked.
//!
//! # Restoring snapshots
//!
//! A sandbox created with a `base_snapshot` gets the snapshot's workspace by one of the
//! [`RestoreMethod`]s: an overlay mount where permitted (root), `FICLONE` copy-on-write
//! clones where the filesystem has them, else hardlinked git objects plus copies of
//! everything else. `Auto` probes the data directory's filesystem once and picks; the
//! provider builder and `HEADSTART_RESTORE_METHOD` override it. No two sandboxes ever
//! share a writable file; after a copy the repository's index is refreshed with the
//! new stat data so the first `git status` does not re-hash the tree.
//!
//! Hardlinked objects are safe because git and libgit2 never write an existing object
//! file: they write a temporary file and rename it into place, and at most "freshen"
//! an existing object's mtime. The shared files are read-only, but permission bits do
//! not stop root: a tool that opens `.git/objects` files for writing in place would
//! reach the snapshot. Force `copy` (or use overlay/reflink) if you run such tools.
//!
//! **What a sandbox can write of the data directory**: its own `sandboxes/<name>/`
//! only. An overlay restore's lower layer is the snapshot's workspace, which overlayfs
//! never writes (changes go to the sandbox's `upper/`); reflink and copy restores are
//! copies; a hardlink restore shares only immutable git object files (loose objects and
//! packs), which snapshots store read-only (mode without `w`) and git replaces rather
//! than rewrites. That last one is a convention, not a wall: the owner of a file can
//! `chmod` it back. And a user's workdir ([`ConnectOptions::workdir`]) is never inside
//! the data directory nor contains it ([`crate::workdir::check_workdir`], checked on
//! every `connect` with a workdir, whatever the spelling of either path).
//!
//! # Example
//!
//! ```no_run
//! use provisioners::local::LocalProvider;
//! use sandbox_core::{ConnectOptions, ExecRequest, SandboxName, SandboxProvider, SnapshotRequest};
//!
//! # async fn run() -> sandbox_core::Result<()> {
//! let provider = LocalProvider::from_env()?; // HEADSTART_HOME or ~/.local/share/headstart
//! let name = SandboxName::new("demo")?;
//! let (sandbox, _) = provider.connect(&ConnectOptions::new().name(name)).await?;
//! let out = sandbox.exec(&ExecRequest::new(["git", "init", "-q"])?).await?;
//! assert!(out.success());
//! let snap = sandbox.snapshot(&SnapshotRequest::new("demo-key", "recipe-digest")).await?;
//! let (copy, _) = provider.connect(&ConnectOptions::new().base_snapshot(snap.id)).await?;
//! assert!(copy.workspace().join(".git").is_dir());
//! # Ok(())
//! # }
//! ```
//!
//! What this module is not: it does not choose snapshots, keys or when to build them
//! (`snapshot-refresh` does), and it never runs git (restores touch `.git/index` as
//! bytes only).

mod config;
mod exec;
mod gitindex;
mod record;
mod restore;
pub(crate) mod store;
use sandbox_core::git::{self, CleanSeal};
use sandbox_core::tree;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use sandbox_core::{
    ConnectOptions, Connected, Error, ExecOutput, ExecRequest, PruneReport, Result, Sandbox,
    SandboxInfo, SandboxName, SandboxProvider, SandboxState, SnapshotId, SnapshotMeta,
    SnapshotRequest, SnapshotStatus, SnapshotStore,
};
use time::OffsetDateTime;

pub use config::{HOME_ENV, LocalConfig, RESTORE_METHOD_ENV, RestoreMethod, default_home};
pub use restore::{Capabilities, mount_overlay};
pub use store::LocalSnapshotStore;

#[cfg(feature = "docker")]
pub(crate) use record::FileLock;
#[cfg(not(feature = "docker"))]
use record::FileLock;
use record::{RecordState, SandboxRecord};
use restore::OverlayDirs;

const KIND: &str = "local";

/// The snapshot manifest's `provider_data` field holding its [`CleanSeal`].
const SEAL_FIELD: &str = "clean_seal";

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::provider(KIND, format!("a background task failed: {e}")))?
}

/// The embedded provider: sandboxes are directories under a data directory.
///
/// Cheap to clone (shared state behind an `Arc`).
#[derive(Debug, Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    home: PathBuf,
    method: RestoreMethod,
    threads: usize,
    store: Arc<LocalSnapshotStore>,
    caps: OnceLock<Capabilities>,
}

impl LocalProvider {
    /// A provider keeping everything under `home` (created when first needed).
    /// Restore method `Auto`.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self::build(
            home.into(),
            RestoreMethod::Auto,
            sandbox_core::DEFAULT_PAGE_SIZE,
        )
    }

    /// A provider configured from the environment ([`LocalConfig::from_env`]:
    /// `HEADSTART_HOME`, `HEADSTART_RESTORE_METHOD`).
    ///
    /// # Errors
    /// As [`LocalConfig::from_env`].
    pub fn from_env() -> Result<Self> {
        Ok(Self::from_config(LocalConfig::from_env()?))
    }

    /// A provider from explicit configuration.
    pub fn from_config(config: LocalConfig) -> Self {
        Self::build(
            config.home,
            config.restore_method,
            sandbox_core::DEFAULT_PAGE_SIZE,
        )
    }

    fn build(home: PathBuf, method: RestoreMethod, page_size: usize) -> Self {
        // copies wait on metadata I/O more than on the CPU: more threads than cores help
        let threads = std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 2)
            .clamp(4, 16);
        let store = Arc::new(LocalSnapshotStore::new(home.clone()).with_page_size(page_size));
        Self {
            inner: Arc::new(Inner {
                home,
                method,
                threads,
                store,
                caps: OnceLock::new(),
            }),
        }
    }

    fn rebuild(&self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            home: self.inner.home.clone(),
            method: self.inner.method,
            threads: self.inner.threads,
            store: Arc::clone(&self.inner.store),
            caps: OnceLock::new(),
        };
        if let Some(c) = self.inner.caps.get() {
            let _ = inner.caps.set(*c);
        }
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Forces a restore method (`Auto` probes).
    #[must_use]
    pub fn with_restore_method(self, method: RestoreMethod) -> Self {
        self.rebuild(|i| i.method = method)
    }

    /// Sets the page size the store's `latest_ready` uses.
    #[must_use]
    pub fn with_snapshot_page_size(self, page_size: usize) -> Self {
        self.rebuild(|i| {
            i.store = Arc::new(LocalSnapshotStore::new(i.home.clone()).with_page_size(page_size));
        })
    }

    /// Sets the number of threads copies use (default: twice the cores, at least 4).
    #[must_use]
    pub fn with_copy_threads(self, threads: usize) -> Self {
        self.rebuild(|i| i.threads = threads.max(1))
    }

    /// The data directory.
    pub fn home(&self) -> &Path {
        &self.inner.home
    }

    /// The configured restore method (possibly `Auto`).
    pub fn restore_method(&self) -> RestoreMethod {
        self.inner.method
    }

    /// The snapshot store, with its local extras (GC, failure records).
    pub fn store(&self) -> Arc<LocalSnapshotStore> {
        Arc::clone(&self.inner.store)
    }

    fn sandboxes_dir(&self) -> PathBuf {
        self.inner.home.join("sandboxes")
    }

    fn sandbox_dir(&self, name: &SandboxName) -> PathBuf {
        self.sandboxes_dir().join(name.as_str())
    }

    /// What the data directory's filesystem supports: probed once in a scratch
    /// directory under the data directory, then cached there (`.restore-probe.json`,
    /// re-probed when the directory moves to another device or user).
    ///
    /// # Errors
    /// I/O errors creating the data directory.
    pub fn capabilities(&self) -> Result<Capabilities> {
        if let Some(c) = self.inner.caps.get() {
            return Ok(*c);
        }
        let home = &self.inner.home;
        fs::create_dir_all(home).map_err(io_err(format!("creating {}", home.display())))?;
        let caps =
            restore::probe_cached(home).map_err(io_err(format!("probing {}", home.display())))?;
        Ok(*self.inner.caps.get_or_init(|| caps))
    }

    /// The concrete method a restore uses now: the forced one, or what `Auto` picks.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when a forced method does not work here (e.g. overlay
    /// without root), naming the methods that do.
    pub fn effective_restore_method(&self) -> Result<RestoreMethod> {
        let caps = self.capabilities()?;
        match self.inner.method {
            RestoreMethod::Auto => Ok(caps.best()),
            m if caps.supports(m) => Ok(m),
            m => Err(Error::InvalidOptions(format!(
                "restore method `{m}` does not work on {} ({}); use `{}` or auto",
                self.inner.home.display(),
                match m {
                    RestoreMethod::Overlay => "overlay mounts need root",
                    _ => "the filesystem has no FICLONE (XFS reflink=1 and btrfs do)",
                },
                caps.best()
            ))),
        }
    }

    /// Where sandbox `name` is in its life, whatever its state (`get` offers only
    /// ready ones): `None` when nothing of it exists. A creation that did not finish (a
    /// `creating` record, or a directory without a readable one) is `Creating` while a
    /// start holds the name's lock and `Interrupted` once nobody does (the lock test
    /// [`prune`](sandbox_core::SandboxProvider::prune) uses).
    ///
    /// # Errors
    /// I/O errors other than a missing or unreadable record, or from the lock test.
    pub fn state(&self, name: &SandboxName) -> Result<Option<sandbox_core::SandboxState>> {
        let dir = self.sandbox_dir(name);
        match record::read_record(&dir) {
            Ok(Some(r)) if r.state == RecordState::Ready => Ok(Some(r.state.into())),
            _ if dir.exists() => Ok(self.unfinished(name)?.map(|(state, _)| state)),
            Ok(_) => Ok(None),
            Err(e) => Err(Error::io(format!("reading the record of {name}"), e)),
        }
    }

    /// Where a creation of `name` that did not finish is, by the lock test `prune` uses
    /// ([`try_name_lock`](Self::try_name_lock)): `Creating` while a start (or a
    /// removal) holds the name's lock; else the record is read again under the lock (the
    /// start may have finished meanwhile) and a sandbox still not ready is `Interrupted`,
    /// its process gone. Returns the state and the record read under the lock (`None`
    /// while the lock is held, or when the record is unreadable); `None` when nothing
    /// of the name is left by then.
    fn unfinished(
        &self,
        name: &SandboxName,
    ) -> Result<Option<(SandboxState, Option<SandboxRecord>)>> {
        let Some(_lock) = self.try_name_lock(name, true)? else {
            return Ok(Some((SandboxState::Creating, None)));
        };
        let dir = self.sandbox_dir(name);
        let rec = record::read_record_or_warn(&dir, name, "listing");
        Ok(match rec {
            Some(r) if r.state == RecordState::Ready => Some((SandboxState::Ready, Some(r))),
            rec if dir.exists() => Some((SandboxState::Interrupted, rec)),
            _ => None,
        })
    }

    fn list_blocking(&self) -> Result<Vec<SandboxInfo>> {
        let dir = self.sandboxes_dir();
        let records =
            record::all_records(&dir).map_err(io_err(format!("listing {}", dir.display())))?;
        let mut out = Vec::new();
        for r in records.into_iter().filter_map(|(_, r)| r) {
            let (state, r) = match r.state {
                RecordState::Ready => (SandboxState::Ready, r),
                RecordState::Creating => match self.unfinished(&r.name)? {
                    None => continue,
                    Some((state, again)) => (state, again.unwrap_or(r)),
                },
            };
            let gone = state == SandboxState::Ready && !r.workspace.exists();
            out.push(SandboxInfo {
                state: if gone { SandboxState::Broken } else { state },
                name: r.name,
                id: r.id,
                provider: KIND.into(),
                workspace: r.workspace,
                base_snapshot: r.base_snapshot,
                // no processes: a finished sandbox (or one being made) counts as running
                running: !gone && state != SandboxState::Interrupted,
                created_at: Some(r.created_at),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn prune_blocking(&self) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let now = OffsetDateTime::now_utc();
        let dir = self.sandboxes_dir();
        for (path, _) in
            record::all_records(&dir).map_err(io_err(format!("listing {}", dir.display())))?
        {
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| SandboxName::new(n).ok())
            else {
                continue;
            };
            // a held lock is a start (or removal) in progress: not ours to judge
            let Some(lock) = self.try_name_lock(&name, true)? else {
                report.busy.push(name);
                continue;
            };
            // read under the lock: a concurrent connect may have finished meanwhile
            let rec = record::read_record_or_warn(&path, &name, "removing");
            match rec {
                Some(r) if r.state == RecordState::Ready => {
                    if r.expires_at.is_some_and(|t| t <= now) {
                        self.remove_locked(&name, Some(&r), &lock)?;
                        report.expired.push(name);
                    } else if !r.workspace.exists() {
                        tracing::info!(sandbox = %name, workspace = %r.workspace.display(), "removing a sandbox whose workspace is gone");
                        self.remove_locked(&name, Some(&r), &lock)?;
                        report.orphans.push(name);
                    }
                }
                Some(r) => {
                    tracing::info!(sandbox = %name, "removing a sandbox whose creation was interrupted");
                    self.remove_locked(&name, Some(&r), &lock)?;
                    report.interrupted.push(name);
                }
                None if !path.exists() => {}
                None => {
                    self.remove_locked(&name, None, &lock)?;
                    report.orphan_workspaces.push(path);
                }
            }
        }
        report.stale_locks = self.prune_locks()?;
        report.interrupted_snapshot_writes = self.inner.store.cleanup_stale()?;
        Ok(report)
    }

    /// Unlinks the lock files of names without a sandbox directory, each while holding
    /// it (a busy one is skipped).
    fn prune_locks(&self) -> Result<usize> {
        let locks = self.locks_dir();
        let entries = match fs::read_dir(&locks) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(format!("listing {}", locks.display()), e)),
        };
        let mut removed = 0;
        for ent in entries {
            let ent = ent.map_err(io_err(format!("listing {}", locks.display())))?;
            let file_name = ent.file_name();
            let Some(name) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(".lock"))
                .and_then(|n| SandboxName::new(n).ok())
            else {
                continue;
            };
            if self.sandbox_dir(&name).exists() {
                continue;
            }
            let Some(lock) = self.try_name_lock(&name, false)? else {
                continue;
            };
            // under the lock nobody can be creating it: check again, then unlink
            if self.sandbox_dir(&name).exists() {
                continue;
            }
            let path = self.lock_path(&name);
            lock.unlink_held(&path)
                .map_err(io_err(format!("removing {}", path.display())))?;
            removed += 1;
        }
        Ok(removed)
    }

    fn locks_dir(&self) -> PathBuf {
        self.inner.home.join("locks")
    }

    fn lock_path(&self, name: &SandboxName) -> PathBuf {
        self.locks_dir().join(format!("{name}.lock"))
    }

    /// The lock of `name`, waiting while another process (or handle) holds it;
    /// `Ok(None)` once `stop` says so.
    fn name_lock(&self, name: &SandboxName, stop: &dyn Fn() -> bool) -> Result<Option<FileLock>> {
        let locks = self.locks_dir();
        fs::create_dir_all(&locks).map_err(io_err(format!("creating {}", locks.display())))?;
        let path = self.lock_path(name);
        FileLock::acquire_named(&path, stop).map_err(io_err(format!("locking {}", path.display())))
    }

    /// The lock of `name` if it is free (`create`: make the lock file when missing).
    fn try_name_lock(&self, name: &SandboxName, create: bool) -> Result<Option<FileLock>> {
        let locks = self.locks_dir();
        if create {
            fs::create_dir_all(&locks).map_err(io_err(format!("creating {}", locks.display())))?;
        }
        let path = self.lock_path(name);
        match FileLock::try_named(&path, create) {
            Ok(l) => Ok(l),
            Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    /// Removes sandbox `name` (its directory, mounts and lock file) while `lock`, its
    /// name lock, is held.
    fn remove_locked(
        &self,
        name: &SandboxName,
        rec: Option<&SandboxRecord>,
        lock: &FileLock,
    ) -> Result<()> {
        let dir = self.sandbox_dir(name);
        if dir.exists() {
            self.remove_files(&dir, rec)?;
        }
        let path = self.lock_path(name);
        if let Err(e) = lock.unlink_held(&path) {
            tracing::debug!(error = %e, path = %path.display(), "could not remove a lock file; prune will");
        }
        Ok(())
    }

    /// Unmounts and deletes a sandbox directory. The user's own workdir lives outside
    /// it and is never touched.
    fn remove_files(&self, dir: &Path, rec: Option<&SandboxRecord>) -> Result<()> {
        let merged = dir.join("workspace");
        if restore::is_mounted(&merged) {
            restore::unmount(&merged)
                .map_err(io_err(format!("unmounting {}", merged.display())))?;
        }
        if restore::is_mounted(&merged) {
            return Err(Error::provider(
                KIND,
                format!(
                    "{} is still mounted; unmount it and retry",
                    merged.display()
                ),
            ));
        }
        if let Some(r) = rec {
            debug_assert!(!r.user_workdir || !r.workspace.starts_with(dir));
        }
        tree::remove_tree(dir).map_err(io_err(format!("removing {}", dir.display())))
    }

    fn open(&self, rec: SandboxRecord, env: BTreeMap<String, String>) -> LocalSandbox {
        LocalSandbox {
            provider: self.clone(),
            record: rec,
            env,
            running: exec::Running::default(),
            lock: std::sync::Mutex::new(None),
            seal: None,
        }
    }

    /// Re-mounts an overlay sandbox's workspace when it is not mounted (after a reboot
    /// or an unmount).
    fn ensure_ready(&self, rec: &SandboxRecord) -> Result<()> {
        if rec.restore_method == Some(RestoreMethod::Overlay) {
            let lower = rec.lower.as_ref().ok_or_else(|| {
                Error::provider(KIND, format!("sandbox {} has no overlay lower dir recorded; replace it (create it again with force_create)", rec.name))
            })?;
            let dirs = OverlayDirs::of(&self.sandbox_dir(&rec.name));
            if dirs
                .ensure_mounted(lower)
                .map_err(io_err(format!("mounting the workspace of {}", rec.name)))?
            {
                tracing::info!(sandbox = %rec.name, "re-mounted the overlay workspace");
            }
        }
        Ok(())
    }

    /// Looks up and creates under the name's lock. Returns the lock too when the
    /// new sandbox stays `creating` (`defer_ready`): the handle holds it.
    fn connect_blocking(
        &self,
        options: &ConnectOptions,
        name: SandboxName,
        cancelled: &AtomicBool,
    ) -> Result<(
        SandboxRecord,
        Connected,
        Option<FileLock>,
        Option<CleanSeal>,
    )> {
        let stop = || {
            cancelled.load(Ordering::SeqCst)
                || options.cancel.as_ref().is_some_and(|c| c.is_cancelled())
        };
        let cancel_err = || Error::Cancelled {
            what: format!("creating local sandbox {name}"),
        };
        let Some(lock) = self.name_lock(&name, &stop)? else {
            return Err(cancel_err());
        };
        if stop() {
            return Err(cancel_err());
        }
        let dir = self.sandbox_dir(&name);
        let existing = record::read_record(&dir);
        match existing {
            Ok(Some(rec)) if rec.state == RecordState::Ready && !options.force_create => {
                self.ensure_ready(&rec)?;
                return Ok((rec, Connected::Reconnected, None, None));
            }
            Ok(rec) => {
                if rec.is_some() || dir.exists() {
                    if rec
                        .as_ref()
                        .is_some_and(|r| r.state == RecordState::Creating)
                    {
                        tracing::warn!(sandbox = %name, "repairing sandbox {name}: its creation was interrupted (the process creating it died); removing it and creating it again");
                    }
                    self.remove_files(&dir, rec.as_ref())?;
                }
            }
            Err(e) => {
                tracing::warn!(sandbox = %name, error = %e, "replacing a sandbox with an unreadable record");
                self.remove_files(&dir, None)?;
            }
        }
        let result = self.create(options, &name, &dir, &stop);
        if result.is_err() || stop() {
            if let Err(e) = self.remove_locked(&name, None, &lock) {
                tracing::warn!(sandbox = %name, error = %e, "could not clean up a failed creation; a later prune removes it");
            }
        }
        if stop() {
            return Err(cancel_err());
        }
        let (rec, seal) = result?;
        let lock = (rec.state == RecordState::Creating).then_some(lock);
        Ok((rec, Connected::Created, lock, seal))
    }

    fn create(
        &self,
        options: &ConnectOptions,
        name: &SandboxName,
        dir: &Path,
        stop: &dyn Fn() -> bool,
    ) -> Result<(SandboxRecord, Option<CleanSeal>)> {
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let now = OffsetDateTime::now_utc();
        let expires_at = options
            .ttl
            .and_then(|ttl| time::Duration::try_from(ttl).ok())
            .map(|ttl| now + ttl);
        let mut rec = SandboxRecord {
            id: format!("local-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            name: name.clone(),
            state: RecordState::Creating,
            created_at: now,
            base_snapshot: None,
            snapshot_name: None,
            restore_method: None,
            lower: None,
            workspace: dir.join("workspace"),
            user_workdir: false,
            expires_at,
            labels: options.labels.clone(),
        };
        let record_path = dir.join(record::RECORD_FILE);
        let write = |rec: &SandboxRecord| {
            record::write_json_atomic(&record_path, rec)
                .map_err(io_err(format!("writing {}", record_path.display())))
        };
        // `creating` from the start: a crash from here on leaves a record that says so
        write(&rec)?;
        let mut seal = None;
        if let Some(workdir) = &options.workdir {
            // checked before anything is created: never inside (or around) our data
            let workdir = crate::workdir::check_workdir(workdir, &self.inner.home)?;
            fs::create_dir_all(&workdir)
                .map_err(io_err(format!("creating {}", workdir.display())))?;
            rec.workspace = workdir;
            rec.user_workdir = true;
        } else if let Some(id) = &options.base_snapshot {
            let method = self.effective_restore_method()?;
            let lower = {
                // the lease: the record naming the snapshot exists before GC can look
                let _store_lock = self.inner.store.lock(false)?;
                let snap_dir = self
                    .inner
                    .store
                    .locate(id)?
                    .ok_or_else(|| Error::SnapshotNotFound { id: id.to_string() })?;
                let meta = self.inner.store.read_meta(&snap_dir)?;
                if meta.status != SnapshotStatus::Ready {
                    return Err(Error::InvalidOptions(format!(
                        "snapshot {id} is {:?}, not ready; pick a ready one",
                        meta.status
                    )));
                }
                rec.base_snapshot = Some(id.clone());
                rec.snapshot_name = Some(meta.name);
                seal = meta
                    .provider_data
                    .get(SEAL_FIELD)
                    .and_then(|v| serde_json::from_value::<CleanSeal>(v.clone()).ok());
                rec.restore_method = Some(method);
                let lower = snap_dir.join("workspace");
                rec.lower = (method == RestoreMethod::Overlay).then(|| lower.clone());
                write(&rec)?;
                lower
            };
            if stop() {
                return Err(Error::Cancelled {
                    what: format!("restoring snapshot {id} into local sandbox {name}"),
                });
            }
            let mut attempt = restore::restore(method, &lower, dir, self.inner.threads);
            if let Err(e) = &attempt {
                if method == RestoreMethod::Overlay && self.inner.method == RestoreMethod::Auto {
                    // the cached probe said overlay works; it does not (any more): copy
                    let fallback = if self.capabilities()?.reflink {
                        RestoreMethod::Reflink
                    } else {
                        RestoreMethod::HardlinkCopy
                    };
                    tracing::warn!(error = %e, %fallback, "overlay mount failed; restoring by copy instead");
                    let _ = fs::remove_file(self.inner.home.join(".restore-probe.json"));
                    let merged = dir.join("workspace");
                    if !restore::is_mounted(&merged) {
                        for d in ["upper", "work", "workspace"] {
                            let _ = tree::remove_tree(&dir.join(d));
                        }
                    }
                    rec.restore_method = Some(fallback);
                    rec.lower = None;
                    write(&rec)?;
                    attempt = restore::restore(fallback, &lower, dir, self.inner.threads);
                }
            }
            let method = rec.restore_method.unwrap_or(method);
            let restored = attempt.map_err(io_err(format!(
                "restoring snapshot {id} by {method} into {}",
                dir.display()
            )))?;
            // Only an overlay over the snapshot itself, with the new (empty) upper layer
            // made just now, is the captured workspace byte for byte; copies take the
            // proving walk.
            if restored.method != RestoreMethod::Overlay {
                seal = None;
            }
            tracing::debug!(
                sandbox = %name, snapshot = %id, method = %restored.method,
                files = restored.stats.files, hardlinks = restored.stats.hardlinks,
                index = ?restored.index, elapsed = ?restored.elapsed,
                "restored a snapshot"
            );
        } else {
            fs::create_dir(&rec.workspace)
                .map_err(io_err(format!("creating {}", rec.workspace.display())))?;
        }
        if !options.defer_ready {
            rec.state = RecordState::Ready;
        }
        write(&rec)?;
        Ok((rec, seal))
    }
}

#[async_trait]
impl SandboxProvider for LocalProvider {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Removes sandboxes whose TTL passed, interrupted creations and sandbox
    /// directories without a usable record (unmounting their overlays), lock files of
    /// names that are gone, and stale snapshot temp dirs.
    async fn prune(&self) -> Result<PruneReport> {
        let this = self.clone();
        blocking(move || this.prune_blocking()).await
    }

    async fn connect(&self, options: &ConnectOptions) -> Result<(Box<dyn Sandbox>, Connected)> {
        if options.workdir.is_some() && options.base_snapshot.is_some() {
            return Err(Error::InvalidOptions(
                "a workdir sandbox uses your directory as it is; it cannot also be restored from a snapshot".into(),
            ));
        }
        if let Some(workdir) = &options.workdir {
            crate::workdir::check_workdir(workdir, &self.inner.home)?;
        }
        let name = options.name.clone().unwrap_or_else(SandboxName::generate);
        let cancelled = Arc::new(AtomicBool::new(false));
        let task = {
            let this = self.clone();
            let options = options.clone();
            let cancelled = Arc::clone(&cancelled);
            tokio::task::spawn_blocking(move || this.connect_blocking(&options, name, &cancelled))
        };
        let joined = match options.timeout {
            Some(t) => match tokio::time::timeout(t, task).await {
                Ok(j) => j,
                Err(_) => {
                    // the blocking work notices and removes what it made
                    cancelled.store(true, Ordering::SeqCst);
                    return Err(Error::Timeout {
                        what: "creating a local sandbox".into(),
                        after: t,
                    });
                }
            },
            None => task.await,
        };
        let (rec, connected, lock, seal) = joined
            .map_err(|e| Error::provider(KIND, format!("a background task failed: {e}")))??;
        let mut sandbox = self.open(rec, options.env.clone());
        sandbox.lock = std::sync::Mutex::new(lock);
        sandbox.seal = seal;
        Ok((Box::new(sandbox), connected))
    }

    async fn get(&self, name: &SandboxName) -> Result<Option<Box<dyn Sandbox>>> {
        let this = self.clone();
        let name = name.clone();
        let rec = blocking(move || {
            // unreadable: a crashed creation; `connect` replaces it, `prune` removes it
            let rec = record::read_record_or_warn(&this.sandbox_dir(&name), &name, "ignoring");
            match rec {
                Some(r) if r.state == RecordState::Ready => {
                    this.ensure_ready(&r)?;
                    Ok(Some(r))
                }
                _ => Ok(None),
            }
        })
        .await?;
        Ok(rec.map(|r| Box::new(self.open(r, BTreeMap::new())) as Box<dyn Sandbox>))
    }

    /// Every sandbox with a readable record: `ready` ones (`broken` when their
    /// workspace is gone), and creations that did not finish, `creating` while a start
    /// holds the name's lock and `interrupted` once nobody does (the lock test `prune`
    /// uses). A directory without a readable record is not listed (`prune` removes it).
    async fn list(&self) -> Result<Vec<SandboxInfo>> {
        let this = self.clone();
        blocking(move || this.list_blocking()).await
    }

    async fn remove(&self, name: &SandboxName) -> Result<()> {
        let this = self.clone();
        let name = name.clone();
        blocking(move || {
            let lock = this
                .name_lock(&name, &|| false)?
                .ok_or_else(|| Error::provider(KIND, "waiting for the name lock stopped"))?;
            let dir = this.sandbox_dir(&name);
            let rec = record::read_record(&dir).unwrap_or(None);
            if rec.is_none() && !dir.exists() {
                return Err(Error::SandboxNotFound {
                    name: name.to_string(),
                });
            }
            this.remove_locked(&name, rec.as_ref(), &lock)
        })
        .await
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStore> {
        self.inner.store.clone()
    }
}

/// A local sandbox: a workspace directory on this host. **Not isolated.**
#[derive(Debug)]
pub struct LocalSandbox {
    provider: LocalProvider,
    record: SandboxRecord,
    env: BTreeMap<String, String>,
    running: exec::Running,
    /// The name's lock while the sandbox is `creating` (`defer_ready`): held until
    /// [`Sandbox::mark_ready`] or [`Sandbox::remove`].
    lock: std::sync::Mutex<Option<FileLock>>,
    /// The snapshot's clean seal, on the handle that just restored it by overlay
    /// (see [`Sandbox::clean_seal`]).
    seal: Option<CleanSeal>,
}

impl LocalSandbox {
    /// The restore method its workspace was made with (`None`: not from a snapshot).
    pub fn restore_method(&self) -> Option<RestoreMethod> {
        self.record.restore_method
    }

    /// True when the workspace is the user's own directory (never deleted).
    pub fn is_user_workdir(&self) -> bool {
        self.record.user_workdir
    }

    fn capture(&self, request: &SnapshotRequest) -> Result<SnapshotMeta> {
        store::check_name(&request.name)?;
        let store = &self.provider.inner.store;
        if let Err(e) = store.cleanup_stale() {
            tracing::warn!(error = %e, "could not clean up stale snapshot writes");
        }
        self.provider.ensure_ready(&self.record)?;
        let reflink = self
            .provider
            .capabilities()
            .map(|c| c.reflink)
            .unwrap_or(false);
        let pending = store.begin()?;
        let built = (|| {
            let stats = restore::capture(
                &self.record.workspace,
                &pending.workspace(),
                reflink,
                self.provider.inner.threads,
            )
            .map_err(io_err(format!(
                "copying {} into a snapshot",
                self.record.workspace.display()
            )))?;
            // Proved on the copy itself, off the warm path: restores by overlay hand it
            // to the sync, which then skips this walk.
            let seal = match git::seal_clean(&pending.workspace()) {
                Ok(seal) => seal,
                Err(e) => {
                    tracing::debug!(error = %e, "no clean seal for the snapshot");
                    None
                }
            };
            let meta = SnapshotMeta {
                id: pending.id.clone(),
                name: request.name.clone(),
                status: SnapshotStatus::Ready,
                created_at: OffsetDateTime::now_utc(),
                commit: request.commit.clone(),
                branch: request.branch.clone(),
                source_url: request.source_url.clone(),
                recipe_digest: request.recipe_digest.clone(),
                size_bytes: stats.bytes,
                error: None,
                provider_data: serde_json::json!({
                    "files": stats.files,
                    "symlinks": stats.symlinks,
                    "from_sandbox": self.record.name.as_str(),
                    "copy": if reflink { "reflink" } else { "copy" },
                    SEAL_FIELD: seal,
                }),
            };
            Ok::<_, Error>(meta)
        })();
        match built {
            Ok(meta) => {
                store.commit(pending, &meta)?;
                Ok(meta)
            }
            Err(e) => {
                store.abort(pending);
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn id(&self) -> &str {
        &self.record.id
    }

    fn name(&self) -> &SandboxName {
        &self.record.name
    }

    fn workspace(&self) -> &Path {
        &self.record.workspace
    }

    fn clean_seal(&self) -> Option<CleanSeal> {
        self.seal.clone()
    }

    fn base_snapshot(&self) -> Option<&SnapshotId> {
        self.record.base_snapshot.as_ref()
    }

    async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput> {
        if self.record.restore_method == Some(RestoreMethod::Overlay)
            && !restore::is_mounted(&self.record.workspace)
        {
            let provider = self.provider.clone();
            let rec = self.record.clone();
            blocking(move || provider.ensure_ready(&rec)).await?;
        }
        let cwd = exec::resolve_cwd(&self.record.workspace, request.cwd.as_deref())?;
        exec::run(request, &cwd, &self.env, &self.running).await
    }

    async fn snapshot(&self, request: &SnapshotRequest) -> Result<SnapshotMeta> {
        let this = LocalSandbox {
            provider: self.provider.clone(),
            record: self.record.clone(),
            env: BTreeMap::new(),
            running: exec::Running::default(),
            lock: std::sync::Mutex::new(None),
            seal: None,
        };
        let request = request.clone();
        blocking(move || this.capture(&request)).await
    }

    /// Kills the commands this handle started; the workspace stays.
    async fn stop(&self) -> Result<()> {
        exec::kill_all(&self.running);
        Ok(())
    }

    /// Writes the record `ready` (atomically) and releases the name's lock. A no-op
    /// for a sandbox that was not created `creating` by this handle.
    async fn mark_ready(&self) -> Result<()> {
        let Some(lock) = self.take_lock() else {
            return Ok(());
        };
        let provider = self.provider.clone();
        let name = self.record.name.clone();
        blocking(move || {
            let dir = provider.sandbox_dir(&name);
            let mut rec = record::read_record(&dir)
                .map_err(io_err(format!("reading the record of {name}")))?
                .ok_or_else(|| {
                    Error::provider(
                        KIND,
                        format!("sandbox {name} was removed while it was being created"),
                    )
                })?;
            rec.state = RecordState::Ready;
            let path = dir.join(record::RECORD_FILE);
            record::write_json_atomic(&path, &rec)
                .map_err(io_err(format!("writing {}", path.display())))?;
            drop(lock);
            Ok(())
        })
        .await
    }

    /// Removes the sandbox and its workspace under the name's lock: the one this
    /// handle holds while `creating` (taking it again would wait on ourselves), else
    /// a fresh one.
    async fn remove(&self) -> Result<()> {
        let held = self.take_lock();
        let provider = self.provider.clone();
        let name = self.record.name.clone();
        blocking(move || {
            let lock = match held {
                Some(l) => l,
                None => provider
                    .name_lock(&name, &|| false)?
                    .ok_or_else(|| Error::provider(KIND, "waiting for the name lock stopped"))?,
            };
            let rec = record::read_record(&provider.sandbox_dir(&name)).unwrap_or(None);
            provider.remove_locked(&name, rec.as_ref(), &lock)
        })
        .await
    }
}

impl LocalSandbox {
    fn take_lock(&self) -> Option<FileLock> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}
