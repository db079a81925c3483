//! A sandbox's life after its start: idle stop, transparent resume and hibernate.
//!
//! Per sandbox name, under `<data dir>/lifecycle/`:
//!
//! ```text
//! <name>.json    the record: provider, idle timeout, hibernate-after, last activity,
//!                running | stopped | hibernated, the recipe's after-start hooks
//!                (written aside, then renamed)
//! <name>.lease   the lease (a flock): `up`, `exec` and `ports` hold it shared while
//!                they run; a stop or hibernate takes it exclusively without waiting
//! ```
//!
//! The host daemon ([`Headstart::idle_sweep`], from `daemon/idle.rs`) looks at every
//! record: one whose idle time passed is stopped only if the exclusive lease is free
//! (no command in flight, no start in progress) and the record, read again under it,
//! still says so. So a command or a start always wins over a stop: it holds the lease
//! from before it looks at the sandbox until it has recorded its activity.
//!
//! A stopped sandbox is started again by the next `exec`, `ports` or `up --name`, which
//! report how long that took ([`Resumed`]); an `exec` or `ports` also runs the recipe's
//! after-start hooks, as every start does (an `up` runs them itself). Docker: stop is
//! `docker stop` (container, image and workspace kept), hibernate commits the container
//! to an image and removes it (`provisioners::docker`). Local: there are no processes
//! to stop, only the record says `stopped`. Nothing here deletes anything: `--ttl` and
//! `down` do.

//!
//! Layout: the files, the lease and the idle decision in `record.rs`; here what
//! commands, `up`, `ls`, `hibernate` and the daemon's sweep do with them.

mod record;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sandbox_core::{Sandbox, SandboxInfo, SandboxName, SandboxProvider, SandboxState};
use serde::Serialize;
use snapshot_refresh::RecipeCommand;
use time::OffsetDateTime;

pub(crate) use record::{
    IdleAction, Lease, RecipeLifecycle, Record, decide, forget, idle_deadline, names, read, write,
};
pub use record::{RunState, parse_duration};

use super::choice::ProviderKind;
use super::sandboxes::ms;
use super::{Error, Headstart, Result};

/// A sandbox started again before a command could use it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Resumed {
    /// What it was.
    pub from: RunState,
    /// How long starting it again took (after-start hooks included).
    #[serde(rename = "ms", serialize_with = "ms")]
    pub duration: Duration,
}

/// Told that a stopped sandbox was started again ([`ExecRequest::on_resumed`](super::ExecRequest::on_resumed)).
pub type ResumedFn = Arc<dyn Fn(&Resumed) + Send + Sync>;

/// What `ls` shows of a sandbox's life (flattened into each row).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Activity {
    /// `running`, `stopped` (hibernated included), `broken`, `creating` (its start
    /// runs) or `interrupted` (its start's process is gone).
    pub status: &'static str,
    /// True when its container was committed to an image and removed.
    pub hibernated: bool,
    /// When it was last started or used, when recorded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_activity: Option<OffsetDateTime>,
    /// Its idle timeout in seconds (`None`: never stopped for idleness).
    pub idle_timeout_s: Option<u64>,
    /// When it will be stopped unless used (running ones with an idle timeout).
    #[serde(with = "time::serde::rfc3339::option")]
    pub idle_deadline: Option<OffsetDateTime>,
}

/// What [`Headstart::hibernate`] did (`docs/json/hibernate.schema.json`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HibernateOutcome {
    /// The sandbox.
    pub name: SandboxName,
    /// Its provider (`docker`).
    pub provider: &'static str,
    /// The image holding its container's filesystem.
    pub image: String,
    /// True when it was already hibernated.
    pub already: bool,
    /// How long it took.
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
}

/// The settings an `up` records, and the hooks it ran.
pub(crate) struct UpLifecycle {
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) hibernate_after: Option<Duration>,
    pub(crate) after_start: Vec<RecipeCommand>,
}

