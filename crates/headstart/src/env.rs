//! Every environment variable headstart reads, named once (the uv-static `EnvVars`
//! model), and the one place in this package that reads the process environment
//! ([`var`], [`var_os`]).
//!
//! What this is not: the parsing of the values. The app layer ([`crate::Config`])
//! turns them into typed settings; the library crates (`provisioners`,
//! `feature-flags`, `snapshot-refresh`, `sandbox-core`) take values, and where one of
//! them offers a `from_env`, the app layer calls its lookup form with [`var`]
//! instead. A few variables are read by dependencies we do not own (`DOCKER_HOST`
//! by bollard's defaults, `RUST_LOG` by tracing-subscriber, `HEADSTART_CLOUD` by
//! clap): they are listed here so the list is complete.

use std::ffi::OsString;

/// The data directory (default: `$XDG_DATA_HOME/headstart`, `~/.local/share/headstart`).
pub const HEADSTART_HOME: &str = "HEADSTART_HOME";
/// How snapshots are restored: `auto` (default), `overlay`, `reflink`, `hardlink`, `copy`.
pub const HEADSTART_RESTORE_METHOD: &str = "HEADSTART_RESTORE_METHOD";
/// A token for private https repositories (sent only to the URL's exact origin).
pub const HEADSTART_GIT_TOKEN: &str = "HEADSTART_GIT_TOKEN";
/// The token used when [`HEADSTART_GIT_TOKEN`] is unset or empty (sent to github.com only).
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// An ssh private key for ssh URLs (default: `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`).
pub const HEADSTART_SSH_KEY: &str = "HEADSTART_SSH_KEY";
/// The known_hosts file ssh host keys are checked against (default `~/.ssh/known_hosts`).
pub const HEADSTART_KNOWN_HOSTS: &str = "HEADSTART_KNOWN_HOSTS";
/// The user's home directory (default ssh keys, `~/.ssh/known_hosts`).
pub const HOME: &str = "HOME";
/// The user name (the default owner tag of cloud VMs).
pub const USER: &str = "USER";
/// The user name when [`USER`] is unset.
pub const LOGNAME: &str = "LOGNAME";
/// `0`: `up` builds snapshots in its own process and waits, instead of detaching.
pub const HEADSTART_DETACH_BUILDS: &str = "HEADSTART_DETACH_BUILDS";
/// Comma-separated `host/owner/repo` patterns (`*` matches anything) that get snapshots.
pub const HEADSTART_SNAPSHOT_ALLOW: &str = "HEADSTART_SNAPSHOT_ALLOW";
/// Comma-separated `host/owner/repo` patterns that never get snapshots.
pub const HEADSTART_SNAPSHOT_DENY: &str = "HEADSTART_SNAPSHOT_DENY";
/// The largest workspace, in bytes, kept as a snapshot.
pub const HEADSTART_SNAPSHOT_MAX_BYTES: &str = "HEADSTART_SNAPSHOT_MAX_BYTES";
/// The Docker sandbox image (default: built offline).
pub const HEADSTART_IMAGE: &str = "HEADSTART_IMAGE";
/// The Docker sandboxes' network: unset for the engine's default bridge, `host` to
/// share the host's (loopback included: the credential broker is then at 127.0.0.1).
pub const HEADSTART_DOCKER_NETWORK: &str = "HEADSTART_DOCKER_NETWORK";
/// The git identity (`Name <email>`) written into started workspaces' `.git/config`;
/// like `up --git-user`.
pub const HEADSTART_GIT_USER: &str = "HEADSTART_GIT_USER";
/// The default idle timeout of started sandboxes (`30m`, `0` = never), like
/// `up --idle-timeout`; read by `up`.
pub const HEADSTART_IDLE_TIMEOUT: &str = "HEADSTART_IDLE_TIMEOUT";
/// The Docker engine (default: the local unix socket); read by the Docker client.
pub const DOCKER_HOST: &str = "DOCKER_HOST";
/// Fast paths, like `--beta` (`images,docker,sandbox`); merged with `--beta`.
pub const HEADSTART_BETA: &str = "HEADSTART_BETA";
/// `flag=value,...`: a flag's value forced locally, no network.
pub const HEADSTART_FLAG_OVERRIDES: &str = "HEADSTART_FLAG_OVERRIDES";
/// `1`: the experiment's control, no network request.
pub const HEADSTART_FEATURE_FLAGS_DISABLED: &str = "HEADSTART_FEATURE_FLAGS_DISABLED";
/// `0`: no flag request, no events, no install id.
pub const HEADSTART_TELEMETRY: &str = "HEADSTART_TELEMETRY";
/// `1`: as `HEADSTART_TELEMETRY=0` (<https://consoledonottrack.com>).
pub const DO_NOT_TRACK: &str = "DO_NOT_TRACK";
/// The PostHog project key (none: nothing is asked or sent).
pub const HEADSTART_POSTHOG_KEY: &str = "HEADSTART_POSTHOG_KEY";
/// The PostHog host.
pub const HEADSTART_POSTHOG_HOST: &str = "HEADSTART_POSTHOG_HOST";
/// A PostHog secret key for local evaluation from polled definitions (servers only).
pub const HEADSTART_POSTHOG_SECRET_KEY: &str = "HEADSTART_POSTHOG_SECRET_KEY";
/// The default `--cloud` of `vm` commands (read by the argument parser).
pub const HEADSTART_CLOUD: &str = "HEADSTART_CLOUD";
/// DigitalOcean API token.
pub const DIGITALOCEAN_TOKEN: &str = "DIGITALOCEAN_TOKEN";
/// DigitalOcean API token, when [`DIGITALOCEAN_TOKEN`] is unset.
pub const DIGITALOCEAN_ACCESS_TOKEN: &str = "DIGITALOCEAN_ACCESS_TOKEN";
/// Hetzner Cloud API token.
pub const HCLOUD_TOKEN: &str = "HCLOUD_TOKEN";
/// A GCP OAuth access token.
pub const GOOGLE_OAUTH_ACCESS_TOKEN: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";
/// The GCP project.
pub const GOOGLE_CLOUD_PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
/// Another DigitalOcean API endpoint (tests, proxies).
pub const HEADSTART_DIGITALOCEAN_API_URL: &str = "HEADSTART_DIGITALOCEAN_API_URL";
/// Another Hetzner Cloud API endpoint.
pub const HEADSTART_HCLOUD_API_URL: &str = "HEADSTART_HCLOUD_API_URL";
/// Another GCE API endpoint.
pub const HEADSTART_GCE_API_URL: &str = "HEADSTART_GCE_API_URL";
/// Anything non-empty: no colour in any output (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";
/// The log filter, like `--log` (read by tracing-subscriber).
pub const RUST_LOG: &str = "RUST_LOG";
/// Set on recipe commands a snapshot build runs (the build marker), never read here.
pub const HEADSTART_BUILD: &str = "HEADSTART_BUILD";
/// OpenSSL's CA bundle file (read by OpenSSL). Unset together with [`SSL_CERT_DIR`],
/// `up` starts libgit2 with the hashed CA directory instead of parsing the bundle.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// OpenSSL's hashed CA directory (read by OpenSSL).
pub const SSL_CERT_DIR: &str = "SSL_CERT_DIR";
/// The OCI registry snapshots are shared through, `HOST[:PORT]/REPOSITORY` (like
/// `up --registry`): pulled on a local miss, pushed after a build (local provider).
pub const HEADSTART_REGISTRY: &str = "HEADSTART_REGISTRY";
/// A token for the registry (sent as the password of user `headstart`); without it,
/// the Docker configuration's credentials for the registry host are used.
pub const HEADSTART_REGISTRY_TOKEN: &str = "HEADSTART_REGISTRY_TOKEN";
/// `1`: plain HTTP to a registry that is not on loopback (loopback hosts always may).
pub const HEADSTART_REGISTRY_INSECURE: &str = "HEADSTART_REGISTRY_INSECURE";
/// Seconds a start waits for a pull from the registry before it starts cold (default 120).
pub const HEADSTART_REGISTRY_TIMEOUT: &str = "HEADSTART_REGISTRY_TIMEOUT";
/// The Docker configuration directory (`config.json` with registry credentials);
/// default `~/.docker`.
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";

