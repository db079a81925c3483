//! The subcommands: argument types and what each one does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use feature_flags::{Purpose, StartCompleted};
use provisioners::local::LocalProvider;
use sandbox_core::{BranchName, ConnectOptions, SandboxName, SandboxProvider, SnapshotId, Source};
use snapshot_refresh::{Eligibility, FastStart, KickOutcome, Recipe, SnapshotBuilder, Spawn};

use crate::choice::{ProviderKind, choose_provider};
use crate::exec::ExecArgs;
use crate::sandboxes::{DownArgs, LsArgs};
use crate::{Command, config, output, render};

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Repository: https://, ssh://, git@host:owner/repo, git://, file:// or a local path.
    /// Not needed with --workdir.
    #[arg(required_unless_present = "workdir")]
    repo: Option<String>,
    /// Branch to check out (default: the remote's default branch).
    #[arg(long, short)]
    branch: Option<String>,
    /// Create and check out a new branch (from --branch, else the default branch).
    #[arg(long)]
    new_branch: Option<String>,
    /// Sandbox name (default: generated; with --workdir, the one of that directory). An
    /// existing sandbox of that name is reused: another repository is refused, another
    /// branch is switched to only when it has no local changes.
    #[arg(long)]
    name: Option<String>,
    /// Replace an existing sandbox of the same name.
    #[arg(long)]
    force_create: bool,
    /// Provider (default: local).
    #[arg(long, value_parser = parse_provider)]
    provider: Option<ProviderKind>,
    /// Use this directory as the workspace (nothing deleted on `down`; never inside the
    /// data directory). With a repository: cloned into it when empty or missing, used
    /// when already a checkout of it, refused otherwise.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Start cold and build no snapshot.
    #[arg(long)]
    no_snapshot: bool,
    /// Remove the sandbox after this long (`headstart prune`), e.g. `90m`, `2h`, `1d`.
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// Setup recipe (JSON: {"commands":[{"argv":[...],"timeout":secs}],"base_image":..}).
    #[arg(long, value_name = "FILE")]
    recipe: Option<PathBuf>,
    /// Build a missing snapshot in this process and wait for it before exiting.
    #[arg(long)]
    wait_snapshot: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Give up when the whole start (provisioning, clone or sync, setup) takes longer,
    /// e.g. `90s`, `10m`; `0` waits forever. What it made is removed.
    #[arg(long, value_parser = parse_duration, default_value = "10m", value_name = "DURATION")]
    timeout: Duration,
    #[command(flatten)]
    beta: crate::flags::BetaArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Print one JSON object: what was removed.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Build a base snapshot of a repository now (and wait for it).
    Build {
        /// The repository.
        repo: String,
        /// Branch (default: the remote's default branch).
        #[arg(long, short)]
        branch: Option<String>,
        /// Setup recipe file (JSON).
        #[arg(long, value_name = "FILE")]
        recipe: Option<PathBuf>,
        /// Forget recent failures of this repository first.
        #[arg(long)]
        force: bool,
        /// Provider (default: local).
        #[arg(long, value_parser = parse_provider)]
        provider: Option<ProviderKind>,
        /// Print one JSON object: the snapshot and the recipe's commands.
        #[arg(long)]
        json: bool,
    },
    /// List snapshots (local, and Docker's when an engine answers) and recent build
    /// failures.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only this provider's snapshots (default: every provider that answers).
        #[arg(long, value_parser = parse_provider)]
        provider: Option<ProviderKind>,
    },
    /// Remove a snapshot.
    Rm {
        /// The snapshot id.
        id: String,
        /// Provider (default: local).
        #[arg(long, value_parser = parse_provider)]
        provider: Option<ProviderKind>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Garbage-collect snapshots.
    Gc {
        /// Keep this many newest ready snapshots per repository.
        #[arg(long, default_value_t = 2)]
        keep: usize,
        /// Remove snapshots older than this many days.
        #[arg(long, default_value_t = 14)]
        max_age_days: u64,
        /// Provider (default: local).
        #[arg(long, value_parser = parse_provider)]
        provider: Option<ProviderKind>,
        /// Print one JSON object: what was removed and kept.
        #[arg(long)]
        json: bool,
    },
    /// Run a build job file (what detached build processes do).
    #[command(hide = true)]
    RunJob {
        /// The job file.
        file: PathBuf,
        /// Provider.
        #[arg(long, value_parser = parse_provider, default_value = "local")]
        provider: ProviderKind,
    },
}

