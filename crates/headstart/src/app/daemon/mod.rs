//! The credential daemon: a long-lived host process serving the git credential broker
//! (`git-broker`) on `127.0.0.1:<port>` and a control API on the unix socket
//! `<data dir>/daemon/control.sock` (mode `0600`, in a `0700` directory).
//!
//! The control protocol is JSON lines: one [`ControlRequest`] per line, answered by one
//! [`ControlResponse`] line. A sandbox's token crosses only this socket and lives only
//! in the daemon's memory; the broker keeps its grants, without tokens, in
//! `<data dir>/daemon/grants.json`.
//!
//! The same daemon stops idle sandboxes (`idle.rs`, over `app/lifecycle/`); `up`
//! starts it on demand for a sandbox with an idle timeout too.
//!
//! Here: the protocol, the client side ([`Headstart::daemon_status`],
//! [`Headstart::daemon_stop`], registering and revoking a sandbox's grant) and starting
//! the daemon on demand. The daemon itself is [`run_daemon`] (`server.rs`). Not here:
//! the HTTP side (the `git-broker` crate), or when a start wants a grant (`up.rs`).

mod idle;
mod listen;
mod server;
mod start;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use git_broker::PushPolicy;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use super::{Error, Headstart, Result};

pub(crate) use server::has_recorded_grants;
pub use server::run_daemon;

/// How long a start waits for a daemon it spawned to answer.
const SPAWN_WAIT: Duration = Duration::from_secs(5);

/// The daemon's directory in a data directory.
pub fn daemon_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("daemon")
}

/// The control socket of a data directory's daemon.
pub fn control_socket(data_dir: &Path) -> PathBuf {
    daemon_dir(data_dir).join("control.sock")
}

/// One request over the control socket.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one short-lived value per request
pub enum ControlRequest {
    /// Grants sandbox `sandbox` access to `upstream` with `token` (kept in memory).
    Register {
        /// The sandbox the grant is for.
        sandbox: String,
        /// The upstream repository (`http://` or `https://`).
        upstream: String,
        /// The token sent upstream.
        token: String,
        /// The user name sent with it (default `x-access-token`).
        #[serde(default)]
        username: Option<String>,
        /// The branch the sandbox may push (none: read-only unless `allow_push`).
        #[serde(default)]
        own_branch: Option<String>,
        /// More branch patterns that may be pushed.
        #[serde(default)]
        allow_push: Vec<String>,
        /// When the grant stops working.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
        /// The host the sandbox reaches the broker at (`127.0.0.1`,
        /// `host.docker.internal`).
        host: String,
        /// Text the broker appends to "expired" and "revoked" refusals.
        #[serde(default)]
        renew_hint: Option<String>,
        /// Text the broker appends to "holds no credentials" refusals (after a daemon
        /// restart): how to register the token again.
        #[serde(default)]
        register_hint: Option<String>,
        /// Host addresses the sandbox reaches the broker at besides loopback (the
        /// Docker bridge's gateway): the broker listens there too.
        #[serde(default)]
        listen: Vec<std::net::IpAddr>,
        /// Renew the sandbox's live grant of this repository (same capability, so the
        /// URL it already has keeps working) instead of making a new one.
        #[serde(default)]
        renew: bool,
    },
    /// The paths (`/g/<capability>/<owner>/<repo>.git`) of a sandbox's live grants:
    /// how a reconnect recognises its own grant URL.
    Origins {
        /// The sandbox.
        sandbox: String,
    },
    /// Revokes every grant of a sandbox.
    Revoke {
        /// The sandbox.
        sandbox: String,
    },
    /// The daemon's port and grants.
    Status,
    /// Stops the daemon.
    Stop,
}

impl std::fmt::Debug for ControlRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Register {
                sandbox, upstream, ..
            } => f
                .debug_struct("Register")
                .field("sandbox", sandbox)
                .field("upstream", upstream)
                .finish_non_exhaustive(),
            Self::Revoke { sandbox } => f.debug_struct("Revoke").field("sandbox", sandbox).finish(),
            Self::Origins { sandbox } => {
                f.debug_struct("Origins").field("sandbox", sandbox).finish()
            }
            Self::Status => f.write_str("Status"),
            Self::Stop => f.write_str("Stop"),
        }
    }
}

/// One answer over the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ControlResponse {
    /// A grant was made: hand `url` to the sandbox (it holds the capability).
    Registered {
        /// The grant.
        grant: GrantInfo,
        /// The sandbox's remote URL.
        url: String,
    },
    /// Grants revoked (their ids).
    Revoked {
        /// The ids.
        grants: Vec<String>,
    },
    /// A sandbox's live grants (capabilities included: only for the socket's owner).
    Origins {
        /// Each grant's repository and URL path.
        grants: Vec<GrantOrigin>,
    },
    /// The daemon's state.
    Status(DaemonStatus),
    /// The daemon is stopping.
    Stopping,
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// A grant as listings show it: never the capability in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// The grant's id (not a secret).
    pub id: String,
    /// The sandbox it was made for.
    pub sandbox: Option<String>,
    /// The upstream repository.
    pub repository: String,
    /// The branch patterns that may be pushed (empty: read-only).
    pub push: Vec<String>,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The first characters of the capability.
    pub capability_prefix: String,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Whether the daemon holds a token for it.
    pub has_credentials: bool,
}

/// One live grant of a sandbox, as [`ControlRequest::Origins`] answers. Holds the
/// capability: never printed.
#[derive(Clone, Serialize, Deserialize)]
pub struct GrantOrigin {
    /// The upstream repository.
    pub repository: String,
    /// `/g/<capability>/<owner>/<repo>.git`.
    pub path: String,
}

