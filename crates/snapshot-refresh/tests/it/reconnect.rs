//! `FastStart` reconnecting to a sandbox whose request differs: `new_branch` and
//! untracked files, through the library (the CLI tests cover the rest end to end).

use sandbox_core::{BranchName, ConnectOptions, SandboxName, Source, StartPath};
use snapshot_refresh::{Eligibility, Error};
use test_support::Upstream;

use crate::Rig;

fn named(n: &str) -> ConnectOptions {
    ConnectOptions::new().name(SandboxName::new(n).unwrap())
}

#[tokio::test]
async fn new_branch_on_reconnect_is_kept_created_when_clean_and_untracked_files_refuse() {
    let up = Upstream::new("main", 3).unwrap();
    let url = up.file_url();
    let rig = Rig::new();
    let fast = rig.fast().eligibility(Eligibility::none());
    let feat = Source::parse(&url)
        .unwrap()
        .with_new_branch(BranchName::new("feat").unwrap())
        .unwrap();
    let a = fast.start(&feat, &named("nb")).await.unwrap();
    assert_eq!(a.report.head.as_ref().unwrap().branch, "feat");
    let ws = a.sandbox.workspace().to_path_buf();

    // already on it: as it is (no error although the branch exists now)
    let b = fast.start(&feat, &named("nb")).await.unwrap();
    assert_eq!(b.report.path, StartPath::Reconnected);
    assert!(b.report.phases.is_empty(), "no git: {:?}", b.report.phases);
    assert!(b.report.reason.contains("as asked"), "{}", b.report.reason);

    // an untracked file would be removed by a switch: refused, file kept
    std::fs::write(ws.join("scratch.txt"), "mine").unwrap();
    let other = Source::parse(&url)
        .unwrap()
        .with_new_branch(BranchName::new("feat2").unwrap())
        .unwrap();
    let err = fast.start(&other, &named("nb")).await.unwrap_err();
    assert!(
        matches!(err, Error::Refused(_)) && err.is_user_error(),
        "{err}"
    );
    assert!(err.to_string().contains("scratch.txt"), "{err}");
    assert!(ws.join("scratch.txt").exists());

    // clean again: the new branch is made from the base's tip
    std::fs::remove_file(ws.join("scratch.txt")).unwrap();
    let c = fast.start(&other, &named("nb")).await.unwrap();
    assert_eq!(c.report.path, StartPath::Reconnected);
    let head = c.report.head.clone().unwrap();
    assert_eq!(head.branch, "feat2");
    assert_eq!(head.commit, up.tip("main").unwrap());
    assert!(c.report.reason.contains("switched"), "{}", c.report.reason);
    assert_eq!(c.repository.as_deref(), Some(url.as_str()));
}

/// Starts of one name asking for different branches at the same time: each waits for
/// the switch in progress, so none sees another's half-done checkout as local changes
/// (or collides on git's own lock files), and the workspace ends clean.
#[tokio::test]
async fn concurrent_reconnects_asking_for_different_branches_switch_one_at_a_time() {
    let up = Upstream::new("main", 300).unwrap();
    up.create_branch("other", "main").unwrap();
    up.commit(
        "other",
        &(0..300)
            .map(|i| {
                test_support::Change::Write(Upstream::file_path(i), format!("other {i}\n").into())
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let url = up.file_url();
    let rig = Rig::new();
    let fast = std::sync::Arc::new(rig.fast().eligibility(Eligibility::none()));
    let first = fast
        .start(&Source::parse(&url).unwrap(), &named("m2"))
        .await
        .unwrap();
    let ws = first.sandbox.workspace().to_path_buf();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let fast = fast.clone();
            let branch = if i % 2 == 0 { "other" } else { "main" };
            let source = Source::parse(&url)
                .unwrap()
                .with_branch(BranchName::new(branch).unwrap())
                .unwrap();
            tokio::spawn(async move { (branch, fast.start(&source, &named("m2")).await) })
        })
        .collect();
    for t in tasks {
        let (branch, started) = t.await.unwrap();
        let started = started.unwrap_or_else(|e| panic!("a start of {branch} failed: {e}"));
        assert_eq!(started.report.path, StartPath::Reconnected);
        assert_eq!(started.report.head.unwrap().branch, branch);
    }
    let status = test_support::git_in(&ws, &["status", "--porcelain"]).unwrap();
    assert!(status.trim().is_empty(), "{status}");
}