/// An error that is the user's input: exit status 2.
#[derive(Debug)]
pub(crate) struct UserError(pub(crate) String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// True when the error (or a cause) is bad input.
pub(crate) fn is_user_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<UserError>().is_some()
            || c.downcast_ref::<sandbox_core::Error>()
                .is_some_and(sandbox_core::Error::is_user_error)
            || c.downcast_ref::<snapshot_refresh::Error>()
                .is_some_and(snapshot_refresh::Error::is_user_error)
            || c.downcast_ref::<clap::Error>().is_some()
            || c.downcast_ref::<feature_flags::Error>().is_some_and(|e| {
                matches!(
                    e,
                    feature_flags::Error::UnknownFastPath { .. }
                        | feature_flags::Error::BadOverride { .. }
                )
            })
    })
}

/// The local configuration, read once from the environment: the data directory and
/// the restore method. Derefs to the data directory.
pub(crate) struct Ctx {
    home: std::path::PathBuf,
    restore: provisioners::local::RestoreMethod,
}

impl std::ops::Deref for Ctx {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.home
    }
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let local = provisioners::local::LocalConfig::from_env()?;
    let home = Ctx {
        home: local.home,
        restore: local.restore_method,
    };
    match command {
        Command::Up(args) => up(&home, args).await,
        Command::Exec(args) => exec(&home, args).await,
        Command::Down(args) => down(&home, args).await,
        Command::Ls(args) => ls(&home, args).await,
        Command::Snapshot(cmd) => snapshot(&home, cmd).await,
        Command::Prune(args) => prune(&home, args).await,
        Command::Flags(args) => crate::flags::run(args).await,
        Command::Vm(args) => crate::vm::run(args).await,
    }
}

/// `90s`, `30m`, `2h`, `1d`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 90m, 2h, 1d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}` is not a duration (e.g. 90m, 2h, 1d)")),
    };
    Ok(Duration::from_secs(secs))
}

pub(crate) fn parse_provider(s: &str) -> Result<ProviderKind, String> {
    match s {
        "local" => Ok(ProviderKind::Local),
        "docker" => Ok(ProviderKind::Docker),
        other => Err(format!("unknown provider `{other}`; use local or docker")),
    }
}

/// True when a Docker engine answers (what the `sandbox` fast path needs).
pub(crate) async fn docker_answers() -> bool {
    match provisioners::docker::connect_from_env().await {
        Ok(docker) => tokio::time::timeout(Duration::from_secs(2), docker.ping())
            .await
            .is_ok_and(|r| r.is_ok()),
        Err(_) => false,
    }
}

pub(crate) async fn make_provider(
    home: &Ctx,
    kind: ProviderKind,
) -> anyhow::Result<Arc<dyn SandboxProvider>> {
    Ok(match kind {
        ProviderKind::Local => Arc::new(local_provider(home)?),
        ProviderKind::Docker => Arc::new(docker_provider(home).await?),
    })
}

/// The Docker provider for this data directory. Containers of another data directory
/// (another user, a test) are not ours to list or reconnect to: a label scopes them.
async fn docker_provider(home: &Ctx) -> anyhow::Result<provisioners::docker::DockerProvider> {
    let mut config = provisioners::docker::DockerConfig::new(home.join("docker"))
        .scope_label("dev.headstart.home", home.display().to_string());
    config.restore_method = home.restore;
    Ok(provisioners::docker::DockerProvider::from_env(config).await?)
}

