//! `headstart exec`, `down`, `ls` and `prune`: their arguments and the rendering of
//! the app layer's outcomes ([`Headstart::exec`], `down`, `ls`, `prune`).
//!
//! `exec` runs an argv (never a shell string) like `docker exec`: `--` before the
//! command is optional, options of `exec` come before the sandbox's command. Its exit
//! status is the command's own; 127 when the program does not exist, 126 when it
//! exists but cannot run, 124 when `--timeout` killed it, 128 + N when signal N did; 2 for
//! an unknown sandbox. Without `--json` its output streams as it arrives; with
//! `--json` both streams are captured (up to 1 MiB each) into one object.
//!
//! Standard input reaches the command when it is not a terminal (piped or redirected,
//! like `ssh host cmd`), or with `-i` (a terminal too); otherwise the command reads
//! `/dev/null`. SIGINT, SIGTERM and SIGHUP are forwarded to the command (its process
//! group), which gets `sandbox_core::SIGNAL_GRACE` to end; then what is left of the
//! group is killed and `exec` exits 130, 143 or 129.
//!
//! Not here: finding, running or removing anything (the app layer).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use headstart::{
    ExecRequest, Headstart, LsOutcome, ProviderKind, PruneOutcome, Pruned, SandboxRow,
};
use sandbox_core::{ExecSignal, ExecStdin, SandboxState, SignalToken, Stream};

use super::interrupt::{Signals, Stop};
use super::{error, output, parse_provider};

/// `headstart exec ...`
#[derive(Debug, Args)]
#[command(after_help = "\
Standard input: piped or redirected input (not a terminal) is forwarded to the command \
and closed at its end, like `ssh HOST CMD`; from a terminal the command reads nothing \
(/dev/null) unless -i is given. Use `</dev/null` to give it nothing.

Signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP are forwarded to the command and what it \
started; once the command ended, or 3 seconds later, what is left of them is killed, and \
exec exits 130, 143 or 129.

Output: when the command's output cannot be written (the reader of a pipe went away, a \
full disk) the command is stopped as above; exec exits 141 for a closed pipe (as SIGPIPE \
would), else 1 with an error.")]
pub(crate) struct ExecArgs {
    /// The sandbox.
    name: String,
    /// Provider (default: wherever the sandbox is).
    #[arg(long, value_parser = parse_provider)]
    provider: Option<ProviderKind>,
    /// Kill the command after this many seconds (exit status 124).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Capture the command's output into one JSON object (exit status, duration,
    /// stdout, stderr) instead of streaming it.
    #[arg(long)]
    pub(crate) json: bool,
    /// Forward standard input to the command even when it is a terminal (input that
    /// is not a terminal always is).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// The program and its arguments (`--` before them is optional).
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    argv: Vec<String>,
}

/// `headstart down ...`
#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// The sandboxes to remove.
    #[arg(
        required_unless_present = "all",
        conflicts_with = "all",
        value_name = "NAME"
    )]
    names: Vec<String>,
    /// Remove every sandbox (of `--provider`, else of every provider that answers).
    #[arg(long)]
    all: bool,
    /// Provider (default: wherever each sandbox is).
    #[arg(long, value_parser = parse_provider)]
    provider: Option<ProviderKind>,
    /// Print one JSON object: `{"removed": [{"name", "provider"}]}`.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `headstart ls`
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Also list the starts that did not finish: `creating` (in progress) and
    /// `interrupted` (the process starting it died; `headstart prune` removes it).
    #[arg(long)]
    all: bool,
    /// Print a JSON array.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `headstart prune`
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Print one JSON object: what was removed.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The status a shell gives a program that could not be started, if `e` says so.
fn spawn_failure_status(e: &headstart::Error) -> Option<u8> {
    match e {
        headstart::Error::Core(sandbox_core::Error::CommandNotFound { .. }) => Some(127),
        headstart::Error::Core(sandbox_core::Error::CommandNotExecutable { .. }) => Some(126),
        _ => None,
    }
}

