//! Images: local-first resolution, optional pulls, and the base image sandboxes get.
//!
//! An image that is present locally is used as is; a missing one is pulled only when
//! the caller allows it (the engine may have no registry access at all). The image a
//! sandbox gets when it names none ([`default_image`]) has git (with https), a shell,
//! coreutils with `stty`, and the CA certificates, in order of preference:
//!
//! 1. with pulls allowed, [`PUBLIC_BASE_IMAGE`] (Docker's official
//!    `buildpack-deps:bookworm-scm`, pinned by digest);
//! 2. offline, a Debian made with `mmdebstrap` ([`DebianSpec`]), tagged by the digest
//!    of its inputs and built once per machine;
//! 3. offline without `mmdebstrap`, this machine's own programs and their shared
//!    libraries (`hostfs`), tagged by the digest of the files;
//! 4. a static busybox (no git), when even that fails or when asked for.
//!
//! Offline images are imported (`docker import`) from a root filesystem tarball with
//! `safe.directory = /workspace` in `/etc/gitconfig`. A process-wide mutex and a lock
//! file per image keep concurrent builders (threads or processes) from racing. The
//! container user is made known to the image per container (`user`). This module does
//! not build images from Dockerfiles and does not push.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use sandbox_core::{Error, Result};
use sha2::{Digest, Sha256};

use super::debian::{self, DebianPlan, DebianSpec};
use super::engine::{engine_error, is_not_found};
use super::hostfs::{self, HostEntry};
use super::tar::TarWriter;
use super::{LABEL_OWNER, OWNER, PROVIDER};

/// The repository the offline base image is tagged into (`headstart/base:<digest>`).
pub const BASE_IMAGE_REPO: &str = "headstart/base";

/// Label on the base image carrying the digest it is tagged by (of its root
/// filesystem, or of the Debian recipe's inputs).
pub const LABEL_BASE_DIGEST: &str = "dev.headstart.base-digest";

/// Label on the base image naming its recipe: `debian`, `host-programs` or `busybox`.
pub const LABEL_BASE_RECIPE: &str = "dev.headstart.base-recipe";

/// The image used when pulls are allowed and nothing else is asked for: Docker's
/// official `buildpack-deps:bookworm-scm` (Debian 12 with git, curl, ssh, the CA
/// certificates), pinned by its multi-arch index digest.
pub const PUBLIC_BASE_IMAGE: &str = "docker.io/library/buildpack-deps@sha256:b42f74a50a22540b839042134919504ff7c51e7cf8d751b79d0f94c56566cb92";

/// The environment variable naming the image for sandboxes that name none
/// ([`DockerConfig::from_env`](super::DockerConfig::from_env) reads it).
pub const IMAGE_ENV: &str = "HEADSTART_IMAGE";

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

/// Which recipe makes the offline base image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BaseRecipe {
    /// The best available: [`BaseRecipe::Debian`] when `mmdebstrap` is installed (and
    /// works), else [`BaseRecipe::HostPrograms`], else [`BaseRecipe::Busybox`].
    #[default]
    Auto,
    /// A minimal Debian (or Ubuntu) made with `mmdebstrap` from the distribution's
    /// packages, with git and the CA certificates (see [`DebianSpec`]).
    Debian,
    /// This machine's own programs (git and its helpers, a shell, coreutils, the CA
    /// bundle) with their shared libraries.
    HostPrograms,
    /// A statically linked busybox from this machine (no git).
    Busybox,
}

/// What the offline base image is made from.
#[derive(Debug, Clone, Default)]
pub struct BaseImageSpec {
    /// The recipe (default: the best available).
    pub recipe: BaseRecipe,
    /// Settings of the Debian recipe.
    pub debian: DebianSpec,
    /// A statically linked busybox for [`BaseRecipe::Busybox`] (`None`: look in the
    /// usual places). Setting it with [`BaseRecipe::Auto`] picks that recipe.
    pub busybox: Option<PathBuf>,
    /// The same as `recipe: BaseRecipe::HostPrograms` (kept for existing callers).
    pub from_host_binaries: bool,
    /// The programs taken from this machine by [`BaseRecipe::HostPrograms`] besides git
    /// (empty: a default set of shell utilities, coreutils and `stty`; `sh` and
    /// `sleep` must exist).
    pub host_tools: Vec<String>,
    /// Extra labels on the image (they are part of its tag).
    pub labels: BTreeMap<String, String>,
}

impl BaseImageSpec {
    /// The recipe asked for, with the compatibility fields applied.
    fn effective_recipe(&self) -> BaseRecipe {
        match self.recipe {
            BaseRecipe::Auto if self.from_host_binaries => BaseRecipe::HostPrograms,
            BaseRecipe::Auto if self.busybox.is_some() => BaseRecipe::Busybox,
            r => r,
        }
    }

    /// The root filesystem tarball of the host-programs recipe.
    fn host_rootfs(&self) -> Result<Vec<u8>> {
        let tools: Vec<String> = if self.host_tools.is_empty() {
            hostfs::DEFAULT_HOST_TOOLS
                .iter()
                .map(|t| (*t).to_owned())
                .collect()
        } else {
            self.host_tools.clone()
        };
        host_rootfs(&tools)
    }

