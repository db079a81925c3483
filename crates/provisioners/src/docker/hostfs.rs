//! A root filesystem made from this machine's own dynamically linked programs: each
//! program, the program interpreter it names and the shared libraries it needs
//! (followed recursively through `DT_NEEDED`), at the paths the host has them.
//!
//! The last-resort recipe for the offline base image (no `mmdebstrap`): it gives a
//! sandbox the host's `git` (with the helpers under its exec path that matter:
//! `git-remote-http(s)` for https fetches, the shell-script commands, the templates),
//! a shell, the coreutils an agent uses (`stty` included) and the CA bundle.
//!
//! Libraries are resolved the way the dynamic loader does: the file's `DT_RPATH` /
//! `DT_RUNPATH` (with `$ORIGIN`), then the host's `ld.so.cache` (read directly, no
//! `ldconfig`), then the usual system directories. Programs and libraries keep their
//! host paths (git has its prefix compiled in), and the host's `ld.so.cache` goes into
//! the image so the loader there finds them the same way. Only 64-bit little-endian ELF
//! is understood; libraries a program loads with `dlopen` (other than through
//! `DT_NEEDED`) are not found. Nothing here runs a program.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sandbox_core::{Error, Result};

use super::PROVIDER;

/// Programs copied into the base image by default (those missing here are skipped;
/// `sh` and `sleep` are required). `git` is added separately ([`with_git`]).
pub(crate) const DEFAULT_HOST_TOOLS: &[&str] = &[
    "sh",
    "bash",
    "sleep",
    "cat",
    "ls",
    "env",
    "id",
    "mkdir",
    "touch",
    "rm",
    "cp",
    "mv",
    "ln",
    "pwd",
    "echo",
    "true",
    "false",
    "test",
    "[",
    "chmod",
    "chown",
    "chgrp",
    "grep",
    "sed",
    "awk",
    "head",
    "tail",
    "wc",
    "ps",
    "kill",
    "printenv",
    "stat",
    "find",
    "xargs",
    "sort",
    "uniq",
    "uname",
    "whoami",
    "tty",
    "stty",
    "yes",
    "tr",
    "cut",
    "date",
    "basename",
    "dirname",
    "readlink",
    "realpath",
    "mktemp",
    "tee",
    "diff",
    "cmp",
    "du",
    "df",
    "nproc",
    "timeout",
    "seq",
    "expr",
    "printf",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "base64",
    "hostname",
    "tar",
    "gzip",
    "which",
    "less",
];

const BIN_DIRS: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];
const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];
/// CA bundles, in the order they are looked for; the first found is copied to its
/// own path and to the Debian path (where libcurl and OpenSSL look by default).
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];
/// Where the CA bundle is put in the image.
pub(crate) const IMAGE_CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
const LD_SO_CACHE: &str = "/etc/ld.so.cache";
/// Helpers under git's exec path copied besides the commands linked to `git` itself
/// (prefixes): the remote helpers (http, https, ftp), what the shell-script commands
/// need, and the servers an agent may start in its sandbox (`git daemon`,
/// `git http-backend`).
const GIT_HELPERS: &[&str] = &[
    "git-remote-",
    "git-sh-i18n--envsubst",
    "git-http-fetch",
    "git-http-push",
    "git-http-backend",
    "git-daemon",
];

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

fn is_elf64le(elf: &[u8]) -> bool {
    elf.get(..4) == Some(b"\x7fELF".as_slice()) && elf.get(4) == Some(&2) && elf.get(5) == Some(&1)
}

fn phdrs(elf: &[u8]) -> Option<Vec<Phdr>> {
    if !is_elf64le(elf) {
        return None;
    }
    let phoff = usize::try_from(u64_at(elf, 0x20)?).ok()?;
    let size = usize::from(u16_at(elf, 0x36)?);
    let count = usize::from(u16_at(elf, 0x38)?);
    (0..count)
        .map(|i| {
            let at = phoff.checked_add(i.checked_mul(size)?)?;
            Some(Phdr {
                kind: u32_at(elf, at)?,
                offset: u64_at(elf, at + 8)?,
                vaddr: u64_at(elf, at + 16)?,
                filesz: u64_at(elf, at + 32)?,
            })
        })
        .collect()
}

fn c_str(b: &[u8], at: usize) -> Option<String> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// What an ELF file needs to run.
#[derive(Debug, Default)]
pub(crate) struct ElfNeeds {
    /// The program interpreter (absolute path), for executables.
    pub(crate) interp: Option<String>,
    /// `DT_NEEDED`: the names of the shared libraries it links.
    pub(crate) needed: Vec<String>,
    /// `DT_RPATH` and `DT_RUNPATH` directories, unexpanded (`$ORIGIN` as written).
    pub(crate) search: Vec<String>,
    /// `e_machine`: which architecture a library must be for.
    pub(crate) machine: u16,
}