impl Headstart {
    /// Which provider has sandbox `name` (of `kind`, else local, else Docker), and what
    /// it says of it.
    pub(crate) async fn locate(
        &self,
        name: &SandboxName,
        kind: Option<ProviderKind>,
    ) -> Result<(Arc<dyn SandboxProvider>, SandboxInfo)> {
        let kinds = match kind {
            Some(k) => vec![k],
            None => vec![ProviderKind::Local, ProviderKind::Docker],
        };
        for k in kinds {
            let Some(provider) = self.provider_if_reachable(k, kind.is_none()).await? else {
                continue;
            };
            let found = provider
                .list()
                .await?
                .into_iter()
                .find(|i| &i.name == name && !i.state.is_unfinished());
            if let Some(info) = found {
                return Ok((provider, info));
            }
        }
        Err(sandbox_core::Error::SandboxNotFound {
            name: name.to_string(),
        }
        .into())
    }

    /// What sandbox `name` of `provider` is now: `None` when it runs.
    async fn stopped_as(
        &self,
        provider: &dyn SandboxProvider,
        info: &SandboxInfo,
    ) -> Result<Option<RunState>> {
        let record = read(self.data_dir(), &info.name);
        Ok(match provider.kind() {
            "local" => record.map(|r| r.state).filter(|s| *s != RunState::Running),
            _ if info.state != SandboxState::Stopped => None,
            _ if self.docker_provider().await?.is_hibernated(&info.name)? => {
                Some(RunState::Hibernated)
            }
            _ => Some(RunState::Stopped),
        })
    }

    /// Opens sandbox `name` for a command (the caller holds its shared [`Lease`]):
    /// a stopped or hibernated one is started again first and its after-start hooks
    /// run (a failing hook stops it again and fails). Records the activity.
    pub(crate) async fn open_sandbox(
        &self,
        name: &SandboxName,
        kind: Option<ProviderKind>,
    ) -> Result<(Arc<dyn SandboxProvider>, Box<dyn Sandbox>, Option<Resumed>)> {
        let (provider, info) = self.locate(name, kind).await?;
        let stopped = self.stopped_as(provider.as_ref(), &info).await?;
        let t = Instant::now();
        let sandbox =
            provider
                .get(name)
                .await?
                .ok_or_else(|| sandbox_core::Error::SandboxNotFound {
                    name: name.to_string(),
                })?;
        let resumed = match stopped {
            None => None,
            Some(from) => {
                let hooks = read(self.data_dir(), name)
                    .map(|r| r.after_start)
                    .unwrap_or_default();
                if let Err(e) = snapshot_refresh::run_after_start_hooks(&*sandbox, &hooks).await {
                    // left stopped, not half-ready
                    if provider.kind() == "docker" {
                        if let Err(stop) = self.docker_provider().await?.stop_sandbox(name).await {
                            tracing::warn!(%name, error = %stop, "could not stop it again");
                        }
                    }
                    return Err(e.into());
                }
                tracing::info!(%name, ?from, "sandbox resumed");
                Some(Resumed {
                    from,
                    duration: t.elapsed(),
                })
            }
        };
        self.touch(name);
        if read(self.data_dir(), name)
            .is_some_and(|r| r.idle_timeout.is_some() || r.hibernate_after.is_some())
        {
            // a daemon stopped since (or a reboot): the idle watch runs again
            self.ensure_daemon().await;
        }
        Ok((provider, sandbox, resumed))
    }

    /// Records activity of sandbox `name` now (it runs).
    pub(crate) fn touch(&self, name: &SandboxName) {
        if let Some(mut r) = read(self.data_dir(), name) {
            r.last_activity = OffsetDateTime::now_utc();
            r.state = RunState::Running;
            if let Err(e) = write(self.data_dir(), name, &r) {
                tracing::warn!(%name, error = %e, "could not record activity");
            }
        }
    }