    /// The root filesystem tarball of the busybox recipe.
    fn busybox_rootfs(&self) -> Result<Vec<u8>> {
        base_rootfs(&find_busybox(self)?)
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

/// The directories and `/etc` files every imported base image has (plus
/// `extra_dirs`).
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
    t.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    t.file("etc/gitconfig", 0o644, debian::GITCONFIG.as_bytes())
}

/// A root filesystem of this machine's own programs (git and its helpers included)
/// and their shared libraries. Files the host has hard-linked (git's builtins, the
/// remote helpers) are stored once.
pub(crate) fn host_rootfs(tools: &[String]) -> Result<Vec<u8>> {
    let files = hostfs::host_files(tools, true)?;
    let io = |e| Error::io("writing the base image's root filesystem", e);
    let mut t = TarWriter::new();
    skeleton(&mut t, &hostfs::parent_dirs(files.keys())).map_err(io)?;
    let mut written: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (rel, entry) in &files {
        match entry {
            HostEntry::Symlink(target) => t.symlink(rel, target).map_err(io)?,
            HostEntry::Copy(host, _) if written.contains_key(host) => {
                t.hardlink(rel, &written[host]).map_err(io)?;
            }
            HostEntry::Copy(host, mode) => {
                let data = std::fs::read(host)
                    .map_err(|e| Error::io(format!("reading {}", host.display()), e))?;
                t.file(rel, *mode, &data).map_err(io)?;
                written.insert(host.clone(), rel.clone());
            }
        }
    }
    if files.contains_key("bin/env") && !files.contains_key("usr/bin/env") {
        t.symlink("usr/bin/env", "/bin/env").map_err(io)?;
    }
    tracing::debug!(
        bytes = t.len(),
        files = files.len(),
        "host-programs root filesystem"
    );
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

/// Process-wide lock so concurrent callers build the base image once (across
/// processes: a lock file per image, see [`BuildLock`]).
static BASE_BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Specs whose Debian build failed in this process (not retried until it restarts).
static DEBIAN_FAILED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());

/// An exclusive `flock` on `<tmp>/headstart-base-<tag>.lock`, held until dropped, so
/// two processes on one machine never build the same base image at once.
struct BuildLock {
    _file: std::fs::File,
}

impl BuildLock {
    async fn acquire(tag: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("headstart-base-{tag}.lock"));
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                // someone else's lock file: a read-only handle locks as well
                .or_else(|_| std::fs::File::open(&path))
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| Error::io(format!("locking {}", path.display()), e.into()))?;
            Ok(Self { _file: file })
        })
        .await
        .map_err(|e| Error::provider(PROVIDER, format!("a background task failed: {e}")))?
    }
}

/// A root filesystem to import and what it was made from.
enum Rootfs {
    /// In memory (host programs, busybox).
    Bytes(Vec<u8>),
    /// A tarball on disk (mmdebstrap), removed with its directory afterwards.
    File(PathBuf, PathBuf),
}

/// Builds the offline base image (`headstart/base:<tag>`), or reuses it when an image
/// with that tag already exists. Needs no registry. The recipe is
/// [`BaseImageSpec::recipe`]; by default `mmdebstrap` (a Debian with git, tagged by
/// the digest of its inputs, built once per machine), else this machine's own
/// programs (tagged by the digest of the files), else a static busybox. Idempotent and
/// safe to call concurrently, in one process and across processes.
///
/// # Errors
/// [`Error::Provider`] when no recipe works here (saying what to install) or the
/// engine refuses the import; [`Error::Timeout`] when `mmdebstrap` hangs.
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
    let _guard = BASE_BUILD.lock().await;
    let recipe = spec.effective_recipe();
    if matches!(recipe, BaseRecipe::Auto | BaseRecipe::Debian) {
        let failed = DEBIAN_FAILED.lock().is_ok_and(|f| f.contains(&key));
        let plan = if failed && recipe == BaseRecipe::Auto {
            None
        } else {
            DebianPlan::resolve(&spec.debian)?
        };
        match plan {
            Some(plan) => match build_debian(docker, spec, &plan).await {
                Ok(image) => {
                    remember(key, &image.reference);
                    return Ok(image);
                }
                Err(e) if recipe == BaseRecipe::Auto => {
                    tracing::warn!(%e, "building the Debian base image failed; using this machine's programs instead");
                    if let Ok(mut f) = DEBIAN_FAILED.lock() {
                        f.insert(key.clone());
                    }
                }
                Err(e) => return Err(e),
            },
            None if recipe == BaseRecipe::Debian => {
                return Err(Error::provider(
                    PROVIDER,
                    "cannot build the Debian base image: mmdebstrap is not installed \
                     (`apt-get install mmdebstrap`)",
                ));
            }
            None => tracing::info!(
                "mmdebstrap is not installed: building the base image from this machine's programs"
            ),
        }
    }
    let (rootfs, made_from, recipe_label) = match recipe {
        BaseRecipe::Busybox => {
            let owned = spec.clone();
            let bytes = blocking(move || owned.busybox_rootfs()).await?;
            (bytes, "a static busybox".to_owned(), "busybox")
        }
        _ => {
            let owned = spec.clone();
            match blocking(move || owned.host_rootfs()).await {
                Ok(bytes) => (bytes, "this machine's programs".to_owned(), "host-programs"),
                Err(e) if recipe == BaseRecipe::Auto => {
                    tracing::warn!(%e, "cannot build the base image from this machine's programs; trying busybox");
                    let owned = spec.clone();
                    let bytes = blocking(move || owned.busybox_rootfs()).await?;
                    (bytes, "a static busybox".to_owned(), "busybox")
                }
                Err(e) => return Err(e),
            }
        }
    };
    let mut hasher = Sha256::new();
    hasher.update(&rootfs);
    for (k, v) in &spec.labels {
        hasher.update(format!("\n{k}={v}").as_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    let image = import(docker, spec, &digest, recipe_label, &made_from, || async {
        Ok(Rootfs::Bytes(rootfs))
    })
    .await?;
    remember(key, &image.reference);
    Ok(image)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::provider(PROVIDER, format!("a background task failed: {e}")))?
}

