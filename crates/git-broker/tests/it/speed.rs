//! The broker's cost on a big fetch: `git fetch` of a ~20 MB pack through the broker
//! and directly from the upstream, interleaved, median of 5. Run with
//! `cargo test -p git-broker --test it -- --ignored --nocapture broker_overhead`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use test_support::{Change, Upstream};

use crate::fixture::Env;

const FILES: usize = 20;
const FILE_BYTES: usize = 1 << 20;
const RUNS: usize = 5;

/// Incompressible bytes (xorshift), so the pack is as big as the files.
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fetch_once(env: &Env, extra: &[&str], url: &str, n: usize) -> anyhow::Result<Duration> {
    let dir = env.home.path().join(format!("fetch-{n}"));
    let d = dir.to_str().unwrap_or_default();
    env.git_ok(None, &["init", "--quiet", d])?;
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["fetch", "--quiet", url, "main"]);
    let t = Instant::now();
    env.git_ok(Some(&dir), &args)?;
    let took = t.elapsed();
    std::fs::remove_dir_all(&dir)?;
    Ok(took)
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
#[allow(clippy::print_stdout)]
fn broker_overhead_on_a_20_mb_fetch() -> anyhow::Result<()> {
    let upstream = Upstream::new("main", 0)?;
    let changes: Vec<Change> = (0..FILES)
        .map(|i| Change::Write(format!("blob/{i:02}.bin"), noise(i as u64 + 7, FILE_BYTES)))
        .collect();
    upstream.commit("main", &changes)?;
    // the upstream's own cost (deflating incompressible blobs) is noise here
    upstream.git(&["config", "pack.compression", "0"])?;
    upstream.git(&["repack", "-a", "-d", "-q"])?;
    let env = Env::with_broker(git_broker::Broker::new()?, upstream)?;
    let via_broker = env.grant()?.url(env.addr);
    let direct = env.server.url(env.upstream.name());
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{}", env.token));
    let header = format!("http.extraHeader=Authorization: Basic {basic}");
    let direct_args = ["-c", header.as_str()];

    // warm caches on both paths
    fetch_once(&env, &direct_args, &direct, 0)?;
    fetch_once(&env, &[], &via_broker, 1)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        a.push(fetch_once(&env, &direct_args, &direct, 10 + i)?);
        b.push(fetch_once(&env, &[], &via_broker, 20 + i)?);
    }
    let (da, db) = (median(a.clone()), median(b.clone()));
    let overhead = db.saturating_sub(da);
    let allowed = (da / 10).max(Duration::from_millis(20));
    println!("git fetch of {FILES} MiB of incompressible blobs, {RUNS} interleaved pairs");
    println!("  direct:       median {da:?}  runs {a:?}");
    println!("  via broker:   median {db:?}  runs {b:?}");
    println!(
        "  overhead:     {overhead:?} ({:.1}%), budget {allowed:?}",
        100.0 * (db.as_secs_f64() / da.as_secs_f64() - 1.0)
    );
    assert!(
        overhead <= allowed,
        "the broker costs {overhead:?} > {allowed:?}"
    );
    Ok(())
}
