//! Registry credentials: a token, or the user's Docker configuration (`auths` entries
//! and credential helpers), never in a file of ours, a log or an error.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// How to authenticate to the registry. `Debug` never shows a secret.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials (public repositories, a LAN registry).
    #[default]
    Anonymous,
    /// A user name and a password or token (what `docker login` stores); registries that
    /// answer with a token challenge get them exchanged for a token.
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: SecretString,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[redacted]")
                .finish(),
        }
    }
}

/// The user name sent with a bare token (registries such as GHCR accept any).
pub const TOKEN_USERNAME: &str = "headstart";

impl Auth {
    /// A bare token (e.g. `HEADSTART_REGISTRY_TOKEN`), sent as the password of
    /// [`TOKEN_USERNAME`].
    pub fn token(token: SecretString) -> Self {
        Self::Basic {
            username: TOKEN_USERNAME.to_owned(),
            password: token,
        }
    }

    /// The credentials the Docker configuration at `config` (a `config.json`) holds for
    /// `registry` (`host[:port]`): a credential helper named for it in `credHelpers` or
    /// by `credsStore`, else an `auths` entry; [`Auth::Anonymous`] when the file does not
    /// exist or names nothing for that registry.
    ///
    /// # Errors
    /// [`Error::Credentials`] when the file is unreadable or malformed, or a helper fails.
    pub fn from_docker_config(config: &Path, registry: &str) -> Result<Self, Error> {
        let bytes = match std::fs::read(config) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::Anonymous),
            Err(e) => {
                return Err(Error::Credentials(format!(
                    "cannot read {}: {e}",
                    config.display()
                )));
            }
        };
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Credentials(format!("{} is not valid JSON: {e}", config.display()))
        })?;
        let helper = doc
            .get("credHelpers")
            .and_then(|h| find_entry(h, registry))
            .and_then(|v| v.as_str())
            .or_else(|| doc.get("credsStore").and_then(|v| v.as_str()));
        if let Some(entry) = doc.get("auths").and_then(|a| find_entry(a, registry)) {
            if let Some(encoded) = entry.get("auth").and_then(|v| v.as_str()) {
                return decode_auth(encoded, config);
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(|v| v.as_str()),
                entry.get("password").and_then(|v| v.as_str()),
            ) {
                return Ok(Self::Basic {
                    username: u.to_owned(),
                    password: SecretString::from(p.to_owned()),
                });
            }
        }
        match helper {
            Some(name) => run_helper(name, registry),
            None => Ok(Self::Anonymous),
        }
    }

    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            Self::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            Self::Basic { username, password } => oci_client::secrets::RegistryAuth::Basic(
                username.clone(),
                password.expose_secret().to_owned(),
            ),
        }
    }
}

/// The entry of `map` for `registry`, whose keys may carry a scheme and a path
/// (`https://index.docker.io/v1/`).
fn find_entry<'a>(map: &'a serde_json::Value, registry: &str) -> Option<&'a serde_json::Value> {
    let map = map.as_object()?;
    map.iter()
        .find(|(k, _)| {
            let k = k
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let host = k.split('/').next().unwrap_or(k);
            host.eq_ignore_ascii_case(registry)
        })
        .map(|(_, v)| v)
}

fn decode_auth(encoded: &str, config: &Path) -> Result<Auth, Error> {
    let bad = || {
        Error::Credentials(format!(
            "an `auth` entry in {} is not base64 of user:password; run the registry login again",
            config.display()
        ))
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (user, pass) = text.split_once(':').ok_or_else(bad)?;
    Ok(Auth::Basic {
        username: user.to_owned(),
        password: SecretString::from(pass.to_owned()),
    })
}

const HELPER_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `docker-credential-<name> get` (argv, no shell) with the registry on stdin.
fn run_helper(name: &str, registry: &str) -> Result<Auth, Error> {
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Error::Credentials(format!(
            "credential helper name {name:?} is not a plain program name"
        )));
    }
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Credentials(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let deadline = Instant::now() + HELPER_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Credentials(format!(
                    "{program} did not answer within {} s",
                    HELPER_TIMEOUT.as_secs()
                )));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Credentials(format!("{program}: {e}")))?;
    if !out.status.success() {
        // "credentials not found" and the like: go on without
        return Ok(Auth::Anonymous);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| Error::Credentials(format!("{program} printed no JSON credentials")))?;
    match (
        v.get("Username").and_then(|u| u.as_str()),
        v.get("Secret").and_then(|s| s.as_str()),
    ) {
        (Some(u), Some(s)) => Ok(Auth::Basic {
            username: u.to_owned(),
            password: SecretString::from(s.to_owned()),
        }),
        _ => Err(Error::Credentials(format!(
            "{program} printed no Username/Secret"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_entries_and_redacts() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.json");
        let pass = format!("pw{}", uuid::Uuid::new_v4().simple());
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("alice:{pass}"));
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://reg.example:5000/v1/":{{"auth":"{enc}"}}}}}}"#),
        )
        .expect("write");
        let auth = Auth::from_docker_config(&path, "reg.example:5000").expect("auth");
        match &auth {
            Auth::Basic { username, password } => {
                assert_eq!(username, "alice");
                assert_eq!(password.expose_secret(), pass);
            }
            Auth::Anonymous => panic!("expected basic credentials"),
        }
        assert!(!format!("{auth:?}").contains(&pass));
        assert!(matches!(
            Auth::from_docker_config(&path, "other.example").expect("auth"),
            Auth::Anonymous
        ));
        assert!(matches!(
            Auth::from_docker_config(&dir.path().join("missing.json"), "x").expect("auth"),
            Auth::Anonymous
        ));
        std::fs::write(&path, "{not json").expect("write");
        let e = Auth::from_docker_config(&path, "x").expect_err("malformed");
        assert_eq!(e.kind(), "registry_credentials");
    }
}
