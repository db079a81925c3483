//! A private repository over smart HTTP whose server demands a token: works with it,
//! fails clearly without it or with a wrong one, and the token shows up nowhere: not in
//! `.git/`, not in error text, not in TRACE-level tracing output.

use std::path::Path;

use sandbox_core::git::{self, GitOptions};
use sandbox_core::{Credentials, Error, Source};
use test_support::{GitHttpServer, RedirectServer, Upstream, capture_tracing, random_token};

use crate::common::{assert_clean, source, state};

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> anyhow::Result<Vec<String>> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path)?;
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    Ok(hits)
}

#[test]
fn private_repository_works_with_the_token_and_never_leaks_it() -> anyhow::Result<()> {
    let token = random_token();
    let up = Upstream::new("trunk", 10)?;
    let server = GitHttpServer::start_with_token(up.root(), &token)?;
    let url = sandbox_core::RepoUrl::parse(&server.url(up.name()))?;
    let opts = GitOptions {
        credentials: Credentials::token(token.clone()),
        ..GitOptions::default()
    };
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");

    let (result, log) = capture_tracing(|| git::clone(&Source::new(url.clone()), &ws, &opts));
    let out = result?;
    assert_eq!(out.head.commit, up.tip("trunk")?);
    assert_clean(&ws)?;
    let reqs = server.requests();
    assert!(
        reqs.iter().any(|r| r.status == 401),
        "the server did demand credentials: {reqs:#?}"
    );
    assert!(reqs.iter().any(|r| r.had_authorization && r.status == 200));

    // sync with the token too
    up.create_branch("feature/x", "trunk")?;
    let tip = up.advance("feature/x", 2)?;
    let src = source(&url, Some("feature/x"), None)?;
    let (result, log2) = capture_tracing(|| git::sync(&src, &ws, &opts));
    assert_eq!(result?.head.commit, tip);
    assert_eq!(state(&ws)?.branch, "feature/x");

    let text = format!("{}{}", log.text(), log2.text());
    assert!(
        text.contains("cloned") && text.contains("synced"),
        "tracing was captured: {text}"
    );
    assert!(!text.contains(&token), "token in tracing output");
    assert_eq!(
        files_containing(&ws.join(".git"), &token)?,
        Vec::<String>::new(),
        "token in .git/"
    );
    assert!(
        !format!("{opts:?}").contains(&token),
        "Debug of GitOptions redacts"
    );
    Ok(())
}

#[test]
fn private_repository_without_or_with_a_wrong_token_fails_clearly() -> anyhow::Result<()> {
    let token = random_token();
    let wrong = random_token();
    let up = Upstream::new("trunk", 1)?;
    let server = GitHttpServer::start_with_token(up.root(), &token)?;
    let url = sandbox_core::RepoUrl::parse(&server.url(up.name()))?;
    let dir = tempfile::tempdir()?;

    // No token.
    let ws = dir.path().join("none");
    let (result, log) =
        capture_tracing(|| git::clone(&Source::new(url.clone()), &ws, &GitOptions::default()));
    let err = result.expect_err("no token");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("requires credentials"), "{err}");
    assert!(!ws.exists());
    assert!(!log.text().contains(&token));

    // A wrong token: libgit2 would ask again forever; we give up after one try.
    let ws = dir.path().join("wrong");
    let opts = GitOptions {
        credentials: Credentials::token(wrong.clone()),
        ..GitOptions::default()
    };
    let (result, log) = capture_tracing(|| git::clone(&Source::new(url.clone()), &ws, &opts));
    let err = result.expect_err("wrong token");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("refused the token"), "{msg}");
    for secret in [&token, &wrong] {
        assert!(!msg.contains(secret.as_str()) && !format!("{err:?}").contains(secret.as_str()));
        assert!(
            !log.text().contains(secret.as_str()),
            "secret in tracing output"
        );
    }
    let tries = server
        .requests()
        .iter()
        .filter(|r| r.had_authorization)
        .count();
    assert_eq!(tries, 1, "one attempt with the wrong token, not a loop");

    // remote_default_branch goes through the same callback
    assert_eq!(
        git::remote_default_branch(&url, &Credentials::token(token.clone()))?,
        "trunk"
    );
    assert!(matches!(
        git::remote_default_branch(&url, &Credentials::none()),
        Err(Error::AuthFailed { .. })
    ));
    Ok(())
}

#[test]
fn the_token_is_not_offered_to_a_public_server_that_does_not_ask() -> anyhow::Result<()> {
    let token = random_token();
    let up = Upstream::new("trunk", 1)?;
    let server = GitHttpServer::start(up.root())?;
    let url = sandbox_core::RepoUrl::parse(&server.url(up.name()))?;
    let opts = GitOptions {
        credentials: Credentials::token(token),
        ..GitOptions::default()
    };
    let dir = tempfile::tempdir()?;
    git::clone(&Source::new(url), &dir.path().join("ws"), &opts)?;
    assert!(server.requests().iter().all(|r| !r.had_authorization));
    Ok(())
}

