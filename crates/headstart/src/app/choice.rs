//! What the fast paths decide, mapped onto the plain options the implementations take
//! (`provisioners` knows nothing of experiments).
//!
//! - [`choose_provider`]: which provider runs a start. An explicit choice always wins;
//!   otherwise the `sandbox` fast path (from the `fast_provision` experiment or an
//!   opt-in) picks Docker when an engine answers, and says so when none does;
//!   otherwise the local provider.
//! - [`prebuilt_images`]: which prebuilt VM images `vm up` may boot (`images`: the
//!   marketplace image, `docker`: the cloud's Docker-ready image).
//!
//! Part of the app layer: the CLI and library users get the same choice.
//!
//! These are decisions only: they install nothing and start no engine (an experiment
//! never changes the user's machine).

use feature_flags::FastPaths;
use provisioners::cloud::PrebuiltImages;

/// A provider kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Workspace directories on this machine (no isolation).
    Local,
    /// Docker containers with the workspace at `/workspace`.
    Docker,
}

impl ProviderKind {
    /// Its name (`local`, `docker`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Docker => "docker",
        }
    }
}

/// The chosen provider and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProviderChoice {
    /// The provider.
    pub kind: ProviderKind,
    /// Why (for reports and `flags status`).
    pub reason: String,
}

/// Chooses the provider. `docker_answers` is only consulted when the `sandbox` fast
/// path is on and nothing was chosen explicitly, so callers can pass a probe that
/// pings the engine lazily.
pub fn choose_provider(
    explicit: Option<ProviderKind>,
    fast: FastPaths,
    docker_answers: impl FnOnce() -> bool,
) -> ProviderChoice {
    if let Some(kind) = explicit {
        return ProviderChoice {
            kind,
            reason: format!("--provider {}", kind.as_str()),
        };
    }
    if fast.sandbox {
        if docker_answers() {
            return ProviderChoice {
                kind: ProviderKind::Docker,
                reason: "the sandbox fast path is on and a Docker engine answers".into(),
            };
        }
        return ProviderChoice {
            kind: ProviderKind::Local,
            reason: "the sandbox fast path is on but no Docker engine answers (start one, e.g. \
                     `sudo systemctl start docker`, to get isolated sandboxes); using local"
                .into(),
        };
    }
    ProviderChoice {
        kind: ProviderKind::Local,
        reason: "default provider".into(),
    }
}

/// The prebuilt VM images the fast paths allow: `images` turns on marketplace images
/// (DigitalOcean), `docker` the clouds' Docker-ready images (Hetzner, GCP).
pub fn prebuilt_images(fast: FastPaths) -> PrebuiltImages {
    PrebuiltImages {
        marketplace: fast.images,
        docker_ready: fast.docker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> FastPaths {
        FastPaths {
            sandbox: true,
            ..FastPaths::default()
        }
    }

    #[test]
    fn explicit_always_wins_and_skips_the_probe() {
        let c = choose_provider(Some(ProviderKind::Local), sandbox(), || panic!("no probe"));
        assert_eq!(c.kind, ProviderKind::Local);
        let c = choose_provider(Some(ProviderKind::Docker), FastPaths::default(), || {
            panic!("no probe")
        });
        assert_eq!(c.kind, ProviderKind::Docker);
    }

    #[test]
    fn sandbox_fast_path_uses_docker_only_when_it_answers() {
        assert_eq!(
            choose_provider(None, sandbox(), || true).kind,
            ProviderKind::Docker
        );
        let c = choose_provider(None, sandbox(), || false);
        assert_eq!(c.kind, ProviderKind::Local);
        assert!(c.reason.contains("no Docker engine"), "{}", c.reason);
    }

    #[test]
    fn other_fast_paths_do_not_change_the_provider() {
        let fp = FastPaths {
            images: true,
            docker: true,
            sandbox: false,
        };
        assert_eq!(
            choose_provider(None, fp, || panic!("no probe")).kind,
            ProviderKind::Local
        );
        assert_eq!(
            choose_provider(None, FastPaths::default(), || panic!("no probe")).kind,
            ProviderKind::Local
        );
    }

    #[test]
    fn images_and_docker_fast_paths_pick_the_prebuilt_vm_images() {
        assert_eq!(
            prebuilt_images(FastPaths::default()),
            PrebuiltImages::default()
        );
        let images = prebuilt_images(FastPaths {
            images: true,
            ..FastPaths::default()
        });
        assert!(images.marketplace && !images.docker_ready);
        let docker = prebuilt_images(FastPaths {
            docker: true,
            sandbox: true,
            ..FastPaths::default()
        });
        assert!(!docker.marketplace && docker.docker_ready);
    }
}
