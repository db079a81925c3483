//! PostHog-compatible feature flags for headstart: local evaluation that matches
//! PostHog's reference SDKs bit for bit, remote evaluation with caching, exposure
//! events, and the `fast_provision` experiment resolved into [`FastPaths`].
//!
//! This crate is **not** sandbox code: it knows nothing about git, providers or
//! snapshots. It decides which fast paths are on and tells PostHog what it decided.
//! Nothing is ever installed because of an experiment: a decision only says which
//! fast paths a start *may* use (choosing a provider from them is
//! the CLI's `choose_provider`, where an explicit `--provider` always wins).
//!
//! # Overview
//!
//! - [`Definitions::evaluate`]: local evaluation with the semantics of
//!   [`REFERENCE_SDK`] (`null`/[`Evaluation::Inconclusive`] when it cannot decide).
//! - [`Config::from_env`]: every environment variable, read in one place.
//! - [`FeatureFlags`]: the per-process client. [`FeatureFlags::fast_paths`] resolves
//!   `--beta`/`--fast`/`HEADSTART_BETA` > `HEADSTART_FLAG_OVERRIDES` > opt-outs > the
//!   `fast_provision` experiment > nothing, and says why ([`DecisionSource`]).
//! - [`FeatureFlags::start_completed`]: the experiment's goal event.
//!
//! ```no_run
//! # #[cfg(feature = "remote")]
//! # async fn demo() -> Result<(), feature_flags::Error> {
//! use feature_flags::{BetaRequest, Config, FeatureFlags, Purpose};
//! let config = Config::from_env("/home/me/.local/share/headstart", |k| std::env::var(k).ok());
//! let flags = FeatureFlags::new(config);
//! let decision = flags.fast_paths(&BetaRequest::default(), Purpose::Provision).await?;
//! println!("fast paths: {} ({})", decision.paths, decision.source);
//! flags.shutdown(std::time::Duration::from_secs(2)).await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "remote")]
mod client;
mod config;
mod dates;
mod eval;
mod experiment;
mod regex_compat;
#[cfg(feature = "remote")]
mod remote;
#[cfg(feature = "remote")]
mod store;
#[cfg(feature = "remote")]
mod telemetry;

use std::fmt;

#[cfg(feature = "remote")]
pub use client::{FeatureFlags, FlagError, FlagResult};
pub use config::{CachePolicy, Config, DEFAULT_HOST, TelemetryOff, vars};
pub use eval::{
    Condition, Definitions, Evaluation, Filters, FlagDefinition, FlagValue, Holdout, Inconclusive,
    Multivariate, Properties, PropertyFilter, REFERENCE_SDK, Variant, hash,
};
pub use experiment::{
    BetaRequest, Decision, DecisionSource, DisabledReason, FAST_PROVISION, Purpose, TEST_VARIANT,
    ValueOrigin, fast_paths_for,
};
#[cfg(feature = "remote")]
pub use telemetry::StartCompleted;

/// Errors a user can fix. Deciding fast paths never fails because of the network (it
/// falls back to no fast paths); only [`FeatureFlags::poll_definitions`] reports a
/// PostHog failure, as [`Error::Remote`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An entry of the requested fast paths ([`BetaRequest::beta`]) or of
    /// `HEADSTART_BETA` names no fast path.
    #[error(
        "unknown fast path {name:?} in {origin}: valid names are images, docker, sandbox (comma-separated)"
    )]
    UnknownFastPath {
        /// The name given.
        name: String,
        /// Where it came from (the request, or `HEADSTART_BETA`).
        origin: String,
    },
    /// A `HEADSTART_FLAG_OVERRIDES` entry is not `key=value`.
    #[error(
        "HEADSTART_FLAG_OVERRIDES entry {entry:?} is not KEY=VALUE: write e.g. HEADSTART_FLAG_OVERRIDES=fast_provision=test"
    )]
    BadOverride {
        /// The entry.
        entry: String,
    },
    /// Polling definitions needs a project key and the secret key.
    #[error(
        "polling flag definitions needs HEADSTART_POSTHOG_KEY and HEADSTART_POSTHOG_SECRET_KEY (a server-side secret), and telemetry on"
    )]
    NoSecretKey,
    /// PostHog answered with an error or could not be reached.
    #[error("PostHog request failed ({code}); try again later")]
    Remote {
        /// PostHog's error code (`timeout`, `api_error_401`, ...).
        code: String,
    },
}

impl Error {
    /// A stable snake_case name for the variant (machine-readable output).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownFastPath { .. } => "unknown_fast_path",
            Self::BadOverride { .. } => "bad_override",
            Self::NoSecretKey => "no_secret_key",
            Self::Remote { .. } => "remote",
        }
    }

    /// True when the error is the caller's input (a bad `--beta` list or override).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::UnknownFastPath { .. } | Self::BadOverride { .. }
        )
    }
}

/// The fast provisioning paths a start may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FastPaths {
    /// Pre-built VM images (marketplace images, nothing to install at boot).
    pub images: bool,
    /// Docker host images for VMs (Docker already installed).
    pub docker: bool,
    /// Local Docker sandboxes with the working directory mounted at `/workspace`.
    pub sandbox: bool,
}

impl FastPaths {
    /// The valid names, in `HEADSTART_BETA` order.
    pub const NAMES: [&'static str; 3] = ["images", "docker", "sandbox"];

    /// Every fast path (`--fast`, the `test` variant).
    pub fn all() -> Self {
        FastPaths {
            images: true,
            docker: true,
            sandbox: true,
        }
    }

    /// Whether no fast path is on.
    pub fn is_empty(&self) -> bool {
        !(self.images || self.docker || self.sandbox)
    }

    /// The paths on in either.
    pub fn union(self, other: FastPaths) -> Self {
        FastPaths {
            images: self.images || other.images,
            docker: self.docker || other.docker,
            sandbox: self.sandbox || other.sandbox,
        }
    }

    /// The names of the paths that are on.
    pub fn names(&self) -> Vec<&'static str> {
        let on = [self.images, self.docker, self.sandbox];
        Self::NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }

    /// The set as a `HEADSTART_BETA` value (`images,docker,sandbox`; empty for none).
    pub fn to_beta_env(&self) -> String {
        self.names().join(",")
    }

    /// Parses names, each item possibly a comma-separated list (`--beta images,docker
    /// --beta sandbox`). Case and surrounding spaces are ignored, empty items skipped.
    /// `origin` names the source in the error (`--beta`, `HEADSTART_BETA`).
    pub fn parse_list<I, S>(items: I, origin: &str) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = FastPaths::default();
        for item in items {
            for name in item
                .as_ref()
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
            {
                match name.to_ascii_lowercase().as_str() {
                    "images" => out.images = true,
                    "docker" => out.docker = true,
                    "sandbox" => out.sandbox = true,
                    _ => {
                        return Err(Error::UnknownFastPath {
                            name: name.to_owned(),
                            origin: origin.to_owned(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for FastPaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.to_beta_env())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_lists_parse_and_round_trip() {
        let p = FastPaths::parse_list(["images, Docker", "sandbox", ""], "--beta").unwrap();
        assert_eq!(p, FastPaths::all());
        assert_eq!(p.to_beta_env(), "images,docker,sandbox");
        assert_eq!(FastPaths::parse_list([p.to_beta_env()], "x").unwrap(), p);
        assert_eq!(FastPaths::default().to_string(), "none");
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = FastPaths::parse_list(["images,dokcer"], "--beta").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"dokcer\"") && msg.contains("--beta"),
            "{msg}"
        );
        assert!(msg.contains("images, docker, sandbox"), "{msg}");
    }
}
