//! Clones against real servers: default branch read from the remote, shallow depth
//! verified, the local transport's full fetch, and the errors a user can act on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sandbox_core::git::{self, Depth, GitOptions};
use sandbox_core::{Credentials, Error, RepoUrl, Source};
use test_support::{Change, Upstream, git_in};

use crate::common::{
    Via, assert_clean, commit_count, commit_in, serve, shallow_commits, source, state,
};

#[test]
fn clone_checks_out_the_remote_default_branch_trunk_not_main() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 20)?;
    up.advance("trunk", 3)?;
    assert!(
        !up.branches()?.contains(&"main".to_owned()),
        "fixture must have no main"
    );
    for via in [Via::Daemon, Via::Http, Via::File] {
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = dir.path().join("ws");
        let out = git::clone(&source(&url, None, None)?, &ws, &GitOptions::default())?;
        assert_eq!(out.head.branch, "trunk", "{via:?}");
        assert_eq!(out.head.commit, up.tip("trunk")?, "{via:?}");
        assert!(
            out.received_objects > 0 && out.received_bytes > 0,
            "{via:?}: {out:?}"
        );
        let st = state(&ws)?;
        assert_eq!(
            (st.branch.as_str(), st.tree),
            ("trunk", up.tree("trunk")?),
            "{via:?}"
        );
        assert_eq!(git::head(&ws)?, out.head);
        assert_clean(&ws)?;
        assert!(ws.join(Upstream::file_path(19)).is_file());
        // origin is the source URL as given; the branch tracks origin/trunk
        assert_eq!(
            git_in(&ws, &["config", "remote.origin.url"])?,
            url.to_string()
        );
        assert_eq!(
            git_in(&ws, &["config", "branch.trunk.merge"])?,
            "refs/heads/trunk"
        );
        assert_eq!(
            git_in(&ws, &["config", "--get-all", "remote.origin.fetch"])?,
            "+refs/heads/trunk:refs/remotes/origin/trunk"
        );
        assert_eq!(
            git_in(&ws, &["rev-parse", "refs/remotes/origin/trunk"])?,
            up.tip("trunk")?
        );
        assert!(git_in(&ws, &["tag"])?.is_empty());
        assert_eq!(
            git_in(&ws, &["symbolic-ref", "refs/remotes/origin/HEAD"])?,
            "refs/remotes/origin/trunk",
            "tools asking git for the default branch get trunk"
        );
    }
    Ok(())
}

#[test]
fn remote_default_branch_is_read_from_the_remote() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    up.create_branch("develop", "trunk")?;
    for via in [Via::Daemon, Via::Http, Via::File] {
        let (_server, url) = serve(&up, via)?;
        up.set_default_branch("trunk")?;
        assert_eq!(
            git::remote_default_branch(&url, &Credentials::none())?,
            "trunk",
            "{via:?}"
        );
        up.set_default_branch("develop")?;
        assert_eq!(
            git::remote_default_branch(&url, &Credentials::none())?,
            "develop",
            "{via:?}"
        );
    }
    Ok(())
}

#[test]
fn shallow_clone_over_http_has_depth_one_and_one_fetch() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 5)?;
    up.advance("trunk", 10)?;
    let (server, url) = serve(&up, Via::Http)?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    git::clone(&source(&url, None, None)?, &ws, &GitOptions::default())?;
    assert_eq!(commit_count(&ws)?, 1);
    assert_eq!(shallow_commits(&ws), vec![up.tip("trunk")?]);
    // One fetch of one ref: libgit2 sends the shallow request, then the same wants
    // with `done` (stateless HTTP), and never more than one want.
    let posts = server.http().upload_pack_posts();
    assert!((1..=2).contains(&posts.len()), "{posts:#?}");
    for p in &posts {
        let req = p.upload_pack.clone().unwrap_or_default();
        assert_eq!(
            (req.wants, req.deepen, req.haves),
            (1, Some(1), 0),
            "{req:?}"
        );
    }
    assert_eq!(
        posts
            .iter()
            .filter(|p| p.upload_pack.as_ref().is_some_and(|u| u.done))
            .count(),
        1
    );
    let gets: Vec<_> = server
        .http()
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 1, "one ref advertisement: {gets:#?}");

    // Depth::Full gets all 11 commits and no deepen.
    server.http().clear_log();
    let full = dir.path().join("full");
    let opts = GitOptions {
        depth: Depth::Full,
        ..GitOptions::default()
    };
    git::clone(&source(&url, None, None)?, &full, &opts)?;
    assert_eq!(commit_count(&full)?, 11);
    assert!(shallow_commits(&full).is_empty());
    let req = server.http().upload_pack_posts()[0]
        .upload_pack
        .clone()
        .unwrap_or_default();
    assert_eq!(req.deepen, None);

    // Depth 3 over git daemon.
    let (_d, durl) = serve(&up, Via::Daemon)?;
    let three = dir.path().join("three");
    let opts = GitOptions {
        depth: Depth::Shallow(3.try_into()?),
        ..GitOptions::default()
    };
    git::clone(&source(&durl, None, None)?, &three, &opts)?;
    assert_eq!(commit_count(&three)?, 3);
    Ok(())
}

