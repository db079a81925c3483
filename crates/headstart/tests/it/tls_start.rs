//! `up` starts libgit2 with OpenSSL's hashed CA directory instead of parsing the CA
//! bundle (`cli/gitinit.rs`): https certificates are still verified, against the CAs
//! of that directory, looked up when a connection needs one. Served by `openssl
//! s_server` with a certificate a test CA signed.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{TestHome, stderr, stdout};

const LAZY: &str = "libgit2 started with the hashed CA directory";

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA named `name` in `dir/name.key` + `dir/name.pem`.
fn ca(dir: &Path, name: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let subj = format!("/CN=headstart test {name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &subj,
            "-keyout", &key, "-out", &pem,
        ],
    );
}

/// A hashed CA directory `dir/sub` holding `dir/ca.pem`, with a bundle inside it (as
/// `/etc/ssl/certs/ca-certificates.crt` is).
fn hashed_dir(dir: &Path, sub: &str, ca: &str) -> std::path::PathBuf {
    let d = dir.join(sub);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(dir.join(format!("{ca}.pem")), d.join("ca.pem")).unwrap();
    std::fs::copy(dir.join(format!("{ca}.pem")), d.join("bundle.pem")).unwrap();
    openssl(dir, &["rehash", d.to_str().unwrap()]);
    d
}

#[test]
fn https_is_verified_against_the_hashed_ca_directory_libgit2_starts_with() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ca(d, "trusted");
    ca(d, "other");
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
        ],
    );
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "trusted.pem",
            "-CAkey",
            "trusted.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
    let trusting = hashed_dir(d, "trusting", "trusted");
    let other = hashed_dir(d, "other-ca", "other");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", "srv.pem", "-key", "srv.key"])
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = test_support::ChildGuard::spawn(&mut cmd).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(server.is_running() && std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let url = format!("https://127.0.0.1:{port}/app.git");
    for (cas, trusted) in [(&trusting, true), (&other, false)] {
        let home = TestHome::new();
        let out = Command::new(env!("CARGO_BIN_EXE_headstart"))
            .args([
                "--log",
                "debug",
                "up",
                &url,
                "--json",
                "--provider",
                "local",
            ])
            .args(["--no-snapshot", "--name", "tls"])
            .env("HEADSTART_HOME", home.path())
            .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
            .env("SSL_CERT_DIR", cas)
            .env("SSL_CERT_FILE", cas.join("bundle.pem"))
            .env_remove("HEADSTART_GIT_TOKEN")
            .env_remove("GITHUB_TOKEN")
            .output()
            .unwrap();
        let (o, e) = (stdout(&out), stderr(&out));
        assert!(e.contains(LAZY), "{trusted}: the lazy start ran: {e}");
        // s_server speaks TLS but not git: the start fails either way, on what differs
        assert!(!out.status.success(), "{o}");
        let v: serde_json::Value = serde_json::from_str(&o).unwrap();
        let message = v["error"]["message"].as_str().unwrap().to_lowercase();
        assert_eq!(
            message.contains("certificate"),
            !trusted,
            "trusted={trusted}: {message}"
        );
    }
}