/// Every variable above, for documentation and tests.
pub const ALL: &[&str] = &[
    HEADSTART_HOME,
    HEADSTART_RESTORE_METHOD,
    HEADSTART_GIT_TOKEN,
    GITHUB_TOKEN,
    HEADSTART_SSH_KEY,
    HEADSTART_KNOWN_HOSTS,
    HOME,
    USER,
    LOGNAME,
    HEADSTART_DETACH_BUILDS,
    HEADSTART_SNAPSHOT_ALLOW,
    HEADSTART_SNAPSHOT_DENY,
    HEADSTART_SNAPSHOT_MAX_BYTES,
    HEADSTART_IMAGE,
    HEADSTART_DOCKER_NETWORK,
    HEADSTART_GIT_USER,
    HEADSTART_IDLE_TIMEOUT,
    DOCKER_HOST,
    HEADSTART_BETA,
    HEADSTART_FLAG_OVERRIDES,
    HEADSTART_FEATURE_FLAGS_DISABLED,
    HEADSTART_TELEMETRY,
    DO_NOT_TRACK,
    HEADSTART_POSTHOG_KEY,
    HEADSTART_POSTHOG_HOST,
    HEADSTART_POSTHOG_SECRET_KEY,
    HEADSTART_CLOUD,
    DIGITALOCEAN_TOKEN,
    DIGITALOCEAN_ACCESS_TOKEN,
    HCLOUD_TOKEN,
    GOOGLE_OAUTH_ACCESS_TOKEN,
    GOOGLE_CLOUD_PROJECT,
    HEADSTART_DIGITALOCEAN_API_URL,
    HEADSTART_HCLOUD_API_URL,
    HEADSTART_GCE_API_URL,
    NO_COLOR,
    RUST_LOG,
    HEADSTART_BUILD,
    SSL_CERT_FILE,
    SSL_CERT_DIR,
    HEADSTART_REGISTRY,
    HEADSTART_REGISTRY_TOKEN,
    HEADSTART_REGISTRY_INSECURE,
    HEADSTART_REGISTRY_TIMEOUT,
    DOCKER_CONFIG,
];

