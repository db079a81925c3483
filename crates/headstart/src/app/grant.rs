//! A sandbox's grant from the credential daemon: whether a start wants one
//! ([`CredentialsMode`]), what it may push, registering it and pointing the workspace's
//! `origin` at the grant URL, and what listings show of it (never the capability).
//!
//! The token goes to the daemon over its control socket and nowhere else: not into
//! the sandbox's environment, files or git configuration.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use sandbox_core::{Credentials, RepoUrl, Sandbox, SandboxName, Source, Transport};
use serde::Serialize;

use super::choice::ProviderKind;
use super::daemon::{ControlRequest, ControlResponse, GrantInfo, control_socket, request};
use super::{Error, Headstart, Result, UpRequest};

/// What the broker tells a sandbox whose grant lost its token (a daemon restart):
/// made from the sandbox's name and repository by the caller (a CLI says what to run).
pub type RegisterHintFn = Arc<dyn Fn(&SandboxName, &RepoUrl) -> String + Send + Sync>;

/// The host name a container on a bridge network reaches the host by (the Docker
/// provider maps it to the default bridge's gateway, `host-gateway`).
const BRIDGE_HOST: &str = "host.docker.internal";

/// How long a grant lasts when the sandbox has no TTL.
const DEFAULT_GRANT_TTL: time::Duration = time::Duration::hours(12);

/// How a sandbox's git reaches its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialsMode {
    /// Through a grant of the credential daemon: the sandbox's `origin` is a capability
    /// URL, the token stays on the host.
    Broker,
    /// No credentials in the sandbox: `origin` is the upstream itself.
    None,
}

/// What a start's grant is made of, decided before the start.
pub(crate) struct GrantPlan {
    upstream: RepoUrl,
    credentials: Credentials,
    host: &'static str,
}

/// How a sandbox on the host network or loopback reaches the broker.
const LOOPBACK: &str = "127.0.0.1";

impl Headstart {
    /// Whether a start of `source` on `kind` gets a grant: asked for, or by default on
    /// Docker when a token is configured and the repository is http(s).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when a grant is asked for but cannot be made (no token,
    /// a repository not over http(s)).
    pub(crate) fn plan_grant(
        &self,
        mode: Option<CredentialsMode>,
        kind: ProviderKind,
        source: &Source,
    ) -> Result<Option<GrantPlan>> {
        self.plan_grant_for(mode, kind, source, false)
    }

    /// As [`plan_grant`](Self::plan_grant); `has_grant`: the named sandbox already has
    /// a live grant of this repository, so by default it keeps one.
    pub(crate) fn plan_grant_for(
        &self,
        mode: Option<CredentialsMode>,
        kind: ProviderKind,
        source: &Source,
        has_grant: bool,
    ) -> Result<Option<GrantPlan>> {
        let has_token = self.config.credentials.expose_token().is_some();
        let http = source.url().transport() == Transport::Http;
        let wanted = match mode {
            Some(CredentialsMode::None) => false,
            Some(CredentialsMode::Broker) => {
                if !has_token {
                    return Err(Error::InvalidInput(
                        "a broker grant needs a git token, and none is configured".into(),
                    ));
                }
                if !http {
                    return Err(Error::InvalidInput(format!(
                        "a broker grant needs an http(s) repository, not {}",
                        source.url()
                    )));
                }
                true
            }
            None => (kind == ProviderKind::Docker || has_grant) && has_token && http,
        };
        Ok(wanted.then(|| GrantPlan {
            upstream: source.url().clone(),
            credentials: self.config.credentials.clone(),
            // The local provider and host-network containers share the host's
            // loopback; a container on a bridge reaches the host by name (see the
            // Docker provider's `extra_hosts`).
            host: match kind {
                ProviderKind::Local => LOOPBACK,
                ProviderKind::Docker if self.config.docker_network.as_deref() == Some("host") => {
                    LOOPBACK
                }
                ProviderKind::Docker => BRIDGE_HOST,
            },
        }))
    }

    /// Registers the grant of sandbox `name` (starting the daemon when none answers)
    /// and makes its URL the workspace's `origin`.
    ///
    /// Push policy: `new_branch`, else `branch` unless it is the remote's default
    /// branch (then read-only), widened by `allow_push`.
    ///
    /// # Errors
    /// [`Error::Daemon`] when the daemon cannot be reached or refuses; a git error
    /// when the workspace's `origin` cannot be set.
    ///
    /// `renew`: the start reconnected to the sandbox, so its live grant of the
    /// repository is renewed (same URL, the token registered again) rather than
    /// replaced.
    pub(crate) async fn grant(
        &self,
        plan: GrantPlan,
        sandbox: &dyn Sandbox,
        req: &UpRequest,
        renew: bool,
    ) -> Result<GrantInfo> {
        let name = sandbox.name();
        self.register_grant(plan, name, sandbox.workspace(), req, renew)
            .await
            .map_err(|e| {
                e.context(format!(
                    "sandbox {name} started, but its broker grant could not be made"
                ))
            })
    }

