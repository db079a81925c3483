//! SSH readiness and exec against real servers on loopback: a TCP listener for the
//! readiness step, and a real OpenSSH `sshd` (Debian's openssh-server, installed by
//! `.ci/run`) for argument quoting, environment, host-key pinning and exit codes.
//! The sshd tests skip with a printed reason when `sshd` is not installed.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use provisioners::cloud::ssh::remote_command;
use provisioners::cloud::{SshTarget, wait_ssh, wait_tcp};
use sandbox_core::ExecRequest;

use crate::cloud_fakes::{closed_port, fake_sshd_banner};

#[tokio::test]
async fn tcp_readiness_needs_an_ssh_banner() {
    let port = fake_sshd_banner().await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let budget = Duration::from_secs(5);
    wait_tcp(
        addr,
        Instant::now() + budget,
        Duration::from_millis(20),
        budget,
    )
    .await
    .unwrap();

    // A port that accepts but never speaks SSH is not ready.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let budget = Duration::from_millis(500);
    let err = wait_tcp(
        silent_addr,
        Instant::now() + budget,
        Duration::from_millis(20),
        budget,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no SSH banner"), "{err}");

    // A closed port times out with the connection error in the message.
    let closed = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let t = Instant::now();
    let err = wait_tcp(
        closed,
        Instant::now() + budget,
        Duration::from_millis(20),
        budget,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the deadline bounds the wait"
    );
}

#[tokio::test]
async fn tcp_readiness_waits_for_a_late_server() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    drop(std_listener);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"SSH-2.0-late\r\n").await;
        }
    });
    let budget = Duration::from_secs(10);
    wait_tcp(
        addr,
        Instant::now() + budget,
        Duration::from_millis(50),
        budget,
    )
    .await
    .unwrap();
}

/// A real sshd on a free loopback port, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    user: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
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
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen failed");
}

fn find_sshd() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

