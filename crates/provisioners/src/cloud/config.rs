//! Cloud settings, read from the environment in exactly one place ([`CloudConfig::from_env`]).
//!
//! Tokens live in a [`SecretString`]: `Debug` redacts them and nothing here prints
//! them. Base URLs are overridable so tests (and API-compatible proxies) can point a
//! provisioner elsewhere. This module does no HTTP.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::error::{CloudError, Result};
use super::spec::Cloud;

/// The DigitalOcean token variable (`DIGITALOCEAN_ACCESS_TOKEN`, doctl's name, is
/// read when this one is unset).
pub const DIGITALOCEAN_TOKEN_VAR: &str = "DIGITALOCEAN_TOKEN";
/// doctl's name for the DigitalOcean token.
pub const DIGITALOCEAN_TOKEN_VAR_ALT: &str = "DIGITALOCEAN_ACCESS_TOKEN";
/// The Hetzner Cloud token variable (the hcloud CLI's name).
pub const HETZNER_TOKEN_VAR: &str = "HCLOUD_TOKEN";
/// The GCP OAuth access token variable (e.g. `gcloud auth print-access-token`).
pub const GCP_TOKEN_VAR: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";
/// Every variable a cloud token is read from (secrets: never passed to a sandbox's
/// commands, registered with the scrubber when read).
pub const TOKEN_VARS: &[&str] = &[
    DIGITALOCEAN_TOKEN_VAR,
    DIGITALOCEAN_TOKEN_VAR_ALT,
    HETZNER_TOKEN_VAR,
    GCP_TOKEN_VAR,
];
/// The GCP project variable.
pub const GCP_PROJECT_VAR: &str = "GOOGLE_CLOUD_PROJECT";
/// Overrides the DigitalOcean API base URL.
pub const DIGITALOCEAN_URL_VAR: &str = "HEADSTART_DIGITALOCEAN_API_URL";
/// Overrides the Hetzner Cloud API base URL.
pub const HETZNER_URL_VAR: &str = "HEADSTART_HCLOUD_API_URL";
/// Overrides the Compute Engine API base URL.
pub const GCP_URL_VAR: &str = "HEADSTART_GCE_API_URL";

/// A cloud API token. `Debug` prints `[redacted]`; it is sent only as a bearer
/// `Authorization` header, never in a URL; making one registers it with the scrubber
/// ([`sandbox_core::scrub()`]), so no log, error or recorded output shows it.
#[derive(Clone)]
pub struct ApiToken(SecretString);

impl ApiToken {
    /// Wraps a token; empty or all-whitespace is refused.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token: String = token.into();
        let token = token.trim();
        if token.is_empty() {
            None
        } else {
            sandbox_core::register_secret(token);
            Some(Self(SecretString::from(token.to_owned())))
        }
    }

    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken([redacted])")
    }
}

/// Everything one provisioner needs to talk to its API.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// The cloud.
    pub cloud: Cloud,
    /// The API token.
    pub token: ApiToken,
    /// The variable the token came from (named in error messages).
    pub token_var: &'static str,
    /// The API base URL without a trailing `/`.
    pub base_url: String,
    /// The GCP project (GCP only).
    pub project: Option<String>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// How often a request is sent at most when the API answers 429.
    pub max_attempts: u32,
    /// The longest single wait for a rate limit (a longer Retry-After is cut to this).
    pub max_retry_wait: Duration,
    /// How often to poll a VM's status or an operation.
    pub poll_interval: Duration,
}

