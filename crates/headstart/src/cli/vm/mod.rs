//! `headstart vm`: cloud VM hosts on DigitalOcean, Hetzner Cloud and GCP.
//!
//! `vm up` creates a VM (image chosen by the fast paths: `--fast`, `--beta`,
//! `HEADSTART_BETA`, else the `fast_provision` experiment), waits until it runs, port
//! 22 answers and an SSH command runs, and prints the phases (`vm_create`,
//! `vm_active`, `ssh_ready`). `vm ls`, `vm down` and `vm exec -- argv` work on the VMs
//! carrying your owner tag.
//!
//! VMs are hosts, not sandboxes: `headstart up` does not put a repository on a VM.
//! The logic lives in `provisioners::cloud`; this module parses arguments, reads the
//! few settings of the command line and renders progress.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use headstart::Headstart;
use provisioners::cloud::{Cloud, CloudError};

mod commands;
use commands::{down, exec, ls, up};

/// Create, list, use and delete cloud VM hosts.
#[derive(Debug, Args)]
pub(crate) struct VmArgs {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(Debug, Subcommand)]
enum VmCommand {
    /// Create a VM and wait until SSH answers (destroyed again if any step fails).
    Up(UpArgs),
    /// List your VMs on a cloud.
    Ls(LsArgs),
    /// Delete a VM.
    Down(DownArgs),
    /// Run a command (argv, no local shell) on a VM over SSH.
    Exec(ExecArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CloudArg {
    Digitalocean,
    Hetzner,
    Gcp,
}

impl From<CloudArg> for Cloud {
    fn from(c: CloudArg) -> Self {
        match c {
            CloudArg::Digitalocean => Cloud::DigitalOcean,
            CloudArg::Hetzner => Cloud::Hetzner,
            CloudArg::Gcp => Cloud::Gcp,
        }
    }
}

#[derive(Debug, Args)]
struct Common {
    /// The cloud.
    #[arg(long, value_enum, env = "HEADSTART_CLOUD")]
    cloud: CloudArg,
    /// Owner tag put on (and filtered by) your VMs; default: your user name.
    #[arg(long)]
    owner: Option<String>,
    /// The public key to install (its private key, the same path without `.pub`, is
    /// used for SSH); default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub.
    #[arg(long, value_name = "PATH")]
    ssh_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    common: Common,
    /// VM name (lowercase letters, digits, `-`); default: `headstart-<random>`.
    #[arg(long)]
    name: Option<String>,
    /// Size / server type / machine type (default per cloud: s-1vcpu-1gb, cx22, e2-small).
    #[arg(long)]
    size: Option<String>,
    /// Region / location / zone (default per cloud: nyc3, nbg1, us-central1-a).
    #[arg(long)]
    region: Option<String>,
    /// An explicit image instead of the one the fast paths choose.
    #[arg(long)]
    image: Option<String>,
    /// Your own user data / startup script (not allowed with a prebuilt image).
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// Extra label `key=value` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Fast paths to use (`images`, `docker`; comma-separated, repeatable).
    #[arg(long, value_name = "LIST")]
    beta: Vec<String>,
    /// Every fast path.
    #[arg(long, conflicts_with = "no_fast")]
    fast: bool,
    /// No fast path: plain OS image plus a boot script installing Docker.
    #[arg(long)]
    no_fast: bool,
    /// Overall deadline in seconds for the VM to be ready.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print one JSON object instead of text (`docs/json/vm-up.schema.json`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LsArgs {
    #[command(flatten)]
    common: Common,
    /// Print one JSON array instead of text (`docs/json/vm-ls.schema.json`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DownArgs {
    #[command(flatten)]
    common: Common,
    /// The VM name.
    name: String,
    /// Print one JSON object instead of text (`docs/json/vm-down.schema.json`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExecArgs {
    #[command(flatten)]
    common: Common,
    /// The VM name.
    name: String,
    /// Kill the command after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Capture the command's output into one JSON object instead of streaming it
    /// (`docs/json/vm-exec.schema.json`); the exit status is still the command's.
    #[arg(long)]
    json: bool,
    /// The command and its arguments (after `--`), run without a local shell.
    #[arg(last = true, required = true, num_args = 1..)]
    argv: Vec<String>,
}

impl VmArgs {
    /// True when the command was asked for JSON output (`--json`): its failure is then
    /// one `{"error": ...}` object on stdout too.
    pub(crate) fn json(&self) -> bool {
        match &self.command {
            VmCommand::Up(a) => a.json,
            VmCommand::Ls(a) => a.json,
            VmCommand::Down(a) => a.json,
            VmCommand::Exec(a) => a.json,
        }
    }
}

/// Runs `headstart vm ...`.
pub(crate) async fn run(app: &Headstart, args: VmArgs) -> anyhow::Result<ExitCode> {
    let result = match args.command {
        VmCommand::Up(a) => up(app, a).await,
        VmCommand::Ls(a) => ls(app, a).await,
        VmCommand::Down(a) => down(app, a).await,
        VmCommand::Exec(a) => exec(app, a).await,
    };
    // Input the user can fix (a token, a name, a size) exits with status 2; the
    // library's words get this command line's way out appended.
    result.map_err(|e| {
        let cloud_error = e.chain().find_map(|c| c.downcast_ref::<CloudError>());
        let user = cloud_error.is_some_and(CloudError::is_user_error);
        let hint = match cloud_error {
            Some(CloudError::NotFound { cloud, .. }) => Some(format!(
                "`headstart vm ls --cloud {}` lists them",
                cloud.as_str()
            )),
            Some(CloudError::CleanupFailed { cloud, vm, .. }) => Some(format!(
                "delete it with `headstart vm down {vm} --cloud {}`",
                cloud.as_str()
            )),
            _ => None,
        };
        match (user, hint) {
            (true, hint) => anyhow::Error::new(super::error::UserError(match hint {
                Some(h) => format!("{e:#}; {h}"),
                None => format!("{e:#}"),
            })),
            (false, Some(h)) => anyhow::anyhow!("{e:#}; {h}"),
            (false, None) => e,
        }
    })
}