#[test]
fn the_token_is_refused_to_another_host_after_a_redirect() -> anyhow::Result<()> {
    let token = random_token();
    let up = Upstream::new("trunk", 1)?;
    let private = GitHttpServer::start_with_token(up.root(), &token)?;
    // The repository URL names 127.0.0.1; it redirects to `localhost`, another host
    // name, whose server asks for credentials: the token must not be offered there.
    let other_host = format!("http://localhost:{}", private.addr().port());
    let redirector = GitHttpServer::start_redirect(&other_host)?;
    let url = sandbox_core::RepoUrl::parse(&redirector.url(up.name()))?;
    let opts = GitOptions {
        credentials: Credentials::token(token.clone()),
        ..GitOptions::default()
    };
    let dir = tempfile::tempdir()?;
    let (result, log) =
        capture_tracing(|| git::clone(&Source::new(url), &dir.path().join("ws"), &opts));
    let err = result.expect_err("token withheld from another host");
    assert!(
        redirector.requests().iter().any(|r| r.status == 302),
        "the redirect happened"
    );
    assert!(
        private.requests().iter().any(|r| r.status == 401),
        "the other host asked"
    );
    assert!(
        private.requests().iter().all(|r| !r.had_authorization),
        "and got no token"
    );
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("another origin"), "{err}");
    assert!(!log.text().contains(&token));
    Ok(())
}

/// A token limited to one host (`GITHUB_TOKEN` is for github.com) is not handed to
/// another server that asks for credentials: an attacker's URL gets nothing.
#[test]
fn a_token_limited_to_one_host_is_withheld_from_any_other() -> anyhow::Result<()> {
    let token = random_token();
    let up = Upstream::new("trunk", 1)?;
    let server = GitHttpServer::start_with_token(up.root(), &token)?;
    let url = sandbox_core::RepoUrl::parse(&server.url(up.name()))?;
    let opts = GitOptions {
        credentials: Credentials::token(token.clone()).with_token_only_for("github.com"),
        ..GitOptions::default()
    };
    let dir = tempfile::tempdir()?;
    let (result, log) =
        capture_tracing(|| git::clone(&Source::new(url), &dir.path().join("ws"), &opts));
    let err = result.expect_err("token withheld");
    assert!(
        server.requests().iter().any(|r| r.status == 401),
        "it asked"
    );
    assert!(
        server.requests().iter().all(|r| !r.had_authorization),
        "and got no token"
    );
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("only sent to github.com"), "{err}");
    assert!(!log.text().contains(&token));
    Ok(())
}

/// Port A redirects to port B on the same host; B demands credentials. The token is
/// bound to A's exact origin, so B never sees it: neither for a clone nor for a sync
/// of a workspace whose origin is A.
#[test]
fn the_token_is_withheld_from_another_port_after_a_redirect_for_clone_and_sync()
-> anyhow::Result<()> {
    let token = random_token();
    let up = Upstream::new("trunk", 3)?;
    let b = GitHttpServer::start_with_token(up.root(), &token)?;
    let a = RedirectServer::start(&format!("http://127.0.0.1:{}", b.addr().port()))?;
    let url = sandbox_core::RepoUrl::parse(&a.url(up.name()))?;
    let opts = GitOptions {
        credentials: Credentials::token(token.clone()),
        ..GitOptions::default()
    };
    let dir = tempfile::tempdir()?;

    let ws = dir.path().join("clone");
    let (result, log) = capture_tracing(|| git::clone(&Source::new(url.clone()), &ws, &opts));
    let err = result.expect_err("the token is withheld from port B");
    assert!(a.requests().iter().any(|r| r.status == 302), "A redirected");
    assert!(b.requests().iter().any(|r| r.status == 401), "B asked");
    assert!(
        b.requests().iter().all(|r| !r.had_authorization),
        "B saw an Authorization header: {:#?}",
        b.requests()
    );
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("redirected to another origin") && msg.contains("withheld"),
        "{msg}"
    );
    assert!(!msg.contains(&token) && !log.text().contains(&token));
    assert!(!ws.exists(), "the failed clone cleaned up");

    // A workspace cloned from B directly, whose origin then names A (as a snapshot
    // taken through A would): the sync through A withholds the token as well.
    let ws = dir.path().join("sync");
    git::clone(
        &Source::new(sandbox_core::RepoUrl::parse(&b.url(up.name()))?),
        &ws,
        &opts,
    )?;
    git2::Repository::open(&ws)?.remote_set_url("origin", &url.to_string())?;
    b.clear_log();
    let err = git::sync(&Source::new(url.clone()), &ws, &opts).expect_err("withheld");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("another origin"), "{err}");
    assert!(b.requests().iter().any(|r| r.status == 401), "B asked");
    assert!(b.requests().iter().all(|r| !r.had_authorization));
    Ok(())
}

/// A server that checks the token and then redirects to another origin (a mirror):
/// libgit2 must not replay the Authorization header there, and the callback refuses
/// when the mirror asks.
#[test]
fn a_server_that_authenticates_then_redirects_does_not_pass_the_token_on() -> anyhow::Result<()> {
    let token = random_token();
    let up = Upstream::new("trunk", 1)?;
    let b = GitHttpServer::start_with_token(up.root(), &token)?;
    let a = RedirectServer::start_after_auth(&format!("http://127.0.0.1:{}", b.addr().port()))?;
    let url = sandbox_core::RepoUrl::parse(&a.url(up.name()))?;
    let opts = GitOptions {
        credentials: Credentials::token(token.clone()),
        ..GitOptions::default()
    };
    let dir = tempfile::tempdir()?;
    let err = git::clone(&Source::new(url), &dir.path().join("ws"), &opts)
        .expect_err("withheld from the mirror");
    let reqs = a.requests();
    assert!(
        reqs.iter().any(|r| r.status == 401) && reqs.iter().any(|r| r.had_authorization),
        "A asked and got the token (its own origin): {reqs:#?}"
    );
    assert!(
        b.requests().iter().all(|r| !r.had_authorization),
        "B saw an Authorization header: {:#?}",
        b.requests()
    );
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    Ok(())
}
