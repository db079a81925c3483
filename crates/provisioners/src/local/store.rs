//! The local snapshot store: `snapshots/<name>/<id>/` holding `manifest.json` and the
//! captured `workspace/`.
//!
//! A snapshot is written under `snapshots/.tmp/<id>/` (with a held `flock` on its
//! `.lock` file) and renamed into place only when complete, so listing never sees a
//! partial one; a temp dir whose writer died is removed by the next
//! [`cleanup_stale`](LocalSnapshotStore::cleanup_stale) (called by every snapshot write
//! and by GC). Corrupt or unreadable manifests are skipped with a warning, never a
//! panic. GC and deletion never remove a snapshot a sandbox holds a lease on (its
//! record names it). This store does not decide when to build or which key to use;
//! `snapshot-refresh` does.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sandbox_core::{
    Cursor, Error, GcPolicy, GcReport, Page, Result, SandboxName, SnapshotId, SnapshotMeta,
    SnapshotStatus, SnapshotStore,
};
use time::OffsetDateTime;

use super::record::{self, FileLock};
use sandbox_core::tree;

const MANIFEST: &str = "manifest.json";
const TMP: &str = ".tmp";
const TRASH: &str = ".trash";
const LOCK: &str = ".lock";

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::io(context, e)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::provider("local", format!("a background task failed: {e}")))?
}

/// Checks that `name` is usable as a snapshot name (a directory name).
pub(crate) fn check_name(name: &str) -> Result<()> {
    SnapshotId::new(name)
        .map(drop)
        .map_err(|_| Error::InvalidName {
            what: "snapshot name",
            value: name.escape_debug().to_string(),
            reason:
                "use 1 to 63 characters of a-z, 0-9, `.`, `_` or `-`, starting with a letter or \
                 digit (snapshot keys from snapshot-refresh are)"
                    .into(),
        })
}

/// The embedded snapshot store under a data directory.
#[derive(Debug, Clone)]
pub struct LocalSnapshotStore {
    home: PathBuf,
    page_size: usize,
    stale_grace: Duration,
}

/// A snapshot being written: a temp dir whose `.lock` this process holds.
#[derive(Debug)]
pub(crate) struct PendingSnapshot {
    pub(crate) id: SnapshotId,
    pub(crate) dir: PathBuf,
    _lock: FileLock,
}

impl PendingSnapshot {
    /// Where the captured workspace goes.
    pub(crate) fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }
}

