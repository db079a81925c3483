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

/// `up --json` output `v` is a warm start from the registry at `tip`, with a pull and no
/// clone.
fn assert_warm_from_the_registry(v: &serde_json::Value, tip: &str) {
    check("up", v);
    assert_eq!(v["path"], "warm", "{v}");
    assert_eq!(v["snapshot"]["source"], "registry", "{v}");
    assert_eq!(v["head"]["commit"], tip);
    let phases: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"snapshot_pull"), "{phases:?}");
    assert!(!phases.contains(&"git_clone"), "{phases:?}");
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
    assert_warm_from_the_registry(&v, &tip);
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

#[test]
fn the_registry_token_is_never_stored_or_printed() {
    let Some(registry) = Registry::start_or_skip("the_registry_token_is_never_stored_or_printed")
    else {
        return;
    };
    let token = test_support::random_token();
    let up = Upstream::new("trunk", 5).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let reference = registry.reference("acme/secret");
    let (a, b) = (TestHome::new(), TestHome::new());
    let env = [
        ("HEADSTART_REGISTRY", reference.as_str()),
        ("HEADSTART_REGISTRY_TOKEN", token.as_str()),
    ];
    let mut printed = String::new();
    let mut run = |home: &std::path::Path, args: &[&str], env: &[(&str, &str)]| {
        let o = headstart_env(home, args, env);
        printed.push_str(&crate::stdout(&o));
        printed.push_str(&stderr(&o));
        o
    };
    // A pushes with the token (the registry takes it as basic auth), B pulls with it
    let o = run(
        a.path(),
        &[
            "up",
            &url,
            "--name",
            "a",
            "--wait-snapshot",
            "--json",
            "--log",
            "debug",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(a.path(), &["snapshot", "ls", "--json"], &env);
    let v = json(&o);
    assert!(v["snapshots"][0]["push"]["error"].is_null(), "{v}");
    let o = run(
        b.path(),
        &["up", &url, "--name", "b", "--json", "--log", "debug"],
        &env,
    );
    let v = json(&o);
    assert_eq!(v["snapshot"]["source"], "registry", "{v}");
    // a token hidden in the reference is refused without being echoed; an unreachable
    // registry: the start goes cold and says why, without the token
    let gone = format!("127.0.0.1:9/acme/secret?token={token}");
    let c = TestHome::new();
    let o = run(
        c.path(),
        &["up", &url, "--name", "c", "--json", "--registry", &gone],
        &env,
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "a token in the reference is bad input"
    );
    let o = run(
        c.path(),
        &[
            "up",
            &url,
            "--name",
            "d",
            "--json",
            "--registry",
            "127.0.0.1:9/acme/secret",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["path"], "cold", "{v}");
    assert!(!printed.contains(&token), "the registry token was printed");
    for home in [a.path(), b.path(), c.path()] {
        assert_eq!(
            test_support::files_containing(home, &token),
            Vec::<std::path::PathBuf>::new(),
            "the registry token was stored"
        );
    }
}

/// Removes the snapshot images a data directory made (labelled with it) when dropped;
/// its sandboxes go with `DownAll`.
struct SnapshotImages<'a>(&'a std::path::Path);

impl Drop for SnapshotImages<'_> {
    fn drop(&mut self) {
        let label = format!("label=dev.headstart.home={}", self.0.display());
        let Ok(o) = Command::new("docker")
            .args(["images", "-q", "--filter", &label])
            .output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rmi", "-f"])
                .args(&ids)
                .output();
        }
    }
}

