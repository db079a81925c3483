//! Running commands on a VM over SSH with the system `ssh` client.
//!
//! The client is driven with an argv (never a local shell string). OpenSSH joins the
//! remote arguments with spaces and hands them to the remote user's shell, so every
//! argument is quoted for a POSIX shell here ([`quote_remote`]). Host keys go to a
//! dedicated known-hosts file with `StrictHostKeyChecking=accept-new`: the first key
//! seen is pinned and a changed key is refused; `/dev/null` is never used.
//!
//! This is not an SSH library: no sessions are kept open between commands.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sandbox_core::{ExecOutput, ExecRequest, Stream};
use tokio::io::AsyncReadExt;

use super::error::{CloudError, Result};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The user.
    pub user: String,
    /// The host address.
    pub host: IpAddr,
    /// The port (22 on clouds).
    pub port: u16,
    /// The private key to offer (`None`: the client's defaults and agent).
    pub identity_file: Option<PathBuf>,
    /// The dedicated known-hosts file (created when missing).
    pub known_hosts: PathBuf,
    /// The `ssh` program (default `ssh` from `PATH`).
    pub program: PathBuf,
    /// How long the client may take to connect.
    pub connect_timeout: Duration,
}

impl SshTarget {
    /// A target on port 22 with the `ssh` from `PATH`.
    pub fn new(user: impl Into<String>, host: IpAddr, known_hosts: impl Into<PathBuf>) -> Self {
        Self {
            user: user.into(),
            host,
            port: 22,
            identity_file: None,
            known_hosts: known_hosts.into(),
            program: PathBuf::from("ssh"),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the port.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the private key.
    #[must_use]
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity_file = Some(path.into());
        self
    }

    /// The argv for `ssh` running `remote_argv` (quoted for the remote shell).
    ///
    /// # Errors
    /// [`CloudError::Ssh`] for a user name the client would read as an option or that
    /// holds characters a login name cannot have.
    pub fn command_argv(
        &self,
        remote_argv: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        if self.user.is_empty()
            || self.user.starts_with('-')
            || !self
                .user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(CloudError::Ssh(format!(
                "`{}` is not a usable login name",
                self.user.escape_debug()
            )));
        }
        if remote_argv.is_empty() {
            return Err(CloudError::Ssh("no command to run".into()));
        }
        let mut argv: Vec<String> = vec![self.program.to_string_lossy().into_owned()];
        let opt = |argv: &mut Vec<String>, o: String| {
            argv.push("-o".into());
            argv.push(o);
        };
        argv.push("-T".into());
        opt(&mut argv, "BatchMode=yes".into());
        opt(&mut argv, "StrictHostKeyChecking=accept-new".into());
        opt(
            &mut argv,
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
        );
        opt(&mut argv, "GlobalKnownHostsFile=none".into());
        opt(&mut argv, "HashKnownHosts=no".into());
        opt(&mut argv, "UpdateHostKeys=no".into());
        opt(
            &mut argv,
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
        );
        opt(&mut argv, "ServerAliveInterval=15".into());
        opt(&mut argv, "LogLevel=ERROR".into());
        if let Some(key) = &self.identity_file {
            argv.push("-i".into());
            argv.push(key.to_string_lossy().into_owned());
            opt(&mut argv, "IdentitiesOnly=yes".into());
        }
        argv.push("-p".into());
        argv.push(self.port.to_string());
        argv.push("-l".into());
        argv.push(self.user.clone());
        // The host is an IP address: it cannot start with `-`.
        argv.push(self.host.to_string());
        argv.push("--".into());
        argv.push(remote_command(remote_argv, env)?);
        Ok(argv)
    }

