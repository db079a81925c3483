//! Finding and connecting to the Docker engine.
//!
//! The one place that reads `DOCKER_HOST`. It is not a client of its own: the
//! connection is a [`bollard::Docker`], negotiated down to the engine's API version.

use std::fmt;
use std::time::Duration;

use bollard::Docker;
use sandbox_core::{Error, Result};

use super::PROVIDER;

/// The engine address used when `DOCKER_HOST` is unset.
pub const DEFAULT_ENGINE_HOST: &str = "unix:///var/run/docker.sock";

/// How long [`connect`] waits for the engine to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the Docker engine listens: `unix:///path`, `tcp://host:port` or `http://host:port`.
#[derive(Clone, PartialEq, Eq)]
pub struct EngineHost(String);

impl EngineHost {
    /// The engine the environment names: `DOCKER_HOST` when set and non-empty, else the
    /// default socket ([`DEFAULT_ENGINE_HOST`]). The only place this crate reads
    /// `DOCKER_HOST`.
    pub fn from_env() -> Self {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.trim().is_empty() => Self(host.trim().to_owned()),
            _ => Self(DEFAULT_ENGINE_HOST.to_owned()),
        }
    }

    /// An explicit address (`unix:///run/docker.sock`, `tcp://127.0.0.1:2375`). A bare
    /// absolute path is taken as a unix socket.
    pub fn new(host: impl Into<String>) -> Self {
        let host = host.into();
        if host.starts_with('/') {
            Self(format!("unix://{host}"))
        } else {
            Self(host)
        }
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

sandbox_core::__string_newtype_fmt!(EngineHost);

fn unreachable(host: &EngineHost, why: String, source: Option<bollard::errors::Error>) -> Error {
    Error::Provider {
        provider: PROVIDER,
        message: format!(
            "no Docker engine answers at {host} ({why}). Start one (`sudo systemctl start docker`, \
             or run `dockerd` as root), or set DOCKER_HOST to an engine that runs \
             (e.g. DOCKER_HOST=unix:///var/run/docker.sock); `docker info` shows whether it answers"
        ),
        source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
    }
}

/// Connects to the engine at `host`, checks that it answers (a ping, bounded by a
/// few seconds) and negotiates the API version down to what the engine speaks.
///
/// # Errors
/// [`Error::Provider`] saying how to start an engine when none answers, or that the
/// address scheme is not supported.
pub async fn connect(host: &EngineHost) -> Result<Docker> {
    let docker = match host.as_str() {
        h if h.starts_with("unix://") => {
            let path = &h["unix://".len()..];
            if !std::path::Path::new(path).exists() {
                return Err(unreachable(
                    host,
                    format!("the socket {path} does not exist"),
                    None,
                ));
            }
            Docker::connect_with_unix(h, 120, bollard::API_DEFAULT_VERSION)
        }
        h if h.starts_with("tcp://") || h.starts_with("http://") => {
            Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION)
        }
        other => {
            return Err(Error::InvalidOptions(format!(
                "unsupported Docker engine address `{other}`: use unix:///path/to/docker.sock or \
                 tcp://host:port"
            )));
        }
    }
    .map_err(|e| unreachable(host, "cannot open a connection".into(), Some(e)))?;
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Err(_) => {
            return Err(unreachable(
                host,
                format!("no answer within {PING_TIMEOUT:?}"),
                None,
            ));
        }
        Ok(Err(e)) => return Err(unreachable(host, e.to_string(), Some(e))),
        Ok(Ok(_)) => {}
    }
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| unreachable(host, format!("version negotiation failed: {e}"), Some(e)))?;
    tracing::debug!(%host, api = ?docker.client_version(), "connected to the Docker engine");
    Ok(docker)
}

/// Connects to the engine the environment names ([`EngineHost::from_env`]).
///
/// # Errors
/// As [`connect`].
pub async fn connect_from_env() -> Result<Docker> {
    connect(&EngineHost::from_env()).await
}

/// Maps an engine error to [`Error::Provider`] with what was being done.
pub(crate) fn engine_error(context: impl fmt::Display, e: bollard::errors::Error) -> Error {
    Error::Provider {
        provider: PROVIDER,
        message: format!("{context}: {e}"),
        source: Some(Box::new(e)),
    }
}

/// All containers (running or not) matching `filters` (`label`, `ancestor`, ...).
pub(crate) async fn list_containers(
    docker: &Docker,
    filters: &std::collections::HashMap<String, Vec<String>>,
) -> Result<Vec<bollard::models::ContainerSummary>> {
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .map_err(|e| engine_error("listing containers", e))
}

/// True when the engine said 404 (no such container/image/exec).
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// True when the engine said 409 (conflict: name in use, image in use).
pub(crate) fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_paths_are_unix_sockets() {
        assert_eq!(
            EngineHost::new("/tmp/x.sock").as_str(),
            "unix:///tmp/x.sock"
        );
        assert_eq!(
            EngineHost::new("tcp://127.0.0.1:1").as_str(),
            "tcp://127.0.0.1:1"
        );
    }

    #[tokio::test]
    async fn unsupported_scheme_is_an_options_error() {
        let err = connect(&EngineHost::new("ftp://x")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    }
}
