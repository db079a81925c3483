//! The run of `cargo xtask bench-startup`, one function per step: the fixture, serving
//! it, the git CLI, headstart cold and warm starts, `git daemon`, Docker, other fixture
//! sizes, then the results (markdown, JSON, chart).
//!
//! What it is not: the cases themselves (`cases.rs`, `docker.rs`) or how results are
//! rendered (`report.rs`, `chart.rs`).

use std::path::PathBuf;
use std::time::Instant;

use provisioners::local::{LocalProvider, RestoreMethod};
use test_support::{GitDaemon, GitHttpServer};

use super::cases::{CLI_LABEL, build_headstart, cold_case, cold_results, cold_rigs};
use super::cases::{git_cli_cases, git_clone_case, warm_case};
use super::fixture::{FixtureInfo, Preset};
use super::measure::CaseResult;
use super::round::{Member, Slot, run_round};
use super::{
    BenchArgs, Ctx, Rig, ScratchGuard, Served, chart, docker, fixture, report, target_dir,
};

/// What a run is set up with, decided from the arguments before anything is measured.
struct Plan {
    preset: Preset,
    reps: usize,
    restore: RestoreMethod,
    /// Where results go.
    out: PathBuf,
    /// Where generated and mirrored fixtures are cached.
    cache: PathBuf,
    /// The run's UTC timestamp, `YYYYMMDDTHHMMSSZ`.
    stamp_str: String,
    /// The scratch directory (created).
    work: PathBuf,
}

/// The upstream being served, and the servers (stopped when dropped: the daemon
/// first, as the run stops them).
struct Serving {
    serve_root: PathBuf,
    daemon: Option<GitDaemon>,
    http: GitHttpServer,
    served: Served,
}

/// Runs the whole bench.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let run_started = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let plan = plan(&args)?;
    // Removes the scratch directory (and unmounts what is left under it) however the run
    // ends, declared first so it is dropped last.
    let _scratch = ScratchGuard {
        path: plan.work.clone(),
        keep: args.keep,
    };

    let (fixture, fixture_ms) = prepare_fixture(&args, &plan)?;
    let serving = serve(&args, &plan, &fixture)?;
    let served = &serving.served;
    let mut ctx = Ctx {
        reps: plan.reps,
        work: plan.work.clone(),
        restore: plan.restore,
        repack: !args.no_repack,
        cases: Vec::new(),
        seq: 0,
    };
    let restore_effective = announce(&plan, &fixture, served);

    let want_cli = !args.no_cli && (args.cli || !args.quick);
    let headstart_bin = want_cli.then(build_headstart);

    git_cli(&mut ctx, served, &fixture).await;
    let _rig = headstart_warm(&mut ctx, &plan, served, headstart_bin.as_ref()).await?;
    daemon_cases(&mut ctx, &plan, served).await?;
    docker_cases(&mut ctx, &args, served, &plan.stamp_str).await;
    let scaling = !args.quick && !args.no_scaling && args.repo.is_none();
    if scaling {
        scaling_cases(&mut ctx, &plan, &serving).await;
    }
    let Serving { http, daemon, .. } = serving;
    drop(daemon);
    drop(http);

    let results = collect_results(
        &args,
        &plan,
        ctx,
        fixture,
        fixture_ms,
        Probe {
            restore_effective,
            load_at_start,
            scaling,
            run_started,
        },
    );
    write_output(&args, &plan, &results, run_started)
}

/// The run's settings from `args`; creates the scratch directory.
fn plan(args: &BenchArgs) -> anyhow::Result<Plan> {
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
    Ok(Plan {
        preset,
        reps,
        restore,
        out,
        cache,
        stamp_str,
        work,
    })
}

