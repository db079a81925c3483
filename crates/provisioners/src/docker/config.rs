//! [`DockerConfig`], how the Docker provider makes containers, and the names derived
//! from a data directory (container names, the data directory's tag).
//!
//! What it is not: reading the engine's address (`engine.rs`) or the image recipes
//! (`image.rs`, `debian.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sandbox_core::{Result, SandboxName};

use super::{BaseImageSpec, CONTAINER_PREFIX, IMAGE_ENV, PROVIDER};
use crate::local::RestoreMethod;

/// How the Docker provider makes containers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DockerConfig {
    /// This provider's own directory: headstart workspaces and stored snapshot
    /// workspaces live here, in the local provider's layout (`sandboxes/`,
    /// `snapshots/`). [`DockerConfig::from_env`] uses `<headstart data dir>/docker`.
    pub data_dir: PathBuf,
    /// The image for sandboxes that name none and have no snapshot (`None`: the offline
    /// base image, built on first use).
    pub default_image: Option<String>,
    /// Pull an image that is missing locally (off by default: many engines have no
    /// registry access).
    pub allow_pull: bool,
    /// The user commands run as (`uid:gid` or a name in the image); `None`: the host
    /// user's `uid:gid`, so files written in the workspace stay the user's.
    pub user: Option<String>,
    /// The container's keep-alive entrypoint (default `sleep infinity`).
    pub keep_alive: Vec<String>,
    /// Labels put on every container and image this provider creates, and required
    /// when listing: a scope (e.g. one per test run).
    pub scope_labels: BTreeMap<String, String>,
    /// What the offline base image is made from.
    pub base_image: BaseImageSpec,
    /// How snapshot workspaces are restored (the local store's methods; `Auto` picks
    /// the fastest this machine supports).
    pub restore_method: RestoreMethod,
    /// The containers' network (`None`: the engine's default bridge; `"host"` shares
    /// the host's network, loopback included; `"none"` cuts it off).
    pub network_mode: Option<String>,
}

impl DockerConfig {
    /// Defaults with workspaces under `<headstart data dir>/docker` (`HEADSTART_HOME`,
    /// else the XDG data directory), the restore method `HEADSTART_RESTORE_METHOD`
    /// forces (as the local provider reads them) and the default image
    /// `HEADSTART_IMAGE` names ([`IMAGE_ENV`]; unset or empty: [`default_image`](super::default_image)).
    ///
    /// # Errors
    /// As [`crate::local::LocalConfig::from_env`].
    pub fn from_env() -> Result<Self> {
        let local = crate::local::LocalConfig::from_env()?;
        let config = Self::new(local.home.join(PROVIDER)).restore_method(local.restore_method);
        Ok(match std::env::var(IMAGE_ENV) {
            Ok(image) if !image.trim().is_empty() => config.default_image(image.trim()),
            _ => config,
        })
    }

    /// Defaults with workspaces under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            default_image: None,
            allow_pull: false,
            user: None,
            keep_alive: vec!["sleep".into(), "infinity".into()],
            scope_labels: BTreeMap::new(),
            base_image: BaseImageSpec::default(),
            restore_method: RestoreMethod::Auto,
            network_mode: None,
        }
    }

    /// Sets the containers' network (`"host"`, `"none"`, a network name).
    #[must_use]
    pub fn network_mode(mut self, mode: impl Into<String>) -> Self {
        self.network_mode = Some(mode.into());
        self
    }

    /// Sets the user commands run as (`"1000:1000"`).
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the default image.
    #[must_use]
    pub fn default_image(mut self, image: impl Into<String>) -> Self {
        self.default_image = Some(image.into());
        self
    }

    /// Allows pulling missing images.
    #[must_use]
    pub fn allow_pull(mut self, allow: bool) -> Self {
        self.allow_pull = allow;
        self
    }

    /// Sets the keep-alive entrypoint.
    #[must_use]
    pub fn keep_alive<I: IntoIterator<Item = S>, S: Into<String>>(mut self, argv: I) -> Self {
        self.keep_alive = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Forces a restore method for snapshot workspaces.
    #[must_use]
    pub fn restore_method(mut self, method: RestoreMethod) -> Self {
        self.restore_method = method;
        self
    }

    /// Adds a scope label.
    #[must_use]
    pub fn scope_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.scope_labels.insert(key.into(), value.into());
        self
    }
}

/// The host user as `uid:gid`.
pub fn host_user() -> String {
    format!(
        "{}:{}",
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    )
}

/// The container name of sandbox `name` of the data directory `data_dir`:
/// `headstart-<name>-<tag>`, the tag being [`data_dir_tag`]. Pass the canonical data
/// directory ([`DockerProvider::data_dir`](super::DockerProvider::data_dir); [`DockerProvider::container_name`](super::DockerProvider::container_name) does):
/// the same name in two data directories gives two container names.
pub fn container_name(name: &SandboxName, data_dir: &Path) -> String {
    format!("{CONTAINER_PREFIX}{name}-{}", data_dir_tag(data_dir))
}

/// Eight hex digits of the SHA-256 of a data directory's path: what tells two data
/// directories' container names apart.
pub fn data_dir_tag(data_dir: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..4])
}

/// `path` made absolute with symlinks resolved, also before it exists: the longest
/// existing ancestor is canonicalised and the rest appended.
pub(super) fn canonical_dir(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut base = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(base) {
            return rest.iter().rev().fold(canonical, |p, c| p.join(c));
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(last)) => {
                rest.push(last.to_os_string());
                base = parent;
            }
            _ => return absolute,
        }
    }
}
