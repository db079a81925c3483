//! Deadlines, the low-speed limit and cancellation against servers that trickle or
//! stall (a loopback proxy in front of the smart-HTTP server): the engine fails in
//! bounded time with the error that says why, and a failed clone leaves nothing.

use std::time::{Duration, Instant};

use sandbox_core::git::{self, GitOptions};
use sandbox_core::{CancelToken, Error, LowSpeed, RepoUrl, Source, TransferLimits};
use test_support::{GitHttpServer, TrickleProxy, Upstream};

use crate::common::state;

/// An upstream served over smart HTTP behind a proxy passing one byte every 2 s.
fn trickling() -> anyhow::Result<(Upstream, GitHttpServer, TrickleProxy, RepoUrl)> {
    let up = Upstream::new("trunk", 5)?;
    let http = GitHttpServer::start(up.root())?;
    let proxy = TrickleProxy::trickle(http.addr(), 1, Duration::from_secs(2))?;
    let url = RepoUrl::parse(&proxy.http_url(up.name()))?;
    Ok((up, http, proxy, url))
}

#[test]
fn a_trickling_server_fails_the_clone_with_timeout_at_the_deadline() -> anyhow::Result<()> {
    let (_up, _http, _proxy, url) = trickling()?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    let opts = GitOptions {
        limits: TransferLimits::within(Duration::from_secs(5)),
        ..GitOptions::default()
    };
    let t = Instant::now();
    let err = git::clone(&Source::new(url), &ws, &opts).expect_err("deadline");
    let took = t.elapsed();
    assert!(
        matches!(&err, Error::Timeout { after, .. } if *after == Duration::from_secs(5)),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out after 5s"), "{err}");
    assert!(
        took >= Duration::from_millis(4900) && took < Duration::from_secs(8),
        "failed after {took:?}"
    );
    assert!(!ws.exists(), "the failed clone removed what it created");
    Ok(())
}

#[test]
fn a_trickle_below_the_low_speed_limit_fails_with_the_low_speed_error() -> anyhow::Result<()> {
    let (_up, _http, _proxy, url) = trickling()?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    let opts = GitOptions {
        limits: TransferLimits::none().low_speed(Some(LowSpeed {
            bytes_per_sec: 1000,
            time: Duration::from_secs(3),
        })),
        ..GitOptions::default()
    };
    let t = Instant::now();
    let err = git::clone(&Source::new(url), &ws, &opts).expect_err("too slow");
    let took = t.elapsed();
    assert!(
        matches!(
            &err,
            Error::TooSlow { bytes_per_sec: 1000, window, .. } if *window == Duration::from_secs(3)
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("the server sent less than 1000 B/s for 3s"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(8),
        "failed after {took:?}"
    );
    assert!(!ws.exists());
    Ok(())
}

#[test]
fn cancelling_stops_a_stalled_clone_within_a_second() -> anyhow::Result<()> {
    let stalled = TrickleProxy::stall()?;
    let url = RepoUrl::parse(&stalled.http_url("app.git"))?;
    let dir = tempfile::tempdir()?;
    // The destination exists (empty): a failed clone empties it but leaves it.
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws)?;
    let cancel = CancelToken::new();
    let opts = GitOptions {
        cancel: Some(cancel.clone()),
        ..GitOptions::default()
    };
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        cancel.cancel();
    });
    let t = Instant::now();
    let err = git::clone(&Source::new(url), &ws, &opts).expect_err("cancelled");
    let took = t.elapsed();
    canceller
        .join()
        .map_err(|_| anyhow::anyhow!("canceller panicked"))?;
    assert!(matches!(&err, Error::Cancelled { .. }), "{err:?}");
    assert!(err.to_string().contains("was interrupted"), "{err}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(2),
        "stopped after {took:?}"
    );
    assert!(ws.is_dir() && std::fs::read_dir(&ws)?.next().is_none());
    Ok(())
}

#[test]
fn a_cancelled_token_or_a_passed_deadline_stops_before_any_request() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    let http = GitHttpServer::start(up.root())?;
    let url = RepoUrl::parse(&http.url(up.name()))?;
    let dir = tempfile::tempdir()?;
    let cancel = CancelToken::new();
    cancel.cancel();
    let opts = GitOptions {
        cancel: Some(cancel),
        ..GitOptions::default()
    };
    let err =
        git::clone(&Source::new(url.clone()), &dir.path().join("a"), &opts).expect_err("cancelled");
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
    let opts = GitOptions {
        limits: TransferLimits::within(Duration::ZERO),
        ..GitOptions::default()
    };
    let err = git::remote_default_branch_with(&url, &opts).expect_err("deadline");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(http.requests().is_empty(), "{:#?}", http.requests());
    assert!(!dir.path().join("a").exists());
    Ok(())
}

