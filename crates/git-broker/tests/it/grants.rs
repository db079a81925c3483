//! Grant lifecycle: bound to one repository, expiry, revocation, unknown
//! capabilities, and grants saved without tokens that ask for re-registration.

use std::os::unix::fs::PermissionsExt as _;

use git_broker::Broker;
use sandbox_core::Credentials;
use test_support::Upstream;

use crate::fixture::{Env, REGISTER_HINT, RENEW_HINT};

#[test]
fn a_grant_reaches_only_its_own_repository() -> anyhow::Result<()> {
    let env = Env::new()?;
    let url = env.grant()?.url(env.addr);
    let other = url.replace("/app.git", "/other.git");
    let stderr = env.git_fails(None, &["ls-remote", &other])?;
    assert!(
        stderr.contains("headstart: this grant is for app.git only, not other.git"),
        "{stderr}"
    );
    let nested = url.replace("/app.git", "/app.git/../other.git");
    env.git_fails(None, &["ls-remote", &nested])?;
    // its own repository, with or without `.git`
    env.git_ok(None, &["ls-remote", url.trim_end_matches(".git")])?;
    assert!(
        env.server
            .requests()
            .iter()
            .all(|r| r.path.starts_with("/app.git/"))
    );

    let unknown = url.replace("/g/", "/g/0000");
    let stderr = env.git_fails(None, &["ls-remote", &unknown])?;
    assert!(stderr.contains("knows no such grant"), "{stderr}");
    Ok(())
}

#[test]
fn expired_and_revoked_grants_answer_403_with_a_message() -> anyhow::Result<()> {
    let env = Env::new()?;
    let mut spec = env.spec(Env::own_branch_policy()?)?;
    spec.expires_at = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let expired = env.broker.grant(spec)?.url(env.addr);
    let stderr = env.git_fails(None, &["ls-remote", &expired])?;
    assert!(
        stderr.contains("remote: headstart: this grant expired"),
        "{stderr}"
    );
    assert!(stderr.contains(RENEW_HINT), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");

    let grant = env.grant()?;
    let url = grant.url(env.addr);
    let dir = env.clone(&url, "work")?;
    env.broker.revoke(grant.id())?;
    let stderr = env.git_fails(Some(&dir), &["fetch", "origin"])?;
    assert!(
        stderr.contains("headstart: this grant was revoked"),
        "{stderr}"
    );
    assert!(stderr.contains(RENEW_HINT), "{stderr}");
    let listed = env.broker.grants();
    assert!(
        listed
            .iter()
            .any(|g| &g.id == grant.id() && g.revoked && !g.has_credentials)
    );
    Ok(())
}

#[test]
fn saved_grants_reload_without_tokens_until_registered() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let file = state.path().join("grants.json");
    let env = Env::with_broker(Broker::with_state_file(&file)?, Upstream::new("main", 5)?)?;
    let grant = env.grant()?;
    env.git_ok(None, &["ls-remote", &grant.url(env.addr)])?;

    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved = std::fs::read_to_string(&file)?;
    assert!(!saved.contains(&env.token), "the token was written to disk");
    assert!(saved.contains(grant.id().as_str()));

    // a restarted broker: same file, same URL path, no token
    let reloaded = Broker::new()?;
    assert_eq!(reloaded.load_grants(&file)?, 1);
    let addr = env.serve(reloaded.clone())?;
    let url = grant.url(addr);
    let stderr = env.git_fails(None, &["ls-remote", &url])?;
    assert!(stderr.contains("re-register credentials"), "{stderr}");
    assert!(stderr.contains(REGISTER_HINT), "{stderr}");
    assert!(reloaded.grants().iter().all(|g| !g.has_credentials));

    reloaded.register_token(grant.id(), Credentials::token(env.token.clone()))?;
    let listed = env.git_ok(None, &["ls-remote", &url])?;
    assert!(listed.contains("refs/heads/main"), "{listed}");

    // a wrong token is the upstream's 401, shown as a refusal (git must not prompt)
    reloaded.register_token(grant.id(), Credentials::token("wrong-token-value"))?;
    let stderr = env.git_fails(None, &["ls-remote", &url])?;
    assert!(
        stderr.contains("the upstream refused the grant's credentials"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_redirect_to_another_origin_is_not_followed() -> anyhow::Result<()> {
    let env = Env::new()?;
    // the same upstream under another origin (host name), as a hijacked redirect would be
    let elsewhere = format!("http://localhost:{}", env.server.addr().port());
    let redirect = test_support::RedirectServer::start(&elsewhere)?;
    let mut spec = env.spec(Env::own_branch_policy()?)?;
    spec.upstream = sandbox_core::RepoUrl::parse(&redirect.url("app.git"))?;
    let url = env.broker.grant(spec)?.url(env.addr);
    let stderr = env.git_fails(None, &["ls-remote", &url])?;
    assert!(stderr.contains("redirected to another origin"), "{stderr}");
    let seen = redirect.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].had_authorization,
        "the redirecting upstream got the token (its own origin)"
    );
    assert!(
        env.server.requests().is_empty(),
        "the other origin was never contacted"
    );
    Ok(())
}

#[test]
fn a_renewed_grant_keeps_its_url_and_gets_the_new_token_expiry_and_policy() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let file = state.path().join("grants.json");
    let env = Env::with_broker(Broker::with_state_file(&file)?, Upstream::new("main", 3)?)?;
    let mut spec = env.spec(git_broker::PushPolicy::read_only())?;
    spec.expires_at = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let grant = env.broker.grant(spec)?;
    let url = grant.url(env.addr);
    env.git_fails(None, &["ls-remote", &url])?; // expired

    // reloaded without a token, then renewed: same URL, works again, later expiry
    let reloaded = Broker::new()?;
    reloaded.load_grants(&file)?;
    let addr = env.serve(reloaded.clone())?;
    let renewed = reloaded.renew(grant.id(), env.spec(Env::own_branch_policy()?)?)?;
    assert_eq!(renewed.url(addr), grant.url(addr));
    assert!(renewed.expires_at() > time::OffsetDateTime::now_utc());
    let listed = env.git_ok(None, &["ls-remote", &renewed.url(addr)])?;
    assert!(listed.contains("refs/heads/main"), "{listed}");
    let summary = reloaded.grants();
    assert!(summary[0].has_credentials);
    assert_ne!(summary[0].push, git_broker::PushPolicy::read_only());

    // another repository cannot be renewed into it; a revoked grant not at all
    let mut other = env.spec(git_broker::PushPolicy::read_only())?;
    other.upstream = sandbox_core::RepoUrl::parse(&env.server.url("other.git"))?;
    let err = reloaded.renew(grant.id(), other).unwrap_err();
    assert_eq!(err.kind(), "other_upstream");
    reloaded.revoke(grant.id())?;
    let err = reloaded
        .renew(grant.id(), env.spec(git_broker::PushPolicy::read_only())?)
        .unwrap_err();
    assert_eq!(err.kind(), "grant_revoked");
    env.git_fails(None, &["ls-remote", &renewed.url(addr)])?;
    Ok(())
}
