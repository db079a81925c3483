//! `headstart exec NAME cmd args...`: run an argv (never a shell string) in a sandbox,
//! like `docker exec`: `--` before the command is optional, options of `exec` come
//! before the sandbox's command, everything after the program is its own.
//!
//! Exit status: the command's own; 127 when the program does not exist, 126 when it
//! exists but cannot run (not executable, a directory, an unknown format), 124 when
//! `--timeout` killed it, 1 when a signal did; 2 for an unknown sandbox.
//!
//! Output: without `--json` the command's stdout and stderr stream to ours as they
//! arrive. With `--json` nothing streams: both are captured (up to 1 MiB each,
//! `truncated` says when cut) into one object printed when the command ends, so
//! stdout holds exactly that object (see `docs/json/exec.schema.json`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sandbox_core::{ExecRequest, Stream};
use serde_json::json;

use crate::choice::ProviderKind;
use crate::commands::{Ctx, find_sandbox, parse_provider, sandbox_name};
use crate::output;

/// `headstart exec ...`
#[derive(Debug, Args)]
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
    /// The program and its arguments (`--` before them is optional).
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    argv: Vec<String>,
}

/// The status a shell gives a program that could not be started, if `e` says so.
fn spawn_failure_status(e: &sandbox_core::Error) -> Option<u8> {
    match e {
        sandbox_core::Error::CommandNotFound { .. } => Some(127),
        sandbox_core::Error::CommandNotExecutable { .. } => Some(126),
        _ => None,
    }
}

/// Runs `headstart exec`.
#[allow(clippy::print_stderr)]
pub(crate) async fn exec(home: &Ctx, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let name = sandbox_name(&args.name)?;
    let (provider, sandbox) = find_sandbox(home, &name, args.provider).await?;
    let mut req = ExecRequest::new(args.argv.clone())?;
    if let Some(t) = args.timeout {
        req = req.timeout(Duration::from_secs(t));
    }
    if !args.json {
        req = req.sink(Arc::new(|stream, bytes: &[u8]| {
            use std::io::Write;
            let _ = match stream {
                Stream::Stdout => std::io::stdout().write_all(bytes),
                Stream::Stderr => std::io::stderr().write_all(bytes),
            };
        }));
    }
    let out = match sandbox.exec(&req).await {
        Ok(out) => out,
        Err(e) => {
            let Some(status) = spawn_failure_status(&e) else {
                return Err(e.into());
            };
            let e = anyhow::Error::from(e);
            if args.json {
                output::print_json(&output::error_object(&e));
            } else {
                eprintln!("headstart: {}", sandbox_core::scrub(&e.to_string()));
            }
            return Ok(ExitCode::from(status));
        }
    };
    let status: u8 = if out.timed_out {
        124
    } else {
        out.exit_code
            .map_or(1, |c| u8::try_from(c & 0xff).unwrap_or(1))
    };
    if args.json {
        output::print_json(&json!({
            "sandbox": name.as_str(),
            "provider": provider.kind(),
            "argv": args.argv,
            "exit_code": out.exit_code,
            "status": status,
            "timed_out": out.timed_out,
            "duration_ms": (out.duration.as_secs_f64() * 1e6).round() / 1e3,
            "stdout": String::from_utf8_lossy(&out.stdout),
            "stderr": String::from_utf8_lossy(&out.stderr),
            "truncated": out.truncated,
        }));
    } else if out.timed_out && !output::quiet() {
        eprintln!("headstart: `{}` timed out", args.argv.join(" "));
    }
    Ok(ExitCode::from(status))
}
