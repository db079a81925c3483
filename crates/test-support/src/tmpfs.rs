//! A small tmpfs mounted under a test's own temporary directory, to fill a disk on
//! purpose (out-of-space tests). Needs the privilege to mount (tests here run as
//! root); callers skip with a printed reason when [`SmallTmpfs::mount`] fails.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A tmpfs of a fixed size at a directory; unmounted (lazily) on drop.
#[derive(Debug)]
pub struct SmallTmpfs {
    dir: PathBuf,
}

impl SmallTmpfs {
    /// Creates `dir` and mounts a tmpfs of `bytes` bytes there.
    ///
    /// # Errors
    /// When the directory cannot be created or mounting is not permitted.
    pub fn mount(dir: &Path, bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let data = CString::new(format!("size={bytes},mode=0755"))?;
        rustix::mount::mount(
            "headstart-test",
            dir,
            "tmpfs",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            data.as_c_str(),
        )
        .with_context(|| format!("mounting a tmpfs at {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
    }
}
