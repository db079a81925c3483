//! The cases of a run: headstart cold and warm starts in-process, the `headstart up`
//! CLI, and the git CLI cloning the same upstream; each pushes its [`CaseResult`] (or
//! why it was skipped) to the run's [`Ctx`].
//!
//! What it is not: the order of the cases or their setup (`run.rs`), nor the Docker
//! cases (`docker.rs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use provisioners::local::RestoreMethod;
use sandbox_core::{ConnectOptions, SandboxName, Source, StartPath};
use snapshot_refresh::{FastStart, KickOutcome, Started};

use super::measure::{CaseResult, Sample, check_workspace, git_cmd, run_git, run_git_in};
use super::round::{Member, Slot, run_round};
use super::{Ctx, Rig, Served, gitsplit, target_dir};

/// A start of `name` on `fast` (replacing any sandbox of that name) and its wall time
/// in ms.
pub(super) async fn timed_start(
    fast: &FastStart,
    source: &Source,
    name: &SandboxName,
) -> anyhow::Result<(Started, f64)> {
    gitsplit::reset();
    let t = Instant::now();
    let started = fast
        .start(
            source,
            &ConnectOptions::new().name(name.clone()).force_create(true),
        )
        .await?;
    Ok((started, t.elapsed().as_secs_f64() * 1e3))
}

