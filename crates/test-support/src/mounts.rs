//! Undoing the mounts a test left behind (overlay-restored workspaces), so its
//! temporary directory can be removed and no mount outlives the test.

use std::path::{Path, PathBuf};

/// A temporary data directory: anything still mounted below it (a test's warm
/// sandboxes) is unmounted, lazily and deepest first, before the directory is removed,
/// so a failed test leaves no mount behind.
pub struct TempHome(tempfile::TempDir);

impl TempHome {
    /// A fresh directory under the system's temporary directory, named `<prefix>XXXX`.
    ///
    /// # Panics
    /// When the directory cannot be created (a test helper).
    pub fn new(prefix: &str) -> Self {
        #[allow(clippy::expect_used)]
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("creating a temporary directory");
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        unmount_all_under(self.0.path());
    }
}

/// The mount points at or below `dir` (deepest first), as `/proc/self/mountinfo`
/// lists them; empty when it cannot be read.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// Lazily unmounts every mount point at or below `dir` (deepest first). Best effort:
/// errors are ignored (nothing mounted, not root).
pub fn unmount_all_under(dir: &Path) {
    for p in mounts_under(dir) {
        let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let octal = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = octal.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_octal() {
        assert_eq!(super::unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
    }
}