/// Runs `headstart exec`.
#[allow(clippy::print_stderr)]
pub(crate) async fn exec(app: &Headstart, args: ExecArgs) -> anyhow::Result<ExitCode> {
    // From here on SIGINT, SIGTERM and SIGHUP go to the command instead of ending
    // headstart under it.
    let mut signals = Signals::install_with_hangup().context("catching signals")?;
    let token = SignalToken::new();
    let mut req = ExecRequest::new(args.name, args.argv);
    req.provider = args.provider;
    req.timeout = args.timeout.map(Duration::from_secs);
    req.signals = Some(token.clone());
    let stdin = std::io::stdin();
    if args.interactive || !stdin.is_terminal() {
        req.stdin = Some(ExecStdin::reader(stdin));
    }
    // The first failure to write the command's output to our stdout: the command is
    // stopped (as SIGPIPE stops a writer whose reader went away) and it is reported.
    let stdout_failed: Arc<OnceLock<std::io::Error>> = Arc::new(OnceLock::new());
    if !args.json {
        let (failed, token) = (stdout_failed.clone(), token.clone());
        req.sink = Some(Arc::new(move |stream, bytes: &[u8]| {
            use std::io::Write;
            match stream {
                Stream::Stdout if failed.get().is_none() => {
                    let mut out = std::io::stdout().lock();
                    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
                        let _ = failed.set(e);
                        token.send(ExecSignal::Terminate);
                    }
                }
                Stream::Stdout => {}
                // nowhere to say that stderr failed
                Stream::Stderr => drop(std::io::stderr().write_all(bytes)),
            }
        }));
    }
    if !args.json {
        let name = req.name.clone();
        req.on_resumed = Some(Arc::new(move |r: &headstart::Resumed| {
            super::lifecycle::say_resumed(&name, Some(r));
        }));
    }
    let argv = req.argv.clone();
    let mut why: Option<Stop> = None;
    let result = {
        let running = app.exec(req);
        tokio::pin!(running);
        loop {
            tokio::select! {
                r = &mut running => break r,
                s = signals.recv() => {
                    // the first one is forwarded; the command is killed after the grace anyway
                    if why.is_none() {
                        why = Some(s);
                        if let Some(signal) = s.exec_signal() {
                            token.send(signal);
                        }
                    }
                }
            }
        }
    };
    if let Some(e) = stdout_failed.get() {
        // a reader that went away is no error (`exec NAME -- yes | head -1`): 141, the
        // status of a writer ended by SIGPIPE; anything else is said
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::from(141));
        }
        eprintln!(
            "error: cannot write the command's output to stdout: {e}; the command was stopped"
        );
        return Ok(ExitCode::FAILURE);
    }
    // a signal's status, like a shell's for a command it ended
    if let Some(code) = why.and_then(Stop::exit_code) {
        if let (true, Ok(out)) = (args.json, &result) {
            output::print_outcome(out)?;
        }
        return Ok(ExitCode::from(code));
    }
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            let Some(status) = spawn_failure_status(&e) else {
                return Err(e.into());
            };
            let e = anyhow::Error::from(e);
            if args.json {
                output::print_json(&error::error_object(&e));
            } else {
                eprintln!("headstart: {}", sandbox_core::scrub(&e.to_string()));
            }
            return Ok(ExitCode::from(status));
        }
    };
    if args.json {
        output::print_outcome(&out)?;
        return Ok(ExitCode::from(out.status));
    }
    if out.timed_out && !output::quiet() {
        eprintln!("headstart: `{}` timed out", argv.join(" "));
    }
    Ok(ExitCode::from(out.status))
}

