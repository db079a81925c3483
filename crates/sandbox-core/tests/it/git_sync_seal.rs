//! Clean seals: a snapshot proved clean when captured ([`git::seal_clean`]) lets the
//! warm sync skip the walk proving it again, only while HEAD and the index are the
//! sealed ones. Every result is compared file by file with a cold clone; a workspace
//! written after its seal must take the walk (and the full route when dirty), never
//! keep a local change.

use std::path::Path;

use sandbox_core::git::{self, CleanSeal, GitOptions};
use sandbox_core::{RepoUrl, Source};
use test_support::{Change, Upstream, capture_tracing, git_in};

use crate::common::{Via, assert_clean, commit_in, serve, state};
use crate::git_sync_paths::{files, snapshot, upstream};

const SEAL_HOLDS: &str = "the snapshot's clean seal holds";
const SEAL_STALE: &str = "the snapshot's clean seal does not match";
const WALK: &str = "checked the worktree against HEAD";

/// Syncs `ws` with `seal` and returns the engine's log.
fn sync_sealed(src: &Source, ws: &Path, seal: &CleanSeal) -> anyhow::Result<String> {
    let opts = GitOptions {
        clean_seal: Some(seal.clone()),
        ..GitOptions::default()
    };
    let (result, log) = capture_tracing(|| git::sync(src, ws, &opts));
    result?;
    Ok(log.text())
}

/// Asserts `ws` holds exactly what a cold clone of `src` holds (besides `build/`),
/// with index stat data that matches the files (`git diff-files` does not refresh the
/// index: an entry whose stat data is wrong is listed).
fn assert_like_cold_clone(src: &Source, ws: &Path, scratch: &Path) -> anyhow::Result<()> {
    let stale = git_in(ws, &["diff-files", "--name-only"])?;
    assert!(stale.is_empty(), "index stat data does not match:\n{stale}");
    let cold = scratch.join("cold");
    git::clone(src, &cold, &GitOptions::default())?;
    assert_eq!(state(ws)?, state(&cold)?);
    assert_clean(ws)?;
    assert_eq!(files(ws, &["build"])?, files(&cold, &[])?);
    Ok(())
}

#[test]
fn a_sealed_snapshot_skips_the_walk_and_equals_a_cold_clone() -> anyhow::Result<()> {
    for via in [Via::File, Via::Http] {
        let up = upstream()?;
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = snapshot(&url, dir.path())?;
        let seal = git::seal_clean(&ws)?.expect("a fresh clone is clean");
        up.commit(
            "trunk",
            &[
                Change::write(&Upstream::file_path(1), "rewritten\n"),
                Change::Delete(Upstream::file_path(2)),
                Change::write("new/deep/added.txt", "added\n"),
                Change::Delete("small/a.txt".into()),
                Change::Delete("small/b/c.txt".into()),
            ],
        )?;
        up.advance("trunk", 2)?;
        let src = Source::new(url.clone());
        let log = sync_sealed(&src, &ws, &seal)?;
        assert!(log.contains(SEAL_HOLDS), "{via:?}: {log}");
        assert!(!log.contains(WALK), "{via:?}: no status walk: {log}");
        assert!(log.contains("route=\"paths\""), "{via:?}: {log}");
        assert!(
            !ws.join("small").exists(),
            "{via:?}: emptied directory gone"
        );
        assert_eq!(
            std::fs::read_to_string(ws.join("build/cache.bin"))?,
            "built by the recipe",
            "{via:?}: ignored output kept"
        );
        assert_like_cold_clone(&src, &ws, dir.path())?;
    }
    Ok(())
}

/// Written after the seal through git (a staged change, a commit, plus an untracked
/// file): the index or HEAD no longer match, so the sync walks, sees what changed and
/// ends equal to a cold clone.
#[test]
fn a_snapshot_written_after_its_seal_takes_the_proving_walk() -> anyhow::Result<()> {
    let up = upstream()?;
    let url = RepoUrl::parse(&up.file_url())?;
    for how in ["staged", "committed", "untracked"] {
        let dir = tempfile::tempdir()?;
        let ws = snapshot(&url, dir.path())?;
        let seal = git::seal_clean(&ws)?.expect("clean");
        let changed = ws.join(Upstream::file_path(5));
        std::fs::write(&changed, "written after capture\n")?;
        git_in(&ws, &["add", &Upstream::file_path(5)])?;
        match how {
            "committed" => {
                commit_in(&ws, "x")?;
            }
            "untracked" => std::fs::write(ws.join("stray.txt"), "untracked")?,
            _ => {}
        }
        up.commit(
            "trunk",
            &[Change::write(
                &Upstream::file_path(1),
                format!("upstream {how}\n").as_str(),
            )],
        )?;
        let src = Source::new(url.clone());
        let log = sync_sealed(&src, &ws, &seal)?;
        assert!(log.contains(SEAL_STALE), "{how}: {log}");
        assert!(log.contains(WALK), "{how}: {log}");
        // a commit leaves a clean worktree (on another HEAD): the walk proves it
        let route = if how == "committed" { "paths" } else { "full" };
        assert!(log.contains(&format!("route=\"{route}\"")), "{how}: {log}");
        assert_eq!(
            std::fs::read_to_string(&changed)?,
            "file 5\nline two of file 5\n",
            "{how}: the change written after capture is gone"
        );
        assert!(!ws.join("stray.txt").exists(), "{how}");
        assert_like_cold_clone(&src, &ws, dir.path())?;
    }
    Ok(())
}