    /// Runs an argv on the VM and collects its output (honours `timeout`,
    /// `output_limit`, `env` and `sink` of the request; `cwd` is taken relative to the
    /// login directory).
    ///
    /// # Errors
    /// [`CloudError::Ssh`] when the client cannot start; a remote failure is an
    /// [`ExecOutput`] with its exit code (255 is the client's own failure).
    pub async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput> {
        let mut remote: Vec<String> = Vec::new();
        if let Some(cwd) = &request.cwd {
            // `cd DIR && exec ARGV` keeps the quoting of every part intact.
            let dir = cwd.to_string_lossy().into_owned();
            remote = vec![
                "sh".into(),
                "-c".into(),
                "cd \"$1\" && shift && exec \"$@\"".into(),
                "sh".into(),
                dir,
            ];
        }
        remote.extend(request.argv().iter().cloned());
        let argv = self.command_argv(&remote, &request.env)?;
        ensure_known_hosts(&self.known_hosts)?;
        run_capture(&argv, request).await
    }

    /// Runs `true` on the VM: `Ok(true)` when SSH answered with status 0.
    pub(crate) async fn probe(&self) -> Result<bool> {
        let request = ExecRequest::new(["true"])
            .map_err(|e| CloudError::Ssh(e.to_string()))?
            .timeout(self.connect_timeout + Duration::from_secs(5));
        let out = self.exec(&request).await?;
        if !out.success() {
            tracing::debug!(
                host = %self.host, code = ?out.exit_code,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(), "ssh probe not answered yet"
            );
        }
        Ok(out.success())
    }
}

/// Quotes one argument for a POSIX shell: `'...'` with each `'` written as `'\''`.
/// Arguments made only of safe characters are left as they are.
pub fn quote_remote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The one string OpenSSH sends for the remote shell: `env K=V ... -- argv` quoted.
///
/// # Errors
/// [`CloudError::Ssh`] for an environment name that is not a shell identifier or an
/// argument holding a NUL byte.
pub fn remote_command(argv: &[String], env: &BTreeMap<String, String>) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    if !env.is_empty() {
        parts.push("env".into());
        for (k, v) in env {
            let valid = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(CloudError::Ssh(format!(
                    "environment name `{}` is not a shell identifier",
                    k.escape_debug()
                )));
            }
            parts.push(quote_remote(&format!("{k}={v}")));
        }
        // `env` would read a first argument containing `=` as another assignment.
        if argv.first().is_some_and(|p| p.contains('=')) {
            return Err(CloudError::Ssh(
                "a program name with `=` cannot follow environment variables".into(),
            ));
        }
    }
    for a in argv {
        if a.contains('\0') {
            return Err(CloudError::Ssh("an argument holds a NUL byte".into()));
        }
        parts.push(quote_remote(a));
    }
    Ok(parts.join(" "))
}

/// Creates the known-hosts file (and its directory) if missing, mode 0600.
///
/// # Errors
/// [`CloudError::Io`] when it cannot be created.
pub fn ensure_known_hosts(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CloudError::io(format!("creating {}", dir.display()), e))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .map_err(|e| CloudError::io(format!("creating {}", path.display()), e))?;
    Ok(())
}

/// Removes the pinned host keys of `host:port` (clouds reuse addresses: a new VM on a
/// destroyed VM's address would otherwise be refused as a changed key).
///
/// # Errors
/// [`CloudError::Io`] when the file cannot be rewritten.
pub fn forget_host(known_hosts: &Path, host: IpAddr, port: u16) -> Result<()> {
    let text = match std::fs::read_to_string(known_hosts) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(CloudError::io(
                format!("reading {}", known_hosts.display()),
                e,
            ));
        }
    };
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            let hosts = line.split_whitespace().next().unwrap_or("");
            !hosts.split(',').any(|h| h == name)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    std::fs::write(known_hosts, out)
        .map_err(|e| CloudError::io(format!("writing {}", known_hosts.display()), e))
}

