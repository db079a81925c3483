//! `sync`'s two routes to the new tree agree: a snapshot whose worktree is clean gets
//! only the paths the tree-to-tree diff names checked out (the warm path), anything
//! else (local changes, untracked files, a changed `.gitignore`) the full checkout and
//! clean. Either way index and worktree end equal to the fetched tree, untracked files
//! go and ignored ones stay. Which route ran is read from the engine's debug log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sandbox_core::git::{self, GitOptions};
use sandbox_core::{RepoUrl, Source};
use test_support::{Change, Upstream, capture_tracing, git_in};

use crate::common::{Via, assert_clean, serve, source, state};

const PATHS_ROUTE: &str = "route=\"paths\"";
const FULL_ROUTE: &str = "route=\"full\"";

/// Every file under `dir` except `.git` and `skip` (relative paths), with contents
/// (a symlink's target for links).
pub(crate) fn files(dir: &Path, skip: &[&str]) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    fn walk(
        root: &Path,
        dir: &Path,
        skip: &[&str],
        out: &mut BTreeMap<PathBuf, Vec<u8>>,
    ) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let rel = path.strip_prefix(root)?.to_path_buf();
            if rel == Path::new(".git") || skip.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                walk(root, &path, skip, out)?;
            } else if meta.is_symlink() {
                use std::os::unix::ffi::OsStrExt;
                out.insert(
                    rel,
                    std::fs::read_link(&path)?.as_os_str().as_bytes().to_vec(),
                );
            } else {
                out.insert(rel, std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, skip, &mut out)?;
    Ok(out)
}

/// Runs a sync and returns which route it took (asserting it took exactly one).
fn sync_route(src: &Source, ws: &Path) -> anyhow::Result<&'static str> {
    let (result, log) = capture_tracing(|| git::sync(src, ws, &GitOptions::default()));
    result?;
    let text = log.text();
    let route = match (text.contains(PATHS_ROUTE), text.contains(FULL_ROUTE)) {
        (true, false) => PATHS_ROUTE,
        (false, true) => FULL_ROUTE,
        other => anyhow::bail!("expected exactly one checkout route, got {other:?}:\n{text}"),
    };
    Ok(route)
}

/// A snapshot of `url` (default branch) in `dir/ws` whose recipe built an ignored file.
pub(crate) fn snapshot(url: &RepoUrl, dir: &Path) -> anyhow::Result<PathBuf> {
    let ws = dir.join("ws");
    git::clone(&source(url, None, None)?, &ws, &GitOptions::default())?;
    std::fs::create_dir_all(ws.join("build"))?;
    std::fs::write(ws.join("build/cache.bin"), "built by the recipe")?;
    Ok(ws)
}

pub(crate) fn upstream() -> anyhow::Result<Upstream> {
    let up = Upstream::new("trunk", 1000)?;
    up.commit(
        "trunk",
        &[
            Change::write(".gitignore", "build/\n"),
            Change::write("small/a.txt", "a\n"),
            Change::write("small/b/c.txt", "c\n"),
            Change::write("becomes-file/x.txt", "x\n"),
        ],
    )?;
    Ok(up)
}

