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
