//! A loopback `sshd` with key authentication, for git over ssh.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::ChildGuard;

/// `sshd` on `127.0.0.1:<free port>` accepting one generated client key for the
/// current user, with a generated host key and a `known_hosts` file that names it.
/// Killed on drop; its files live in a temporary directory.
#[derive(Debug)]
pub struct SshServer {
    port: u16,
    user: String,
    dir: tempfile::TempDir,
    _child: ChildGuard,
}

/// Why an [`SshServer`] cannot run here (no sshd binary, not root, ...).
pub fn ssh_unavailable() -> Option<String> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        return Some("no /usr/sbin/sshd (Debian: apt-get install openssh-server)".into());
    }
    if !rustix::process::geteuid().is_root() {
        return Some("sshd needs root to switch to the login user".into());
    }
    None
}

fn keygen(path: &Path) -> anyhow::Result<()> {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "headstart-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl SshServer {
    /// Starts sshd and waits until it accepts connections.
    ///
    /// # Errors
    /// When [`ssh_unavailable`] says so, or sshd does not come up.
    pub fn start() -> anyhow::Result<Self> {
        if let Some(why) = ssh_unavailable() {
            bail!("{why}");
        }
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let dir = tempfile::Builder::new().prefix("hs-sshd-").tempdir()?;
        let d = dir.path();
        keygen(&d.join("host_key"))?;
        keygen(&d.join("client_key"))?;
        keygen(&d.join("other_key"))?;
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))?;
        let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
        let mut last = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PidFile {pid}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\n\
                 UsePAM no\nLogLevel ERROR\nAllowUsers {user}\n",
                hk = d.join("host_key").display(),
                ak = d.join("authorized_keys").display(),
                pid = d.join("sshd.pid").display(),
            );
            std::fs::write(d.join("sshd_config"), config)?;
            let mut cmd = Command::new("/usr/sbin/sshd");
            cmd.arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = ChildGuard::spawn(&mut cmd).context("starting sshd")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.is_running() {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let host_pub = std::fs::read_to_string(d.join("host_key.pub"))?;
                    let mut fields = host_pub.split_whitespace();
                    let (kind, key) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
                    std::fs::write(
                        d.join("known_hosts"),
                        format!("# test\n[127.0.0.1]:{port} {kind} {key}\n"),
                    )?;
                    std::fs::write(d.join("empty_known_hosts"), "")?;
                    return Ok(Self {
                        port,
                        user,
                        dir,
                        _child: child,
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            last = format!("sshd on port {port} did not accept connections");
        }
        bail!("{last}")
    }

    /// `ssh://<user>@127.0.0.1:<port><absolute repository path>`.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private key sshd accepts.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A private key sshd does not accept.
    pub fn other_key(&self) -> PathBuf {
        self.dir.path().join("other_key")
    }

    /// A `known_hosts` file listing this server's host key as `[127.0.0.1]:<port>`.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// An empty `known_hosts` file.
    pub fn empty_known_hosts(&self) -> PathBuf {
        self.dir.path().join("empty_known_hosts")
    }
}