#[test]
fn local_transport_fetches_full_history_instead_of_failing() -> anyhow::Result<()> {
    // libgit2: "shallow fetch is not supported by the local transport".
    let up = Upstream::new("trunk", 3)?;
    up.advance("trunk", 4)?;
    let dir = tempfile::tempdir()?;
    for (i, url) in [
        RepoUrl::parse(&up.file_url())?,
        RepoUrl::from_path(&up.path())?,
    ]
    .iter()
    .enumerate()
    {
        let ws = dir.path().join(format!("ws{i}"));
        let out = git::clone(&Source::new(url.clone()), &ws, &GitOptions::default())?;
        assert_eq!(out.head.commit, up.tip("trunk")?);
        assert_eq!(
            commit_count(&ws)?,
            5,
            "full history over the local transport"
        );
        assert_clean(&ws)?;
    }
    Ok(())
}

#[test]
fn clone_of_a_named_branch() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 3)?;
    up.create_branch("feature/x", "trunk")?;
    let tip = up.commit("feature/x", &[Change::write("only-on-x.txt", "x\n")])?;
    for via in [Via::Daemon, Via::Http] {
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = dir.path().join("ws");
        let out = git::clone(
            &source(&url, Some("feature/x"), None)?,
            &ws,
            &GitOptions::default(),
        )?;
        assert_eq!(
            (out.head.branch.as_str(), out.head.commit.as_str()),
            ("feature/x", tip.as_str())
        );
        assert!(ws.join("only-on-x.txt").is_file());
        // origin/trunk was not fetched: no dangling origin/HEAD
        assert!(
            git_in(
                &ws,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "refs/remotes/origin/HEAD"
                ]
            )
            .is_err()
        );
        assert_eq!(state(&ws)?.tree, up.tree("feature/x")?);
        assert_clean(&ws)?;
    }
    Ok(())
}

#[test]
fn new_branch_without_branch_starts_from_the_default_branch_with_no_upstream() -> anyhow::Result<()>
{
    let up = Upstream::new("trunk", 3)?;
    up.create_branch("feature/x", "trunk")?;
    up.advance("feature/x", 2)?;
    let (_server, url) = serve(&up, Via::Http)?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    let out = git::clone(
        &source(&url, None, Some("hs/task-1"))?,
        &ws,
        &GitOptions::default(),
    )?;
    assert_eq!(out.head.branch, "hs/task-1");
    assert_eq!(out.head.commit, up.tip("trunk")?);
    let st = state(&ws)?;
    assert_eq!(
        (st.branch.as_str(), st.tree),
        ("hs/task-1", up.tree("trunk")?)
    );
    assert_clean(&ws)?;
    assert!(
        git_in(&ws, &["config", "branch.hs/task-1.remote"]).is_err(),
        "no upstream"
    );
    assert_eq!(
        git_in(&ws, &["rev-parse", "origin/HEAD"])?,
        up.tip("trunk")?
    );
    // the base is available as origin/trunk
    assert_eq!(
        git_in(&ws, &["rev-parse", "origin/trunk"])?,
        up.tip("trunk")?
    );
    Ok(())
}

