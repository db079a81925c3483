//! libgit2's start-up for the short-lived `up` process, without parsing the system's
//! whole CA bundle.
//!
//! libgit2 sets up its OpenSSL context when the process first uses it, calling
//! `SSL_CTX_set_default_verify_paths`, which parses the entire CA bundle file
//! (`SSL_CERT_FILE`'s default, ~140 certificates): with OpenSSL 3 that was 22 ms of the
//! 36 ms of CPU a whole warm `headstart up` used (`perf stat -e task-clock`, medium
//! load, 2 cores), for any URL scheme. OpenSSL's other default source, a directory of
//! certificates named by subject hash (`SSL_CERT_DIR`, what `c_rehash` /
//! `update-ca-certificates` maintain), is read lazily: only the CA a server's chain
//! needs, only when an https connection is verified.
//!
//! So when the system has such a directory and the variables name nothing else (see
//! [`lazy_dir`]), libgit2 starts with the bundle pointed away and that directory named,
//! and both variables get their values back right after: nothing else (sandboxes,
//! recipe commands, detached builds, other TLS clients) sees a changed environment.
//! Anything else starts libgit2 the usual way, with the bundle.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use headstart::env;

/// Hashed CA directories of common distributions, in the order tried: Debian, Ubuntu,
/// Alpine and Arch; Fedora and RHEL; openSUSE.
const CA_DIRS: [&str; 3] = [
    "/etc/ssl/certs",
    "/etc/pki/ca-trust/extracted/pem/directory-hash",
    "/var/lib/ca-certificates/openssl",
];

/// Where `SSL_CERT_FILE` points while libgit2 starts: a path that never exists.
const NO_BUNDLE: &str = "/nonexistent/headstart-reads-the-hashed-ca-directory";

/// True for the name of a subject-hash link: eight hex digits, `.`, a digit.
fn is_hash_name(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.len() >= 10
        && b[..8].iter().all(u8::is_ascii_hexdigit)
        && b[8] == b'.'
        && b[9..].iter().all(u8::is_ascii_digit)
}

/// The first of `dirs` holding subject-hash named certificates.
fn hashed_ca_dir(dirs: &[&str]) -> Option<PathBuf> {
    dirs.iter().map(Path::new).find_map(|d| {
        let mut entries = std::fs::read_dir(d).ok()?;
        entries
            .any(|e| e.is_ok_and(|e| is_hash_name(&e.file_name())))
            .then(|| d.to_path_buf())
    })
}

/// The hashed CA directory libgit2 may start with instead of the bundle, given the
/// variables' values: both unset, or pointing at the directory and at a bundle inside
/// it (`/etc/ssl/certs/ca-certificates.crt`: `update-ca-certificates` writes that
/// bundle and the hash links from the same certificates). A bundle elsewhere may hold
/// certificates the directory lacks (a company CA): then `None`.
fn lazy_dir(file: Option<&Path>, dir: Option<&Path>, candidates: &[&str]) -> Option<PathBuf> {
    let found = match dir {
        Some(d) => hashed_ca_dir(&[d.to_str()?])?,
        None => hashed_ca_dir(candidates)?,
    };
    match file {
        None => Some(found),
        Some(f) if f.parent() == Some(found.as_path()) && f.is_file() => Some(found),
        Some(_) => None,
    }
}

/// Starts libgit2 now (see the module docs). Call it while the process has one
/// thread: before the async runtime starts.
pub(crate) fn start_libgit2() {
    let file = env::var_os(env::SSL_CERT_FILE);
    let dir = env::var_os(env::SSL_CERT_DIR);
    let Some(lazy) = lazy_dir(
        file.as_deref().map(Path::new),
        dir.as_deref().map(Path::new),
        &CA_DIRS,
    ) else {
        sandbox_core::git::preload();
        return;
    };
    // SAFETY: main calls this before the runtime (or anything else) starts a thread,
    // so nothing reads the environment concurrently; both variables get their values
    // back before returning.
    unsafe {
        std::env::set_var(env::SSL_CERT_FILE, NO_BUNDLE);
        std::env::set_var(env::SSL_CERT_DIR, &lazy);
    }
    sandbox_core::git::preload();
    for (name, value) in [(env::SSL_CERT_FILE, file), (env::SSL_CERT_DIR, dir)] {
        // SAFETY: as above.
        unsafe {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    }
    tracing::debug!(dir = %lazy.display(), "libgit2 started with the hashed CA directory");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_names_are_recognised() {
        for ok in ["9d04f354.0", "0a775a30.1", "ABCDEF01.12"] {
            assert!(is_hash_name(OsStr::new(ok)), "{ok}");
        }
        for no in [
            "ca-certificates.crt",
            "9d04f354.pem",
            "9d04f35.0",
            "9d04f354.",
            "x",
        ] {
            assert!(!is_hash_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn only_a_directory_with_hash_links_is_chosen() {
        let plain = tempfile::tempdir().unwrap();
        std::fs::write(plain.path().join("bundle.crt"), "x").unwrap();
        let hashed = tempfile::tempdir().unwrap();
        std::fs::write(hashed.path().join("readme"), "x").unwrap();
        std::os::unix::fs::symlink("readme", hashed.path().join("5ad8a5d6.0")).unwrap();
        let dirs = [
            "/nonexistent/ca",
            plain.path().to_str().unwrap(),
            hashed.path().to_str().unwrap(),
        ];
        assert_eq!(hashed_ca_dir(&dirs).as_deref(), Some(hashed.path()));
        assert_eq!(hashed_ca_dir(&dirs[..2]), None);

        // the variables: unset, or the directory and a bundle inside it
        let h = hashed.path();
        let inside = h.join("readme");
        let elsewhere = plain.path().join("bundle.crt");
        assert_eq!(lazy_dir(None, None, &dirs).as_deref(), Some(h));
        assert_eq!(lazy_dir(Some(&inside), Some(h), &[]).as_deref(), Some(h));
        assert_eq!(lazy_dir(Some(&inside), None, &dirs).as_deref(), Some(h));
        assert_eq!(
            lazy_dir(Some(&elsewhere), Some(h), &dirs),
            None,
            "another bundle"
        );
        assert_eq!(
            lazy_dir(None, Some(plain.path()), &dirs),
            None,
            "not hashed"
        );
        assert_eq!(
            lazy_dir(None, None, &dirs[..2]),
            None,
            "no hashed directory"
        );
    }
}
