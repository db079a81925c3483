//! Refreshing the stat data in a copied repository's index (`.git/index`).
//!
//! Git decides whether a worktree file may have changed by comparing the stat data
//! cached in the index (ctime, mtime, inode, uid, gid, size, mode) with the file's.
//! A copied file has a new inode and ctime, so after a copy-based restore the first
//! `git status` (or libgit2 diff, which compares the inode unconditionally and ignores
//! `core.checkStat`) would re-hash every file. The copy already knows the new stat data
//! of every file it wrote, and their contents are byte-identical to the originals, so
//! the index entries are patched in place and the checksum recomputed: no file is read
//! again and the index's extensions (cache tree, untracked cache) survive.
//!
//! Racy git: an entry whose mtime is not older than the index file itself may describe a
//! file changed within the same second after the index was written, so its stat data
//! proves nothing. Only entries whose recorded mtime (to the nanosecond) and size equal
//! the file's, and that are older than the index, are patched. With `verify`, racily
//! clean entries and entries that match only to the second (git built without
//! `USE_NSEC` leaves stale nanoseconds) are checked by hashing the file as a blob (what
//! git itself would do) and patched when equal; the index is then written in a later second than every patched mtime so they
//! are no longer racy. Snapshot capture verifies (off the warm path); restores do not
//! need to, because a captured snapshot has no racy entries left.
//!
//! This is not a general index writer: unknown versions, split indexes and SHA-256
//! repositories are left alone (git then re-hashes, which is slower but correct).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use sha1::{Digest, Sha1};

use sandbox_core::tree::StatMap;

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// No index (not a repository, or an empty one).
    NoIndex,
    /// Entries were updated.
    Updated { entries: usize, updated: usize },
    /// The index was left alone (why).
    Skipped(&'static str),
}

const HASH_LEN: usize = 20;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// The git blob id of a worktree file (or a symlink's target).
fn blob_id(path: &Path, is_link: bool) -> io::Result<[u8; HASH_LEN]> {
    let data = if is_link {
        use std::os::unix::ffi::OsStrExt;
        fs::read_link(path)?.as_os_str().as_bytes().to_vec()
    } else {
        fs::read(path)?
    };
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(&data);
    Ok(h.finalize().into())
}

/// Patches `<workspace>/.git/index` with the stat data in `stats` for every stage-0
/// entry whose recorded mtime, size and file type match its file and that is not
/// racily clean; with `verify`, racily clean entries are checked by content first.
pub(crate) fn refresh_index(
    workspace: &Path,
    stats: &StatMap,
    verify: bool,
) -> io::Result<Refresh> {
    let git = workspace.join(".git");
    let path = git.join("index");
    let mut buf = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Refresh::NoIndex),
        Err(e) => return Err(e),
    };
    let index_mtime = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&path)?.mtime()
    };
    let check = |rel: &[u8], oid: &[u8], is_link: bool| -> bool {
        use std::os::unix::ffi::OsStrExt;
        let p = workspace.join(std::ffi::OsStr::from_bytes(rel));
        blob_id(&p, is_link).is_ok_and(|id| id.as_slice() == oid)
    };
    let verifier: Verify<'_> = if verify { Some(&check) } else { None };
    let (entries, updated, newest) = match patch(&mut buf, stats, index_mtime, verifier) {
        Ok(r) => r,
        Err(why) => return Ok(Refresh::Skipped(why)),
    };
    if updated == 0 {
        return Ok(Refresh::Updated { entries, updated });
    }
    // the new index must be newer (in whole seconds) than every entry it vouches for;
    // file times come from the kernel's coarse clock, which lags the real-time clock
    // by up to a tick, hence the margin and the check after writing
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let not_before = std::time::Duration::from_secs(newest.max(0) as u64 + 1)
        + std::time::Duration::from_millis(50);
    let now = secs(std::time::SystemTime::now());
    if now < not_before {
        std::thread::sleep(not_before - now);
    }
    // git's own lock protocol: whoever holds index.lock owns the index.
    let lock = git.join("index.lock");
    let mut f = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(Refresh::Skipped("index.lock exists"));
        }
        Err(e) => return Err(e),
    };
    let written = f.write_all(&buf).and_then(|()| fs::rename(&lock, &path));
    if written.is_err() {
        let _ = fs::remove_file(&lock);
    }
    written?;
    if newest >= index_mtime {
        // entries were verified by content: make sure the index really is newer
        use std::os::unix::fs::MetadataExt;
        for _ in 0..40 {
            if fs::metadata(&path)?.mtime() > newest {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(std::time::SystemTime::now())?;
        }
    }
    Ok(Refresh::Updated { entries, updated })
}

/// A content check for racily clean entries: (path, recorded blob id, is a symlink).
type Verify<'a> = Option<&'a dyn Fn(&[u8], &[u8], bool) -> bool>;

