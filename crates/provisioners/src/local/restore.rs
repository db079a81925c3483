//! Restoring a snapshot's workspace into a sandbox, and probing which methods work.
//!
//! Methods (see [`RestoreMethod`]): an overlay mount (O(1), root only), `FICLONE`
//! copy-on-write clones (filesystems with reflink), hardlinked git objects plus copied
//! everything else, plain copies. After a copy-based restore the repository's index is
//! refreshed with the copies' stat data (see [`super::gitindex`]), so the first
//! `git status` does not re-hash the tree. This module does not decide which snapshot
//! to restore; the provider does.
//!
//! Measured on the 2-core development VM (root filesystem ext4 on virtio, and an XFS
//! `reflink=1` loop image; medians of 5, page cache warm, other builds running, so
//! ranges over two runs; `cargo test -p provisioners --test it local_measure --
//! --ignored --nocapture`):
//!
//! | restore of a repository with | 1,000 files | 10,000 files |
//! |---|---|---|
//! | overlay (ext4 or XFS) | 0.5–1.8 ms | 0.7 ms |
//! | copy, ext4 (1–4 threads) | 290–750 ms | 150 ms–3.2 s (journal-bound, very noisy) |
//! | hardlinked objects + copy, ext4 | 250–510 ms | 140 ms–2.1 s |
//! | reflink, XFS | 21–35 ms | 250–390 ms |
//! | copy, XFS | 20–58 ms | 250–450 ms |
//! | hardlinked objects + copy, XFS | 27–50 ms | 230–300 ms |
//!
//! The first `git status` after a copy-based restore of 10,000 files takes 18–50 ms
//! with the refreshed index against 120–870 ms with the index as copied (every file
//! re-hashed); after an overlay restore 40–45 ms (lstat through overlayfs is slower,
//! but there is nothing to refresh). Hence `Auto`: overlay, else reflink, else
//! hardlink-copy; and always the index refresh for copies.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::config::RestoreMethod;
use super::gitindex::{self, Refresh};
use sandbox_core::tree::{self, CopyPlan, CopyStats, DataMethod};

/// What the data directory's filesystem supports, probed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    /// An overlay mount works here (root, overlayfs available, upper layer allowed).
    pub overlay: bool,
    /// `FICLONE` works between files of the data directory.
    pub reflink: bool,
}

impl Capabilities {
    /// The method `Auto` picks: overlay, else reflink, else hardlink-copy. (Measured on
    /// this kind of machine: overlay ~1.5 ms for any size, reflink a fraction of a copy,
    /// hardlinking the git objects always cheaper than copying them.)
    pub fn best(self) -> RestoreMethod {
        if self.overlay {
            RestoreMethod::Overlay
        } else if self.reflink {
            RestoreMethod::Reflink
        } else {
            RestoreMethod::HardlinkCopy
        }
    }

