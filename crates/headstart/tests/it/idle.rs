//! Idle stop, transparent resume and hibernate, driven through the binary: the host
//! daemon (started on demand by `up --idle-timeout`) stops an idle sandbox, a command
//! in flight keeps it alive, the next `exec` resumes it (after-start hooks included)
//! and says so; `hibernate` keeps the workspace byte for byte and the container's
//! filesystem. Docker tests skip with a printed reason when no engine answers (a
//! failure under `HEADSTART_REQUIRE_DOCKER=1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{GitHttpServer, Upstream};

use crate::docker_lifecycle::{DownAll, docker_or_skip};
use crate::lifecycle::Running;
use crate::schema::check;
use crate::{TestHome, headstart, json, stderr, stdout};

/// Stops the data directory's daemon when the test ends, however it ends.
struct DaemonGuard(PathBuf);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let _ = headstart(&self.0, &["daemon", "stop"]);
    }
}

/// A recipe whose after-start hook appends a line to `.starts` in the workspace.
fn counting_recipe(dir: &Path) -> String {
    let p = dir.join("recipe.json");
    let recipe = serde_json::json!({
        "after_start": [{"argv": ["sh", "-c", "echo start >> .starts"]}]
    });
    std::fs::write(&p, recipe.to_string()).unwrap();
    p.display().to_string()
}

/// The `ls --json` row of `name`.
fn row(home: &Path, name: &str) -> serde_json::Value {
    let ls = json(&headstart(home, &["ls", "--json"]));
    check("ls", &ls);
    ls.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no row for {name}: {ls}"))
}