/// The value of `name`, if set and valid UTF-8. The one `std::env::var` call of the
/// package.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The value of `name`, if set and neither empty nor blank.
pub fn non_empty(name: &str) -> Option<String> {
    var(name).filter(|v| !v.trim().is_empty())
}

/// The raw value of `name`, if set.
pub fn var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_variable_is_listed_once_and_named_as_itself() {
        let mut seen = std::collections::BTreeSet::new();
        for v in super::ALL {
            assert!(seen.insert(*v), "{v} listed twice");
        }
        assert!(seen.contains(provisioners::local::HOME_ENV));
        assert!(seen.contains(provisioners::local::RESTORE_METHOD_ENV));
        for v in sandbox_core::scrub::GIT_TOKEN_VARS
            .iter()
            .chain(provisioners::cloud::TOKEN_VARS)
            .chain(feature_flags::vars::SECRETS)
        {
            assert!(seen.contains(v), "{v} is read but not listed");
        }
    }

    /// The README's one table of environment variables names every variable above.
    #[test]
    fn the_readme_table_lists_every_variable() {
        let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        let text = std::fs::read_to_string(&readme).unwrap();
        let table: Vec<&str> = text
            .split("### Environment variables")
            .nth(1)
            .unwrap()
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .collect();
        let named: std::collections::BTreeSet<&str> = table
            .iter()
            .flat_map(|row| {
                row.split('|')
                    .nth(1)
                    .unwrap_or("")
                    .split('`')
                    .skip(1)
                    .step_by(2)
            })
            .collect();
        let missing: Vec<&&str> = super::ALL.iter().filter(|v| !named.contains(**v)).collect();
        assert!(missing.is_empty(), "not in the README's table: {missing:?}");
    }

    /// This module is the one place the package reads the environment.
    #[test]
    fn no_other_file_reads_the_environment() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let needles = [concat!("std::env::", "var")];
        for f in files.iter().filter(|f| !f.ends_with("src/env.rs")) {
            let text = std::fs::read_to_string(f).unwrap();
            for n in needles {
                assert!(
                    !text.contains(n),
                    "{} reads the environment ({n})",
                    f.display()
                );
            }
        }
    }
}
