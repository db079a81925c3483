//! The trust guarantees of `headstart up` on the Docker provider, driven through the
//! binary as users do: concurrent starts of one name, and an interrupted start.
//! Skipped with a printed reason when no Docker engine answers (a failure instead under
//! `HEADSTART_REQUIRE_DOCKER=1`). Each test has its own data directory, so its
//! containers are its own (named and labelled per data directory); `down --all` removes
//! them at the end.

use std::path::Path;
use std::time::Duration;

use rustix::process::Signal;
use test_support::{GitHttpServer, StallProxy, Upstream};

use crate::lifecycle::{
    BUDGET, Running, STALL, assert_clean_checkout, big_upstream, ls_all_states, ls_names,
    up_until_stalled,
};
use crate::{headstart, json, stderr};

/// True when a Docker engine answers on its unix socket; else says why the test skips.
#[allow(clippy::print_stderr)] // the printed reason a skipped test gives
pub(crate) fn docker_or_skip(test: &str) -> bool {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(_) => true,
        Err(e) if std::env::var("HEADSTART_REQUIRE_DOCKER").is_ok_and(|v| v.trim() == "1") => {
            panic!("HEADSTART_REQUIRE_DOCKER=1 but no Docker engine answers at {socket}: {e}")
        }
        Err(e) => {
            eprintln!("skipping {test}: no Docker engine answers at {socket} ({e})");
            false
        }
    }
}

/// Removes every sandbox of `home` (its containers included) when dropped.
pub(crate) struct DownAll<'a>(pub(crate) &'a Path);

impl Drop for DownAll<'_> {
    fn drop(&mut self) {
        let _ = headstart(self.0, &["down", "--all"]);
        let _ = headstart(self.0, &["prune"]);
    }
}

#[test]
fn eight_concurrent_docker_ups_of_one_name_make_one_sandbox() {
    if !docker_or_skip("eight_concurrent_docker_ups_of_one_name_make_one_sandbox") {
        return;
    }
    let up = Upstream::new("main", 200).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let _down = DownAll(home.path());
    let tip = up.tip("main").unwrap();

    let runs: Vec<Running> = (0..8)
        .map(|_| {
            Running::spawn(
                home.path(),
                &[
                    "up",
                    &url,
                    "--name",
                    "same",
                    "--provider",
                    "docker",
                    "--no-snapshot",
                    "--json",
                ],
            )
        })
        .collect();
    let outs: Vec<_> = runs
        .into_iter()
        .map(|r| r.finish(Duration::from_secs(300)))
        .collect();
    let mut made = 0;
    let mut ids = std::collections::BTreeSet::new();
    let mut workspaces = std::collections::BTreeSet::new();
    for o in &outs {
        let v = json(o); // every one exits 0
        match v["path"].as_str().unwrap() {
            "reconnected" => {}
            "cold" => made += 1,
            other => panic!("unexpected path {other}: {v}"),
        }
        ids.insert(v["sandbox"]["id"].as_str().unwrap().to_owned());
        workspaces.insert(v["sandbox"]["workspace"].as_str().unwrap().to_owned());
    }
    assert_eq!(made, 1, "exactly one start clones");
    assert_eq!(ids.len(), 1, "one container for all eight: {ids:?}");
    assert_eq!(workspaces.len(), 1, "{workspaces:?}");
    let ws = workspaces.into_iter().next().unwrap();
    assert_clean_checkout(Path::new(&ws), &tip);
    // the container sees the same checkout
    let o = headstart(home.path(), &["exec", "same", "git", "rev-parse", "HEAD"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), tip);
    assert_eq!(ls_names(home.path()), ["same"]);
}