    /// Whether `method` can work here.
    pub fn supports(self, method: RestoreMethod) -> bool {
        match method {
            RestoreMethod::Overlay => self.overlay,
            RestoreMethod::Reflink => self.reflink,
            RestoreMethod::Auto | RestoreMethod::HardlinkCopy | RestoreMethod::Copy => true,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedProbe {
    version: u32,
    dev: u64,
    euid: u32,
    caps: Capabilities,
}

const PROBE_FILE: &str = ".restore-probe.json";

/// The capabilities of `dir`, probed once and cached in `dir/.restore-probe.json` for
/// as long as `dir` is on the same device and the user is the same.
pub(crate) fn probe_cached(dir: &Path) -> io::Result<Capabilities> {
    let dev = fs::metadata(dir)?.dev();
    let euid = rustix::process::geteuid().as_raw();
    let path = dir.join(PROBE_FILE);
    if let Ok(bytes) = fs::read(&path) {
        if let Ok(c) = serde_json::from_slice::<CachedProbe>(&bytes) {
            if c.version == 1 && c.dev == dev && c.euid == euid {
                return Ok(c.caps);
            }
        }
    }
    let caps = probe(dir)?;
    let cached = CachedProbe {
        version: 1,
        dev,
        euid,
        caps,
    };
    if let Err(e) = super::record::write_json_atomic(&path, &cached) {
        tracing::debug!(error = %e, "could not cache the restore probe");
    }
    Ok(caps)
}

/// Probes `dir` (which must exist) for overlay and `FICLONE` support, in a scratch
/// directory it removes again.
pub(crate) fn probe(dir: &Path) -> io::Result<Capabilities> {
    let scratch = dir.join(format!(".probe-{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir(&scratch)?;
    let caps = Capabilities {
        overlay: probe_overlay(&scratch),
        reflink: probe_reflink(&scratch),
    };
    let _ = tree::remove_tree(&scratch);
    tracing::debug!(dir = %dir.display(), ?caps, "probed restore methods");
    Ok(caps)
}

fn probe_overlay(scratch: &Path) -> bool {
    if !rustix::process::geteuid().is_root() {
        return false;
    }
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|d| scratch.join(d));
    for d in [&lower, &upper, &work, &merged] {
        if fs::create_dir(d).is_err() {
            return false;
        }
    }
    if fs::write(lower.join("f"), b"x").is_err() {
        return false;
    }
    if mount_overlay(&lower, &upper, &work, &merged).is_err() {
        return false;
    }
    let ok = fs::write(merged.join("f"), b"y").is_ok()
        && fs::read(lower.join("f")).is_ok_and(|b| b == b"x");
    // lazily: a plain unmount syncs the upper filesystem (~0.2 s here)
    let unmounted = rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH).is_ok();
    ok && unmounted
}

fn probe_reflink(scratch: &Path) -> bool {
    let (a, b) = (scratch.join("reflink-a"), scratch.join("reflink-b"));
    if fs::write(&a, vec![7u8; 8192]).is_err() {
        return false;
    }
    let (Ok(src), Ok(dst)) = (fs::File::open(&a), fs::File::create(&b)) else {
        return false;
    };
    rustix::fs::ioctl_ficlone(&dst, &src).is_ok()
}

fn overlay_path(p: &Path) -> io::Result<&str> {
    let s = p.to_str().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not UTF-8", p.display()),
        )
    })?;
    if s.contains([',', ':', '\\', '\n']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{s} contains `,`, `:` or `\\`, which overlay mount options cannot carry; move \
                 the data directory (HEADSTART_HOME) to a plainer path"
            ),
        ));
    }
    Ok(s)
}

/// Mounts an overlay at `target`: `lower` read-only, writes to `upper` (`work` is the
/// overlay's scratch directory, on the same filesystem as `upper`), the way the local
/// provider restores a snapshot with [`RestoreMethod::Overlay`]. With
/// `redirect_dir=on` where the kernel has it, so renaming a directory that came from the
/// snapshot works (without it, `rename(2)` of a lower directory fails with `EXDEV`
/// and `git mv dir other` breaks). Needs root (or `CAP_SYS_ADMIN`); unmount with
/// `umount(2)`.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for a path that is not UTF-8 or holds `,`, `:`,
/// `\` or a newline (overlay options cannot carry them); the mount's error otherwise.
pub fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> io::Result<()> {
    let base = format!(
        "lowerdir={},upperdir={},workdir={}",
        overlay_path(lower)?,
        overlay_path(upper)?,
        overlay_path(work)?
    );
    let mount = |data: String| {
        let data = std::ffi::CString::new(data)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            rustix::mount::MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(io::Error::from)
    };
    let result = match mount(format!("{base},redirect_dir=on")) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => mount(base),
        other => other,
    };
    result.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("mounting an overlay at {}: {e}", target.display()),
        )
    })
}

/// Unmounts `target` (lazily if it is busy).
pub(crate) fn unmount(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH).map_err(Into::into)
        }
        Err(e) => Err(e.into()),
    }
}

