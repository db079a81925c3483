//! What every start does once the workspace holds its checkout, before the sandbox is
//! offered: the git identity (`user.name`/`user.email` in the repository's own config)
//! and the recipe's after-start hooks, timed together as phase `after_start`.

use std::time::Instant;

use sandbox_core::git::{self, GitIdentity};
use sandbox_core::{ExecRequest, Phase, PhaseClock, Sandbox, SandboxName};

use crate::error::{Error, Result};
use crate::key::RecipeCommand;
use crate::refresh::DEFAULT_COMMAND_TIMEOUT;

/// How much of a failed hook's output goes into the error.
const OUTPUT_TAIL: usize = 2000;

/// Sets `identity` and runs `hooks` in order in `sandbox`. `kept` names a sandbox that
/// existed before this start (its error says it is kept). Nothing to do records no phase.
pub(crate) async fn after_start(
    sandbox: &dyn Sandbox,
    identity: Option<&GitIdentity>,
    hooks: &[RecipeCommand],
    kept: Option<&SandboxName>,
    clock: &mut PhaseClock,
) -> Result<()> {
    if identity.is_none() && hooks.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    let done = run(sandbox, identity, hooks, kept).await;
    clock.record(Phase::AfterStart, t.elapsed());
    done
}

/// Runs a recipe's after-start `hooks` in `sandbox`, in order, as every start does: for
/// a sandbox started again outside [`FastStart`](crate::FastStart) (resumed after an
/// idle stop). A failing hook fails with [`Error::HookFailed`] (its output scrubbed),
/// saying the sandbox is kept.
///
/// # Errors
/// [`Error::HookFailed`], or a hook that could not be run.
pub async fn run_after_start_hooks(sandbox: &dyn Sandbox, hooks: &[RecipeCommand]) -> Result<()> {
    run(sandbox, None, hooks, Some(sandbox.name())).await
}

async fn run(
    sandbox: &dyn Sandbox,
    identity: Option<&GitIdentity>,
    hooks: &[RecipeCommand],
    kept: Option<&SandboxName>,
) -> Result<()> {
    if let Some(id) = identity {
        let ws = sandbox.workspace().to_path_buf();
        if ws.join(".git").exists() {
            let id = id.clone();
            tokio::task::spawn_blocking(move || git::set_identity(&ws, &id.name, &id.email))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        } else {
            tracing::warn!(sandbox = %sandbox.name(), "no git checkout: no identity set");
        }
    }
    for cmd in hooks {
        let req = ExecRequest::new(cmd.argv.clone())?
            .timeout(cmd.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT));
        let out = sandbox.exec(&req).await?;
        if out.success() {
            continue;
        }
        let status = if out.timed_out {
            "timed out".to_owned()
        } else {
            match out.exit_code {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".to_owned(),
            }
        };
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        if output.trim().is_empty() {
            output = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let output = sandbox_core::scrub(output.trim());
        let tail = match output.char_indices().rev().nth(OUTPUT_TAIL) {
            Some((i, _)) => format!("…{}", &output[i..]),
            None => output.into_owned(),
        };
        return Err(Error::HookFailed {
            command: cmd.argv.join(" "),
            detail: if tail.is_empty() {
                status
            } else {
                format!("{status}: {tail}")
            },
            kept: kept.cloned(),
        });
    }
    Ok(())
}
