//! Running the git CLI for fixtures, isolated from the machine's git configuration.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// A `git` command that ignores system and global configuration and has a fixed
/// author and committer.
pub fn git_command() -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@example.com")
        .env("GIT_COMMITTER_NAME", "Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null());
    cmd
}

/// Runs `git args...` and returns its trimmed stdout; an error carries stderr.
pub fn git(args: &[&str]) -> anyhow::Result<String> {
    run(git_command().args(args), args)
}

/// Runs `git -C dir args...` and returns its trimmed stdout.
pub fn git_in(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    run(git_command().arg("-C").arg(dir).args(args), args)
}

fn run(cmd: &mut Command, args: &[&str]) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
