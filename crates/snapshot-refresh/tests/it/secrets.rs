//! Secrets and leftovers: recipe commands see no token unless the recipe names it,
//! whatever they print is scrubbed before it is recorded anywhere, a cancelled build
//! kills its recipe's processes, and what a dead build left behind (seed, build
//! sandbox, escaped processes) is removed by the next cleanup but never a running
//! build's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_support::files_containing;

use sandbox_core::{Credentials, SandboxProvider, Source};
use snapshot_refresh::{
    KickOutcome, Recipe, RecipeCommand, RefreshOptions, SnapshotBuilder, SnapshotKey,
    build_sandbox_name, refresh_base_snapshot,
};
use test_support::{GitHttpServer, Upstream, random_token};

use crate::{Rig, state_dir};

fn cmd(argv: &[&str]) -> RecipeCommand {
    RecipeCommand::new(argv.iter().copied()).unwrap()
}

/// True while `pid` is a live (not zombie) process.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// Waits until `pid` is dead (a SIGKILL is delivered asynchronously).
pub(crate) fn gone_within(pid: u32, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Waits for a file a recipe writes, and reads the pid in it.
async fn read_pid(path: &Path) -> u32 {
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(pid) = s.trim().parse() {
                return pid;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the recipe never wrote {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_recipe_printing_its_environment_leaves_the_token_nowhere() {
    let token = random_token();
    let up = Upstream::new("main", 3).unwrap();
    // the token is really used: the upstream refuses clones without it
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::with_backoff(Duration::from_secs(600));
    // repository code printing its environment, then failing with it on stderr
    let recipe = Recipe::empty()
        .command(cmd(&["env"]))
        .command(cmd(&["sh", "-c", "env | grep TOKEN >&2; exit 3"]))
        .secret("HEADSTART_GIT_TOKEN")
        .unwrap();
    let key = SnapshotKey::for_repo(source.url(), &recipe).unwrap();
    assert!(
        !key.as_str().contains(&token) && !recipe.digest().contains(&token),
        "the key names the secret, never its value"
    );
    let mut options = RefreshOptions::new(source, key.clone(), recipe);
    options.credentials = Credentials::token(token.clone());

    // one thread, so the thread-local capture sees the build task's log lines
    let (outcome, log) = test_support::capture_tracing(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(
                rig.builder.kick(options.clone(), None).unwrap(),
                KickOutcome::Started
            );
            let err = rig.builder.wait(&key).await.unwrap().unwrap_err();
            (err, rig.builder.kick(options.clone(), None).unwrap())
        })
    });
    let (err, again) = outcome;
    assert!(!err.message().contains(&token), "{err}");
    assert!(
        err.message().contains("HEADSTART_GIT_TOKEN=[redacted]"),
        "{err}"
    );
    let KickOutcome::BackingOff { last_error, .. } = again else {
        panic!("expected backoff, got {again:?}");
    };
    assert!(last_error.contains("HEADSTART_GIT_TOKEN=[redacted]"));
    assert!(!last_error.contains(&token));
    let record = rig.builder.failures().get(key.as_str()).unwrap();
    assert!(
        record.last_error.contains("HEADSTART_GIT_TOKEN=[redacted]"),
        "{record:?}"
    );
    let on_disk = std::fs::read_to_string(
        state_dir(rig.home.path()).join(format!("failures/{}.json", key.as_str())),
    )
    .unwrap();
    assert!(on_disk.contains("[redacted]"), "{on_disk}");
    assert_eq!(
        files_containing(rig.home.path(), &token),
        Vec::<PathBuf>::new()
    );
    let log = log.text();
    assert!(!log.contains(&token), "{log}");
    assert!(log.contains("[redacted]"), "the failure was logged: {log}");
}

#[tokio::test]
async fn recipe_commands_see_the_token_only_when_the_recipe_names_it() {
    let token = random_token();
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let print = || {
        cmd(&[
            "sh",
            "-c",
            "printenv HEADSTART_GIT_TOKEN || echo unset; printenv GITHUB_TOKEN || echo unset",
        ])
    };
    let run = |recipe: Recipe| {
        let key = SnapshotKey::for_repo(source.url(), &recipe).unwrap();
        let mut options = RefreshOptions::new(source.clone(), key, recipe);
        options.credentials = Credentials::token(token.clone());
        options
    };

    let without = Recipe::empty().command(print());
    let report = refresh_base_snapshot(rig.provider.as_ref(), &run(without))
        .await
        .unwrap();
    assert_eq!(report.commands[0].stdout, "unset\nunset\n");

    let with = Recipe::empty()
        .command(print())
        .secret("HEADSTART_GIT_TOKEN")
        .unwrap();
    let report = refresh_base_snapshot(rig.provider.as_ref(), &run(with.clone()))
        .await
        .unwrap();
    // the command saw the whole token (it is scrubbed whole), and only what it asked for
    assert_eq!(report.commands[0].stdout, "[redacted]\nunset\n");

    // output cut at the limit in the middle of the token: its beginning is hidden too
    let mut cut = run(with);
    cut.output_limit = 12;
    let report = refresh_base_snapshot(rig.provider.as_ref(), &cut)
        .await
        .unwrap();
    assert!(report.commands[0].truncated);
    assert_eq!(report.commands[0].stdout, "[redacted]");
    assert_eq!(
        files_containing(rig.home.path(), &token),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test]
async fn a_build_past_its_deadline_kills_what_its_recipe_started() {
    let up = Upstream::new("main", 1).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let pid_file = rig.home.path().join("child.pid");
    let script = format!("sleep 311 & echo $! > {}; wait", pid_file.display());
    let slow = Recipe::empty().command(cmd(&["sh", "-c", &script]));
    let key = SnapshotKey::for_repo(source.url(), &slow).unwrap();
    let mut options = RefreshOptions::new(source, key, slow);
    options.deadline = Duration::from_secs(3);
    let err = refresh_base_snapshot(rig.provider.as_ref(), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, snapshot_refresh::Error::BuildDeadline { .. }),
        "{err}"
    );
    let pid = read_pid(&pid_file).await;
    assert!(
        gone_within(pid, Duration::from_secs(10)),
        "the recipe's child {pid} outlived the cancelled build"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_builds_leftovers_are_cleaned_up_but_never_a_running_builds() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    let rig = Rig::new();
    let seeds = state_dir(rig.home.path()).join("seeds");
    let n_seeds = || std::fs::read_dir(&seeds).map_or(0, |d| d.count());

    // a cold start's clone, to seed the build
    let (user, _) = rig
        .provider
        .connect(&sandbox_core::ConnectOptions::new())
        .await
        .unwrap();
    sandbox_core::git::clone(&source, user.workspace(), &Default::default()).unwrap();

    // the recipe starts a process that escapes its process group (a daemon), then waits
    let pid_file = rig.home.path().join("daemon.pid");
    let script = format!(
        "setsid sleep 312 & echo $! > {}; sleep 313",
        pid_file.display()
    );
    let recipe = Recipe::empty().command(cmd(&["sh", "-c", &script]));
    let key = SnapshotKey::for_repo(source.url(), &recipe).unwrap();
    let options = RefreshOptions::new(source.clone(), key.clone(), recipe);
    assert_eq!(
        rig.builder.kick(options, Some(user.workspace())).unwrap(),
        KickOutcome::Started
    );
    let daemon = read_pid(&pid_file).await;
    assert!(alive(daemon));

    // while it runs, a cleanup (here: another process's builder) touches nothing
    let other = SnapshotBuilder::new(rig.provider.clone(), state_dir(rig.home.path()));
    let report = other.cleanup_stale().await.unwrap();
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(n_seeds(), 1);
    assert!(alive(daemon));
    let build_box = build_sandbox_name(&key);
    // a build sandbox is `creating` while it builds: never offered to users
    assert_eq!(
        rig.provider.state(&build_box).unwrap(),
        Some(sandbox_core::SandboxState::Creating)
    );
    assert!(rig.provider.get(&build_box).await.unwrap().is_none());

    // the builder dies mid-recipe: its task is dropped, nothing of its own cleanup runs
    assert_eq!(rig.builder.shutdown(Duration::ZERO).await, 1);
    assert_eq!(n_seeds(), 1, "the dead build's seed is left");
    assert!(rig.provider.state(&build_box).unwrap().is_some());
    assert!(alive(daemon), "the escaped process outlives its build");

    // The dead build's lock frees once its dropped task's file is closed everywhere:
    // a process another thread forks at that moment holds a copy of the descriptor
    // until it execs, so give the cleanup a few tries (a real dead builder is a dead
    // process, whose descriptors the kernel closes at once).
    let mut report = other.cleanup_stale().await.unwrap();
    let t = std::time::Instant::now();
    while report.is_empty() && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = other.cleanup_stale().await.unwrap();
    }
    assert_eq!(
        report.sandboxes_removed,
        vec![build_box.clone()],
        "{report:?}"
    );
    assert_eq!(report.seeds_removed, 1, "{report:?}");
    assert!(report.processes_killed >= 1, "{report:?}");
    assert!(gone_within(daemon, Duration::from_secs(10)));
    assert_eq!(n_seeds(), 0);
    assert_eq!(rig.provider.state(&build_box).unwrap(), None);
    let names: Vec<_> = rig
        .provider
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec![user.name().clone()], "the user's sandbox stays");
    assert!(other.cleanup_stale().await.unwrap().is_empty());
}