#[test]
fn new_branch_that_exists_upstream_is_a_clear_error() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    up.create_branch("feature/x", "trunk")?;
    let (_server, url) = serve(&up, Via::Daemon)?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    let err = git::clone(
        &source(&url, None, Some("feature/x"))?,
        &ws,
        &GitOptions::default(),
    )
    .expect_err("must refuse");
    assert!(
        matches!(&err, Error::NewBranchExists { branch, .. } if branch == "feature/x"),
        "{err:?}"
    );
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(!ws.exists(), "a failed clone leaves nothing behind");
    Ok(())
}

#[test]
fn missing_branch_names_it_and_lists_some_that_exist() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    up.create_branch("feature/x", "trunk")?;
    for via in [Via::Daemon, Via::Http, Via::File] {
        let (_server, url) = serve(&up, via)?;
        let dir = tempfile::tempdir()?;
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws)?;
        let err = git::clone(
            &source(&url, Some("nope/branch"), None)?,
            &ws,
            &GitOptions::default(),
        )
        .expect_err("must fail");
        let Error::BranchNotFound {
            branch, available, ..
        } = &err
        else {
            panic!("{via:?}: {err:?}")
        };
        assert_eq!(branch, "nope/branch");
        assert_eq!(available, &vec!["trunk".to_owned(), "feature/x".to_owned()]);
        let msg = err.to_string();
        assert!(
            msg.contains("nope/branch") && msg.contains("trunk"),
            "{msg}"
        );
        assert!(
            ws.is_dir() && std::fs::read_dir(&ws)?.next().is_none(),
            "emptied, not removed"
        );
    }
    Ok(())
}

#[test]
fn missing_repository_and_unreachable_server_are_told_apart() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    for via in [Via::Daemon, Via::Http, Via::File] {
        let (_server, url) = serve(&up, via)?;
        let missing = RepoUrl::parse(&url.to_string().replace("app.git", "missing.git"))?;
        let dir = tempfile::tempdir()?;
        let err = git::clone(
            &Source::new(missing),
            &dir.path().join("ws"),
            &GitOptions::default(),
        )
        .expect_err("must fail");
        assert!(
            matches!(err, Error::RepoNotFound { .. }),
            "{via:?}: {err:?}"
        );
    }
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    for url in [
        format!("http://127.0.0.1:{port}/app.git"),
        format!("git://127.0.0.1:{port}/app.git"),
    ] {
        let dir = tempfile::tempdir()?;
        let err = git::clone(
            &Source::parse(&url)?,
            &dir.path().join("ws"),
            &GitOptions::default(),
        )
        .expect_err("must fail");
        assert!(matches!(err, Error::Network { .. }), "{url}: {err:?}");
        assert!(err.to_string().contains("cannot reach"), "{err}");
    }
    Ok(())
}

#[test]
fn clone_refuses_a_non_empty_destination() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("precious.txt"), "keep")?;
    let err = git::clone(
        &Source::parse(&up.file_url())?,
        dir.path(),
        &GitOptions::default(),
    )
    .expect_err("must refuse");
    assert!(matches!(err, Error::InvalidOptions(_)), "{err:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("precious.txt"))?,
        "keep"
    );
    Ok(())
}

