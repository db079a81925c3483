//! PostHog-compatible feature flags for headstart: local evaluation that matches
//! PostHog's reference SDKs bit for bit, remote evaluation with caching, exposure
//! events, and the `fast_provision` experiment resolved into [`FastPaths`].
//!
//! This crate is **not** sandbox code: it knows nothing about git, providers or
//! snapshots. It decides which fast paths are on and tells PostHog what it decided.
#![deny(missing_docs)]

mod eval;
mod regex_compat;

pub use eval::{
    Condition, Definitions, Evaluation, FlagDefinition, FlagValue, Filters, Holdout, Inconclusive,
    Multivariate, Properties, PropertyFilter, REFERENCE_SDK, Variant, hash,
};

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