/// The local provider over the data directory, with the restore method the
/// environment forces.
fn local_provider(home: &Ctx) -> anyhow::Result<LocalProvider> {
    Ok(LocalProvider::new(&home.home).with_restore_method(home.restore))
}

/// The provider that has sandbox `name`: the one asked for, else local, else Docker.
pub(crate) async fn find_sandbox(
    home: &Ctx,
    name: &SandboxName,
    kind: Option<ProviderKind>,
) -> anyhow::Result<(Arc<dyn SandboxProvider>, Box<dyn sandbox_core::Sandbox>)> {
    let kinds = match kind {
        Some(k) => vec![k],
        None => vec![ProviderKind::Local, ProviderKind::Docker],
    };
    for k in kinds {
        let provider = match make_provider(home, k).await {
            Ok(p) => p,
            Err(e) if kind.is_none() => {
                tracing::debug!(error = %e, "provider unavailable");
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(sb) = provider.get(name).await? {
            return Ok((provider, sb));
        }
    }
    Err(sandbox_core::Error::SandboxNotFound {
        name: name.to_string(),
    }
    .into())
}

pub(crate) fn sandbox_name(s: &str) -> anyhow::Result<SandboxName> {
    Ok(SandboxName::new(s)?)
}

fn read_recipe(path: Option<&Path>) -> anyhow::Result<Recipe> {
    let Some(path) = path else {
        return Ok(Recipe::empty());
    };
    let bytes =
        std::fs::read(path).with_context(|| format!("reading recipe {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        UserError(format!(
            "recipe {} is not valid: {e}; expected {{\"commands\":[{{\"argv\":[\"make\",\"deps\"]}}]}}",
            path.display()
        ))
        .into()
    })
}

fn source_from(
    repo: &str,
    branch: Option<&str>,
    new_branch: Option<&str>,
) -> anyhow::Result<Source> {
    let mut source = Source::parse(repo)?;
    if let Some(b) = branch {
        source = source.with_branch(BranchName::new(b)?)?;
    }
    if let Some(n) = new_branch {
        source = source.with_new_branch(BranchName::new(n)?)?;
    }
    Ok(source)
}

fn builder_for(
    home: &Ctx,
    provider: Arc<dyn SandboxProvider>,
    kind: ProviderKind,
    detach: bool,
) -> SnapshotBuilder {
    let builder = SnapshotBuilder::new(provider, home.join("state"));
    if !detach {
        return builder;
    }
    let log_dir = home.join("state").join("logs");
    let spawner: snapshot_refresh::DetachedSpawner = Arc::new(move |job: &Path| {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(&log_dir)?;
        let log = std::fs::File::create(log_dir.join("last-build.log"))?;
        let exe = std::env::current_exe()?;
        let provider = match kind {
            ProviderKind::Local => "local",
            ProviderKind::Docker => "docker",
        };
        let child = std::process::Command::new(exe)
            .args(["snapshot", "run-job", "--provider", provider])
            .arg(job)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        Ok(child.id())
    });
    builder.with_spawn(Spawn::Detached(spawner))
}

