//! The credential broker end to end: `up --credentials broker` registers a grant with
//! the credential daemon (started on demand) and points the workspace's `origin` at
//! its capability URL; the real `git`, with no token anywhere in its environment,
//! fetches and pushes the sandbox's branch through it, is refused other branches, and
//! loses access when `down` revokes the grant. The token is in no file and no
//! process's arguments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use test_support::files_containing;

use test_support::{GitHttpServer, Upstream, git_command, random_token};

use crate::{TestHome, headstart, json, stderr, stdout};

/// Stops the data directory's daemon when the test ends, however it ends.
pub(crate) struct DaemonGuard(pub(crate) PathBuf);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let _ = headstart(&self.0, &["daemon", "stop"]);
    }
}

pub(crate) fn headstart_with_token(home: &Path, token: &str, args: &[&str]) -> Output {
    headstart_with_env(home, token, &[], args)
}

pub(crate) fn headstart_with_env(
    home: &Path,
    token: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .envs(env.iter().copied())
        .env("HEADSTART_HOME", home)
        .env("HEADSTART_GIT_TOKEN", token)
        .env_remove("GITHUB_TOKEN")
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
        .output()
        .expect("run headstart")
}

/// The real git in `dir`, without any token in its environment.
pub(crate) fn git_in(dir: &Path, args: &[&str]) -> Output {
    git_command()
        .current_dir(dir)
        .args(args)
        .env_remove("HEADSTART_GIT_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .output()
        .expect("run git")
}

pub(crate) fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Whether any process's command line or environment holds `needle`.
pub(crate) fn processes_holding(needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for what in ["cmdline", "environ"] {
            if let Ok(bytes) = std::fs::read(e.path().join(what)) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(format!("{name}/{what}"));
                }
            }
        }
    }
    hits
}

