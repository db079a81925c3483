//! [`Config`]: every setting of the app layer, built explicitly or read once from the
//! environment ([`Config::from_env`], through [`crate::env`]).

use std::path::PathBuf;

use feature_flags::Properties;
use provisioners::local::{LocalConfig, RestoreMethod};
use sandbox_core::Credentials;
use snapshot_refresh::Eligibility;

use super::{Error, Result};
use crate::env;

/// The settings of a [`Headstart`](super::Headstart).
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The data directory: sandboxes, snapshots, state, the flags cache.
    pub data_dir: PathBuf,
    /// How snapshots are restored.
    pub restore_method: RestoreMethod,
    /// Credentials for private repositories (handed to git only through callbacks).
    pub credentials: Credentials,
    /// Which repositories get snapshots.
    pub eligibility: Eligibility,
    /// Hand background snapshot builds to a detached process (when
    /// [`build_runner`](Self::build_runner) is set) instead of building in-process.
    pub detach_builds: bool,
    /// The program a detached build runs as `PROGRAM snapshot run-job --provider P JOB`
    /// (the headstart binary); `None`: builds run in this process.
    pub build_runner: Option<PathBuf>,
    /// The program started as `PROGRAM daemon run` when a start needs the credential
    /// daemon and none answers (the headstart binary); `None`: a daemon must be running.
    pub daemon_runner: Option<PathBuf>,
    /// The Docker sandboxes' network mode (`None`: the engine's default bridge;
    /// `host`: the host's network).
    pub docker_network: Option<String>,
    /// The feature-flags client's configuration.
    pub flags: feature_flags::Config,
    /// The default git identity of started workspaces, `Name <email>`
    /// (`HEADSTART_GIT_USER`); an [`UpRequest::git_user`](super::UpRequest::git_user) wins.
    pub git_user: Option<String>,
    /// The OCI registry snapshots are shared through (`HOST[:PORT]/REPOSITORY`,
    /// `HEADSTART_REGISTRY`); `None`: snapshots stay on this host.
    pub registry: Option<String>,
    /// A token for the registry (`HEADSTART_REGISTRY_TOKEN`); `None`: the Docker
    /// configuration's credentials (see [`docker_config`](Self::docker_config)).
    pub registry_token: Option<secrecy::SecretString>,
    /// Plain HTTP to a registry that is not on loopback (`HEADSTART_REGISTRY_INSECURE=1`).
    pub registry_insecure: bool,
    /// How long a start waits for a pull before it starts cold.
    pub registry_timeout: std::time::Duration,
    /// The Docker `config.json` registry credentials are read from.
    pub docker_config: Option<PathBuf>,
    /// The default idle timeout of started sandboxes (`HEADSTART_IDLE_TIMEOUT`; `None`
    /// or zero: never stopped for idleness); an
    /// [`UpRequest::idle_timeout`](super::UpRequest::idle_timeout) or a recipe's wins.
    pub idle_timeout: Option<std::time::Duration>,
    /// Why `HEADSTART_IDLE_TIMEOUT` is invalid: reported by a start.
    idle_timeout_error: Option<String>,
    /// Why the environment's eligibility settings are invalid: reported by a start
    /// that would use them (every other operation works without them).
    eligibility_error: Option<String>,
}

impl Config {
    /// A configuration over `data_dir`: automatic restore, no credentials, every
    /// repository eligible, in-process builds, feature flags and telemetry off.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let flags = feature_flags::Config::from_env(data_dir.clone(), |k| {
            (k == feature_flags::vars::TELEMETRY || k == feature_flags::vars::FLAGS_DISABLED).then(
                || {
                    if k == feature_flags::vars::TELEMETRY {
                        "0"
                    } else {
                        "1"
                    }
                    .to_owned()
                },
            )
        });
        Self {
            data_dir,
            restore_method: RestoreMethod::Auto,
            credentials: Credentials::none(),
            eligibility: Eligibility::all(),
            detach_builds: false,
            build_runner: None,
            daemon_runner: None,
            docker_network: None,
            flags,
            eligibility_error: None,
            git_user: None,
            registry: None,
            registry_token: None,
            registry_insecure: false,
            registry_timeout: snapshot_refresh::DEFAULT_PULL_BOUND,
            docker_config: None,
            idle_timeout: None,
            idle_timeout_error: None,
        }
    }

    /// The default idle timeout a start uses.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `HEADSTART_IDLE_TIMEOUT` is not a duration.
    pub(crate) fn default_idle_timeout(&self) -> Result<Option<std::time::Duration>> {
        match &self.idle_timeout_error {
            Some(e) => Err(Error::InvalidInput(e.clone())),
            None => Ok(self.idle_timeout),
        }
    }

    /// The eligibility a start uses.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the environment's settings were invalid.
    pub(crate) fn eligibility(&self) -> Result<Eligibility> {
        match &self.eligibility_error {
            Some(e) => Err(Error::InvalidInput(e.clone())),
            None => Ok(self.eligibility.clone()),
        }
    }

    /// The configuration the environment describes (see [`crate::env`]): the data
    /// directory and restore method, git credentials, snapshot eligibility, detached
    /// builds (without a build runner: the binary sets its own path), and feature flags.
    ///
    /// # Errors
    /// [`Error::Core`] for a bad `HEADSTART_RESTORE_METHOD` or no data directory. A
    /// `HEADSTART_SNAPSHOT_MAX_BYTES` that is no number fails the starts that would use
    /// it ([`Error::InvalidInput`]), not this.
    pub fn from_env() -> Result<Self> {
        let local = LocalConfig::from_vars(env::var_os)?;
        let mut person = Properties::new();
        person.insert("os".into(), serde_json::json!(std::env::consts::OS));
        person.insert("arch".into(), serde_json::json!(std::env::consts::ARCH));
        person.insert(
            "headstart_version".into(),
            serde_json::json!(env!("CARGO_PKG_VERSION")),
        );
        let flags = feature_flags::Config::from_env(local.home.clone(), env::var)
            .with_person_properties(person);
        let (eligibility, eligibility_error) = match eligibility() {
            Ok(e) => (e, None),
            Err(e) => (Eligibility::all(), Some(e.to_string())),
        };
        let (idle_timeout, idle_timeout_error) = match env::non_empty(env::HEADSTART_IDLE_TIMEOUT) {
            None => (None, None),
            Some(v) => match super::parse_duration(&v) {
                Ok(d) => (Some(d), None),
                Err(e) => (None, Some(format!("{}: {e}", env::HEADSTART_IDLE_TIMEOUT))),
            },
        };
        Ok(Self {
            idle_timeout,
            idle_timeout_error,
            data_dir: local.home,
            restore_method: local.restore_method,
            credentials: git_credentials(),
            eligibility,
            eligibility_error,
            detach_builds: env::var(env::HEADSTART_DETACH_BUILDS).is_none_or(|v| v != "0"),
            build_runner: None,
            daemon_runner: None,
            docker_network: env::non_empty(env::HEADSTART_DOCKER_NETWORK),
            flags,
            git_user: env::non_empty(env::HEADSTART_GIT_USER),
            registry: env::non_empty(env::HEADSTART_REGISTRY).map(|r| r.trim().to_owned()),
            registry_token: env::non_empty(env::HEADSTART_REGISTRY_TOKEN)
                .map(secrecy::SecretString::from),
            registry_insecure: env::var(env::HEADSTART_REGISTRY_INSECURE).is_some_and(|v| v == "1"),
            registry_timeout: env::non_empty(env::HEADSTART_REGISTRY_TIMEOUT)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(
                    snapshot_refresh::DEFAULT_PULL_BOUND,
                    std::time::Duration::from_secs,
                ),
            docker_config: env::non_empty(env::DOCKER_CONFIG)
                .map(PathBuf::from)
                .or_else(|| env::non_empty(env::HOME).map(|h| PathBuf::from(h).join(".docker")))
                .map(|d| d.join("config.json")),
        })
    }
}