/// Runs `headstart down`.
pub(crate) async fn down(app: &Headstart, args: DownArgs) -> anyhow::Result<ExitCode> {
    let out = app.down(&args.names, args.all, args.provider).await?;
    if args.json {
        output::print_outcome(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in &out.removed {
        output::say(format!("removed {}", r.name));
    }
    if out.removed.is_empty() {
        output::say("no sandboxes");
    }
    Ok(ExitCode::SUCCESS)
}

/// `running`, `stopped`, `hibernated`, `broken`, `creating` or `interrupted`.
fn state(row: &SandboxRow) -> String {
    if row.activity.hibernated {
        "hibernated".to_owned()
    } else {
        row.activity.status.to_owned()
    }
}

/// Runs `headstart ls`.
#[allow(clippy::print_stdout)]
pub(crate) async fn ls(app: &Headstart, args: LsArgs) -> anyhow::Result<ExitCode> {
    let out = app.ls(args.all).await?;
    if args.json {
        output::print_outcome(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if output::quiet() {
        // Names only, one a line (like `docker ps -q`): for scripts.
        for row in &out.sandboxes {
            println!("{}", row.info.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if out.sandboxes.is_empty() {
        println!("no sandboxes");
        ls_hints(&out);
        return Ok(ExitCode::SUCCESS);
    }
    let now = time::OffsetDateTime::now_utc();
    let table: Vec<Vec<String>> = out
        .sandboxes
        .iter()
        .map(|row| {
            vec![
                row.info.name.to_string(),
                row.info.provider.clone(),
                state(row),
                row.repo
                    .as_deref()
                    .map_or("-".to_owned(), output::short_repo),
                row.branch.clone().unwrap_or_else(|| "-".to_owned()),
                row.info
                    .created_at
                    .map_or("-".to_owned(), |t| output::ago(t, now)),
                row.activity
                    .last_activity
                    .map_or("-".to_owned(), |t| output::ago(t, now)),
                row.activity
                    .idle_deadline
                    .map_or("-".to_owned(), |t| output::until(t, now)),
            ]
        })
        .collect();
    output::print_table(
        &[
            "NAME", "PROVIDER", "STATE", "REPO", "BRANCH", "AGE", "USED", "IDLE",
        ],
        &table,
    );
    ls_hints(&out);
    Ok(ExitCode::SUCCESS)
}

/// The `hint:` lines under a listing: how to repair the interrupted starts it shows,
/// or that unfinished starts were left out (and how to see or remove them).
#[allow(clippy::print_stderr)]
fn ls_hints(out: &LsOutcome) {
    for line in ls_hint_lines(out) {
        eprintln!("hint: {line}");
    }
}

fn ls_hint_lines(out: &LsOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    let shown: Vec<String> = out
        .sandboxes
        .iter()
        .filter(|r| r.info.state == SandboxState::Interrupted)
        .map(|r| r.info.name.to_string())
        .collect();
    if !shown.is_empty() {
        let (starts, was, its, them) = if shown.len() == 1 {
            ("start", "was", "its process is", "it")
        } else {
            ("starts", "were", "their processes are", "them")
        };
        lines.push(format!(
            "the {starts} of {} {was} interrupted ({its} gone): `headstart prune` removes {them}, as does `headstart down {}`",
            shown.join(", "),
            shown.join(" ")
        ));
    }
    let interrupted: Vec<String> = out
        .hidden
        .iter()
        .filter(|i| i.state == SandboxState::Interrupted)
        .map(|i| i.name.to_string())
        .collect();
    if !interrupted.is_empty() {
        lines.push(format!(
            "not shown: {} interrupted start(s) ({}); `headstart ls --all` lists them, `headstart prune` removes them",
            interrupted.len(),
            interrupted.join(", ")
        ));
    }
    let creating = out.hidden.len() - interrupted.len();
    if creating > 0 {
        lines.push(format!(
            "not shown: {creating} start(s) in progress; `headstart ls --all` lists them"
        ));
    }
    lines
}

/// Runs `headstart prune`.
pub(crate) async fn prune(app: &Headstart, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let out = app.prune().await?;
    if args.json {
        output::print_outcome(&out)?;
    } else {
        for line in prune_lines(&out) {
            output::say(line);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What prune did, in the order it did it: dead builds, then the local provider's
/// sandboxes, locks and snapshot writes, then Docker's.
fn prune_lines(out: &PruneOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    let d = &out.dead_builds;
    if !d.is_empty() {
        lines.push(format!(
            "cleaned up after interrupted snapshot builds: {} process(es) killed, {} build sandbox(es), {} seed(s) and {} job file(s) removed",
            d.processes_killed,
            d.sandboxes_removed.len(),
            d.seeds_removed,
            d.jobs_removed
        ));
    }
    let name = |p: &Pruned| p.name.as_ref().map_or_else(String::new, |n| n.to_string());
    let of = |list: &[Pruned], provider: &str| -> Vec<Pruned> {
        list.iter()
            .filter(|p| p.provider == provider)
            .cloned()
            .collect()
    };
    for p in of(&out.expired, "local") {
        lines.push(format!("removed {}: its TTL passed", name(&p)));
    }
    for p in of(&out.orphans, "local") {
        lines.push(match (&p.name, &p.workspace) {
            (Some(_), _) => format!(
                "removed {}: its workspace was removed from outside headstart",
                name(&p)
            ),
            (None, dir) => format!(
                "removed orphaned workspace {}",
                dir.as_deref().unwrap_or(std::path::Path::new("")).display()
            ),
        });
    }
    for p in of(&out.interrupted, "local") {
        lines.push(format!(
            "removed {}: its start was interrupted (the process creating it died)",
            name(&p)
        ));
    }
    for p in &out.busy {
        lines.push(format!(
            "left {} alone: a start or removal of it is in progress",
            name(p)
        ));
    }
    if out.stale_locks > 0 {
        lines.push(format!(
            "removed {} lock file(s) of sandboxes that no longer exist",
            out.stale_locks
        ));
    }
    if out.interrupted_snapshot_writes > 0 {
        lines.push(format!(
            "removed {} interrupted snapshot write(s)",
            out.interrupted_snapshot_writes
        ));
    }
    for p in of(&out.expired, "docker") {
        lines.push(format!("removed {} (docker): its TTL passed", name(&p)));
    }
    for p in of(&out.orphans, "docker") {
        lines.push(format!(
            "removed {} (docker): its container or its workspace was gone",
            name(&p)
        ));
    }
    for p in of(&out.interrupted, "docker") {
        lines.push(format!(
            "removed {} (docker): its start was interrupted",
            name(&p)
        ));
    }
    if out.is_empty() {
        lines.push("nothing to prune".to_owned());
    }
    lines
}
