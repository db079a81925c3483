//! A far branch: a warm sync to a branch whose tree shares nothing with the snapshot's
//! (an orphan branch) writes the new tree with the parallel writer even when the
//! `.gitignore`/`.gitattributes` files differ, and cleans by the new rules. Every
//! result is compared file by file (contents, link targets, executable bits) with a
//! cold clone of that branch; a dirty snapshot and a tree whose attributes transform
//! files still take the safe route (libgit2's forced checkout + clean).

use std::collections::BTreeMap;
use std::path::Path;

use sandbox_core::git::{self, CleanSeal, GitOptions};
use sandbox_core::{RepoUrl, Source};
use test_support::{Change, Upstream, capture_tracing, git_in};

use crate::common::{Via, assert_clean, commit_in, serve, source, state};
use crate::git_sync_paths::files;

const FAR_ROUTE: &str = "route=\"far\"";
const FULL_ROUTE: &str = "route=\"full\"";

/// The snapshot's branch: 300 generated files, a `.gitignore` for the recipe's output,
/// a `.gitattributes`, a directory (`small/`) and a file (`tool`) the orphan branch
/// turns into a file and a directory.
fn upstream() -> anyhow::Result<Upstream> {
    let up = Upstream::new("trunk", 300)?;
    up.commit(
        "trunk",
        &[
            Change::write(".gitignore", "build/\n*.tmp\n"),
            Change::write(".gitattributes", "*.txt diff\n"),
            Change::write("small/a.txt", "a\n"),
            Change::write("small/b/c.txt", "c\n"),
            Change::write("tool", "a file on trunk\n"),
        ],
    )?;
    Ok(up)
}

/// Pushes an orphan branch `pages` (made with the git CLI): other ignore rules (the
/// recipe's `build/notes.txt` is no longer ignored, `build/cache.bin` still is),
/// `attributes` as its `.gitattributes`, an executable, a symlink, nested
/// directories, `small` a file and `tool/` a directory.
fn push_orphan(up: &Upstream, scratch: &Path, attributes: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let work = scratch.join("orphan-work");
    let origin = up.path();
    git_in(
        scratch,
        &[
            "clone",
            "-q",
            origin.to_str().unwrap_or_default(),
            "orphan-work",
        ],
    )?;
    git_in(&work, &["checkout", "-q", "--orphan", "pages"])?;
    git_in(&work, &["rm", "-rqf", "."])?;
    let write = |rel: &str, text: &str| -> anyhow::Result<()> {
        let p = work.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, text)?;
        Ok(())
    };
    write(".gitignore", "build/*.bin\n*.log\n")?;
    write(".gitattributes", attributes)?;
    write("index.html", "<h1>pages</h1>\r\nsecond line\n")?;
    write("small", "small is a file here\n")?;
    write("tool/run.sh", "#!/bin/sh\necho run\n")?;
    std::fs::set_permissions(
        work.join("tool/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    write("docs/a/b/c/deep.md", "# deep\n")?;
    write("docs/guide.txt", "guide\r\nwith crlf\n")?;
    for i in 0..120 {
        write(
            &format!("assets/p{:02}/f{i:03}.css", i / 40),
            &format!(".c{i} {{ color: red }}\n"),
        )?;
    }
    std::os::unix::fs::symlink("docs/guide.txt", work.join("guide-link"))?;
    git_in(&work, &["add", "-A"])?;
    commit_in(&work, "pages")?;
    git_in(&work, &["push", "-q", "origin", "pages"])?;
    Ok(())
}

/// A snapshot of trunk in `dir/ws` whose recipe left ignored output in `build/`.
fn snapshot(url: &RepoUrl, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let ws = dir.join("ws");
    git::clone(&source(url, None, None)?, &ws, &GitOptions::default())?;
    std::fs::create_dir_all(ws.join("build"))?;
    std::fs::write(ws.join("build/cache.bin"), "built by the recipe")?;
    std::fs::write(ws.join("build/notes.txt"), "ignored on trunk only")?;
    // Ignored on trunk (`*.tmp`), not on the orphan branch: at the top, and in a
    // directory the orphan branch writes tracked files into.
    std::fs::write(ws.join("top.tmp"), "ignored on trunk only")?;
    std::fs::create_dir_all(ws.join("docs"))?;
    std::fs::write(ws.join("docs/draft.tmp"), "ignored on trunk only")?;
    Ok(ws)
}

/// Syncs `ws` to `src` (with `seal` when given); returns the engine's log.
fn sync_logged(src: &Source, ws: &Path, seal: Option<&CleanSeal>) -> anyhow::Result<String> {
    let opts = GitOptions {
        clean_seal: seal.cloned(),
        ..GitOptions::default()
    };
    let (result, log) = capture_tracing(|| git::sync(src, ws, &opts));
    result?;
    Ok(log.text())
}

/// Every file under `dir` but `.git` and `build`: whether it is a symlink, and its
/// executable bit.
fn modes(dir: &Path) -> anyhow::Result<BTreeMap<String, (bool, bool)>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    for rel in files(dir, &["build"])?.into_keys() {
        let m = std::fs::symlink_metadata(dir.join(&rel))?;
        let exec = !m.is_symlink() && m.permissions().mode() & 0o111 != 0;
        out.insert(rel.display().to_string(), (m.is_symlink(), exec));
    }
    Ok(out)
}