/// Credentials for private repositories:
/// - a token from `HEADSTART_GIT_TOKEN`, else `GITHUB_TOKEN` (sent to github.com only);
///   never over plain `http://` except to this machine; empty means none;
/// - an ssh private key from `HEADSTART_SSH_KEY`, else the first of `~/.ssh/id_ed25519`,
///   `id_ecdsa`, `id_rsa` that exists (ssh URLs), checked against
///   `HEADSTART_KNOWN_HOSTS`, else `~/.ssh/known_hosts`.
fn git_credentials() -> Credentials {
    // GITHUB_TOKEN (set in every GitHub Actions job) is for github.com only: another
    // server asking for credentials must not be handed it.
    let mut creds = match env::non_empty(env::HEADSTART_GIT_TOKEN) {
        Some(t) => Credentials::token(t),
        None => env::non_empty(env::GITHUB_TOKEN).map_or_else(Credentials::none, |t| {
            Credentials::token(t).with_token_only_for("github.com")
        }),
    };
    let key = env::non_empty(env::HEADSTART_SSH_KEY)
        .map(PathBuf::from)
        .or_else(|| {
            let ssh = PathBuf::from(env::non_empty(env::HOME)?).join(".ssh");
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|f| ssh.join(f))
                .find(|p| p.exists())
        });
    if let Some(key) = key {
        creds = creds.with_ssh_key(key);
    }
    if let Some(known) = env::non_empty(env::HEADSTART_KNOWN_HOSTS) {
        creds = creds.with_known_hosts(known);
    }
    creds
}

/// `HEADSTART_SNAPSHOT_ALLOW` and `HEADSTART_SNAPSHOT_DENY` (comma-separated patterns
/// over `host/owner/repo`, `*` matches anything) and `HEADSTART_SNAPSHOT_MAX_BYTES`.
fn eligibility() -> Result<Eligibility> {
    let list = |var: &str| -> Vec<String> {
        env::var(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let max_size_bytes = match env::var(env::HEADSTART_SNAPSHOT_MAX_BYTES) {
        Some(v) if !v.trim().is_empty() => Some(v.trim().parse::<u64>().map_err(|_| {
            Error::InvalidInput(format!(
                "HEADSTART_SNAPSHOT_MAX_BYTES={v:?} is not a number of bytes"
            ))
        })?),
        _ => None,
    };
    Ok(Eligibility {
        allow: list(env::HEADSTART_SNAPSHOT_ALLOW),
        deny: list(env::HEADSTART_SNAPSHOT_DENY),
        max_size_bytes,
        disabled: false,
    })
}

/// Registers every secret this process may hold with the one scrubber
/// ([`sandbox_core::scrub()`]), before anything is logged: the git token variables, the
/// cloud token variables and the PostHog keys, by name (so sandboxed commands never
/// inherit them) and by value (so no log line, error, record or `--json` shows them).
pub fn register_secrets() {
    let names = sandbox_core::scrub::GIT_TOKEN_VARS
        .iter()
        .chain(provisioners::cloud::TOKEN_VARS)
        .chain(feature_flags::vars::SECRETS)
        .chain(&[env::HEADSTART_REGISTRY_TOKEN]);
    for name in names {
        sandbox_core::scrub::register_secret_var(name);
        if let Some(value) = env::var(name) {
            sandbox_core::register_secret(&value);
        }
    }
}