/// `git -C dir <args>`, timed: its wall time in ms.
fn timed_git_in(dir: &Path, args: &[&str], what: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    run_git_in(dir, args, what)?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// An error unless `started` went the way `want`.
fn expect_path(started: &Started, want: StartPath) -> anyhow::Result<()> {
    if started.report.path != want {
        let want = format!("{want:?}").to_lowercase();
        bail!(
            "expected a {want} start, got {:?}: {}",
            started.report.path,
            started.report.reason
        );
    }
    Ok(())
}

/// The sample of a start that took `wall_ms`: its phases (`git_*` split into their
/// steps) and how long `git status` takes in its workspace, which must be at
/// `branch`@`commit`.
pub(super) fn start_sample(
    wall_ms: f64,
    started: &Started,
    branch: &str,
    commit: &str,
) -> anyhow::Result<Sample> {
    let mut sample = Sample::from_report(wall_ms, &started.report);
    gitsplit::split(&mut sample.phases);
    sample.status_ms = Some(check_workspace(
        started.sandbox.workspace(),
        branch,
        commit,
    )?);
    Ok(sample)
}

/// headstart warm starts: `reps` fresh sandboxes from the rig's snapshot, each checked.
pub(super) async fn warm_case(
    ctx: &mut Ctx,
    rig: &Rig,
    served: &Served,
    url: &str,
    branch: Option<&str>,
    case: CaseResult,
) {
    let member = Member::Warm {
        rig,
        url: url.to_owned(),
        branch: branch.map(str::to_owned),
    };
    run_round(ctx, served, None, vec![Slot::new(member, case)]).await;
}

/// One warm start from the rig's snapshot into a fresh sandbox `name`, checked against
/// `expect` on `expect_branch`.
pub(super) async fn warm_rep(
    rig: &Rig,
    source: &Source,
    name: &str,
    expect_branch: &str,
    expect: &str,
) -> anyhow::Result<Sample> {
    let name = SandboxName::new(name)?;
    let (started, wall) = timed_start(&rig.fast, source, &name).await?;
    expect_path(&started, StartPath::Warm)?;
    if started.build.is_some() {
        bail!("a warm start kicked a rebuild ({:?})", started.build);
    }
    let sample = start_sample(wall, &started, expect_branch, expect)?;
    rig.provider.remove(&name).await?;
    Ok(sample)
}

/// headstart cold starts (a fresh home each, so no snapshot) and the snapshot builds
/// they kick.
pub(super) async fn cold_case(
    ctx: &mut Ctx,
    served: &Served,
    url: &str,
    transport: &str,
    suffix: &str,
) {
    let make = cold_rigs(ctx, suffix);
    let (cold, build) = cold_results(served, transport, suffix);
    cold_reps(ctx, served, url, cold, build, &make).await;
}

/// Fresh local rigs for cold starts, one home per repetition.
pub(super) fn cold_rigs(
    ctx: &Ctx,
    suffix: &str,
) -> impl Fn(usize) -> anyhow::Result<Rig> + Sync + use<> {
    let suffix = suffix.to_owned();
    ctx.fresh_rigs(move |rep| format!("cold{suffix}-{rep}"), Ok)
}

/// The cold start's and the snapshot build's results, empty.
pub(super) fn cold_results(
    served: &Served,
    transport: &str,
    suffix: &str,
) -> (CaseResult, CaseResult) {
    let cold = CaseResult::new(
        &format!("hs_cold{suffix}"),
        &format!(
            "headstart cold start (no snapshot){}",
            label_suffix(transport)
        ),
        "headstart",
        transport,
        &served.fixture.name,
    );
    let build = CaseResult::new(
        &format!("hs_snapshot_build{suffix}"),
        &format!(
            "snapshot build (background, from the cold clone){}",
            label_suffix(transport)
        ),
        "headstart",
        transport,
        &served.fixture.name,
    );
    (cold, build)
}

/// Cold starts on fresh rigs (no snapshot), each followed by the build it kicks.
pub(super) async fn cold_reps(
    ctx: &mut Ctx,
    served: &Served,
    url: &str,
    cold: CaseResult,
    build: CaseResult,
    make: &(dyn Fn(usize) -> anyhow::Result<Rig> + Sync),
) {
    let member = Member::Cold {
        url: url.to_owned(),
        make,
    };
    run_round(
        ctx,
        served,
        None,
        vec![Slot::new(member, cold).with_build(build)],
    )
    .await;
}

/// One cold start on a fresh rig, and the build it kicks: the start's sample, the
/// build's, and whether the build reused the cold clone as its seed.
pub(super) async fn cold_rep(
    rig: Rig,
    source: &Source,
    rep: usize,
    branch: &str,
    expect: &str,
) -> anyhow::Result<(Sample, Sample, bool)> {
    let name = SandboxName::new(format!("cold-{rep}"))?;
    let (started, wall) = timed_start(&rig.fast, source, &name).await?;
    expect_path(&started, StartPath::Cold)?;
    if started.build != Some(KickOutcome::Started) {
        bail!("the cold start did not start a build: {:?}", started.build);
    }
    // `git status` timed while the background build runs, as a user would see it.
    let sample = start_sample(wall, &started, branch, expect)?;
    let key = started.key.clone().context("no snapshot key")?;
    let (build, from_seed) = match rig.builder.wait(&key).await {
        Some(Ok(report)) => {
            let mut s = Sample::single("build", report.duration.as_secs_f64() * 1e3);
            s.received_bytes = None;
            (s, report.from_seed)
        }
        Some(Err(e)) => bail!("the snapshot build failed: {e}"),
        None => bail!("no build to wait for"),
    };
    drop(started);
    rig.dispose().await;
    Ok((sample, build, from_seed))
}

pub(super) const CLI_LABEL: &str = "`headstart up --json` (CLI process), warm, 1 ahead";

/// Builds the release `headstart` binary; `Err` says why the CLI case cannot run.
pub(super) fn build_headstart() -> Result<PathBuf, String> {
    eprintln!("building the release headstart binary for the CLI case ...");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "headstart",
            "--bin",
            "headstart",
        ])
        .current_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new(".")),
        )
        .output()
        .map_err(|e| format!("running cargo build: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("error"))
            .take(2)
            .collect();
        return Err(format!(
            "the headstart binary does not build: {}",
            first.join("; ")
        ));
    }
    let bin = target_dir().join("release").join("headstart");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("no binary at {}", bin.display()))
    }
}

