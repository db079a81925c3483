//! Readiness after the cloud says a VM runs: TCP port 22 answers with an SSH banner,
//! then an SSH command answers. Every wait has a deadline; nothing here retries
//! forever.
//!
//! This module does not talk to cloud APIs (the provisioners poll their own status).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::error::{CloudError, Result};
use super::ssh::SshTarget;

/// How long and how to wait for a VM.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The overall deadline for the cloud status, TCP and SSH steps together.
    pub deadline: Duration,
    /// The SSH port to probe (22 on clouds; tests point it elsewhere).
    pub ssh_port: u16,
    /// The known-hosts file the SSH step pins the VM's key in.
    pub known_hosts: PathBuf,
    /// The private key the SSH step offers.
    pub identity_file: Option<PathBuf>,
    /// Run an SSH command as the last step (`false`: stop after the banner).
    pub ssh_command: bool,
    /// Pause between TCP / SSH attempts.
    pub retry_interval: Duration,
    /// Override the user of [`Cloud::ssh_user`](super::Cloud::ssh_user).
    pub ssh_user: Option<String>,
}

impl Readiness {
    /// Five minutes, port 22, the SSH command step on.
    pub fn new(known_hosts: impl Into<PathBuf>) -> Self {
        Self {
            deadline: Duration::from_secs(300),
            ssh_port: 22,
            known_hosts: known_hosts.into(),
            identity_file: None,
            ssh_command: true,
            retry_interval: Duration::from_secs(2),
            ssh_user: None,
        }
    }
}

/// Reads the first line a TCP server sends: an SSH server starts with `SSH-`.
async fn banner(addr: SocketAddr, timeout: Duration) -> std::io::Result<bool> {
    let connect = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await;
    let mut stream = match connect {
        Ok(s) => s?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    };
    let mut buf = [0u8; 64];
    let mut got = 0;
    let read = async {
        while got < 4 {
            let n = stream.read(&mut buf[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r?,
        Err(_) => return Ok(false),
    }
    Ok(buf[..got].starts_with(b"SSH-"))
}

/// Waits until `addr` accepts a TCP connection and sends an SSH banner.
///
/// # Errors
/// [`CloudError::Timeout`] when `until` passes first.
pub async fn wait_tcp(
    addr: SocketAddr,
    until: Instant,
    retry: Duration,
    budget: Duration,
) -> Result<()> {
    let mut last = String::from("no attempt");
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CloudError::Timeout {
                what: format!("waiting for SSH on {addr} (last: {last})"),
                after: budget,
            });
        }
        match banner(addr, left.min(Duration::from_secs(5))).await {
            Ok(true) => return Ok(()),
            Ok(false) => last = "connected but no SSH banner".into(),
            Err(e) => last = e.to_string(),
        }
        tracing::debug!(%addr, %last, "port 22 not ready yet");
        tokio::time::sleep(retry.min(until.saturating_duration_since(Instant::now()))).await;
    }
}

/// Waits until `ssh` runs `true` on the target.
///
/// # Errors
/// [`CloudError::Timeout`] when `until` passes first; [`CloudError::Ssh`] when the
/// client cannot run at all.
pub async fn wait_ssh(
    target: &SshTarget,
    until: Instant,
    retry: Duration,
    budget: Duration,
) -> Result<()> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CloudError::Timeout {
                what: format!(
                    "waiting for an SSH command to answer on {}:{}",
                    target.host, target.port
                ),
                after: budget,
            });
        }
        let mut t = target.clone();
        t.connect_timeout = t.connect_timeout.min(left.max(Duration::from_secs(1)));
        match tokio::time::timeout(left, t.probe()).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) | Err(_) => {}
            Ok(Err(e)) => return Err(e),
        }
        tokio::time::sleep(retry.min(until.saturating_duration_since(Instant::now()))).await;
    }
}