/// True when something is mounted at `target` (its device differs from its parent's).
pub(crate) fn is_mounted(target: &Path) -> bool {
    let Some(parent) = target.parent() else {
        return false;
    };
    match (fs::symlink_metadata(target), fs::metadata(parent)) {
        (Ok(t), Ok(p)) => t.dev() != p.dev(),
        _ => false,
    }
}

/// The overlay directories of a sandbox directory.
pub(crate) struct OverlayDirs {
    pub(crate) upper: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) merged: PathBuf,
}

impl OverlayDirs {
    pub(crate) fn of(sandbox_dir: &Path) -> Self {
        Self {
            upper: sandbox_dir.join("upper"),
            work: sandbox_dir.join("work"),
            merged: sandbox_dir.join("workspace"),
        }
    }

    /// Mounts the overlay unless it already is (after a reboot or an unmount it is not).
    pub(crate) fn ensure_mounted(&self, lower: &Path) -> io::Result<bool> {
        if is_mounted(&self.merged) {
            return Ok(false);
        }
        if !lower.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the snapshot this sandbox is layered on ({}) is gone; recreate the sandbox \
                     with --force-create",
                    lower.display()
                ),
            ));
        }
        for d in [&self.upper, &self.work, &self.merged] {
            fs::create_dir_all(d)?;
        }
        mount_overlay(lower, &self.upper, &self.work, &self.merged)?;
        Ok(true)
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub(crate) struct Restored {
    pub(crate) method: RestoreMethod,
    pub(crate) stats: CopyStats,
    pub(crate) index: Option<Refresh>,
    pub(crate) elapsed: std::time::Duration,
}

/// Restores the snapshot workspace `lower` into `sandbox_dir/workspace` by `method`
/// (a concrete one, not `Auto`).
pub(crate) fn restore(
    method: RestoreMethod,
    lower: &Path,
    sandbox_dir: &Path,
    threads: usize,
) -> io::Result<Restored> {
    let started = Instant::now();
    let dirs = OverlayDirs::of(sandbox_dir);
    let (stats, index) = match method {
        RestoreMethod::Overlay => {
            dirs.ensure_mounted(lower)?;
            (CopyStats::default(), None)
        }
        RestoreMethod::Reflink
        | RestoreMethod::HardlinkCopy
        | RestoreMethod::Copy
        | RestoreMethod::Auto => {
            let plan = CopyPlan {
                data: if method == RestoreMethod::Reflink {
                    DataMethod::Reflink
                } else {
                    DataMethod::Copy
                },
                hardlink_git_objects: method == RestoreMethod::HardlinkCopy,
                readonly_git_objects: false,
                collect_stats: true,
                git_metadata_only: false,
                threads,
            };
            let (stats, map) = tree::copy_tree(lower, &dirs.merged, &plan)?;
            let refresh = gitindex::refresh_index(&dirs.merged, &map, false)?;
            (stats, Some(refresh))
        }
    };
    Ok(Restored {
        method,
        stats,
        index,
        elapsed: started.elapsed(),
    })
}

/// Copies a sandbox workspace into a new snapshot workspace at `dest`: every file
/// copied (or cloned, when `reflink`), git objects made read-only, the copy's index
/// refreshed (racily clean entries verified by content) so restores, overlay ones
/// especially, match it exactly and need no re-hash.
pub(crate) fn capture(
    workspace: &Path,
    dest: &Path,
    reflink: bool,
    threads: usize,
) -> io::Result<CopyStats> {
    let plan = CopyPlan {
        data: if reflink {
            DataMethod::Reflink
        } else {
            DataMethod::Copy
        },
        hardlink_git_objects: false,
        readonly_git_objects: true,
        collect_stats: true,
        git_metadata_only: false,
        threads,
    };
    let (stats, map) = tree::copy_tree(workspace, dest, &plan)?;
    let refresh = gitindex::refresh_index(dest, &map, true)?;
    tracing::debug!(?refresh, "refreshed the snapshot's index");
    Ok(stats)
}
