//! Images: local-first resolution, optional pulls, and the offline base image.
//!
//! An image that is present locally is used as is; a missing one is pulled only when
//! the caller allows it (the engine may have no registry access at all). The base
//! image is built **offline** by importing a minimal root filesystem made from files on
//! this machine (a statically linked busybox), tagged by the digest of that filesystem,
//! so building it twice reuses the first. This module does not build images from
//! Dockerfiles and does not push.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use sandbox_core::{Error, Result};
use sha2::{Digest, Sha256};

use super::engine::{engine_error, is_not_found};
use super::hostfs;
use super::tar::TarWriter;
use super::{LABEL_OWNER, OWNER, PROVIDER};

/// The repository the offline base image is tagged into (`headstart/base:<digest>`).
pub const BASE_IMAGE_REPO: &str = "headstart/base";

/// Label on the base image carrying the digest of its root filesystem.
pub const LABEL_BASE_DIGEST: &str = "dev.headstart.base-digest";

/// Where a statically linked busybox is looked for, in order.
const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"];

/// The busybox applets linked into the base image's `/bin`.
const APPLETS: &[&str] = &[
    "[",
    "ash",
    "awk",
    "base64",
    "basename",
    "cat",
    "chgrp",
    "chmod",
    "chown",
    "cmp",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "diff",
    "dirname",
    "du",
    "echo",
    "env",
    "expr",
    "false",
    "find",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "hostname",
    "id",
    "kill",
    "less",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mktemp",
    "mv",
    "nproc",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sh",
    "sha1sum",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "stty",
    "tail",
    "tar",
    "tee",
    "test",
    "timeout",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "vi",
    "wc",
    "which",
    "whoami",
    "xargs",
    "yes",
];

/// What the offline base image is made from.
#[derive(Debug, Clone, Default)]
pub struct BaseImageSpec {
    /// A statically linked busybox (`None`: look in the usual places; on Debian and
    /// Ubuntu `apt-get install busybox-static` provides `/bin/busybox`).
    pub busybox: Option<PathBuf>,
    /// Build from this machine's own (dynamically linked) programs and their shared
    /// libraries instead of busybox. Also the fallback when no busybox is found.
    pub from_host_binaries: bool,
    /// The programs taken from this machine in that case (empty: a default set of
    /// shell utilities; `sh` and `sleep` must exist).
    pub host_tools: Vec<String>,
    /// Extra labels on the image.
    pub labels: BTreeMap<String, String>,
}

impl BaseImageSpec {
    /// The root filesystem tarball and what it was made from.
    fn rootfs(&self) -> Result<(Vec<u8>, String)> {
        if !self.from_host_binaries {
            match find_busybox(self) {
                Ok(busybox) => {
                    return Ok((
                        base_rootfs(&busybox)?,
                        format!("busybox {}", busybox.display()),
                    ));
                }
                Err(e) if self.busybox.is_some() => return Err(e),
                Err(e) => {
                    tracing::info!(%e, "no busybox: building the base image from this machine's programs")
                }
            }
        }
        let tools: Vec<String> = if self.host_tools.is_empty() {
            hostfs::DEFAULT_HOST_TOOLS
                .iter()
                .map(|t| (*t).to_owned())
                .collect()
        } else {
            self.host_tools.clone()
        };
        Ok((host_rootfs(&tools)?, "this machine's programs".to_owned()))
    }
}

/// An image pinned by id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRef {
    /// The name it was asked for (`headstart/base:0123abcd`, `debian:12`).
    pub reference: String,
    /// The engine's image id (`sha256:...`), which pins the content.
    pub id: String,
    /// A registry digest (`repo@sha256:...`) when the image came from a registry.
    pub repo_digest: Option<String>,
}

fn find_busybox(spec: &BaseImageSpec) -> Result<PathBuf> {
    if let Some(p) = &spec.busybox {
        return Ok(p.clone());
    }
    BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::provider(
                PROVIDER,
                format!(
                    "cannot build the offline base image: no busybox found (looked in {}). \
                 Install a statically linked one (`apt-get install busybox-static`), or pass an \
                 existing image with --image",
                    BUSYBOX_CANDIDATES.join(", ")
                ),
            )
        })
}

