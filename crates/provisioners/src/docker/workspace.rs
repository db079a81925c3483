//! Host workspaces of Docker sandboxes and the stored copies snapshots keep of them.
//!
//! PLACEHOLDER until `provisioners::local` lands: plain recursive copies. It will
//! delegate to the local store's machinery (manifest + workspace, atomic rename,
//! overlay/reflink/hardlink restore).

use std::path::{Path, PathBuf};

use sandbox_core::{Error, Result, SandboxName, SnapshotId, SnapshotMeta};

#[derive(Debug)]
pub(crate) struct Workspaces {
    root: PathBuf,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

pub(crate) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut size = 0;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            size += copy_tree(&entry.path(), &dest)?;
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dest)?;
        } else {
            size += std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(size)
}

impl Workspaces {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub(crate) fn sandbox_dir(&self, name: &SandboxName) -> PathBuf {
        self.root.join("workspaces").join(name.as_str())
    }

    fn snapshot_dir(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("snapshots").join(id.as_str())
    }

    pub(crate) fn create_empty(&self, name: &SandboxName) -> Result<PathBuf> {
        let dir = self.sandbox_dir(name);
        self.remove(name)?;
        std::fs::create_dir_all(&dir)
            .map_err(io(format!("creating workspace {}", dir.display())))?;
        Ok(dir)
    }

    pub(crate) fn restore(&self, id: &SnapshotId, name: &SandboxName) -> Result<PathBuf> {
        let dir = self.sandbox_dir(name);
        self.remove(name)?;
        let from = self.snapshot_dir(id).join("workspace");
        copy_tree(&from, &dir).map_err(io(format!(
            "restoring snapshot {id} into {}",
            dir.display()
        )))?;
        Ok(dir)
    }

    /// Re-makes the workspace's mount (overlay restores) if it is gone; no-op otherwise.
    pub(crate) fn ensure_mounted(&self, _name: &SandboxName) -> Result<()> {
        Ok(())
    }

    pub(crate) fn remove(&self, name: &SandboxName) -> Result<()> {
        let dir = self.sandbox_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("removing workspace {}", dir.display()),
                e,
            )),
        }
    }

    pub(crate) fn save(&self, workspace: &Path, meta: &SnapshotMeta) -> Result<u64> {
        let final_dir = self.snapshot_dir(&meta.id);
        let tmp = self
            .root
            .join("snapshots")
            .join(format!(".tmp-{}", meta.id));
        let size = copy_tree(workspace, &tmp.join("workspace"))
            .map_err(io(format!("storing workspace {}", workspace.display())))?;
        let manifest = serde_json::to_vec_pretty(meta)
            .map_err(|e| Error::provider(super::PROVIDER, format!("manifest: {e}")))?;
        std::fs::write(tmp.join("manifest.json"), manifest)
            .map_err(io("writing the snapshot manifest".into()))?;
        std::fs::rename(&tmp, &final_dir).map_err(io("publishing the snapshot".into()))?;
        Ok(size)
    }

    pub(crate) fn delete_saved(&self, id: &SnapshotId) -> Result<()> {
        let dir = self.snapshot_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing snapshot {}", dir.display()), e)),
        }
    }

    pub(crate) fn has_saved(&self, id: &SnapshotId) -> bool {
        self.snapshot_dir(id).join("workspace").is_dir()
    }
}
