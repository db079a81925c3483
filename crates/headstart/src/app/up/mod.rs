//! [`Headstart::up`]: start a sandbox holding a repository. Fast paths (feature flags)
//! → provider choice → `FastStart::start` (connect, clone or restore and sync,
//! `mark_ready`, `SnapshotBuilder::kick`) → the `StartCompleted` telemetry event.
//!
//! Stopping: the caller cancels [`UpRequest::cancel`] (the CLI does on SIGINT and
//! SIGTERM), or [`UpRequest::timeout`] passes; the start then removes what it created
//! and `up` fails with [`Error::Stopped`] saying what was left. Not here: signals,
//! exit statuses, text (the CLI's).

use std::sync::Arc;

use super::choice::{ProviderKind, choose_provider};
use feature_flags::{FastPaths, FeatureFlags, Purpose};
use sandbox_core::git::GitIdentity;
use sandbox_core::{ConnectOptions, SandboxName};
use snapshot_refresh::{Eligibility, FastStart};

use super::flags::FLUSH_ON_EXIT;
use super::grant::{is_grant_url, names_grant, redact_capabilities};
use super::start::{cancelled, decided, run_start, start_completed};
use super::workdir;
use super::{Error, Headstart, Result, Stopped, read_recipe, source_from};

mod request;

pub use request::{
    Notice, NoticeFn, PendingBuilds, SandboxRef, SnapshotRef, UpOutcome, UpRequest, Waited,
};

