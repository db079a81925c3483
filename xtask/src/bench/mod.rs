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
//!
//! Layout: this module holds the arguments and what the cases share (the run's
//! [`Ctx`], a [`Rig`] of provider, builder and FastStart, the [`Served`] upstream);
//! `run.rs` is the run, step by step; `cases.rs` the headstart and git CLI cases;
//! `docker.rs` the Docker ones; `fixture.rs`, `measure.rs`, `report.rs` and `chart.rs`
//! make the repositories, time the samples and write the results.

mod cases;
pub(crate) mod chart;
mod docker;
pub(crate) mod fixture;
pub(crate) mod gitsplit;
pub(crate) mod measure;
mod registry;
pub(crate) mod report;
mod round;
mod run;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use provisioners::local::{LocalProvider, RestoreMethod};
use sandbox_core::{BranchName, ConnectOptions, SandboxName, SandboxProvider, Source};
use snapshot_refresh::{Drift, FastStart, SnapshotBuilder};

use fixture::FixtureInfo;
use measure::CaseResult;

pub(crate) use run::run;

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
    /// Makes fresh local rigs, one a repetition: repetition `rep` gets the scratch home
    /// `<work>/<home(rep)>` (a new host), then `setup` finishes the rig.
    fn fresh_rigs<H, S>(
        &self,
        home: H,
        setup: S,
    ) -> impl Fn(usize) -> anyhow::Result<Rig> + Sync + use<H, S>
    where
        H: Fn(usize) -> String + Sync,
        S: Fn(Rig) -> anyhow::Result<Rig> + Sync,
    {
        let work = self.work.clone();
        let restore = self.restore;
        move |rep: usize| setup(Rig::scratch(work.join(home(rep)), restore))
    }

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
    /// How the local provider restores snapshots here (`None` for other providers).
    restore: Option<RestoreMethod>,
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
        let method = local.effective_restore_method().ok();
        let note = method.map(|m| format!("restore: {m}"));
        let mut rig = Self::with_provider(Arc::new(local), home.join("state"));
        rig.restore_note = note;
        rig.restore = method;
        rig.home = Some(home);
        rig
    }

    /// The local provider under `home`, a scratch directory [`Rig::dispose`] removes.
    fn scratch(home: PathBuf, restore: RestoreMethod) -> Self {
        let mut rig = Self::new(home.clone(), restore);
        rig.scratch = Some(home);
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
            restore: None,
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
