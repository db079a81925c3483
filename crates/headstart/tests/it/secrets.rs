//! Secrets and leftovers, end to end: a configured git token never lands in the data
//! directory or any output (recipe output, failure records, the detached build's log,
//! `up`, `snapshot ls`), recipe and `exec` commands do not inherit it unless the recipe
//! names it, and a build process killed with SIGKILL mid-recipe leaves nothing the next
//! build does not remove.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use test_support::files_containing;

use test_support::{GitHttpServer, Upstream, random_token};

use crate::{json, stderr, stdout};

/// Runs `headstart` with `home` as data directory and `token` as the git token.
fn headstart_with(home: &Path, token: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .env("HEADSTART_HOME", home)
        .env("HEADSTART_GIT_TOKEN", token)
        .env_remove("GITHUB_TOKEN")
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run headstart")
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// The one file named `name` in the data directory's snapshots (what the recipe left
/// in the build's workspace).
fn snapshot_file(data: &Path, name: &str) -> String {
    let mut found = Vec::new();
    let mut stack = vec![data.join("snapshots")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name() == name {
                found.push(e.path());
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    std::fs::read_to_string(&found[0]).unwrap()
}

fn write_recipe(home: &Path, name: &str, json: &str) -> String {
    let path = home.join(name);
    std::fs::write(&path, json).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_recipe_printing_its_environment_leaves_the_token_nowhere() {
    let token = random_token();
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let data = home.path().join("data");
    // repository code printing its environment, then failing with it on stderr; the
    // recipe asks for the token, so the build's commands really have it
    let recipe = write_recipe(
        home.path(),
        "recipe.json",
        r#"{"commands":[{"argv":["env"]},{"argv":["sh","-c","env | grep TOKEN >&2; exit 3"]}],
            "secrets":["HEADSTART_GIT_TOKEN"]}"#,
    );
    let mut outputs = Vec::new();

    let first = headstart_with(
        &data,
        &token,
        &[],
        &["up", &url, "--recipe", &recipe, "--json"],
    );
    let v = json(&first);
    assert_eq!(v["build"]["build"], "detached", "{v}");
    outputs.push(first);
    let log = data.join("state/logs/last-build.log");
    wait_for(
        "the detached build to fail",
        Duration::from_secs(60),
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("error:")),
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("HEADSTART_GIT_TOKEN=[redacted]"), "{log}");
    let failures = std::fs::read_dir(data.join("state/failures"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains("HEADSTART_GIT_TOKEN=[redacted]"),
        "{}",
        failures[0]
    );

    // every later start says why the last build failed; so does `snapshot ls`
    let again = headstart_with(
        &data,
        &token,
        &[],
        &["up", &url, "--recipe", &recipe, "--json"],
    );
    let v = json(&again);
    assert_eq!(v["build"]["build"], "backing_off", "{v}");
    assert!(
        v["build"]["last_error"]
            .as_str()
            .unwrap()
            .contains("[redacted]"),
        "{v}"
    );
    outputs.push(again);
    outputs.push(headstart_with(
        &data,
        &token,
        &[],
        &["up", &url, "--recipe", &recipe],
    ));
    let ls = headstart_with(&data, &token, &[], &["snapshot", "ls", "--json"]);
    assert!(stdout(&ls).contains("[redacted]"), "{}", stdout(&ls));
    outputs.push(ls);
    outputs.push(headstart_with(&data, &token, &[], &["snapshot", "ls"]));
    outputs.push(headstart_with(
        &data,
        &token,
        &[("RUST_LOG", "trace")],
        &["ls", "--json"],
    ));

    for o in &outputs {
        assert!(
            !stdout(o).contains(&token) && !stderr(o).contains(&token),
            "{}{}",
            stdout(o),
            stderr(o)
        );
    }
    assert_eq!(files_containing(&data, &token), Vec::<PathBuf>::new());
}

#[test]
fn recipes_and_exec_get_the_token_only_when_asked_by_name() {
    let token = random_token();
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let in_process = [("HEADSTART_DETACH_BUILDS", "0"), ("GITHUB_TOKEN", "")];

    // no `secrets`: the recipe's environment (kept in the snapshot) has no token
    let data = home.path().join("plain");
    let recipe = write_recipe(
        home.path(),
        "plain.json",
        r#"{"commands":[{"argv":["sh","-c","env > seen-env.txt"]}]}"#,
    );
    let cold = json(&headstart_with(
        &data,
        &token,
        &in_process,
        &["up", &url, "--recipe", &recipe, "--json"],
    ));
    assert_eq!(cold["path"], "cold", "{cold}");
    let seen = snapshot_file(&data, "seen-env.txt");
    assert!(seen.contains("PATH="), "{seen}");
    assert!(!seen.contains("HEADSTART_GIT_TOKEN"), "{seen}");
    assert_eq!(files_containing(&data, &token), Vec::<PathBuf>::new());
    let name = cold["sandbox"]["name"].as_str().unwrap().to_owned();
    // `exec` runs repository code as well: no token from the host environment
    let exec = headstart_with(
        &data,
        &token,
        &[("GITHUB_TOKEN", &token)],
        &[
            "exec",
            &name,
            "--",
            "printenv",
            "HEADSTART_GIT_TOKEN",
            "GITHUB_TOKEN",
        ],
    );
    assert_eq!(exec.status.code(), Some(1), "{}", stdout(&exec));
    assert_eq!(stdout(&exec), "");

    // `secrets: [HEADSTART_GIT_TOKEN]`: that variable, and only that one, is passed
    let data = home.path().join("asked");
    let recipe = write_recipe(
        home.path(),
        "asked.json",
        r#"{"commands":[{"argv":["sh","-c","printenv HEADSTART_GIT_TOKEN > seen-token.txt; printenv GITHUB_TOKEN >> seen-token.txt; true"]}],
            "secrets":["HEADSTART_GIT_TOKEN"]}"#,
    );
    headstart_with(
        &data,
        &token,
        &[("HEADSTART_DETACH_BUILDS", "0"), ("GITHUB_TOKEN", &token)],
        &["up", &url, "--recipe", &recipe, "--json"],
    );
    assert_eq!(snapshot_file(&data, "seen-token.txt"), format!("{token}\n"));
}

#[test]
fn a_build_process_killed_mid_recipe_leaves_nothing_the_next_build_keeps() {
    let token = random_token();
    let home = crate::TestHome::new();
    let data = home.path().join("data");
    let first_up = Upstream::new("main", 3).unwrap();
    let other_up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(first_up.root()).unwrap();
    let other_server = GitHttpServer::start(other_up.root()).unwrap();
    let pid_file = home.path().join("recipe.pid");
    let recipe = write_recipe(
        home.path(),
        "recipe.json",
        &format!(
            r#"{{"commands":[{{"argv":["sh","-c","echo $$ > {}; exec sleep 317"]}}]}}"#,
            pid_file.display()
        ),
    );

    let first = json(&headstart_with(
        &data,
        &token,
        &[],
        &[
            "up",
            &server.url(first_up.name()),
            "--recipe",
            &recipe,
            "--json",
        ],
    ));
    let builder = i32::try_from(first["build"]["pid"].as_i64().expect("a detached build")).unwrap();
    wait_for("the recipe to start", Duration::from_secs(60), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
    });
    let recipe_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL to the build process alone (through the syscall, never `kill -9 -PID`)
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(builder).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_for("the build process to die", Duration::from_secs(10), || {
        !alive(builder)
    });
    // what it left: its recipe's process, its seed, its build sandbox
    assert!(
        alive(recipe_pid),
        "the recipe's process outlives its builder"
    );
    let seeds = data.join("state/seeds");
    let n_seeds = || std::fs::read_dir(&seeds).map_or(0, |d| d.count());
    assert_eq!(n_seeds(), 1);
    // a build sandbox is `creating` while it builds, so `ls` never offers it: count
    // the directories the local provider keeps
    let build_sandboxes = || {
        std::fs::read_dir(data.join("sandboxes")).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
                .count()
        })
    };
    let listed = json(&headstart_with(&data, &token, &[], &["ls", "--json"]));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s["name"].as_str().unwrap().starts_with("build-")),
        "a build sandbox is never listed: {listed}"
    );
    assert_eq!(build_sandboxes(), 1);

    // the next build, of another repository, cleans up after it
    let next = json(&headstart_with(
        &data,
        &token,
        &[("HEADSTART_DETACH_BUILDS", "0")],
        &["up", &other_server.url(other_up.name()), "--json"],
    ));
    assert_eq!(next["path"], "cold", "{next}");
    wait_for(
        "the killed build's recipe process to die",
        Duration::from_secs(10),
        || !alive(recipe_pid),
    );
    assert_eq!(n_seeds(), 0, "the dead build's seed is removed");
    assert_eq!(build_sandboxes(), 0, "the dead build's sandbox is removed");
}
