//! Running an argv in a local workspace: no shell, its own process group, streamed and
//! capped output, a timeout that kills the whole group. A command is done when it
//! exits: background processes it leaves behind keep running and their later output
//! is not captured.
//!
//! This is not isolation: the command runs as the calling user, on the host, with the
//! host's environment plus the sandbox's and the request's variables.
//!
//! Secrets are not inherited: variables of the host environment that carry a secret
//! ([`sandbox_core::scrub::is_secret_var`]: the git token variables, registered secret
//! variables, any value containing a registered secret) are removed, because the
//! command runs repository code. A caller that wants a command to have one passes it
//! explicitly (the sandbox's or the request's environment).
//!
//! A command whose run is cancelled (its future dropped: a build deadline, a caller
//! giving up) has its whole process group killed, like one that times out. A signal
//! sent through the request's [`SignalToken`](sandbox_core::SignalToken) goes to the
//! whole group; what is left of it once the command ended, or after [`SIGNAL_GRACE`],
//! is killed.
//!
//! Standard input is the request's [`ExecStdin`](sandbox_core::ExecStdin) through a
//! pipe (closed at its end), else `/dev/null`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sandbox_core::{Error, ExecOutput, ExecRequest, OutputSink, Result, SIGNAL_GRACE, Stream};

use crate::exec_io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long output is still read after the command exited (background processes it
/// started may hold the pipes open indefinitely).
const AFTER_EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Captured output of one stream, cut at a limit.
struct Capture {
    buf: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
            truncated: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.buf.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    capture: &mut Capture,
    stream: Stream,
    sink: Option<&OutputSink>,
) -> std::io::Result<()> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        if let Some(sink) = sink {
            sink(stream, &chunk[..n]);
        }
        capture.push(&chunk[..n]);
    }
}

/// The process groups of commands running in one sandbox handle (for `stop`).
pub(crate) type Running = Arc<Mutex<HashSet<i32>>>;

/// Kills every process group in `running`.
pub(crate) fn kill_all(running: &Running) {
    let groups: Vec<i32> = running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .drain()
        .collect();
    for pgid in groups {
        kill_group(pgid);
    }
}

fn kill_group(pgid: i32) {
    signal_group(pgid, rustix::process::Signal::KILL);
}

fn signal_group(pgid: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Resolves a request's `cwd` inside `workspace` (relative, no `..`).
pub(crate) fn resolve_cwd(workspace: &Path, cwd: Option<&Path>) -> Result<std::path::PathBuf> {
    let Some(cwd) = cwd else {
        return Ok(workspace.to_path_buf());
    };
    if cwd
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Error::InvalidOptions(format!(
            "the working directory `{}` must be relative to the workspace, without `..`",
            cwd.display()
        )));
    }
    Ok(workspace.join(cwd))
}

