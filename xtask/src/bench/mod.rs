//! `cargo xtask bench-startup`: headstart's cold and warm starts next to the git CLI,
//! on generated (or real) repositories served over smart HTTP and `git daemon` on
//! loopback, with a markdown table, JSON results and an SVG chart of the phases.
//!
//! headstart is measured **in-process** through the library (`FastStart` on the local
//! provider, and on the Docker provider when an engine answers), the way the CLI and
//! library users call it: that isolates headstart's own work from process start-up and
//! gives the phases straight from the `StartupReport`. The git CLI cases run the real
//! `git` binary against the same servers in the same run. The xtask alias builds this
//! crate in release mode, so the code measured is optimised.

pub(crate) mod chart;
mod docker;
pub(crate) mod fixture;
pub(crate) mod gitsplit;
pub(crate) mod measure;
pub(crate) mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use provisioners::local::{LocalProvider, RestoreMethod};
use sandbox_core::{BranchName, ConnectOptions, SandboxName, SandboxProvider, Source, StartPath};
use snapshot_refresh::{Drift, FastStart, KickOutcome, SnapshotBuilder, Started};
use test_support::{GitDaemon, GitHttpServer};

use fixture::{FixtureInfo, Preset};
use measure::{CaseResult, Sample, check_workspace, git_cmd, run_git};

/// Options of `cargo xtask bench-startup`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Small fixture, 3 repetitions, no size-scaling cases: a run under a minute.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Fixture size: small (~1,000 files / 1,000 commits), medium (~3,000 files /
    /// 20,000 commits), large (~30,000 files). Default: medium (small with --quick).
    #[arg(long)]
    pub(crate) preset: Option<String>,
    /// Repetitions per case (default 5, 3 with --quick).
    #[arg(long)]
    pub(crate) reps: Option<usize>,
    /// Benchmark a real repository (URL or path) instead of a generated fixture; it is
    /// mirrored locally first and served from the mirror.
    #[arg(long, value_name = "URL|PATH")]
    pub(crate) repo: Option<String>,
    /// A previous results JSON to compare with (prints the change per case).
    #[arg(long, value_name = "FILE")]
    pub(crate) baseline: Option<PathBuf>,
    /// Skip the Docker cases even when an engine answers.
    #[arg(long)]
    pub(crate) no_docker: bool,
    /// Skip the `git daemon` (git://) cases.
    #[arg(long)]
    pub(crate) no_daemon: bool,
    /// Skip the warm starts on other fixture sizes (the history-size ratio).
    #[arg(long)]
    pub(crate) no_scaling: bool,
    /// The local provider's restore method: auto, overlay, reflink, hardlink, copy.
    #[arg(long, default_value = "auto")]
    pub(crate) restore_method: String,
    /// Also time the `headstart up --json` CLI (a release build of the `headstart`
    /// binary, made first) on the warm path. On by default except with --quick.
    #[arg(long)]
    pub(crate) cli: bool,
    /// Skip the CLI case.
    #[arg(long, conflicts_with = "cli")]
    pub(crate) no_cli: bool,
    /// Leave the commits the bench adds upstream in the packs `git fast-import` wrote
    /// (by default the served repository is repacked after each advance, as a hosting
    /// service does after a push, so fetches do not pay for poorly deltified packs).
    #[arg(long)]
    pub(crate) no_repack: bool,
    /// Keep the scratch directory (sandboxes, homes, served copies) after the run.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Where results go (default: `<target>/bench-startup`).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
}

/// The target directory of the workspace.
fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), |p| p.join("target"))
}

/// Everything one run needs.
struct Ctx {
    reps: usize,
    work: PathBuf,
    restore: RestoreMethod,
    /// Repack the served repository after advancing it (as a host does after a push).
    repack: bool,
    cases: Vec<CaseResult>,
    seq: u64,
}