/// What an ELF file needs to run. `None` for files that are not 64-bit little-endian
/// ELF.
pub(crate) fn elf_needs(elf: &[u8]) -> Option<ElfNeeds> {
    let ph = phdrs(elf)?;
    let mut needs = ElfNeeds {
        machine: u16_at(elf, 0x12)?,
        interp: ph
            .iter()
            .find(|p| p.kind == PT_INTERP)
            .and_then(|p| c_str(elf, usize::try_from(p.offset).ok()?)),
        ..ElfNeeds::default()
    };
    if let Some(dynamic) = ph.iter().find(|p| p.kind == PT_DYNAMIC) {
        let start = usize::try_from(dynamic.offset).ok()?;
        let end = start.checked_add(usize::try_from(dynamic.filesz).ok()?)?;
        let mut names = Vec::new();
        let mut paths = Vec::new();
        let mut strtab = None;
        let mut at = start;
        while at + 16 <= end {
            let (tag, val) = (u64_at(elf, at)?, u64_at(elf, at + 8)?);
            match tag {
                0 => break,
                DT_NEEDED => names.push(val),
                DT_RPATH | DT_RUNPATH => paths.push(val),
                DT_STRTAB => strtab = Some(val),
                _ => {}
            }
            at += 16;
        }
        let strtab = strtab?;
        let load = ph
            .iter()
            .find(|p| p.kind == PT_LOAD && p.vaddr <= strtab && strtab < p.vaddr + p.filesz)?;
        let base = strtab - load.vaddr + load.offset;
        for off in names {
            needs
                .needed
                .push(c_str(elf, usize::try_from(base + off).ok()?)?);
        }
        for off in paths {
            let list = c_str(elf, usize::try_from(base + off).ok()?)?;
            needs
                .search
                .extend(list.split(':').filter(|d| !d.is_empty()).map(str::to_owned));
        }
    }
    Some(needs)
}

/// The host's `ld.so.cache` (new format, `glibc-ld.so.cache1.1`): library name →
/// paths, in cache order. Empty when it is missing or in a format not understood.
pub(crate) fn read_ld_cache(bytes: &[u8]) -> BTreeMap<String, Vec<String>> {
    const MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // The new format may follow an old-format (`ld.so-1.7.0`) section.
    let Some(start) = bytes.windows(MAGIC.len()).position(|w| w == MAGIC) else {
        return out;
    };
    let Some(count) = u32_at(bytes, start + 20) else {
        return out;
    };
    let entries = start + 48;
    for i in 0..usize::try_from(count).unwrap_or(0) {
        let at = entries + i * 24;
        let (Some(key), Some(value)) = (u32_at(bytes, at + 4), u32_at(bytes, at + 8)) else {
            break;
        };
        // String offsets are relative to the start of the new-format header.
        let (Ok(key), Ok(value)) = (usize::try_from(key), usize::try_from(value)) else {
            break;
        };
        if let (Some(k), Some(v)) = (c_str(bytes, start + key), c_str(bytes, start + value)) {
            out.entry(k).or_default().push(v);
        }
    }
    out
}

fn find_in(dirs: &[&str], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The machine (`e_machine`) of an ELF file on disk, if it is one.
fn elf_machine(path: &Path) -> Option<u16> {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    is_elf64le(&head).then(|| u16_at(&head, 0x12)).flatten()
}

/// Resolves library `name` for `file` as the loader would (see the module docs).
fn resolve_library(
    name: &str,
    file: &Path,
    needs: &ElfNeeds,
    cache: &BTreeMap<String, Vec<String>>,
) -> Option<PathBuf> {
    let origin = file.parent().unwrap_or(Path::new("/"));
    let origin = origin.to_string_lossy();
    let fits = |p: &Path| p.is_file() && elf_machine(p) == Some(needs.machine);
    for dir in &needs.search {
        let dir = dir
            .replace("${ORIGIN}", &origin)
            .replace("$ORIGIN", &origin);
        let p = Path::new(&dir).join(name);
        if fits(&p) {
            return Some(p);
        }
    }
    if let Some(paths) = cache.get(name) {
        if let Some(p) = paths.iter().map(PathBuf::from).find(|p| fits(p)) {
            return Some(p);
        }
    }
    LIB_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| fits(p))
}

/// One entry of the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostEntry {
    /// A copy of this host file (symlinks resolved), with this mode.
    Copy(PathBuf, u32),
    /// A symbolic link to this target.
    Symlink(String),
}

/// The root filesystem's entries: image path (relative, e.g. `bin/sh`) → entry.
pub(crate) type HostFiles = BTreeMap<String, HostEntry>;

