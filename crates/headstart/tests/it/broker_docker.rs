//! A Docker sandbox on the engine's default bridge network (no `--network host`)
//! reaches the credential broker at `host.docker.internal`: the broker also listens on
//! the bridge's gateway address (never a wildcard), the real `git` in the container
//! fetches and pushes its own branch through it to the loopback upstream, and the
//! token is nowhere in the container. Skipped with a printed reason when no Docker
//! engine answers (a failure under `HEADSTART_REQUIRE_DOCKER=1`).

use std::path::PathBuf;
use std::process::Command;

use test_support::{GitHttpServer, Upstream, files_containing, random_token};

use crate::broker::{DaemonGuard, headstart_with_env};
use crate::{headstart, json, stderr, stdout};

#[test]
fn a_docker_sandbox_on_the_default_bridge_fetches_and_pushes_through_the_broker() {
    if !crate::docker_lifecycle::docker_or_skip(
        "a_docker_sandbox_on_the_default_bridge_fetches_and_pushes_through_the_broker",
    ) {
        return;
    }
    let token = random_token();
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let home = crate::TestHome::new();
    let _daemon = DaemonGuard(home.path().to_path_buf());
    let _down = crate::docker_lifecycle::DownAll(home.path());

    // The default network: no HEADSTART_DOCKER_NETWORK.
    let out = headstart_with_env(
        home.path(),
        &token,
        &[("HEADSTART_DOCKER_NETWORK", "")],
        &[
            "up",
            &server.url(up.name()),
            "--provider",
            "docker",
            "--new-branch",
            "agent/bridge",
            "--no-snapshot",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let v = json(&out);
    let name = v["sandbox"]["name"].as_str().unwrap().to_owned();
    let container = v["sandbox"]["id"].as_str().unwrap().to_owned();
    let ws = PathBuf::from(v["sandbox"]["workspace"].as_str().unwrap());
    assert_eq!(
        v["grant"]["push"],
        serde_json::json!(["agent/bridge"]),
        "{v}"
    );

    // The broker listens on the bridge's gateway too, and on no wildcard.
    let status = json(&headstart(home.path(), &["daemon", "status", "--json"]));
    crate::schema::check("daemon-status", &status);
    let addresses: Vec<&str> = status["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(!addresses.is_empty(), "{status}");
    assert!(
        addresses.iter().all(|a| *a != "0.0.0.0" && *a != "::"),
        "{addresses:?}"
    );

    let exec = |argv: &[&str]| {
        let mut args = vec!["exec", name.as_str(), "--"];
        args.extend_from_slice(argv);
        headstart(home.path(), &args)
    };
    let ok = |argv: &[&str]| {
        let o = exec(argv);
        assert!(o.status.success(), "{argv:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o).trim().to_owned()
    };
    let origin = ok(&["git", "config", "remote.origin.url"]);
    assert!(
        origin.starts_with("http://host.docker.internal:"),
        "{origin}"
    );

    // The real git in the container: fetch, commit, push its own branch.
    let before = up.advance("main", 1).unwrap();
    ok(&["git", "fetch", "origin", "main"]);
    assert_eq!(ok(&["git", "rev-parse", "FETCH_HEAD"]), before);
    ok(&[
        "sh",
        "-c",
        "echo from-bridge > bridge.txt && git add bridge.txt",
    ]);
    ok(&[
        "git",
        "-c",
        "user.name=Agent",
        "-c",
        "user.email=agent@example.com",
        "commit",
        "-m",
        "bridge work",
    ]);
    let head = ok(&["git", "rev-parse", "HEAD"]);
    ok(&["git", "push", "origin", "HEAD:agent/bridge"]);
    assert_eq!(up.tip("agent/bridge").unwrap(), head, "the upstream has it");
    let refused = exec(&["git", "push", "origin", "HEAD:main"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("rejected"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(up.tip("main").unwrap(), before);

    // The token is nowhere in the container.
    assert!(!ok(&["env"]).contains(&token), "in the container's env");
    let environs = ok(&["sh", "-c", "cat /proc/[0-9]*/environ 2>/dev/null; true"]);
    assert!(
        !environs.is_empty() && !environs.contains(&token),
        "in /proc/*/environ"
    );
    assert_eq!(files_containing(&ws, &token), Vec::<PathBuf>::new());
    assert_eq!(files_containing(home.path(), &token), Vec::<PathBuf>::new());
    let inspect = Command::new("docker")
        .args(["inspect", &container])
        .output()
        .expect("run docker inspect");
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    assert!(!stdout(&inspect).contains(&token), "in docker inspect");
    assert!(stdout(&inspect).contains("host.docker.internal:host-gateway"));
}
