//! `headstart up`: its arguments, the signals that stop it (SIGINT and SIGTERM cancel
//! the start's token), and the rendering of [`headstart::UpOutcome`] or of what a
//! stopped start left. The start itself is [`headstart::Headstart::up`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use headstart::{
    CredentialsMode, Error, Headstart, Notice, ProviderKind, Stopped, UpOutcome, UpRequest, Waited,
};
use sandbox_core::{CancelToken, SandboxState};
use snapshot_refresh::KickOutcome;

use super::interrupt::{self, Signals, Stop};
use super::{output, parse_duration, parse_provider, render};

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
    /// Share snapshots through this OCI registry, `HOST[:PORT]/REPOSITORY` (default:
    /// HEADSTART_REGISTRY): on a local miss the start pulls the key's snapshot from
    /// it, and a build pushes there. Local provider.
    #[arg(long, value_name = "REF")]
    pub(crate) registry: Option<String>,
    /// Container image of the sandbox (Docker; default: HEADSTART_IMAGE, else the
    /// recipe's base_image, else headstart's base image).
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Git identity of the sandbox's repository, `"Name <email>"` (written into its
    /// .git/config, never your global config; default: HEADSTART_GIT_USER).
    #[arg(long, value_name = "NAME <EMAIL>")]
    git_user: Option<String>,
    /// Publish a sandbox TCP port on the host's loopback: `3000` (a random host port)
    /// or `8080:3000`; repeatable. Docker only; local sandboxes bind host ports directly.
    #[arg(long = "port", value_name = "[HOST:]PORT", value_parser = super::ports::parse_port)]
    ports: Vec<sandbox_core::PortRequest>,
    /// Remove the sandbox after this long (`headstart prune`), e.g. `90m`, `2h`, `1d`.
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// Stop the sandbox after this long with no `exec`, `ports` or `up` of it (the host
    /// daemon does; the next `exec` resumes it), e.g. `30m`, `3s`; `0` = never.
    /// Default: the recipe's "idle_timeout", else HEADSTART_IDLE_TIMEOUT, else what an
    /// earlier start of the name recorded.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    idle_timeout: Option<Duration>,
    /// Hibernate the (Docker) sandbox after this long without activity: its container
    /// is committed to an image and removed (`headstart hibernate`); `0` = never.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    hibernate_after: Option<Duration>,
    /// Setup recipe (JSON: {"commands":[{"argv":[...],"timeout":secs}],"base_image":..,
    /// "after_start":[{"argv":[...]}]}; after_start hooks run on every start).
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
    /// How the sandbox's git reaches the repository: `broker` (a capability URL of the
    /// credential daemon; the token stays on the host) or `none`. Default: `broker` for
    /// --provider docker when a git token is configured, else `none`.
    #[arg(long, value_parser = parse_credentials, value_name = "MODE")]
    credentials: Option<CredentialsMode>,
    /// A branch pattern the broker grant may also push (`feature/*`); repeatable. By
    /// default only the --new-branch (or a non-default --branch) may be pushed.
    #[arg(long, value_name = "PATTERN")]
    allow_push: Vec<String>,
    #[command(flatten)]
    beta: super::flags::BetaArgs,
}

fn parse_credentials(s: &str) -> Result<CredentialsMode, String> {
    match s {
        "broker" => Ok(CredentialsMode::Broker),
        "none" => Ok(CredentialsMode::None),
        other => Err(format!(
            "unknown credentials mode `{other}`; use broker or none"
        )),
    }
}

