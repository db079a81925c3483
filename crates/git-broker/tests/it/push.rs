//! Pushes through the broker: the own branch goes through; the default branch, tags,
//! deletions and mixed pushes are refused with the reason in `git push`'s output and
//! never reach the upstream; patterns widen the policy.

use crate::fixture::{Env, OWN_BRANCH};

const REJECTED_MAIN: &str = "(headstart: pushing to main is not allowed for this sandbox)";

#[test]
fn pushes_its_own_branch_and_nothing_else() -> anyhow::Result<()> {
    let env = Env::new()?;
    let url = env.grant()?.url(env.addr);
    let dir = env.clone(&url, "work")?;
    let main_before = env.upstream.tip("main")?;

    let commit = env.commit_on(&dir, OWN_BRANCH, "agent work")?;
    env.git_ok(Some(&dir), &["push", "--quiet", "origin", OWN_BRANCH])?;
    assert_eq!(
        env.upstream.tip(OWN_BRANCH)?,
        commit,
        "the upstream got the commit"
    );
    let posts: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.service.as_deref() == Some("git-receive-pack"))
        .collect();
    assert_eq!(posts.len(), 1);
    assert!(posts[0].had_authorization && posts[0].status == 200);

    // the default branch
    let stderr = env.git_fails(Some(&dir), &["push", "origin", "HEAD:main"])?;
    assert!(stderr.contains("[remote rejected]"), "{stderr}");
    assert!(stderr.contains(REJECTED_MAIN), "{stderr}");
    assert!(!stderr.contains("RPC failed"), "{stderr}");
    assert_eq!(env.upstream.tip("main")?, main_before);

    // a tag
    env.git_ok(Some(&dir), &["tag", "v1"])?;
    let stderr = env.git_fails(Some(&dir), &["push", "origin", "v1"])?;
    assert!(
        stderr.contains("(headstart: pushing tag v1 is not allowed for this sandbox)"),
        "{stderr}"
    );
    assert!(
        env.upstream
            .git(&["rev-parse", "--verify", "refs/tags/v1"])
            .is_err()
    );

    // deleting even the own branch
    let stderr = env.git_fails(Some(&dir), &["push", "origin", &format!(":{OWN_BRANCH}")])?;
    assert!(
        stderr
            .contains("(headstart: deleting refs/heads/agent/one is not allowed for this sandbox)"),
        "{stderr}"
    );
    assert_eq!(env.upstream.tip(OWN_BRANCH)?, commit);

    // one refused ref refuses the whole push
    let next = env.commit_on(&dir, OWN_BRANCH, "more agent work")?;
    let stderr = env.git_fails(Some(&dir), &["push", "origin", OWN_BRANCH, "HEAD:main"])?;
    assert!(stderr.contains(REJECTED_MAIN), "{stderr}");
    assert!(
        stderr.contains("another ref of this push was refused"),
        "{stderr}"
    );
    assert_eq!(env.upstream.tip(OWN_BRANCH)?, commit, "nothing was applied");
    assert_eq!(env.upstream.tip("main")?, main_before);

    // and alone it goes through
    env.git_ok(Some(&dir), &["push", "--quiet", "origin", OWN_BRANCH])?;
    assert_eq!(env.upstream.tip(OWN_BRANCH)?, next);
    Ok(())
}

#[test]
fn patterns_widen_the_policy() -> anyhow::Result<()> {
    let env = Env::new()?;
    let policy = Env::own_branch_policy()?
        .allow_branches("feature/*")?
        .allow_tags("v*")?
        .allow_deletes();
    let url = env.broker.grant(env.spec(policy)?)?.url(env.addr);
    let dir = env.clone(&url, "work")?;
    let commit = env.commit_on(&dir, "feature/x", "feature work")?;
    env.git_ok(Some(&dir), &["push", "--quiet", "origin", "feature/x"])?;
    assert_eq!(env.upstream.tip("feature/x")?, commit);
    env.git_ok(Some(&dir), &["tag", "v2"])?;
    env.git_ok(Some(&dir), &["push", "--quiet", "origin", "v2"])?;
    assert_eq!(env.upstream.git(&["rev-parse", "refs/tags/v2"])?, commit);
    env.git_ok(Some(&dir), &["push", "--quiet", "origin", ":feature/x"])?;
    assert_eq!(env.upstream.try_tip("feature/x")?, None);

    // still not a nested branch, nor main
    let stderr = env.git_fails(Some(&dir), &["push", "origin", "HEAD:feature/x/y"])?;
    assert!(
        stderr.contains("pushing to feature/x/y is not allowed"),
        "{stderr}"
    );
    let stderr = env.git_fails(Some(&dir), &["push", "origin", "HEAD:main"])?;
    assert!(stderr.contains(REJECTED_MAIN), "{stderr}");
    Ok(())
}

