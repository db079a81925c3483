//! `git daemon` on a free loopback port.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::git_cli::git_command;
use crate::process::ChildGuard;

/// `git daemon --export-all --base-path=<root>` on `127.0.0.1:<free port>`. Killed
/// (with its per-connection children) on drop.
#[derive(Debug)]
pub struct GitDaemon {
    port: u16,
    _child: ChildGuard,
}

impl GitDaemon {
    /// Starts the daemon serving the repositories under `root`, and waits until it
    /// accepts connections.
    ///
    /// # Errors
    /// When the daemon does not come up (after a few attempts on fresh ports).
    pub fn start(root: &Path) -> anyhow::Result<Self> {
        let mut last = String::new();
        for _ in 0..5 {
            // Pick a free port; the daemon binds it right after (reuseaddr), and a lost
            // race is retried on another port.
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut cmd = git_command();
            cmd.arg("daemon")
                .arg("--reuseaddr")
                .arg("--export-all")
                .arg("--informative-errors")
                .arg(format!("--base-path={}", root.display()))
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(root)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = ChildGuard::spawn(&mut cmd).context("starting git daemon")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.is_running() {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(Self {
                        port,
                        _child: child,
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            last = format!("git daemon on port {port} did not accept connections");
        }
        bail!("{last}")
    }

    /// `git://127.0.0.1:<port>/<repo>`.
    pub fn url(&self, repo: &str) -> String {
        format!(
            "git://127.0.0.1:{}/{}",
            self.port,
            repo.trim_start_matches('/')
        )
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}