fn rel(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_owned()
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| Error::io(format!("resolving {}", path.display()), e))
}

fn file_mode(path: &Path) -> u32 {
    std::fs::metadata(path).map_or(0o755, |m| m.mode() & 0o7777)
}

/// The files of a root filesystem holding `tools` from this machine (each as
/// `bin/<tool>`), plus git and its helpers at their host paths when `with_git` and git
/// is installed, the CA bundle and the host's `ld.so.cache`; with every interpreter
/// and library they need.
pub(crate) fn host_files(tools: &[String], with_git: bool) -> Result<HostFiles> {
    let mut files = HostFiles::new();
    let mut pending: Vec<PathBuf> = Vec::new();
    for tool in tools {
        let Some(found) = find_in(BIN_DIRS, tool) else {
            if tool == "sh" || tool == "sleep" {
                return Err(Error::provider(
                    PROVIDER,
                    format!(
                        "cannot build the base image from this machine's programs: no `{tool}` in {}",
                        BIN_DIRS.join(", ")
                    ),
                ));
            }
            tracing::debug!(%tool, "not on this machine; left out of the base image");
            continue;
        };
        let real = canonical(&found)?;
        files.insert(format!("bin/{tool}"), HostEntry::Copy(real.clone(), 0o755));
        pending.push(real);
    }
    if with_git {
        match find_in(BIN_DIRS, "git") {
            Some(git) => pending.extend(add_git(&mut files, &git)?),
            None => tracing::warn!(
                "no git on this machine: the base image made from its programs has no git"
            ),
        }
    }
    match CA_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        Some(bundle) => {
            let real = canonical(bundle)?;
            files.insert(rel(bundle), HostEntry::Copy(real.clone(), 0o644));
            files
                .entry(IMAGE_CA_BUNDLE.to_owned())
                .or_insert(HostEntry::Copy(real, 0o644));
        }
        None => tracing::warn!(
            "no CA bundle on this machine (looked in {}): https from the base image will fail",
            CA_BUNDLES.join(", ")
        ),
    }
    let cache_bytes = std::fs::read(LD_SO_CACHE).unwrap_or_default();
    let cache = read_ld_cache(&cache_bytes);
    if !cache_bytes.is_empty() {
        files.insert(
            rel(Path::new(LD_SO_CACHE)),
            HostEntry::Copy(PathBuf::from(LD_SO_CACHE), 0o644),
        );
    }

    // Follow interpreters and DT_NEEDED, keeping each library at the path the host
    // loader finds it (the image gets the host's ld.so.cache).
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    while let Some(file) = pending.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let bytes = std::fs::read(&file)
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let Some(needs) = elf_needs(&bytes) else {
            continue;
        };
        let mut deps: Vec<PathBuf> = Vec::new();
        if let Some(interp) = &needs.interp {
            deps.push(PathBuf::from(interp));
        }
        for lib in &needs.needed {
            match resolve_library(lib, &file, &needs, &cache) {
                Some(p) => deps.push(p),
                None => {
                    return Err(Error::provider(
                        PROVIDER,
                        format!(
                            "{} needs {lib}, which is neither in its run path, nor in {LD_SO_CACHE}, \
                             nor in {}",
                            file.display(),
                            LIB_DIRS.join(", ")
                        ),
                    ));
                }
            }
        }
        for dep in deps {
            let real = canonical(&dep)?;
            files
                .entry(rel(&dep))
                .or_insert_with(|| HostEntry::Copy(real.clone(), 0o755));
            pending.push(real);
        }
    }
    Ok(files)
}