/// Patches the index bytes; returns (entries, updated, newest patched mtime in seconds)
/// or why it cannot.
fn patch(
    buf: &mut [u8],
    stats: &StatMap,
    index_mtime: i64,
    verify: Verify<'_>,
) -> Result<(usize, usize, i64), &'static str> {
    if buf.len() < 12 + HASH_LEN || &buf[..4] != b"DIRC" {
        return Err("not an index file");
    }
    let version = be32(buf, 4).ok_or("truncated")?;
    if !(2..=4).contains(&version) {
        return Err("unknown index version");
    }
    let count = be32(buf, 8).ok_or("truncated")? as usize;
    let end = buf.len() - HASH_LEN;
    let trailer_zero = buf[end..].iter().all(|&b| b == 0);
    if !trailer_zero && Sha1::digest(&buf[..end]).as_slice() != &buf[end..] {
        return Err("checksum mismatch (not SHA-1?)");
    }
    let mut at = 12usize;
    let mut prev_path: Vec<u8> = Vec::new();
    let mut updated = 0;
    let mut newest = 0i64;
    // fixed part: 10 u32 stat fields, the hash, 16-bit flags
    const FIXED: usize = 40 + HASH_LEN + 2;
    for _ in 0..count {
        let start = at;
        if start + FIXED > end {
            return Err("truncated entry");
        }
        let flags = u16::from_be_bytes([buf[start + 40 + HASH_LEN], buf[start + 41 + HASH_LEN]]);
        let mut p = start + FIXED;
        if flags & 0x4000 != 0 {
            if version < 3 {
                return Err("extended flag in a version 2 index");
            }
            p += 2;
        }
        let stage = (flags >> 12) & 0x3;
        let path: Vec<u8> = if version == 4 {
            // prefix-compressed: varint N (bytes to drop from the previous path), then
            // the NUL-terminated suffix.
            let mut c = *buf.get(p).ok_or("truncated")?;
            p += 1;
            let mut strip = u64::from(c & 0x7f);
            while c & 0x80 != 0 {
                c = *buf.get(p).ok_or("truncated")?;
                p += 1;
                strip = ((strip + 1) << 7) | u64::from(c & 0x7f);
            }
            let nul = buf[p..end]
                .iter()
                .position(|&b| b == 0)
                .ok_or("truncated")?;
            let keep = prev_path
                .len()
                .checked_sub(strip as usize)
                .ok_or("bad path prefix")?;
            let mut path = prev_path[..keep].to_vec();
            path.extend_from_slice(&buf[p..p + nul]);
            at = p + nul + 1;
            path
        } else {
            let nul = buf[p..end]
                .iter()
                .position(|&b| b == 0)
                .ok_or("truncated")?;
            let path = buf[p..p + nul].to_vec();
            // entries are NUL-padded to a multiple of 8 bytes (at least one NUL)
            let len = (p - start) + nul;
            at = start + ((len + 8) & !7);
            path
        };
        if at > end {
            return Err("truncated entry");
        }
        if stage == 0 {
            if let Some(st) = stats.get(&path) {
                let mode = be32(buf, start + 24).ok_or("truncated")?;
                let size = be32(buf, start + 36).ok_or("truncated")?;
                let mtime = (
                    be32(buf, start + 8).ok_or("truncated")?,
                    be32(buf, start + 12).ok_or("truncated")?,
                );
                // the entry describes this file: same type, size and mtime seconds
                // (copies keep mtimes; git built without USE_NSEC leaves stale
                // nanoseconds in entries it considers up to date)...
                let same = (mode & 0o170000) == (st.mode & 0o170000)
                    && size == st.size as u32
                    && mtime.0 == st.mtime.0 as u32;
                let exact = mtime.1 == st.mtime.1 as u32;
                // ...exactly and not racily clean, or its content proves it clean
                let racy = i64::from(mtime.0) >= index_mtime;
                let ok = same
                    && ((exact && !racy)
                        || verify.is_some_and(|v| {
                            v(
                                &path,
                                &buf[start + 40..start + 40 + HASH_LEN],
                                mode & 0o170000 == 0o120000,
                            )
                        }));
                if ok {
                    newest = newest.max(i64::from(mtime.0));
                    put32(buf, start, st.ctime.0 as u32);
                    put32(buf, start + 4, st.ctime.1 as u32);
                    put32(buf, start + 8, st.mtime.0 as u32);
                    put32(buf, start + 12, st.mtime.1 as u32);
                    put32(buf, start + 16, st.dev as u32);
                    put32(buf, start + 20, st.ino as u32);
                    put32(buf, start + 28, st.uid);
                    put32(buf, start + 32, st.gid);
                    updated += 1;
                }
            }
        }
        prev_path = path;
    }
    // extensions: refuse split indexes (entries live in a shared index)
    let mut x = at;
    while x + 8 <= end {
        if &buf[x..x + 4] == b"link" {
            return Err("split index");
        }
        let size = be32(buf, x + 4).ok_or("truncated")? as usize;
        x += 8 + size;
    }
    if updated > 0 && !trailer_zero {
        let sum = Sha1::digest(&buf[..end]);
        buf[end..].copy_from_slice(&sum);
    }
    Ok((count, updated, newest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_core::tree::StatData;

    /// A version 2 index with one entry, hand-built.
    fn index_v2(path: &[u8], size: u32) -> Vec<u8> {
        let mut b = b"DIRC".to_vec();
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        let start = b.len();
        for v in [1u32, 2, 300, 4, 5, 6, 0o100644, 7, 8, size] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[0xab; 20]);
        b.extend_from_slice(&(path.len() as u16).to_be_bytes());
        b.extend_from_slice(path);
        let len = b.len() - start;
        b.resize(start + ((len + 8) & !7), 0);
        let sum = Sha1::digest(&b);
        b.extend_from_slice(&sum);
        b
    }

    #[test]
    fn patches_matching_entries_and_rehashes() {
        let mut stats = StatMap::new();
        let st = StatData {
            ctime: (100, 11),
            mtime: (300, 4),
            dev: 9,
            ino: 4242,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            size: 10,
        };
        stats.insert(b"src/a.rs".to_vec(), st);
        let mut buf = index_v2(b"src/a.rs", 10);
        assert_eq!(patch(&mut buf, &stats, 1000, None), Ok((1, 1, 300)));
        assert_eq!(be32(&buf, 12), Some(100));
        assert_eq!(be32(&buf, 12 + 20), Some(4242));
        let end = buf.len() - 20;
        assert_eq!(Sha1::digest(&buf[..end]).as_slice(), &buf[end..]);

        // a size or mtime mismatch leaves the entry alone
        let mut buf = index_v2(b"src/a.rs", 11);
        assert_eq!(patch(&mut buf, &stats, 1000, None), Ok((1, 0, 0)));
        let mut other = stats.clone();
        other.get_mut(&b"src/a.rs"[..]).unwrap().mtime = (300, 5);
        let mut buf = index_v2(b"src/a.rs", 10);
        assert_eq!(patch(&mut buf, &other, 1000, None), Ok((1, 0, 0)));
        // a racily clean entry (mtime not older than the index) needs proof by content
        let mut buf = index_v2(b"src/a.rs", 10);
        assert_eq!(patch(&mut buf, &stats, 300, None), Ok((1, 0, 0)));
        assert_eq!(
            patch(&mut buf, &stats, 300, Some(&|_, _, _| false)),
            Ok((1, 0, 0))
        );
        assert_eq!(
            patch(
                &mut buf,
                &stats,
                300,
                Some(&|p, id, _| p == b"src/a.rs" && id == [0xab; 20])
            ),
            Ok((1, 1, 300))
        );
        // corruption is refused, not patched
        let mut buf = index_v2(b"src/a.rs", 10);
        buf[13] ^= 1;
        assert!(patch(&mut buf, &stats, 1000, None).is_err());
    }

    #[test]
    fn blob_ids_match_git() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"hello\n").unwrap();
        // `echo hello | git hash-object --stdin`
        assert_eq!(
            hex::encode(blob_id(&dir.path().join("f"), false).unwrap()),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    fn git(dir: &Path, args: &[&str]) {
        let ok = test_support::git_command()
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }

    /// Real indexes written by git, versions 2 to 4: every entry parses and the ones
    /// whose files match are patched; a skip-worktree entry (not refreshed by git) is not.
    #[test]
    fn parses_real_indexes_of_every_version() {
        use std::os::unix::fs::MetadataExt;
        for version in ["2", "3", "4"] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            git(d, &["init", "-q"]);
            for i in 0..40 {
                let p = d.join(format!("src/dir{}/a-long-common-prefix-{i:03}.txt", i % 3));
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, format!("{i}")).unwrap();
            }
            fs::write(d.join("skipped"), "s").unwrap();
            git(d, &["add", "-A"]);
            git(d, &["commit", "-qm", "x"]);
            let past = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
            let mut stats = StatMap::new();
            for i in 0..40 {
                let rel = format!("src/dir{}/a-long-common-prefix-{i:03}.txt", i % 3);
                fs::File::options()
                    .write(true)
                    .open(d.join(&rel))
                    .unwrap()
                    .set_modified(past)
                    .unwrap();
            }
            git(d, &["update-index", "-q", "--refresh"]);
            git(d, &["update-index", "--index-version", version]);
            if version != "2" {
                git(d, &["update-index", "--skip-worktree", "skipped"]);
            }
            for i in 0..40 {
                let rel = format!("src/dir{}/a-long-common-prefix-{i:03}.txt", i % 3);
                let mut st = StatData::from_meta(&fs::metadata(d.join(&rel)).unwrap());
                st.ino += 1_000_000; // as if copied
                stats.insert(rel.into_bytes(), st);
            }
            let mut skipped = StatData::from_meta(&fs::metadata(d.join("skipped")).unwrap());
            skipped.mtime.0 -= 1; // git did not refresh it: its entry is stale
            stats.insert(b"skipped".to_vec(), skipped);
            let mut buf = fs::read(d.join(".git/index")).unwrap();
            assert_eq!(be32(&buf, 4), Some(version.parse().unwrap()));
            let index_mtime = fs::metadata(d.join(".git/index")).unwrap().mtime();
            let (count, updated, _) = patch(&mut buf, &stats, index_mtime, None).unwrap();
            assert_eq!(count, 41, "v{version}");
            assert_eq!(updated, 40, "v{version}");
        }
    }
}
