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
