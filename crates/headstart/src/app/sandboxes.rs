//! [`Headstart::exec`], [`Headstart::down`] and [`Headstart::ls`]: the sandboxes of
//! this data directory, on every provider that answers (local always, Docker when an
//! engine does).
//!
//! `ls` gives each sandbox's repository (its workspace's `origin`, credential-free)
//! and branch (what HEAD names), read in-process through `sandbox_core::git`. `down`
//! checks every name first, so a typo removes nothing.
//!
//! Not here: creating sandboxes ([`Headstart::up`]) or expiring them
//! ([`Headstart::prune`]).

use std::sync::Arc;
use std::time::Duration;

use super::choice::ProviderKind;
use sandbox_core::{OutputSink, SandboxInfo, SandboxName, SandboxProvider};
use serde::Serialize;

use super::daemon::GrantInfo;
use super::grant::redact_grant_url;
use super::{Error, Headstart, Result};

/// A command to run in a sandbox.
#[derive(Clone)]
#[non_exhaustive]
pub struct ExecRequest {
    /// The sandbox.
    pub name: String,
    /// Its provider (default: wherever the sandbox is).
    pub provider: Option<ProviderKind>,
    /// The program and its arguments (no shell).
    pub argv: Vec<String>,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
    /// Where output goes as it arrives (`None`: captured into the outcome).
    pub sink: Option<OutputSink>,
    /// Told when a stopped sandbox was started again, before the command runs.
    pub on_resumed: Option<super::ResumedFn>,
    /// The command's standard input (`None`: none, `/dev/null`).
    pub stdin: Option<sandbox_core::ExecStdin>,
    /// Forwards a signal to the running command (Ctrl-C reaching the caller); see
    /// [`sandbox_core::SignalToken`].
    pub signals: Option<sandbox_core::SignalToken>,
}

impl ExecRequest {
    /// `argv` in sandbox `name`, output captured.
    pub fn new(name: impl Into<String>, argv: Vec<String>) -> Self {
        Self {
            name: name.into(),
            provider: None,
            argv,
            timeout: None,
            sink: None,
            on_resumed: None,
            stdin: None,
            signals: None,
        }
    }
}

/// What a command in a sandbox did (`docs/json/exec.schema.json`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ExecOutcome {
    /// The sandbox.
    pub sandbox: SandboxName,
    /// Its provider.
    pub provider: &'static str,
    /// What ran.
    pub argv: Vec<String>,
    /// The command's exit code (128 + N when signal N ended it; `None`: unknown).
    pub exit_code: Option<i32>,
    /// The shell's status for it: the exit code, 124 on timeout, 1 when unknown.
    pub status: u8,
    /// True when the timeout killed it.
    pub timed_out: bool,
    /// Wall time.
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
    /// Captured stdout (lossy UTF-8; empty when streamed).
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// True when captured output was cut.
    pub truncated: bool,
    /// Set when the sandbox was stopped (or hibernated) and started again first.
    pub resumed: Option<super::Resumed>,
}

/// A duration in milliseconds with microsecond precision.
pub(crate) fn ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// What `down` removed (`docs/json/down.schema.json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownOutcome {
    /// The sandboxes removed, in order.
    pub removed: Vec<Removed>,
}

/// One removed sandbox.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// Its name.
    pub name: SandboxName,
    /// Its provider.
    pub provider: &'static str,
    /// The broker grants revoked with it (ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked_grants: Vec<String>,
}

/// One sandbox as `ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxRow {
    /// What the provider says.
    #[serde(flatten)]
    pub info: SandboxInfo,
    /// The workspace's `origin` (credential-free).
    pub repo: Option<String>,
    /// The branch HEAD names.
    pub branch: Option<String>,
    /// The commit HEAD is at.
    pub commit: Option<String>,
    /// Its broker grant, when it has a live one (never the capability in full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantInfo>,
    /// Published ports (sandboxes that publish them: Docker), read from the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<sandbox_core::PublishedPort>>,
    /// Running or stopped, last activity and idle deadline.
    #[serde(flatten)]
    pub activity: super::Activity,
}