/// The warm path on a clean snapshot: modified, added, deleted files, a directory
/// emptied, a file replaced by a directory and a directory by a file. The result is
/// file for file what a cold clone of the same commit holds.
#[test]
fn a_clean_snapshot_gets_only_the_changed_paths_and_equals_a_cold_clone() -> anyhow::Result<()> {
    for via in [Via::File, Via::Http] {
        let up = upstream()?;
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = snapshot(&url, dir.path())?;

        up.commit(
            "trunk",
            &[
                Change::write(&Upstream::file_path(1), "rewritten\n"),
                Change::Delete(Upstream::file_path(2)),
                Change::write("new/deep/dir/added.txt", "added\n"),
                // f00003.txt becomes a directory, becomes-file/ a file.
                Change::Delete(Upstream::file_path(3)),
                Change::write(&format!("{}/inner.txt", Upstream::file_path(3)), "inner\n"),
                Change::Delete("becomes-file".into()),
                Change::write("becomes-file", "now a file\n"),
                // Every file of small/ goes: the directories go with them.
                Change::Delete("small/a.txt".into()),
                Change::Delete("small/b/c.txt".into()),
            ],
        )?;
        let tip = up.advance("trunk", 1)?;

        let route = sync_route(&Source::new(url.clone()), &ws)?;
        assert_eq!(route, PATHS_ROUTE, "{via:?}");
        let st = state(&ws)?;
        assert_eq!(
            (st.branch.as_str(), st.commit.as_str(), st.tree),
            ("trunk", tip.as_str(), up.tree("trunk")?),
            "{via:?}"
        );
        assert_clean(&ws)?;
        assert!(
            !ws.join("small").exists(),
            "{via:?}: emptied directories removed"
        );
        assert_eq!(
            std::fs::read_to_string(ws.join(Upstream::file_path(1)))?,
            "rewritten\n"
        );
        assert_eq!(
            std::fs::read_to_string(ws.join("build/cache.bin"))?,
            "built by the recipe",
            "{via:?}: ignored output kept"
        );

        let cold = dir.path().join("cold");
        git::clone(&Source::new(url.clone()), &cold, &GitOptions::default())?;
        assert_eq!(
            files(&ws, &["build"])?,
            files(&cold, &[])?,
            "{via:?}: same files as a cold clone"
        );
    }
    Ok(())
}

/// Locally modified, deleted and staged tracked files the diff does not touch are not
/// in the path list: the engine must notice them and still end equal to the tree.
#[test]
fn local_changes_outside_the_diff_end_equal_to_the_fetched_tree() -> anyhow::Result<()> {
    let up = upstream()?;
    let url = RepoUrl::parse(&up.file_url())?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    std::fs::write(ws.join(Upstream::file_path(5)), "locally modified")?;
    std::fs::remove_file(ws.join(Upstream::file_path(6)))?;
    std::fs::write(ws.join(Upstream::file_path(7)), "staged")?;
    git_in(&ws, &["add", &Upstream::file_path(7)])?;
    // Same content in the worktree, another one in the index.
    std::fs::write(ws.join(Upstream::file_path(8)), "staged, then reverted")?;
    git_in(&ws, &["add", &Upstream::file_path(8)])?;
    std::fs::write(
        ws.join(Upstream::file_path(8)),
        "file 8\nline two of file 8\n",
    )?;
    up.commit(
        "trunk",
        &[Change::write(&Upstream::file_path(1), "upstream\n")],
    )?;

    let route = sync_route(&Source::new(url), &ws)?;
    assert_eq!(route, FULL_ROUTE);
    assert_eq!(state(&ws)?.tree, up.tree("trunk")?);
    assert_clean(&ws)?;
    for i in 5..=8 {
        assert_eq!(
            std::fs::read_to_string(ws.join(Upstream::file_path(i)))?,
            format!("file {i}\nline two of file {i}\n"),
            "file {i}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(ws.join(Upstream::file_path(1)))?,
        "upstream\n"
    );
    Ok(())
}

/// Untracked files (at the top, in a tracked directory, in a directory of their own)
/// go; ignored ones stay.
#[test]
fn untracked_files_in_the_snapshot_are_removed() -> anyhow::Result<()> {
    let up = upstream()?;
    let url = RepoUrl::parse(&up.file_url())?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    std::fs::write(ws.join("stray.txt"), "untracked")?;
    std::fs::write(ws.join("src/d000/stray.txt"), "untracked")?;
    std::fs::create_dir_all(ws.join("own/deep"))?;
    std::fs::write(ws.join("own/deep/stray.txt"), "untracked")?;
    up.advance("trunk", 1)?;

    let route = sync_route(&Source::new(url), &ws)?;
    assert_eq!(route, FULL_ROUTE);
    assert_eq!(state(&ws)?.tree, up.tree("trunk")?);
    assert_clean(&ws)?;
    assert!(!ws.join("stray.txt").exists());
    assert!(!ws.join("src/d000/stray.txt").exists());
    assert!(!ws.join("own").exists());
    assert!(ws.join("build/cache.bin").is_file(), "ignored output kept");
    Ok(())
}

/// A new `.gitignore` changes which files are untracked: a file ignored before and
/// not any more goes (as `git clean -fd` after the checkout would remove it), one
/// still ignored stays, even on an otherwise clean snapshot.
#[test]
fn a_changed_gitignore_is_judged_by_the_new_tree() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 10)?;
    up.commit("trunk", &[Change::write(".gitignore", "build/\ncache/\n")])?;
    let url = RepoUrl::parse(&up.file_url())?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    std::fs::create_dir_all(ws.join("cache"))?;
    std::fs::write(ws.join("cache/kept.bin"), "still ignored")?;
    up.commit("trunk", &[Change::write(".gitignore", "cache/\n")])?;

    let route = sync_route(&Source::new(url), &ws)?;
    assert_eq!(route, FULL_ROUTE);
    assert_eq!(state(&ws)?.tree, up.tree("trunk")?);
    assert_clean(&ws)?;
    assert!(!ws.join("build").exists(), "no longer ignored: removed");
    assert!(ws.join("cache/kept.bin").is_file(), "still ignored: kept");
    Ok(())
}

