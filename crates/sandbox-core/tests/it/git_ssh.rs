//! git over ssh against a loopback OpenSSH `sshd`: key authentication, host keys
//! checked against `known_hosts` (unknown and changed keys refused), wrong or missing
//! keys refused without a retry loop; and the same limits as the other transports
//! when the server stalls, in the handshake or after it (the low-speed limit,
//! cancellation).

use std::time::{Duration, Instant};

use sandbox_core::git::{self, GitOptions};
use sandbox_core::{CancelToken, Credentials, Error, LowSpeed, RepoUrl, Source, TransferLimits};
use test_support::{
    Change, SshServer, StallProxy, TrickleProxy, Upstream, git_in, ssh_unavailable,
};

use crate::common::{assert_clean, commit_count, source, state};

/// The sshd, or `None` (with the reason printed) where it cannot run.
#[allow(clippy::print_stderr)]
fn sshd() -> anyhow::Result<Option<SshServer>> {
    if let Some(why) = ssh_unavailable() {
        eprintln!("SKIPPED: loopback sshd unavailable: {why}");
        return Ok(None);
    }
    Ok(Some(SshServer::start()?))
}

#[test]
fn clone_and_sync_over_ssh_with_key_and_known_hosts() -> anyhow::Result<()> {
    let Some(ssh) = sshd()? else { return Ok(()) };
    let up = Upstream::new("trunk", 20)?;
    up.advance("trunk", 3)?;
    let url = RepoUrl::parse(&ssh.url(&up.path()))?;
    let creds = Credentials::ssh_key(ssh.client_key()).with_known_hosts(ssh.known_hosts());
    let opts = GitOptions {
        credentials: creds,
        ..GitOptions::default()
    };
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    let out = git::clone(&Source::new(url.clone()), &ws, &opts)?;
    assert_eq!(
        (out.head.branch.as_str(), out.head.commit.clone()),
        ("trunk", up.tip("trunk")?)
    );
    assert_eq!(commit_count(&ws)?, 1, "shallow over ssh");
    assert_clean(&ws)?;
    assert_eq!(
        git_in(&ws, &["config", "remote.origin.url"])?,
        url.to_string()
    );
    assert_eq!(
        git::remote_default_branch(&url, &opts.credentials)?,
        "trunk"
    );

    up.create_branch("feature/x", "trunk")?;
    let tip = up.advance("feature/x", 2)?;
    let out = git::sync(&source(&url, Some("feature/x"), None)?, &ws, &opts)?;
    assert_eq!(out.head.commit, tip);
    assert_eq!(state(&ws)?.tree, up.tree("feature/x")?);
    assert_clean(&ws)?;
    Ok(())
}

#[test]
fn unknown_or_changed_host_keys_are_refused() -> anyhow::Result<()> {
    let Some(ssh) = sshd()? else { return Ok(()) };
    let up = Upstream::new("trunk", 1)?;
    let url = RepoUrl::parse(&ssh.url(&up.path()))?;
    let dir = tempfile::tempdir()?;

    let unknown = Credentials::ssh_key(ssh.client_key()).with_known_hosts(ssh.empty_known_hosts());
    let opts = GitOptions {
        credentials: unknown,
        ..GitOptions::default()
    };
    let err = git::clone(&Source::new(url.clone()), &dir.path().join("a"), &opts)
        .expect_err("unknown host");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("is not in") && msg.contains(&format!("ssh-keyscan -p {}", ssh.port())),
        "{msg}"
    );

    // The same port listed with another key: a changed (or intercepted) host key.
    let other_pub = std::fs::read_to_string(format!("{}.pub", ssh.other_key().display()))?;
    let changed = dir.path().join("changed_known_hosts");
    std::fs::write(
        &changed,
        format!("[127.0.0.1]:{} {}", ssh.port(), other_pub),
    )?;
    let opts = GitOptions {
        credentials: Credentials::ssh_key(ssh.client_key()).with_known_hosts(&changed),
        ..GitOptions::default()
    };
    let err =
        git::clone(&Source::new(url), &dir.path().join("b"), &opts).expect_err("changed host key");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(!dir.path().join("b").exists());
    Ok(())
}

#[test]
fn a_wrong_or_missing_key_is_refused_once() -> anyhow::Result<()> {
    let Some(ssh) = sshd()? else { return Ok(()) };
    let up = Upstream::new("trunk", 1)?;
    let url = RepoUrl::parse(&ssh.url(&up.path()))?;
    let dir = tempfile::tempdir()?;

    let wrong = Credentials::ssh_key(ssh.other_key()).with_known_hosts(ssh.known_hosts());
    let opts = GitOptions {
        credentials: wrong,
        ..GitOptions::default()
    };
    let err =
        git::clone(&Source::new(url.clone()), &dir.path().join("a"), &opts).expect_err("wrong key");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("refused the ssh key"), "{err}");

    let missing = dir.path().join("no-such-key");
    let opts = GitOptions {
        credentials: Credentials::ssh_key(&missing).with_known_hosts(ssh.known_hosts()),
        ..GitOptions::default()
    };
    let err = git::clone(&Source::new(url.clone()), &dir.path().join("m"), &opts)
        .expect_err("missing key file");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");

    let none = Credentials::none().with_known_hosts(ssh.known_hosts());
    let opts = GitOptions {
        credentials: none,
        ..GitOptions::default()
    };
    let err = git::clone(&Source::new(url), &dir.path().join("b"), &opts).expect_err("no key");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("requires an ssh key"), "{err}");
    Ok(())
}