    async fn register_grant(
        &self,
        plan: GrantPlan,
        name: &SandboxName,
        workspace: &Path,
        req: &UpRequest,
        renew: bool,
    ) -> Result<GrantInfo> {
        let (branch, new_branch) = (req.branch.as_deref(), req.new_branch.as_deref());
        let own_branch = match (new_branch, branch) {
            (Some(n), _) => Some(n.to_owned()),
            (None, Some(b)) => {
                let (url, creds) = (plan.upstream.clone(), plan.credentials.clone());
                let default = tokio::task::spawn_blocking(move || {
                    sandbox_core::git::remote_default_branch(&url, &creds)
                })
                .await
                .ok()
                .and_then(std::result::Result::ok);
                // Unknown default: read-only is the safe side.
                default.filter(|d| d != b).map(|_| b.to_owned())
            }
            (None, None) => None,
        };
        let ttl = req
            .ttl
            .and_then(|t| time::Duration::try_from(t).ok())
            .unwrap_or(DEFAULT_GRANT_TTL);
        let token = plan
            .credentials
            .expose_token()
            .ok_or_else(|| Error::InvalidInput("no git token is configured".into()))?
            .to_owned();
        let listen = if plan.host == BRIDGE_HOST {
            bridge_addresses().await?
        } else {
            Vec::new()
        };
        let register_hint = req
            .grant_register_hint
            .as_ref()
            .map(|f| f(name, &plan.upstream));
        let req = ControlRequest::Register {
            sandbox: name.to_string(),
            upstream: plan.upstream.to_string(),
            token,
            username: Some(plan.credentials.username().to_owned()),
            own_branch,
            allow_push: req.allow_push.clone(),
            expires_at: time::OffsetDateTime::now_utc() + ttl,
            host: plan.host.to_owned(),
            renew_hint: req.grant_renew_hint.clone(),
            register_hint,
            listen,
            renew,
        };
        let (grant, url) = match self.daemon_request(&req).await? {
            ControlResponse::Registered { grant, url } => (grant, url),
            other => {
                return Err(Error::Daemon(format!(
                    "unexpected answer to a grant request: {other:?}"
                )));
            }
        };
        let ws = workspace.to_path_buf();
        tokio::task::spawn_blocking(move || sandbox_core::git::set_origin_url(&ws, &url))
            .await
            .map_err(|e| Error::Failed(format!("setting the grant URL: {e}")))??;
        Ok(grant)
    }