async fn up(home: &Ctx, args: UpArgs) -> anyhow::Result<ExitCode> {
    // From here on Ctrl-C and SIGTERM stop the start cleanly instead of killing it.
    let mut signals =
        crate::interrupt::Signals::install().context("catching SIGINT and SIGTERM")?;
    if args.branch.is_some() && args.new_branch.is_some() {
        // Allowed by the library (new branch from that branch); say what happens.
        tracing::info!("creating the new branch from --branch");
    }
    // With --workdir the user's directory is the workspace: a repository given is
    // cloned into it when it is empty; without one the source names the directory.
    let workdir = match &args.workdir {
        Some(dir) => Some(crate::workdir::checked(dir, home, args.repo.is_some())?),
        None => None,
    };
    let source = match (&args.repo, &workdir) {
        (Some(repo), _) => source_from(repo, args.branch.as_deref(), args.new_branch.as_deref())?,
        (None, Some(dir)) => {
            crate::workdir::source_of(dir, args.branch.as_deref(), args.new_branch.as_deref())?
        }
        (None, None) => return Err(UserError("give a repository or --workdir DIR".into()).into()),
    };
    let recipe = read_recipe(args.recipe.as_deref())?;

    // Fast paths: an explicit --provider lets the decision run alongside the start;
    // otherwise the provider depends on it (the `sandbox` fast path).
    feature_flags::FastPaths::parse_list(&args.beta.beta, "--beta")
        .map_err(|e| UserError(e.to_string()))?;
    let flags = crate::flags::client()?;
    let pending = flags.spawn_fast_paths(args.beta.request(), Purpose::Provision);
    let (decision, pending) = match args.provider {
        Some(_) => (None, Some(pending)),
        None => (Some(decided(pending.await)?), None),
    };
    let docker_ok = match (&args.provider, &decision) {
        (None, Some(d)) if d.paths.sandbox => docker_answers().await,
        _ => false,
    };
    let choice = choose_provider(
        args.provider,
        decision.as_ref().map(|d| d.paths).unwrap_or_default(),
        || docker_ok,
    );
    if args.provider.is_none()
        && choice.kind == ProviderKind::Local
        && decision.as_ref().is_some_and(|d| d.paths.sandbox)
    {
        eprintln!("headstart: {}", choice.reason);
    }
    let kind = choice.kind;
    let mut connect = ConnectOptions::new().force_create(args.force_create);
    if let Some(d) = &decision {
        connect = connect.env("HEADSTART_BETA", d.beta_env());
    }
    if let Some(ttl) = args.ttl {
        connect = connect.ttl(ttl);
    }
    if let Some(dir) = &workdir {
        connect = connect.workdir(dir);
    }
    let provider = make_provider(home, kind).await?;
    // Named here (not by the provider) so an interrupted start can say which it removed;
    // a workdir's sandbox is the one already using it (see workdir.rs).
    let name = match (&args.name, &workdir) {
        (Some(n), _) => sandbox_name(n)?,
        (None, Some(dir)) => crate::workdir::sandbox_name(provider.as_ref(), dir).await,
        (None, None) => SandboxName::generate(),
    };
    connect = connect.name(name.clone());
    let detach = config::detach_builds() && !args.wait_snapshot;
    let builder = Arc::new(builder_for(home, provider.clone(), kind, detach));
    let eligibility = if args.no_snapshot {
        Eligibility::none()
    } else {
        config::eligibility()?
    };
    let mut fast = FastStart::new(provider.clone(), builder.clone())
        .recipe(recipe)
        .eligibility(eligibility)
        .credentials(config::git_credentials());
    let bar = render::progress_bar(args.json);
    if let Some((_, f)) = &bar {
        fast = fast.progress(f.clone());
    }
    let cancel = sandbox_core::CancelToken::new();
    let timeout = (!args.timeout.is_zero()).then_some(args.timeout);
    if let Some(t) = timeout {
        fast = fast.limits(sandbox_core::TransferLimits::within(t));
    }
    fast = fast.cancel_token(cancel.clone());
    let (started, stopped) = settle(
        crate::interrupt::guard(
            fast.start(&source, &connect),
            &mut signals,
            &cancel,
            timeout,
        )
        .await,
        timeout,
    );
    if let Some((b, _)) = &bar {
        b.finish_and_clear();
    }
    let decision = match (decision, pending) {
        (Some(d), _) => Some(d),
        (None, Some(p)) => Some(decided(p.await)?),
        (None, None) => None,
    };
    let event = StartCompleted {
        path: started.as_ref().map_or("failed".to_owned(), |s| {
            serde_json::to_value(s.report.path)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        }),
        total: started.as_ref().map(|s| s.report.total).unwrap_or_default(),
        phases: started.as_ref().map_or_else(
            |_| Vec::new(),
            |s| {
                s.report
                    .phases
                    .iter()
                    .map(|p| (p.name.as_str().to_owned(), p.duration))
                    .collect()
            },
        ),
        fast_paths: decision.as_ref().map(|d| d.paths).unwrap_or_default(),
        provider: kind.as_str().to_owned(),
        error: started.as_ref().err().map(|e| e.kind().to_owned()),
    };
    flags.start_completed(&event, decision.as_ref());
    flags.shutdown(crate::flags::FLUSH_ON_EXIT).await;
    if let Some((why, returned)) = stopped {
        return stopped_exit(home, provider.as_ref(), &name, why, returned).await;
    }
    let started = started?;
    if args.wait_snapshot {
        if let Some(key) = &started.key {
            let waited = crate::interrupt::or_signal(builder.wait(key), &mut signals).await;
            let waited = match waited {
                Ok(w) => w,
                Err(why) => return Ok(kept_exit(why, &name)),
            };
            if let Some(res) = waited {
                match res {
                    Ok(b) => eprintln!("snapshot {} ready", b.snapshot.id),
                    Err(e) => eprintln!("snapshot build failed: {e}"),
                }
            }
        }
    }
    if args.json {
        let sb = &started.sandbox;
        let v = serde_json::json!({
            "sandbox": {"id": sb.id(), "name": sb.name(), "workspace": sb.workspace()},
            "repo": started.repository,
            "provider": provider.kind(),
            "provider_reason": choice.reason,
            "fast_paths": decision.as_ref().map(|d| d.paths.names()),
            "path": started.report.path,
            "reason": started.report.reason,
            "snapshot": started.snapshot.as_ref().zip(started.key.as_ref()).map(|(m, k)| serde_json::json!({"id": m.id, "key": k.as_str()})),
            "head": started.report.head,
            "phases": started.report.phases,
            "total_ms": (started.report.total.as_secs_f64() * 1e6).round() / 1e3,
            "received_bytes": started.report.received_bytes,
            "build": started.build,
        });
        output::print_json(&v);
    } else if !output::quiet() {
        print!("{}", render::report_text(&started.report));
        println!(
            "  sandbox: {} ({})",
            started.sandbox.name(),
            started.sandbox.workspace().display()
        );
        match &started.build {
            Some(KickOutcome::BackingOff {
                last_error,
                retry_after,
                ..
            }) => {
                println!(
                    "  snapshot: not rebuilding until {retry_after}: last build failed: {last_error}"
                )
            }
            Some(KickOutcome::Started | KickOutcome::Detached { .. }) => {
                println!("  snapshot: building in the background for next time")
            }
            _ => {}
        }
    }
    let shutdown = builder.shutdown(Duration::from_secs(600));
    if let Err(why) = crate::interrupt::or_signal(shutdown, &mut signals).await {
        return Ok(kept_exit(why, &name));
    }
    Ok(ExitCode::SUCCESS)
}

