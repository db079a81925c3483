//! The prebuilt path: a snapshot clone brought up to date with `sync` against real
//! servers: another branch on a single-branch shallow clone, upstream advanced,
//! force-pushed and deleted branches, leftovers, origin checks.

use sandbox_core::git::{self, GitOptions};
use sandbox_core::{Error, Source};
use test_support::{Change, Upstream, git_in};

use crate::common::{Via, assert_clean, commit_count, serve, shallow_commits, source, state};

/// A snapshot: a default shallow clone on the default branch.
fn snapshot(
    url: &sandbox_core::RepoUrl,
    dir: &std::path::Path,
) -> anyhow::Result<std::path::PathBuf> {
    let ws = dir.join("ws");
    git::clone(&source(url, None, None)?, &ws, &GitOptions::default())?;
    Ok(ws)
}

#[test]
fn snapshot_on_default_branch_syncs_to_feature_x_with_one_shallow_fetch() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 50)?;
    up.commit(
        "trunk",
        &[
            Change::write(".gitignore", "build/\n"),
            Change::write("old-only.txt", "old\n"),
        ],
    )?;
    for via in [Via::Daemon, Via::Http] {
        let (server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = snapshot(&url, dir.path())?;
        // The snapshot's recipe left an ignored build output and a stray file.
        std::fs::create_dir_all(ws.join("build"))?;
        std::fs::write(ws.join("build/cache.bin"), "built")?;
        std::fs::write(ws.join("stray.txt"), "untracked")?;
        std::fs::write(ws.join(Upstream::file_path(1)), "locally modified")?;

        let x = format!("feature/x-{via:?}").to_lowercase();
        up.create_branch(&x, "trunk")?;
        up.advance(&x, 2)?;
        up.commit(
            &x,
            &[
                Change::Delete("old-only.txt".into()),
                Change::write("new-on-x.txt", "x\n"),
            ],
        )?;
        if let Via::Http = via {
            server.http().clear_log();
        }
        let out = git::sync(&source(&url, Some(&x), None)?, &ws, &GitOptions::default())?;

        assert_eq!(
            (out.head.branch.as_str(), out.head.commit.clone()),
            (x.as_str(), up.tip(&x)?),
            "{via:?}"
        );
        let st = state(&ws)?;
        assert_eq!((st.branch.as_str(), st.tree), (x.as_str(), up.tree(&x)?));
        assert!(
            !ws.join("old-only.txt").exists(),
            "file of the older tree removed"
        );
        assert!(!ws.join("stray.txt").exists(), "untracked file removed");
        assert!(ws.join("new-on-x.txt").is_file());
        assert_eq!(
            std::fs::read_to_string(ws.join(Upstream::file_path(1)))?,
            "file 1\nline two of file 1\n"
        );
        assert_eq!(
            std::fs::read_to_string(ws.join("build/cache.bin"))?,
            "built",
            "ignored output kept"
        );
        assert_clean(&ws)?;
        assert_eq!(
            git_in(&ws, &["config", &format!("branch.{x}.merge")])?,
            format!("refs/heads/{x}")
        );
        assert_eq!(
            git_in(&ws, &["rev-parse", &format!("origin/{x}")])?,
            up.tip(&x)?
        );
        assert_eq!(commit_count(&ws)?, 1, "depth 1 after sync");
        assert!(shallow_commits(&ws).contains(&up.tip(&x)?));
        assert!(out.received_objects > 0 && out.received_bytes > 0);

        if let Via::Http = via {
            // Exactly one fetch for one ref (one advertisement, upload-pack POSTs all
            // wanting one commit at depth 1), and not a clone: the client says what it has.
            let reqs = server.http().requests();
            assert_eq!(
                reqs.iter().filter(|r| r.method == "GET").count(),
                1,
                "{reqs:#?}"
            );
            let posts = server.http().upload_pack_posts();
            assert!((1..=2).contains(&posts.len()), "{posts:#?}");
            for p in &posts {
                let u = p.upload_pack.clone().unwrap_or_default();
                assert_eq!((u.wants, u.deepen), (1, Some(1)), "{u:?}");
            }
            let last = posts
                .last()
                .and_then(|p| p.upload_pack.clone())
                .unwrap_or_default();
            assert!(
                last.haves >= 1 && last.shallows >= 1,
                "negotiated from the snapshot: {last:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn sync_catches_up_after_1_10_and_100_upstream_commits() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 100)?;
    for via in [Via::Daemon, Via::Http] {
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = snapshot(&url, dir.path())?;
        let full_clone_bytes = git::clone(
            &Source::new(url.clone()),
            &dir.path().join("cold"),
            &GitOptions::default(),
        )?
        .received_bytes;
        for n in [1, 10, 100] {
            let tip = up.advance("trunk", n)?;
            let out = git::sync(&Source::new(url.clone()), &ws, &GitOptions::default())?;
            // The catch-up fetch is small next to a clone (snapshot drift is judged on it).
            // (+100 commits add 100 files to this small fixture, so only n <= 10.)
            assert!(
                out.received_bytes > 0 && (n > 10 || out.received_bytes * 4 < full_clone_bytes),
                "{via:?} +{n}: {} bytes vs {full_clone_bytes} for a clone",
                out.received_bytes
            );
            assert_eq!(out.head.commit, tip, "{via:?} +{n}");
            assert_eq!(out.head.branch, "trunk");
            assert_eq!(state(&ws)?.tree, up.tree("trunk")?, "{via:?} +{n}");
            assert_clean(&ws)?;
            assert_eq!(commit_count(&ws)?, 1, "{via:?} +{n}: still depth 1");
        }
    }
    Ok(())
}

#[test]
fn sync_follows_a_force_pushed_branch() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 10)?;
    up.create_branch("feature/x", "trunk")?;
    up.advance("feature/x", 3)?;
    for via in [Via::Daemon, Via::Http] {
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = dir.path().join("ws");
        git::clone(
            &source(&url, Some("feature/x"), None)?,
            &ws,
            &GitOptions::default(),
        )?;
        let old = up.tip("feature/x")?;
        let new = up.rewrite(
            "feature/x",
            &[Change::write("rewritten.txt", &format!("{via:?}\n"))],
        )?;
        assert_ne!(old, new);
        let out = git::sync(
            &source(&url, Some("feature/x"), None)?,
            &ws,
            &GitOptions::default(),
        )?;
        assert_eq!(out.head.commit, new);
        assert_eq!(state(&ws)?.tree, up.tree("feature/x")?);
        assert!(ws.join("rewritten.txt").is_file());
        assert_clean(&ws)?;
    }
    Ok(())
}

#[test]
fn sync_to_a_deleted_branch_is_a_clear_error() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 3)?;
    up.create_branch("feature/x", "trunk")?;
    up.create_branch("feature/y", "trunk")?;
    for via in [Via::Daemon, Via::Http] {
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = dir.path().join("ws");
        git::clone(
            &source(&url, Some("feature/x"), None)?,
            &ws,
            &GitOptions::default(),
        )?;
        let before = state(&ws)?;
        up.delete_branch("feature/x")?;
        // The workspace still has refs/remotes/origin/feature/x: the remote decides.
        let err = git::sync(
            &source(&url, Some("feature/x"), None)?,
            &ws,
            &GitOptions::default(),
        )
        .expect_err("deleted branch");
        let Error::BranchNotFound {
            branch, available, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(branch, "feature/x");
        assert_eq!(available, &vec!["trunk".to_owned(), "feature/y".to_owned()]);
        let msg = err.to_string();
        assert!(msg.contains("feature/x") && msg.contains("trunk"), "{msg}");
        assert_eq!(state(&ws)?, before, "workspace untouched");
        up.create_branch("feature/x", "trunk")?; // for the next transport
    }
    Ok(())
}