/// `ws` holds what a cold clone of `src` holds, file by file (contents, link targets,
/// modes; `build/` compared apart), with valid index stat data and a clean status.
fn assert_like_cold_clone(src: &Source, ws: &Path, scratch: &Path) -> anyhow::Result<()> {
    let stale = git_in(ws, &["diff-files", "--name-only"])?;
    assert!(stale.is_empty(), "index stat data does not match:\n{stale}");
    let cold = scratch.join("cold");
    git::clone(src, &cold, &GitOptions::default())?;
    assert_eq!(state(ws)?, state(&cold)?);
    assert_clean(ws)?;
    assert_eq!(git_in(ws, &["status", "--porcelain"])?, "");
    let (mine, theirs) = (files(ws, &["build"])?, files(&cold, &[])?);
    let differ: Vec<String> = mine
        .keys()
        .chain(theirs.keys())
        .filter(|p| mine.get(*p) != theirs.get(*p))
        .map(|p| {
            let show = |m: &BTreeMap<_, Vec<u8>>| {
                m.get(p)
                    .map(|v| String::from_utf8_lossy(v).escape_debug().to_string())
            };
            format!(
                "{}: {:?} vs cold {:?}",
                p.display(),
                show(&mine),
                show(&theirs)
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "differs from a cold clone:\n{}",
        differ.join("\n")
    );
    assert_eq!(modes(ws)?, modes(&cold)?);
    Ok(())
}

/// The sealed snapshot of trunk switched to the orphan branch: the far route, no
/// libgit2 checkout, and the result a cold clone of the branch plus the ignored
/// output the new rules still ignore.
#[test]
fn a_sealed_snapshot_switched_to_a_far_orphan_branch_equals_a_cold_clone() -> anyhow::Result<()> {
    for via in [Via::File, Via::Http] {
        let up = upstream()?;
        let dir = tempfile::tempdir()?;
        push_orphan(
            &up,
            dir.path(),
            "*.bin binary\n*.md diff=markdown\n*.txt -text\n",
        )?;
        let (_server, url) = serve(&up, via)?;
        let ws = snapshot(&url, dir.path())?;
        let seal = git::seal_clean(&ws)?.expect("clean: build/ is ignored");
        let src = source(&url, Some("pages"), None)?;
        let log = sync_logged(&src, &ws, Some(&seal))?;
        assert!(log.contains(FAR_ROUTE), "{via:?}: the far route: {log}");
        assert!(!log.contains(FULL_ROUTE), "{via:?}: {log}");
        assert!(
            !log.contains("checking out the whole tree"),
            "{via:?}: {log}"
        );
        assert_like_cold_clone(&src, &ws, dir.path())?;
        assert_eq!(state(&ws)?.branch, "pages");
        assert!(!ws.join("src").exists(), "{via:?}: the old tree is gone");
        assert!(ws.join("small").is_file(), "{via:?}: directory -> file");
        assert!(
            ws.join("tool/run.sh").is_file(),
            "{via:?}: file -> directory"
        );
        assert!(ws.join("guide-link").is_symlink(), "{via:?}");
        assert_eq!(
            std::fs::read_to_string(ws.join("build/cache.bin"))?,
            "built by the recipe",
            "{via:?}: still ignored: kept"
        );
        for gone in ["build/notes.txt", "top.tmp", "docs/draft.tmp"] {
            assert!(
                !ws.join(gone).exists(),
                "{via:?}: {gone} no longer ignored: removed as git clean -fd would"
            );
        }
    }
    Ok(())
}

/// The same switch without a seal (the proving walk) and back again: both directions
/// are far, and each ends equal to a cold clone.
#[test]
fn a_far_switch_without_a_seal_walks_and_equals_a_cold_clone_both_ways() -> anyhow::Result<()> {
    let up = upstream()?;
    let dir = tempfile::tempdir()?;
    push_orphan(&up, dir.path(), "*.bin binary\n")?;
    let url = RepoUrl::parse(&up.file_url())?;
    let ws = snapshot(&url, dir.path())?;
    std::fs::create_dir_all(dir.path().join("one"))?;
    std::fs::create_dir_all(dir.path().join("two"))?;
    let pages = source(&url, Some("pages"), None)?;
    let log = sync_logged(&pages, &ws, None)?;
    assert!(log.contains("checked the worktree against HEAD"), "{log}");
    assert!(log.contains(FAR_ROUTE), "{log}");
    assert_like_cold_clone(&pages, &ws, &dir.path().join("one"))?;
    // Back to trunk: build/cache.bin is still ignored there, `small` a directory again.
    let trunk = source(&url, Some("trunk"), None)?;
    let log = sync_logged(&trunk, &ws, None)?;
    assert!(log.contains(FAR_ROUTE), "{log}");
    assert_like_cold_clone(&trunk, &ws, &dir.path().join("two"))?;
    assert!(ws.join("small/b/c.txt").is_file());
    assert!(ws.join("build/cache.bin").is_file());
    Ok(())
}

/// A dirty snapshot (a local change and an untracked file) switched to the orphan
/// branch takes the safe route: libgit2's forced checkout and the clean, never the
/// writer; the result is still a cold clone's.
#[test]
fn a_dirty_snapshot_switched_to_a_far_branch_takes_the_full_route() -> anyhow::Result<()> {
    let up = upstream()?;
    let dir = tempfile::tempdir()?;
    push_orphan(&up, dir.path(), "*.bin binary\n")?;
    let url = RepoUrl::parse(&up.file_url())?;
    let ws = snapshot(&url, dir.path())?;
    let seal = git::seal_clean(&ws)?.expect("clean");
    std::fs::write(
        ws.join("index.html"),
        "untracked, in the way of the new tree",
    )?;
    std::fs::write(ws.join("stray.txt"), "untracked")?;
    std::fs::write(ws.join("small/a.txt"), "locally modified")?;
    git_in(&ws, &["add", "small/a.txt"])?;
    let src = source(&url, Some("pages"), None)?;
    let log = sync_logged(&src, &ws, Some(&seal))?;
    assert!(log.contains(FULL_ROUTE), "{log}");
    assert!(!log.contains(FAR_ROUTE), "{log}");
    assert_like_cold_clone(&src, &ws, dir.path())?;
    assert!(!ws.join("stray.txt").exists());
    Ok(())
}

/// An orphan tree whose `.gitattributes` converts line endings: the writer cannot
/// reproduce that, so the far switch hands over to libgit2's checkout, whose result
/// equals a cold clone's (CRLF written where the attribute asks). Under load this
/// failed now and then (LF written) until the new `.gitattributes` were checked out
/// before the whole tree (`checkout::attributes_first`).
#[test]
fn a_far_tree_with_converting_attributes_takes_libgit2s_checkout() -> anyhow::Result<()> {
    let up = upstream()?;
    let dir = tempfile::tempdir()?;
    push_orphan(&up, dir.path(), "*.txt text eol=crlf\n")?;
    let url = RepoUrl::parse(&up.file_url())?;
    let ws = snapshot(&url, dir.path())?;
    let seal = git::seal_clean(&ws)?.expect("clean");
    let src = source(&url, Some("pages"), None)?;
    let log = sync_logged(&src, &ws, Some(&seal))?;
    assert!(
        log.contains("a .gitattributes of the new tree sets a checkout attribute"),
        "{log}"
    );
    assert!(log.contains(FULL_ROUTE), "{log}");
    assert!(
        log.contains("checking out the new .gitattributes first"),
        "{log}"
    );
    assert_like_cold_clone(&src, &ws, dir.path())?;
    Ok(())
}