/// Makes the root filesystem tarball for the base image. Deterministic for a given
/// busybox binary.
pub(crate) fn base_rootfs(busybox: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(busybox).map_err(|e| {
        Error::io(
            format!("reading {} for the base image", busybox.display()),
            e,
        )
    })?;
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(Error::provider(
            PROVIDER,
            format!("{} is not an executable (ELF) file", busybox.display()),
        ));
    }
    if has_interpreter(&data) {
        return Err(Error::provider(
            PROVIDER,
            format!(
                "{} is dynamically linked; the base image needs a static busybox \
                 (`apt-get install busybox-static`) or pass one in BaseImageSpec::busybox",
                busybox.display()
            ),
        ));
    }
    let io = |e| Error::io("writing the base image's root filesystem", e);
    let mut t = TarWriter::new();
    skeleton(&mut t, &[]).map_err(io)?;
    t.file("bin/busybox", 0o755, &data).map_err(io)?;
    for applet in APPLETS {
        t.symlink(&format!("bin/{applet}"), "busybox").map_err(io)?;
    }
    t.symlink("usr/bin/env", "/bin/busybox").map_err(io)?;
    Ok(t.finish())
}

/// The directories and `/etc` files every base image has (plus `extra_dirs`).
fn skeleton(t: &mut TarWriter, extra_dirs: &[String]) -> std::io::Result<()> {
    let mut dirs: BTreeMap<String, u32> = [
        ("bin", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/local", 0o755),
        ("usr/local/bin", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("workspace", 0o755),
    ]
    .into_iter()
    .map(|(d, m)| (d.to_owned(), m))
    .collect();
    for d in extra_dirs {
        dirs.entry(d.clone()).or_insert(0o755);
    }
    // BTreeMap order puts parents before children.
    for (dir, mode) in &dirs {
        t.dir(dir, *mode)?;
    }
    t.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    t.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")
}

/// A root filesystem of this machine's own programs and their shared libraries
/// (the fallback when no static busybox is installed).
pub(crate) fn host_rootfs(tools: &[String]) -> Result<Vec<u8>> {
    let files = hostfs::host_files(tools)?;
    let io = |e| Error::io("writing the base image's root filesystem", e);
    let mut t = TarWriter::new();
    skeleton(&mut t, &hostfs::parent_dirs(files.keys())).map_err(io)?;
    for (rel, (host, mode)) in &files {
        let data =
            std::fs::read(host).map_err(|e| Error::io(format!("reading {}", host.display()), e))?;
        t.file(rel, *mode, &data).map_err(io)?;
    }
    if files.contains_key("bin/env") && !files.contains_key("usr/bin/env") {
        t.symlink("usr/bin/env", "/bin/env").map_err(io)?;
    }
    Ok(t.finish())
}

/// True when a 64-bit little-endian ELF file names a program interpreter (is
/// dynamically linked). Other ELF flavours are not inspected.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return false;
    }
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let at = usize::try_from(phoff)
            .unwrap_or(usize::MAX)
            .saturating_add(i * usize::from(phentsize));
        elf.get(at..at + 4)
            .is_some_and(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == PT_INTERP)
    })
}