/// Stale stat data (a tracked file touched, its content unchanged) is not a change:
/// the warm path is kept and the file is left as it is.
#[test]
fn a_touched_but_unchanged_file_keeps_the_warm_path() -> anyhow::Result<()> {
    let up = upstream()?;
    let url = RepoUrl::parse(&up.file_url())?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    let touched = ws.join(Upstream::file_path(9));
    let content = std::fs::read(&touched)?;
    std::fs::remove_file(&touched)?;
    std::fs::write(&touched, &content)?; // new inode and times, same bytes
    let tip = up.advance("trunk", 3)?;

    let route = sync_route(&Source::new(url), &ws)?;
    assert_eq!(route, PATHS_ROUTE);
    assert_eq!(state(&ws)?.commit, tip);
    assert_eq!(state(&ws)?.tree, up.tree("trunk")?);
    assert_clean(&ws)?;
    assert_eq!(std::fs::read(&touched)?, content);
    Ok(())
}

/// Nothing new upstream, another branch, a new branch: the warm path gives the same
/// HEAD name, commit and tree as a cold clone.
#[test]
fn the_warm_path_agrees_with_a_cold_clone_for_branches() -> anyhow::Result<()> {
    let up = upstream()?;
    up.create_branch("feature/x", "trunk")?;
    up.commit(
        "feature/x",
        &[
            Change::write("x-only.txt", "x\n"),
            Change::Delete(Upstream::file_path(4)),
        ],
    )?;
    let url = RepoUrl::parse(&up.file_url())?;
    for (branch, new_branch) in [
        (None, None),
        (Some("feature/x"), None),
        (None, Some("mine")),
        (Some("feature/x"), Some("mine-x")),
    ] {
        let dir = tempfile::tempdir()?;
        let ws = snapshot(&url, dir.path())?;
        let src = source(&url, branch, new_branch)?;
        let route = sync_route(&src, &ws)?;
        assert_eq!(route, PATHS_ROUTE, "{branch:?} {new_branch:?}");
        let cold = dir.path().join("cold");
        git::clone(&src, &cold, &GitOptions::default())?;
        assert_eq!(state(&ws)?, state(&cold)?, "{branch:?} {new_branch:?}");
        assert_clean(&ws)?;
        assert_eq!(files(&ws, &["build"])?, files(&cold, &[])?);
        assert!(ws.join("build/cache.bin").is_file());
    }
    Ok(())
}

