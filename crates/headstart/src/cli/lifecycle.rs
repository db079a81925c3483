//! `headstart hibernate NAME` ([`Headstart::hibernate`]) and how a resumed sandbox is
//! reported by the commands that start one again (`exec`, `ports`, `up`).

use std::process::ExitCode;

use clap::Args;
use headstart::{Headstart, Resumed, RunState};

use super::output;

/// `headstart hibernate ...`
#[derive(Debug, Args)]
pub(crate) struct HibernateArgs {
    /// The (Docker) sandbox.
    name: String,
    /// Print one JSON object: `{name, provider, image, already, duration_ms}`.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs `headstart hibernate`.
pub(crate) async fn hibernate(app: &Headstart, args: HibernateArgs) -> anyhow::Result<ExitCode> {
    let out = app.hibernate(&args.name).await?;
    if args.json {
        output::print_outcome(&out)?;
    } else if out.already {
        output::say(format!(
            "{} was already hibernated ({})",
            out.name, out.image
        ));
    } else {
        output::say(format!(
            "hibernated {} in {:.1} s: its container is the image {}, its workspace is kept; \
             the next `headstart exec {}` resumes it",
            out.name,
            out.duration.as_secs_f64(),
            out.image,
            out.name
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Tells (on stderr, unless `--quiet`: stdout is the command's) that sandbox `name`
/// was started again.
#[allow(clippy::print_stderr)]
pub(crate) fn say_resumed(name: &str, resumed: Option<&Resumed>) {
    if output::quiet() {
        return;
    }
    if let Some(r) = resumed {
        let from = match r.from {
            RunState::Hibernated => "hibernated",
            _ => "stopped",
        };
        eprintln!(
            "headstart: resumed {name} ({from}) in {:.0} ms",
            r.duration.as_secs_f64() * 1e3
        );
    }
}