/// A long deadline with a 1000 B/s low-speed limit over a 2 s window: a stall must
/// fail on the window, long before the deadline.
fn low_speed_2s() -> TransferLimits {
    TransferLimits::within(Duration::from_secs(120)).low_speed(Some(LowSpeed {
        bytes_per_sec: 1000,
        time: Duration::from_secs(2),
    }))
}

fn assert_too_slow_within_the_window(err: &Error, took: Duration) {
    assert!(
        matches!(
            err,
            Error::TooSlow { bytes_per_sec: 1000, window, .. } if *window == Duration::from_secs(2)
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("the server sent less than 1000 B/s for 2s"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "failed after {took:?}"
    );
}

#[test]
fn an_ssh_server_that_never_answers_fails_as_too_slow_within_the_window() -> anyhow::Result<()> {
    // Accepts the connection and never answers: libssh2 waits for the server's banner.
    let stalled = TrickleProxy::stall()?;
    let url = RepoUrl::parse(&format!("ssh://git@{}/x.git", stalled.addr()))?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    let opts = GitOptions {
        limits: low_speed_2s(),
        ..GitOptions::default()
    };
    let t = Instant::now();
    let err = git::clone(&Source::new(url.clone()), &ws, &opts).expect_err("too slow");
    assert_too_slow_within_the_window(&err, t.elapsed());
    assert!(!ws.exists(), "the failed clone removed what it created");

    // ls-remote too.
    let t = Instant::now();
    let err = git::remote_default_branch_with(&url, &opts).expect_err("too slow");
    assert_too_slow_within_the_window(&err, t.elapsed());
    Ok(())
}

#[test]
fn cancelling_stops_an_ssh_clone_stalled_in_the_handshake_within_a_second() -> anyhow::Result<()> {
    let stalled = TrickleProxy::stall()?;
    let url = RepoUrl::parse(&format!("ssh://git@{}/x.git", stalled.addr()))?;
    let dir = tempfile::tempdir()?;
    // The destination exists (empty): a failed clone empties it but leaves it.
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws)?;
    let cancel = CancelToken::new();
    let opts = GitOptions {
        cancel: Some(cancel.clone()),
        limits: TransferLimits::within(Duration::from_secs(120)),
        ..GitOptions::default()
    };
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        cancel.cancel();
    });
    let t = Instant::now();
    let err = git::clone(&Source::new(url), &ws, &opts).expect_err("cancelled");
    let took = t.elapsed();
    canceller
        .join()
        .map_err(|_| anyhow::anyhow!("canceller panicked"))?;
    assert!(matches!(&err, Error::Cancelled { .. }), "{err:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(2),
        "stopped after {took:?}"
    );
    assert!(ws.is_dir() && std::fs::read_dir(&ws)?.next().is_none());
    Ok(())
}

/// 2 MiB that do not compress (xorshift), so the pack outgrows any small budget.
fn incompressible(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn an_ssh_transfer_that_stalls_after_the_handshake_fails_as_too_slow() -> anyhow::Result<()> {
    let Some(ssh) = sshd()? else { return Ok(()) };
    let up = Upstream::new("trunk", 5)?;
    up.commit(
        "trunk",
        &[Change::Write("big.bin".into(), incompressible(2 << 20))],
    )?;
    // The server's side of the handshake, authentication and ref advertisement is a
    // few KiB; the pack is 2 MiB. The proxy stops forwarding in the pack.
    let budget = 256 * 1024;
    let proxy = StallProxy::start(
        format!("127.0.0.1:{}", ssh.port()).parse()?,
        Some(budget),
        Duration::from_secs(60),
    )?;
    let port: u16 = proxy
        .url("")
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()?;
    let url = RepoUrl::parse(
        &ssh.url(&up.path())
            .replace(&format!(":{}/", ssh.port()), &format!(":{port}/")),
    )?;
    let dir = tempfile::tempdir()?;
    // The server's host key, listed for the proxy's port.
    let known = dir.path().join("known_hosts");
    std::fs::write(
        &known,
        std::fs::read_to_string(ssh.known_hosts())?
            .replace(&format!("]:{} ", ssh.port()), &format!("]:{port} ")),
    )?;
    let opts = GitOptions {
        credentials: Credentials::ssh_key(ssh.client_key()).with_known_hosts(&known),
        limits: low_speed_2s(),
        ..GitOptions::default()
    };
    let ws = dir.path().join("ws");
    let t = Instant::now();
    let err = git::clone(&Source::new(url.clone()), &ws, &opts).expect_err("too slow");
    assert_too_slow_within_the_window(&err, t.elapsed());
    assert_eq!(proxy.stalls(), 1, "the transfer stalled in the proxy");
    assert!(!ws.exists(), "the failed clone removed what it created");

    // Without the stall the same clone through the proxy succeeds.
    proxy.set_budget(None);
    git::clone(&Source::new(url), &ws, &opts)?;
    assert_eq!(proxy.stalls(), 1);
    Ok(())
}
