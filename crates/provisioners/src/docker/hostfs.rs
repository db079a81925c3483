//! A root filesystem made from this machine's own dynamically linked programs: each
//! program, the program interpreter it names and the shared libraries it needs
//! (followed recursively through `DT_NEEDED`), at the paths the host has them.
//!
//! The fallback for the offline base image when no static busybox is installed. Only
//! 64-bit little-endian ELF is understood; it does not read `ld.so.cache` (libraries
//! are looked up in the usual system directories) and copies no configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sandbox_core::{Error, Result};

use super::PROVIDER;

/// Programs copied into the base image by default (those missing here are skipped;
/// `sh` and `sleep` are required).
pub(crate) const DEFAULT_HOST_TOOLS: &[&str] = &[
    "sh", "sleep", "cat", "ls", "env", "id", "mkdir", "touch", "rm", "cp", "mv", "ln", "pwd",
    "echo", "true", "false", "test", "chmod", "grep", "sed", "head", "tail", "wc", "ps", "kill",
    "printenv", "stat", "find", "sort", "uname", "whoami", "tty", "yes", "tr", "cut", "date",
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
];

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

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

fn phdrs(elf: &[u8]) -> Option<Vec<Phdr>> {
    if elf.get(..4) != Some(b"\x7fELF".as_slice())
        || elf.get(4) != Some(&2)
        || elf.get(5) != Some(&1)
    {
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

/// What an ELF file needs to run: its interpreter (absolute path) and the names of the
/// shared libraries it links. `None` for files that are not 64-bit little-endian ELF.
pub(crate) fn elf_needs(elf: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    let ph = phdrs(elf)?;
    let interp = ph
        .iter()
        .find(|p| p.kind == PT_INTERP)
        .and_then(|p| c_str(elf, usize::try_from(p.offset).ok()?));
    let mut needed = Vec::new();
    if let Some(dynamic) = ph.iter().find(|p| p.kind == PT_DYNAMIC) {
        let start = usize::try_from(dynamic.offset).ok()?;
        let end = start.checked_add(usize::try_from(dynamic.filesz).ok()?)?;
        let mut offsets = Vec::new();
        let mut strtab = None;
        let mut at = start;
        while at + 16 <= end {
            let (tag, val) = (u64_at(elf, at)?, u64_at(elf, at + 8)?);
            match tag {
                0 => break,
                DT_NEEDED => offsets.push(val),
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
        for off in offsets {
            needed.push(c_str(elf, usize::try_from(base + off).ok()?)?);
        }
    }
    Some((interp, needed))
}

fn find_in(dirs: &[&str], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The files of a root filesystem holding `tools` from this machine: image path
/// (relative, e.g. `bin/sh`) → host file to copy (symlinks resolved), with mode.
pub(crate) fn host_files(tools: &[String]) -> Result<BTreeMap<String, (PathBuf, u32)>> {
    let mut files: BTreeMap<String, (PathBuf, u32)> = BTreeMap::new();
    let mut pending: Vec<PathBuf> = Vec::new();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
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
        let real = std::fs::canonicalize(&found)
            .map_err(|e| Error::io(format!("resolving {}", found.display()), e))?;
        files.insert(format!("bin/{tool}"), (real.clone(), 0o755));
        pending.push(real);
    }
    // Follow interpreters and DT_NEEDED, keeping each library at the path the host
    // has it (the interpreter's built-in search path matches the host's layout).
    while let Some(file) = pending.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let bytes = std::fs::read(&file)
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let Some((interp, needed)) = elf_needs(&bytes) else {
            continue;
        };
        let mut deps: Vec<PathBuf> = Vec::new();
        if let Some(interp) = interp {
            deps.push(PathBuf::from(interp));
        }
        for lib in needed {
            match find_in(LIB_DIRS, &lib) {
                Some(p) => deps.push(p),
                None => {
                    return Err(Error::provider(
                        PROVIDER,
                        format!(
                            "{} needs {lib}, which is not in {}",
                            file.display(),
                            LIB_DIRS.join(", ")
                        ),
                    ));
                }
            }
        }
        for dep in deps {
            let rel = dep.to_string_lossy().trim_start_matches('/').to_owned();
            let real = std::fs::canonicalize(&dep)
                .map_err(|e| Error::io(format!("resolving {}", dep.display()), e))?;
            files.entry(rel).or_insert_with(|| (real.clone(), 0o755));
            pending.push(real);
        }
    }
    Ok(files)
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
        let (interp, needed) = elf_needs(&me).unwrap();
        assert!(interp.unwrap().starts_with('/'));
        assert!(
            needed.iter().any(|n| n.starts_with("libc.so")),
            "{needed:?}"
        );
        assert!(elf_needs(b"#!/bin/sh\n").is_none());
    }

    #[test]
    fn host_files_include_libraries_and_interpreter() {
        let files = host_files(&[
            "sh".to_owned(),
            "sleep".to_owned(),
            "no-such-tool-x".to_owned(),
        ])
        .unwrap();
        assert!(files.contains_key("bin/sh") && files.contains_key("bin/sleep"));
        assert!(!files.contains_key("bin/no-such-tool-x"));
        assert!(
            files.keys().any(|k| k.contains("libc.so")),
            "{:?}",
            files.keys()
        );
        let dirs = parent_dirs(files.keys());
        assert!(dirs.contains(&"bin".to_owned()));
        assert!(dirs.iter().all(|d| !d.starts_with('/')));
    }
}