#[test]
fn ls_remote_and_sync_honour_the_limits() -> anyhow::Result<()> {
    // ls-remote against a stalled server: the deadline.
    let stalled = TrickleProxy::stall()?;
    let opts = GitOptions {
        limits: TransferLimits::within(Duration::from_secs(1)),
        ..GitOptions::default()
    };
    let t = Instant::now();
    let err =
        git::remote_default_branch_with(&RepoUrl::parse(&stalled.http_url("app.git"))?, &opts)
            .expect_err("deadline");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // sync of a workspace whose origin is the trickling proxy: the deadline, and the
    // workspace is left as it was.
    let (up, http, _proxy, url) = trickling()?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    git::clone(
        &Source::new(RepoUrl::parse(&http.url(up.name()))?),
        &ws,
        &GitOptions::default(),
    )?;
    git2::Repository::open(&ws)?.remote_set_url("origin", &url.to_string())?;
    let before = state(&ws)?;
    up.advance("trunk", 1)?;
    let opts = GitOptions {
        limits: TransferLimits::within(Duration::from_secs(2)),
        ..GitOptions::default()
    };
    let t = Instant::now();
    let err = git::sync(&Source::new(url), &ws, &opts).expect_err("deadline");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(state(&ws)?, before);
    Ok(())
}

/// A clone into a 2 MiB tmpfs of a tree holding an 8 MiB file (its pack is small, so
/// the checkout fills the disk): [`Error::NoSpace`] naming the destination, not a
/// network error, and the clone removes what it wrote.
#[test]
fn a_full_disk_is_no_space_not_a_network_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tmpfs = match test_support::SmallTmpfs::mount(&dir.path().join("small"), 2 << 20) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs here ({e:#})");
            return Ok(());
        }
    };
    let up = Upstream::new("trunk", 3)?;
    let big: Vec<u8> = b"a line of a big, very compressible file\n"
        .iter()
        .copied()
        .cycle()
        .take(8 << 20)
        .collect();
    up.commit(
        "trunk",
        &[test_support::Change::Write("big.txt".into(), big)],
    )?;
    let http = GitHttpServer::start(up.root())?;
    let url = RepoUrl::parse(&http.url(up.name()))?;
    let ws = tmpfs.path().join("ws");
    let err = git::clone(&Source::new(url), &ws, &GitOptions::default()).expect_err("full");
    assert!(
        matches!(&err, Error::NoSpace { path, .. } if *path == ws),
        "{err:?}"
    );
    assert!(err.to_string().contains("no space left on"), "{err}");
    assert!(!ws.exists(), "the failed clone removed what it wrote");
    Ok(())
}

/// A clone cancelled once every object has arrived (while it indexes and writes the
/// worktree through the parallel writer) fails as cancelled and leaves the
/// destination empty: no half-written checkout that looks like a clone.
#[test]
fn a_clone_cancelled_after_its_transfer_leaves_an_empty_destination() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 400)?;
    let http = GitHttpServer::start(up.root())?;
    let url = RepoUrl::parse(&http.url(up.name()))?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws)?;
    let cancel = CancelToken::new();
    let on_progress = cancel.clone();
    let opts = GitOptions {
        cancel: Some(cancel.clone()),
        progress: Some(std::sync::Arc::new(move |p: &git::Progress| {
            if p.total_objects > 0 && p.received_objects == p.total_objects {
                on_progress.cancel();
            }
        })),
        ..GitOptions::default()
    };
    let err = git::clone(&Source::new(url), &ws, &opts).expect_err("cancelled");
    assert!(cancel.is_cancelled());
    assert!(matches!(&err, Error::Cancelled { .. }), "{err:?}");
    assert!(ws.is_dir() && std::fs::read_dir(&ws)?.next().is_none());
    Ok(())
}

/// While a clone runs, its directory says so, and not that it was interrupted (the
/// cloning process holds the marker's lock; a killed clone's is free: the CLI test
/// `a_sigkilled_workdir_clone_is_cloned_again_by_the_next_up`); a finished clone says
/// neither.
#[test]
fn a_clone_in_progress_is_recognisable_and_a_finished_one_is_not() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 50)?;
    let http = GitHttpServer::start(up.root())?;
    let url = RepoUrl::parse(&http.url(up.name()))?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen_in, ws_in) = (seen.clone(), ws.clone());
    let opts = GitOptions {
        progress: Some(std::sync::Arc::new(move |_: &git::Progress| {
            if git::is_clone_running(&ws_in) && !git::is_interrupted_clone(&ws_in) {
                seen_in.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        })),
        ..GitOptions::default()
    };
    git::clone(&Source::new(url), &ws, &opts)?;
    assert!(
        seen.load(std::sync::atomic::Ordering::Relaxed),
        "mid-clone, the directory says a clone has not finished"
    );
    assert!(!git::is_interrupted_clone(&ws) && !git::is_clone_running(&ws));
    assert!(!ws.join(".git/headstart-clone-incomplete").exists());
    Ok(())
}