async fn run_capture(argv: &[String], request: &ExecRequest) -> Result<ExecOutput> {
    let started = Instant::now();
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| CloudError::Ssh("empty argv".into()))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            CloudError::Ssh(format!(
                "cannot start `{program}`: {e} (install the OpenSSH client: apt-get install openssh-client)"
            ))
        })?;
    let limit = request.output_limit;
    let sink = request.sink.clone();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, stream: Stream| {
        let sink = sink.clone();
        async move {
            let mut kept = Vec::new();
            let mut truncated = false;
            let Some(mut pipe) = pipe else {
                return (kept, truncated);
            };
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(sink) = &sink {
                            sink(stream, &buf[..n]);
                        }
                        let room = limit.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                        truncated |= n > room;
                    }
                }
            }
            (kept, truncated)
        }
    };
    let out_task = read(stdout.map(|p| Box::new(p) as _), Stream::Stdout);
    let err_task = read(stderr.map(|p| Box::new(p) as _), Stream::Stderr);
    let wait = async {
        let ((out, t1), (err, t2), status) = tokio::join!(out_task, err_task, child.wait());
        (out, err, t1 || t2, status)
    };
    let result = match request.timeout {
        Some(t) => tokio::time::timeout(t, wait).await.ok(),
        None => Some(wait.await),
    };
    match result {
        Some((stdout, stderr, truncated, status)) => {
            let status = status.map_err(|e| CloudError::Ssh(format!("waiting for ssh: {e}")))?;
            Ok(ExecOutput {
                exit_code: status.code(),
                timed_out: false,
                stdout,
                stderr,
                truncated,
                duration: started.elapsed(),
            })
        }
        None => Ok(ExecOutput {
            exit_code: None,
            timed_out: true,
            duration: started.elapsed(),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_is_posix_single_quotes() {
        assert_eq!(quote_remote("plain-arg_1.txt"), "plain-arg_1.txt");
        assert_eq!(quote_remote(""), "''");
        assert_eq!(quote_remote("a b"), "'a b'");
        assert_eq!(quote_remote("it's"), "'it'\\''s'");
        assert_eq!(quote_remote("$(id); rm -rf /"), "'$(id); rm -rf /'");
    }

    #[test]
    fn argv_pins_host_keys_and_never_uses_dev_null() {
        let t = SshTarget::new("root", "127.0.0.1".parse().unwrap(), "/tmp/kh").port(2222);
        let argv = t
            .command_argv(&["echo".into(), "a b".into()], &BTreeMap::new())
            .unwrap();
        assert!(argv.contains(&"StrictHostKeyChecking=accept-new".to_string()));
        assert!(argv.contains(&"UserKnownHostsFile=/tmp/kh".to_string()));
        assert!(!argv.iter().any(|a| a.contains("/dev/null")));
        assert_eq!(argv.last().unwrap(), "echo 'a b'");
        let bad = SshTarget::new("-oProxyCommand=x", "127.0.0.1".parse().unwrap(), "/tmp/kh");
        assert!(
            bad.command_argv(&["true".into()], &BTreeMap::new())
                .is_err()
        );
    }

    #[test]
    fn env_is_passed_through_env_with_quoting() {
        let env = BTreeMap::from([("GREETING".to_string(), "hi there".to_string())]);
        assert_eq!(
            remote_command(&["printenv".into()], &env).unwrap(),
            "env 'GREETING=hi there' printenv"
        );
        let bad = BTreeMap::from([("A;B".to_string(), "x".to_string())]);
        assert!(remote_command(&["true".into()], &bad).is_err());
    }

    #[test]
    fn forget_host_removes_only_that_host() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        std::fs::write(
            &kh,
            "1.2.3.4 ssh-ed25519 AAAA\n[1.2.3.4]:2222 ssh-ed25519 BBBB\n5.6.7.8 ssh-ed25519 CCCC\n",
        )
        .unwrap();
        forget_host(&kh, "1.2.3.4".parse().unwrap(), 22).unwrap();
        assert_eq!(
            std::fs::read_to_string(&kh).unwrap(),
            "[1.2.3.4]:2222 ssh-ed25519 BBBB\n5.6.7.8 ssh-ed25519 CCCC\n"
        );
    }
}