#[test]
fn an_interrupted_docker_start_leaves_no_container() {
    if !docker_or_skip("an_interrupted_docker_start_leaves_no_container") {
        return;
    }
    let up = big_upstream();
    let server = GitHttpServer::start(up.root()).unwrap();
    let proxy = StallProxy::start(server.addr(), Some(BUDGET), STALL).unwrap();
    let url = proxy.url(up.name());
    let home = crate::TestHome::new();
    let _down = DownAll(home.path());

    let running = up_until_stalled(
        home.path(),
        &proxy,
        &[
            "up",
            &url,
            "--name",
            "box",
            "--provider",
            "docker",
            "--no-snapshot",
        ],
    );
    running.signal(Signal::INT);
    let out = running.finish(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    // `ls --all` lists this data directory's containers in every state (unfinished too)
    assert!(ls_all_states(home.path()).is_empty(), "no container left");
    let workspaces = home.path().join("docker").join("sandboxes");
    let left = std::fs::read_dir(&workspaces).map_or(0, |d| d.count());
    assert_eq!(left, 0, "no workspace left under {}", workspaces.display());
    assert_eq!(lock_files(home.path()), Vec::<String>::new());

    // the next start of the name works and is at the upstream commit
    proxy.set_budget(None);
    let v = json(&docker_up(home.path(), &url, "box", &["--json"]));
    assert_eq!(v["path"], "cold", "{v}");
    assert_eq!(v["head"]["commit"], up.tip("main").unwrap().as_str());
}

#[test]
fn a_docker_start_killed_mid_clone_is_listed_interrupted_and_down_removes_it() {
    if !docker_or_skip("a_docker_start_killed_mid_clone_is_listed_interrupted_and_down_removes_it")
    {
        return;
    }
    let up = big_upstream();
    let server = GitHttpServer::start(up.root()).unwrap();
    let proxy = StallProxy::start(server.addr(), Some(BUDGET), STALL).unwrap();
    let url = proxy.url(up.name());
    let home = crate::TestHome::new();
    let _down = DownAll(home.path());
    let args = [
        "up",
        &url,
        "--name",
        "box",
        "--provider",
        "docker",
        "--no-snapshot",
    ];

    let running = up_until_stalled(home.path(), &proxy, &args);
    // while its start runs (holding the name's lock): `creating`
    assert_eq!(
        ls_all_states(home.path()),
        [("box".to_owned(), "creating".to_owned())]
    );
    running.signal(Signal::KILL);
    let _ = running.finish(Duration::from_secs(10));
    // listed as what it is: never as ready, and no longer as being created
    assert_eq!(
        ls_all_states(home.path()),
        [("box".to_owned(), "interrupted".to_owned())]
    );
    assert!(ls_names(home.path()).is_empty(), "listed with --all only");
    let o = headstart(home.path(), &["exec", "box", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "not offered: {}", stderr(&o));

    // what `ls` lists, `down` removes: container, workspace and the name's lock file
    let o = headstart(home.path(), &["down", "box"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(ls_all_states(home.path()).is_empty());
    let workspaces = home.path().join("docker").join("sandboxes");
    let left = std::fs::read_dir(&workspaces).map_or(0, |d| d.count());
    assert_eq!(left, 0, "no workspace left under {}", workspaces.display());
    assert_eq!(lock_files(home.path()), Vec::<String>::new());

    // a failed start leaves no lock file either; `prune` removes what older
    // versions left (a lock per name ever tried)
    let o = docker_up(home.path(), &url, "nobranch", &["--branch", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(lock_files(home.path()), Vec::<String>::new());
    std::fs::write(home.path().join("docker/containers/ghost.lock"), "").unwrap();
    let o = headstart(home.path(), &["prune"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lock_files(home.path()), Vec::<String>::new());
}

/// `up URL --name NAME --provider docker --no-snapshot EXTRA...` in `home`.
fn docker_up(home: &Path, url: &str, name: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "up",
        url,
        "--name",
        name,
        "--provider",
        "docker",
        "--no-snapshot",
    ];
    args.extend_from_slice(extra);
    headstart(home, &args)
}

/// The Docker provider's per-name lock files (`<data dir>/docker/containers/*.lock`).
fn lock_files(home: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(home.join("docker/containers"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn a_docker_sandbox_is_found_through_any_spelling_of_its_home() {
    if !docker_or_skip("a_docker_sandbox_is_found_through_any_spelling_of_its_home") {
        return;
    }
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let _down = DownAll(home.path());
    let tip = up.tip("main").unwrap();
    let v = json(&docker_up(home.path(), &url, "box", &["--json"]));
    let id = v["sandbox"]["id"].as_str().unwrap().to_owned();

    // the same data directory through a symlink, and as a relative path
    let links = tempfile::tempdir().unwrap();
    let link = links.path().join("home");
    std::os::unix::fs::symlink(home.path(), &link).unwrap();
    let parent = home.path().parent().unwrap();
    let relative = Path::new(home.path().file_name().unwrap());
    let spellings: [(&Path, &Path); 2] = [(&link, links.path()), (relative, parent)];
    for (spelling, cwd) in spellings {
        let run = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_headstart"))
                .args(args)
                .current_dir(cwd)
                .env("HEADSTART_HOME", spelling)
                .env_remove("HEADSTART_GIT_TOKEN")
                .env_remove("GITHUB_TOKEN")
                .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
                .output()
                .unwrap()
        };
        let what = spelling.display();
        let ls = json(&run(&["ls", "--json"]));
        assert_eq!(ls.as_array().unwrap().len(), 1, "{what}: {ls}");
        assert_eq!(ls[0]["name"], "box", "{what}: {ls}");
        let o = run(&["exec", "box", "--", "git", "rev-parse", "HEAD"]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), tip);
        // reconnected to the same container, not a second one made
        let again = json(&run(&[
            "up",
            &url,
            "--name",
            "box",
            "--provider",
            "docker",
            "--json",
        ]));
        assert_eq!(again["path"], "reconnected", "{what}: {again}");
        assert_eq!(again["sandbox"]["id"], id.as_str(), "{what}: {again}");
    }
}

#[test]
fn a_docker_sandbox_whose_workspace_was_removed_is_broken_refused_and_pruned() {
    if !docker_or_skip("a_docker_sandbox_whose_workspace_was_removed_is_broken_refused_and_pruned")
    {
        return;
    }
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let _down = DownAll(home.path());
    let args = ["--provider", "docker", "--no-snapshot"];
    let started = json(&headstart(
        home.path(),
        &[&["up", &url, "--name", "gone", "--json"][..], &args[..]].concat(),
    ));
    let id = started["sandbox"]["id"].as_str().unwrap().to_owned();
    std::fs::remove_dir_all(started["sandbox"]["workspace"].as_str().unwrap()).unwrap();

    let ls = json(&headstart(home.path(), &["ls", "--json"]));
    let row = &ls.as_array().unwrap()[0];
    assert_eq!(
        (&row["state"], &row["status"]),
        (&"broken".into(), &"broken".into()),
        "{row}"
    );

    let again = headstart(
        home.path(),
        &[&["up", &url, "--name", "gone"][..], &args[..]].concat(),
    );
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("no longer exists"),
        "{}",
        stderr(&again)
    );

    let pruned = json(&headstart(home.path(), &["prune", "--json"]));
    assert_eq!(pruned["orphans"][0]["name"], "gone", "{pruned}");
    assert!(ls_names(home.path()).is_empty());
    let inspect = std::process::Command::new("docker")
        .args(["inspect", &id])
        .output()
        .unwrap();
    assert!(!inspect.status.success(), "the container is removed");
}