    /// Before an `up` reconnects to sandbox `name` (its shared lease held): starts it
    /// again when it was stopped or hibernated, timed. The start runs the hooks.
    pub(crate) async fn resume_for_up(
        &self,
        provider: &dyn SandboxProvider,
        name: &SandboxName,
    ) -> Result<Option<Resumed>> {
        let Some(info) = provider
            .list()
            .await?
            .into_iter()
            .find(|i| &i.name == name && !i.state.is_unfinished())
        else {
            return Ok(None);
        };
        let Some(from) = self.stopped_as(provider, &info).await? else {
            return Ok(None);
        };
        let t = Instant::now();
        provider.get(name).await?;
        Ok(Some(Resumed {
            from,
            duration: t.elapsed(),
        }))
    }

    /// After a successful `up` of sandbox `name`: records its settings (those not given
    /// are kept from an earlier start) and that it runs, and starts the daemon that
    /// stops idle sandboxes when it has a timeout.
    pub(crate) async fn record_up(&self, name: &SandboxName, kind: ProviderKind, up: UpLifecycle) {
        let before = read(self.data_dir(), name).filter(|r| r.provider == kind.as_str());
        let keep =
            |new: Option<Duration>, old: Option<Duration>| new.or(old).filter(|d| !d.is_zero());
        let record = Record {
            provider: kind.as_str().to_owned(),
            idle_timeout: keep(
                up.idle_timeout,
                before.as_ref().and_then(|r| r.idle_timeout),
            ),
            hibernate_after: keep(
                up.hibernate_after,
                before.as_ref().and_then(|r| r.hibernate_after),
            ),
            last_activity: OffsetDateTime::now_utc(),
            state: RunState::Running,
            after_start: up.after_start,
        };
        if let Err(e) = write(self.data_dir(), name, &record) {
            tracing::warn!(%name, error = %e, "could not record the sandbox's lifecycle");
            return;
        }
        if record.idle_timeout.is_some() || record.hibernate_after.is_some() {
            self.ensure_daemon().await;
        }
    }

    /// Starts the host daemon when none answers (it stops idle sandboxes).
    async fn ensure_daemon(&self) {
        if let Err(e) = self
            .daemon_request(&super::daemon::ControlRequest::Status)
            .await
        {
            tracing::warn!(error = %e, "no daemon to stop idle sandboxes");
        }
    }

    /// What `ls` shows of sandbox `info`'s life; a local sandbox the daemon stopped
    /// becomes `stopped` in `info` too.
    pub(crate) fn activity(&self, info: &mut SandboxInfo) -> Activity {
        let record = read(self.data_dir(), &info.name).filter(|r| r.provider == info.provider);
        if info.provider == "local"
            && info.state == SandboxState::Ready
            && record
                .as_ref()
                .is_some_and(|r| r.state != RunState::Running)
        {
            info.state = SandboxState::Stopped;
            info.running = false;
        }
        let hibernated = info.state == SandboxState::Stopped
            && (info.id.is_empty()
                || record
                    .as_ref()
                    .is_some_and(|r| r.state == RunState::Hibernated));
        Activity {
            status: match info.state {
                SandboxState::Creating => "creating",
                SandboxState::Interrupted => "interrupted",
                SandboxState::Broken => "broken",
                SandboxState::Ready if info.running => "running",
                _ => "stopped",
            },
            hibernated,
            last_activity: record.as_ref().map(|r| r.last_activity),
            idle_timeout_s: record
                .as_ref()
                .and_then(|r| r.idle_timeout)
                .map(|d| d.as_secs()),
            idle_deadline: record
                .as_ref()
                .filter(|_| info.running)
                .and_then(idle_deadline),
        }
    }

