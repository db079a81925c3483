//! `--registry`: two data directories are two hosts sharing a real registry on
//! loopback (`docker-registry`; skipped with a reason when it is not installed,
//! failing under `HEADSTART_REQUIRE_REGISTRY=1`).

use std::process::{Command, Output};

use test_support::{GitHttpServer, Registry, Upstream};

use crate::schema::check;
use crate::{TestHome, json, stderr};

fn headstart_env(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headstart"));
    cmd.args(args)
        .env("HEADSTART_HOME", home)
        .env_remove("HEADSTART_GIT_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env_remove("HEADSTART_REGISTRY")
        .env_remove("HEADSTART_REGISTRY_TOKEN")
        .env("DOCKER_CONFIG", home.join("no-docker-config"))
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run headstart")
}

#[test]
fn host_b_starts_warm_from_what_host_a_pushed() {
    let Some(registry) = Registry::start_or_skip("host_b_starts_warm_from_what_host_a_pushed")
    else {
        return;
    };
    let up = Upstream::new("trunk", 30).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let reference = registry.reference("acme/headstart");
    let (a, b) = (TestHome::new(), TestHome::new());

    // A: cold, builds in this process and pushes (--registry flag)
    let v = json(&headstart_env(
        a.path(),
        &[
            "up",
            &url,
            "--name",
            "a1",
            "--registry",
            &reference,
            "--wait-snapshot",
            "--json",
        ],
        &[],
    ));
    check("up", &v);
    assert_eq!(v["path"], "cold");
    let v = json(&headstart_env(a.path(), &["snapshot", "ls", "--json"], &[]));
    check("snapshot-ls", &v);
    let push = &v["snapshots"][0]["push"];
    assert!(push["error"].is_null(), "{v}");
    assert!(
        push["pushed"]["reference"]
            .as_str()
            .unwrap()
            .starts_with(&reference)
    );

    // B: empty, configured by the environment: warm from the registry, no clone
    let tip = up.advance("trunk", 1).unwrap();
    let env = [("HEADSTART_REGISTRY", reference.as_str())];
    let v = json(&headstart_env(
        b.path(),
        &["up", &url, "--name", "b1", "--json"],
        &env,
    ));
    check("up", &v);
    assert_eq!(v["path"], "warm", "{v}");
    assert_eq!(v["snapshot"]["source"], "registry");
    assert_eq!(v["head"]["commit"], tip.as_str());
    let phases: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"snapshot_pull"), "{phases:?}");
    assert!(!phases.contains(&"git_clone"), "{phases:?}");
    // then a local warm start
    let v = json(&headstart_env(
        b.path(),
        &["up", &url, "--name", "b2", "--json"],
        &env,
    ));
    assert_eq!(v["path"], "warm");
    assert_eq!(v["snapshot"]["source"], "local");

    // registry GC keeps the newest per key
    let v = json(&headstart_env(
        b.path(),
        &["snapshot", "gc", "--registry", "--keep", "1", "--json"],
        &env,
    ));
    check("snapshot-gc-registry", &v);
    assert_eq!(v["kept"].as_array().unwrap().len(), 1, "{v}");

    // a bad reference is bad input with a hint, not a failure
    let o = headstart_env(
        b.path(),
        &["up", &url, "--registry", "https://x.example/y"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("leave out the scheme"),
        "{}",
        stderr(&o)
    );
}
