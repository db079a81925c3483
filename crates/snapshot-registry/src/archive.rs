//! A workspace as two tar+zstd layers: the `.git` directory and everything else, both
//! with modes and mtimes kept (the index is then older than the worktree files it
//! describes, as in the captured snapshot, so the import refreshes its stat data
//! without re-hashing every file).
//!
//! Unpacking accepts regular files, directories and symlinks only, inside the target
//! (no absolute paths, no `..`, no device nodes, no hard links out).

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Component, Path, PathBuf};

/// Which part of the workspace a layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// `.git/` and everything below it.
    Git,
    /// Everything but `.git/`.
    Tree,
    /// The whole workspace (a Docker snapshot image's `workspace/` layer).
    Whole,
}

const ZSTD_LEVEL: i32 = 3;

/// Writes `part` of `workspace` as tar+zstd into `out`.
pub(crate) fn pack(workspace: &Path, part: Part, out: &Path) -> io::Result<()> {
    let file = BufWriter::new(fs::File::create(out)?);
    let enc = zstd::Encoder::new(file, ZSTD_LEVEL)?;
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    match part {
        Part::Whole => {
            tar.mode(tar::HeaderMode::Complete);
            tar.append_dir_all(".", workspace)?;
        }
        Part::Git => {
            tar.mode(tar::HeaderMode::Complete);
            let git = workspace.join(".git");
            if git.is_dir() {
                tar.append_dir_all(".git", &git)?;
            }
        }
        Part::Tree => {
            tar.mode(tar::HeaderMode::Complete);
            let mut entries: Vec<_> = fs::read_dir(workspace)?.collect::<io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for ent in entries {
                let name = ent.file_name();
                if name == ".git" {
                    continue;
                }
                let ty = ent.file_type()?;
                if ty.is_dir() {
                    tar.append_dir_all(&name, ent.path())?;
                } else {
                    tar.append_path_with_name(ent.path(), &name)?;
                }
            }
        }
    }
    let enc = tar.into_inner()?;
    let mut file = enc.finish()?;
    io::Write::flush(&mut file)?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Writes the whole `workspace` as a plain tar into `out`, every entry under
/// `prefix/` (what the engine's archive API takes to put it at `/prefix`).
pub(crate) fn pack_plain(workspace: &Path, prefix: &str, out: &Path) -> io::Result<()> {
    let file = BufWriter::with_capacity(1 << 20, fs::File::create(out)?);
    let mut tar = tar::Builder::new(file);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    tar.append_dir_all(prefix, workspace)?;
    let mut file = tar.into_inner()?;
    io::Write::flush(&mut file)?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Unpacks the plain tar `archive` of a whole workspace whose entries sit under
/// `prefix/` (as the engine's archive API sends a directory) into `dest`; returns the
/// bytes of regular files. The same checks as [`unpack`]; hard links are allowed
/// between entries of the archive.
pub(crate) fn unpack_plain(archive: &Path, dest: &Path, prefix: &str) -> io::Result<u64> {
    let file = BufReader::with_capacity(1 << 16, fs::File::open(archive)?);
    unpack_entries(file, dest, Part::Whole, Some(prefix))
}

/// Unpacks the tar+zstd `archive`, a layer holding `part`, into `dest`; returns the
/// bytes of regular files. An entry outside its part (a `.git` path in the tree layer,
/// anything else in the git layer) is refused, so the two layers of a snapshot write
/// disjoint trees and may unpack at once.
pub(crate) fn unpack(archive: &Path, dest: &Path, part: Part) -> io::Result<u64> {
    let file = BufReader::with_capacity(1 << 16, fs::File::open(archive)?);
    let dec = zstd::Decoder::with_buffer(file)?;
    unpack_tar(dec, dest, part)
}

fn unpack_tar(reader: impl Read, dest: &Path, part: Part) -> io::Result<u64> {
    unpack_entries(reader, dest, part, None)
}

/// A relative path of plain components (no root, no `..`), `.` components dropped.
fn plain(path: &Path) -> Option<PathBuf> {
    let ok = !path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    ok.then(|| path.components().collect())
}

fn unpack_entries(
    reader: impl Read,
    dest: &Path,
    part: Part,
    strip: Option<&str>,
) -> io::Result<u64> {
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(false);
    tar.set_overwrite(false);
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    // `dest` is a new directory only this layer writes below its part (the other
    // layer's entries are refused here and there), so a path can only go through a
    // symlink this loop made: it refuses those instead of canonicalizing every entry's
    // parent (`unpack_in`: ~23 syscalls an entry)
    let mut symlinks: HashSet<PathBuf> = HashSet::new();
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    let mut bytes = 0u64;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let outside = || {
            invalid(format!(
                "the archive names a path outside the workspace: {}",
                path.display()
            ))
        };
        let mut rel = plain(&path).ok_or_else(outside)?;
        if let Some(prefix) = strip {
            rel = rel
                .strip_prefix(prefix)
                .map_err(|_| outside())?
                .to_path_buf();
        }
        let Some(first) = rel.components().next() else {
            continue; // `.`: the workspace itself
        };
        let in_git = first.as_os_str() == ".git";
        if part != Part::Whole && in_git != (part == Part::Git) {
            return Err(invalid(format!(
                "the {} layer holds {}, which belongs to the other layer",
                if part == Part::Git { "git" } else { "tree" },
                path.display()
            )));
        }
        let ty = entry.header().entry_type();
        let hard = ty.is_hard_link() && part == Part::Whole;
        if !(ty.is_file() || ty.is_dir() || ty.is_symlink() || hard) {
            return Err(invalid(format!(
                "the archive holds {} of an unsupported type",
                path.display()
            )));
        }
        if rel.ancestors().skip(1).any(|a| symlinks.contains(a)) {
            return Err(invalid(format!(
                "the archive entry {} leaves the workspace through a symlink",
                path.display()
            )));
        }
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !dirs.contains(parent) {
                fs::create_dir_all(dest.join(parent))?;
                dirs.extend(parent.ancestors().map(Path::to_path_buf));
            }
        }
        if hard {
            // a second name of a file this archive wrote before (the engine's archives
            // keep hard links), never of anything outside
            let target = entry
                .link_name()?
                .and_then(|t| plain(&t))
                .and_then(|t| match strip {
                    Some(prefix) => t.strip_prefix(prefix).ok().map(Path::to_path_buf),
                    None => Some(t),
                })
                .filter(|t| !t.as_os_str().is_empty())
                .filter(|t| !t.ancestors().any(|a| symlinks.contains(a)))
                .ok_or_else(|| {
                    invalid(format!(
                        "the archive entry {} links outside the workspace",
                        path.display()
                    ))
                })?;
            fs::hard_link(dest.join(&target), dest.join(&rel))
                .map_err(|e| io::Error::new(e.kind(), format!("linking {}: {e}", rel.display())))?;
            continue;
        }
        if ty.is_file() {
            bytes += entry.header().size()?;
        }
        entry
            .unpack(dest.join(&rel))
            .map_err(|e| io::Error::new(e.kind(), format!("unpacking {}: {e}", rel.display())))?;
        if ty.is_dir() {
            dirs.insert(rel);
        } else if ty.is_symlink() {
            symlinks.insert(rel);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_parts_and_refuses_escapes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ws = tmp.path().join("ws");
        fs::create_dir_all(ws.join(".git/objects")).expect("mkdir");
        fs::create_dir_all(ws.join("src")).expect("mkdir");
        fs::write(ws.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        fs::write(ws.join("src/lib.rs"), "fn main() {}\n").expect("write");
        std::os::unix::fs::symlink("src/lib.rs", ws.join("link")).expect("symlink");
        let git = tmp.path().join("git.tar.zst");
        let tree = tmp.path().join("tree.tar.zst");
        pack(&ws, Part::Git, &git).expect("pack git");
        pack(&ws, Part::Tree, &tree).expect("pack tree");
        let out = tmp.path().join("out");
        fs::create_dir(&out).expect("mkdir");
        let b1 = unpack(&tree, &out, Part::Tree).expect("unpack tree");
        assert!(!out.join(".git").exists(), "the tree layer holds no .git");
        let b2 = unpack(&git, &out, Part::Git).expect("unpack git");
        // a layer never writes into the other's part
        let out3 = tmp.path().join("out3");
        fs::create_dir(&out3).expect("mkdir");
        assert!(unpack(&git, &out3, Part::Tree).is_err());
        assert!(unpack(&tree, &out3, Part::Git).is_err());
        assert_eq!(b1 + b2, 13 + 21);
        assert_eq!(
            fs::read_to_string(out.join("src/lib.rs")).expect("read"),
            "fn main() {}\n"
        );
        assert_eq!(
            fs::read_link(out.join("link")).expect("link"),
            Path::new("src/lib.rs")
        );

        // a hand-made archive with `..` is refused
        let mut raw = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_gnu_mut().expect("gnu").name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        raw.append(&h, &b"x"[..]).expect("append");
        let data = raw.into_inner().expect("tar");
        let out2 = tmp.path().join("out2");
        fs::create_dir(&out2).expect("mkdir");
        assert!(unpack_tar(&data[..], &out2, Part::Tree).is_err());
        assert!(!tmp.path().join("escape").exists());

        // a symlink out, then an entry through it, is refused before writing
        let mut raw = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        raw.append_link(&mut h, "out", tmp.path()).expect("link");
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        raw.append_data(&mut h, "out/through", &b"x"[..])
            .expect("append");
        let data = raw.into_inner().expect("tar");
        let out4 = tmp.path().join("out4");
        fs::create_dir(&out4).expect("mkdir");
        assert!(unpack_tar(&data[..], &out4, Part::Tree).is_err());
        assert!(!tmp.path().join("through").exists());
    }

    #[test]
    fn a_plain_workspace_archive_round_trips_under_its_prefix_and_links_stay_inside() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ws = tmp.path().join("ws");
        fs::create_dir_all(ws.join(".git")).expect("mkdir");
        fs::write(ws.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        fs::write(ws.join("a.txt"), "a\n").expect("write");
        let tar = tmp.path().join("ws.tar");
        pack_plain(&ws, "workspace", &tar).expect("pack");
        let out = tmp.path().join("out");
        fs::create_dir(&out).expect("mkdir");
        assert_eq!(
            unpack_plain(&tar, &out, "workspace").expect("unpack"),
            2 + 21
        );
        assert_eq!(fs::read_to_string(out.join("a.txt")).expect("read"), "a\n");
        assert!(out.join(".git/HEAD").is_file());

        let archive = |entries: &[(&str, tar::EntryType, &str)]| {
            let mut raw = tar::Builder::new(Vec::new());
            for (path, ty, link) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(*ty);
                h.set_mode(0o644);
                if *ty == tar::EntryType::Regular {
                    h.set_size(1);
                    raw.append_data(&mut h, path, &b"x"[..]).expect("append");
                } else {
                    h.set_size(0);
                    raw.append_link(&mut h, path, link).expect("link");
                }
            }
            let file = tmp.path().join(format!("t{}.tar", entries.len()));
            fs::write(&file, raw.into_inner().expect("tar")).expect("write");
            file
        };
        // a hard link to an entry of the archive is a second name of it
        let t = archive(&[
            ("workspace/f", tar::EntryType::Regular, ""),
            ("workspace/g", tar::EntryType::Link, "workspace/f"),
        ]);
        let o1 = tmp.path().join("o1");
        fs::create_dir(&o1).expect("mkdir");
        unpack_plain(&t, &o1, "workspace").expect("unpack");
        assert_eq!(fs::read(o1.join("g")).expect("read"), b"x");
        // a hard link out of the workspace, or an entry outside the prefix, is refused
        let t = archive(&[("workspace/g", tar::EntryType::Link, "etc/passwd")]);
        let o2 = tmp.path().join("o2");
        fs::create_dir(&o2).expect("mkdir");
        assert!(unpack_plain(&t, &o2, "workspace").is_err());
        assert!(!o2.join("g").exists());
        let t = archive(&[
            ("workspace/f", tar::EntryType::Regular, ""),
            ("other/f", tar::EntryType::Regular, ""),
        ]);
        let o3 = tmp.path().join("o3");
        fs::create_dir(&o3).expect("mkdir");
        assert!(unpack_plain(&t, &o3, "workspace").is_err());
    }
}
