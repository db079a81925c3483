//! Configuration: the one place where the crate's environment variables are read.
//!
//! What it is: [`Config::from_env`], which takes an env-lookup closure (so tests pass
//! values explicitly and nothing here touches the process environment on its own), and
//! a few builder methods for what has no environment variable.
//!
//! What it is not: a validator of `HEADSTART_BETA` or `HEADSTART_FLAG_OVERRIDES`; those
//! are kept as given and parsed by the resolver, which reports errors in context.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use crate::eval::Properties;

/// The environment variables [`Config::from_env`] reads.
pub mod vars {
    /// PostHog project API key (`phc_...`, public). Without it nothing is sent or asked.
    pub const PROJECT_KEY: &str = "HEADSTART_POSTHOG_KEY";
    /// PostHog host, default [`super::DEFAULT_HOST`].
    pub const HOST: &str = "HEADSTART_POSTHOG_HOST";
    /// PostHog feature-flags secure API key, for polling definitions (servers only).
    pub const SECRET_KEY: &str = "HEADSTART_POSTHOG_SECRET_KEY";
    /// `1` turns the experiment off: control, no network request.
    pub const FLAGS_DISABLED: &str = "HEADSTART_FEATURE_FLAGS_DISABLED";
    /// `0` turns telemetry off: no events and no flag request.
    pub const TELEMETRY: &str = "HEADSTART_TELEMETRY";
    /// The cross-tool convention; `1` means the same as `HEADSTART_TELEMETRY=0`.
    pub const DO_NOT_TRACK: &str = "DO_NOT_TRACK";
    /// The user's own opt-in to fast paths (`images,docker,sandbox`), merged with `--beta`.
    pub const BETA: &str = "HEADSTART_BETA";
    /// Local flag overrides for testing, e.g. `fast_provision=test`.
    pub const FLAG_OVERRIDES: &str = "HEADSTART_FLAG_OVERRIDES";
    /// The variables whose values are keys: a binary registers them with its secret
    /// scrubber (this crate has none) and keeps them from sandboxed commands. The
    /// project key is public by PostHog's design, but it names the project and is no
    /// business of a log or a recipe.
    pub const SECRETS: &[&str] = &[PROJECT_KEY, SECRET_KEY];
}

/// PostHog's US cloud ingestion host.
pub const DEFAULT_HOST: &str = "https://us.i.posthog.com";

/// How long answers are kept and trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// A cached `/flags` answer younger than this is used without asking again.
    pub ttl: Duration,
    /// After `ttl`, and for this long, the cached answer is still used at once while
    /// a background request refreshes it (stale-while-revalidate).
    pub stale_while_revalidate: Duration,
    /// After a timeout or connection error, the host is not asked again for this long.
    pub unreachable_for: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            ttl: Duration::from_secs(60 * 60),
            stale_while_revalidate: Duration::from_secs(7 * 24 * 60 * 60),
            unreachable_for: Duration::from_secs(15 * 60),
        }
    }
}

/// Why telemetry is off, when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelemetryOff {
    /// `HEADSTART_TELEMETRY=0`.
    HeadstartTelemetry,
    /// `DO_NOT_TRACK=1`.
    DoNotTrack,
}

/// Everything the crate needs to know, built once by [`Config::from_env`].
#[derive(Clone)]
pub struct Config {
    pub(crate) data_dir: PathBuf,
    pub(crate) project_key: Option<String>,
    pub(crate) host: String,
    pub(crate) secret_key: Option<SecretString>,
    pub(crate) flags_disabled: bool,
    pub(crate) telemetry_off: Option<TelemetryOff>,
    pub(crate) beta_env: Option<String>,
    pub(crate) overrides_env: Option<String>,
    pub(crate) person_properties: Properties,
    pub(crate) request_timeout: Duration,
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) events_timeout: Duration,
    pub(crate) cache: CachePolicy,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("project_key", &self.project_key.as_ref().map(|_| "[set]"))
            .field("host", &self.host)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "[redacted]"),
            )
            .field("flags_disabled", &self.flags_disabled)
            .field("telemetry_off", &self.telemetry_off)
            .field("beta_env", &self.beta_env)
            .field("overrides_env", &self.overrides_env)
            .field("request_timeout", &self.request_timeout)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

fn falsy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off"
    )
}