#[test]
fn a_docker_snapshot_is_a_normal_image_and_host_b_starts_warm_from_it_with_the_tool() {
    let test = "a_docker_snapshot_is_a_normal_image_and_host_b_starts_warm_from_it_with_the_tool";
    if !crate::docker_lifecycle::docker_or_skip(test) {
        return;
    }
    let Some(registry) = Registry::start_or_skip(test) else {
        return;
    };
    let up = Upstream::new("trunk", 12).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let reference = registry.reference("acme/hs");
    let (a, b) = (TestHome::new(), TestHome::new());
    // dropped in reverse: the sandboxes go first, then the images they ran from
    let _images_a = SnapshotImages(a.path());
    let _images_b = SnapshotImages(b.path());
    let _down_a = crate::docker_lifecycle::DownAll(a.path());
    let _down_b = crate::docker_lifecycle::DownAll(b.path());
    // the recipe installs a tool outside the workspace: only the image carries it
    let recipe = a.path().join("recipe.json");
    std::fs::write(
        &recipe,
        serde_json::json!({"commands": [{"argv": ["sh", "-c",
            "mkdir -p \"$HOME/bin\" && printf '#!/bin/sh\\necho tool-ok\\n' > \"$HOME/bin/hs-tool\" \
             && chmod +x \"$HOME/bin/hs-tool\""]}]})
        .to_string(),
    )
    .unwrap();
    let recipe = recipe.to_str().unwrap();
    let env = [("HEADSTART_REGISTRY", reference.as_str())];
    let docker_up = |home: &std::path::Path, name: &str| {
        json(&headstart_env(
            home,
            &[
                "up",
                &url,
                "--provider",
                "docker",
                "--name",
                name,
                "--recipe",
                recipe,
                "--json",
            ],
            &env,
        ))
    };

    // A: cold, builds, pushes the image through the engine
    let v = json(&headstart_env(
        a.path(),
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--name",
            "a1",
            "--recipe",
            recipe,
            "--wait-snapshot",
            "--json",
        ],
        &env,
    ));
    check("up", &v);
    assert_eq!(v["path"], "cold", "{v}");
    let v = json(&headstart_env(
        a.path(),
        &["snapshot", "ls", "--provider", "docker", "--json"],
        &env,
    ));
    check("snapshot-ls", &v);
    let snap = &v["snapshots"][0];
    let push = &snap["push"];
    assert!(push["error"].is_null(), "{v}");
    let key = snap["name"].as_str().unwrap().to_owned();
    let id = snap["id"].as_str().unwrap().to_owned();
    let images = format!("{reference}/docker");
    assert_eq!(
        push["pushed"]["reference"].as_str().unwrap(),
        format!("{images}:{key}-{id}")
    );
    assert!(push["pushed"]["bytes"].as_u64().unwrap() > 0, "{push}");

    // a normal image: any engine pulls it by `<key>` and `<key>-<id>`, and runs it with
    // the tool and the workspace in it and the annotations as labels
    for tag in [key.clone(), format!("{key}-{id}")] {
        let image = format!("{images}:{tag}");
        let o = Command::new("docker")
            .args(["pull", &image])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let o = Command::new("docker")
            .args([
                "run", "--rm", "--entrypoint", "sh", "-u", "0", &image, "-c",
                "ls /workspace/.git/HEAD && ls /home/*/bin/hs-tool /root/bin/hs-tool 2>/dev/null | head -n 1",
            ])
            .output()
            .unwrap();
        let out = crate::stdout(&o);
        assert!(o.status.success(), "{}{}", out, stderr(&o));
        assert!(out.contains("hs-tool"), "{out}");
        let o = Command::new("docker")
            .args([
                "image",
                "inspect",
                "--format",
                "{{json .Config.Labels}}",
                &image,
            ])
            .output()
            .unwrap();
        let labels: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            labels["dev.headstart.snapshot.key"],
            key.as_str(),
            "{labels}"
        );
        assert_eq!(labels["dev.headstart.snapshot.id"], id.as_str());
        for k in [
            "dev.headstart.snapshot.commit",
            "dev.headstart.snapshot.recipe-digest",
            "dev.headstart.version",
            "org.opencontainers.image.created",
        ] {
            assert!(
                labels[k].as_str().is_some_and(|s| !s.is_empty()),
                "{k}: {labels}"
            );
        }
        // no data directory of A leaks into the published image, and none lists it
        assert_eq!(labels["dev.headstart.data-dir"], "", "{labels}");
        assert_eq!(labels["dev.headstart.owner"], "headstart-published");
        let _ = Command::new("docker").args(["rmi", &image]).output();
    }

    // B: empty, Docker provider: warm from the pulled image, no clone, tool present
    let tip = up.advance("trunk", 1).unwrap();
    let v = docker_up(b.path(), "b1");
    assert_warm_from_the_registry(&v, &tip);
    let ws = std::path::PathBuf::from(v["sandbox"]["workspace"].as_str().unwrap());
    crate::lifecycle::assert_clean_checkout(&ws, &tip);
    let o = headstart_env(
        b.path(),
        &["exec", "b1", "sh", "-c", "\"$HOME/bin/hs-tool\""],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(crate::stdout(&o).trim(), "tool-ok");
    let o = headstart_env(b.path(), &["exec", "b1", "git", "rev-parse", "HEAD"], &[]);
    assert_eq!(crate::stdout(&o).trim(), tip);

    // B lists it as its own snapshot now; the second start is a local warm start
    let v = json(&headstart_env(
        b.path(),
        &["snapshot", "ls", "--provider", "docker", "--json"],
        &env,
    ));
    assert_eq!(v["snapshots"][0]["id"], id.as_str(), "{v}");
    let v = docker_up(b.path(), "b2");
    assert_eq!(v["path"], "warm", "{v}");
    assert_eq!(v["snapshot"]["source"], "local", "{v}");
    // C: `snapshot pull` prefetches the image, then a start there is local and warm
    let c = TestHome::new();
    let _images_c = SnapshotImages(c.path());
    let _down_c = crate::docker_lifecycle::DownAll(c.path());
    let v = json(&headstart_env(
        c.path(),
        &[
            "snapshot",
            "pull",
            &url,
            "--provider",
            "docker",
            "--recipe",
            recipe,
            "--json",
        ],
        &env,
    ));
    check("snapshot-pull", &v);
    assert_eq!(v["downloaded"], true, "{v}");
    assert_eq!(v["snapshot"]["id"], id.as_str());
    assert_eq!(v["reference"], format!("{images}:{key}"));
    let v = docker_up(c.path(), "c1");
    assert_eq!(v["path"], "warm", "{v}");
    assert_eq!(v["snapshot"]["source"], "local", "{v}");
    let o = headstart_env(
        c.path(),
        &["exec", "c1", "sh", "-c", "\"$HOME/bin/hs-tool\""],
        &[],
    );
    assert_eq!(crate::stdout(&o).trim(), "tool-ok", "{}", stderr(&o));

    // A still lists exactly its one snapshot (the published image is not A's)
    let v = json(&headstart_env(
        a.path(),
        &["snapshot", "ls", "--provider", "docker", "--json"],
        &[],
    ));
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 1, "{v}");
    // registry GC covers the images too
    let v = json(&headstart_env(
        a.path(),
        &["snapshot", "gc", "--registry", "--keep", "1", "--json"],
        &env,
    ));
    check("snapshot-gc-registry", &v);
    assert_eq!(
        v["kept"],
        serde_json::json!([format!("docker/{key}-{id}")]),
        "{v}"
    );

    // the registry gone: a fresh host's Docker start goes cold and says why
    let mut registry = registry;
    registry.stop();
    let d = TestHome::new();
    let _images_d = SnapshotImages(d.path());
    let _down_d = crate::docker_lifecycle::DownAll(d.path());
    let v = json(&headstart_env(
        d.path(),
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--name",
            "d1",
            "--recipe",
            recipe,
            "--wait-snapshot",
            "--json",
        ],
        &env,
    ));
    assert_eq!(v["path"], "cold", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("registry"), "{v}");
    // its build still succeeds; the failed push is recorded, never fatal
    let v = json(&headstart_env(
        d.path(),
        &["snapshot", "ls", "--provider", "docker", "--json"],
        &env,
    ));
    let push = &v["snapshots"][0]["push"];
    assert_eq!(push["error_kind"], "registry_unreachable", "{v}");
    assert!(push["pushed"].is_null(), "{v}");
}