#[test]
fn a_local_sandbox_pushes_its_branch_through_the_broker_and_nothing_else() {
    let token = random_token();
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let url = server.url(up.name());
    let home = TestHome::new();
    let _daemon = DaemonGuard(home.path().to_path_buf());

    let out = headstart_with_token(
        home.path(),
        &token,
        &[
            "up",
            &url,
            "--credentials",
            "broker",
            "--provider",
            "local",
            "--new-branch",
            "agent/x",
            "--no-snapshot",
            "--json",
        ],
    );
    let v = json(&out);
    crate::schema::check("up", &v);
    let ws = PathBuf::from(v["sandbox"]["workspace"].as_str().unwrap());
    let name = v["sandbox"]["name"].as_str().unwrap().to_owned();
    let grant = &v["grant"];
    assert_eq!(grant["push"], serde_json::json!(["agent/x"]), "{v}");
    assert!(grant["repository"].as_str().unwrap().contains(up.name()));
    assert!(grant["expires_at"].is_string());
    let origin = ok(git_in(&ws, &["config", "remote.origin.url"]));
    assert!(origin.starts_with("http://127.0.0.1:"), "{origin}");
    assert!(origin.contains("/g/"), "{origin}");
    let cap = origin
        .split("/g/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(!stdout(&out).contains(cap), "the capability is printed");

    // With no token anywhere: fetch, commit, push the own branch.
    ok(git_in(&ws, &["fetch", "origin"]));
    std::fs::write(ws.join("agent.txt"), "from the sandbox\n").unwrap();
    ok(git_in(&ws, &["add", "agent.txt"]));
    ok(git_in(&ws, &["commit", "-m", "agent work"]));
    let head = ok(git_in(&ws, &["rev-parse", "HEAD"]));
    ok(git_in(&ws, &["push", "origin", "HEAD:agent/x"]));
    assert_eq!(up.tip("agent/x").unwrap(), head, "upstream has the commit");

    // Another branch is refused, with the reason.
    let main_before = up.tip("main").unwrap();
    let refused = git_in(&ws, &["push", "origin", "HEAD:main"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("rejected") && err.contains("main"), "{err}");
    assert_eq!(up.tip("main").unwrap(), main_before);

    // The token is in no file, no command line, no environment but ours.
    assert_eq!(files_containing(&ws, &token), Vec::<PathBuf>::new());
    assert_eq!(files_containing(home.path(), &token), Vec::<PathBuf>::new());
    let me = format!("{}/", std::process::id());
    let holders: Vec<_> = processes_holding(&token)
        .into_iter()
        .filter(|h| !h.starts_with(&me))
        .collect();
    assert!(
        holders.is_empty(),
        "processes holding the token: {holders:?}"
    );

    // Listings show the grant, never the capability.
    let ls = headstart(home.path(), &["ls", "--json"]);
    assert!(!stdout(&ls).contains(cap), "{}", stdout(&ls));
    let rows = json(&ls);
    crate::schema::check("ls", &rows);
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["grant"]["push"], serde_json::json!(["agent/x"]));
    let status = headstart(home.path(), &["daemon", "status", "--json"]);
    assert!(!stdout(&status).contains(cap));
    let status = json(&status);
    crate::schema::check("daemon-status", &status);
    assert_eq!(status["grants"].as_array().unwrap().len(), 1);

    // `down` revokes: a later fetch through the URL is refused.
    let down = json(&headstart(home.path(), &["down", &name, "--json"]));
    crate::schema::check("down", &down);
    assert_eq!(
        down["removed"][0]["revoked_grants"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let tmp = tempfile::tempdir().unwrap();
    let refused = git_command()
        .args(["ls-remote", &origin])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("403") || err.contains("revoked"), "{err}");

    let stop = headstart(home.path(), &["daemon", "stop"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert!(!home.path().join("daemon/control.sock").exists());
}

#[test]
fn a_broker_grant_without_a_token_is_refused_before_the_start() {
    let up = Upstream::new("main", 1).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let home = TestHome::new();
    let out = headstart(
        home.path(),
        &[
            "up",
            &server.url(up.name()),
            "--credentials",
            "broker",
            "--provider",
            "local",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
    assert!(!home.path().join("daemon/control.sock").exists());
}

/// The same through a Docker container on the host's network (the broker at
/// 127.0.0.1): git inside the container pushes its branch, with no token in the
/// container. Skipped with a printed reason when no Docker engine answers.
#[test]
fn a_docker_sandbox_on_the_host_network_pushes_through_the_broker() {
    if !crate::docker_lifecycle::docker_or_skip(
        "a_docker_sandbox_on_the_host_network_pushes_through_the_broker",
    ) {
        return;
    }
    let token = random_token();
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let home = TestHome::new();
    let _daemon = DaemonGuard(home.path().to_path_buf());
    let _down = crate::docker_lifecycle::DownAll(home.path());

    // No --credentials: a broker grant is the default on Docker with a token.
    let out = headstart_with_env(
        home.path(),
        &token,
        &[("HEADSTART_DOCKER_NETWORK", "host")],
        &[
            "up",
            &server.url(up.name()),
            "--provider",
            "docker",
            "--new-branch",
            "agent/d",
            "--no-snapshot",
            "--json",
        ],
    );
    let v = json(&out);
    let name = v["sandbox"]["name"].as_str().unwrap().to_owned();
    assert_eq!(v["grant"]["push"], serde_json::json!(["agent/d"]), "{v}");
    let exec = |argv: &[&str]| {
        let mut args = vec!["exec", name.as_str(), "--"];
        args.extend_from_slice(argv);
        let o = headstart(home.path(), &args);
        assert!(o.status.success(), "{argv:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    let origin = exec(&["git", "config", "remote.origin.url"]);
    assert!(origin.trim().starts_with("http://127.0.0.1:"), "{origin}");
    let env = exec(&["env"]);
    assert!(
        !env.contains(&token),
        "the token is in the container's environment"
    );
    exec(&[
        "sh",
        "-c",
        "echo from-docker > docker.txt && git add docker.txt",
    ]);
    exec(&[
        "git",
        "-c",
        "user.name=Agent",
        "-c",
        "user.email=agent@example.com",
        "commit",
        "-m",
        "docker work",
    ]);
    let head = exec(&["git", "rev-parse", "HEAD"]);
    exec(&["git", "push", "origin", "HEAD:agent/d"]);
    assert_eq!(up.tip("agent/d").unwrap(), head.trim());
    let refused = headstart(
        home.path(),
        &["exec", &name, "--", "git", "push", "origin", "HEAD:main"],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("rejected"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(files_containing(home.path(), &token), Vec::<PathBuf>::new());
}