impl CloudConfig {
    /// The default API base URL of a cloud.
    pub fn default_base_url(cloud: Cloud) -> &'static str {
        match cloud {
            Cloud::DigitalOcean => "https://api.digitalocean.com",
            Cloud::Hetzner => "https://api.hetzner.cloud/v1",
            Cloud::Gcp => "https://compute.googleapis.com/compute/v1",
        }
    }

    /// A config with explicit values (tests, library users); default timeouts.
    pub fn new(cloud: Cloud, token: ApiToken, base_url: impl Into<String>) -> Self {
        let base_url: String = base_url.into();
        Self {
            cloud,
            token,
            token_var: token_var(cloud),
            base_url: base_url.trim_end_matches('/').to_owned(),
            project: None,
            request_timeout: Duration::from_secs(30),
            max_attempts: 5,
            max_retry_wait: Duration::from_secs(60),
            poll_interval: Duration::from_secs(3),
        }
    }

    /// Sets the GCP project.
    #[must_use]
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Reads the settings of `cloud` from the process environment. This is the only
    /// place the cloud provisioners read environment variables.
    ///
    /// # Errors
    /// [`CloudError::MissingConfig`] naming the variable to set.
    pub fn from_env(cloud: Cloud) -> Result<Self> {
        Self::from_lookup(cloud, |k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env) with an explicit lookup (tests pass a map so
    /// they never touch the process environment).
    ///
    /// # Errors
    /// [`CloudError::MissingConfig`] naming the variable to set.
    pub fn from_lookup(cloud: Cloud, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let (token, url_var, hint): (Option<ApiToken>, &str, &'static str) = match cloud {
            Cloud::DigitalOcean => (
                lookup(DIGITALOCEAN_TOKEN_VAR)
                    .and_then(ApiToken::new)
                    .or_else(|| lookup(DIGITALOCEAN_TOKEN_VAR_ALT).and_then(ApiToken::new)),
                DIGITALOCEAN_URL_VAR,
                "create a personal access token with write scope under API > Tokens in the DigitalOcean control panel",
            ),
            Cloud::Hetzner => (
                lookup(HETZNER_TOKEN_VAR).and_then(ApiToken::new),
                HETZNER_URL_VAR,
                "create a Read & Write API token under Security > API tokens in your Hetzner Cloud project",
            ),
            Cloud::Gcp => (
                lookup(GCP_TOKEN_VAR).and_then(ApiToken::new),
                GCP_URL_VAR,
                "set it to the output of `gcloud auth print-access-token` (tokens last about an hour)",
            ),
        };
        let token = token.ok_or(CloudError::MissingConfig {
            cloud,
            var: token_var(cloud),
            hint,
        })?;
        let base = lookup(url_var)
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| Self::default_base_url(cloud).to_owned());
        let mut config = Self::new(cloud, token, base);
        if cloud == Cloud::Gcp {
            let project = lookup(GCP_PROJECT_VAR).filter(|p| !p.trim().is_empty()).ok_or(
                CloudError::MissingConfig {
                    cloud,
                    var: GCP_PROJECT_VAR,
                    hint: "set it to the project id that will hold the instances (`gcloud config get project`)",
                },
            )?;
            config.project = Some(project.trim().to_owned());
        }
        Ok(config)
    }
}

fn token_var(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::DigitalOcean => DIGITALOCEAN_TOKEN_VAR,
        Cloud::Hetzner => HETZNER_TOKEN_VAR,
        Cloud::Gcp => GCP_TOKEN_VAR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let c = CloudConfig::new(
            Cloud::Hetzner,
            ApiToken::new("s3cr3t-token").unwrap(),
            "http://x/",
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("redacted"));
        assert_eq!(c.base_url, "http://x");
    }

    #[test]
    fn missing_and_empty_tokens_name_the_variable() {
        let err = CloudConfig::from_lookup(Cloud::Hetzner, |_| Some("  ".into())).unwrap_err();
        assert!(err.to_string().contains("HCLOUD_TOKEN"), "{err}");
        let err =
            CloudConfig::from_lookup(Cloud::Gcp, |k| (k == GCP_TOKEN_VAR).then(|| "t".into()))
                .unwrap_err();
        assert!(err.to_string().contains("GOOGLE_CLOUD_PROJECT"), "{err}");
        let ok = CloudConfig::from_lookup(Cloud::DigitalOcean, |k| {
            (k == DIGITALOCEAN_TOKEN_VAR_ALT).then(|| "t".into())
        })
        .unwrap();
        assert_eq!(ok.base_url, "https://api.digitalocean.com");
    }
}
