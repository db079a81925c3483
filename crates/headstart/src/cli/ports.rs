//! `headstart ports NAME`: which host address reaches which sandbox port
//! ([`Headstart::ports`]).

use std::process::ExitCode;

use clap::Args;
use headstart::{Headstart, ProviderKind};

use super::{output, parse_provider};

/// `headstart ports ...`
#[derive(Debug, Args)]
pub(crate) struct PortsArgs {
    /// The sandbox.
    name: String,
    /// Provider (default: wherever the sandbox is).
    #[arg(long, value_parser = parse_provider)]
    provider: Option<ProviderKind>,
    /// Print one JSON object: `{name, provider, direct, ports: [{container, host_address}]}`.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `3000` or `8080:3000` (`up --port`).
pub(crate) fn parse_port(s: &str) -> Result<sandbox_core::PortRequest, String> {
    sandbox_core::PortRequest::parse(s).map_err(|e| e.to_string())
}

/// Runs `headstart ports`.
#[allow(clippy::print_stdout)]
pub(crate) async fn ports(app: &Headstart, args: PortsArgs) -> anyhow::Result<ExitCode> {
    let out = app.ports(&args.name, args.provider).await?;
    if !args.json {
        super::lifecycle::say_resumed(out.name.as_str(), out.resumed.as_ref());
    }
    if args.json {
        output::print_outcome(&out)?;
    } else if out.direct {
        println!(
            "{} is a {} sandbox: its processes bind host ports directly (no publishing)",
            out.name, out.provider
        );
    } else if out.ports.is_empty() {
        println!(
            "{} publishes no ports (`headstart up --port PORT` publishes one)",
            out.name
        );
    } else {
        for p in &out.ports {
            println!("{}/tcp -> {}", p.container, p.host_address);
        }
    }
    Ok(ExitCode::SUCCESS)
}