/// Runs `headstart up`.
pub(crate) async fn up(app: &Headstart, args: UpArgs) -> anyhow::Result<ExitCode> {
    // From here on Ctrl-C and SIGTERM stop the start cleanly instead of killing it.
    let mut signals = Signals::install().context("catching SIGINT and SIGTERM")?;
    let bar = render::progress_bar(args.json);
    let cancel = CancelToken::new();
    let abandon = CancelToken::new();
    let mut req = UpRequest::default();
    req.repo = args.repo;
    req.branch = args.branch;
    req.new_branch = args.new_branch;
    req.name = args.name;
    req.force_create = args.force_create;
    req.provider = args.provider;
    req.workdir = args.workdir;
    req.no_snapshot = args.no_snapshot;
    req.image = args.image;
    req.git_user = args.git_user;
    req.ports = args.ports;
    req.ttl = args.ttl;
    req.idle_timeout = args.idle_timeout;
    req.hibernate_after = args.hibernate_after;
    req.recipe_file = args.recipe;
    req.wait_snapshot = args.wait_snapshot;
    req.timeout = (!args.timeout.is_zero()).then_some(args.timeout);
    req.beta = args.beta.request();
    req.credentials = args.credentials;
    req.allow_push = args.allow_push;
    req.grant_renew_hint =
        Some("start the sandbox again with `headstart up --credentials broker`".into());
    req.grant_register_hint = Some(Arc::new(|name, repo| {
        format!("run `headstart up {repo} --name {name}` to re-register credentials")
    }));
    req.cancel = cancel.clone();
    req.abandon = abandon.clone();
    req.progress = bar.as_ref().map(|(_, f)| f.clone());
    req.notify = Some(Arc::new(|n: &Notice| match n {
        Notice::ProviderFallback(reason) => eprintln!("headstart: {reason}"),
        Notice::SnapshotReady(id) => eprintln!("snapshot {id} ready"),
        Notice::SnapshotFailed(e) => eprintln!("snapshot build failed: {e}"),
        _ => {}
    }));

    // The first signal cancels the start (it cleans up); a second stops waiting.
    let mut why: Option<Stop> = None;
    let result = {
        let started = app.up(req);
        tokio::pin!(started);
        loop {
            tokio::select! {
                r = &mut started => break r,
                s = signals.recv() => {
                    if why.is_none() {
                        why = Some(s);
                        cancel.cancel();
                    } else {
                        abandon.cancel();
                    }
                }
            }
        }
    };
    if let Some((b, _)) = &bar {
        b.finish_and_clear();
    }
    let outcome = match result {
        Ok(o) => o,
        Err(Error::Stopped(s)) => return stopped_exit(&s, why, args.json),
        Err(e) => return Err(e.into()),
    };
    if outcome.interrupted {
        return Ok(kept_exit(why.unwrap_or(Stop::Interrupt), &outcome));
    }
    if args.json {
        output::print_outcome(&outcome)?;
    } else if !output::quiet() {
        print_text(&outcome);
    }
    let shutdown = outcome.builds.wait(Duration::from_secs(600));
    if let Err(why) = interrupt::or_signal(shutdown, &mut signals).await {
        return Ok(kept_exit(why, &outcome));
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn print_text(outcome: &UpOutcome) {
    if let Some(r) = &outcome.resumed {
        println!(
            "resumed {} ({:?}, {:.0} ms)",
            outcome.sandbox.name,
            r.from,
            r.duration.as_secs_f64() * 1e3
        );
    }
    print!("{}", render::report_text(&outcome.report));
    println!(
        "  sandbox: {} ({})",
        outcome.sandbox.name,
        outcome.sandbox.workspace.display()
    );
    if let Some(g) = &outcome.grant {
        let push = if g.push.is_empty() {
            "read-only".to_owned()
        } else {
            format!("push {}", g.push.join(", "))
        };
        println!(
            "  git: through the credential broker ({}; {push}; until {})",
            g.repository, g.expires_at
        );
    }
    for p in &outcome.ports {
        println!("  port: {}/tcp -> {}", p.container, p.host_address);
    }
    match &outcome.git_identity {
        Some(id) => println!("  git identity: {id}"),
        // a container has no global git config: its commits would be refused
        None if outcome.provider == "docker" => eprintln!(
            "hint: commits in this sandbox need an identity: start it with --git-user \
             'Name <email>' (or set HEADSTART_GIT_USER)"
        ),
        None => {}
    }
    match &outcome.waited {
        Some(Waited::Ready { id }) => {
            println!("  snapshot: {id} built and ready");
            return;
        }
        Some(Waited::Failed { error }) => {
            println!("  snapshot: the build failed: {error}");
            return;
        }
        _ => {}
    }
    match &outcome.build {
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

/// Says what an interrupted or timed-out start left (with `--json`, as the error
/// object on stdout: kind `cancelled` or `timeout`), and exits: 130 (SIGINT), 143
/// (SIGTERM), 1 (`--timeout`). When the start did not return in time, the process
/// exits at once (a git transfer may still hold a thread the runtime would wait for).
#[allow(clippy::print_stderr)]
fn stopped_exit(s: &Stopped, signal: Option<Stop>, json: bool) -> anyhow::Result<ExitCode> {
    let name = &s.name;
    let what = match s.left {
        None => format!("removed sandbox {name}"),
        Some(SandboxState::Ready) => format!("sandbox {name} was ready before and is kept"),
        Some(_) => format!(
            "sandbox {name} is left half-created (cleanup did not finish{}); `headstart up --name {name}` or `headstart prune` removes it",
            if s.returned {
                String::new()
            } else {
                format!(" within {}", interrupt::human(headstart::CLEANUP_GRACE))
            }
        ),
    };
    let why = match (s.deadline, signal) {
        (Some(t), _) => Stop::Deadline(t),
        (None, Some(sig)) => sig,
        (None, None) => Stop::Interrupt,
    };
    let (code, kind, message) = match why.exit_code() {
        Some(code) => (code, "cancelled", format!("interrupted; {what}")),
        None => {
            let t = match why {
                Stop::Deadline(t) => interrupt::human(t),
                _ => String::new(),
            };
            (
                1,
                "timeout",
                format!(
                    "headstart up did not finish within {t} (--timeout); {what}; nothing was left ready (raise --timeout, or 0 for none)"
                ),
            )
        }
    };
    if json {
        output::print_json(&super::error::error_value(kind, &message));
    } else if kind == "timeout" {
        eprintln!("error: {message}");
    } else {
        eprintln!("headstart: {message}");
    }
    if !s.returned {
        std::process::exit(i32::from(code));
    }
    Ok(ExitCode::from(code))
}

/// A signal after the sandbox was ready (while waiting for a snapshot build): it is
/// kept.
#[allow(clippy::print_stderr)]
fn kept_exit(why: Stop, outcome: &UpOutcome) -> ExitCode {
    eprintln!(
        "headstart: interrupted; sandbox {} is ready and kept",
        outcome.sandbox.name
    );
    ExitCode::from(why.exit_code().unwrap_or(1))
}