    /// The URL paths (`/g/<capability>/<owner>/<repo>.git`) of the live grants of
    /// sandbox `name` for `source`'s repository, when the daemon's state records any
    /// for it (starting the daemon then, as the grant will need it). Each capability
    /// is registered with the scrubber: what this process prints shows none.
    pub(crate) async fn own_grant_paths(&self, name: &SandboxName, source: &Source) -> Vec<String> {
        if !super::daemon::has_recorded_grants(self.data_dir(), name.as_str()) {
            return Vec::new();
        }
        let req = ControlRequest::Origins {
            sandbox: name.to_string(),
        };
        let grants = match self.daemon_request(&req).await {
            Ok(ControlResponse::Origins { grants }) => grants,
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::warn!(sandbox = %name, error = %e, "could not look up the sandbox's grants");
                Vec::new()
            }
        };
        grants
            .into_iter()
            .filter(|g| {
                RepoUrl::parse(&g.repository).is_ok_and(|u| u.same_repository(source.url()))
            })
            .map(|g| {
                if let Some(cap) = g.path.strip_prefix("/g/").and_then(|r| r.split('/').next()) {
                    sandbox_core::scrub::register_secret(cap);
                }
                g.path
            })
            .collect()
    }

    /// Revokes the grants of sandbox `name`, when a daemon runs (none running: no
    /// grant can be used anyway). Returns their ids.
    pub(crate) async fn revoke_grants(&self, name: &SandboxName) -> Vec<String> {
        if !control_socket(self.data_dir()).exists() {
            return Vec::new();
        }
        let req = ControlRequest::Revoke {
            sandbox: name.to_string(),
        };
        match request(self.data_dir(), &req).await {
            Ok(ControlResponse::Revoked { grants }) => grants,
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::warn!(sandbox = %name, error = %e, "could not revoke the sandbox's grants");
                Vec::new()
            }
        }
    }

    /// The live grants of every sandbox, when a daemon runs.
    pub(crate) async fn live_grants(&self) -> Vec<GrantInfo> {
        if !control_socket(self.data_dir()).exists() {
            return Vec::new();
        }
        match self.daemon_status().await {
            Ok(s) => s.grants.into_iter().filter(|g| !g.revoked).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Whether `origin` is a URL of one of the grants whose paths are `paths` (at any
/// broker address: the capability names the grant).
pub(crate) fn is_grant_url(origin: &RepoUrl, paths: &[String]) -> bool {
    let text = origin.to_string();
    let Some(rest) = text.strip_prefix("http://") else {
        return false;
    };
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let trim = |p: &str| p.trim_end_matches('/').to_owned();
    paths.iter().any(|p| trim(p) == trim(path))
}

/// Whether `origin` (as recorded: scrubbed, so a known capability reads
/// `[redacted]`) is a URL of one of the grants whose paths are `paths`.
pub(crate) fn names_grant(origin: &str, paths: &[String]) -> bool {
    let origin = sandbox_core::scrub(origin);
    let origin = origin.trim_end_matches('/');
    origin.starts_with("http://")
        && paths.iter().any(|p| {
            let p = sandbox_core::scrub(p);
            let p = p.trim_end_matches('/');
            origin.ends_with(p) && origin[..origin.len() - p.len()].matches('/').count() == 2
        })
}

/// `text` with every grant capability (`/g/` and at least 32 hex digits) cut to a
/// prefix, as listings show it: for messages that may quote a workspace's origin.
pub(crate) fn redact_capabilities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("/g/") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let hex = tail.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex >= 32 {
            out.push_str(&tail[..6]);
            out.push('…');
            rest = &tail[hex..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// The host's addresses on the Docker default bridge, where a container reaches the
/// broker through [`BRIDGE_HOST`].
async fn bridge_addresses() -> Result<Vec<IpAddr>> {
    let docker = provisioners::docker::connect_from_env().await?;
    let found = provisioners::docker::bridge_gateways(&docker).await?;
    if found.is_empty() {
        return Err(Error::Failed(
            "the Docker engine's default bridge has no gateway address on this host, so a \
             container on it cannot reach the credential broker; run the sandbox on the \
             host's network"
                .into(),
        ));
    }
    Ok(found.into_iter().map(IpAddr::V4).collect())
}

/// A workspace origin as listings show it: a grant URL's capability cut to a prefix.
pub(crate) fn redact_grant_url(origin: &str) -> String {
    let Some((head, rest)) = origin.split_once("/g/") else {
        return origin.to_owned();
    };
    let Some((cap, path)) = rest.split_once('/') else {
        return origin.to_owned();
    };
    let prefix: String = cap.chars().take(6).collect();
    format!("{head}/g/{prefix}…/{path}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_grant_url_is_recognised_by_its_path_at_any_address() {
        let paths = vec!["/g/abcdef0123456789/o/r.git".to_owned()];
        for url in [
            "http://127.0.0.1:4000/g/abcdef0123456789/o/r.git",
            "http://host.docker.internal:4001/g/abcdef0123456789/o/r.git/",
        ] {
            let u = sandbox_core::RepoUrl::parse(url).unwrap();
            assert!(super::is_grant_url(&u, &paths), "{url}");
        }
        for url in [
            "http://127.0.0.1:4000/g/abcdef0123456788/o/r.git",
            "https://127.0.0.1:4000/g/abcdef0123456789/o/r.git",
            "http://127.0.0.1:4000/o/r.git",
        ] {
            let u = sandbox_core::RepoUrl::parse(url).unwrap();
            assert!(!super::is_grant_url(&u, &paths), "{url}");
        }
        let cap = "abcdef0123456789abcdef0123456789abcdef0123456789";
        assert_eq!(
            super::redact_capabilities(&format!("holds http://h/g/{cap}/o/r.git, /g/ab/x")),
            "holds http://h/g/abcdef…/o/r.git, /g/ab/x"
        );
    }

    #[test]
    fn grant_urls_are_cut_to_a_prefix() {
        assert_eq!(
            super::redact_grant_url("http://127.0.0.1:1/g/abcdef0123456789/o/r.git"),
            "http://127.0.0.1:1/g/abcdef…/o/r.git"
        );
        assert_eq!(
            super::redact_grant_url("https://example.com/o/r.git"),
            "https://example.com/o/r.git"
        );
    }
}
