//! Running an argv in a sandbox's container through the engine's exec API.
//!
//! Never a shell string: the argv goes to the engine as is. Output streams to the
//! request's sink as it arrives and is captured up to the request's limit. A timeout
//! kills the process (from the host, when this process can see it) and reports
//! `timed_out`. Standard input is the request's [`ExecStdin`](sandbox_core::ExecStdin)
//! attached to the exec (half-closed at its end so the program sees end of file),
//! else none. A signal sent through the request's
//! [`SignalToken`](sandbox_core::SignalToken) goes to the exec'd process's group (the
//! runtime makes it a session leader, so this is it and what it started), from the
//! host like the timeout's kill; what is left of the group once it ended, or after
//! [`SIGNAL_GRACE`], is killed. An
//! engine whose processes this host cannot see (a remote or virtualised engine) gets
//! neither: the command runs on until it ends or the container stops, and a warning
//! says so.

use std::path::{Component, Path};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use sandbox_core::{Error, ExecOutput, ExecRequest, Result, SIGNAL_GRACE, Stream};

use crate::exec_io;

use super::engine::{engine_error, is_conflict};
use super::{PROVIDER, WORKSPACE_MOUNT};

/// The working directory in the container for a request's `cwd` (relative to the
/// workspace; `..` and absolute paths are refused).
pub(crate) fn container_cwd(cwd: Option<&Path>) -> Result<String> {
    let Some(cwd) = cwd else {
        return Ok(WORKSPACE_MOUNT.to_owned());
    };
    let mut out = String::from(WORKSPACE_MOUNT);
    for c in cwd.components() {
        match c {
            Component::Normal(part) => {
                let part = part.to_str().ok_or_else(|| {
                    Error::InvalidOptions(format!("cwd {} is not UTF-8", cwd.display()))
                })?;
                out.push('/');
                out.push_str(part);
            }
            Component::CurDir => {}
            _ => {
                return Err(Error::InvalidOptions(format!(
                    "cwd `{}` must be a relative path inside the workspace (no `..`, not absolute)",
                    cwd.display()
                )));
            }
        }
    }
    Ok(out)
}

