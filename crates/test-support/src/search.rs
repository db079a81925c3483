//! Searching a tree for a secret, for leak assertions.

use std::path::{Path, PathBuf};

/// Every file under `root` (recursively, symlinks not followed) whose bytes contain
/// `needle`. Unreadable entries are skipped.
pub fn files_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ty) = e.file_type() else { continue };
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        hits.push(e.path());
                    }
                }
            }
        }
    }
    hits
}
