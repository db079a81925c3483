//! Clone and fetch (protocol v0 and v2) through the broker with no credentials on
//! the git side; the token never reaches git's config, URL or environment.

use test_support::capture_tracing;

use crate::fixture::Env;

#[test]
fn clones_and_fetches_with_v0_and_v2_holding_no_credentials() -> anyhow::Result<()> {
    let env = Env::new()?;
    let grant = env.grant()?;
    let url = grant.url(env.addr);
    assert!(url.contains("/g/") && url.ends_with("/app.git"), "{url}");
    assert!(!url.contains(&env.token));

    let dir = env.clone(&url, "work")?;
    let head = env.git_ok(Some(&dir), &["rev-parse", "HEAD"])?;
    assert_eq!(head, env.upstream.tip("main")?);
    let requests = env.server.requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.had_authorization && r.status == 200),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.git_protocol.as_deref() == Some("version=2")),
        "the clone spoke v2 and the header reached the upstream: {requests:#?}"
    );

    // v0: no Git-Protocol header upstream, and the new commit arrives
    env.server.clear_log();
    let tip = env.upstream.advance("main", 1)?;
    env.git_ok(
        Some(&dir),
        &["-c", "protocol.version=0", "fetch", "--quiet", "origin"],
    )?;
    assert_eq!(env.git_ok(Some(&dir), &["rev-parse", "origin/main"])?, tip);
    let requests = env.server.requests();
    assert!(requests.iter().any(|r| r.is_upload_pack_post()));
    assert!(
        requests.iter().all(|r| r.git_protocol.is_none()),
        "{requests:#?}"
    );

    // v2 again, explicitly
    env.server.clear_log();
    let tip = env.upstream.advance("main", 1)?;
    env.git_ok(
        Some(&dir),
        &["-c", "protocol.version=2", "fetch", "--quiet", "origin"],
    )?;
    assert_eq!(env.git_ok(Some(&dir), &["rev-parse", "origin/main"])?, tip);
    let posts = env.server.upload_pack_posts();
    assert!(!posts.is_empty());
    assert!(
        posts
            .iter()
            .all(|r| r.git_protocol.as_deref() == Some("version=2"))
    );

    // the sandbox side holds no token: not in the config, not in the remote URL
    let config = std::fs::read_to_string(dir.join(".git/config"))?;
    assert!(!config.contains(&env.token));
    assert!(!config.to_ascii_lowercase().contains("extraheader"));
    assert_eq!(
        env.git_ok(Some(&dir), &["remote", "get-url", "origin"])?,
        url
    );
    Ok(())
}

#[test]
fn gzip_request_bodies_pass_through() -> anyhow::Result<()> {
    // A fetch with many haves makes git gzip the upload-pack request body.
    let env = Env::new()?;
    let url = env.grant()?.url(env.addr);
    let dir = env.clone(&url, "work")?;
    crate::fixture::local_commits(&dir, "local", 300)?;
    env.upstream.advance("main", 1)?;
    env.server.clear_log();
    env.git_ok(
        Some(&dir),
        &["-c", "protocol.version=0", "fetch", "--quiet", "origin"],
    )?;
    let posts = env.server.upload_pack_posts();
    assert!(
        posts
            .iter()
            .any(|r| r.content_encoding.as_deref() == Some("gzip")),
        "git sent no gzip body: {posts:#?}"
    );
    assert!(posts.iter().all(|r| r.status == 200));
    assert!(
        posts
            .iter()
            .any(|r| r.content_encoding.as_deref() == Some("gzip")
                && r.upload_pack.as_ref().is_some_and(|u| u.haves >= 64)),
        "the upstream read the gzipped haves: {posts:#?}"
    );
    Ok(())
}

#[test]
fn the_token_and_the_capability_stay_out_of_the_logs() -> anyhow::Result<()> {
    let env = Env::new()?;
    let grant = env.grant()?;
    let url = grant.url(env.addr);
    let capability = url
        .split("/g/")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_default()
        .to_owned();
    assert!(capability.len() >= 32, "≥128 bits: {capability}");
    let (result, log) = capture_tracing(|| -> anyhow::Result<()> {
        let dir = env.clone(&url, "work")?;
        env.commit_on(&dir, crate::fixture::OWN_BRANCH, "logged push")?;
        env.git_ok(
            Some(&dir),
            &["push", "--quiet", "origin", crate::fixture::OWN_BRANCH],
        )?;
        env.git_fails(Some(&dir), &["push", "origin", "HEAD:main"])?;
        Ok(())
    });
    result?;
    let text = log.text();
    assert!(
        text.contains(grant.id().as_str()),
        "requests are logged by grant id: {text}"
    );
    assert!(text.contains("git-receive-pack") && text.contains("refs/heads/agent/one"));
    assert!(text.contains("refused"), "{text}");
    assert!(!text.contains(&env.token), "the token leaked into tracing");
    assert!(
        !text.contains(&capability),
        "the capability leaked into tracing"
    );
    let listed = env.broker.grants();
    assert_eq!(listed.len(), 1);
    assert!(!format!("{listed:?}").contains(&capability));
    assert!(capability.starts_with(listed[0].capability_prefix.trim_end_matches('…')));
    Ok(())
}

#[test]
fn answers_stream_through_without_waiting_for_the_end() -> anyhow::Result<()> {
    // The upstream sends its headers and a few body bytes, then stalls for 6 s: a
    // broker that buffered answers would say nothing until then.
    let env = Env::new()?;
    let stall = test_support::StallProxy::start(
        env.server.addr(),
        Some(400),
        std::time::Duration::from_secs(6),
    )?;
    let mut spec = env.spec(Env::own_branch_policy()?)?;
    spec.upstream = sandbox_core::RepoUrl::parse(&stall.url("app.git"))?;
    let url = env.broker.grant(spec)?.url(env.addr);
    let started = std::time::Instant::now();
    let first = env.rt.block_on(async {
        let mut resp = reqwest::Client::new()
            .get(format!("{url}/info/refs?service=git-upload-pack"))
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
        Ok(resp.chunk().await?.unwrap_or_default())
    })?;
    let took = started.elapsed();
    assert!(!first.is_empty());
    assert!(
        took < std::time::Duration::from_secs(3),
        "the first bytes came after {took:?}: buffered, not streamed"
    );
    assert!(stall.stalls() >= 1, "the upstream answer did stall");
    Ok(())
}
