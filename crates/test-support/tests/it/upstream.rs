//! `Upstream` builds what it says: default branch, files, commits, branches, rewrites.

use test_support::{Change, Upstream, git, git_in};

#[test]
fn upstream_has_the_default_branch_files_and_history_asked_for() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 250)?;
    assert_eq!(up.branches()?, vec!["trunk".to_owned()]);
    assert_eq!(up.git(&["symbolic-ref", "HEAD"])?, "refs/heads/trunk");
    let files = up.git(&["ls-tree", "-r", "--name-only", "trunk"])?;
    assert_eq!(files.lines().count(), 251, "250 files and a README");
    assert!(files.lines().any(|f| f == Upstream::file_path(249)));

    let before = up.tip("trunk")?;
    let after = up.advance("trunk", 7)?;
    assert_eq!(
        up.git(&["rev-list", "--count", &format!("{before}..{after}")])?,
        "7"
    );

    up.create_branch("feature/x", "trunk")?;
    assert_eq!(up.tip("feature/x")?, after);
    let old = up.advance("feature/x", 2)?;
    let new = up.rewrite("feature/x", &[Change::write("r.txt", "r\n")])?;
    assert!(
        up.git(&["merge-base", "--is-ancestor", &old, &new])
            .is_err(),
        "old tip no longer reachable"
    );
    assert_eq!(
        up.git(&["rev-parse", &format!("{new}^")])?,
        up.git(&["rev-parse", &format!("{old}^")])?
    );

    up.delete_branch("feature/x")?;
    assert_eq!(up.try_tip("feature/x")?, None);
    up.set_default_branch("trunk")?;

    // the git CLI can clone it
    let dir = tempfile::tempdir()?;
    git(&[
        "clone",
        "--quiet",
        &up.file_url(),
        &dir.path().join("c").display().to_string(),
    ])?;
    assert_eq!(
        git_in(&dir.path().join("c"), &["rev-parse", "HEAD"])?,
        after
    );
    Ok(())
}
