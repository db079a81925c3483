//! Integration tests for the `headstart` binary: run as a user would, against real git
//! servers on loopback, with a private `HEADSTART_HOME` per test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod broker;
mod broker_docker;
mod broker_restart;
mod cli;
mod conventions;
mod docker_git;
mod docker_lifecycle;
mod exec_signals;
mod exec_status;
mod idle;
mod json_output;
mod library;
mod lifecycle;
mod progress_tty;
mod qa;
mod reconnect;
mod registry;
mod schema;
mod secrets;
mod sessions;
mod tls_start;

use std::path::Path;
use std::process::{Command, Output};

/// A temporary data directory whose overlay mounts (warm sandboxes) are undone on drop.
pub(crate) struct TestHome(test_support::TempHome);

impl TestHome {
    pub(crate) fn new() -> Self {
        Self(test_support::TempHome::new("hs-cli-"))
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Runs `headstart` with `home` as its data directory.
pub(crate) fn headstart(home: &Path, args: &[&str]) -> Output {
    headstart_cmd(home, args).output().expect("run headstart")
}

/// The command [`headstart`] runs, to change before running it.
pub(crate) fn headstart_cmd(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headstart"));
    cmd.args(args)
        .env("HEADSTART_HOME", home)
        .env_remove("HEADSTART_GIT_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1");
    cmd
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "headstart failed: {}{}",
        stdout(o),
        stderr(o)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}