impl Headstart {
    /// Starts a sandbox holding a repository: warm from a snapshot when one is ready,
    /// else cold (and a snapshot is built for next time).
    ///
    /// # Errors
    /// Bad input ([`Error::is_user_error`]), a failed start (it removed what it
    /// created), or [`Error::Stopped`].
    pub async fn up(&self, req: UpRequest) -> Result<UpOutcome> {
        // libgit2's start-up (TLS and its CA certificates) overlaps the checks, the
        // provider choice and the restore below instead of delaying the clone or sync.
        drop(tokio::task::spawn_blocking(sandbox_core::git::preload));
        if req.branch.is_some() && req.new_branch.is_some() {
            // Allowed by the library (new branch from that branch); say what happens.
            tracing::info!("creating the new branch from --branch");
        }
        let notify = |n: Notice| {
            if let Some(f) = &req.notify {
                f(&n);
            }
        };
        // With a workdir the user's directory is the workspace: a repository given is
        // cloned into it when it is empty; without one the source names the directory.
        let workdir = match &req.workdir {
            Some(dir) => Some(workdir::checked(dir, self.data_dir(), req.repo.is_some())?),
            None => None,
        };
        let source = match (&req.repo, &workdir) {
            (Some(repo), _) => source_from(repo, req.branch.as_deref(), req.new_branch.as_deref())?,
            (None, Some(dir)) => {
                workdir::source_of(dir, req.branch.as_deref(), req.new_branch.as_deref())?
            }
            (None, None) => {
                return Err(Error::InvalidInput("give a repository or a workdir".into()));
            }
        };
        let mut recipe = read_recipe(req.recipe_file.as_deref())?;
        let (recipe_idle, recipe_hibernate) =
            super::lifecycle::RecipeLifecycle::read(req.recipe_file.as_deref())?;
        let lifecycle = super::lifecycle::UpLifecycle {
            idle_timeout: match req.idle_timeout.or(recipe_idle) {
                Some(d) => Some(d),
                None => self.config.default_idle_timeout()?,
            },
            hibernate_after: req.hibernate_after.or(recipe_hibernate),
            after_start: recipe.after_start.clone(),
        };
        let identity = match req.git_user.as_ref().or(self.config.git_user.as_ref()) {
            Some(s) => Some(GitIdentity::parse(s).map_err(|e| Error::InvalidInput(e.to_string()))?),
            None => None,
        };

        // Fast paths: an explicit provider lets the decision run alongside the start;
        // otherwise the provider depends on it (the `sandbox` fast path).
        FastPaths::parse_list(&req.beta.beta, "the requested fast paths")
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let flags = FeatureFlags::new(self.config.flags.clone());
        let pending = flags.spawn_fast_paths(req.beta.clone(), Purpose::Provision);
        let (decision, pending) = match req.provider {
            Some(_) => (None, Some(pending)),
            None => (Some(decided(pending.await)?), None),
        };
        let docker_ok = match (&req.provider, &decision) {
            (None, Some(d)) if d.paths.sandbox => super::docker_answers().await,
            _ => false,
        };
        let choice = choose_provider(
            req.provider,
            decision.as_ref().map(|d| d.paths).unwrap_or_default(),
            || docker_ok,
        );
        if req.provider.is_none()
            && choice.kind == ProviderKind::Local
            && decision.as_ref().is_some_and(|d| d.paths.sandbox)
        {
            notify(Notice::ProviderFallback(choice.reason.clone()));
        }
        let kind = choice.kind;
        let mut connect = ConnectOptions::new().force_create(req.force_create);
        if let Some(d) = &decision {
            connect = connect.env(crate::env::HEADSTART_BETA, d.beta_env());
        }
        if let Some(ttl) = req.ttl {
            connect = connect.ttl(ttl);
        }
        if let Some(dir) = &workdir {
            connect = connect.workdir(dir);
        }
        let plan = self.plan_grant(req.credentials, kind, &source)?;
        for p in &req.ports {
            connect = connect.port(*p);
        }
        if let Some(image) = &req.image {
            connect = connect.image(image);
            if kind != ProviderKind::Local {
                // snapshots are per image: the image keys them like a recipe's
                recipe.base_image = Some(image.clone());
            }
        }
        let provider = self.provider(kind).await?;
        // Named here (not by the provider) so a stopped start can say which it removed;
        // a workdir's sandbox is the one already using it (see workdir.rs).
        let name = match (&req.name, &workdir) {
            (Some(n), _) => SandboxName::new(n)?,
            (None, Some(dir)) => workdir::sandbox_name(provider.as_ref(), dir).await,
            (None, None) => SandboxName::generate(),
        };
        connect = connect.name(name.clone());
        // A sandbox reconnected to may have its own grant URL as origin: that is its
        // repository, and it keeps a grant (renewed: the token registered again).
        let own_grants = if req.force_create {
            Vec::new()
        } else {
            self.own_grant_paths(&name, &source).await
        };
        let plan = match plan {
            None if !own_grants.is_empty() => {
                self.plan_grant_for(req.credentials, kind, &source, true)?
            }
            plan => plan,
        };
        if plan.is_none() && !req.allow_push.is_empty() {
            return Err(Error::InvalidInput(
                "push patterns apply to a broker grant, and this start makes none".into(),
            ));
        }
        // held for the whole start: the idle watch does not stop what is being started
        let _lease = super::lifecycle::Lease::shared(self.data_dir(), &name).await?;
        // a generated name is new: nothing to resume
        let resumed = if req.force_create || (req.name.is_none() && workdir.is_none()) {
            None
        } else {
            self.resume_for_up(provider.as_ref(), &name).await?
        };
        let detach = self.config.detach_builds && !req.wait_snapshot;
        let remote = if req.no_snapshot {
            None
        } else {
            self.remote_for(kind).await?
        };
        let builder = Arc::new(self.builder_for(provider.clone(), kind, detach, remote.clone()));
        let eligibility = if req.no_snapshot {
            Eligibility::none()
        } else {
            self.config.eligibility()?
        };
        let mut fast = FastStart::new(provider.clone(), builder.clone())
            .recipe(recipe)
            .eligibility(eligibility)
            .credentials(self.config.credentials.clone());
        if let Some(id) = identity {
            fast = fast.git_identity(id);
        }
        if let Some(remote) = remote {
            fast = fast.remote(remote, self.config.registry_timeout);
        }
        if let Some(f) = &req.progress {
            fast = fast.progress(f.clone());
        }
        // no deadline (`--timeout 0`) still keeps the low-speed limit: a trickling
        // server fails in bounded time either way
        fast = fast.limits(match req.timeout {
            Some(t) => sandbox_core::TransferLimits::within(t),
            None => sandbox_core::TransferLimits::none()
                .low_speed(Some(sandbox_core::LowSpeed::default())),
        });
        fast = fast.cancel_token(req.cancel.clone());
        if !own_grants.is_empty() {
            let paths = own_grants.clone();
            fast = fast.origin_alias(Arc::new(move |o| is_grant_url(o, &paths)));
        }
        let (started, stopped) = run_start(
            fast.start(&source, &connect),
            &req.cancel,
            &req.abandon,
            req.timeout,
        )
        .await;

        let decision = match (decision, pending) {
            (Some(d), _) => Some(d),
            (None, Some(p)) => Some(decided(p.await)?),
            (None, None) => None,
        };
        flags.start_completed(
            &start_completed(&started, decision.as_ref(), kind),
            decision.as_ref(),
        );
        flags.shutdown(FLUSH_ON_EXIT).await;
        if let Some((deadline, returned)) = stopped {
            let left = self.left_behind(provider.as_ref(), &name).await;
            return Err(Error::Stopped(Box::new(Stopped {
                name,
                left,
                returned,
                deadline,
            })));
        }
        // what a start says may quote a workspace's origin: a grant URL
        let mut started = started.map_err(|e| match e {
            snapshot_refresh::Error::Refused(m) => {
                snapshot_refresh::Error::Refused(redact_capabilities(&m))
            }
            e => e,
        })?;
        started.report.reason = redact_capabilities(&started.report.reason);
        if let Some(r) = &started.repository {
            if names_grant(r, &own_grants) {
                started.repository = Some(source.url().to_string());
            }
        }
        let mut interrupted = false;
        let mut wait_result = None;
        if req.wait_snapshot {
            if let Some(key) = &started.key {
                // a cancel that came during the start (which finished anyway) does not
                // stop this wait: only a further one (`abandon`) does
                let stop = if req.cancel.is_cancelled() {
                    &req.abandon
                } else {
                    &req.cancel
                };
                tokio::select! {
                    waited = builder.wait(key) => match waited {
                        Some(Ok(b)) => {
                            wait_result = Some(Waited::Ready { id: b.snapshot.id.clone() });
                            notify(Notice::SnapshotReady(b.snapshot.id));
                        }
                        Some(Err(e)) => {
                            let error = sandbox_core::scrub(&e.to_string()).into_owned();
                            wait_result = Some(Waited::Failed { error: error.clone() });
                            notify(Notice::SnapshotFailed(error));
                        }
                        None => {}
                    },
                    () = cancelled(stop) => interrupted = true,
                }
            }
        }
        if let Some(w) = &wait_result {
            // the start's reason was written before the wait: say how the build ended
            let (one, a) = match w {
                Waited::Ready { .. } => ("built one for next time", "built a snapshot"),
                Waited::Failed { .. } => ("its build failed", "a snapshot build failed"),
            };
            started.report.reason = started
                .report
                .reason
                .replace("building one in the background for next time", one)
                .replace("building a snapshot in the background", a);
        }
        let sb = &started.sandbox;
        self.record_up(sb.name(), kind, lifecycle).await;
        let grant = match plan {
            Some(plan) => {
                let renew = started.report.path == sandbox_core::StartPath::Reconnected;
                Some(self.grant(plan, sb.as_ref(), &req, renew).await?)
            }
            None => {
                // a replaced sandbox's grant goes with it (a new grant replaces it anyway)
                if req.force_create {
                    self.revoke_grants(&name).await;
                } else if !own_grants.is_empty() {
                    // asked for no broker: the sandbox's grant goes, and its origin is
                    // the upstream again (a RepoUrl holds no credentials)
                    self.revoke_grants(&name).await;
                    let ws = sb.workspace().to_path_buf();
                    let upstream = source.url().to_string();
                    tokio::task::spawn_blocking(move || {
                        sandbox_core::git::set_origin_url(&ws, &upstream)
                    })
                    .await
                    .map_err(|e| {
                        Error::Failed(format!("setting origin back to the upstream: {e}"))
                    })??;
                }
                None
            }
        };
        let git_identity = {
            let ws = sb.workspace().to_path_buf();
            tokio::task::spawn_blocking(move || sandbox_core::git::identity(&ws))
                .await
                .ok()
                .flatten()
        };
        // the sandbox is ready: a failed look at its ports does not fail the start
        let ports = super::ports::ports_of(sb.as_ref(), &req.ports)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not read the sandbox's ports");
                Vec::new()
            });
        Ok(UpOutcome {
            git_identity,
            ports,
            sandbox: SandboxRef {
                id: sb.id().to_owned(),
                name: sb.name().clone(),
                workspace: sb.workspace().to_path_buf(),
            },
            repo: started.repository.clone(),
            provider: provider.kind(),
            provider_reason: choice.reason,
            fast_paths: decision.as_ref().map(|d| d.paths.names()),
            snapshot: started
                .snapshot
                .as_ref()
                .zip(started.key.as_ref())
                .map(|(m, k)| SnapshotRef {
                    id: m.id.clone(),
                    key: k.as_str().to_owned(),
                    source: started.snapshot_source,
                }),
            report: started.report,
            resumed,
            build: started.build,
            grant,
            waited: wait_result,
            interrupted,
            builds: PendingBuilds(Some(builder)),
        })
    }
}