    /// Hibernates Docker sandbox `name`: its container is committed to an image and
    /// removed, its workspace kept; the next command, look at its ports or start of
    /// the name makes it again from that image.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a local sandbox; [`Error::Busy`] while a command or
    /// a start holds it; an unknown sandbox; an engine failure (nothing is lost: the
    /// container is kept).
    pub async fn hibernate(&self, name: &str) -> Result<HibernateOutcome> {
        let name = SandboxName::new(name)?;
        let (provider, _) = self.locate(&name, None).await?;
        if provider.kind() != "docker" {
            return Err(Error::InvalidInput(format!(
                "sandbox {name} is a {} sandbox: hibernate is for Docker sandboxes (it keeps a \
                 container's filesystem as an image); a local sandbox has no processes or \
                 filesystem of its own to keep",
                provider.kind()
            )));
        }
        let Some(_lease) = Lease::try_exclusive(self.data_dir(), &name)? else {
            return Err(Error::Busy(format!(
                "a command or a start is running in sandbox {name}; hibernate it once it is idle"
            )));
        };
        let t = Instant::now();
        let done = self.docker_provider().await?.hibernate(&name).await?;
        self.set_state(&name, "docker", RunState::Hibernated)?;
        Ok(HibernateOutcome {
            name,
            provider: "docker",
            image: done.image,
            already: done.already,
            duration: t.elapsed(),
        })
    }

    /// Writes `state` into the record of `name` (made when there is none).
    fn set_state(&self, name: &SandboxName, provider: &str, state: RunState) -> Result<()> {
        let mut r = read(self.data_dir(), name).unwrap_or_else(|| Record {
            provider: provider.to_owned(),
            idle_timeout: None,
            hibernate_after: None,
            last_activity: OffsetDateTime::now_utc(),
            state,
            after_start: Vec::new(),
        });
        r.state = state;
        write(self.data_dir(), name, &r)
    }

    /// One pass of the daemon's idle watch: stops or hibernates every sandbox whose
    /// idle time passed and whose lease is free, re-checking under the lease; forgets
    /// the records of sandboxes that are gone. Returns what it did.
    pub(crate) async fn idle_sweep(&self) -> Vec<(SandboxName, IdleAction)> {
        let mut done = Vec::new();
        for name in names(self.data_dir()) {
            let now = OffsetDateTime::now_utc();
            let Some(r) = read(self.data_dir(), &name) else {
                continue;
            };
            if decide(&r, now) == IdleAction::Keep {
                continue;
            }
            let lease = match Lease::try_exclusive(self.data_dir(), &name) {
                Ok(Some(l)) => l,
                Ok(None) => continue, // in use: not idle
                Err(e) => {
                    tracing::warn!(%name, error = %e, "idle watch");
                    continue;
                }
            };
            // read again under the lease: a command may have ended just now
            let Some(r) = read(self.data_dir(), &name) else {
                continue;
            };
            let action = decide(&r, OffsetDateTime::now_utc());
            match self.apply(&name, &r, action).await {
                Ok(()) => done.push((name, action)),
                Err(e) if e.kind() == "sandbox_not_found" => forget(self.data_dir(), &name),
                Err(e) => tracing::warn!(%name, ?action, error = %e, "idle watch"),
            }
            drop(lease);
        }
        done
    }

    async fn apply(&self, name: &SandboxName, r: &Record, action: IdleAction) -> Result<()> {
        let state = match (action, r.provider.as_str()) {
            (IdleAction::Keep, _) => return Ok(()),
            (IdleAction::Stop, "docker") => {
                self.docker_provider().await?.stop_sandbox(name).await?;
                RunState::Stopped
            }
            (IdleAction::Hibernate, "docker") => {
                self.docker_provider().await?.hibernate(name).await?;
                RunState::Hibernated
            }
            (_, _) => {
                // local: no processes; the sandbox must still exist
                if self.local_provider().get(name).await?.is_none() {
                    return Err(sandbox_core::Error::SandboxNotFound {
                        name: name.to_string(),
                    }
                    .into());
                }
                RunState::Stopped
            }
        };
        tracing::info!(%name, ?state, "idle sandbox");
        let mut r = r.clone();
        r.state = state;
        write(self.data_dir(), name, &r)
    }
}
