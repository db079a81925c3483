//! Which local provider a start uses, given the user's `--provider` and the fast paths.
//!
//! What it is: the rule, as a pure function, so every binary and library applies the
//! same one: an explicit `--provider` always wins (a user who picked "no isolation" is
//! never moved into a sandbox by an experiment); otherwise `sandbox` picks Docker when
//! the engine answers, else says so and stays local. What it is not: a Docker probe or a
//! provider factory; the caller checks the engine and builds the provider.

use crate::FastPaths;

/// The provider a start should use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderPick {
    /// The user named a provider; used as given, whatever the fast paths say.
    Explicit(String),
    /// The `sandbox` fast path is on and a Docker engine answers.
    Docker,
    /// The local provider.
    Local {
        /// Why, when `sandbox` asked for Docker and it was not there (tell the user).
        note: Option<String>,
    },
}

impl ProviderPick {
    /// The provider name (`docker`, `local`, or the explicit one).
    pub fn name(&self) -> &str {
        match self {
            ProviderPick::Explicit(name) => name,
            ProviderPick::Docker => "docker",
            ProviderPick::Local { .. } => "local",
        }
    }
}

/// Picks the provider. `explicit` is `--provider` (empty counts as absent);
/// `docker_available` is whether a Docker engine answers (only consulted when the
/// `sandbox` fast path is on, so callers may pass a lazily computed value).
pub fn pick_provider(
    explicit: Option<&str>,
    paths: FastPaths,
    docker_available: impl FnOnce() -> bool,
) -> ProviderPick {
    if let Some(name) = explicit.map(str::trim).filter(|n| !n.is_empty()) {
        return ProviderPick::Explicit(name.to_owned());
    }
    if !paths.sandbox {
        return ProviderPick::Local { note: None };
    }
    if docker_available() {
        ProviderPick::Docker
    } else {
        ProviderPick::Local {
            note: Some(
                "the sandbox fast path wants Docker, but no Docker engine answers: using the \
                 local provider (no isolation). Start Docker to get sandboxes; nothing is \
                 installed for you."
                    .to_owned(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_always_wins() {
        let all = FastPaths::all();
        assert_eq!(
            pick_provider(Some("local"), all, || true),
            ProviderPick::Explicit("local".into())
        );
        assert_eq!(
            pick_provider(Some(" docker "), FastPaths::default(), || false).name(),
            "docker"
        );
    }

    #[test]
    fn sandbox_uses_docker_only_when_present() {
        let sandbox = FastPaths {
            sandbox: true,
            ..FastPaths::default()
        };
        assert_eq!(pick_provider(None, sandbox, || true), ProviderPick::Docker);
        match pick_provider(None, sandbox, || false) {
            ProviderPick::Local { note: Some(n) } => assert!(n.contains("no Docker engine")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            pick_provider(Some(""), sandbox, || true),
            ProviderPick::Docker
        );
    }

    #[test]
    fn without_sandbox_docker_is_not_probed() {
        let images = FastPaths {
            images: true,
            docker: true,
            sandbox: false,
        };
        let pick = pick_provider(None, images, || panic!("must not probe Docker"));
        assert_eq!(pick, ProviderPick::Local { note: None });
    }
}