impl Config {
    /// Builds the configuration from `lookup` (use `|k| std::env::var(k).ok()` in a
    /// binary). `data_dir` holds the install id and the caches (`<data_dir>/feature-flags`).
    /// Empty values count as unset.
    pub fn from_env(data_dir: impl Into<PathBuf>, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let telemetry_off = if get(vars::TELEMETRY).is_some_and(|v| falsy(&v)) {
            Some(TelemetryOff::HeadstartTelemetry)
        } else if get(vars::DO_NOT_TRACK).is_some_and(|v| truthy(&v)) {
            Some(TelemetryOff::DoNotTrack)
        } else {
            None
        };
        Config {
            data_dir: data_dir.into(),
            project_key: get(vars::PROJECT_KEY).map(|v| v.trim().to_owned()),
            host: get(vars::HOST)
                .map(|h| h.trim().trim_end_matches('/').to_owned())
                .unwrap_or_else(|| DEFAULT_HOST.to_owned()),
            secret_key: get(vars::SECRET_KEY).map(|v| SecretString::from(v.trim().to_owned())),
            flags_disabled: get(vars::FLAGS_DISABLED).is_some_and(|v| truthy(&v)),
            telemetry_off,
            beta_env: get(vars::BETA),
            overrides_env: get(vars::FLAG_OVERRIDES),
            person_properties: Properties::new(),
            request_timeout: Duration::from_millis(1500),
            events_timeout: Duration::from_secs(3),
            cache: CachePolicy::default(),
        }
    }

    /// Person properties sent with flag requests and used by local evaluation
    /// (e.g. `os`, `arch`, `headstart_version`).
    pub fn with_person_properties(mut self, properties: Properties) -> Self {
        self.person_properties = properties;
        self
    }

    /// The `/flags` request timeout (default 1.5 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The cache policy (defaults: TTL 1 h, stale-while-revalidate 7 days,
    /// unreachable host remembered 15 min).
    pub fn with_cache_policy(mut self, policy: CachePolicy) -> Self {
        self.cache = policy;
        self
    }

    /// The data directory this configuration was built with.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The PostHog host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether a project key is configured (without one, nothing is ever sent).
    pub fn has_project_key(&self) -> bool {
        self.project_key.is_some()
    }

    /// Why telemetry is off, or `None` when it is on.
    pub fn telemetry_off(&self) -> Option<TelemetryOff> {
        self.telemetry_off
    }

    /// Whether `HEADSTART_FEATURE_FLAGS_DISABLED` is set.
    pub fn flags_disabled(&self) -> bool {
        self.flags_disabled
    }

    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn flags_dir(&self) -> PathBuf {
        self.data_dir.join("feature-flags")
    }

    /// Whether events may be sent at all: a project key and telemetry on.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn may_send_events(&self) -> bool {
        self.project_key.is_some() && self.telemetry_off.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env("/tmp/x", move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_send_nothing_without_a_key() {
        let c = cfg(&[]);
        assert!(!c.has_project_key());
        assert!(!c.may_send_events());
        assert_eq!(c.host(), DEFAULT_HOST);
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn switches_are_read() {
        let c = cfg(&[
            (vars::PROJECT_KEY, "phc_x"),
            (vars::HOST, "http://127.0.0.1:9/"),
            (vars::TELEMETRY, "0"),
            (vars::FLAGS_DISABLED, "1"),
        ]);
        assert_eq!(c.host(), "http://127.0.0.1:9");
        assert_eq!(c.telemetry_off(), Some(TelemetryOff::HeadstartTelemetry));
        assert!(c.flags_disabled());
        assert!(!c.may_send_events());
        let c = cfg(&[(vars::DO_NOT_TRACK, "1"), (vars::TELEMETRY, "1")]);
        assert_eq!(c.telemetry_off(), Some(TelemetryOff::DoNotTrack));
        let c = cfg(&[(vars::TELEMETRY, ""), (vars::FLAGS_DISABLED, "0")]);
        assert_eq!(c.telemetry_off(), None);
        assert!(!c.flags_disabled());
    }

    #[test]
    fn debug_redacts_keys() {
        let c = cfg(&[
            (vars::PROJECT_KEY, "phc_secretish"),
            (vars::SECRET_KEY, "phs_topsecret"),
        ]);
        let d = format!("{c:?}");
        assert!(
            !d.contains("phs_topsecret") && !d.contains("phc_secretish"),
            "{d}"
        );
    }
}
