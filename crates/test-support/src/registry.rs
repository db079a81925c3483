//! A real OCI registry (the reference `distribution` server, Debian's `docker-registry`
//! package) on a free loopback port, with its storage in a temp dir.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::ChildGuard;

/// Where Debian installs the registry binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// `docker-registry serve` on `127.0.0.1:<free port>`, storage (deletes enabled) in a
/// temp dir, its log in a file. Killed on drop.
#[derive(Debug)]
pub struct Registry {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<ChildGuard>,
}

impl Registry {
    /// Starts a registry, or returns `None` after printing why when the binary is not
    /// installed. Panics instead when `HEADSTART_REQUIRE_REGISTRY=1` (CI installs it).
    ///
    /// # Panics
    /// When the registry is required but missing, or installed but does not start.
    #[allow(clippy::print_stderr)] // a skipped test says why on the test output
    pub fn start_or_skip(test: &str) -> Option<Self> {
        let required = std::env::var("HEADSTART_REQUIRE_REGISTRY").is_ok_and(|v| v.trim() == "1");
        if !Path::new(REGISTRY_BIN).is_file() {
            assert!(
                !required,
                "HEADSTART_REQUIRE_REGISTRY=1 but {REGISTRY_BIN} is missing (apt-get install docker-registry)"
            );
            eprintln!(
                "skipping {test}: {REGISTRY_BIN} is not installed (apt-get install docker-registry)"
            );
            return None;
        }
        match Self::start() {
            Ok(r) => Some(r),
            Err(e) => panic!("{REGISTRY_BIN} is installed but did not start: {e:#}"),
        }
    }

    /// Starts a registry.
    ///
    /// # Errors
    /// When it does not accept connections within 20 s (after a few ports).
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("making the registry's temp dir")?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n",
                    dir.path().join("storage").display()
                ),
            )?;
            let log = std::fs::File::create(dir.path().join("registry.log"))?;
            let mut cmd = Command::new(REGISTRY_BIN);
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            let mut child = ChildGuard::spawn(&mut cmd).context("starting docker-registry")?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && child.is_running() {
                if TcpStream::connect(addr).is_ok() {
                    return Ok(Self {
                        addr,
                        dir,
                        child: Some(child),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last = format!(
                "docker-registry on {addr} did not accept connections; log:\n{}",
                std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
            );
        }
        bail!("{last}")
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A registry reference for `repo` on it, e.g. `127.0.0.1:5000/headstart`.
    pub fn reference(&self, repo: &str) -> String {
        format!("{}/{}", self.addr, repo.trim_start_matches('/'))
    }

    /// The storage root (`docker/registry/v2/blobs/...` below it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Every blob data file in storage, with its digest (`sha256:<hex>`).
    pub fn blob_files(&self) -> Vec<(String, PathBuf)> {
        let root = self.storage().join("docker/registry/v2/blobs/sha256");
        let mut out = Vec::new();
        for prefix in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for blob in std::fs::read_dir(prefix.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let data = blob.path().join("data");
                if data.is_file() {
                    out.push((
                        format!("sha256:{}", blob.file_name().to_string_lossy()),
                        data,
                    ));
                }
            }
        }
        out
    }

    /// The registry's log (access log lines included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many `GET` requests for blobs the access log shows (downloads).
    pub fn blob_gets(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }

    /// Stops the registry now (the storage stays until drop).
    pub fn stop(&mut self) {
        self.child = None;
    }
}