#[test]
fn sync_refuses_a_workspace_of_another_repository() -> anyhow::Result<()> {
    let a = Upstream::new("trunk", 1)?;
    let b = Upstream::new("trunk", 1)?;
    let (_sa, url_a) = serve(&a, Via::Http)?;
    // Another repository: another path (the same path on the same host, even on
    // another port or scheme, is the same repository in another form).
    test_support::git(&[
        "clone",
        "--bare",
        "--quiet",
        &b.path().display().to_string(),
        &b.root().join("other.git").display().to_string(),
    ])?;
    let sb = test_support::GitHttpServer::start(b.root())?;
    let url_b = sandbox_core::RepoUrl::parse(&sb.url("other.git"))?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url_a, dir.path())?;
    let before = state(&ws)?;
    let err =
        git::sync(&Source::new(url_b.clone()), &ws, &GitOptions::default()).expect_err("mismatch");
    let Error::OriginMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((expected, actual), (&url_b.to_string(), &url_a.to_string()));
    // the way out, in library words (the CLI's hint names its flag)
    assert!(err.to_string().contains("replace the sandbox"), "{err}");
    assert!(!err.to_string().contains("--"), "{err}");
    assert_eq!(state(&ws)?, before);
    // The same repository spelled with a trailing `.git` difference is accepted.
    let same = sandbox_core::RepoUrl::parse(url_a.to_string().trim_end_matches(".git"))?;
    git_in(&ws, &["config", "remote.origin.url", &same.to_string()])?;
    git::sync(&Source::new(url_a), &ws, &GitOptions::default())?;
    Ok(())
}