impl Ctx {
    fn push(&mut self, case: CaseResult) {
        let c = case.finish();
        match (&c.skipped, c.total) {
            (Some(why), _) => eprintln!("  {:<48} skipped: {why}", c.label),
            (None, Some(t)) => eprintln!(
                "  {:<48} median {:>9.1} ms  (min {:.1}, max {:.1}){}",
                c.label,
                t.median,
                t.min,
                t.max,
                c.status
                    .map(|s| format!("  git status {:.1} ms", s.median))
                    .unwrap_or_default()
            ),
            (None, None) => {}
        }
        self.cases.push(c);
    }

    fn next_seed(&mut self) -> u64 {
        self.seq += 1;
        0x5eed_0000 + self.seq * 7919
    }
}

/// A provider, a builder and a FastStart over one home.
struct Rig {
    /// The local provider's data directory (`None` for other providers).
    home: Option<PathBuf>,
    provider: Arc<dyn SandboxProvider>,
    builder: Arc<SnapshotBuilder>,
    fast: FastStart,
    /// What to say about how snapshots are restored.
    restore_note: Option<String>,
    /// Removed by [`Rig::dispose`].
    scratch: Option<PathBuf>,
    /// Containers and images carrying this scope label are removed by [`Rig::dispose`].
    docker_scope: Option<(bollard::Docker, String)>,
}

/// No drift-triggered refresh during a bench: every warm repetition must restore the
/// same snapshot, however far upstream moved.
fn no_drift() -> Drift {
    Drift {
        max_age: Duration::from_secs(10 * 365 * 24 * 3600),
        max_fetch_bytes: u64::MAX,
    }
}

impl Rig {
    /// The local provider under `home`.
    fn new(home: PathBuf, restore: RestoreMethod) -> Self {
        let local = LocalProvider::new(&home).with_restore_method(restore);
        let note = local
            .effective_restore_method()
            .ok()
            .map(|m| format!("restore: {m}"));
        let mut rig = Self::with_provider(Arc::new(local), home.join("state"));
        rig.restore_note = note;
        rig.home = Some(home);
        rig
    }

    fn with_provider(provider: Arc<dyn SandboxProvider>, state_dir: PathBuf) -> Self {
        let builder = Arc::new(SnapshotBuilder::new(provider.clone(), state_dir));
        let fast = FastStart::new(provider.clone(), builder.clone()).drift(no_drift());
        Self {
            home: None,
            provider,
            builder,
            fast,
            restore_note: None,
            scratch: None,
            docker_scope: None,
        }
    }

    /// Removes what the rig made: its scratch directory, its Docker containers and
    /// images.
    async fn dispose(self) {
        let Self {
            provider,
            builder,
            fast,
            scratch,
            docker_scope,
            ..
        } = self;
        builder.shutdown(Duration::from_secs(60)).await;
        if let Ok(list) = provider.list().await {
            for s in list {
                let _ = provider.remove(&s.name).await;
            }
        }
        drop((fast, builder, provider));
        if let Some((docker, scope)) = docker_scope {
            docker::remove_scope(&docker, &scope).await;
        }
        if let Some(dir) = scratch {
            cleanup_work(&dir);
        }
    }

    /// A cold start plus the background build it kicks, untimed: leaves a ready
    /// snapshot of the upstream's current default branch.
    async fn prime(&self, source: &Source) -> anyhow::Result<()> {
        let name = SandboxName::new("prime")?;
        let started = self
            .fast
            .start(
                source,
                &ConnectOptions::new().name(name.clone()).force_create(true),
            )
            .await?;
        let key = started
            .key
            .clone()
            .context("the fixture got no snapshot key")?;
        match self.builder.wait(&key).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("the snapshot build failed: {e}"),
            None => bail!("no snapshot build started (outcome {:?})", started.build),
        }
        self.provider.remove(&name).await?;
        Ok(())
    }
}