/// A clean snapshot and a large diff (a third of the tree, written on several
/// threads): only the changed paths are written and nothing cleaned (nothing can be
/// untracked), with the same result as a cold clone.
#[test]
fn a_clean_snapshot_with_a_large_diff_writes_only_the_changed_paths() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 300)?;
    up.commit("trunk", &[Change::write(".gitignore", "build/\n")])?;
    let url = RepoUrl::parse(&up.file_url())?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    up.commit(
        "trunk",
        &(0..100)
            .map(|i| Change::Delete(Upstream::file_path(i)))
            .collect::<Vec<_>>(),
    )?;
    up.advance("trunk", 20)?;
    let (result, log) =
        capture_tracing(|| git::sync(&Source::new(url.clone()), &ws, &GitOptions::default()));
    result?;
    let text = log.text();
    assert!(text.contains(PATHS_ROUTE), "{text}");
    let changed: usize = text
        .split("changed=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(changed >= 100, "the deletions and the advance: {text}");
    assert!(!text.contains("removed untracked files"), "{text}");
    assert_eq!(state(&ws)?.tree, up.tree("trunk")?);
    assert_clean(&ws)?;
    assert!(!ws.join("src/d000").exists(), "emptied directory removed");
    assert!(ws.join("build/cache.bin").is_file(), "ignored output kept");
    let cold = dir.path().join("cold");
    git::clone(&Source::new(url), &cold, &GitOptions::default())?;
    assert_eq!(files(&ws, &["build"])?, files(&cold, &[])?);
    Ok(())
}

/// A checkout attribute (line-ending conversion) on a changed path: the changed-path
/// writer steps aside for libgit2, which applies the filter; the result equals a cold
/// clone byte for byte (CRLF included).
#[test]
fn a_checkout_filter_on_a_changed_path_leaves_the_writing_to_libgit2() -> anyhow::Result<()> {
    let up = upstream()?;
    up.commit(
        "trunk",
        &[Change::write(".gitattributes", "*.crlf text eol=crlf\n")],
    )?;
    let url = RepoUrl::parse(&up.file_url())?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    up.commit("trunk", &[Change::write("doc/notes.crlf", "one\ntwo\n")])?;
    let (result, log) =
        capture_tracing(|| git::sync(&Source::new(url.clone()), &ws, &GitOptions::default()));
    result?;
    let text = log.text();
    assert!(text.contains("a checkout attribute applies"), "{text}");
    assert_eq!(std::fs::read(ws.join("doc/notes.crlf"))?, b"one\r\ntwo\r\n");
    assert_clean(&ws)?;
    let cold = dir.path().join("cold");
    git::clone(&Source::new(url), &cold, &GitOptions::default())?;
    assert_eq!(files(&ws, &["build"])?, files(&cold, &[])?);
    Ok(())
}

/// The new tree puts a file where the snapshot holds an ignored directory: the
/// changed-path writer cannot create it, and the sync hands over to the full route,
/// which ends equal to a cold clone.
#[test]
fn a_failed_changed_path_write_hands_over_to_the_full_checkout() -> anyhow::Result<()> {
    let up2 = upstream()?;
    let url2 = RepoUrl::parse(&up2.file_url())?;
    let dir = tempfile::tempdir()?;
    let ws2 = snapshot(&url2, dir.path())?;
    // An ignored name (by the repository's own exclude file, so the tree's
    // `.gitignore` stays unchanged) that the new tree then tracks as a file.
    std::fs::write(ws2.join(".git/info/exclude"), "made/\n")?;
    std::fs::create_dir_all(ws2.join("made/it"))?;
    std::fs::write(ws2.join("made/it/out.o"), "ignored output")?;
    up2.commit(
        "trunk",
        &[
            Change::write("made/it", "now a tracked file\n"),
            Change::write(&Upstream::file_path(1), "changed\n"),
        ],
    )?;
    let src = Source::new(url2.clone());
    let (result, log) = capture_tracing(|| git::sync(&src, &ws2, &GitOptions::default()));
    result?;
    let text = log.text();
    assert!(
        text.lines()
            .any(|l| l.contains("the direct write failed") && l.contains(PATHS_ROUTE)),
        "{text}"
    );
    assert!(text.contains(FULL_ROUTE), "{text}");
    assert_eq!(
        std::fs::read_to_string(ws2.join("made/it"))?,
        "now a tracked file\n"
    );
    assert_clean(&ws2)?;
    let cold = dir.path().join("cold");
    git::clone(&src, &cold, &GitOptions::default())?;
    assert_eq!(files(&ws2, &["build"])?, files(&cold, &[])?);
    Ok(())
}