struct Capture {
    limit: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

impl Capture {
    fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let buf = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let room = self.limit.saturating_sub(buf.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// The exec of `request`: its argv, environment, working directory and terminal, with
/// stdout and stderr attached (and stdin when `stdin`).
fn exec_options(request: &ExecRequest, stdin: bool) -> Result<CreateExecOptions<String>> {
    let env: Vec<String> = request
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Ok(CreateExecOptions::<String> {
        attach_stdin: Some(stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(request.tty),
        env: if env.is_empty() { None } else { Some(env) },
        cmd: Some(request.argv().to_vec()),
        working_dir: Some(container_cwd(request.cwd.as_deref())?),
        ..Default::default()
    })
}

/// Runs `request` in `container`.
pub(crate) async fn run(
    docker: &Docker,
    container: &str,
    request: &ExecRequest,
) -> Result<ExecOutput> {
    let started = Instant::now();
    let create = exec_options(request, request.stdin.is_some())?;
    let program = request.argv().first().cloned().unwrap_or_default();
    let exec = docker.create_exec(container, create).await.map_err(|e| {
        if is_conflict(&e) {
            Error::Provider {
                provider: PROVIDER,
                message: format!(
                    "cannot run `{program}`: container {container} is not running (the sandbox \
                     was stopped); connect to it by name again to start it"
                ),
                source: Some(Box::new(e)),
            }
        } else {
            engine_error(format!("starting `{program}` in container {container}"), e)
        }
    })?;
    let start = StartExecOptions {
        detach: false,
        tty: request.tty,
        output_capacity: None,
    };
    let started_exec = docker
        .start_exec(&exec.id, Some(start))
        .await
        .map_err(|e| engine_error(format!("starting `{program}` in container {container}"), e))?;
    let StartExecResults::Attached { mut output, input } = started_exec else {
        return Err(Error::provider(
            PROVIDER,
            "the engine detached an exec that asked to attach",
        ));
    };
    // with a terminal the input stays open (the engine would end the session)
    let feeder = request.stdin.as_ref().map(|stdin| {
        tokio::spawn(exec_io::feed(
            exec_io::stdin_chunks(stdin),
            input,
            request.tty,
        ))
    });
    let mut capture = Capture {
        limit: request.output_limit,
        stdout: Vec::new(),
        stderr: Vec::new(),
        truncated: false,
    };
    let pump = async {
        while let Some(item) = output.next().await {
            let (stream, bytes) = match item {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    (Stream::Stdout, message)
                }
                Ok(LogOutput::StdErr { message }) => (Stream::Stderr, message),
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(e) => {
                    return Err(engine_error(
                        format!("reading the output of `{program}`"),
                        e,
                    ));
                }
            };
            if let Some(sink) = &request.sink {
                sink(stream, &bytes);
            }
            capture.push(stream, &bytes);
        }
        Ok(())
    };
    let ran = async {
        tokio::pin!(pump);
        tokio::select! {
            r = &mut pump => r,
            signal = exec_io::signalled(request.signals.as_ref()) => {
                let pid = exec_host_pid(docker, &exec.id, container).await;
                if let Some(pid) = pid {
                    signal_group(pid, exec_io::os_signal(signal), container);
                }
                let ended = tokio::time::timeout(SIGNAL_GRACE, &mut pump).await;
                // what is left of the group (the command, or what it started and that
                // ignores the signal, like a shell's background jobs SIGINT)
                if let Some(pid) = pid {
                    signal_group(pid, rustix::process::Signal::KILL, container);
                }
                if let Ok(r) = ended {
                    return r;
                }
                tracing::debug!(?signal, "the command outlived its grace after the signal; killed it");
                // its output ends with it; an engine that does not end it is not waited for
                let _ = tokio::time::timeout(SIGNAL_GRACE, &mut pump).await;
                Ok(())
            }
        }
    };
    let timed_out = pump_within(request.timeout, ran).await;
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    let timed_out = timed_out?;
    let exit_code = if timed_out {
        kill_exec(docker, &exec.id, container, rustix::process::Signal::KILL).await;
        None
    } else {
        exit_code(docker, &exec.id).await?
    };
    if let Some(e) = spawn_failure(exit_code, &capture, &program) {
        return Err(e);
    }
    Ok(ExecOutput {
        exit_code,
        timed_out,
        stdout: capture.stdout,
        stderr: capture.stderr,
        truncated: capture.truncated,
        duration: started.elapsed(),
    })
}

/// The engine reports a program that could not be started as exit code 126 with the
/// runtime's message as output ("OCI runtime exec failed: ... executable file not
/// found in $PATH"), whatever the reason: the typed error a local exec gives, so
/// callers can tell "not found" (a shell's 127) from "cannot run" (126).
fn spawn_failure(exit_code: Option<i32>, capture: &Capture, program: &str) -> Option<Error> {
    if exit_code != Some(126) {
        return None;
    }
    let text = String::from_utf8_lossy(if capture.stdout.is_empty() {
        &capture.stderr
    } else {
        &capture.stdout
    });
    let text = text.trim();
    if !text.starts_with("OCI runtime exec failed") {
        return None;
    }
    let program = program.escape_debug().to_string();
    if text.contains("executable file not found") || text.contains("no such file or directory") {
        Some(Error::CommandNotFound { program })
    } else {
        let reason = if text.contains("permission denied") {
            "permission denied (not executable, or a directory)".to_owned()
        } else if text.contains("exec format error") {
            "exec format error (no `#!` line and not a binary this system runs)".to_owned()
        } else {
            // e.g. a user the image does not have: the runtime's own words
            text.lines().next().unwrap_or(text).to_owned()
        };
        Some(Error::CommandNotExecutable { program, reason })
    }
}

/// Runs `pump` to its end, or until `limit` passes: `Ok(true)` when it timed out.
async fn pump_within(
    limit: Option<Duration>,
    pump: impl std::future::Future<Output = Result<()>>,
) -> Result<bool> {
    match limit {
        Some(limit) => match tokio::time::timeout(limit, pump).await {
            Ok(r) => r.map(|()| false),
            Err(_) => Ok(true),
        },
        None => pump.await.map(|()| false),
    }
}

async fn exit_code(docker: &Docker, exec_id: &str) -> Result<Option<i32>> {
    // The stream ends when the process closes its output; the engine may need a moment
    // to record the exit.
    for _ in 0..200 {
        let info = docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| engine_error("reading the exit status", e))?;
        if info.running != Some(true) {
            return Ok(info.exit_code.and_then(|c| i32::try_from(c).ok()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(None)
}

/// Sends `signal` to an exec's process group (a timeout's KILL).
async fn kill_exec(
    docker: &Docker,
    exec_id: &str,
    container: &str,
    signal: rustix::process::Signal,
) {
    if let Some(pid) = exec_host_pid(docker, exec_id, container).await {
        signal_group(pid, signal, container);
    }
}

/// The host pid of an exec's process, when it runs and this host sees it in the
/// container's cgroup. The engine has no API to signal an exec, so it is signalled
/// from the host; `None` (with a warning) when that cannot be done.
async fn exec_host_pid(
    docker: &Docker,
    exec_id: &str,
    container: &str,
) -> Option<rustix::process::Pid> {
    // A loaded engine may answer late or not yet report the process: ask again for
    // about a second before giving up.
    for attempt in 0..20 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let info = match docker.inspect_exec(exec_id).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(%e, attempt, "inspecting the exec to signal it failed");
                continue;
            }
        };
        if info.running == Some(false) {
            return None;
        }
        let container_id = info.container_id.unwrap_or_else(|| container.to_owned());
        let Some(pid) = info.pid.filter(|p| *p > 1) else {
            continue;
        };
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if cgroup.contains(&container_id) {
            return i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw);
        }
        tracing::debug!(
            pid,
            attempt,
            "the exec's process is not in the container's cgroup (yet)"
        );
    }
    tracing::warn!(%container, "the command is not visible from this host, so it cannot be signalled; it keeps running until it ends or the container stops");
    None
}

/// Sends `signal` to the group `pid` leads (the runtime makes an exec'd process a
/// session leader), or to `pid` alone when it leads none.
fn signal_group(pid: rustix::process::Pid, signal: rustix::process::Signal, container: &str) {
    if rustix::process::kill_process_group(pid, signal).is_err() {
        if let Err(e) = rustix::process::kill_process(pid, signal) {
            if e != rustix::io::Errno::SRCH {
                tracing::warn!(%e, %container, ?signal, "could not signal the command");
            }
        }
    }
}

/// Runs `request` with its standard input fed from `stdin` and its output (both
/// streams; with a terminal they are one) written to `output`, for interactive agents.
/// With `request.tty` the program gets a terminal of `size` (columns, rows). Returns
/// the exit code (`None` when killed or timed out).
pub(crate) async fn run_interactive<R, W>(
    docker: &Docker,
    container: &str,
    request: &ExecRequest,
    size: Option<(u16, u16)>,
    mut stdin: R,
    mut output_to: W,
) -> Result<Option<i32>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    use tokio::io::AsyncWriteExt;