/// Step 1: the fixture, generated (cached) or mirrored from `--repo`, and how long
/// that took.
fn prepare_fixture(args: &BenchArgs, plan: &Plan) -> anyhow::Result<(FixtureInfo, f64)> {
    let fixture_started = Instant::now();
    let fixture = match &args.repo {
        Some(repo) => fixture::mirror(&plan.cache, repo)?,
        None => fixture::ensure(&plan.cache, &plan.preset)?,
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
    Ok((fixture, fixture_ms))
}

/// Step 2, serving: a copy the bench may advance, behind smart HTTP and git daemon.
fn serve(args: &BenchArgs, plan: &Plan, fixture: &FixtureInfo) -> anyhow::Result<Serving> {
    let serve_root = plan.work.join("serve");
    std::fs::create_dir_all(&serve_root)?;
    let repo = serve_root.join("app.git");
    fixture::serve_copy(fixture, &repo)?;
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
    Ok(Serving {
        serve_root,
        daemon,
        http,
        served,
    })
}

/// Says what is served and how; returns the restore method warm starts use here.
fn announce(plan: &Plan, fixture: &FixtureInfo, served: &Served) -> String {
    let (restore, reps) = (plan.restore, plan.reps);
    let restore_effective = LocalProvider::new(plan.work.join("probe"))
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
    restore_effective
}

/// Step 3: the git CLI cases no ratio uses, at the fixture's tip (those in ratios run
/// interleaved with headstart in step 4).
async fn git_cli(ctx: &mut Ctx, served: &Served, fixture: &FixtureInfo) {
    eprintln!("git CLI:");
    git_cli_cases(ctx, served, &fixture.path).await;
}

/// Step 4-5: headstart warm starts (upstream 0 / 1 / 10 / 100 commits ahead, another
/// branch) and cold starts, each ratio's cases interleaved with their partners: the
/// git CLI clones, the floor (the git CLI doing the warm path on the same snapshot) and
/// the CLI process. Returns the rig, kept until the run ends.
async fn headstart_warm(
    ctx: &mut Ctx,
    plan: &Plan,
    served: &Served,
    headstart_bin: Option<&Result<PathBuf, String>>,
) -> anyhow::Result<Rig> {
    eprintln!("headstart (local provider, in-process), interleaved with the git CLI:");
    let http_url = served.http_url.clone();
    let rig = Rig::new(plan.work.join("home-http"), plan.restore);
    let primed = rig
        .prime(&served.source(&http_url, None)?)
        .await
        .map_err(|e| format!("FAILED: no snapshot: {e:#}"));
    warm_http_rounds(ctx, &rig, primed.err(), served, headstart_bin).await?;
    Ok(rig)
}

/// A round on a branch other than the default: what it is called in the report, the
/// fixture's branch (its cases are skipped when the fixture has none), the case ids.
struct BranchRound<'f> {
    round: &'static str,
    branch: Option<&'f String>,
    what: &'static str,
    warm_id: &'static str,
    floor_id: Option<&'static str>,
    clone_id: &'static str,
    missing: &'static str,
}

/// Slots of one round; cases that need the primed rig are skipped (pushed at once)
/// when priming failed.
struct RoundBuilder<'a> {
    slots: Vec<Slot<'a>>,
    no_rig: Option<String>,
}

impl<'a> RoundBuilder<'a> {
    fn add(&mut self, ctx: &mut Ctx, member: Member<'a>, case: CaseResult) {
        let needs_rig = !matches!(member, Member::Clone { .. } | Member::Cold { .. });
        match (&self.no_rig, needs_rig) {
            (Some(why), true) => ctx.push(case.skipped(why.clone())),
            _ => self.slots.push(Slot::new(member, case)),
        }
    }
}

