//! [`run_daemon`]: the credential daemon's process, in the foreground. The broker on
//! `127.0.0.1:<port>` (the port of the previous run when it is free, so grant URLs
//! survive a restart), the control socket, and which sandbox each grant is for
//! (`sandboxes.json`, no secrets). Until `stop`, SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use git_broker::{Broker, GrantHints, GrantId, GrantSpec, GrantSummary, PushPolicy};
use sandbox_core::{BranchName, Credentials, RepoUrl};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use super::listen::Listeners;
use super::{
    ControlRequest, ControlResponse, DaemonStatus, GrantInfo, GrantOrigin, daemon_dir,
    push_patterns,
};
use crate::app::{Error, Result};

/// What the daemon keeps besides the broker's grants: its port and each grant's
/// sandbox.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    port: Option<u16>,
    /// Grant id → sandbox name.
    sandboxes: BTreeMap<String, String>,
    /// Host addresses the broker also listens on (see `listen.rs`).
    #[serde(default)]
    listen: Vec<IpAddr>,
}

/// Whether the daemon's state records a grant for `sandbox` (read from the state
/// file, without asking the daemon).
pub(crate) fn has_recorded_grants(data_dir: &Path, sandbox: &str) -> bool {
    std::fs::read(daemon_dir(data_dir).join("sandboxes.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<State>(&b).ok())
        .is_some_and(|s| s.sandboxes.values().any(|n| n == sandbox))
}

struct Daemon {
    broker: Broker,
    port: u16,
    listeners: Listeners,
    state: Mutex<State>,
    state_file: PathBuf,
    stop: tokio::sync::Notify,
}

/// Creates `dir` (and parents) and makes it `0700`.
pub(super) fn private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

/// Runs the credential daemon of `data_dir` until it is told to stop (the control
/// socket's `stop`, SIGINT or SIGTERM).
///
/// # Errors
/// When another daemon already answers, or the broker or sockets cannot be set up.
pub async fn run_daemon(data_dir: &Path) -> Result<()> {
    let dir = daemon_dir(data_dir);
    private_dir(&dir)?;
    let sock = dir.join("control.sock");
    if UnixStream::connect(&sock).await.is_ok() {
        return Err(Error::Daemon(format!(
            "a credential daemon already answers on {}",
            sock.display()
        )));
    }
    let state_file = dir.join("sandboxes.json");
    let state: State = std::fs::read(&state_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let broker = Broker::with_state_file(dir.join("grants.json"))
        .map_err(|e| Error::Daemon(e.to_string()))?;
    let tcp = match state.port {
        Some(p) => match TcpListener::bind(("127.0.0.1", p)).await {
            Ok(l) => l,
            Err(_) => bind_any().await?,
        },
        None => bind_any().await?,
    };
    let port = tcp
        .local_addr()
        .map_err(|e| Error::io("reading the broker's address", e))?
        .port();
    let _ = std::fs::remove_file(&sock);
    let control = UnixListener::bind(&sock)
        .map_err(|e| Error::io(format!("listening on {}", sock.display()), e))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("securing {}", sock.display()), e))?;
    let listeners = Listeners::new(broker.clone(), port);
    for addr in &state.listen {
        // best effort: the bridge may be gone (no engine now); a start asks again
        if let Err(e) = listeners.ensure(&[*addr]) {
            tracing::warn!(address = %addr, error = %e, "not listening there again");
        }
    }
    let daemon = Arc::new(Daemon {
        broker: broker.clone(),
        port,
        listeners,
        state: Mutex::new(State {
            port: Some(port),
            ..state
        }),
        state_file,
        stop: tokio::sync::Notify::new(),
    });
    daemon.save()?;
    let serving = broker.spawn(tcp);
    let watching = tokio::spawn(super::idle::watch(data_dir.to_path_buf()));
    tracing::info!(port, pid = std::process::id(), "credential daemon ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("catching SIGTERM", e))?;
    loop {
        tokio::select! {
            conn = control.accept() => match conn {
                Ok((stream, _)) => {
                    let d = Arc::clone(&daemon);
                    tokio::spawn(async move { d.answer(stream).await });
                }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            },
            () = daemon.stop.notified() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    serving.abort();
    daemon.listeners.stop();
    watching.abort();
    let _ = std::fs::remove_file(&sock);
    tracing::info!("credential daemon stopped");
    Ok(())
}

async fn bind_any() -> Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Error::io("listening on 127.0.0.1", e))
}

impl Daemon {
    /// Answers the requests of one connection, a line each.
    async fn answer(&self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let (response, stop) = match serde_json::from_str::<ControlRequest>(&line) {
                Ok(ControlRequest::Stop) => (ControlResponse::Stopping, true),
                Ok(req) => (
                    self.handle(req).unwrap_or_else(|e| ControlResponse::Error {
                        message: e.to_string(),
                    }),
                    false,
                ),
                Err(e) => (
                    ControlResponse::Error {
                        message: format!("not a request: {e}"),
                    },
                    false,
                ),
            };
            let mut out = serde_json::to_vec(&response).unwrap_or_default();
            out.push(b'\n');
            let _ = write.write_all(&out).await;
            let _ = write.flush().await;
            if stop {
                self.stop.notify_one();
                return;
            }
        }
    }

    fn handle(&self, req: ControlRequest) -> Result<ControlResponse> {
        let broker_err = |e: git_broker::BrokerError| Error::Daemon(e.to_string());
        Ok(match req {
            ControlRequest::Register {
                sandbox,
                upstream,
                token,
                username,
                own_branch,
                allow_push,
                expires_at,
                host,
                renew_hint,
                register_hint,
                listen,
                renew,
            } => {
                if !self.listeners.ensure(&listen)?.is_empty() {
                    let mut state = self.lock();
                    for a in listen {
                        if !a.is_loopback() && !state.listen.contains(&a) {
                            state.listen.push(a);
                        }
                    }
                    drop(state);
                    self.save()?;
                }
                let mut push = match &own_branch {
                    Some(b) => PushPolicy::own_branch(&BranchName::new(b)?),
                    None => PushPolicy::read_only(),
                };
                for p in &allow_push {
                    push = push.allow_branches(p).map_err(broker_err)?;
                }
                let mut credentials = Credentials::token(token);
                if let Some(u) = username {
                    credentials = credentials.with_username(u);
                }
                let upstream = RepoUrl::parse(&upstream)?;
                let spec = GrantSpec {
                    upstream: upstream.clone(),
                    credentials,
                    expires_at,
                    push,
                    hints: GrantHints {
                        renew: renew_hint,
                        register: register_hint,
                    },
                };
                let grant = match renew
                    .then(|| self.live_grants(&sandbox, Some(&upstream)).pop())
                    .flatten()
                {
                    Some(id) => self.broker.renew(&id, spec).map_err(broker_err)?,
                    None => self.broker.grant(spec).map_err(broker_err)?,
                };
                // one live grant per sandbox: a new one replaces what it had
                for old in self.live_grants(&sandbox, None) {
                    if &old != grant.id() {
                        self.broker.revoke(&old).map_err(broker_err)?;
                    }
                }
                self.lock()
                    .sandboxes
                    .insert(grant.id().to_string(), sandbox);
                self.save()?;
                let url = grant.url_at(&format!("{host}:{}", self.port));
                let info = self
                    .info(grant.id())
                    .ok_or_else(|| Error::Daemon("the new grant vanished".into()))?;
                ControlResponse::Registered { grant: info, url }
            }
            ControlRequest::Revoke { sandbox } => {
                let ids: Vec<String> = self
                    .lock()
                    .sandboxes
                    .iter()
                    .filter(|(_, s)| **s == sandbox)
                    .map(|(id, _)| id.clone())
                    .collect();
                let mut revoked = Vec::new();
                for id in ids {
                    let gid = GrantId::new(&id).map_err(broker_err)?;
                    if self
                        .broker
                        .grants()
                        .iter()
                        .any(|g| g.id == gid && !g.revoked)
                    {
                        self.broker.revoke(&gid).map_err(broker_err)?;
                        revoked.push(id);
                    }
                }
                ControlResponse::Revoked { grants: revoked }
            }
            ControlRequest::Origins { sandbox } => ControlResponse::Origins {
                grants: self
                    .live_grants(&sandbox, None)
                    .iter()
                    .filter_map(|id| self.broker.get(id))
                    .map(|g| GrantOrigin {
                        repository: g.upstream().to_string(),
                        path: g.path(),
                    })
                    .collect(),
            },
            ControlRequest::Status => ControlResponse::Status(DaemonStatus {
                running: true,
                pid: Some(std::process::id()),
                port: Some(self.port),
                addresses: self
                    .listeners
                    .addresses()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                grants: self
                    .broker
                    .grants()
                    .iter()
                    .map(|g| self.summary(g))
                    .collect(),
            }),
            ControlRequest::Stop => ControlResponse::Stopping,
        })
    }

    /// The ids of `sandbox`'s grants that are not revoked (of `upstream`'s repository
    /// when given), the one expiring last at the end.
    fn live_grants(&self, sandbox: &str, upstream: Option<&RepoUrl>) -> Vec<GrantId> {
        let mine: Vec<String> = self
            .lock()
            .sandboxes
            .iter()
            .filter(|(_, s)| *s == sandbox)
            .map(|(id, _)| id.clone())
            .collect();
        let mut live: Vec<GrantSummary> = self
            .broker
            .grants()
            .into_iter()
            .filter(|g| !g.revoked && mine.iter().any(|id| id == g.id.as_str()))
            .filter(|g| upstream.is_none_or(|u| g.upstream.same_repository(u)))
            .collect();
        live.sort_by_key(|g| g.expires_at);
        live.into_iter().map(|g| g.id).collect()
    }

    fn info(&self, id: &GrantId) -> Option<GrantInfo> {
        self.broker
            .grants()
            .iter()
            .find(|g| &g.id == id)
            .map(|g| self.summary(g))
    }

    fn summary(&self, g: &GrantSummary) -> GrantInfo {
        GrantInfo {
            id: g.id.to_string(),
            sandbox: self.lock().sandboxes.get(g.id.as_str()).cloned(),
            repository: sandbox_core::scrub(&g.upstream.to_string()).into_owned(),
            push: push_patterns(&g.push),
            expires_at: g.expires_at,
            capability_prefix: g.capability_prefix.clone(),
            revoked: g.revoked,
            has_credentials: g.has_credentials,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the state file (`0600`, written aside and renamed).
    fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&*self.lock()).unwrap_or_default();
        sandbox_core::tree::write_atomic(&self.state_file, &json, 0o600)
            .map_err(|e| Error::io(format!("writing {}", self.state_file.display()), e))
    }
}