    let create = exec_options(request, true)?;
    let program = request.argv().first().cloned().unwrap_or_default();
    let exec = docker
        .create_exec(container, create)
        .await
        .map_err(|e| engine_error(format!("starting `{program}` in container {container}"), e))?;
    let start = StartExecOptions {
        detach: false,
        tty: request.tty,
        output_capacity: None,
    };
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = docker
        .start_exec(&exec.id, Some(start))
        .await
        .map_err(|e| engine_error(format!("starting `{program}` in container {container}"), e))?
    else {
        return Err(Error::provider(
            PROVIDER,
            "the engine detached an exec that asked to attach",
        ));
    };
    if let (true, Some((columns, rows))) = (request.tty, size) {
        let resize = bollard::exec::ResizeExecOptions {
            width: columns,
            height: rows,
        };
        if let Err(e) = docker.resize_exec(&exec.id, resize).await {
            tracing::debug!(%e, "could not size the terminal");
        }
    }
    // Input until it ends. Without a terminal, then half-close so the program sees
    // end of file; with one, keep the connection open (the engine ends a terminal
    // session's output when its input closes; a user ends input with ^D instead).
    let tty = request.tty;
    let feeder = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut stdin, &mut input).await;
        if tty {
            let _ = input.flush().await;
            std::future::pending::<()>().await;
        }
        let _ = input.shutdown().await;
    });
    let pump = async {
        while let Some(item) = output.next().await {
            let bytes = match item {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message })
                | Ok(LogOutput::StdErr { message }) => message,
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(e) => {
                    return Err(engine_error(
                        format!("reading the output of `{program}`"),
                        e,
                    ));
                }
            };
            if let Some(sink) = &request.sink {
                sink(Stream::Stdout, &bytes);
            }
            output_to
                .write_all(&bytes)
                .await
                .map_err(|e| Error::io(format!("writing the output of `{program}`"), e))?;
        }
        output_to
            .flush()
            .await
            .map_err(|e| Error::io("flushing output", e))
    };
    let timed_out = pump_within(request.timeout, pump).await?;
    feeder.abort();
    if timed_out {
        kill_exec(docker, &exec.id, container, rustix::process::Signal::KILL).await;
        return Ok(None);
    }
    exit_code(docker, &exec.id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_stays_inside_the_workspace() {
        assert_eq!(container_cwd(None).unwrap(), "/workspace");
        assert_eq!(
            container_cwd(Some(Path::new("src/./lib"))).unwrap(),
            "/workspace/src/lib"
        );
        assert!(container_cwd(Some(Path::new("../etc"))).is_err());
        assert!(container_cwd(Some(Path::new("/etc"))).is_err());
    }

    #[test]
    fn capture_truncates_per_stream() {
        let mut c = Capture {
            limit: 4,
            stdout: vec![],
            stderr: vec![],
            truncated: false,
        };
        c.push(Stream::Stdout, b"abc");
        c.push(Stream::Stderr, b"xy");
        assert!(!c.truncated);
        c.push(Stream::Stdout, b"def");
        assert_eq!(c.stdout, b"abcd");
        assert_eq!(c.stderr, b"xy");
        assert!(c.truncated);
    }

    #[test]
    fn the_runtimes_126_is_told_apart_from_a_commands_own() {
        let out = |text: &str| Capture {
            limit: 1 << 20,
            stdout: text.as_bytes().to_vec(),
            stderr: Vec::new(),
            truncated: false,
        };
        let missing = out(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown\r\n",
        );
        assert!(matches!(
            spawn_failure(Some(126), &missing, "nope"),
            Some(Error::CommandNotFound { .. })
        ));
        let denied = out(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"./x\": permission denied: unknown",
        );
        assert!(matches!(
            spawn_failure(Some(126), &denied, "./x"),
            Some(Error::CommandNotExecutable { .. })
        ));
        assert!(spawn_failure(Some(126), &out("my own 126\n"), "sh").is_none());
        assert!(spawn_failure(Some(127), &missing, "nope").is_none());
    }
}