/// The rounds of steps 4-5 on the `rig` (primed unless `no_rig` says why not),
/// advancing the upstream as they go.
async fn warm_http_rounds(
    ctx: &mut Ctx,
    rig: &Rig,
    no_rig: Option<String>,
    served: &Served,
    headstart_bin: Option<&Result<PathBuf, String>>,
) -> anyhow::Result<()> {
    let fixture = &served.fixture;
    let url = served.http_url.clone();
    let f = fixture.name.clone();
    let hs = |id: &str, label: &str| CaseResult::new(id, label, "headstart", "http", &f);
    let git = |id: &str, label: &str| CaseResult::new(id, label, "git", "http", &f);
    let warm = |branch: Option<&String>| Member::Warm {
        rig,
        url: url.clone(),
        branch: branch.cloned(),
    };
    let floor = |branch: Option<&String>| Member::Floor {
        rig,
        url: url.clone(),
        branch: branch.cloned(),
    };
    let new_round = || RoundBuilder {
        slots: Vec::new(),
        no_rig: no_rig.clone(),
    };

    // Upstream 0 ahead: on its own (no ratio).
    let mut r = new_round();
    r.add(
        ctx,
        warm(None),
        hs("hs_warm_0", "headstart warm start, upstream 0 ahead"),
    );
    run_round(ctx, served, None, r.slots).await;

    // `git clone --depth=1 --branch B`, what a warm start to B is compared with
    let clone_branch = |b: &String| Member::Clone {
        url: url.clone(),
        extra: vec!["--depth=1".into(), "--branch".into(), b.clone()],
        branch: Some(b.clone()),
    };
    // Another branch (the warm start, its floor, a depth-1 clone of that branch) and an
    // orphan branch, a far tree (the warm start and the clone).
    for b in [
        BranchRound {
            round: "other_branch",
            branch: fixture.other_branch.as_ref(),
            what: "another branch",
            warm_id: "hs_warm_other_branch",
            floor_id: Some("floor_warm_other_branch"),
            clone_id: "git_clone_depth1_branch",
            missing: "the repository has one branch",
        },
        BranchRound {
            round: "orphan_branch",
            branch: fixture.orphan_branch.as_ref(),
            what: "an orphan branch",
            warm_id: "hs_warm_orphan_branch",
            floor_id: None,
            clone_id: "git_clone_depth1_orphan_branch",
            missing: "the repository has no orphan branch",
        },
    ] {
        let named = |label: String| match b.branch {
            Some(name) => format!("{label} ({name})"),
            None => label,
        };
        let mut cases = vec![(
            b.branch.map(|name| warm(Some(name))),
            hs(
                b.warm_id,
                &named(format!("headstart warm start to {}", b.what)),
            ),
        )];
        if let Some(id) = b.floor_id {
            let label = format!("floor: git fetch + checkout -B on the snapshot, {}", b.what);
            cases.push((
                b.branch.map(|name| floor(Some(name))),
                git(id, &named(label)),
            ));
        }
        let label = format!("git clone --depth=1 --branch of {}", b.what);
        cases.push((b.branch.map(&clone_branch), git(b.clone_id, &named(label))));
        let mut r = new_round();
        for (member, case) in cases {
            match member {
                Some(member) => r.add(ctx, member, case),
                None => ctx.push(case.skipped(b.missing)),
            }
        }
        if b.branch.is_some() {
            run_round(ctx, served, Some(b.round), r.slots).await;
        }
    }

    // the primed snapshot in a registry, for the fresh-host case of the 1-ahead round
    let shared = match &no_rig {
        None => Some(super::registry::share(rig, &served.source(&url, None)?).await),
        Some(_) => None,
    };
    let mut ahead = 0;
    for n in [1usize, 10, 100] {
        let seed = ctx.next_seed();
        fixture::advance(
            &served.repo,
            &fixture.default_branch,
            n - ahead,
            seed,
            ctx.repack,
        )?;
        ahead = n;
        let mut r = new_round();
        let warm_case = hs(
            &format!("hs_warm_{n}"),
            &format!("headstart warm start, upstream {n} ahead"),
        );
        let floor_case = git(
            &format!("floor_warm_{n}"),
            &format!("floor: git fetch + checkout -B on the snapshot, {n} ahead"),
        );
        match n {
            1 => {
                let make = cold_rigs(ctx, "");
                let make: &(dyn Fn(usize) -> anyhow::Result<Rig> + Sync) = &make;
                r.add(
                    ctx,
                    Member::Clone {
                        url: url.clone(),
                        extra: vec!["--depth=1".into(), "--single-branch".into()],
                        branch: None,
                    },
                    git("git_clone_depth1", "git clone --depth=1 --single-branch"),
                );
                r.add(ctx, warm(None), warm_case);
                r.add(ctx, floor(None), floor_case);
                match headstart_bin {
                    Some(Ok(bin)) => r.add(
                        ctx,
                        Member::Cli {
                            rig,
                            bin: bin.clone(),
                        },
                        hs("cli_warm_1", CLI_LABEL),
                    ),
                    Some(Err(why)) => ctx.push(hs("cli_warm_1", CLI_LABEL).skipped(why.clone())),
                    None => {}
                }
                r.add(
                    ctx,
                    Member::Clone {
                        url: url.clone(),
                        extra: Vec::new(),
                        branch: None,
                    },
                    git("git_clone_full", "git clone (full)"),
                );
                let fresh = shared
                    .as_ref()
                    .and_then(|s| s.as_ref().ok())
                    .map(|sh| super::registry::fresh_host_rigs(ctx, &sh.reference));
                match (&fresh, &shared) {
                    (Some(f), _) => r.slots.push(Slot::new(
                        Member::FreshHost {
                            url: url.clone(),
                            make: f,
                        },
                        super::registry::result(served),
                    )),
                    (None, Some(Err(why))) => {
                        ctx.push(super::registry::result(served).skipped(why.clone()));
                    }
                    (None, _) => {}
                }
                let (cold, build) = cold_results(served, "http", "");
                r.slots.push(
                    Slot::new(
                        Member::Cold {
                            url: url.clone(),
                            make,
                        },
                        cold,
                    )
                    .with_build(build),
                );
                run_round(ctx, served, Some("ahead_1"), r.slots).await;
            }
            100 => {
                r.add(ctx, warm(None), warm_case);
                r.add(ctx, floor(None), floor_case);
                run_round(ctx, served, Some("ahead_100"), r.slots).await;
            }
            _ => {
                r.add(ctx, warm(None), warm_case);
                run_round(ctx, served, None, r.slots).await;
            }
        }
    }
    Ok(())
}