/// No seal for a workspace that is not clean; a seal names HEAD and the index.
#[test]
fn only_a_clean_workspace_is_sealed() -> anyhow::Result<()> {
    let up = upstream()?;
    let url = RepoUrl::parse(&up.file_url())?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    let seal = git::seal_clean(&ws)?.expect("clean, ignored files allowed");
    assert_eq!(seal.head, state(&ws)?.commit);
    assert_eq!(seal.index.len(), 40);
    std::fs::write(ws.join("stray.txt"), "untracked")?;
    assert_eq!(git::seal_clean(&ws)?, None, "untracked file");
    std::fs::remove_file(ws.join("stray.txt"))?;
    std::fs::write(ws.join(Upstream::file_path(3)), "modified")?;
    assert_eq!(git::seal_clean(&ws)?, None, "modified file");
    assert!(git::seal_clean(dir.path()).is_err(), "not a workspace");
    Ok(())
}

/// A branch whose tree and history share nothing with the snapshot's (an orphan
/// `gh-pages`-like branch): the sealed snapshot ends file for file equal to a cold
/// clone of that branch, every file of the old tree gone, the recipe's ignored output
/// kept.
#[test]
fn a_sealed_snapshot_switched_to_an_orphan_branch_equals_a_cold_clone() -> anyhow::Result<()> {
    for via in [Via::File, Via::Http] {
        let up = upstream()?;
        up.commit(
            "site",
            &[
                Change::write(".gitignore", "build/\n"),
                Change::write("index.html", "<h1>site</h1>\n"),
                Change::write("assets/style.css", "h1 { color: red }\n"),
            ],
        )?;
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = snapshot(&url, dir.path())?;
        let seal = git::seal_clean(&ws)?.expect("clean");
        let src = crate::common::source(&url, Some("site"), None)?;
        let log = sync_sealed(&src, &ws, &seal)?;
        assert!(log.contains(SEAL_HOLDS), "{via:?}: {log}");
        assert!(!log.contains(WALK), "{via:?}: {log}");
        assert!(
            log.contains("route=\"far\""),
            "{via:?}: written directly, as a far tree: {log}"
        );
        assert!(!ws.join("src").exists(), "{via:?}: the old tree is gone");
        assert!(
            ws.join("build/cache.bin").is_file(),
            "{via:?}: ignored kept"
        );
        assert_like_cold_clone(&src, &ws, dir.path())?;
        assert_eq!(state(&ws)?.branch, "site");
    }
    Ok(())
}

/// Every file under `dir` but `.git` and `build`: whether it is a symlink, and its
/// executable bit.
fn modes(dir: &Path) -> anyhow::Result<std::collections::BTreeMap<String, (bool, bool)>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    for rel in files(dir, &["build"])?.into_keys() {
        let m = std::fs::symlink_metadata(dir.join(&rel))?;
        let exec = !m.is_symlink() && m.permissions().mode() & 0o111 != 0;
        out.insert(rel.display().to_string(), (m.is_symlink(), exec));
    }
    Ok(out)
}

/// 100 commits ahead, pushed with the git CLI: renames, deletions, files made
/// executable, symlinks added, contents rewritten. The sealed snapshot catches up to
/// exactly what a cold clone holds: contents, link targets, executable bits.
#[test]
fn a_sealed_snapshot_100_commits_behind_with_renames_modes_and_symlinks_equals_a_cold_clone()
-> anyhow::Result<()> {
    let up = upstream()?;
    let (_server, url) = serve(&up, Via::Http)?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    let seal = git::seal_clean(&ws)?.expect("clean");

    let work = dir.path().join("work");
    git_in(
        dir.path(),
        &["clone", "-q", up.path().to_str().unwrap_or(""), "work"],
    )?;
    for i in 0..100 {
        let f = Upstream::file_path(i);
        match i % 5 {
            0 => {
                std::fs::create_dir_all(work.join("renamed"))?;
                git_in(&work, &["mv", &f, &format!("renamed/r{i:03}.txt")])?;
            }
            1 => {
                git_in(&work, &["rm", "-q", &f])?;
            }
            2 => {
                use std::os::unix::fs::PermissionsExt;
                let p = work.join(&f);
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
                git_in(&work, &["add", &f])?;
            }
            3 => {
                std::fs::create_dir_all(work.join("links"))?;
                std::os::unix::fs::symlink(format!("../{f}"), work.join(format!("links/l{i:03}")))?;
                git_in(&work, &["add", &format!("links/l{i:03}")])?;
            }
            _ => {
                std::fs::write(work.join(&f), format!("rewritten in commit {i}\n"))?;
                git_in(&work, &["add", &f])?;
            }
        }
        commit_in(&work, &format!("c{i}"))?;
    }
    git_in(&work, &["push", "-q", "origin", "trunk"])?;

    let src = Source::new(url.clone());
    let log = sync_sealed(&src, &ws, &seal)?;
    assert!(log.contains(SEAL_HOLDS), "{log}");
    assert!(!log.contains(WALK), "{log}");
    assert!(log.contains("route=\"paths\""), "written directly: {log}");
    assert_like_cold_clone(&src, &ws, dir.path())?;
    let cold = dir.path().join("cold");
    assert_eq!(modes(&ws)?, modes(&cold)?);
    let m = modes(&ws)?;
    assert_eq!(
        m.get(&Upstream::file_path(2)),
        Some(&(false, true)),
        "made executable"
    );
    assert_eq!(m.get("links/l003"), Some(&(true, false)), "symlink");
    assert!(!ws.join(Upstream::file_path(0)).exists(), "renamed away");
    assert!(ws.join("renamed/r000.txt").is_file());
    Ok(())
}