impl std::fmt::Debug for GrantOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantOrigin")
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// What `daemon status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Whether a daemon answers.
    pub running: bool,
    /// Its process id.
    pub pid: Option<u32>,
    /// The broker's port on 127.0.0.1.
    pub port: Option<u16>,
    /// The host addresses the broker also listens on (the Docker bridge's gateway
    /// once a bridge sandbox needed it); never a wildcard.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Its grants.
    pub grants: Vec<GrantInfo>,
}

/// The branch patterns a push policy allows (what [`GrantInfo::push`] lists).
pub(crate) fn push_patterns(policy: &PushPolicy) -> Vec<String> {
    serde_json::to_value(policy)
        .ok()
        .and_then(|v| v.get("branches").cloned())
        .and_then(|b| serde_json::from_value(b).ok())
        .unwrap_or_default()
}

/// Sends one request to the daemon of `data_dir`.
///
/// # Errors
/// [`Error::Io`] when no daemon answers; [`Error::Daemon`] for a refusal or a bad
/// answer.
pub async fn request(data_dir: &Path, req: &ControlRequest) -> Result<ControlResponse> {
    let sock = control_socket(data_dir);
    let stream = tokio::net::UnixStream::connect(&sock)
        .await
        .map_err(|e| Error::io(format!("connecting to {}", sock.display()), e))?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| Error::Daemon(e.to_string()))?;
    line.push(b'\n');
    let io = |e| Error::io("talking to the credential daemon", e);
    write.write_all(&line).await.map_err(io)?;
    write.flush().await.map_err(io)?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(io)?;
    match serde_json::from_str(&answer) {
        Ok(ControlResponse::Error { message }) => Err(Error::Daemon(message)),
        Ok(r) => Ok(r),
        Err(e) => Err(Error::Daemon(format!(
            "the credential daemon answered something unexpected: {e}"
        ))),
    }
}

impl Headstart {
    /// The daemon's port and grants (`running: false` when none answers).
    ///
    /// # Errors
    /// A daemon that answers with an error.
    pub async fn daemon_status(&self) -> Result<DaemonStatus> {
        match request(self.data_dir(), &ControlRequest::Status).await {
            Ok(ControlResponse::Status(s)) => Ok(s),
            Ok(other) => Err(Error::Daemon(format!("unexpected answer {other:?}"))),
            Err(Error::Io { .. }) => Ok(DaemonStatus {
                running: false,
                pid: None,
                port: None,
                addresses: Vec::new(),
                grants: Vec::new(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Stops the daemon; `false` when none was running.
    ///
    /// # Errors
    /// A daemon that answers with an error.
    pub async fn daemon_stop(&self) -> Result<bool> {
        let pid = match request(self.data_dir(), &ControlRequest::Status).await {
            Ok(ControlResponse::Status(s)) => s.pid,
            Err(Error::Io { .. }) => return Ok(false),
            _ => None,
        };
        match request(self.data_dir(), &ControlRequest::Stop).await {
            Ok(_) => {}
            Err(Error::Io { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        // Wait until it is gone, so a stop is a stop.
        let t = Instant::now();
        while t.elapsed() < SPAWN_WAIT {
            let gone = pid.is_none_or(|p| !Path::new(&format!("/proc/{p}")).exists())
                && !control_socket(self.data_dir()).exists();
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(true)
    }

    /// Sends `req`, starting the daemon first when none answers (it runs
    /// [`Config::daemon_runner`](super::Config::daemon_runner) `daemon run`, detached).
    pub(crate) async fn daemon_request(&self, req: &ControlRequest) -> Result<ControlResponse> {
        match request(self.data_dir(), req).await {
            Err(Error::Io { .. }) => {}
            other => return other,
        }
        self.spawn_daemon()?;
        let t = Instant::now();
        loop {
            match request(self.data_dir(), req).await {
                Err(Error::Io { source, .. }) if t.elapsed() < SPAWN_WAIT => {
                    tracing::trace!(error = %source, "waiting for the credential daemon");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(Error::Io { context, source }) => {
                    let log = daemon_dir(self.data_dir()).join("daemon.log");
                    return Err(Error::Daemon(format!(
                        "the credential daemon did not answer within {}s ({context}: {source}); see {}",
                        SPAWN_WAIT.as_secs(),
                        log.display()
                    )));
                }
                other => return other,
            }
        }
    }

    /// Starts `PROGRAM daemon run` in its own process group, stdio to `daemon.log`,
    /// without the git token variables in its environment.
    fn spawn_daemon(&self) -> Result<()> {
        use std::os::unix::process::CommandExt as _;
        let Some(exe) = self.config.daemon_runner.clone() else {
            return Err(Error::Daemon(
                "no credential daemon is running and this program cannot start one".into(),
            ));
        };
        let dir = daemon_dir(self.data_dir());
        server::private_dir(&dir)?;
        let log_path = dir.join("daemon.log");
        let io = |e| Error::io(format!("opening {}", log_path.display()), e);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io)?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["daemon", "run"])
            .env(crate::env::HEADSTART_HOME, self.data_dir())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            .process_group(0);
        for var in sandbox_core::scrub::GIT_TOKEN_VARS {
            cmd.env_remove(var);
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {} daemon run", exe.display()), e))?;
        tracing::info!(pid = child.id(), "credential daemon started");
        Ok(())
    }
}