async fn start_sshd() -> Option<Sshd> {
    let Some(sshd) = find_sshd() else {
        eprintln!("SKIP: no sshd (install Debian's openssh-server; .ci/run does)");
        return None;
    };
    if Command::new("ssh")
        .arg("-V")
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIP: no ssh client (install openssh-client)");
        return None;
    }
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    if user == "root" {
        // sshd's privilege separation directory (created by the service unit normally).
        let _ = std::fs::create_dir_all("/run/sshd");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
    let port = closed_port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\nAuthorizedKeysFile {auth}\n\
         StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
         PermitRootLogin prohibit-password\nAllowUsers {user}\nPermitUserEnvironment no\nLogLevel ERROR\n",
        host = d.join("host_key").display(),
        pid = d.join("sshd.pid").display(),
        auth = d.join("authorized_keys").display(),
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let check = Command::new(&sshd)
        .arg("-t")
        .arg("-f")
        .arg(d.join("sshd_config"))
        .output()
        .unwrap();
    if !check.status.success() {
        eprintln!(
            "SKIP: sshd refuses to run here: {}",
            String::from_utf8_lossy(&check.stderr).trim()
        );
        return None;
    }
    let child = Command::new(&sshd)
        .args(["-D", "-e", "-p", &port.to_string(), "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        // Readiness probes close without a key exchange, which sshd logs: keep it
        // out of the test output.
        .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
        .spawn()
        .unwrap();
    let budget = Duration::from_secs(10);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = Sshd {
        child,
        port,
        dir,
        user,
    };
    wait_tcp(
        addr,
        Instant::now() + budget,
        Duration::from_millis(50),
        budget,
    )
    .await
    .unwrap();
    Some(server)
}

impl Sshd {
    fn target(&self, known_hosts: &str) -> SshTarget {
        SshTarget::new(
            self.user.clone(),
            "127.0.0.1".parse().unwrap(),
            self.dir.path().join(known_hosts),
        )
        .port(self.port)
        .identity_file(self.dir.path().join("client_key"))
    }
}

#[tokio::test]
async fn arguments_reach_the_remote_program_unchanged_through_real_sshd() {
    let Some(sshd) = start_sshd().await else {
        return;
    };
    let target = sshd.target("known_hosts");
    let budget = Duration::from_secs(20);
    wait_ssh(
        &target,
        Instant::now() + budget,
        Duration::from_millis(100),
        budget,
    )
    .await
    .unwrap();

    let args = [
        "two words",
        "it's",
        "\"double\"",
        "semi;colon && echo injected",
        "$(echo subst)",
        "`echo backtick`",
        "$HOME",
        "back\\slash",
        "*",
        "",
        "new\nline",
        "-n",
        "tab\there",
        "ünïcødé",
    ];
    let mut argv = vec!["printf".to_string(), "[%s]\\n".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let out = target.exec(&ExecRequest::new(argv).unwrap()).await.unwrap();
    assert!(
        out.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    // The first connection pinned the host key in the dedicated file.
    let pinned = std::fs::read_to_string(sshd.dir.path().join("known_hosts")).unwrap();
    assert!(
        pinned.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{pinned}"
    );

    // Environment and working directory, quoted the same way.
    let mut req =
        ExecRequest::new(["sh", "-c", "printf '%s|%s' \"$GREETING\" \"$(pwd)\""]).unwrap();
    req = req.env("GREETING", "hi there; $(echo no) 'q'");
    req.cwd = Some("/tmp".into());
    let out = target.exec(&req).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi there; $(echo no) 'q'|/tmp"
    );

    // Exit codes come back; a timeout is reported as such.
    let out = target
        .exec(&ExecRequest::new(["sh", "-c", "exit 7"]).unwrap())
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(7));
    let out = target
        .exec(
            &ExecRequest::new(["sleep", "5"])
                .unwrap()
                .timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert!(out.timed_out && out.exit_code.is_none());
}

#[tokio::test]
async fn a_changed_host_key_is_refused() {
    let Some(sshd) = start_sshd().await else {
        return;
    };
    // A known-hosts file that pinned a different key for this address.
    let other = sshd.dir.path().join("other_key");
    keygen(&other);
    let pub_line = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut parts = pub_line.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{} {} {}\n",
        sshd.port,
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    std::fs::write(sshd.dir.path().join("stale_known_hosts"), line).unwrap();
    let target = sshd.target("stale_known_hosts");
    let out = target
        .exec(&ExecRequest::new(["true"]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.exit_code,
        Some(255),
        "ssh must refuse a changed host key"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IDENTIFICATION HAS CHANGED")
            || stderr.contains("Host key verification failed"),
        "{stderr}"
    );
}

#[test]
fn the_remote_command_is_one_quoted_string() {
    let cmd = remote_command(
        &["echo".into(), "a b".into(), "$(x)".into()],
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(cmd, "echo 'a b' '$(x)'");
}

#[tokio::test]
async fn up_waits_for_a_real_ssh_command_then_exec_runs_on_the_host() {
    let Some(sshd) = start_sshd().await else {
        return;
    };
    let fake = crate::cloud_fakes::FakeDo::start(crate::cloud_fakes::DoBehaviour {
        active_after: Some(1),
        ..Default::default()
    })
    .await;
    let p = provisioners::cloud::digitalocean::DigitalOcean::new(fake.config()).unwrap();
    let mut ready = provisioners::cloud::Readiness::new(sshd.dir.path().join("known_hosts"));
    ready.ssh_port = sshd.port;
    ready.identity_file = Some(sshd.dir.path().join("client_key"));
    ready.ssh_user = Some(sshd.user.clone());
    ready.deadline = Duration::from_secs(30);
    ready.retry_interval = Duration::from_millis(100);
    let spec = crate::cloud_fakes::spec("e2e-1", crate::cloud_fakes::prebuilt(true, false));
    let report = provisioners::cloud::up(&p, &spec, &ready, |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.phases.len(), 3);
    let host = provisioners::cloud::VmHost::new(report.vm, &ready).unwrap();
    let out = host
        .exec(&ExecRequest::new(["echo", "hello; from $(the) vm"]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello; from $(the) vm\n"
    );
}