/// `headstart up <url> --json --provider local` on the rig's home (its snapshot is
/// there), timed from process start to exit; the phases come from its JSON.
pub(super) async fn cli_rep(
    rig: &Rig,
    served: &Served,
    bin: &Path,
    rep: usize,
    branch: &str,
    expect: &str,
) -> anyhow::Result<Sample> {
    let home = rig
        .home
        .clone()
        .context("the CLI case needs the local provider")?;
    let name = format!("cli-{rep}");
    let t = Instant::now();
    let out = tokio::process::Command::new(bin)
        .args([
            "up",
            &served.http_url,
            "--json",
            "--provider",
            "local",
            "--force-create",
            "--name",
            &name,
        ])
        .env("HEADSTART_HOME", &home)
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
        .env("HEADSTART_TELEMETRY", "0")
        .env("DO_NOT_TRACK", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    let wall = t.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!(
            "headstart up failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "headstart up --json printed: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    if v["path"] != "warm" {
        bail!("expected a warm start, got {} ({})", v["path"], v["reason"]);
    }
    let ws = v["sandbox"]["workspace"]
        .as_str()
        .context("no workspace in the JSON")?
        .to_owned();
    let mut phases: Vec<(String, f64)> = v["phases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["ms"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let accounted: f64 = phases.iter().map(|(_, v)| v).sum();
    phases.push(("process".to_owned(), (wall - accounted).max(0.0)));
    let mut sample = Sample {
        total_ms: wall,
        status_ms: None,
        phases,
        received_bytes: v["received_bytes"].as_u64(),
    };
    sample.status_ms = Some(check_workspace(Path::new(&ws), branch, expect)?);
    rig.provider.remove(&SandboxName::new(name)?).await?;
    Ok(sample)
}

fn label_suffix(transport: &str) -> String {
    if transport == "http" {
        String::new()
    } else {
        format!(" [{transport}]")
    }
}

/// The git CLI cloning the same upstream.
pub(super) async fn git_clone_case(
    ctx: &mut Ctx,
    served: &Served,
    url: &str,
    transport: &str,
    id: &str,
    label: &str,
    extra: &[String],
) {
    let case = CaseResult::new(id, label, "git", transport, &served.fixture.name);
    let member = Member::Clone {
        url: url.to_owned(),
        extra: extra.to_vec(),
        branch: None,
    };
    run_round(ctx, served, None, vec![Slot::new(member, case)]).await;
}

/// One `git clone <extra> url` into a fresh directory under `work`, checked against
/// `expect` on `branch`, then removed.
pub(super) fn clone_rep(
    work: &Path,
    url: &str,
    extra: &[String],
    dest_name: &str,
    branch: &str,
    expect: &str,
) -> anyhow::Result<Sample> {
    let dest = work.join(dest_name);
    let t = Instant::now();
    run_git(
        git_cmd()
            .args(["clone", "--quiet"])
            .args(extra)
            .arg(url)
            .arg(&dest),
        &format!("git clone {}", extra.join(" ")),
    )?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let mut sample = Sample::single("git", ms);
    sample.status_ms = Some(check_workspace(&dest, branch, expect)?);
    std::fs::remove_dir_all(&dest)?;
    Ok(sample)
}

/// The git CLI doing exactly headstart's warm path on the same snapshot: the snapshot's
/// workspace restored the way the rig restores it (an overlay mount, else a copy),
/// `git fetch --depth=1 <remote> <branch>`, `git checkout -B <branch> FETCH_HEAD`.
/// Phases `restore`, `fetch`, `checkout`.
pub(super) fn floor_rep(
    floor: &FloorSetup,
    work: &Path,
    dir_name: &str,
    branch: &str,
    expect: &str,
) -> anyhow::Result<Sample> {
    let dir = work.join(dir_name);
    let ws = dir.join("workspace");
    let (upper, scratch) = (dir.join("upper"), dir.join("work"));
    for d in [&ws, &upper, &scratch] {
        std::fs::create_dir_all(d)?;
    }
    let t = Instant::now();
    match floor.method {
        RestoreMethod::Overlay => {
            provisioners::local::mount_overlay(&floor.lower, &upper, &scratch, &ws)?;
        }
        m => {
            std::fs::remove_dir(&ws)?;
            // A hardlink-copy restore is approximated by a plain copy (`cp -al` would
            // share worktree files with the snapshot): slower, in the floor's disfavour.
            let flags: &[&str] = match m {
                RestoreMethod::Reflink => &["-a", "--reflink=always"],
                _ => &["-a"],
            };
            let st = std::process::Command::new("cp")
                .args(flags)
                .arg(&floor.lower)
                .arg(&ws)
                .status()?;
            if !st.success() {
                bail!("cp {} of the snapshot workspace failed", flags.join(" "));
            }
        }
    }
    let restore_ms = t.elapsed().as_secs_f64() * 1e3;
    let fetch = ["fetch", "--quiet", "--depth=1", &floor.remote, branch];
    let fetch_ms = timed_git_in(&ws, &fetch, "git fetch --depth=1")?;
    let checkout = ["checkout", "--quiet", "-B", branch, "FETCH_HEAD"];
    let checkout_ms = timed_git_in(&ws, &checkout, "git checkout -B")?;
    let mut sample = Sample {
        total_ms: restore_ms + fetch_ms + checkout_ms,
        status_ms: None,
        phases: vec![
            ("restore".to_owned(), restore_ms),
            ("fetch".to_owned(), fetch_ms),
            ("checkout".to_owned(), checkout_ms),
        ],
        received_bytes: None,
    };
    sample.status_ms = Some(check_workspace(&ws, branch, expect)?);
    if floor.method == RestoreMethod::Overlay {
        rustix::mount::unmount(&ws, rustix::mount::UnmountFlags::empty())
            .with_context(|| format!("unmounting {}", ws.display()))?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(sample)
}

/// What the floor cases restore, and from where they fetch.
pub(super) struct FloorSetup {
    /// The snapshot's captured workspace.
    pub(super) lower: PathBuf,
    pub(super) method: RestoreMethod,
    /// `origin` when the snapshot's origin is the served URL, else the URL itself.
    pub(super) remote: String,
}

impl FloorSetup {
    /// The newest snapshot workspace in the rig's home, and how the rig restores it.
    pub(super) fn of(rig: &Rig, url: &str) -> anyhow::Result<Self> {
        let home = rig
            .home
            .as_ref()
            .context("the floor needs the local provider")?;
        let method = rig.restore.context("no working restore method here")?;
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for key in std::fs::read_dir(home.join("snapshots"))? {
            let key = key?;
            if key.file_name().to_string_lossy().starts_with('.') || !key.path().is_dir() {
                continue;
            }
            for id in std::fs::read_dir(key.path())? {
                let ws = id?.path().join("workspace");
                if ws.is_dir() {
                    found.push((std::fs::metadata(&ws)?.modified()?, ws));
                }
            }
        }
        found.sort();
        let lower = found
            .pop()
            .map(|(_, p)| p)
            .context("no snapshot workspace")?;
        let origin = run_git_in(
            &lower,
            &["config", "--get", "remote.origin.url"],
            "git config remote.origin.url",
        )
        .unwrap_or_default();
        let remote = if origin.trim() == url {
            "origin".to_owned()
        } else {
            url.to_owned()
        };
        Ok(Self {
            lower,
            method,
            remote,
        })
    }
}

/// The git CLI cases no ratio uses (the others run interleaved with their partners).
pub(super) async fn git_cli_cases(ctx: &mut Ctx, served: &Served, mirror: &Path) {
    let url = served.http_url.clone();
    git_clone_case(
        ctx,
        served,
        &url,
        "http",
        "git_clone_reference",
        "git clone --reference <local mirror>",
        &["--reference".into(), mirror.display().to_string()],
    )
    .await;
    git_clone_case(
        ctx,
        served,
        &url,
        "http",
        "git_clone_blobless",
        "git clone --filter=blob:none",
        &["--filter=blob:none".into()],
    )
    .await;
}