#[test]
fn submodules_and_lfs_are_refused_naming_the_paths() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 2)?;
    up.create_branch("with-submodule", "trunk")?;
    let sub_commit = up.tip("trunk")?;
    up.commit(
        "with-submodule",
        &[
            Change::write(".gitmodules", "[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n\turl = https://example.com/lib.git\n"),
            Change::Gitlink("vendor/lib".into(), sub_commit),
        ],
    )?;
    up.create_branch("with-lfs", "trunk")?;
    up.commit(
        "with-lfs",
        &[Change::write(
            "assets/.gitattributes",
            "*.psd filter=lfs diff=lfs merge=lfs -text\n",
        )],
    )?;
    up.create_branch("harmless-attributes", "trunk")?;
    up.commit(
        "harmless-attributes",
        &[Change::write(".gitattributes", "*.sh text eol=lf\n")],
    )?;
    let (_server, url) = serve(&up, Via::Http)?;
    let dir = tempfile::tempdir()?;

    let err = git::clone(
        &source(&url, Some("with-submodule"), None)?,
        &dir.path().join("a"),
        &GitOptions::default(),
    )
    .expect_err("submodules refused");
    assert!(matches!(err, Error::UnsupportedRepository(_)), "{err:?}");
    assert!(err.to_string().contains("submodules (vendor/lib)"), "{err}");

    let err = git::clone(
        &source(&url, Some("with-lfs"), None)?,
        &dir.path().join("b"),
        &GitOptions::default(),
    )
    .expect_err("LFS refused");
    assert!(
        err.to_string().contains("Git LFS (for assets/*.psd)"),
        "{err}"
    );

    // sync refuses too, leaving the workspace on its old branch
    let ws = dir.path().join("c");
    git::clone(&source(&url, None, None)?, &ws, &GitOptions::default())?;
    let err = git::sync(
        &source(&url, Some("with-lfs"), None)?,
        &ws,
        &GitOptions::default(),
    )
    .expect_err("LFS refused on sync");
    assert!(matches!(err, Error::UnsupportedRepository(_)), "{err:?}");
    assert_eq!(state(&ws)?.branch, "trunk");

    // attributes without filter=lfs are fine
    git::clone(
        &source(&url, Some("harmless-attributes"), None)?,
        &dir.path().join("d"),
        &GitOptions::default(),
    )?;
    Ok(())
}

#[test]
fn progress_is_reported_through_the_callback() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 200)?;
    let (_server, url) = serve(&up, Via::Http)?;
    let calls = Arc::new(AtomicUsize::new(0));
    let max_received = Arc::new(AtomicUsize::new(0));
    let (c, m) = (Arc::clone(&calls), Arc::clone(&max_received));
    let opts = GitOptions {
        progress: Some(Arc::new(move |p: &git::Progress| {
            c.fetch_add(1, Ordering::Relaxed);
            m.fetch_max(p.received_objects, Ordering::Relaxed);
        })),
        ..GitOptions::default()
    };
    let dir = tempfile::tempdir()?;
    let out = git::clone(&source(&url, None, None)?, &dir.path().join("ws"), &opts)?;
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(
        max_received.load(Ordering::Relaxed) as u64,
        out.received_objects
    );
    assert!(out.received_objects > 200, "{out:?}");
    Ok(())
}

#[test]
fn head_reports_branch_and_refuses_detached() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    git::clone(&Source::parse(&up.file_url())?, &ws, &GitOptions::default())?;
    assert_eq!(git::head(&ws)?.branch, "trunk");
    git_in(&ws, &["checkout", "--quiet", "--detach"])?;
    assert!(matches!(git::head(&ws), Err(Error::Git { .. })));
    assert!(git::head(dir.path()).is_err(), "not a repository");
    Ok(())
}

/// https goes through libgit2's OpenSSL stream wrapped around the engine's own TCP
/// stream: against a TLS server with a self-signed certificate the handshake happens
/// and the certificate is refused (no way around verification is offered).
#[test]
fn https_handshakes_over_the_engine_stream_and_verifies_certificates() -> anyhow::Result<()> {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir()?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "openssl req failed");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_server",
        "-quiet",
        "-www",
        "-accept",
        &format!("127.0.0.1:{port}"),
    ])
    .arg("-cert")
    .arg(&cert)
    .arg("-key")
    .arg(&key)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut server = test_support::ChildGuard::spawn(&mut cmd)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            server.is_running() && std::time::Instant::now() < deadline,
            "s_server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = format!("https://127.0.0.1:{port}/app.git");
    let err = git::clone(
        &Source::parse(&url)?,
        &dir.path().join("ws"),
        &GitOptions::default(),
    )
    .expect_err("self-signed certificate refused");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    Ok(())
}

/// Every file's executable bit (`None` for symlinks) under `dir`, `.git` aside.
fn exec_bits(dir: &std::path::Path) -> anyhow::Result<Vec<(std::path::PathBuf, Option<bool>)>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for rel in crate::git_sync_paths::files(dir, &[])?.into_keys() {
        let m = std::fs::symlink_metadata(dir.join(&rel))?;
        out.push((
            rel,
            (!m.is_symlink()).then(|| m.permissions().mode() & 0o111 != 0),
        ));
    }
    Ok(out)
}

