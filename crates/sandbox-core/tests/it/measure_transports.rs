//! Not a timed test: an ignored measurement that prints, for a 1,000-file fixture,
//! the median time of a clone and of a sync through the engine next to the git CLI
//! doing the same, over smart HTTP, git daemon and `file://`, in the same run.
//!
//! `cargo test -p sandbox-core --test it measure_ -- --ignored --nocapture`

use std::path::Path;
use std::time::{Duration, Instant};

use sandbox_core::Source;
use sandbox_core::git::{self, GitOptions};
use test_support::{Upstream, git_command};

use crate::common::{Via, serve};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn cli(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = git_command().arg("-C").arg(dir).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
#[allow(clippy::print_stderr)]
fn measure_clone_and_sync_of_1000_files() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1000)?;
    let mut rows = Vec::new();
    for via in [Via::Http, Via::Daemon, Via::File] {
        let (_server, url) = serve(&up, via)?;
        let src = Source::new(url.clone());
        let (mut e_clone, mut e_sync, mut c_clone, mut c_sync) = (vec![], vec![], vec![], vec![]);
        for _ in 0..RUNS {
            let dir = tempfile::tempdir()?;
            let d = dir.path();

            let t = Instant::now();
            git::clone(&src, &d.join("engine"), &GitOptions::default())?;
            e_clone.push(t.elapsed());

            let t = Instant::now();
            cli(
                d,
                &["clone", "--quiet", "--depth=1", &url.to_string(), "cli"],
            )?;
            c_clone.push(t.elapsed());

            up.advance("trunk", 1)?;

            let t = Instant::now();
            git::sync(&src, &d.join("engine"), &GitOptions::default())?;
            e_sync.push(t.elapsed());

            let t = Instant::now();
            let ws = d.join("cli");
            cli(
                &ws,
                &[
                    "fetch",
                    "--quiet",
                    "--depth=1",
                    "origin",
                    "+refs/heads/trunk:refs/remotes/origin/trunk",
                ],
            )?;
            cli(&ws, &["checkout", "--quiet", "-B", "trunk", "origin/trunk"])?;
            c_sync.push(t.elapsed());
        }
        rows.push((
            via,
            median(e_clone),
            median(c_clone),
            median(e_sync),
            median(c_sync),
        ));
    }
    eprintln!(
        "\n1,000-file fixture, median of {RUNS} runs (sync = +1 upstream commit, same branch)"
    );
    eprintln!(
        "{:<8} {:>13} {:>13} {:>13} {:>13}",
        "via", "engine clone", "git clone", "engine sync", "git fetch+co"
    );
    for (via, ec, cc, es, cs) in rows {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        eprintln!(
            "{:<8} {:>13} {:>13} {:>13} {:>13}",
            format!("{via:?}"),
            ms(ec),
            ms(cc),
            ms(es),
            ms(cs)
        );
    }
    Ok(())
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
#[allow(clippy::print_stderr)]
fn measure_http_request_timeline() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1000)?;
    let (server, url) = serve(&up, Via::Http)?;
    let src = Source::new(url.clone());
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let (r, log) = test_support::capture_tracing(|| {
        git::clone(&src, &dir.path().join("engine"), &GitOptions::default())
    });
    r?;
    eprintln!("engine clone {:?}", t.elapsed());
    for line in log.text().lines().filter(|l| l.contains("elapsed_ms")) {
        eprintln!("  {line}");
    }
    for r in server.http().requests() {
        eprintln!(
            "  {:>8.1?} {:>8.1?} {:>8.1?} {} {}",
            r.started_at, r.received_at, r.handled_in, r.method, r.path
        );
    }
    up.advance("trunk", 1)?;
    server.http().clear_log();
    let t = Instant::now();
    git::sync(&src, &dir.path().join("engine"), &GitOptions::default())?;
    eprintln!("engine sync {:?}", t.elapsed());
    for r in server.http().requests() {
        eprintln!(
            "  {:>8.1?} {:>8.1?} {:>8.1?} {} {}",
            r.started_at, r.received_at, r.handled_in, r.method, r.path
        );
    }
    server.http().clear_log();
    let t = Instant::now();
    cli(
        dir.path(),
        &["clone", "--quiet", "--depth=1", &url.to_string(), "cli"],
    )?;
    eprintln!("cli clone {:?}", t.elapsed());
    for r in server.http().requests() {
        eprintln!(
            "  {:>8.1?} {:>8.1?} {:>8.1?} {} {}",
            r.started_at, r.received_at, r.handled_in, r.method, r.path
        );
    }
    Ok(())
}

/// Whether a sync's untracked-file removal walks into ignored directories (a
/// snapshot's `node_modules` can hold 100k files).
#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
#[allow(clippy::print_stderr)]
fn measure_sync_with_a_large_ignored_directory() -> anyhow::Result<()> {
    use test_support::Change;
    let up = Upstream::new("trunk", 1000)?;
    up.commit("trunk", &[Change::write(".gitignore", "node_modules/\n")])?;
    let (_server, url) = serve(&up, Via::File)?;
    let src = Source::new(url);
    for ignored_files in [0usize, 20_000] {
        let dir = tempfile::tempdir()?;
        let ws = dir.path().join("ws");
        git::clone(&src, &ws, &GitOptions::default())?;
        for i in 0..ignored_files {
            let d = ws.join(format!("node_modules/pkg{}", i / 100));
            if i % 100 == 0 {
                std::fs::create_dir_all(&d)?;
            }
            std::fs::write(d.join(format!("f{i}.js")), "x")?;
        }
        let mut times = Vec::new();
        for _ in 0..3 {
            up.advance("trunk", 1)?;
            let t = Instant::now();
            git::sync(&src, &ws, &GitOptions::default())?;
            times.push(t.elapsed());
        }
        anyhow::ensure!(ignored_files == 0 || ws.join("node_modules/pkg0/f0.js").exists());
        eprintln!(
            "{ignored_files} ignored files: sync median {:?}",
            median(times)
        );
    }
    Ok(())
}

/// One clone of a 1,000-file fixture over `file://`, for `strace`/`perf`.
#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
#[allow(clippy::print_stderr)]
fn measure_one_local_clone() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1000)?;
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    git::clone(
        &Source::new(sandbox_core::RepoUrl::parse(&up.file_url())?),
        &dir.path().join("ws"),
        &GitOptions::default(),
    )?;
    eprintln!("clone {:?}", t.elapsed());
    Ok(())
}