/// Runs `request` with `cwd` as working directory and `base_env` under the request's
/// environment.
pub(crate) async fn run(
    request: &ExecRequest,
    cwd: &Path,
    base_env: &BTreeMap<String, String>,
    running: &Running,
) -> Result<ExecOutput> {
    let argv = request.argv();
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&argv[0]);
    for (name, value) in std::env::vars_os() {
        if let Some(name) = name.to_str() {
            if sandbox_core::scrub::is_secret_var(name, &value.to_string_lossy()) {
                cmd.env_remove(name);
            }
        }
    }
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .envs(base_env)
        .envs(&request.env)
        .stdin(if request.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if !cwd.is_dir() => Error::io(
            format!("the working directory {} does not exist", cwd.display()),
            e,
        ),
        std::io::ErrorKind::NotFound => Error::CommandNotFound {
            program: argv[0].escape_debug().to_string(),
        },
        std::io::ErrorKind::PermissionDenied => Error::CommandNotExecutable {
            program: argv[0].escape_debug().to_string(),
            reason: "permission denied (not executable, or a directory)".into(),
        },
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => Error::CommandNotExecutable {
            program: argv[0].escape_debug().to_string(),
            reason: "exec format error (no `#!` line and not a binary this system runs)".into(),
        },
        _ => Error::io(format!("starting `{}`", argv[0].escape_debug()), e),
    })?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    if let Some(pgid) = pgid {
        running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(pgid);
    }
    // Until the command is done, dropping this future kills its process group.
    let mut guard = GroupGuard {
        pgid,
        running: running.clone(),
        done: false,
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Error::provider(
            "local",
            "the command's output pipes are missing",
        ));
    };
    // the input is fed while the command runs, and no longer
    let _feeder = match (&request.stdin, child.stdin.take()) {
        (Some(stdin), Some(pipe)) => Some(AbortOnDrop(tokio::spawn(exec_io::feed(
            exec_io::stdin_chunks(stdin),
            pipe,
            false,
        )))),
        _ => None,
    };
    let mut out = Capture::new(request.output_limit);
    let mut err = Capture::new(request.output_limit);
    let sink = request.sink.as_ref();
    let finished = {
        let body = async {
            let pumps = async {
                let (a, b) = tokio::join!(
                    pump(stdout, &mut out, Stream::Stdout, sink),
                    pump(stderr, &mut err, Stream::Stderr, sink)
                );
                a.and(b)
            };
            tokio::pin!(pumps);
            let wait = child.wait();
            tokio::pin!(wait);
            tokio::select! {
                pumped = &mut pumps => {
                    pumped?;
                    wait.await
                }
                status = &mut wait => {
                    // what is still in the pipes arrives at once; a background process
                    // that keeps them open does not hold the command's result hostage
                    if let Ok(pumped) = tokio::time::timeout(AFTER_EXIT_GRACE, &mut pumps).await {
                        pumped?;
                    } else {
                        tracing::debug!("output pipes still open after the command exited (background processes); not waiting for them");
                    }
                    status
                }
            }
        };
        let all = async {
            tokio::pin!(body);
            tokio::select! {
                r = &mut body => r,
                signal = exec_io::signalled(request.signals.as_ref()) => {
                    if let Some(pgid) = pgid {
                        signal_group(pgid, exec_io::os_signal(signal));
                    }
                    let ended = tokio::time::timeout(SIGNAL_GRACE, &mut body).await;
                    // what is left of the group (the command, or what it started and
                    // that ignores the signal, like a shell's background jobs SIGINT)
                    if let Some(pgid) = pgid {
                        kill_group(pgid);
                    }
                    match ended {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::debug!(?signal, "the command outlived its grace after the signal; killed it");
                            body.await
                        }
                    }
                }
            }
        };
        match request.timeout {
            Some(t) => tokio::time::timeout(t, all).await.ok(),
            None => Some(all.await),
        }
    };
    let result = match finished {
        Some(Ok(status)) => Ok(ExecOutput {
            // a signal's death as a shell (and `docker exec`) reports it: 128 + N
            exit_code: status.code().or_else(|| {
                std::os::unix::process::ExitStatusExt::signal(&status).map(|n| 128 + n)
            }),
            timed_out: false,
            stdout: out.buf,
            stderr: err.buf,
            truncated: out.truncated || err.truncated,
            duration: started.elapsed(),
        }),
        Some(Err(e)) => Err(Error::io(
            format!("running `{}`", argv[0].escape_debug()),
            e,
        )),
        None => {
            if let Some(pgid) = pgid {
                kill_group(pgid);
            }
            let _ = child.kill().await;
            Ok(ExecOutput {
                exit_code: None,
                timed_out: true,
                stdout: out.buf,
                stderr: err.buf,
                truncated: out.truncated || err.truncated,
                duration: started.elapsed(),
            })
        }
    };
    guard.done = true;
    result
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Forgets a command's process group when its run ends, and kills the group when the
/// run is dropped before it finished (the direct child alone would be killed by
/// `kill_on_drop`; what it started would not).
struct GroupGuard {
    pgid: Option<i32>,
    running: Running,
    done: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else { return };
        let tracked = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&pgid);
        // not tracked any more: `stop` already killed it
        if !self.done && tracked {
            kill_group(pgid);
        }
    }
}