/// An upstream with nested directories, an executable, a symlink, ignore rules and a
/// `.gitattributes` holding `attributes`, pushed with the git CLI.
fn varied_upstream(scratch: &std::path::Path, attributes: &str) -> anyhow::Result<Upstream> {
    use std::os::unix::fs::PermissionsExt;
    let up = Upstream::new("trunk", 200)?;
    git_in(
        scratch,
        &[
            "clone",
            "-q",
            up.path().to_str().unwrap_or_default(),
            "work",
        ],
    )?;
    let work = scratch.join("work");
    std::fs::write(work.join(".gitignore"), "build/\n")?;
    std::fs::write(work.join(".gitattributes"), attributes)?;
    std::fs::create_dir_all(work.join("bin/deep/er"))?;
    std::fs::write(work.join("bin/run.sh"), "#!/bin/sh\necho run\n")?;
    std::fs::set_permissions(
        work.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::fs::write(work.join("bin/deep/er/notes.txt"), "line one\nline two\n")?;
    std::os::unix::fs::symlink("../bin/run.sh", work.join("bin/deep/link"))?;
    git_in(&work, &["add", "-A"])?;
    commit_in(&work, "varied")?;
    git_in(&work, &["push", "-q", "origin", "trunk"])?;
    Ok(up)
}

/// Clones `url` into `ws` (default options) and returns the engine's log.
fn logged_clone(url: &RepoUrl, ws: &std::path::Path) -> anyhow::Result<String> {
    let (result, log) = test_support::capture_tracing(|| {
        git::clone(&Source::new(url.clone()), ws, &GitOptions::default())
    });
    result?;
    Ok(log.text())
}

/// A clone's checkout goes through the parallel writer (a new repository: every path
/// an addition) and leaves exactly what `git clone` leaves: contents, link targets,
/// executable bits, a clean status and index stat data that matches the files.
#[test]
fn a_clone_is_written_by_the_parallel_writer_and_equals_a_git_cli_clone() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = varied_upstream(dir.path(), "*.txt diff\n")?;
    let (_server, url) = serve(&up, Via::Http)?;
    let ws = dir.path().join("ws");
    let log = logged_clone(&url, &ws)?;
    assert!(log.contains("route=\"fresh\""), "{log}");
    git_in(
        dir.path(),
        &["clone", "-q", "--depth=1", &url.as_git_url(), "cli"],
    )?;
    let cli = dir.path().join("cli");
    assert_eq!(
        crate::git_sync_paths::files(&ws, &[])?,
        crate::git_sync_paths::files(&cli, &[])?
    );
    assert_eq!(exec_bits(&ws)?, exec_bits(&cli)?);
    let stale = git_in(&ws, &["diff-files", "--name-only"])?;
    assert!(stale.is_empty(), "index stat data does not match:\n{stale}");
    assert_clean(&ws)?;
    assert_eq!(
        git_in(&ws, &["ls-files", "-s"])?,
        git_in(&cli, &["ls-files", "-s"])?
    );
    Ok(())
}

/// A `.gitattributes` that converts line endings: the clone is checked out by
/// libgit2, which applies it, as `git clone` does.
#[test]
fn a_clone_whose_attributes_convert_is_checked_out_by_libgit2() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = varied_upstream(dir.path(), "*.txt eol=crlf\n")?;
    let (_server, url) = serve(&up, Via::Http)?;
    let ws = dir.path().join("ws");
    let log = logged_clone(&url, &ws)?;
    assert!(log.contains("route=\"full\""), "{log}");
    assert!(!log.contains("route=\"fresh\""), "{log}");
    assert_eq!(
        std::fs::read(ws.join("bin/deep/er/notes.txt"))?,
        b"line one\r\nline two\r\n"
    );
    git_in(
        dir.path(),
        &["clone", "-q", "--depth=1", &url.as_git_url(), "cli"],
    )?;
    assert_eq!(
        crate::git_sync_paths::files(&ws, &[])?,
        crate::git_sync_paths::files(&dir.path().join("cli"), &[])?
    );
    assert_clean(&ws)?;
    Ok(())
}