type StartResult = Result<snapshot_refresh::Started, snapshot_refresh::Error>;

/// The start's result, and why and whether it returned when it was stopped. A start
/// that completed despite the stop counts as finished; one that failed on its own
/// deadline (inside git) counts as stopped by `--timeout`.
fn settle(
    outcome: crate::interrupt::Outcome<StartResult>,
    timeout: Option<Duration>,
) -> (StartResult, Option<(crate::interrupt::Stop, bool)>) {
    use crate::interrupt::{Outcome, Stop};
    match outcome {
        Outcome::Finished(Err(e)) => match (&e, timeout) {
            (snapshot_refresh::Error::Core(sandbox_core::Error::Timeout { .. }), Some(t)) => {
                (Err(e), Some((Stop::Deadline(t), true)))
            }
            _ => (Err(e), None),
        },
        Outcome::Finished(r)
        | Outcome::Stopped {
            result: Some(r @ Ok(_)),
            ..
        } => (r, None),
        Outcome::Stopped {
            why,
            result: Some(r),
        } => (r, Some((why, true))),
        Outcome::Stopped { why, result: None } => (
            Err(sandbox_core::Error::Cancelled {
                what: "starting a sandbox".into(),
            }
            .into()),
            Some((why, false)),
        ),
    }
}

