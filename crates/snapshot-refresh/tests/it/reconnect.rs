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