/// The Debian recipe: tag from the inputs' digest, built only when missing.
async fn build_debian(
    docker: &Docker,
    spec: &BaseImageSpec,
    plan: &DebianPlan,
) -> Result<ImageRef> {
    let mut hasher = Sha256::new();
    hasher.update(plan.digest().as_bytes());
    for (k, v) in &spec.labels {
        hasher.update(format!("\n{k}={v}").as_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    let made_from = plan.describe();
    import(docker, spec, &digest, "debian", &made_from, || async {
        let dir = std::env::temp_dir().join(format!(
            "headstart-base-{}-{}",
            &digest[..16],
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        match plan.build(&dir).await {
            Ok(tar) => Ok(Rootfs::File(tar, dir)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    })
    .await
}

/// Imports the root filesystem `make` produces as `headstart/base:<digest[..16]>`,
/// unless that image exists (checked again under the cross-process lock).
async fn import<F, Fut>(
    docker: &Docker,
    spec: &BaseImageSpec,
    digest: &str,
    recipe: &str,
    made_from: &str,
    make: F,
) -> Result<ImageRef>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Rootfs>>,
{
    let tag = &digest[..16];
    let reference = format!("{BASE_IMAGE_REPO}:{tag}");
    if let Some(found) = local_image(docker, &reference).await? {
        tracing::debug!(%reference, "base image present");
        return Ok(found);
    }
    let _lock = BuildLock::acquire(tag).await?;
    if let Some(found) = local_image(docker, &reference).await? {
        tracing::debug!(%reference, "base image built by another process");
        return Ok(found);
    }
    tracing::info!(%reference, %made_from, "building the offline base image");
    let started = std::time::Instant::now();
    let rootfs = make().await?;
    let mut changes = vec![
        format!(
            "LABEL {LABEL_OWNER}={OWNER} {LABEL_BASE_DIGEST}={digest} {LABEL_BASE_RECIPE}={recipe}"
        ),
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        // git built elsewhere (a host's /usr/local one) reads this system config too
        "ENV GIT_CONFIG_SYSTEM=/etc/gitconfig".to_owned(),
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
    let (body, cleanup) = match rootfs {
        Rootfs::Bytes(bytes) => (bollard::body_full(bytes.into()), None),
        Rootfs::File(tar, dir) => (
            bollard::body_try_stream(super::publish::file_chunks(&tar).await?),
            Some(dir),
        ),
    };
    let mut stream = docker.create_image(Some(options), Some(body), None);
    let mut result = Ok(());
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            result = Err(engine_error(
                format!("importing the base image {reference}"),
                e,
            ));
            break;
        }
    }
    if let Some(dir) = cleanup {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    result?;
    let built = local_image(docker, &reference).await?.ok_or_else(|| {
        Error::provider(
            PROVIDER,
            format!("the engine imported {reference} but does not list it"),
        )
    })?;
    tracing::info!(%reference, elapsed = ?started.elapsed(), "base image built");
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

/// The image sandboxes get when they name none: with `allow_pull`,
/// [`PUBLIC_BASE_IMAGE`] (pulled when missing; if the pull fails, the offline base
/// image instead); without, the offline base image ([`build_base_image`]).
///
/// # Errors
/// As [`build_base_image`].
pub async fn default_image(
    docker: &Docker,
    spec: &BaseImageSpec,
    allow_pull: bool,
) -> Result<ImageRef> {
    if allow_pull {
        match ensure_image(docker, PUBLIC_BASE_IMAGE, true).await {
            Ok(image) => return Ok(image),
            Err(e) => {
                tracing::warn!(%e, image = PUBLIC_BASE_IMAGE, "pulling the public base image failed; building the offline one");
            }
        }
    }
    build_base_image(docker, spec).await
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
