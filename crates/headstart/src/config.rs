//! Everything the binary reads from the environment, in one place.

use sandbox_core::Credentials;

/// The token for private repositories (`HEADSTART_GIT_TOKEN`, else `GITHUB_TOKEN`).
/// Handed to git only through credential callbacks; empty means none.
pub(crate) fn git_credentials() -> Credentials {
    for var in ["HEADSTART_GIT_TOKEN", "GITHUB_TOKEN"] {
        if let Ok(token) = std::env::var(var) {
            let c = Credentials::token(token);
            if !c.is_empty() {
                return c;
            }
        }
    }
    Credentials::none()
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