/// Says what an interrupted or timed-out start left, and exits: 130 (SIGINT), 143
/// (SIGTERM), 1 (`--timeout`). When the start did not return in time, the process
/// exits at once (a git transfer may still hold a thread the runtime would wait for).
async fn stopped_exit(
    home: &Ctx,
    provider: &dyn SandboxProvider,
    name: &SandboxName,
    why: crate::interrupt::Stop,
    returned: bool,
) -> anyhow::Result<ExitCode> {
    let left = match provider.kind() {
        "local" => local_provider(home)
            .and_then(|p| Ok(p.state(name)?))
            .unwrap_or(Some(sandbox_core::SandboxState::Creating)),
        _ => match provider.get(name).await {
            Ok(Some(_)) => Some(sandbox_core::SandboxState::Ready),
            Ok(None) => None,
            Err(_) => Some(sandbox_core::SandboxState::Creating),
        },
    };
    let what = match left {
        None => format!("removed sandbox {name}"),
        Some(sandbox_core::SandboxState::Ready) => {
            format!("sandbox {name} was ready before and is kept")
        }
        Some(_) => format!(
            "sandbox {name} is left half-created (cleanup did not finish{}); `headstart up --name {name}` or `headstart prune` removes it",
            if returned {
                String::new()
            } else {
                format!(
                    " within {}",
                    crate::interrupt::human(crate::interrupt::CLEANUP_GRACE)
                )
            }
        ),
    };
    let (code, message) = match why.exit_code() {
        Some(code) => (code, format!("headstart: interrupted; {what}")),
        None => {
            let t = match why {
                crate::interrupt::Stop::Deadline(t) => crate::interrupt::human(t),
                _ => String::new(),
            };
            (
                1,
                format!(
                    "error: headstart up did not finish within {t} (--timeout); {what}; nothing was left ready (raise --timeout, or 0 for none)"
                ),
            )
        }
    };
    eprintln!("{message}");
    if !returned {
        std::process::exit(i32::from(code));
    }
    Ok(ExitCode::from(code))
}

/// A signal after the sandbox was ready (while waiting for a snapshot build): it is
/// kept.
fn kept_exit(why: crate::interrupt::Stop, name: &SandboxName) -> ExitCode {
    eprintln!("headstart: interrupted; sandbox {name} is ready and kept");
    ExitCode::from(why.exit_code().unwrap_or(1))
}

type PendingDecision =
    Result<Result<feature_flags::Decision, feature_flags::Error>, tokio::task::JoinError>;

/// The decision of a spawned evaluation; a bad `--beta` or `HEADSTART_BETA` is bad input.
fn decided(r: PendingDecision) -> anyhow::Result<feature_flags::Decision> {
    match r {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(UserError(e.to_string()).into()),
        Err(e) => Err(anyhow::anyhow!("flag evaluation failed: {e}")),
    }
}

async fn exec(home: &Ctx, args: ExecArgs) -> anyhow::Result<ExitCode> {
    crate::exec::exec(home, args).await
}

async fn down(home: &Ctx, args: DownArgs) -> anyhow::Result<ExitCode> {
    crate::sandboxes::down(home, args).await
}

async fn ls(home: &Ctx, args: LsArgs) -> anyhow::Result<ExitCode> {
    crate::sandboxes::ls(home, args).await
}

