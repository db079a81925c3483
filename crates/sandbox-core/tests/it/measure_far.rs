//! Not a timed test: an ignored measurement of a warm sync to a far branch (an orphan
//! branch of 3,000 files with its own `.gitignore`, over a sealed 3,000-file snapshot
//! restored the way the local provider restores it: an overlay mount, the snapshot the
//! read-only lower layer) next to `git clone --depth=1 --branch` of that branch, over
//! smart HTTP, interleaved, with the route the sync took. Needs root for the mount.
//!
//! `cargo test -p sandbox-core --test it measure_far -- --ignored --nocapture`

use std::process::Command;
use std::time::{Duration, Instant};

use sandbox_core::git::{self, GitOptions};
use test_support::{Change, Upstream, capture_tracing, git_command};

use crate::common::{Via, serve, source};

const RUNS: usize = 5;
const FILES: usize = 3_000;

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture (root: overlay mounts)"]
#[allow(clippy::print_stderr)]
fn measure_far_branch_against_a_depth1_clone() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", FILES)?;
    up.commit("trunk", &[Change::write(".gitignore", "build/\n")])?;
    let mut pages = vec![Change::write(".gitignore", "build/\n*.tmp\n")];
    for i in 0..FILES {
        pages.push(Change::Write(
            format!("site/p{:03}/page{i:05}.html", i / 30),
            format!("<p>page {i}</p>\n")
                .repeat(1 + i % 200)
                .into_bytes(),
        ));
    }
    up.commit("pages", &pages)?;
    let (_server, url) = serve(&up, Via::Http)?;
    let scratch = tempfile::tempdir()?;
    let lower = scratch.path().join("lower");
    git::clone(&source(&url, None, None)?, &lower, &GitOptions::default())?;
    std::fs::create_dir_all(lower.join("build"))?;
    std::fs::write(lower.join("build/cache.bin"), "recipe output")?;
    let seal = git::seal_clean(&lower)?.expect("clean");
    let src = source(&url, Some("pages"), None)?;
    let opts = GitOptions {
        clean_seal: Some(seal),
        ..GitOptions::default()
    };
    let (mut warm, mut clone, mut routes) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..RUNS {
        let d = scratch.path().join(format!("r{k}"));
        let (upper, work, merged) = (d.join("upper"), d.join("work"), d.join("merged"));
        for p in [&upper, &work, &merged] {
            std::fs::create_dir_all(p)?;
        }
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={},redirect_dir=on",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .arg(&merged))?;
        let t = Instant::now();
        let (result, log) = capture_tracing(|| git::sync(&src, &merged, &opts));
        let took = t.elapsed();
        let umount = run(Command::new("umount").arg(&merged));
        result?;
        umount?;
        warm.push(took);
        let text = log.text();
        for l in text
            .lines()
            .filter(|l| l.contains("wrote the") || (k == RUNS - 1 && l.contains("elapsed_ms")))
        {
            let at = l.find("}: ").map_or(0, |i| i + 3);
            eprintln!("  | {}", &l[at..]);
        }
        routes.push(
            ["far", "paths", "full"]
                .into_iter()
                .find(|r| text.contains(&format!("route=\"{r}\"")))
                .unwrap_or("?"),
        );

        let t = Instant::now();
        run(git_command().arg("-C").arg(&d).args([
            "clone",
            "--quiet",
            "--depth=1",
            "--branch",
            "pages",
            &url.to_string(),
            "cli",
        ]))?;
        clone.push(t.elapsed());
    }
    let mut ratios: Vec<f64> = warm
        .iter()
        .zip(&clone)
        .map(|(w, c)| ms(*w) / ms(*c))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = |mut v: Vec<Duration>| {
        v.sort();
        ms(v[v.len() / 2])
    };
    eprintln!(
        "far branch ({FILES} files over {FILES}), {RUNS} interleaved pairs over HTTP, routes {routes:?}"
    );
    eprintln!(
        "  warm sync (overlay, sealed): {:?} ms",
        warm.iter().map(|d| ms(*d).round()).collect::<Vec<_>>()
    );
    eprintln!(
        "  git clone --depth=1 --branch: {:?} ms",
        clone.iter().map(|d| ms(*d).round()).collect::<Vec<_>>()
    );
    eprintln!(
        "  medians: warm {:.0} ms, clone {:.0} ms; paired ratio median {:.3} (min {:.3}, max {:.3})",
        median(warm.clone()),
        median(clone.clone()),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    Ok(())
}
