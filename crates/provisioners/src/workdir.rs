//! The user's own directory as a workspace ([`ConnectOptions::workdir`]): the check
//! every provider makes before using one, and a stable sandbox name for it.
//!
//! A workdir must never reach headstart's own data: a workdir inside the data
//! directory could be a stored snapshot's workspace (a `git config` written through
//! the sandbox would land in the snapshot and in every later warm start), another
//! sandbox's workspace or the records; a workdir that *contains* the data directory
//! hands all of that to the sandbox too. So [`check_workdir`] resolves both paths the
//! way the kernel will (absolute, symlinks followed, `.` and `..` applied, also for the
//! parts that do not exist yet) and refuses either case. Spelling does not matter: a
//! symlinked or relative data directory and a workdir with `..` or symlinks in it
//! compare as the directories they are.
//!
//! [`ConnectOptions::workdir`]: sandbox_core::ConnectOptions::workdir

use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path, PathBuf};

use sandbox_core::{Error, Result, SandboxName};

/// `path` as the directory it names once `mkdir -p` made it: absolute, every existing
/// component's symlinks resolved, `.` dropped and `..` applied to what is resolved so
/// far. Components past a missing one are taken as written until a `..` leads back
/// into what exists.
///
/// # Errors
/// I/O errors other than "not found" while resolving (permissions, a file where a
/// directory is expected), and a dangling symlink (it names nothing one can check).
pub fn resolve_dir(path: &Path) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut out = PathBuf::from("/");
    let mut exists = true;
    for component in absolute.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out = PathBuf::from("/"),
            Component::CurDir => {}
            // `out` is canonical (no symlinks) or made-up past a missing component:
            // either way its parent is the lexical one (`mkdir -p` makes the missing
            // one, then goes up). Back in what exists, resolve again.
            Component::ParentDir => {
                out.pop();
                if !exists {
                    exists = std::fs::symlink_metadata(&out).is_ok();
                }
            }
            Component::Normal(part) => out = next_component(&out, part, &mut exists)?,
        }
    }
    Ok(out)
}

fn next_component(resolved: &Path, part: &OsStr, exists: &mut bool) -> io::Result<PathBuf> {
    let next = resolved.join(part);
    if !*exists {
        return Ok(next);
    }
    match std::fs::canonicalize(&next) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if std::fs::symlink_metadata(&next).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} is a dangling symlink", next.display()),
                ));
            }
            *exists = false;
            Ok(next)
        }
        Err(e) => Err(e),
    }
}

/// Checks that `workdir` may be a sandbox's workspace next to the data directory
/// `data_dir`, and returns it resolved ([`resolve_dir`]): it must be neither inside the
/// data directory nor contain it, whatever the spelling of either path.
///
/// Nothing is created or written.
///
/// # Errors
/// [`Error::InvalidOptions`] (bad input) saying which and what to do; I/O errors
/// resolving the paths are [`Error::InvalidOptions`] too (the workdir cannot be used).
pub fn check_workdir(workdir: &Path, data_dir: &Path) -> Result<PathBuf> {
    let resolved = resolve_dir(workdir).map_err(|e| {
        Error::InvalidOptions(format!(
            "cannot use {} as the workspace: {e}",
            workdir.display()
        ))
    })?;
    let home = resolve_dir(data_dir).map_err(|e| {
        Error::InvalidOptions(format!(
            "cannot resolve headstart's data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let shown = |p: &Path, r: &Path| {
        if p == r {
            p.display().to_string()
        } else {
            format!("{} (that is {})", p.display(), r.display())
        }
    };
    if resolved.starts_with(&home) {
        return Err(Error::InvalidOptions(format!(
            "the workdir {} is inside headstart's data directory {}: sandboxes may not write \
             there (snapshots, other sandboxes and records live there); pick a directory of \
             your own",
            shown(workdir, &resolved),
            shown(data_dir, &home),
        )));
    }
    if home.starts_with(&resolved) {
        return Err(Error::InvalidOptions(format!(
            "the workdir {} contains headstart's data directory {}: a sandbox there could \
             change snapshots and other sandboxes; pick a directory that does not contain it \
             (or move the data directory with HEADSTART_HOME)",
            shown(workdir, &resolved),
            shown(data_dir, &home),
        )));
    }
    Ok(resolved)
}

/// A stable sandbox name for a workdir (pass it resolved, [`resolve_dir`]):
/// `wd-<last component>-<8 hex digits of the path's SHA-256>`, lower-cased and cut to
/// the characters names allow. The same directory always gets the same name, so a
/// second `headstart up --workdir DIR` without `--name` reconnects to the first one's
/// sandbox (and two at once serialise on the name's lock).
pub fn sandbox_name_for(workdir: &Path) -> SandboxName {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(workdir.as_os_str().as_encoded_bytes());
    let tag = hex::encode(&digest[..4]);
    let base: String = workdir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let base = base.trim_matches('-');
    let name = if base.is_empty() {
        format!("wd-{tag}")
    } else {
        format!("wd-{base}-{tag}")
    };
    SandboxName::new(name).unwrap_or_else(|_| SandboxName::generate())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn resolves_symlinks_dots_and_missing_parts() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir_all(real.join("a")).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("link")).unwrap();
        let canon = std::fs::canonicalize(&real).unwrap();
        assert_eq!(
            resolve_dir(&t.path().join("link/a/../a/./new/x/..")).unwrap(),
            canon.join("a/new")
        );
        std::os::unix::fs::symlink(t.path().join("nowhere"), t.path().join("dangling")).unwrap();
        assert!(resolve_dir(&t.path().join("dangling/x")).is_err());
    }

    #[test]
    fn refuses_inside_and_containing_in_any_spelling() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home");
        std::fs::create_dir_all(home.join("snapshots/k/1/workspace")).unwrap();
        std::os::unix::fs::symlink(&home, t.path().join("home-link")).unwrap();
        let via_link = t.path().join("home-link");
        for (w, d) in [
            (home.join("snapshots/k/1/workspace"), via_link.clone()),
            (via_link.join("snapshots/k/1/workspace"), home.clone()),
            (t.path().join("x/../home-link/snapshots"), home.clone()),
            (home.join("not-yet/made"), via_link.clone()),
            (t.path().to_path_buf(), via_link.clone()),
            (home.clone(), home.clone()),
        ] {
            let e = check_workdir(&w, &d).unwrap_err();
            assert!(matches!(e, Error::InvalidOptions(_)), "{w:?}: {e}");
        }
        let mine = t.path().join("mine");
        assert_eq!(check_workdir(&mine, &via_link).unwrap(), {
            std::fs::canonicalize(t.path()).unwrap().join("mine")
        });
    }

    #[test]
    fn names_are_stable_and_valid() {
        let a = sandbox_name_for(Path::new("/home/me/My Project.rs"));
        assert_eq!(a, sandbox_name_for(Path::new("/home/me/My Project.rs")));
        assert!(a.as_str().starts_with("wd-my-project-rs-"), "{a}");
        assert_ne!(a, sandbox_name_for(Path::new("/other/My Project.rs")));
        assert!(sandbox_name_for(Path::new("/")).as_str().starts_with("wd-"));
    }
}
