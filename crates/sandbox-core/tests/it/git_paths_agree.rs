//! For every combination of {branch given, default branch, new branch}, the cold path
//! (clone) and the prebuilt path (clone of an older state, then sync) end with the
//! same HEAD name, the same commit and the same tree.

use sandbox_core::git::{self, GitOptions};
use test_support::{Change, Upstream};

use crate::common::{Via, assert_clean, serve, source, state};

#[test]
fn cold_and_prebuilt_paths_agree_for_every_branch_combination() -> anyhow::Result<()> {
    let combos: [(Option<&str>, Option<&str>); 4] = [
        (None, None),                         // default branch
        (Some("feature/x"), None),            // branch given
        (None, Some("hs/new-task")),          // new branch from the default branch
        (Some("feature/x"), Some("hs/on-x")), // new branch from a given branch
    ];
    for via in [Via::Daemon, Via::Http] {
        for (branch, new_branch) in combos {
            let up = Upstream::new("trunk", 30)?;
            up.create_branch("feature/x", "trunk")?;
            up.advance("feature/x", 2)?;
            let (_server, url) = serve(&up, via)?;
            let dir = tempfile::tempdir()?;

            // The snapshot: cloned on the default branch at an older state.
            let prebuilt = dir.path().join("prebuilt");
            git::clone(
                &source(&url, None, None)?,
                &prebuilt,
                &GitOptions::default(),
            )?;
            std::fs::write(prebuilt.join("left-by-recipe.txt"), "stray")?;

            // Upstream moves on, on both branches, including a deletion.
            up.advance("trunk", 3)?;
            up.commit("trunk", &[Change::Delete(Upstream::file_path(0))])?;
            up.advance("feature/x", 4)?;

            let src = source(&url, branch, new_branch)?;
            let warm = git::sync(&src, &prebuilt, &GitOptions::default())?;
            let cold_dir = dir.path().join("cold");
            let cold = git::clone(&src, &cold_dir, &GitOptions::default())?;

            let label = format!("{via:?} branch={branch:?} new_branch={new_branch:?}");
            assert_eq!(warm.head, cold.head, "{label}");
            let (w, c) = (state(&prebuilt)?, state(&cold_dir)?);
            assert_eq!(w, c, "{label}");
            let base = branch.unwrap_or("trunk");
            assert_eq!(w.branch, new_branch.unwrap_or(base), "{label}");
            assert_eq!(w.commit, up.tip(base)?, "{label}");
            assert_eq!(w.tree, up.tree(base)?, "{label}");
            assert_clean(&prebuilt)?;
            assert_clean(&cold_dir)?;
        }
    }
    Ok(())
}