/// Step 6: git daemon (git://), when it started.
async fn daemon_cases(ctx: &mut Ctx, plan: &Plan, served: &Served) -> anyhow::Result<()> {
    let Some(durl) = served.daemon_url.clone() else {
        return Ok(());
    };
    eprintln!("git daemon (git://):");
    git_clone_case(
        ctx,
        served,
        &durl,
        "git-daemon",
        "git_daemon_clone_depth1",
        "git clone --depth=1 --single-branch [git://]",
        &["--depth=1".into(), "--single-branch".into()],
    )
    .await;
    cold_case(ctx, served, &durl, "git-daemon", "_daemon").await;
    let drig = Rig::new(plan.work.join("home-daemon"), plan.restore);
    let mut case = CaseResult::new(
        "hs_daemon_warm_1",
        "headstart warm start, upstream 1 ahead [git://]",
        "headstart",
        "git-daemon",
        &served.fixture.name,
    );
    match drig.prime(&served.source(&durl, None)?).await {
        Ok(()) => {
            let seed = ctx.next_seed();
            fixture::advance(
                &served.repo,
                &served.fixture.default_branch,
                1,
                seed,
                ctx.repack,
            )?;
            warm_case(ctx, &drig, served, &durl, None, case).await;
        }
        Err(e) => {
            case = case.skipped(format!("FAILED: no snapshot: {e:#}"));
            ctx.push(case);
        }
    }
    Ok(())
}

/// Step 7: Docker, unless `--no-docker`.
async fn docker_cases(ctx: &mut Ctx, args: &BenchArgs, served: &Served, stamp_str: &str) {
    if args.no_docker {
        ctx.push(
            CaseResult::new(
                "docker",
                "Docker cases",
                "docker",
                "http",
                &served.fixture.name,
            )
            .skipped("--no-docker"),
        );
    } else {
        eprintln!("Docker:");
        docker::cases(ctx, served, stamp_str).await;
    }
}