#[test]
fn sync_of_a_directory_that_is_not_a_workspace_fails_clearly() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    let dir = tempfile::tempdir()?;
    let err = git::sync(
        &Source::parse(&up.file_url())?,
        dir.path(),
        &GitOptions::default(),
    )
    .expect_err("not a repository");
    assert!(matches!(err, Error::Git { op: "sync", .. }), "{err:?}");
    assert!(err.to_string().contains("is not a git workspace"), "{err}");
    Ok(())
}

#[test]
fn sync_over_the_local_transport_works_without_depth() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 5)?;
    let url = sandbox_core::RepoUrl::parse(&up.file_url())?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    up.create_branch("feature/x", "trunk")?;
    let tip = up.advance("feature/x", 5)?;
    let out = git::sync(
        &source(&url, Some("feature/x"), None)?,
        &ws,
        &GitOptions::default(),
    )?;
    assert_eq!(out.head.commit, tip);
    assert_eq!(commit_count(&ws)?, 6, "full history over file://");
    assert_clean(&ws)?;
    Ok(())
}

#[test]
fn sync_refuses_a_new_branch_the_remote_has() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    up.create_branch("taken", "trunk")?;
    let (_server, url) = serve(&up, Via::Http)?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    let err = git::sync(
        &source(&url, None, Some("taken"))?,
        &ws,
        &GitOptions::default(),
    )
    .expect_err("taken upstream");
    assert!(
        matches!(&err, Error::NewBranchExists { branch, .. } if branch == "taken"),
        "{err:?}"
    );
    assert_eq!(state(&ws)?.branch, "trunk");
    Ok(())
}

#[test]
fn sync_of_a_full_history_snapshot_fetches_one_commit_of_another_branch() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 5)?;
    up.advance("trunk", 5)?;
    let (_server, url) = serve(&up, Via::Daemon)?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    let full = GitOptions {
        depth: git::Depth::Full,
        ..GitOptions::default()
    };
    git::clone(&source(&url, None, None)?, &ws, &full)?;
    assert_eq!(commit_count(&ws)?, 6);
    up.create_branch("feature/x", "trunk")?;
    let tip = up.advance("feature/x", 3)?;
    let out = git::sync(
        &source(&url, Some("feature/x"), None)?,
        &ws,
        &GitOptions::default(),
    )?;
    assert_eq!(out.head.commit, tip);
    assert_eq!(state(&ws)?.tree, up.tree("feature/x")?);
    assert_clean(&ws)?;
    // trunk's full history is still there
    assert_eq!(git_in(&ws, &["rev-list", "--count", "origin/trunk"])?, "6");
    Ok(())
}

#[test]
fn sync_follows_a_changed_remote_default_branch() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 3)?;
    let (_server, url) = serve(&up, Via::Http)?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    up.create_branch("develop", "trunk")?;
    let tip = up.advance("develop", 2)?;
    up.set_default_branch("develop")?;
    let out = git::sync(&Source::new(url.clone()), &ws, &GitOptions::default())?;
    assert_eq!(
        (out.head.branch.as_str(), out.head.commit.as_str()),
        ("develop", tip.as_str())
    );
    assert_eq!(
        git_in(&ws, &["symbolic-ref", "refs/remotes/origin/HEAD"])?,
        "refs/remotes/origin/develop"
    );
    assert_eq!(state(&ws)?.tree, up.tree("develop")?);
    assert_clean(&ws)?;
    Ok(())
}

