//! One repository, any URL form: a workspace snapshotted over one transport syncs over
//! another (git daemon and smart HTTP serving the same bare repository), `origin`
//! becomes the URL given; another repository stays a mismatch, and a dead port is a
//! network error, not a mismatch.

use sandbox_core::git::{self, GitOptions};
use sandbox_core::{Error, RepoUrl, Source};
use test_support::{GitDaemon, GitHttpServer, Upstream};

use crate::common::{assert_clean, state};

fn origin_url(ws: &std::path::Path) -> anyhow::Result<String> {
    let repo = git2::Repository::open(ws)?;
    let remote = repo.find_remote("origin")?;
    Ok(remote.url().unwrap_or_default().to_owned())
}

#[test]
fn a_snapshot_taken_over_http_syncs_over_git_and_back() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 5)?;
    let http = GitHttpServer::start(up.root())?;
    let daemon = GitDaemon::start(up.root())?;
    let http_url = RepoUrl::parse(&http.url(up.name()))?;
    // The same repository without `.git`, over git:// on another port.
    let git_url = RepoUrl::parse(daemon.url(up.name()).trim_end_matches(".git"))?;
    assert!(http_url.same_repository(&git_url));
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    git::clone(&Source::new(http_url.clone()), &ws, &GitOptions::default())?;

    let tip = up.advance("trunk", 2)?;
    http.clear_log();
    let out = git::sync(&Source::new(git_url.clone()), &ws, &GitOptions::default())?;
    assert_eq!(out.head.commit, tip);
    assert_eq!(state(&ws)?.commit, tip);
    assert_clean(&ws)?;
    assert_eq!(
        origin_url(&ws)?,
        git_url.to_string(),
        "origin is the URL given"
    );
    assert!(
        http.requests().is_empty(),
        "fetched from git://, not from the old origin"
    );

    let tip = up.advance("trunk", 1)?;
    let out = git::sync(&Source::new(http_url.clone()), &ws, &GitOptions::default())?;
    assert_eq!(out.head.commit, tip);
    assert_eq!(origin_url(&ws)?, http_url.to_string());
    assert!(!http.requests().is_empty());
    Ok(())
}

#[test]
fn another_repository_is_a_mismatch_and_a_dead_port_a_network_error() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    let http = GitHttpServer::start(up.root())?;
    let url = RepoUrl::parse(&http.url(up.name()))?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    git::clone(&Source::new(url.clone()), &ws, &GitOptions::default())?;
    let before = state(&ws)?;

    // Another path on the same server: another repository, refused before any request.
    http.clear_log();
    let other = RepoUrl::parse(&http.url("other.git"))?;
    let err = git::sync(&Source::new(other), &ws, &GitOptions::default()).expect_err("mismatch");
    assert!(matches!(err, Error::OriginMismatch { .. }), "{err:?}");
    assert!(http.requests().is_empty());

    // The same repository on a port nobody listens on: the network error.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dead_url = RepoUrl::parse(&format!("http://127.0.0.1:{dead}/{}", up.name()))?;
    let err = git::sync(&Source::new(dead_url), &ws, &GitOptions::default()).expect_err("dead");
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    assert_eq!(state(&ws)?, before);
    assert_eq!(
        origin_url(&ws)?,
        url.to_string(),
        "a failed sync leaves origin as it was"
    );
    Ok(())
}