impl LocalSnapshotStore {
    /// The store under the data directory `home` (`home/snapshots/`). Nothing is
    /// created until something is written.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            page_size: sandbox_core::DEFAULT_PAGE_SIZE,
            stale_grace: Duration::from_secs(10),
        }
    }

    /// Sets the page size [`latest_ready`](SnapshotStore::latest_ready) asks for.
    #[must_use]
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Sets how old a temp dir without a lock file must be before it counts as stale
    /// (a lock file is created right after the dir; default 10 s).
    #[must_use]
    pub fn with_stale_grace(mut self, grace: Duration) -> Self {
        self.stale_grace = grace;
        self
    }

    /// The data directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The `snapshots/` directory.
    pub fn root(&self) -> PathBuf {
        self.home.join("snapshots")
    }

    fn sandboxes_dir(&self) -> PathBuf {
        self.home.join("sandboxes")
    }

    fn ensure_dirs(&self) -> Result<()> {
        let root = self.root();
        for d in [root.join(TMP), root.join(TRASH)] {
            fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        spread_new_dirs(&root.join(TMP));
        Ok(())
    }

    /// The store lock: shared while a sandbox takes a lease, exclusive while GC or
    /// delete decide what to remove.
    pub(crate) fn lock(&self, exclusive: bool) -> Result<FileLock> {
        self.ensure_dirs()?;
        let path = self.root().join(LOCK);
        FileLock::acquire(&path, exclusive).map_err(io_err(format!("locking {}", path.display())))
    }

    /// The directory of snapshot `id`, if it exists.
    pub(crate) fn locate(&self, id: &SnapshotId) -> Result<Option<PathBuf>> {
        let root = self.root();
        let names = match fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("listing {}", root.display()), e)),
        };
        for ent in names {
            let ent = ent.map_err(io_err(format!("listing {}", root.display())))?;
            if ent.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let dir = ent.path().join(id.as_str());
            if dir.join(MANIFEST).is_file() {
                return Ok(Some(dir));
            }
        }
        Ok(None)
    }

    /// The captured workspace of snapshot `id` (what restores copy or mount).
    ///
    /// # Errors
    /// [`Error::SnapshotNotFound`] when it does not exist.
    pub fn workspace_of(&self, id: &SnapshotId) -> Result<PathBuf> {
        self.locate(id)?
            .map(|d| d.join("workspace"))
            .ok_or_else(|| Error::SnapshotNotFound { id: id.to_string() })
    }

    fn read_manifest(dir: &Path) -> std::result::Result<SnapshotMeta, String> {
        let bytes = fs::read(dir.join(MANIFEST)).map_err(|e| e.to_string())?;
        let meta: SnapshotMeta = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if dir.file_name().and_then(|n| n.to_str()) != Some(meta.id.as_str()) {
            return Err(format!(
                "manifest id {} does not match its directory",
                meta.id
            ));
        }
        Ok(meta)
    }

    /// The manifest in snapshot directory `dir`.
    pub(crate) fn read_meta(&self, dir: &Path) -> Result<SnapshotMeta> {
        Self::read_manifest(dir).map_err(|e| {
            Error::provider(
                "local",
                format!(
                    "the manifest in {} is unreadable ({e}); delete that snapshot",
                    dir.display()
                ),
            )
        })
    }

    /// Every readable snapshot (of `name`, or all), newest first.
    fn scan(&self, name: Option<&str>) -> Result<Vec<SnapshotMeta>> {
        let root = self.root();
        let key_dirs: Vec<PathBuf> = match name {
            Some(n) => vec![root.join(n)],
            None => match fs::read_dir(&root) {
                Ok(e) => e
                    .filter_map(|e| e.ok())
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .map(|e| e.path())
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
                Err(e) => return Err(Error::io(format!("listing {}", root.display()), e)),
            },
        };
        let mut out = Vec::new();
        for key_dir in key_dirs {
            let entries = match fs::read_dir(&key_dir) {
                Ok(e) => e,
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.kind() == io::ErrorKind::NotADirectory =>
                {
                    continue;
                }
                Err(e) => return Err(Error::io(format!("listing {}", key_dir.display()), e)),
            };
            for ent in entries.filter_map(|e| e.ok()) {
                let dir = ent.path();
                if ent.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                match Self::read_manifest(&dir) {
                    Ok(meta) => out.push(meta),
                    Err(e) => tracing::warn!(
                        snapshot = %dir.display(),
                        error = %e,
                        "skipping a snapshot with an unreadable manifest (delete the directory to get rid of it)"
                    ),
                }
            }
        }
        out.sort_by_key(|m| std::cmp::Reverse(sort_key(m)));
        Ok(out)
    }

    /// Starts writing a snapshot: a fresh temp dir this process holds a lock on.
    pub(crate) fn begin(&self) -> Result<PendingSnapshot> {
        self.begin_as(SnapshotId::generate())
    }

    fn begin_as(&self, id: SnapshotId) -> Result<PendingSnapshot> {
        self.ensure_dirs()?;
        let dir = self.root().join(TMP).join(id.as_str());
        fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // lock a new file, then rename it to `.lock`: a `.lock` that exists is locked
        // until its writer dies
        let staging = dir.join(".lock.new");
        let lock = fs::File::create(&staging)
            .and_then(FileLock::hold)
            .and_then(|l| fs::rename(&staging, dir.join(LOCK)).map(|()| l))
            .map_err(io_err(format!("locking {}", dir.display())))?;
        Ok(PendingSnapshot {
            id,
            dir,
            _lock: lock,
        })
    }

    /// Writes `meta`'s manifest into the pending dir and renames it into place.
    pub(crate) fn commit(&self, pending: PendingSnapshot, meta: &SnapshotMeta) -> Result<()> {
        self.commit_ref(&pending, meta)
    }

    fn commit_ref(&self, pending: &PendingSnapshot, meta: &SnapshotMeta) -> Result<()> {
        check_name(&meta.name)?;
        let manifest = pending.dir.join(MANIFEST);
        record::write_json_atomic(&manifest, meta)
            .map_err(io_err(format!("writing {}", manifest.display())))?;
        let key_dir = self.root().join(&meta.name);
        fs::create_dir_all(&key_dir).map_err(io_err(format!("creating {}", key_dir.display())))?;
        let dest = key_dir.join(meta.id.as_str());
        fs::rename(&pending.dir, &dest).map_err(io_err(format!(
            "moving the snapshot into {}",
            dest.display()
        )))?;
        let _ = fs::remove_file(dest.join(LOCK));
        Ok(())
    }

    /// Imports a ready snapshot made elsewhere (another host's, pulled from a registry):
    /// `fill` writes the workspace into the directory it is given (a temp dir under
    /// `snapshots/.tmp/`, locked by this process) and returns its size in bytes; the
    /// snapshot is renamed into place as `meta` (status `Ready`, that size) only when
    /// `fill` succeeded, and removed otherwise, so no listing ever sees a partial one.
    /// Blocking: call it from a blocking task.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad name, [`Error::InvalidOptions`] when a snapshot
    /// with `meta.id` exists, and what `fill` returned (as an I/O error).
    pub fn import(
        &self,
        meta: SnapshotMeta,
        fill: impl FnOnce(&Path) -> io::Result<u64>,
    ) -> Result<SnapshotMeta> {
        check_name(&meta.name)?;
        if let Err(e) = self.cleanup_stale() {
            tracing::warn!(error = %e, "could not clean up stale snapshot writes");
        }
        if self.locate(&meta.id)?.is_some() {
            return Err(Error::InvalidOptions(format!(
                "snapshot {} is already in the store",
                meta.id
            )));
        }
        let pending = self.begin_as(meta.id.clone())?;
        let workspace = pending.workspace();
        match fill(&workspace).and_then(|bytes| seal_import(&workspace).map(|()| bytes)) {
            Ok(bytes) => {
                let meta = SnapshotMeta {
                    status: SnapshotStatus::Ready,
                    size_bytes: bytes,
                    ..meta
                };
                if let Err(e) = self.commit_ref(&pending, &meta) {
                    self.abort(pending);
                    return Err(e);
                }
                Ok(meta)
            }
            Err(e) => {
                self.abort(pending);
                Err(Error::io(
                    format!("writing snapshot {} into {}", meta.id, workspace.display()),
                    e,
                ))
            }
        }
    }

    /// Discards a pending snapshot.
    pub(crate) fn abort(&self, pending: PendingSnapshot) {
        if let Err(e) = tree::remove_tree(&pending.dir) {
            tracing::warn!(error = %e, "could not remove an aborted snapshot; the next cleanup will");
        }
    }

    /// Records a failed build of `name` with its error; returns the record.
    ///
    /// # Errors
    /// As [`record`](Self::record).
    pub async fn record_failed(
        &self,
        name: &str,
        recipe_digest: &str,
        error: impl Into<String>,
    ) -> Result<SnapshotMeta> {
        let meta = SnapshotMeta {
            id: SnapshotId::generate(),
            name: name.to_owned(),
            status: SnapshotStatus::Failed,
            created_at: OffsetDateTime::now_utc(),
            commit: None,
            branch: None,
            source_url: None,
            recipe_digest: recipe_digest.to_owned(),
            size_bytes: 0,
            error: Some(error.into()),
            provider_data: serde_json::Value::Null,
        };
        self.record(meta).await
    }

    /// Records a snapshot entry with no workspace (a [`SnapshotStatus::Failed`] one
    /// with its error, or `Building`), for `headstart snapshot ls`; atomic like a
    /// snapshot. The id is replaced by a fresh one, which the returned meta carries.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad name, [`Error::InvalidOptions`] for status
    /// `Ready` (a ready snapshot needs a workspace: snapshot a sandbox), I/O errors.
    pub async fn record(&self, meta: SnapshotMeta) -> Result<SnapshotMeta> {
        let store = self.clone();
        blocking(move || {
            check_name(&meta.name)?;
            let pending = store.begin()?;
            let mut meta = meta;
            meta.id = pending.id.clone();
            if meta.status == SnapshotStatus::Ready {
                store.abort(pending);
                return Err(Error::InvalidOptions(
                    "a ready snapshot needs a workspace; snapshot a sandbox instead".into(),
                ));
            }
            store.commit(pending, &meta)?;
            Ok(meta)
        })
        .await
    }

    /// Snapshot ids leased by sandboxes, with the sandboxes holding them.
    pub(crate) fn leases(&self) -> Result<HashMap<SnapshotId, Vec<SandboxName>>> {
        let dir = self.sandboxes_dir();
        let mut out: HashMap<SnapshotId, Vec<SandboxName>> = HashMap::new();
        for (path, rec) in
            record::all_records(&dir).map_err(io_err(format!("listing {}", dir.display())))?
        {
            match rec {
                Some(rec) => {
                    if let Some(id) = rec.base_snapshot {
                        out.entry(id).or_default().push(rec.name);
                    }
                }
                None => {
                    // a sandbox dir without a readable record may still be mounted on a
                    // snapshot: be conservative and let `prune` deal with it first
                    if super::restore::is_mounted(&path.join("workspace")) {
                        tracing::warn!(sandbox = %path.display(), "a mounted sandbox has no record; GC keeps every snapshot until a prune cleans it up");
                        return Err(Error::provider(
                            "local",
                            format!(
                                "{} is mounted but has no record; prune the local provider first",
                                path.display()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Moves snapshot dirs into the trash (under the exclusive lock), then removes them.
    fn trash(&self, dirs: Vec<PathBuf>) -> Result<()> {
        let trash = self.root().join(TRASH);
        let mut moved = Vec::new();
        for d in dirs {
            let Some(name) = d.file_name() else { continue };
            let to = trash.join(name);
            fs::rename(&d, &to).map_err(io_err(format!("removing {}", d.display())))?;
            moved.push(to);
        }
        for d in moved {
            tree::remove_tree(&d).map_err(io_err(format!("removing {}", d.display())))?;
        }
        Ok(())
    }

    /// Removes temp dirs of interrupted writes (whose writer no longer holds the lock)
    /// and leftover trash. Returns how many interrupted writes it removed (trash is
    /// emptied silently).
    ///
    /// # Errors
    /// I/O errors listing the store.
    pub fn cleanup_stale(&self) -> Result<usize> {
        let mut removed = 0;
        for (sub, always) in [(TMP, false), (TRASH, true)] {
            let dir = self.root().join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
            };
            for ent in entries.filter_map(|e| e.ok()) {
                let path = ent.path();
                let stale = always || self.is_stale(&path);
                if stale {
                    match tree::remove_tree(&path) {
                        Ok(()) if always => {
                            tracing::debug!(path = %path.display(), "emptied the trash");
                        }
                        Ok(()) => {
                            tracing::info!(path = %path.display(), "removed an interrupted snapshot write");
                            removed += 1;
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "could not remove a stale temp dir")
                        }
                    }
                }
            }
        }
        Ok(removed)
    }

    fn is_stale(&self, path: &Path) -> bool {
        let lock = path.join(LOCK);
        if lock.exists() {
            // the writer holds it for as long as it lives
            return matches!(FileLock::try_exclusive(&lock), Ok(Some(_)));
        }
        // no lock yet: only stale once older than the grace period
        fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= self.stale_grace)
    }

    fn gc_blocking(&self, policy: GcPolicy) -> Result<GcReport> {
        let mut report = GcReport::default();
        report.interrupted_writes_removed = self.cleanup_stale()?;
        let _lock = self.lock(true)?;
        let leases = self.leases()?;
        let mut doomed = Vec::new();
        for meta in policy.doomed(self.scan(None)?, OffsetDateTime::now_utc()) {
            if leases.contains_key(&meta.id) {
                report.kept_in_use.push(meta.id);
                continue;
            }
            doomed.push(self.root().join(&meta.name).join(meta.id.as_str()));
            report.removed.push(meta.id);
        }
        self.trash(doomed)?;
        Ok(report)
    }
}

/// Marks `dir` as a top of a directory hierarchy (`FS_TOPDIR_FL`, `chattr +T`), best
/// effort: ext4 then places each directory made in it (a pending snapshot) in a block
/// group with free inodes, and the files of that snapshot next to it. Without it, new
/// files land in the parent's group and, when that group is crowded, every file
/// creation searches for a free inode: on the bench machine creating the ~1,000 files of
/// an imported snapshot took ~0.8 ms each (~900 ms), and 0.04 ms each with the flag.
/// Other file systems ignore or refuse the flag; either is fine.
fn spread_new_dirs(dir: &Path) {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let Ok(d) = fs::File::open(dir) else { return };
    match ioctl_getflags(&d) {
        Ok(flags) if !flags.contains(IFlags::TOPDIR) => {
            if let Err(e) = ioctl_setflags(&d, flags | IFlags::TOPDIR) {
                tracing::debug!(error = %e, dir = %dir.display(), "could not mark the snapshot temp dir as a top directory");
            }
        }
        _ => {}
    }
}

/// Makes an imported workspace what a captured one is: immutable git objects read-only
/// (a hardlink restore must not hand a sandbox a writable path into the store) and the
/// index's stat data matching the written files (so the first start re-hashes nothing).
fn seal_import(workspace: &Path) -> io::Result<()> {
    fn walk(root: &Path, dir: &Path, map: &mut tree::StatMap) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        for ent in fs::read_dir(dir)? {
            let path = ent?.path();
            let meta = fs::symlink_metadata(&path)?;
            let rel = path.strip_prefix(root).unwrap_or(&path).to_owned();
            if meta.is_dir() {
                walk(root, &path, map)?;
            } else if tree::is_immutable_git_object(&rel) {
                let mode = meta.permissions().mode() & !0o222;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
            } else if !rel.starts_with(".git") {
                map.insert(
                    rel.as_os_str().as_bytes().to_vec(),
                    tree::StatData::from_meta(&meta),
                );
            }
        }
        Ok(())
    }
    let mut map = tree::StatMap::new();
    walk(workspace, workspace, &mut map)?;
    if let Err(e) = super::gitindex::refresh_index(workspace, &map, true) {
        // correctness does not depend on it: git re-hashes what it cannot trust
        tracing::warn!(error = %e, "could not refresh the imported snapshot's index");
    }
    Ok(())
}

/// The order of snapshot listings (newest first is descending): creation time, then id.
pub(crate) fn sort_key(m: &SnapshotMeta) -> (i128, String) {
    (m.created_at.unix_timestamp_nanos(), m.id.to_string())
}

/// The page of at most `limit` snapshots of `all` (newest first) that come after the
/// [`sort_key`] `after`, with the cursor of the next page when there is more.
pub(crate) fn page_after(
    all: Vec<SnapshotMeta>,
    after: Option<(i128, String)>,
    limit: usize,
) -> Page<SnapshotMeta> {
    let mut items: Vec<SnapshotMeta> = all
        .into_iter()
        .filter(|m| after.as_ref().is_none_or(|a| sort_key(m) < *a))
        .take(limit + 1)
        .collect();
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(encode_cursor)
    } else {
        None
    };
    Page { items, next }
}

fn encode_cursor(m: &SnapshotMeta) -> Cursor {
    Cursor(format!("{}/{}", m.created_at.unix_timestamp_nanos(), m.id))
}

/// The [`sort_key`] a listing cursor stands for.
pub(crate) fn decode_cursor(c: &Cursor) -> Result<(i128, String)> {
    let bad = || {
        Error::InvalidOptions(format!(
            "invalid snapshot listing cursor `{}`",
            c.0.escape_debug()
        ))
    };
    let (nanos, id) = c.0.split_once('/').ok_or_else(bad)?;
    Ok((nanos.parse().map_err(|_| bad())?, id.to_owned()))
}

#[async_trait]
impl SnapshotStore for LocalSnapshotStore {
    /// Removes what `policy` does not keep, except snapshots a sandbox holds a lease
    /// on, and stale temp dirs of interrupted writes.
    async fn gc(&self, policy: &GcPolicy) -> Result<GcReport> {
        let store = self.clone();
        let policy = *policy;
        blocking(move || store.gc_blocking(policy)).await
    }

    async fn list(
        &self,
        name: Option<&str>,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<SnapshotMeta>> {
        if let Some(n) = name {
            check_name(n)?;
        }
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = limit.max(1);
        let store = self.clone();
        let name = name.map(str::to_owned);
        let all = blocking(move || store.scan(name.as_deref())).await?;
        Ok(page_after(all, after, limit))
    }

    async fn get(&self, id: &SnapshotId) -> Result<Option<SnapshotMeta>> {
        let store = self.clone();
        let id = id.clone();
        blocking(move || {
            let Some(dir) = store.locate(&id)? else {
                return Ok(None);
            };
            match Self::read_manifest(&dir) {
                Ok(meta) => Ok(Some(meta)),
                Err(e) => Err(Error::provider(
                    "local",
                    format!(
                        "the manifest of snapshot {id} is unreadable ({e}); delete the snapshot"
                    ),
                )),
            }
        })
        .await
    }

    /// Deletes a snapshot, unless a sandbox holds a lease on it.
    async fn delete(&self, id: &SnapshotId) -> Result<()> {
        let store = self.clone();
        let id = id.clone();
        blocking(move || {
            let _lock = store.lock(true)?;
            let Some(dir) = store.locate(&id)? else {
                return Err(Error::SnapshotNotFound { id: id.to_string() });
            };
            if let Some(holders) = store.leases()?.get(&id) {
                let names: Vec<String> = holders.iter().map(ToString::to_string).collect();
                return Err(Error::InvalidOptions(format!(
                    "snapshot {id} is in use by sandbox {}; remove {} first",
                    names.join(", "),
                    if names.len() == 1 { "it" } else { "them" }
                )));
            }
            store.trash(vec![dir])
        })
        .await
    }

    fn page_size(&self) -> usize {
        self.page_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, created_secs: i64) -> SnapshotMeta {
        SnapshotMeta {
            id: SnapshotId::new(id).expect("a valid id"),
            name: "key".into(),
            status: SnapshotStatus::Ready,
            created_at: OffsetDateTime::from_unix_timestamp(created_secs).expect("a time"),
            commit: None,
            branch: None,
            source_url: None,
            recipe_digest: "digest".into(),
            size_bytes: 0,
            error: None,
            provider_data: serde_json::Value::Null,
        }
    }

    /// The pages of the local and Docker listings: newest first, every snapshot once,
    /// also when two were made in the same instant.
    #[test]
    fn pages_walk_newest_first_with_every_snapshot_once() {
        let mut all = vec![
            meta("0000000000005-a", 5),
            meta("0000000000004-b", 4),
            meta("0000000000004-a", 4),
            meta("0000000000002-a", 2),
            meta("0000000000001-a", 1),
        ];
        all.sort_by_key(|m| std::cmp::Reverse(sort_key(m)));
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let after = cursor
                .as_ref()
                .map(decode_cursor)
                .transpose()
                .expect("our cursor");
            let page = page_after(all.clone(), after, 2);
            assert!(page.items.len() <= 2);
            seen.extend(page.items.iter().map(|m| m.id.to_string()));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = all.iter().map(|m| m.id.to_string()).collect();
        assert_eq!(seen, expected);
        assert_eq!(seen[1..3], ["0000000000004-b", "0000000000004-a"]);
    }
}