/// Every sandbox (`docs/json/ls.schema.json`: an array).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct LsOutcome {
    /// The sandboxes.
    pub sandboxes: Vec<SandboxRow>,
    /// The unfinished creations (`creating` or `interrupted`) left out of `sandboxes`
    /// because not all were asked for; not part of the JSON.
    #[serde(skip)]
    pub hidden: Vec<SandboxInfo>,
}

impl Headstart {
    /// Every sandbox of the providers asked for (`None`: local, and Docker if it answers).
    async fn list_all(
        &self,
        only: Option<ProviderKind>,
    ) -> Result<Vec<(Arc<dyn SandboxProvider>, SandboxInfo)>> {
        let mut all = Vec::new();
        for kind in [ProviderKind::Local, ProviderKind::Docker] {
            if only.is_some_and(|k| k != kind) {
                continue;
            }
            let optional = kind == ProviderKind::Docker && only.is_none();
            let Some(p) = self.provider_if_reachable(kind, optional).await? else {
                continue;
            };
            for info in p.list().await? {
                if is_running_build(&info) {
                    continue;
                }
                all.push((p.clone(), info));
            }
        }
        Ok(all)
    }

    /// Every finished sandbox (`ready`, `stopped`, `broken`), with its repository and
    /// branch; with `all` also the creations that did not finish: `creating` (a start
    /// in progress) and `interrupted` (its process is gone: `prune`, `down` or the next
    /// start of the name repairs it). Those left out are in [`LsOutcome::hidden`].
    ///
    /// # Errors
    /// When a provider that answers fails to list.
    pub async fn ls(&self, all: bool) -> Result<LsOutcome> {
        let grants = self.live_grants().await;
        let mut sandboxes = Vec::new();
        let mut hidden = Vec::new();
        for (provider, mut info) in self.list_all(None).await? {
            if !all && info.state.is_unfinished() {
                hidden.push(info);
                continue;
            }
            let activity = self.activity(&mut info);
            let git = sandbox_core::git::summary(&info.workspace);
            let grant = grants
                .iter()
                .find(|g| g.sandbox.as_deref() == Some(info.name.as_str()))
                .cloned();
            // a grant URL holds the capability: show the repository it reaches
            let repo = match &grant {
                Some(g) => Some(g.repository.clone()),
                None => git.origin.as_deref().map(redact_grant_url),
            };
            // read without opening the sandbox: a listing never starts a stopped one
            let ports = match info.state {
                sandbox_core::SandboxState::Ready if provider.kind() == "docker" => {
                    match self.docker_provider().await {
                        Ok(d) => d.published_ports(&info.name).await.ok(),
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            // an unfinished clone's HEAD names `git init`'s default, not a branch
            let branch = git
                .branch
                .filter(|_| git.commit.is_some() || !info.state.is_unfinished());
            sandboxes.push(SandboxRow {
                info,
                repo,
                branch,
                commit: git.commit,
                grant,
                ports,
                activity,
            });
        }
        Ok(LsOutcome { sandboxes, hidden })
    }

    /// Removes the sandboxes `names` (each checked first: an unknown name removes
    /// nothing), or with `all` every sandbox (of `provider`, else of every provider
    /// that answers).
    ///
    /// # Errors
    /// An unknown name, or a removal that failed (the error says which were removed
    /// before it).
    pub async fn down(
        &self,
        names: &[String],
        all: bool,
        provider: Option<ProviderKind>,
    ) -> Result<DownOutcome> {
        let mut targets: Vec<(Arc<dyn SandboxProvider>, SandboxName)> = Vec::new();
        if all {
            for (p, info) in self.list_all(provider).await? {
                // an unfinished local creation is left alone, as when the local provider
                // listed ready ones only (its removal would wait for a running start
                // without bound); `prune` removes an interrupted one, `down NAME` either
                if p.kind() == "local" && info.state.is_unfinished() {
                    continue;
                }
                targets.push((p, info.name));
            }
        } else {
            for n in names {
                let name = SandboxName::new(n)?;
                if targets.iter().any(|(_, t)| *t == name) {
                    continue;
                }
                // found without starting it (a stopped one stays stopped)
                let p = match self.locate(&name, provider).await {
                    Ok((p, _)) => p,
                    // a start still running (removed once it finishes: the provider
                    // waits for the name's lock) or one whose process died
                    Err(_)
                        if matches!(provider, None | Some(ProviderKind::Local))
                            && matches!(self.local_provider().state(&name), Ok(Some(_))) =>
                    {
                        self.provider(ProviderKind::Local).await?
                    }
                    // the same for Docker: `ls --all` lists its unfinished containers
                    Err(e) => match self.docker_creating(&name, provider).await {
                        Some(p) => p,
                        None => return Err(e),
                    },
                };
                targets.push((p, name));
            }
        }
        let mut out = DownOutcome::default();
        let mut failed: Option<Error> = None;
        for (p, name) in targets {
            match p.remove(&name).await {
                Ok(()) => out.removed.push(Removed {
                    revoked_grants: {
                        super::lifecycle::forget(self.data_dir(), &name);
                        self.revoke_grants(&name).await
                    },
                    name,
                    provider: p.kind(),
                }),
                Err(e) => {
                    tracing::warn!(sandbox = %name, error = %e, "could not remove");
                    failed.get_or_insert_with(|| {
                        Error::from(e).context(format!("removing sandbox {name}"))
                    });
                }
            }
        }
        if let Some(e) = failed {
            let done: Vec<&str> = out.removed.iter().map(|r| r.name.as_str()).collect();
            return Err(if done.is_empty() {
                e
            } else {
                e.context(format!("removed {} before the failure", done.join(", ")))
            });
        }
        Ok(out)
    }

    /// Runs an argv (never a shell string) in a sandbox. A stopped (or hibernated)
    /// sandbox is started again first ([`ExecOutcome::resumed`]); while the command
    /// runs the sandbox's lease is held, so the idle watch never stops it under the
    /// command.
    ///
    /// # Errors
    /// An unknown sandbox, or a program that could not be started
    /// (`CommandNotFound`, `CommandNotExecutable`).
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecOutcome> {
        let name = SandboxName::new(&req.name)?;
        let _lease = super::lifecycle::Lease::shared(self.data_dir(), &name).await?;
        let (provider, sandbox, resumed) = self.open_sandbox(&name, req.provider).await?;
        if let (Some(r), Some(f)) = (&resumed, &req.on_resumed) {
            f(r);
        }
        let mut core = sandbox_core::ExecRequest::new(req.argv.clone())?;
        if let Some(t) = req.timeout {
            core = core.timeout(t);
        }
        if let Some(sink) = req.sink {
            core = core.sink(sink);
        }
        if let Some(stdin) = req.stdin {
            core = core.stdin(stdin);
        }
        if let Some(token) = req.signals {
            core = core.signals(token);
        }
        let out = sandbox.exec(&core).await;
        self.touch(&name);
        let out = out?;
        let status: u8 = if out.timed_out {
            124
        } else {
            out.exit_code
                .map_or(1, |c| u8::try_from(c & 0xff).unwrap_or(1))
        };
        Ok(ExecOutcome {
            sandbox: name,
            provider: provider.kind(),
            argv: req.argv,
            exit_code: out.exit_code,
            status,
            timed_out: out.timed_out,
            duration: out.duration,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            truncated: out.truncated,
            resumed,
        })
    }
}

impl Headstart {
    /// The Docker provider when it holds an unfinished sandbox `name` (`creating`: a
    /// start still running, or `interrupted`: one whose process died): what `down`
    /// removes although no start finished it. `None` when Docker is not asked for, does
    /// not answer, or has no such sandbox.
    async fn docker_creating(
        &self,
        name: &SandboxName,
        provider: Option<ProviderKind>,
    ) -> Option<Arc<dyn SandboxProvider>> {
        if !matches!(provider, None | Some(ProviderKind::Docker)) {
            return None;
        }
        let docker = self.provider(ProviderKind::Docker).await.ok()?;
        let creating = docker
            .list()
            .await
            .ok()?
            .into_iter()
            .any(|i| &i.name == name && i.state.is_unfinished());
        creating.then_some(docker)
    }
}

/// A snapshot build's own sandbox while unfinished (`build-<16 hex>`, `creating` while
/// it builds, `interrupted` once its build died: the next build's cleanup or `prune`
/// removes it): internal, never a sandbox of the user's, so listings leave it out.
fn is_running_build(info: &SandboxInfo) -> bool {
    info.state.is_unfinished()
        && info
            .name
            .as_str()
            .strip_prefix("build-")
            .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}