#[test]
fn snapshot_pull_prefetches_once_and_the_next_start_is_local_and_warm() {
    let Some(registry) = Registry::start_or_skip(
        "snapshot_pull_prefetches_once_and_the_next_start_is_local_and_warm",
    ) else {
        return;
    };
    let up = Upstream::new("trunk", 8).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let reference = registry.reference("acme/prefetch");
    let (a, b) = (TestHome::new(), TestHome::new());

    // nothing to pull from: bad input with a hint; nothing pushed yet: not found
    let o = headstart_env(b.path(), &["snapshot", "pull", &url], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--registry"), "{}", stderr(&o));
    let o = headstart_env(
        b.path(),
        &["snapshot", "pull", &url, "--registry", &reference, "--json"],
        &[],
    );
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    check("error", &v);
    assert_eq!(v["error"]["kind"], "snapshot_not_found", "{v}");

    // A builds: the build report carries the push (phase snapshot_push)
    let v = json(&headstart_env(
        a.path(),
        &["snapshot", "build", &url, "--json"],
        &[("HEADSTART_REGISTRY", reference.as_str())],
    ));
    check("snapshot-build", &v);
    assert!(v["push"]["error"].is_null(), "{v}");
    assert_eq!(v["push"]["snapshot"], v["snapshot"]["id"]);
    assert!(v["push"]["pushed"]["bytes"].as_u64().unwrap() > 0, "{v}");
    let v = json(&headstart_env(
        b.path(),
        &["snapshot", "pull", &url, "--registry", &reference, "--json"],
        &[],
    ));
    check("snapshot-pull", &v);
    assert_eq!(v["downloaded"], true, "{v}");
    assert!(v["bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["provider"], "local");
    assert_eq!(v["snapshot"]["status"], "ready");
    let id = v["snapshot"]["id"].as_str().unwrap().to_owned();
    // again: here already, nothing downloaded
    let v = json(&headstart_env(
        b.path(),
        &["snapshot", "pull", &url, "--registry", &reference, "--json"],
        &[],
    ));
    assert_eq!(v["downloaded"], false, "{v}");
    assert_eq!(v["bytes"], 0);
    assert_eq!(v["snapshot"]["id"], id.as_str());
    // the text form says so too
    let o = headstart_env(
        b.path(),
        &["snapshot", "pull", &url, "--registry", &reference],
        &[],
    );
    assert!(stderr(&o).contains("nothing pulled") || crate::stdout(&o).contains("nothing pulled"));
    // a start without any registry configured is warm from the prefetched snapshot
    let v = json(&headstart_env(
        b.path(),
        &["up", &url, "--name", "b1", "--json"],
        &[],
    ));
    assert_eq!(v["path"], "warm", "{v}");
    assert_eq!(v["snapshot"]["source"], "local");
    assert_eq!(v["snapshot"]["id"], id.as_str());
}