async fn snapshot(home: &Ctx, cmd: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SnapshotCommand::Build {
            repo,
            branch,
            recipe,
            force,
            provider,
            json,
        } => {
            let kind = provider.unwrap_or(ProviderKind::Local);
            let source = source_from(&repo, branch.as_deref(), None)?;
            let recipe = read_recipe(recipe.as_deref())?;
            let p = make_provider(home, kind).await?;
            let builder = builder_for(home, p.clone(), kind, false);
            let fast = FastStart::new(p, Arc::new(builder)).recipe(recipe.clone());
            let key = fast
                .key_for(&source)
                .map_err(|e| UserError(e.to_string()))?;
            if force {
                fast.snapshot_builder().failures().clear(key.as_str());
            }
            let mut options = snapshot_refresh::RefreshOptions::new(source, key.clone(), recipe);
            options.credentials = config::git_credentials();
            match fast.snapshot_builder().kick(options, None)? {
                KickOutcome::Started => {}
                KickOutcome::AlreadyBuilding => bail!("a build of {key} is already running"),
                KickOutcome::BackingOff {
                    last_error,
                    retry_after,
                    failures,
                } => bail!(
                    "{key} failed {failures} time(s) recently ({last_error}); next try after {retry_after}, or pass --force"
                ),
                KickOutcome::Detached { .. } => {}
            }
            match fast.snapshot_builder().wait(&key).await {
                Some(Ok(r)) => {
                    if json {
                        output::print_json(&serde_json::json!({
                            "snapshot": r.snapshot,
                            "provider": kind.as_str(),
                            "key": key.as_str(),
                            "duration_ms": (r.duration.as_secs_f64() * 1e6).round() / 1e3,
                            "commands": r.commands,
                        }));
                        return Ok(ExitCode::SUCCESS);
                    }
                    output::say(format!(
                        "snapshot {} of {key} ready in {:.1} s",
                        r.snapshot.id,
                        r.duration.as_secs_f64()
                    ));
                    for c in &r.commands {
                        output::say(format!("  {:?} -> {:?} ({} ms)", c.argv, c.exit_code, c.ms));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(Err(e)) => bail!("snapshot build failed: {e}"),
                None => bail!("the build did not start"),
            }
        }
        SnapshotCommand::Ls { json, provider } => crate::snapshots::ls(home, json, provider).await,
        SnapshotCommand::Rm { id, provider, json } => {
            let p = make_provider(home, provider.unwrap_or(ProviderKind::Local)).await?;
            let id = SnapshotId::new(id)?;
            if p.snapshots().get(&id).await?.is_none() {
                return Err(sandbox_core::Error::SnapshotNotFound { id: id.to_string() }.into());
            }
            p.snapshots().delete(&id).await?;
            if json {
                output::print_json(&serde_json::json!({"removed": [id.as_str()]}));
            } else {
                output::say(format!("removed snapshot {id}"));
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCommand::Gc {
            keep,
            max_age_days,
            provider,
            json,
        } => {
            let policy = provisioners::local::GcPolicy {
                keep_newest: keep,
                max_age: Some(Duration::from_secs(max_age_days * 86_400)),
            };
            if provider == Some(ProviderKind::Docker) {
                let removed = docker_provider(home).await?.store().gc(policy).await?;
                if json {
                    output::print_json(&serde_json::json!({
                        "provider": "docker",
                        "removed": removed,
                        "kept_in_use": [],
                        "interrupted_writes_removed": 0,
                    }));
                    return Ok(ExitCode::SUCCESS);
                }
                for id in &removed {
                    output::say(format!("removed snapshot {id} (and its image)"));
                }
                output::say(format!("removed {} snapshot(s)", removed.len()));
                return Ok(ExitCode::SUCCESS);
            }
            let p = local_provider(home)?;
            let report = p.store().gc(policy).await?;
            if json {
                output::print_json(&serde_json::json!({
                    "provider": "local",
                    "removed": report.removed,
                    "kept_in_use": report.kept_leased,
                    "interrupted_writes_removed": report.stale_removed,
                }));
                return Ok(ExitCode::SUCCESS);
            }
            for id in &report.removed {
                output::say(format!("removed snapshot {id}"));
            }
            for id in &report.kept_leased {
                output::say(format!("kept snapshot {id}: a sandbox still uses it"));
            }
            output::say(format!(
                "removed {} snapshot(s) and {} interrupted write(s)",
                report.removed.len(),
                report.stale_removed
            ));
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCommand::RunJob { file, provider } => {
            let p = make_provider(home, provider).await?;
            let builder = SnapshotBuilder::new(p, home.join("state"));
            match builder.run_job_file(&file, config::git_credentials()).await {
                Ok(Some(r)) => {
                    println!(
                        "snapshot {} ready in {:.1} s",
                        r.snapshot.id,
                        r.duration.as_secs_f64()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Ok(None) => {
                    println!("another process is building this snapshot");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

async fn prune(home: &Ctx, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let mut out = output::Report::new(args.json, &["expired", "orphans", "interrupted", "busy"]);
    let p = local_provider(home)?;
    // a killed builder's recipe processes, seeds and build sandbox (only dead builds')
    let cleaned = SnapshotBuilder::new(Arc::new(p.clone()), home.join("state"))
        .cleanup_stale()
        .await?;
    let report = p.prune().await?;
    let mut removed = 0;
    out.set(
        "dead_builds",
        serde_json::json!({
            "processes_killed": cleaned.processes_killed,
            "sandboxes_removed": cleaned.sandboxes_removed,
            "seeds_removed": cleaned.seeds_removed,
            "jobs_removed": cleaned.jobs_removed,
        }),
        (!cleaned.is_empty()).then(|| {
            format!(
                "cleaned up after interrupted snapshot builds: {} process(es) killed, {} build sandbox(es), {} seed(s) and {} job file(s) removed",
                cleaned.processes_killed,
                cleaned.sandboxes_removed.len(),
                cleaned.seeds_removed,
                cleaned.jobs_removed
            )
        }),
    );
    if !cleaned.is_empty() {
        removed += 1;
    }
    for name in &report.expired {
        out.item(
            "expired",
            serde_json::json!({"name": name.as_str(), "provider": "local"}),
            format!("removed {name}: its TTL passed"),
        );
    }
    for dir in &report.orphans {
        out.item(
            "orphans",
            serde_json::json!({"workspace": dir, "provider": "local"}),
            format!("removed orphaned workspace {}", dir.display()),
        );
    }
    for name in &report.interrupted {
        out.item(
            "interrupted",
            serde_json::json!({"name": name.as_str(), "provider": "local"}),
            format!("removed {name}: its start was interrupted (the process creating it died)"),
        );
    }
    for name in &report.busy {
        out.item(
            "busy",
            serde_json::json!({"name": name.as_str(), "provider": "local"}),
            format!("left {name} alone: a start or removal of it is in progress"),
        );
    }
    out.set(
        "stale_locks",
        report.stale_locks.into(),
        (report.stale_locks > 0).then(|| {
            format!(
                "removed {} lock file(s) of sandboxes that no longer exist",
                report.stale_locks
            )
        }),
    );
    out.set(
        "interrupted_snapshot_writes",
        report.stale_snapshots.into(),
        (report.stale_snapshots > 0).then(|| {
            format!(
                "removed {} interrupted snapshot write(s)",
                report.stale_snapshots
            )
        }),
    );
    removed += report.expired.len()
        + report.orphans.len()
        + report.interrupted.len()
        + report.stale_locks
        + report.stale_snapshots;
    // Docker sandboxes too, when an engine answers (nothing to do otherwise).
    match docker_provider(home).await {
        Ok(docker) => {
            let report = docker.prune().await?;
            for name in &report.expired {
                out.item(
                    "expired",
                    serde_json::json!({"name": name.as_str(), "provider": "docker"}),
                    format!("removed {name} (docker): its TTL passed"),
                );
            }
            for name in &report.orphans {
                out.item(
                    "orphans",
                    serde_json::json!({"name": name.as_str(), "provider": "docker"}),
                    format!("removed orphaned workspace of {name} (docker): its container is gone"),
                );
            }
            for name in &report.interrupted {
                out.item(
                    "interrupted",
                    serde_json::json!({"name": name.as_str(), "provider": "docker"}),
                    format!("removed {name} (docker): its start was interrupted"),
                );
            }
            removed += report.expired.len() + report.orphans.len() + report.interrupted.len();
        }
        Err(e) => tracing::debug!(error = %e, "no Docker engine: nothing to prune there"),
    }
    out.finish(removed == 0, "nothing to prune");
    Ok(ExitCode::SUCCESS)
}
