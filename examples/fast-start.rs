//! headstart end to end on the embedded local provider: no daemon, no network.
//!
//! ```text
//! cargo run --example fast-start                # makes its own demo upstream
//! cargo run --example fast-start -- <repo>      # any URL or local path git can use
//! ```
//!
//! It runs a cold start (clone; the background builder snapshots the clone), waits for
//! the snapshot, advances the demo upstream by one commit, runs a warm start (restore +
//! depth-1 fetch of one branch) and prints both reports side by side. It exits non-zero
//! unless the second start took the warm path and landed on the upstream's new commit.
//!
//! Data goes to `HEADSTART_HOME` when set, else to a temporary directory removed at exit.
//!
//! Everything it uses comes from one crate, `snapshot_refresh` (its `prelude` and
//! re-exports); see the rustdoc of `snapshot_refresh::FastStart` for the same flow in a
//! few lines.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use snapshot_refresh::StartupReport;
use snapshot_refresh::prelude::*;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fast-start failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1);
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let home = match std::env::var_os("HEADSTART_HOME") {
        Some(h) if !h.is_empty() => std::path::PathBuf::from(h),
        _ => scratch.path().join("home"),
    };

    let (url, demo) = match arg {
        Some(repo) => (repo, None),
        None => {
            let upstream = scratch.path().join("upstream");
            demo::create(&upstream, 1500, 30)?;
            println!(
                "demo upstream: {} (default branch `trunk`)",
                upstream.display()
            );
            (upstream.display().to_string(), Some(upstream))
        }
    };
    let source = Source::parse(&url)?;

    let method = provisioners::local::LocalConfig::from_env()?.restore_method;
    let fast = FastStart::builder()
        .provider(LocalProvider::new(&home).with_restore_method(method))
        .data_dir(&home)
        .build()?;
    let builder = fast.snapshot_builder().clone();
    println!("headstart home: {}\n", home.display());

    // 1. Cold: no snapshot yet.
    let cold = start_new(&fast, &source).await.context("cold start")?;
    let key = cold
        .key
        .clone()
        .context("the repository got no snapshot key")?;
    println!(
        "cold start done in {}; waiting for the background snapshot of {key} ...",
        ms(cold.report.total)
    );
    match builder.wait(&key).await {
        Some(Ok(build)) => println!(
            "snapshot {} ready after {} ({} clone)\n",
            build.snapshot.id,
            ms(build.duration),
            if build.from_seed {
                "seeded from the cold start, no second"
            } else {
                "a fresh"
            }
        ),
        Some(Err(e)) => bail!("the snapshot build failed: {e}"),
        None => bail!("no snapshot build was started: {:?}", cold.build),
    }

    // 2. Upstream moves on.
    let expected = match &demo {
        Some(upstream) => {
            let c = demo::commit(upstream, "a change made after the snapshot")?;
            println!("upstream advanced to {}\n", &c[..12]);
            c
        }
        None => cold
            .report
            .head
            .as_ref()
            .map(|h| h.commit.clone())
            .unwrap_or_default(),
    };

    // 3. Warm: restore the snapshot, fetch one branch at depth 1, check it out.
    let warm = start_new(&fast, &source).await.context("warm start")?;

    print_side_by_side(&cold.report, &warm.report);

    let head = warm
        .report
        .head
        .clone()
        .context("warm start reported no HEAD")?;
    // sandboxes persist by design; this demo removes its own
    let (cold_report, warm_report) = (cold.report.clone(), warm.report.clone());
    let _ = cold.remove().await;
    let _ = warm.remove().await;
    builder.shutdown(Duration::from_secs(10)).await;

    if warm_report.path != StartPath::Warm {
        bail!(
            "the second start took the {:?} path: {}",
            warm_report.path,
            warm_report.reason
        );
    }
    if head.commit != expected {
        bail!(
            "the warm start is at {} but upstream is at {expected}",
            head.commit
        );
    }
    println!(
        "\nwarm start: branch `{}` at {}, the upstream's newest commit. {:.1}x faster than cold.",
        head.branch,
        &head.commit[..12],
        cold_report.total.as_secs_f64() / warm_report.total.as_secs_f64().max(1e-9)
    );
    Ok(())
}

/// Starts a new sandbox under a generated name (the start says whether it went cold or
/// warm).
async fn start_new(fast: &FastStart, source: &Source) -> snapshot_refresh::Result<Started> {
    let name = SandboxName::generate();
    let options = ConnectOptions::new().name(name).force_create(true);
    fast.start(source, &options).await
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn print_side_by_side(cold: &StartupReport, warm: &StartupReport) {
    let mut names: Vec<&'static str> = Vec::new();
    for p in cold.phases.iter().chain(&warm.phases) {
        if !names.contains(&p.name.as_str()) {
            names.push(p.name.as_str());
        }
    }
    let cell = |r: &StartupReport, n: &str| {
        r.phases
            .iter()
            .filter(|p| p.name.as_str() == n)
            .map(|p| p.duration)
            .reduce(|a, b| a + b)
            .map_or_else(|| "-".to_owned(), ms)
    };
    println!("{:<18} {:>12} {:>12}", "phase", "cold", "warm");
    for n in &names {
        println!("{:<18} {:>12} {:>12}", n, cell(cold, n), cell(warm, n));
    }
    println!(
        "{:<18} {:>12} {:>12}",
        "total",
        ms(cold.total),
        ms(warm.total)
    );
    println!(
        "path: cold = {:?} ({}), warm = {:?} ({})",
        cold.path, cold.reason, warm.path, warm.reason
    );
}

/// A demo upstream made in-process with git2 (no git CLI needed).
mod demo {
    use super::*;

    pub(super) fn create(dir: &Path, files: usize, commits: usize) -> anyhow::Result<()> {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("trunk");
        let repo = git2::Repository::init_opts(dir, &opts)?;
        for i in 0..files {
            let path = dir.join(format!("src/mod{:02}/file{i:05}.txt", i % 40));
            std::fs::create_dir_all(path.parent().context("no parent")?)?;
            std::fs::write(
                &path,
                format!("file {i}\n{}\n", "lorem ipsum dolor sit amet ".repeat(8)),
            )?;
        }
        commit_all(&repo, "initial import")?;
        for c in 1..commits {
            std::fs::write(dir.join("CHANGELOG.md"), format!("release {c}\n"))?;
            commit_all(&repo, &format!("release {c}"))?;
        }
        Ok(())
    }

    pub(super) fn commit(dir: &Path, message: &str) -> anyhow::Result<String> {
        let repo = git2::Repository::open(dir)?;
        std::fs::write(dir.join("NEWS.md"), format!("{message}\n"))?;
        commit_all(&repo, message)
    }

    fn commit_all(repo: &git2::Repository, message: &str) -> anyhow::Result<String> {
        let mut index = repo.index()?;
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
        index.write()?;
        let tree = repo.find_tree(index.write_tree()?)?;
        let sig = git2::Signature::now("headstart demo", "demo@headstart.invalid")?;
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let oid = repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)?;
        Ok(oid.to_string())
    }
}