/// Adds git at its host path, the commands under its exec path and its templates;
/// returns the ELF files whose libraries must be followed.
fn add_git(files: &mut HostFiles, git: &Path) -> Result<Vec<PathBuf>> {
    let real = canonical(git)?;
    let git_meta = std::fs::metadata(&real)
        .map_err(|e| Error::io(format!("reading {}", real.display()), e))?;
    let git_path = git.to_string_lossy().into_owned();
    files.insert(rel(git), HostEntry::Copy(real.clone(), 0o755));
    let mut elves = vec![real];
    // The exec path and templates are compiled in relative to git's prefix:
    // <prefix>/libexec/git-core (a source build, Fedora) or <prefix>/lib/git-core (Debian).
    let prefix = canonical(git.parent().unwrap_or(Path::new("/")))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let Some(exec_dir) = ["libexec/git-core", "lib/git-core"]
        .iter()
        .map(|d| prefix.join(d))
        .find(|d| d.is_dir())
    else {
        tracing::warn!(prefix = %prefix.display(), "git's exec path not found: no https fetch in the base image");
        return Ok(elves);
    };
    let read_dir = |dir: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    for path in read_dir(&exec_dir)? {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if (meta.dev(), meta.ino()) == (git_meta.dev(), git_meta.ino()) {
            // a builtin (git-upload-pack, ...): git itself, called by that name
            files.insert(rel(&path), HostEntry::Symlink(git_path.clone()));
            continue;
        }
        let head = std::fs::read(&path)
            .map(|b| b.into_iter().take(64).collect::<Vec<u8>>())
            .unwrap_or_default();
        let elf = head.starts_with(b"\x7fELF");
        let wanted = if elf {
            GIT_HELPERS.iter().any(|h| name.starts_with(h))
        } else {
            // POSIX shell scripts and the shell libraries they source (no `#!`);
            // perl and python commands would need their interpreters.
            head.starts_with(b"#!/bin/sh") || !head.starts_with(b"#!")
        };
        if wanted {
            let real = canonical(&path)?;
            files.insert(
                rel(&path),
                HostEntry::Copy(real.clone(), meta.mode() & 0o7777),
            );
            if elf {
                elves.push(real);
            }
        }
    }
    let templates = prefix.join("share/git-core/templates");
    if templates.is_dir() {
        let mut stack = vec![templates];
        while let Some(dir) = stack.pop() {
            for path in read_dir(&dir)? {
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.is_file() {
                    files.insert(rel(&path), HostEntry::Copy(path.clone(), file_mode(&path)));
                }
            }
        }
    }
    Ok(elves)
}

/// The parent directories of `paths` (relative), each once, parents first.
pub(crate) fn parent_dirs<'a>(paths: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut dirs = BTreeSet::new();
    for p in paths {
        let mut cur = Path::new(p.as_str());
        while let Some(parent) = cur.parent() {
            if parent.as_os_str().is_empty() {
                break;
            }
            dirs.insert(parent.to_string_lossy().into_owned());
            cur = parent;
        }
    }
    dirs.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_needs_of_this_test_binary() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let needs = elf_needs(&me).unwrap();
        assert!(needs.interp.unwrap().starts_with('/'));
        assert!(
            needs.needed.iter().any(|n| n.starts_with("libc.so")),
            "{:?}",
            needs.needed
        );
        assert_ne!(needs.machine, 0);
        assert!(elf_needs(b"#!/bin/sh\n").is_none());
    }

    #[test]
    fn the_ld_cache_resolves_libc_like_the_loader() {
        let Ok(bytes) = std::fs::read(LD_SO_CACHE) else {
            return; // no cache on this machine: LIB_DIRS alone are used
        };
        let cache = read_ld_cache(&bytes);
        let libc = cache.get("libc.so.6").expect("libc.so.6 is in ld.so.cache");
        assert!(libc.iter().any(|p| Path::new(p).is_file()), "{libc:?}");
        assert!(read_ld_cache(b"not a cache").is_empty());
        // truncated: no panic, fewer entries
        let _ = read_ld_cache(&bytes[..bytes.len().min(200)]);
    }

    #[test]
    fn host_files_include_git_helpers_libraries_and_certificates() {
        let files = host_files(
            &[
                "sh".to_owned(),
                "sleep".to_owned(),
                "stty".to_owned(),
                "no-such-tool-x".to_owned(),
            ],
            true,
        )
        .unwrap();
        assert!(files.contains_key("bin/sh") && files.contains_key("bin/sleep"));
        assert!(files.contains_key("bin/stty"));
        assert!(!files.contains_key("bin/no-such-tool-x"));
        assert!(
            files.keys().any(|k| k.contains("libc.so")),
            "{:?}",
            files.keys()
        );
        if let Some(git) = find_in(BIN_DIRS, "git") {
            assert!(files.contains_key(&rel(&git)), "{:?}", files.keys());
            // https fetches need the remote helper and what it links (libcurl)
            let helper = files
                .keys()
                .find(|k| k.ends_with("/git-remote-https"))
                .expect("git-remote-https");
            assert!(matches!(files[helper], HostEntry::Copy(..)));
            assert!(
                files.keys().any(|k| k.contains("libcurl")),
                "{:?}",
                files.keys()
            );
            assert!(
                files
                    .values()
                    .any(|e| matches!(e, HostEntry::Symlink(t) if *t == git.to_string_lossy())),
                "builtins link to git"
            );
        }
        if CA_BUNDLES.iter().any(|p| Path::new(p).is_file()) {
            assert!(files.contains_key(IMAGE_CA_BUNDLE));
        }
        let dirs = parent_dirs(files.keys());
        assert!(dirs.contains(&"bin".to_owned()));
        assert!(dirs.iter().all(|d| !d.starts_with('/')));
    }
}