/// Process-wide lock so concurrent callers build the base image once.
static BASE_BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Builds the offline base image (`headstart/base:<digest>`) from a statically linked
/// busybox on this machine, or reuses it when an image with that tag already exists.
/// Needs no registry. Idempotent and safe to call concurrently in one process.
///
/// # Errors
/// [`Error::Provider`] when no busybox is found (saying how to install one) or the
/// engine refuses the import.
pub async fn build_base_image(docker: &Docker, spec: &BaseImageSpec) -> Result<ImageRef> {
    // Once known in this process, a present image is reused without re-reading the
    // files it was made from.
    let key = format!("{spec:?}");
    let cached = BASE_CACHE.lock().ok().and_then(|c| c.get(&key).cloned());
    if let Some(reference) = cached
        && let Some(found) = local_image(docker, &reference).await?
    {
        return Ok(found);
    }
    let owned = spec.clone();
    let (rootfs, made_from) = tokio::task::spawn_blocking(move || owned.rootfs())
        .await
        .map_err(|e| Error::provider(PROVIDER, format!("a background task failed: {e}")))??;
    let mut hasher = Sha256::new();
    hasher.update(&rootfs);
    for (k, v) in &spec.labels {
        hasher.update(format!("\n{k}={v}").as_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    let tag = &digest[..16];
    let reference = format!("{BASE_IMAGE_REPO}:{tag}");

    let _guard = BASE_BUILD.lock().await;
    if let Some(found) = local_image(docker, &reference).await? {
        tracing::debug!(%reference, "base image present");
        remember(key, &reference);
        return Ok(found);
    }
    tracing::info!(%reference, %made_from, "building the offline base image");
    let mut changes = vec![
        format!("LABEL {LABEL_OWNER}={OWNER} {LABEL_BASE_DIGEST}={digest}"),
        "ENV PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
        "WORKDIR /workspace".to_owned(),
        "CMD [\"sh\"]".to_owned(),
    ];
    for (k, v) in &spec.labels {
        changes.push(format!("LABEL {}={}", quote(k), quote(v)));
    }
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(BASE_IMAGE_REPO)
        .tag(tag)
        .changes(changes)
        .build();
    let mut stream =
        docker.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| engine_error(format!("importing the base image {reference}"), e))?;
    }
    let built = local_image(docker, &reference).await?.ok_or_else(|| {
        Error::provider(
            PROVIDER,
            format!("the engine imported {reference} but does not list it"),
        )
    })?;
    remember(key, &reference);
    Ok(built)
}

/// Base image references this process built or found, by spec.
static BASE_CACHE: std::sync::Mutex<BTreeMap<String, String>> =
    std::sync::Mutex::new(BTreeMap::new());

fn remember(key: String, reference: &str) {
    if let Ok(mut cache) = BASE_CACHE.lock() {
        cache.insert(key, reference.to_owned());
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// The image `reference` if the engine has it locally.
///
/// # Errors
/// [`Error::Provider`] when the engine fails (other than "not found").
pub async fn local_image(docker: &Docker, reference: &str) -> Result<Option<ImageRef>> {
    match docker.inspect_image(reference).await {
        Ok(img) => Ok(Some(ImageRef {
            reference: reference.to_owned(),
            id: img.id.unwrap_or_default(),
            repo_digest: img.repo_digests.and_then(|d| d.into_iter().next()),
        })),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(engine_error(format!("inspecting image {reference}"), e)),
    }
}

/// Resolves `reference` to a local image, pulling it only when it is missing and
/// `allow_pull` is set.
///
/// # Errors
/// [`Error::Provider`] when the image is missing and pulling is not allowed, or the
/// pull fails (e.g. no registry is reachable), saying what to do instead.
pub async fn ensure_image(docker: &Docker, reference: &str, allow_pull: bool) -> Result<ImageRef> {
    if let Some(found) = local_image(docker, reference).await? {
        return Ok(found);
    }
    let offline_hint = "build the offline base image instead (the default when no image is \
                        given), or load the image with `docker load`";
    if !allow_pull {
        return Err(Error::provider(
            PROVIDER,
            format!(
                "image {reference} is not present locally and pulling is disabled; pull it \
                     with `docker pull {reference}`, or {offline_hint}"
            ),
        ));
    }
    tracing::info!(%reference, "pulling image");
    let options = CreateImageOptionsBuilder::default()
        .from_image(reference)
        .build();
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            return Err(Error::Provider {
                provider: PROVIDER,
                message: format!(
                    "image {reference} is not present locally and pulling it failed ({e}); the \
                     engine may have no registry access: {offline_hint}"
                ),
                source: Some(Box::new(e)),
            });
        }
    }
    local_image(docker, reference).await?.ok_or_else(|| {
        Error::provider(
            PROVIDER,
            format!("pulled {reference} but the engine does not list it"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_executables_are_told_apart() {
        // this test binary is dynamically linked; busybox-static is not
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&me));
        if let Ok(bb) = std::fs::read("/bin/busybox") {
            assert!(!has_interpreter(&bb), "/bin/busybox should be static");
        }
    }

    #[test]
    fn rootfs_is_deterministic_and_refuses_non_elf() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("busybox");
        std::fs::write(&fake, b"\x7fELF-not-really").unwrap();
        let a = base_rootfs(&fake).unwrap();
        let b = base_rootfs(&fake).unwrap();
        assert_eq!(a, b);
        std::fs::write(&fake, b"#!/bin/sh").unwrap();
        assert!(base_rootfs(&fake).is_err());
    }
}