async fn timed_start(
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

/// Where the served upstream lives, with its URLs.
struct Served {
    repo: PathBuf,
    http_url: String,
    daemon_url: Option<String>,
    fixture: FixtureInfo,
}

impl Served {
    fn source(&self, url: &str, branch: Option<&str>) -> anyhow::Result<Source> {
        let s = Source::parse(url)?;
        Ok(match branch {
            Some(b) => s.with_branch(BranchName::new(b)?)?,
            None => s,
        })
    }
}

/// headstart warm starts: `reps` fresh sandboxes from the rig's snapshot, each checked.
async fn warm_case(
    ctx: &mut Ctx,
    rig: &Rig,
    served: &Served,
    url: &str,
    branch: Option<&str>,
    mut case: CaseResult,
) {
    let result: anyhow::Result<()> = async {
        let expect_branch = branch.unwrap_or(&served.fixture.default_branch).to_owned();
        let expect = fixture::tip(&served.repo, &expect_branch)?;
        let source = served.source(url, branch)?;
        for rep in 0..ctx.reps {
            let name = SandboxName::new(format!("{}-{rep}", case.id.replace('_', "-")))?;
            let (started, wall) = timed_start(&rig.fast, &source, &name).await?;
            if started.report.path != StartPath::Warm {
                bail!(
                    "expected a warm start, got {:?}: {}",
                    started.report.path,
                    started.report.reason
                );
            }
            if started.build.is_some() {
                bail!("a warm start kicked a rebuild ({:?})", started.build);
            }
            let mut sample = Sample::from_report(wall, &started.report);
            gitsplit::split(&mut sample.phases);
            sample.status_ms = Some(check_workspace(
                started.sandbox.workspace(),
                &expect_branch,
                &expect,
            )?);
            case.samples.push(sample);
            rig.provider.remove(&name).await?;
        }
        if case.note.is_none() {
            case.note = rig.restore_note.clone();
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        case = case.skipped(format!("FAILED: {e:#}"));
    }
    ctx.push(case);
}

/// headstart cold starts (a fresh home each, so no snapshot) and the snapshot builds
/// they kick.
async fn cold_case(ctx: &mut Ctx, served: &Served, url: &str, transport: &str, suffix: &str) {
    let work = ctx.work.clone();
    let restore = ctx.restore;
    let make = move |rep: usize| -> anyhow::Result<Rig> {
        let home = work.join(format!("cold{suffix}-{rep}"));
        let mut rig = Rig::new(home.clone(), restore);
        rig.scratch = Some(home);
        Ok(rig)
    };
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
    cold_reps(ctx, served, url, cold, build, &make).await;
}

/// Cold starts on fresh rigs (no snapshot), each followed by the build it kicks.
async fn cold_reps(
    ctx: &mut Ctx,
    served: &Served,
    url: &str,
    mut cold: CaseResult,
    mut build: CaseResult,
    make: &(dyn Fn(usize) -> anyhow::Result<Rig> + Sync),
) {
    let result: anyhow::Result<()> = async {
        let branch = served.fixture.default_branch.clone();
        let expect = fixture::tip(&served.repo, &branch)?;
        let source = served.source(url, None)?;
        for rep in 0..ctx.reps {
            let rig = make(rep)?;
            let name = SandboxName::new(format!("cold-{rep}"))?;
            let (started, wall) = timed_start(&rig.fast, &source, &name).await?;
            if started.report.path != StartPath::Cold {
                bail!(
                    "expected a cold start, got {:?}: {}",
                    started.report.path,
                    started.report.reason
                );
            }
            if started.build != Some(KickOutcome::Started) {
                bail!("the cold start did not start a build: {:?}", started.build);
            }
            let mut sample = Sample::from_report(wall, &started.report);
            gitsplit::split(&mut sample.phases);
            // Timed while the background build runs, as a user would see it.
            sample.status_ms = Some(check_workspace(
                started.sandbox.workspace(),
                &branch,
                &expect,
            )?);
            cold.samples.push(sample);
            let key = started.key.clone().context("no snapshot key")?;
            match rig.builder.wait(&key).await {
                Some(Ok(report)) => {
                    let mut s = Sample::single("build", report.duration.as_secs_f64() * 1e3);
                    s.received_bytes = None;
                    if !report.from_seed {
                        build.note = Some("the build cloned again (no seed)".into());
                    }
                    build.samples.push(s);
                }
                Some(Err(e)) => bail!("the snapshot build failed: {e}"),
                None => bail!("no build to wait for"),
            }
            drop(started);
            rig.dispose().await;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let why = format!("FAILED: {e:#}");
        cold = cold.skipped(why.clone());
        build = build.skipped(why);
    }
    if build.note.is_none() {
        build.note = Some("from the seed of the cold clone; runs after the start returns".into());
    }
    ctx.push(cold);
    ctx.push(build);
}

const CLI_LABEL: &str = "`headstart up --json` (CLI process), warm, 1 ahead";

/// Builds the release `headstart` binary; `Err` says why the CLI case cannot run.
fn build_headstart() -> Result<PathBuf, String> {
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
async fn cli_case(ctx: &mut Ctx, rig: &Rig, served: &Served, bin: &Path) {
    let mut case = CaseResult::new(
        "cli_warm_1",
        CLI_LABEL,
        "headstart",
        "http",
        &served.fixture.name,
    );
    let result: anyhow::Result<()> = async {
        let home = rig
            .home
            .clone()
            .context("the CLI case needs the local provider")?;
        let branch = served.fixture.default_branch.clone();
        let expect = fixture::tip(&served.repo, &branch)?;
        for rep in 0..ctx.reps {
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
            sample.status_ms = Some(check_workspace(Path::new(&ws), &branch, &expect)?);
            case.samples.push(sample);
            rig.provider.remove(&SandboxName::new(name)?).await?;
        }
        case.note =
            Some("process start to exit; `process` = time outside the reported phases".into());
        Ok(())
    }
    .await;
    if let Err(e) = result {
        case = case.skipped(format!("FAILED: {e:#}"));
    }
    ctx.push(case);
}

fn label_suffix(transport: &str) -> String {
    if transport == "http" {
        String::new()
    } else {
        format!(" [{transport}]")
    }
}

/// The git CLI cloning the same upstream.
fn git_clone_case(
    ctx: &mut Ctx,
    served: &Served,
    url: &str,
    transport: &str,
    id: &str,
    label: &str,
    extra: &[String],
) {
    let mut case = CaseResult::new(id, label, "git", transport, &served.fixture.name);
    let result: anyhow::Result<()> = (|| {
        let branch = served.fixture.default_branch.clone();
        let expect = fixture::tip(&served.repo, &branch)?;
        for rep in 0..ctx.reps {
            let dest = ctx.work.join(format!("{id}-{rep}"));
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
            sample.status_ms = Some(check_workspace(&dest, &branch, &expect)?);
            case.samples.push(sample);
            std::fs::remove_dir_all(&dest)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        case = case.skipped(format!("FAILED: {e:#}"));
    }
    ctx.push(case);
}

fn git_cli_cases(ctx: &mut Ctx, served: &Served, mirror: &Path) {
    let url = served.http_url.clone();
    git_clone_case(
        ctx,
        served,
        &url,
        "http",
        "git_clone_full",
        "git clone (full)",
        &[],
    );
    git_clone_case(
        ctx,
        served,
        &url,
        "http",
        "git_clone_depth1",
        "git clone --depth=1 --single-branch",
        &["--depth=1".into(), "--single-branch".into()],
    );
    git_clone_case(
        ctx,
        served,
        &url,
        "http",
        "git_clone_reference",
        "git clone --reference <local mirror>",
        &["--reference".into(), mirror.display().to_string()],
    );
    git_clone_case(
        ctx,
        served,
        &url,
        "http",
        "git_clone_blobless",
        "git clone --filter=blob:none",
        &["--filter=blob:none".into()],
    );
}

/// Runs the whole bench.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let run_started = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let preset = match (&args.preset, args.quick) {
        (Some(p), _) => Preset::by_name(p)?,
        (None, true) => Preset::SMALL,
        (None, false) => Preset::MEDIUM,
    };
    let reps = args.reps.unwrap_or(if args.quick { 3 } else { 5 }).max(1);
    let restore: RestoreMethod = args.restore_method.parse()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir().join("bench-startup"));
    let cache = out.join("fixtures");
    let stamp = time::OffsetDateTime::now_utc();
    let stamp_str = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        stamp.year(),
        u8::from(stamp.month()),
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second()
    );
    let work = out.join("work").join(&stamp_str);
    std::fs::create_dir_all(&work)?;
    // Removes the scratch directory (and unmounts what is left under it) however the run
    // ends, declared first so it is dropped last.
    let _scratch = ScratchGuard {
        path: work.clone(),
        keep: args.keep,
    };

    // 1. Fixture.
    let fixture_started = Instant::now();
    let fixture = match &args.repo {
        Some(repo) => fixture::mirror(&cache, repo)?,
        None => fixture::ensure(&cache, &preset)?,
    };
    let fixture_ms = fixture_started.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "fixture {}: {} files ({:.1} MB) at the tip of {}, {} commits, pack {:.1} MB{}",
        fixture.name,
        fixture.files_at_tip,
        fixture.bytes_at_tip as f64 / 1e6,
        fixture.default_branch,
        fixture.commits,
        fixture.pack_bytes as f64 / 1e6,
        if fixture.generated_ms > 0.0 {
            format!(" (made in {:.1} s)", fixture.generated_ms / 1e3)
        } else {
            " (cached)".to_owned()
        }
    );

    // 2. Serving: a copy the bench may advance, behind smart HTTP and git daemon.
    let serve_root = work.join("serve");
    std::fs::create_dir_all(&serve_root)?;
    let repo = serve_root.join("app.git");
    fixture::serve_copy(&fixture, &repo)?;
    let http = GitHttpServer::start(&serve_root)?;
    let daemon = if args.no_daemon {
        None
    } else {
        match GitDaemon::start(&serve_root) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("git daemon does not start ({e:#}); skipping the git:// cases");
                None
            }
        }
    };
    let served = Served {
        repo: repo.clone(),
        http_url: http.url("app.git"),
        daemon_url: daemon.as_ref().map(|d| d.url("app.git")),
        fixture: fixture.clone(),
    };
    let mut ctx = Ctx {
        reps,
        work: work.clone(),
        restore,
        repack: !args.no_repack,
        cases: Vec::new(),
        seq: 0,
    };
    let restore_effective = LocalProvider::new(work.join("probe"))
        .with_restore_method(restore)
        .effective_restore_method()
        .map(|m| m.to_string())
        .unwrap_or_else(|e| format!("{restore} ({e})"));
    eprintln!(
        "serving {} over {} and {}; {reps} repetitions per case; restore method {restore_effective}",
        fixture.name,
        served.http_url,
        served.daemon_url.as_deref().unwrap_or("(no git daemon)")
    );

    let want_cli = !args.no_cli && (args.cli || !args.quick);
    let headstart_bin = want_cli.then(build_headstart);

    // 3. The git CLI, at the fixture's tip.
    eprintln!("git CLI:");
    git_cli_cases(&mut ctx, &served, &fixture.path);

    // 4. headstart cold starts and snapshot builds.
    eprintln!("headstart (local provider, in-process):");
    let http_url = served.http_url.clone();
    cold_case(&mut ctx, &served, &http_url, "http", "").await;

    // 5. Warm starts, upstream 0 / 1 / 10 / 100 commits ahead, and another branch.
    let rig = Rig::new(work.join("home-http"), restore);
    let primed = rig.prime(&served.source(&http_url, None)?).await;
    match primed {
        Ok(()) => {
            let f = fixture.name.clone();
            let mk = |id: &str, label: &str| CaseResult::new(id, label, "headstart", "http", &f);
            warm_case(
                &mut ctx,
                &rig,
                &served,
                &http_url,
                None,
                mk("hs_warm_0", "headstart warm start, upstream 0 ahead"),
            )
            .await;
            match &fixture.other_branch {
                Some(b) => {
                    let label = format!("headstart warm start to another branch ({b})");
                    warm_case(
                        &mut ctx,
                        &rig,
                        &served,
                        &http_url,
                        Some(b),
                        mk("hs_warm_other_branch", &label),
                    )
                    .await;
                }
                None => ctx.push(
                    mk(
                        "hs_warm_other_branch",
                        "headstart warm start to another branch",
                    )
                    .skipped("the repository has one branch"),
                ),
            }
            let mut ahead = 0;
            for n in [1usize, 10, 100] {
                let seed = ctx.next_seed();
                fixture::advance(&repo, &fixture.default_branch, n - ahead, seed, ctx.repack)?;
                ahead = n;
                let id = format!("hs_warm_{n}");
                let label = format!("headstart warm start, upstream {n} ahead");
                warm_case(&mut ctx, &rig, &served, &http_url, None, mk(&id, &label)).await;
                if n == 1 {
                    match &headstart_bin {
                        Some(Ok(bin)) => cli_case(&mut ctx, &rig, &served, bin).await,
                        Some(Err(why)) => {
                            ctx.push(mk("cli_warm_1", CLI_LABEL).skipped(why.clone()))
                        }
                        None => {}
                    }
                }
            }
        }
        Err(e) => {
            for (id, label) in [
                ("hs_warm_0", "headstart warm start, upstream 0 ahead"),
                ("hs_warm_1", "headstart warm start, upstream 1 ahead"),
            ] {
                ctx.push(
                    CaseResult::new(id, label, "headstart", "http", &fixture.name)
                        .skipped(format!("FAILED: no snapshot: {e:#}")),
                );
            }
        }
    }

    // 6. git daemon (git://).
    if let Some(durl) = served.daemon_url.clone() {
        eprintln!("git daemon (git://):");
        git_clone_case(
            &mut ctx,
            &served,
            &durl,
            "git-daemon",
            "git_daemon_clone_depth1",
            "git clone --depth=1 --single-branch [git://]",
            &["--depth=1".into(), "--single-branch".into()],
        );
        cold_case(&mut ctx, &served, &durl, "git-daemon", "_daemon").await;
        let drig = Rig::new(work.join("home-daemon"), restore);
        let mut case = CaseResult::new(
            "hs_daemon_warm_1",
            "headstart warm start, upstream 1 ahead [git://]",
            "headstart",
            "git-daemon",
            &fixture.name,
        );
        match drig.prime(&served.source(&durl, None)?).await {
            Ok(()) => {
                let seed = ctx.next_seed();
                fixture::advance(&repo, &fixture.default_branch, 1, seed, ctx.repack)?;
                warm_case(&mut ctx, &drig, &served, &durl, None, case).await;
            }
            Err(e) => {
                case = case.skipped(format!("FAILED: no snapshot: {e:#}"));
                ctx.push(case);
            }
        }
    }

    // 7. Docker.
    if args.no_docker {
        ctx.push(
            CaseResult::new("docker", "Docker cases", "docker", "http", &fixture.name)
                .skipped("--no-docker"),
        );
    } else {
        eprintln!("Docker:");
        docker::cases(&mut ctx, &served, &stamp_str).await;
    }

    // 8. Warm starts on other fixture sizes (history-size independence).
    let scaling = !args.quick && !args.no_scaling && args.repo.is_none();
    if scaling {
        eprintln!("other fixture sizes:");
        for other in [Preset::SMALL, Preset::LARGE] {
            if other.name == preset.name {
                continue;
            }
            let r: anyhow::Result<()> = async {
                let info = fixture::ensure(&cache, &other)?;
                let repo_o = serve_root.join(format!("{}.git", other.name));
                fixture::serve_copy(&info, &repo_o)?;
                let url = http.url(&format!("{}.git", other.name));
                let served_o = Served {
                    repo: repo_o.clone(),
                    http_url: url.clone(),
                    daemon_url: None,
                    fixture: info.clone(),
                };
                let rig_o = Rig::new(work.join(format!("home-{}", other.name)), restore);
                rig_o.prime(&served_o.source(&url, None)?).await?;
                let seed = ctx.next_seed();
                fixture::advance(&repo_o, &info.default_branch, 1, seed, ctx.repack)?;
                let case = CaseResult::new(
                    &format!("hs_warm_1_{}", other.name),
                    &format!(
                        "headstart warm start, 1 ahead, {} fixture ({} files, {} commits)",
                        other.name, info.files_at_tip, info.commits
                    ),
                    "scaling",
                    "http",
                    &info.name,
                );
                warm_case(&mut ctx, &rig_o, &served_o, &url, None, case).await;
                Ok(())
            }
            .await;
            if let Err(e) = r {
                ctx.push(
                    CaseResult::new(
                        &format!("hs_warm_1_{}", other.name),
                        &format!("headstart warm start, 1 ahead, {} fixture", other.name),
                        "scaling",
                        "http",
                        other.name,
                    )
                    .skipped(format!("FAILED: {e:#}")),
                );
            }
        }
    }
    drop(daemon);
    drop(http);

    // 9. Output.
    let ratios = report::ratios(
        &ctx.cases,
        &fixture,
        &preset,
        args.repo.is_some(),
        args.quick || !scaling,
    );
    let results = report::Results {
        schema: 1,
        timestamp: stamp_str.clone(),
        command: format!(
            "cargo xtask {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        ),
        headstart_commit: report::git_head_of_workspace(),
        machine: report::Machine::probe(restore_effective, load_at_start),
        fixture: fixture.clone(),
        fixture_ready_ms: fixture_ms,
        reps,
        cases: ctx.cases,
        ratios,
        wall_s: run_started.elapsed().as_secs_f64(),
    };
    let text = report::render(&results);
    println!("{text}");
    if let Some(b) = &args.baseline {
        match report::compare(&results, b) {
            Ok(t) => println!("{t}"),
            Err(e) => println!("(no comparison with {}: {e:#})", b.display()),
        }
    }
    let json = serde_json::to_vec_pretty(&results)?;
    let json_path = out.join(format!("results-{stamp_str}.json"));
    std::fs::write(&json_path, &json)?;
    std::fs::write(out.join("latest.json"), &json)?;
    std::fs::write(out.join("latest.md"), text.as_bytes())?;
    let svg = out.join("phases.svg");
    if let Err(e) = chart::draw(&results, &svg) {
        eprintln!("could not draw the chart: {e:#}");
    }
    println!(
        "results: {} (also latest.json, latest.md)\nchart:   {}\nwall time of the run: {:.1} s",
        json_path.display(),
        svg.display(),
        run_started.elapsed().as_secs_f64()
    );
    if args.keep {
        println!("scratch directory kept: {}", work.display());
    }
    Ok(())
}

/// Cleans the scratch directory up on drop unless asked to keep it.
struct ScratchGuard {
    path: PathBuf,
    keep: bool,
}

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        if !self.keep {
            cleanup_work(&self.path);
        }
    }
}

/// Removes the scratch directory, unmounting any overlay left under it first.
fn cleanup_work(work: &Path) {
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        let prefix = work.display().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = std::process::Command::new("umount").arg(p).status();
        }
    }
    if let Err(e) = std::fs::remove_dir_all(work) {
        eprintln!("could not remove {}: {e}", work.display());
    }
}
