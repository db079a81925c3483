//! git over ssh against a loopback OpenSSH `sshd`: key authentication, host keys
//! checked against `known_hosts` (unknown and changed keys refused), wrong or missing
//! keys refused without a retry loop.

use sandbox_core::git::{self, GitOptions};
use sandbox_core::{Credentials, Error, RepoUrl, Source};
use test_support::{SshServer, Upstream, git_in, ssh_unavailable};

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