/// Step 8: warm starts on other fixture sizes (history-size independence).
async fn scaling_cases(ctx: &mut Ctx, plan: &Plan, serving: &Serving) {
    eprintln!("other fixture sizes:");
    for other in [Preset::SMALL, Preset::LARGE] {
        if other.name == plan.preset.name {
            continue;
        }
        if let Err(e) = scaling_case(ctx, plan, serving, &other).await {
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

/// One warm start, 1 ahead, on the `other` fixture, served beside the main one.
async fn scaling_case(
    ctx: &mut Ctx,
    plan: &Plan,
    serving: &Serving,
    other: &Preset,
) -> anyhow::Result<()> {
    let info = fixture::ensure(&plan.cache, other)?;
    let repo_o = serving.serve_root.join(format!("{}.git", other.name));
    fixture::serve_copy(&info, &repo_o)?;
    let url = serving.http.url(&format!("{}.git", other.name));
    let served_o = Served {
        repo: repo_o.clone(),
        http_url: url.clone(),
        daemon_url: None,
        fixture: info.clone(),
    };
    let rig_o = Rig::new(plan.work.join(format!("home-{}", other.name)), plan.restore);
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
    warm_case(ctx, &rig_o, &served_o, &url, None, case).await;
    Ok(())
}

/// What the results say about the machine and the run besides the cases.
struct Probe {
    restore_effective: String,
    load_at_start: String,
    /// Whether the other fixture sizes ran.
    scaling: bool,
    run_started: Instant,
}

/// Step 9a, the results: the cases, their ratios, the machine and the fixture.
fn collect_results(
    args: &BenchArgs,
    plan: &Plan,
    ctx: Ctx,
    fixture: FixtureInfo,
    fixture_ms: f64,
    probe: Probe,
) -> report::Results {
    let ratios = report::ratios(
        &ctx.cases,
        &fixture,
        &plan.preset,
        args.repo.is_some(),
        args.quick || !probe.scaling,
    );
    report::Results {
        schema: 1,
        timestamp: plan.stamp_str.clone(),
        command: format!(
            "cargo xtask {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        ),
        headstart_commit: report::git_head_of_workspace(),
        machine: report::Machine::probe(probe.restore_effective, probe.load_at_start, &plan.work),
        fixture,
        fixture_ready_ms: fixture_ms,
        reps: plan.reps,
        cases: ctx.cases,
        ratios,
        wall_s: probe.run_started.elapsed().as_secs_f64(),
    }
}

/// Step 9b, output: the markdown table (and the comparison with `--baseline`) on stdout,
/// the JSON results, `latest.*` and the phases chart under the output directory.
fn write_output(
    args: &BenchArgs,
    plan: &Plan,
    results: &report::Results,
    run_started: Instant,
) -> anyhow::Result<()> {
    let out = &plan.out;
    let stamp_str = &plan.stamp_str;
    let text = report::render(results);
    println!("{text}");
    if let Some(b) = &args.baseline {
        match report::compare(results, b) {
            Ok(t) => println!("{t}"),
            Err(e) => println!("(no comparison with {}: {e:#})", b.display()),
        }
    }
    let json = serde_json::to_vec_pretty(results)?;
    let json_path = out.join(format!("results-{stamp_str}.json"));
    std::fs::write(&json_path, &json)?;
    std::fs::write(out.join("latest.json"), &json)?;
    std::fs::write(out.join("latest.md"), text.as_bytes())?;
    let svg = out.join("phases.svg");
    if let Err(e) = chart::draw(results, &svg) {
        eprintln!("could not draw the chart: {e:#}");
    }
    println!(
        "results: {} (also latest.json, latest.md)\nchart:   {}\nwall time of the run: {:.1} s",
        json_path.display(),
        svg.display(),
        run_started.elapsed().as_secs_f64()
    );
    if args.keep {
        println!("scratch directory kept: {}", plan.work.display());
    }
    Ok(())
}