#[test]
fn a_read_only_grant_refuses_every_push() -> anyhow::Result<()> {
    let env = Env::new()?;
    let url = env
        .broker
        .grant(env.spec(git_broker::PushPolicy::read_only())?)?
        .url(env.addr);
    let dir = env.clone(&url, "work")?;
    env.commit_on(&dir, OWN_BRANCH, "work")?;
    let stderr = env.git_fails(Some(&dir), &["push", "origin", OWN_BRANCH])?;
    assert!(
        stderr.contains("(headstart: pushing to agent/one is not allowed for this sandbox)"),
        "{stderr}"
    );
    assert_eq!(env.upstream.try_tip(OWN_BRANCH)?, None);
    Ok(())
}

/// `git pack-objects` of what `new` has over `old`.
fn pack_between(dir: &std::path::Path, new: &str, old: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = test_support::git_command()
        .arg("-C")
        .arg(dir)
        .args(["pack-objects", "--stdout", "--revs", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("pack-objects stdin"))?;
    stdin.write_all(format!("{new}\n^{old}\n").as_bytes())?;
    drop(stdin);
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "git pack-objects failed");
    Ok(out.stdout)
}

/// A receive-pack request body (one command, `report-status` only), gzipped.
fn gzipped_push(old: &str, new: &str, refname: &str, pack: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let line = format!("{old} {new} {refname}\0report-status agent=test\n");
    let mut body = format!("{:04x}{line}0000", line.len() + 4).into_bytes();
    body.extend_from_slice(pack);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body)?;
    Ok(gz.finish()?)
}

#[test]
fn a_gzipped_push_is_read_checked_and_forwarded_gunzipped() -> anyhow::Result<()> {
    // git itself never gzips a push; other clients may.
    let env = Env::new()?;
    let url = env.grant()?.url(env.addr);
    let dir = env.clone(&url, "work")?;
    let old = env.git_ok(Some(&dir), &["rev-parse", "HEAD"])?;
    let new = env.commit_on(&dir, OWN_BRANCH, "gzipped push")?;
    let pack = pack_between(&dir, &new, &old)?;
    let post = |body: Vec<u8>| -> anyhow::Result<(u16, String)> {
        let client = reqwest::Client::new();
        let target = format!("{url}/git-receive-pack");
        env.rt.block_on(async move {
            let resp = client
                .post(target)
                .header("Content-Type", "application/x-git-receive-pack-request")
                .header("Content-Encoding", "gzip")
                .body(body)
                .send()
                .await?;
            let status = resp.status().as_u16();
            let text = String::from_utf8_lossy(&resp.bytes().await?).into_owned();
            Ok((status, text))
        })
    };

    env.server.clear_log();
    let (status, answer) = post(gzipped_push(&old, &new, "refs/heads/main", &pack)?)?;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("unpack ok\n")
            && answer.contains("ng refs/heads/main headstart: pushing to main"),
        "{answer:?}"
    );
    assert!(
        env.server.requests().is_empty(),
        "a refused push never reaches the upstream"
    );

    let zero = "0".repeat(40);
    let (status, answer) = post(gzipped_push(&zero, &new, "refs/heads/agent/one", &pack)?)?;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("ok refs/heads/agent/one"), "{answer:?}");
    assert_eq!(env.upstream.tip(OWN_BRANCH)?, new);
    let posts = env.server.requests();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].content_encoding, None, "forwarded gunzipped");
    Ok(())
}

#[test]
fn large_pushes_stream_after_gits_probe() -> anyhow::Result<()> {
    // Above http.postBuffer git first POSTs a bare flush (a probe), then the push
    // chunked.
    let env = Env::new()?;
    let url = env.grant()?.url(env.addr);
    let dir = env.clone(&url, "work")?;
    env.git_ok(Some(&dir), &["checkout", "--quiet", "-b", OWN_BRANCH])?;
    let mut big = Vec::with_capacity(600_000);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while big.len() < 600_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(dir.join("big.bin"), &big)?;
    env.git_ok(Some(&dir), &["add", "big.bin"])?;
    env.git_ok(Some(&dir), &["commit", "--quiet", "-m", "big"])?;
    let commit = env.git_ok(Some(&dir), &["rev-parse", "HEAD"])?;

    let stderr = env.git_fails(
        Some(&dir),
        &["-c", "http.postBuffer=65536", "push", "origin", "HEAD:main"],
    )?;
    assert!(stderr.contains(REJECTED_MAIN), "{stderr}");

    env.server.clear_log();
    env.git_ok(
        Some(&dir),
        &[
            "-c",
            "http.postBuffer=65536",
            "push",
            "--quiet",
            "origin",
            OWN_BRANCH,
        ],
    )?;
    assert_eq!(env.upstream.tip(OWN_BRANCH)?, commit);
    let posts: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert!(
        posts.iter().any(|r| r.chunked),
        "the push was streamed chunked: {posts:#?}"
    );
    Ok(())
}