/// Polls `ls --json` until `name`'s status is `status`, at most `within`.
fn wait_status(home: &Path, name: &str, status: &str, within: Duration) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let r = row(home, name);
        if r["status"] == status {
            return r;
        }
        assert!(
            t.elapsed() < within,
            "{name} not {status} within {within:?}: {r}; daemon log: {}",
            std::fs::read_to_string(home.join("daemon/daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `docker inspect -f TEMPLATE TARGET` (`None` when the engine does not know it).
fn docker_inspect(args: &[&str], template: &str) -> Option<String> {
    let o = Command::new("docker")
        .arg("inspect")
        .args(args)
        .args(["-f", template])
        .output()
        .expect("run docker");
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn container_running(id: &str) -> Option<bool> {
    docker_inspect(&[id], "{{.State.Running}}").map(|s| s == "true")
}

#[test]
fn a_local_sandbox_is_stopped_when_idle_and_resumed_by_exec() {
    let up = Upstream::new("main", 2).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = TestHome::new();
    let h = home.path();
    let _daemon = DaemonGuard(h.to_path_buf());
    let recipe = counting_recipe(h);

    let v = json(&headstart(
        h,
        &[
            "up",
            &url,
            "--name",
            "quiet",
            "--no-snapshot",
            "--recipe",
            &recipe,
            "--idle-timeout",
            "2s",
            "--json",
        ],
    ));
    check("up", &v);
    assert!(v["resumed"].is_null(), "{v}");
    let ws = PathBuf::from(v["sandbox"]["workspace"].as_str().unwrap());
    let r = row(h, "quiet");
    assert_eq!(r["status"], "running", "{r}");
    assert_eq!(r["idle_timeout_s"], 2, "{r}");
    assert!(r["idle_deadline"].is_string(), "{r}");
    // `up` started the daemon on demand
    let status = json(&headstart(h, &["daemon", "status", "--json"]));
    assert_eq!(status["running"], true, "{status}");

    let r = wait_status(h, "quiet", "stopped", Duration::from_secs(30));
    assert!(r["idle_deadline"].is_null(), "{r}");
    assert_eq!(r["state"], "stopped", "{r}");
    // idle stop never deletes anything
    assert!(ws.join(".git").is_dir(), "the workspace is kept");

    let e = json(&headstart(
        h,
        &["exec", "--json", "quiet", "cat", ".starts"],
    ));
    check("exec", &e);
    assert_eq!(e["resumed"]["from"], "stopped", "{e}");
    assert!(e["resumed"]["ms"].as_f64().unwrap() >= 0.0, "{e}");
    assert_eq!(
        e["stdout"].as_str().unwrap().lines().count(),
        2,
        "the hook ran on the start and on the resume: {e}"
    );
    assert_eq!(row(h, "quiet")["status"], "running");
    // a second command finds it running: nothing resumed
    let e = json(&headstart(h, &["exec", "--json", "quiet", "true"]));
    assert!(e["resumed"].is_null(), "{e}");

    // hibernate is for Docker sandboxes: a clear error, bad input
    let o = headstart(h, &["hibernate", "quiet"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("Docker"), "{}", stderr(&o));
    let o = headstart(h, &["hibernate", "--json", "quiet"]);
    let err: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    check("error", &err);
    assert_eq!(err["error"]["kind"], "invalid_input", "{err}");
}

#[test]
fn the_idle_timeout_comes_from_the_flag_the_recipe_or_the_environment() {
    let up = Upstream::new("main", 1).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = TestHome::new();
    let h = home.path();
    let _daemon = DaemonGuard(h.to_path_buf());
    let with_env = |value: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_headstart"))
            .args(args)
            .env("HEADSTART_HOME", h)
            .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
            .env("HEADSTART_IDLE_TIMEOUT", value)
            .output()
            .unwrap()
    };
    let recipe = h.join("idle-recipe.json");
    std::fs::write(&recipe, r#"{"idle_timeout": "45m"}"#).unwrap();
    let recipe = recipe.display().to_string();
    let base = ["up", url.as_str(), "--no-snapshot", "--name"];

    // the recipe's wins over the environment; the environment's applies without one
    let o = with_env("90s", &[&base[..], &["a", "--recipe", &recipe]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(row(h, "a")["idle_timeout_s"], 2700);
    let o = with_env("90s", &[&base[..], &["b"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(row(h, "b")["idle_timeout_s"], 90);
    // the flag wins over both; 0 is never
    let o = with_env("90s", &[&base[..], &["c", "--idle-timeout", "0"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let c = row(h, "c");
    assert!(
        c["idle_timeout_s"].is_null() && c["idle_deadline"].is_null(),
        "{c}"
    );
    // a reconnect without a setting keeps the recorded one
    let o = with_env("", &[&base[..], &["b"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(row(h, "b")["idle_timeout_s"], 90);

    // bad values are bad input that names what to fix, and start nothing
    let o = with_env("soon", &[&base[..], &["d"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("HEADSTART_IDLE_TIMEOUT"),
        "{}",
        stderr(&o)
    );
    std::fs::write(h.join("idle-recipe.json"), r#"{"idle_timeout": true}"#).unwrap();
    let o = with_env("", &[&base[..], &["d", "--recipe", &recipe]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("idle_timeout"), "{}", stderr(&o));
    let o = headstart(h, &["up", &url, "--name", "d", "--idle-timeout", "3 weeks"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let names: Vec<String> = json(&headstart(h, &["ls", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn an_idle_docker_sandbox_is_stopped_but_never_under_a_running_command_and_exec_resumes_it() {
    if !docker_or_skip("an_idle_docker_sandbox_is_stopped_but_never_under_a_running_command") {
        return;
    }
    let up = Upstream::new("main", 2).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = TestHome::new();
    let h = home.path();
    let _down = DownAll(h);
    let _daemon = DaemonGuard(h.to_path_buf());
    let recipe = counting_recipe(h);

    let v = json(&headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--name",
            "idle",
            "--no-snapshot",
            "--recipe",
            &recipe,
            "--idle-timeout",
            "3s",
            "--json",
        ],
    ));
    let id = v["sandbox"]["id"].as_str().unwrap().to_owned();
    assert_eq!(container_running(&id), Some(true));

    // a 10 s command: the sandbox stays up all along, well past its 3 s timeout
    let t = Instant::now();
    let long = Running::spawn(h, &["exec", "idle", "sleep", "10"]);
    while t.elapsed() < Duration::from_secs(9) {
        assert_eq!(
            container_running(&id),
            Some(true),
            "stopped under a running command after {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = long.finish(Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));

    // then idle: stopped (kept, not removed) within a generous bound
    let t = Instant::now();
    while container_running(&id) != Some(false) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "not stopped: {}",
            std::fs::read_to_string(h.join("daemon/daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let r = wait_status(h, "idle", "stopped", Duration::from_secs(10));
    assert_eq!(
        (r["state"].as_str(), r["hibernated"].as_bool()),
        (Some("stopped"), Some(false))
    );
    assert_eq!(r["id"], id.as_str(), "the same container");

    // the next exec resumes it, runs the after-start hook, works and says so
    let e = json(&headstart(h, &["exec", "--json", "idle", "cat", ".starts"]));
    check("exec", &e);
    assert_eq!(e["resumed"]["from"], "stopped", "{e}");
    assert_eq!(e["stdout"].as_str().unwrap().lines().count(), 2, "{e}");
    assert_eq!(container_running(&id), Some(true));
    assert_eq!(row(h, "idle")["status"], "running");
    // text mode says it too (on stderr: stdout is the command's)
    let _ = wait_status(h, "idle", "stopped", Duration::from_secs(60));
    let o = headstart(h, &["exec", "idle", "echo", "hello"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello\n");
    assert!(
        stderr(&o).contains("resumed idle (stopped)"),
        "{}",
        stderr(&o)
    );

    // and `up --name` of a stopped sandbox starts it again (its hooks run), saying so
    let _ = wait_status(h, "idle", "stopped", Duration::from_secs(60));
    let v = json(&headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--name",
            "idle",
            "--recipe",
            &recipe,
            "--json",
        ],
    ));
    check("up", &v);
    assert_eq!(v["resumed"]["from"], "stopped", "{v}");
    assert_eq!(v["path"], "reconnected", "{v}");
    assert_eq!(v["sandbox"]["id"], id.as_str(), "{v}");
    let ws = PathBuf::from(v["sandbox"]["workspace"].as_str().unwrap());
    let starts = std::fs::read_to_string(ws.join(".starts")).unwrap();
    assert_eq!(
        starts.lines().count(),
        4,
        "the first up, two resuming execs, this up: {starts}"
    );
}

#[test]
fn hibernate_then_resume_keeps_uncommitted_changes_installed_tools_and_ports() {
    if !docker_or_skip("hibernate_then_resume_keeps_uncommitted_changes_installed_tools") {
        return;
    }
    let up = Upstream::new("main", 2).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = TestHome::new();
    let h = home.path();
    let _down = DownAll(h);
    let recipe = counting_recipe(h);

    let v = json(&headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--name",
            "hib",
            "--no-snapshot",
            "--recipe",
            &recipe,
            "--port",
            "3000",
            "--json",
        ],
    ));
    let id = v["sandbox"]["id"].as_str().unwrap().to_owned();
    let ws = PathBuf::from(v["sandbox"]["workspace"].as_str().unwrap());
    let address = v["ports"][0]["host_address"].as_str().unwrap().to_owned();

    // uncommitted changes (a tracked file edited, an untracked binary file) and a tool
    // installed outside the workspace
    let setup = "f=$(git ls-files | head -n 1); printf 'edited\\n' >> \"$f\"; \
                 printf 'a\\000b\\377c' > untracked.bin; \
                 mkdir -p \"$HOME/bin\" && printf '#!/bin/sh\\necho tool-ok\\n' > \"$HOME/bin/mytool\" \
                 && chmod +x \"$HOME/bin/mytool\"; echo kept > /tmp/outside";
    let o = headstart(h, &["exec", "hib", "sh", "-c", setup]);
    assert!(o.status.success(), "{}", stderr(&o));
    // a command in flight wins: hibernate refuses (kind busy) and changes nothing
    let running = Running::spawn(h, &["exec", "hib", "sh", "-c", "touch .busy; sleep 4"]);
    let t = Instant::now();
    while !ws.join(".busy").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the command never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = headstart(h, &["hibernate", "hib", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let busy: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    check("error", &busy);
    assert_eq!(busy["error"]["kind"], "busy", "{busy}");
    assert_eq!(container_running(&id), Some(true));
    let out = running.finish(Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));

    let status_before = stdout(&headstart(
        h,
        &["exec", "hib", "git", "status", "--porcelain"],
    ));
    assert!(status_before.contains("untracked.bin"), "{status_before}");
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<(PathBuf, Vec<u8>)> = walk(dir)
            .into_iter()
            // .git holds git's own index refreshes; .starts counts the hook's runs
            .filter(|p| !p.starts_with(dir.join(".git")) && !p.ends_with(".starts"))
            .map(|p| {
                (
                    p.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&ws);

    let hv = json(&headstart(h, &["hibernate", "hib", "--json"]));
    check("hibernate", &hv);
    assert_eq!(hv["already"], false, "{hv}");
    let image = hv["image"].as_str().unwrap().to_owned();
    assert_eq!(container_running(&id), None, "the container is removed");
    assert!(docker_inspect(&["--type", "image", &image], "{{.Id}}").is_some());
    let r = row(h, "hib");
    assert_eq!(
        (r["status"].as_str(), r["hibernated"].as_bool()),
        (Some("stopped"), Some(true)),
        "{r}"
    );
    assert_eq!(
        snapshot(&ws),
        before,
        "the workspace is untouched by hibernate"
    );
    let again = json(&headstart(h, &["hibernate", "hib", "--json"]));
    assert_eq!(again["already"], true, "{again}");

    // the next command makes the container again from the image
    let e = json(&headstart(
        h,
        &[
            "exec",
            "--json",
            "hib",
            "sh",
            "-c",
            "\"$HOME/bin/mytool\"; cat /tmp/outside",
        ],
    ));
    check("exec", &e);
    assert_eq!(e["resumed"]["from"], "hibernated", "{e}");
    assert_eq!(e["stdout"], "tool-ok\nkept\n", "{e}");
    assert_eq!(
        snapshot(&ws),
        before,
        "uncommitted changes survive byte for byte"
    );
    let status_after = stdout(&headstart(
        h,
        &["exec", "hib", "git", "status", "--porcelain"],
    ));
    assert_eq!(status_after, status_before);
    let starts = std::fs::read_to_string(ws.join(".starts")).unwrap();
    assert_eq!(starts.lines().count(), 2, "the hook ran on the resume");
    // same published port, same labels (ls still finds it as this data directory's)
    let p = json(&headstart(h, &["ports", "hib", "--json"]));
    check("ports", &p);
    assert!(p["resumed"].is_null(), "{p}");
    assert_eq!(p["ports"][0]["host_address"], address.as_str(), "{p}");
    assert_eq!(row(h, "hib")["status"], "running");

    // hibernate again (a layer on the first image), resume, and `down`: no image of
    // this data directory's hibernations is left
    let again = json(&headstart(h, &["hibernate", "hib", "--json"]));
    assert_eq!(again["already"], false, "{again}");
    let e = json(&headstart(h, &["exec", "--json", "hib", "true"]));
    assert_eq!(e["resumed"]["from"], "hibernated", "{e}");
    assert!(!hibernation_images(h).is_empty(), "the filter finds them");
    let o = headstart(h, &["down", "hib"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        docker_inspect(&["--type", "image", &image], "{{.Id}}").is_none(),
        "the hibernation image is removed with the sandbox"
    );
    assert_eq!(hibernation_images(h), "", "hibernation layers left behind");
}

/// The ids of the hibernation images (and layers) of data directory `home`.
fn hibernation_images(home: &Path) -> String {
    let o = Command::new("docker")
        .args(["images", "-a", "-q", "--filter"])
        .arg("label=dev.headstart.hibernated")
        .arg("--filter")
        .arg(format!("label=dev.headstart.home={}", home.display()))
        .output()
        .unwrap();
    stdout(&o).trim().to_owned()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_daemon_hibernates_after_hibernate_after_and_the_ttl_still_removes() {
    if !docker_or_skip("the_daemon_hibernates_after_hibernate_after_and_the_ttl_still_removes") {
        return;
    }
    let up = Upstream::new("main", 1).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = TestHome::new();
    let h = home.path();
    let _down = DownAll(h);
    let _daemon = DaemonGuard(h.to_path_buf());

    let started = Instant::now();
    let v = json(&headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--name",
            "nap",
            "--no-snapshot",
            "--hibernate-after",
            "2s",
            "--ttl",
            "10s",
            "--json",
        ],
    ));
    let id = v["sandbox"]["id"].as_str().unwrap().to_owned();
    let wait_hibernated = || {
        let t = Instant::now();
        loop {
            let r = row(h, "nap");
            if r["hibernated"] == true {
                return r;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "not hibernated: {r}");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let r = wait_hibernated();
    assert_eq!(r["status"], "stopped", "{r}");
    assert_eq!(container_running(&id), None, "its container is removed");
    assert!(!hibernation_images(h).is_empty());

    let e = json(&headstart(
        h,
        &["exec", "--json", "nap", "git", "status", "--short"],
    ));
    assert_eq!(e["resumed"]["from"], "hibernated", "{e}");
    assert_eq!(e["status"], 0, "{e}");
    let _ = wait_hibernated();

    // the TTL still removes it, hibernated or not, image included
    if let Some(left) = Duration::from_secs(11).checked_sub(started.elapsed()) {
        std::thread::sleep(left);
    }
    let p = json(&headstart(h, &["prune", "--json"]));
    assert!(
        p["expired"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "nap"),
        "{p}"
    );
    let ls = json(&headstart(h, &["ls", "--json"]));
    assert!(ls.as_array().unwrap().is_empty(), "{ls}");
    assert_eq!(hibernation_images(h), "", "the image went with it");
}
