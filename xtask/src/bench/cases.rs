//! The cases of a run: headstart cold and warm starts in-process, the `headstart up`
//! CLI, and the git CLI cloning the same upstream; each pushes its [`CaseResult`] (or
//! why it was skipped) to the run's [`Ctx`].
//!
//! What it is not: the order of the cases or their setup (`run.rs`), nor the Docker
//! cases (`docker.rs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use sandbox_core::{ConnectOptions, SandboxName, Source, StartPath};
use snapshot_refresh::{FastStart, KickOutcome, Started};

use super::measure::{CaseResult, Sample, check_workspace, git_cmd, run_git};
use super::{Ctx, Rig, Served, fixture, gitsplit, target_dir};

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

/// headstart warm starts: `reps` fresh sandboxes from the rig's snapshot, each checked.
pub(super) async fn warm_case(
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
pub(super) async fn cold_case(
    ctx: &mut Ctx,
    served: &Served,
    url: &str,
    transport: &str,
    suffix: &str,
) {
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
pub(super) async fn cold_reps(
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
pub(super) async fn cli_case(ctx: &mut Ctx, rig: &Rig, served: &Served, bin: &Path) {
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
pub(super) fn git_clone_case(
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

pub(super) fn git_cli_cases(ctx: &mut Ctx, served: &Served, mirror: &Path) {
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