/// A file the snapshot's tree tracked, which the new tree deletes and ignores, is a
/// leftover of the older tree: removed. Ignored files nobody tracked (what a setup
/// recipe built) stay.
#[test]
fn files_tracked_in_the_older_tree_go_even_if_now_ignored() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 2)?;
    up.commit(
        "trunk",
        &[Change::write("gen/generated.txt", "old output\n")],
    )?;
    let (_server, url) = serve(&up, Via::File)?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    std::fs::write(ws.join("gen/recipe-output.bin"), "built by the recipe")?;
    std::fs::create_dir_all(ws.join("stray/deep"))?;
    std::fs::write(ws.join("stray/deep/file.txt"), "untracked")?;
    test_support::git(&[
        "init",
        "--quiet",
        &ws.join("nested-repo").display().to_string(),
    ])?;
    up.commit(
        "trunk",
        &[
            Change::Delete("gen/generated.txt".into()),
            Change::write(".gitignore", "gen/\n"),
        ],
    )?;
    git::sync(&Source::new(url), &ws, &GitOptions::default())?;
    assert!(
        !ws.join("gen/generated.txt").exists(),
        "tracked before, so a leftover"
    );
    assert!(
        ws.join("gen/recipe-output.bin").exists(),
        "never tracked and now ignored: kept"
    );
    assert!(
        !ws.join("stray").exists(),
        "untracked files and the directories they leave go"
    );
    assert!(
        ws.join("nested-repo/.git").is_dir(),
        "a nested repository stays (as with git clean -fd)"
    );
    let status = git_in(&ws, &["status", "--porcelain", "--untracked-files=all"])?;
    assert_eq!(status, "?? nested-repo/", "otherwise clean");
    Ok(())
}

/// A catch-up whose pack is thin against hundreds of the snapshot's objects: every
/// file of the tree edited by one line, so the server sends each new blob (and tree)
/// as a delta against the version the snapshot already has. The fetch must complete
/// that pack from the snapshot's objects (libgit2's thin-pack fix-up, patched in
/// `vendor/libgit2-sys` to inject every missing base in one pass) into a pack that
/// `git` itself verifies, holding each injected base once.
#[test]
fn a_thin_catch_up_pack_with_hundreds_of_missing_bases_is_completed_and_verifies()
-> anyhow::Result<()> {
    const FILES: usize = 300;
    let up = Upstream::new("trunk", 1)?;
    // Each file its own pseudo-random words (so a new blob is like its own old
    // version, not like its neighbours), edited in one line.
    let body = |i: usize, edit: &str| {
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut s = String::new();
        for line in 0..80 {
            if line == 40 {
                s.push_str(edit);
            }
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push_str(&format!("{:x} ", x % 0xfffff));
            }
            s.push('\n');
        }
        s
    };
    let seed: Vec<Change> = (0..FILES)
        .map(|i| Change::write(&format!("src/m{:02}/f{i:03}.txt", i % 17), &body(i, "")))
        .collect();
    up.commit("trunk", &seed)?;
    let (_server, url) = serve(&up, Via::Http)?;
    let dir = tempfile::tempdir()?;
    let ws = snapshot(&url, dir.path())?;
    let packs_before = packs(&ws)?;

    let edits: Vec<Change> = (0..FILES)
        .map(|i| {
            Change::write(
                &format!("src/m{:02}/f{i:03}.txt", i % 17),
                &body(i, "edited\n"),
            )
        })
        .collect();
    let tip = up.commit("trunk", &edits)?;
    let out = git::sync(&Source::new(url.clone()), &ws, &GitOptions::default())?;
    assert_eq!(out.head.commit, tip);
    assert_eq!(state(&ws)?.tree, up.tree("trunk")?);
    assert_clean(&ws)?;

    let new: Vec<_> = packs(&ws)?
        .into_iter()
        .filter(|p| !packs_before.contains(p))
        .collect();
    assert_eq!(new.len(), 1, "one pack fetched: {new:?}");
    let verify = std::process::Command::new("git")
        .args(["verify-pack", "-v"])
        .arg(&new[0])
        .output()?;
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "git verify-pack: {}{text}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Every edited blob came thin; the completed pack holds it and its base (the old
    // blob, injected), each once: at least 2 x FILES objects, no object listed twice.
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| id.len() == 40)
        .collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an object stored twice");
    assert!(ids.len() >= 2 * FILES, "{} objects in the pack", ids.len());
    let fsck = std::process::Command::new("git")
        .args(["fsck", "--full", "--no-dangling"])
        .current_dir(&ws)
        .output()?;
    assert!(
        fsck.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    Ok(())
}

fn packs(ws: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(ws.join(".git/objects/pack"))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "pack") {
            out.push(p);
        }
    }
    Ok(out)
}
