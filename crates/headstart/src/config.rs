//! Everything the binary reads from the environment, in one place.

use sandbox_core::Credentials;

/// Credentials for private repositories:
/// - a token from `HEADSTART_GIT_TOKEN`, else `GITHUB_TOKEN` (https; empty means none);
/// - an ssh private key from `HEADSTART_SSH_KEY`, else the first of `~/.ssh/id_ed25519`,
///   `id_ecdsa`, `id_rsa` that exists (ssh URLs), checked against
///   `HEADSTART_KNOWN_HOSTS`, else `~/.ssh/known_hosts`.
///
/// Handed to git only through credential callbacks for the repository's own host.
pub(crate) fn git_credentials() -> Credentials {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut creds = ["HEADSTART_GIT_TOKEN", "GITHUB_TOKEN"]
        .iter()
        .find_map(|k| var(k))
        .map_or_else(Credentials::none, Credentials::token);
    let key = var("HEADSTART_SSH_KEY")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let ssh = std::path::PathBuf::from(var("HOME")?).join(".ssh");
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|f| ssh.join(f))
                .find(|p| p.exists())
        });
    if let Some(key) = key {
        creds = creds.with_ssh_key(key);
    }
    if let Some(known) = var("HEADSTART_KNOWN_HOSTS") {
        creds = creds.with_known_hosts(known);
    }
    creds
}

/// Registers every secret this process may hold with the one scrubber
/// ([`sandbox_core::scrub()`]), before anything is logged: the git token variables, the
/// cloud token variables and the PostHog keys, by name (so sandboxed commands never
/// inherit them) and by value (so no log line, error, record or `--json` shows them).
/// A detached build process runs this too: it reads the same environment.
pub(crate) fn register_secrets() {
    let names = sandbox_core::scrub::GIT_TOKEN_VARS
        .iter()
        .chain(provisioners::cloud::TOKEN_VARS)
        .chain(feature_flags::vars::SECRETS);
    for name in names {
        sandbox_core::scrub::register_secret_var(name);
        if let Ok(value) = std::env::var(name) {
            sandbox_core::register_secret(&value);
        }
    }
}

/// True when `HEADSTART_DETACH_BUILDS=0` asks `up` to build snapshots in-process and
/// wait for them instead of handing them to a detached process.
pub(crate) fn detach_builds() -> bool {
    std::env::var("HEADSTART_DETACH_BUILDS").map_or(true, |v| v != "0")
}

/// Which repositories get snapshots: `HEADSTART_SNAPSHOT_ALLOW` and
/// `HEADSTART_SNAPSHOT_DENY` (comma-separated patterns over `host/owner/repo`, `*`
/// matches anything) and `HEADSTART_SNAPSHOT_MAX_BYTES` (largest workspace to keep).
pub(crate) fn eligibility() -> anyhow::Result<snapshot_refresh::Eligibility> {
    let list = |var: &str| -> Vec<String> {
        std::env::var(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let max_size_bytes = match std::env::var("HEADSTART_SNAPSHOT_MAX_BYTES") {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().parse::<u64>().map_err(|_| {
            crate::commands::UserError(format!(
                "HEADSTART_SNAPSHOT_MAX_BYTES={v:?} is not a number of bytes"
            ))
        })?),
        _ => None,
    };
    Ok(snapshot_refresh::Eligibility {
        allow: list("HEADSTART_SNAPSHOT_ALLOW"),
        deny: list("HEADSTART_SNAPSHOT_DENY"),
        max_size_bytes,
        disabled: false,
    })
}

/// True when `NO_COLOR` is set to anything non-empty (<https://no-color.org>): no
/// colour anywhere, even on a terminal.
pub(crate) fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}
