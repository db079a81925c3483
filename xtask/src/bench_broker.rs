//! `cargo xtask bench-broker`: what the credential broker adds to a big `git fetch`.
//!
//! One loopback smart-HTTP upstream (`git http-backend`, demanding a token) holding
//! ~20 MiB of random-content files (so the pack does not compress), and a
//! `git_broker::Broker` with a grant for it on another loopback port. Each
//! repetition is a pair run back to back, interleaved (direct, broker, direct,
//! broker, ...): `git fetch` of `main` into a fresh repository, directly (the token
//! passed to git in its environment, as a header) and through the grant URL (no
//! token). Reported: each side's median, min and max, the median of the per-pair
//! ratios and differences, and the goal: the broker adds at most 10% or 20 ms,
//! whichever is larger (checked on the medians).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use git_broker::{Broker, GrantHints, GrantSpec, PushPolicy};
use sandbox_core::{Credentials, RepoUrl};
use test_support::{Change, GitHttpServer, Upstream, git_command, random_token};

/// Options of `cargo xtask bench-broker`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchBrokerArgs {
    /// Interleaved pairs (direct, broker) to run.
    #[arg(long, default_value_t = 11)]
    reps: usize,
    /// MiB of random-content files in the upstream.
    #[arg(long, default_value_t = 20)]
    mib: usize,
}

/// Incompressible bytes (xorshift).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `git fetch` of `main` from `url` into a fresh repository under `dir`; the time of
/// the fetch alone, and the bytes of the objects it wrote.
fn fetch(dir: &Path, url: &str, header: Option<&str>) -> anyhow::Result<(Duration, u64)> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let ok = |mut c: Command, what: &str| -> anyhow::Result<()> {
        let out = c.output().with_context(|| format!("running {what}"))?;
        if !out.status.success() {
            bail!("{what}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let mut init = git_command();
    init.args(["init", "--quiet"]).arg(dir);
    ok(init, "git init")?;
    let mut cmd = git_command();
    cmd.current_dir(dir).args(["fetch", "--quiet", url, "main"]);
    if let Some(h) = header {
        // in the environment, not the arguments
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", h);
    }
    let t = Instant::now();
    ok(cmd, "git fetch")?;
    let took = t.elapsed();
    let pack = dir.join(".git/objects/pack");
    let bytes = std::fs::read_dir(&pack)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    Ok((took, bytes))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        })
}

/// Runs the benchmark and prints its markdown report.
pub(crate) async fn run(args: BenchBrokerArgs) -> anyhow::Result<()> {
    if args.reps == 0 || args.mib == 0 {
        bail!("--reps and --mib must be at least 1");
    }
    let scratch = tempfile::Builder::new()
        .prefix("hs-bench-broker-")
        .tempdir()?;
    eprintln!("making an upstream with {} MiB of random content", args.mib);
    let upstream = Upstream::new("main", 0)?;
    let changes: Vec<Change> = (0..args.mib)
        .map(|i| Change::Write(format!("blob/{i:03}.bin"), noise(i as u64 + 7, 1 << 20)))
        .collect();
    upstream.commit("main", &changes)?;
    // the upstream's own deflating of incompressible blobs is noise here
    upstream.git(&["config", "pack.compression", "0"])?;
    upstream.git(&["repack", "-a", "-d", "-q"])?;
    let token = random_token();
    let server = GitHttpServer::start_with_token(upstream.root(), &token)?;
    let direct = server.url(upstream.name());

    let broker = Broker::new()?;
    let grant = broker.grant(GrantSpec {
        upstream: RepoUrl::parse(&direct)?,
        credentials: Credentials::token(token.clone()),
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        push: PushPolicy::read_only(),
        hints: GrantHints::default(),
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let via_broker = grant.url(listener.local_addr()?);
    let serving = broker.spawn(listener);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let header = format!("Authorization: Basic {basic}");

    let dir = scratch.path().join("fetch");
    let (d2, u2, h2, b2) = (
        dir.clone(),
        direct.clone(),
        header.clone(),
        via_broker.clone(),
    );
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        // one unmeasured pair: caches warm on both paths
        let (_, pack) = fetch(&d2, &u2, Some(&h2))?;
        let (_, via) = fetch(&d2, &b2, None)?;
        if via != pack {
            bail!("the broker's fetch wrote {via} bytes of pack, the direct one {pack}");
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for r in 0..args.reps {
            eprintln!("pair {}/{}", r + 1, args.reps);
            a.push(fetch(&d2, &u2, Some(&h2))?.0.as_secs_f64() * 1000.0);
            b.push(fetch(&d2, &b2, None)?.0.as_secs_f64() * 1000.0);
        }
        Ok((pack, a, b))
    })
    .await?;
    serving.abort();
    let (pack, a, b) = result?;

    let ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y / x).collect();
    let diffs: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
    let (ma, mb) = (median(&a), median(&b));
    let budget = (ma * 0.10).max(20.0);
    let (amin, amax) = min_max(&a);
    let (bmin, bmax) = min_max(&b);
    let (rmin, rmax) = min_max(&ratios);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "## git fetch through the broker vs direct\n\n\
         {} MiB pack ({pack} bytes), {} interleaved pairs, loopback smart HTTP \
         (`git http-backend`), load average at the end: {}\n",
        args.mib,
        args.reps,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| case | median | min | max |\n|---|---|---|---|");
    println!("| `git fetch` direct | {ma:.1} ms | {amin:.1} ms | {amax:.1} ms |");
    println!("| `git fetch` through the broker | {mb:.1} ms | {bmin:.1} ms | {bmax:.1} ms |");
    println!(
        "\nbroker / direct: median of pair ratios {:.3} (min {rmin:.3}, max {rmax:.3}); \
         median pair difference {:+.1} ms",
        median(&ratios),
        median(&diffs)
    );
    let added = mb - ma;
    let verdict = if added <= budget { "PASS" } else { "MISS" };
    println!(
        "goal: the broker adds at most max(10%, 20 ms) = {budget:.1} ms; \
         it adds {added:+.1} ms (medians): {verdict}"
    );
    Ok(())
}
