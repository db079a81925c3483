//! The CLI end to end: `up --json` cold then warm through a detached build process,
//! bad input with exit status 2, `exec` status pass-through, a killed build.

use std::time::{Duration, Instant};

use test_support::{GitHttpServer, Upstream};

use crate::{headstart, json, stderr, stdout};

/// Polls `snapshot ls --json` until a ready snapshot exists.
fn wait_ready(home: &std::path::Path, within: Duration) -> Option<serde_json::Value> {
    let t = Instant::now();
    while t.elapsed() < within {
        let v = json(&headstart(home, &["snapshot", "ls", "--json"]));
        if let Some(s) = v["snapshots"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["status"] == "ready"))
        {
            return Some(s.clone());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn up_json_cold_then_warm_with_a_detached_build() {
    let up = Upstream::new("trunk", 100).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();

    let cold = json(&headstart(
        home.path(),
        &["up", &url, "--name", "one", "--json"],
    ));
    assert_eq!(cold["path"], "cold");
    assert_eq!(cold["sandbox"]["name"], "one");
    assert_eq!(cold["head"]["branch"], "trunk");
    assert_eq!(cold["head"]["commit"], up.tip("trunk").unwrap());
    assert!(cold["snapshot"].is_null());
    assert_eq!(cold["build"]["build"], "detached", "{cold}");
    let phases: Vec<&str> = cold["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        phases.contains(&"git_clone") && phases.contains(&"provision"),
        "{phases:?}"
    );
    assert!(cold["phases"][0]["ms"].is_f64() && cold["total_ms"].is_f64());
    assert!(
        cold["reason"]
            .as_str()
            .unwrap()
            .contains("no ready snapshot")
    );

    let snap = wait_ready(home.path(), Duration::from_secs(60)).expect("a snapshot becomes ready");
    let new_tip = up.advance("trunk", 1).unwrap();
    let warm = json(&headstart(
        home.path(),
        &["up", &url, "--name", "two", "--json"],
    ));
    assert_eq!(warm["path"], "warm", "{warm}");
    assert_eq!(warm["snapshot"]["id"], snap["id"]);
    assert_eq!(warm["head"]["commit"], new_tip.as_str());
    let phases: Vec<&str> = warm["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        phases.contains(&"git_sync") && !phases.contains(&"git_clone"),
        "{phases:?}"
    );
    let ws = warm["sandbox"]["workspace"].as_str().unwrap();
    assert!(std::path::Path::new(ws).join("README.md").exists());

    let ls = json(&headstart(home.path(), &["ls", "--json"]));
    assert_eq!(ls.as_array().unwrap().len(), 2, "{ls}");
    let down = headstart(home.path(), &["down", "one"]);
    assert!(down.status.success(), "{}", stderr(&down));
    let ls = json(&headstart(home.path(), &["ls", "--json"]));
    assert_eq!(ls.as_array().unwrap().len(), 1);
}

#[test]
fn bad_input_exits_2_and_leaves_nothing_half_created() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let secretish = format!(
        "https://user:{}@example.com/a/b",
        test_support::random_token()
    );
    let cases: Vec<Vec<&str>> = vec![
        vec!["up", "not a url"],
        vec!["up", "-oProxyCommand=evil"],
        vec!["up", &secretish],
        vec!["up", "ftp://example.com/a/b"],
        vec!["up", &url, "--branch", "does-not-exist", "--name", "x"],
        vec!["up", &url, "--branch", "bad..name"],
        vec!["up", &url, "--new-branch", "main", "--name", "y"],
        vec!["up", &url, "--name", "Bad Name"],
        vec!["exec", "nosuch", "--", "true"],
        vec!["down", "nosuch"],
        vec!["snapshot", "rm", "nosuch"],
        vec!["up"],
    ];
    for args in &cases {
        let o = headstart(home.path(), args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let err = stderr(&o);
        assert!(!err.trim().is_empty(), "{args:?} says why");
        assert!(
            !err.contains(secretish.split(['@', ':']).nth(2).unwrap()),
            "{err}"
        );
    }
    let o = headstart(home.path(), &["up", &url, "--branch", "does-not-exist"]);
    assert!(
        stderr(&o).contains("does-not-exist") && stderr(&o).contains("main"),
        "{}",
        stderr(&o)
    );
    let ls = json(&headstart(home.path(), &["ls", "--json"]));
    assert_eq!(ls, serde_json::json!([]), "nothing half-created");
}

#[test]
fn exec_passes_argv_literally_and_returns_the_exit_status() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let home = crate::TestHome::new();
    let o = headstart(
        home.path(),
        &[
            "up",
            &server.url(up.name()),
            "--name",
            "box",
            "--no-snapshot",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = headstart(
        home.path(),
        &[
            "exec",
            "box",
            "--",
            "printf",
            "%s|",
            "a b",
            "$(echo no)",
            ";",
        ],
    );
    assert_eq!(stdout(&o), "a b|$(echo no)|;|");
    let o = headstart(home.path(), &["exec", "box", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = headstart(
        home.path(),
        &["exec", "box", "--", "git", "rev-parse", "HEAD"],
    );
    assert_eq!(stdout(&o).trim(), up.tip("main").unwrap());
}

#[test]
fn a_killed_build_leaves_no_ready_snapshot_and_the_next_start_recovers() {
    let up = Upstream::new("main", 20).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let recipe = home.path().join("recipe.json");
    std::fs::write(&recipe, r#"{"commands":[{"argv":["sleep","4"]}]}"#).unwrap();
    let recipe = recipe.to_str().unwrap();

    let first = json(&headstart(
        home.path(),
        &["up", &url, "--recipe", recipe, "--json"],
    ));
    let pid = first["build"]["pid"]
        .as_i64()
        .expect("a detached build process");
    assert!(pid > 1, "{first}");
    std::thread::sleep(Duration::from_millis(800));
    // Kill the build process mid-way: its own process group (it was started detached).
    // Through the syscall, never `kill -9 -PID`: procps-ng's kill reads that as -1.
    let group = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL)
        .expect("the build process group was still running");
    std::thread::sleep(Duration::from_millis(300));
    let v = json(&headstart(home.path(), &["snapshot", "ls", "--json"]));
    assert!(
        v["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] != "ready"),
        "no ready snapshot from a killed build: {v}"
    );

    // The next start is cold again and its build is not blocked by the dead one's lock.
    let second = json(&headstart(
        home.path(),
        &["up", &url, "--recipe", recipe, "--json"],
    ));
    assert_eq!(second["path"], "cold");
    assert_eq!(second["build"]["build"], "detached", "{second}");
    assert!(wait_ready(home.path(), Duration::from_secs(60)).is_some());
    let third = json(&headstart(
        home.path(),
        &["up", &url, "--recipe", recipe, "--json"],
    ));
    assert_eq!(third["path"], "warm");
    // The killed build's sandbox was replaced and removed; only user sandboxes remain.
    let ls = json(&headstart(home.path(), &["ls", "--json"]));
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("build-")), "{names:?}");
}

#[test]
fn up_workdir_uses_the_users_directory_and_down_keeps_it() {
    let home = crate::TestHome::new();
    let mine = tempfile::tempdir().unwrap();
    std::fs::write(mine.path().join("notes.txt"), "my work").unwrap();
    let dir = mine.path().to_str().unwrap();
    let v = json(&headstart(
        home.path(),
        &[
            "up",
            "--workdir",
            dir,
            "--name",
            "w",
            "--provider",
            "local",
            "--json",
        ],
    ));
    assert_eq!(v["path"], "workdir");
    assert_eq!(v["sandbox"]["workspace"], dir);
    let o = headstart(home.path(), &["exec", "w", "--", "cat", "notes.txt"]);
    assert_eq!(stdout(&o), "my work");
    assert!(headstart(home.path(), &["down", "w"]).status.success());
    assert_eq!(
        std::fs::read_to_string(mine.path().join("notes.txt")).unwrap(),
        "my work",
        "down never deletes the user's directory"
    );
}
