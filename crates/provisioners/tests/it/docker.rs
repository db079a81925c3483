//! The Docker provider against the real engine (skipped with a reason where none runs,
//! failing instead when `HEADSTART_REQUIRE_DOCKER=1`).
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)] // test helpers may panic and print

use std::time::Duration;

use provisioners::docker::{
    BaseImageSpec, DockerConfig, EngineHost, LABEL_OWNER, LABEL_SANDBOX, LABEL_SNAPSHOT_STATUS,
    build_base_image, connect, ensure_image, host_user,
};
use provisioners::local::RestoreMethod;
use sandbox_core::GcPolicy;
use sandbox_core::git::{self, GitOptions};
use sandbox_core::{
    BranchName, ConnectOptions, Connected, Error, ExecRequest, ExecSignal, ExecStdin, Resources,
    SandboxProvider, SignalToken, SnapshotRequest, SnapshotStore, Source, Stream,
};
use test_support::{Change, Upstream};

use crate::docker_common::{Fixture, TEST_SCOPE_LABEL, collecting_sink, owner, run, stdout};

macro_rules! fixture {
    ($test:expr) => {
        match Fixture::new($test).await {
            Some(f) => f,
            None => return,
        }
    };
    ($test:expr, $configure:expr) => {
        match Fixture::with($test, $configure).await {
            Some(f) => f,
            None => return,
        }
    };
}

fn source(up: &Upstream, branch: Option<&str>) -> Source {
    let s = Source::parse(&up.file_url()).unwrap();
    match branch {
        Some(b) => s.with_branch(BranchName::new(b).unwrap()).unwrap(),
        None => s,
    }
}

#[tokio::test]
async fn no_engine_is_a_clear_error() {
    let host = EngineHost::new("unix:///nonexistent/headstart/docker.sock");
    let err = connect(&host).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::Provider {
                provider: "docker",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("no Docker engine answers at unix:///nonexistent/headstart/docker.sock"),
        "{msg}"
    );
    assert!(msg.contains("DOCKER_HOST"), "{msg}");
    assert!(
        msg.contains("dockerd") || msg.contains("systemctl start docker"),
        "{msg}"
    );

    // A TCP address where nothing listens: the same kind of error, not a hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = connect(&EngineHost::new(format!("tcp://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no Docker engine answers"),
        "{err}"
    );
}

#[tokio::test]
async fn base_image_builds_offline_once() {
    let f = fixture!("base_image_builds_offline_once");
    let a = build_base_image(&f.docker, &BaseImageSpec::default())
        .await
        .unwrap();
    let b = build_base_image(&f.docker, &BaseImageSpec::default())
        .await
        .unwrap();
    assert_eq!(a, b, "the second build reuses the first");
    assert!(
        a.reference.starts_with("headstart/base:"),
        "{}",
        a.reference
    );
    assert!(a.id.starts_with("sha256:"), "{}", a.id);
    let img = f.docker.inspect_image(&a.reference).await.unwrap();
    let labels = img.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(
        labels.get(LABEL_OWNER).map(String::as_str),
        Some("headstart")
    );
}

#[tokio::test]
async fn missing_images_are_not_pulled_unless_allowed() {
    let f = fixture!("missing_images_are_not_pulled_unless_allowed");
    let absent = format!("headstart-test-absent/{}:1", f.scope);
    let err = ensure_image(&f.docker, &absent, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not present locally and pulling is disabled"),
        "{err}"
    );
    // Allowed, the pull is attempted and fails here (no registry): a clear error.
    let err = tokio::time::timeout(
        Duration::from_secs(120),
        ensure_image(&f.docker, &absent, true),
    )
    .await
    .expect("a failing pull returns")
    .unwrap_err()
    .to_string();
    assert!(err.contains("pulling it failed"), "{err}");
    assert!(err.contains("offline base image"), "{err}");
}

#[tokio::test]
async fn cold_start_sees_the_repository_at_workspace() {
    let f = fixture!("cold_start_sees_the_repository_at_workspace");
    let up = Upstream::new("main", 20).unwrap();
    let name = f.name("cold");
    let options = ConnectOptions::new()
        .name(name.clone())
        .env("HS_GREETING", "hello from options")
        .resources(Resources {
            cpus: Some(1.0),
            memory_bytes: Some(256 << 20),
        });
    let (sandbox, how) = f.provider.connect(&options).await.unwrap();
    assert_eq!(how, Connected::Created);
    let checkout = git::clone(
        &source(&up, None),
        sandbox.workspace(),
        &GitOptions::default(),
    )
    .unwrap();
    assert_eq!(checkout.head.commit, up.tip("main").unwrap());

    assert_eq!(stdout(&*sandbox, &["pwd"]).await, "/workspace\n");
    assert_eq!(
        stdout(&*sandbox, &["cat", "README.md"]).await,
        "# fixture\n"
    );
    let listing = stdout(&*sandbox, &["ls", "-a", "/workspace"]).await;
    assert!(
        listing.lines().any(|l| l == ".git") && listing.lines().any(|l| l == "src"),
        "{listing}"
    );
    assert_eq!(
        stdout(&*sandbox, &["cat", &Upstream::file_path(7)]).await,
        "file 7\nline two of file 7\n"
    );
    // Env from the options; the host user by default.
    let env = stdout(&*sandbox, &["env"]).await;
    assert!(
        env.lines().any(|l| l == "HS_GREETING=hello from options"),
        "{env}"
    );
    let uid_gid = format!(
        "{}:{}",
        stdout(&*sandbox, &["id", "-u"]).await.trim(),
        stdout(&*sandbox, &["id", "-g"]).await.trim()
    );
    assert_eq!(uid_gid, host_user());

    // The container: name, labels, bind mount, working dir, limits.
    let c = f
        .docker
        .inspect_container(&f.provider.container_name(&name), None)
        .await
        .unwrap();
    let config = c.config.unwrap();
    let labels = config.labels.unwrap();
    assert_eq!(labels.get(LABEL_SANDBOX), Some(&name.to_string()));
    assert_eq!(
        labels.get(LABEL_OWNER).map(String::as_str),
        Some("headstart")
    );
    assert_eq!(config.working_dir.as_deref(), Some("/workspace"));
    let host = c.host_config.unwrap();
    let mounts = c.mounts.unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].destination.as_deref(), Some("/workspace"));
    assert_eq!(
        mounts[0].source.as_deref(),
        Some(sandbox.workspace().to_str().unwrap())
    );
    assert_eq!(mounts[0].rw, Some(true));
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert_eq!(host.memory, Some(256 << 20));

    // Listed by label.
    let list = f.provider.list().await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].name, name);
    assert!(list[0].running);
    assert_eq!(list[0].workspace, sandbox.workspace());
}

#[tokio::test]
async fn files_written_in_the_container_belong_to_its_user() {
    let f = fixture!("files_written_in_the_container_belong_to_its_user", |c| c
        .user("1000:1000"));
    let (sandbox, _) = f
        .provider
        .connect(&ConnectOptions::new().name(f.name("uid")))
        .await
        .unwrap();
    assert_eq!(stdout(&*sandbox, &["id", "-u"]).await.trim(), "1000");
    let out = run(
        &*sandbox,
        &[
            "sh",
            "-c",
            "mkdir -p made/by && echo agent > made/by/agent.txt",
        ],
    )
    .await;
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = sandbox.workspace().join("made/by/agent.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "agent\n");
    assert_eq!(owner(&file), (1000, 1000));
    assert_eq!(owner(&sandbox.workspace().join("made")), (1000, 1000));
}

#[tokio::test]
async fn exec_streams_reports_status_and_times_out() {
    let f = fixture!("exec_streams_reports_status_and_times_out");
    let (sandbox, _) = f
        .provider
        .connect(&ConnectOptions::new().name(f.name("exec")))
        .await
        .unwrap();

    let (sink, seen) = collecting_sink();
    let req = ExecRequest::new(["sh", "-c", "echo out; echo err >&2; exit 3"])
        .unwrap()
        .sink(sink);
    let out = sandbox.exec(&req).await.unwrap();
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.success());
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(s, b)| *s == Stream::Stdout && b == b"out\n"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(s, b)| *s == Stream::Stderr && b == b"err\n"),
        "{seen:?}"
    );

    // An argv, not a shell string: the metacharacters reach the program as is.
    assert_eq!(
        stdout(&*sandbox, &["echo", "a; rm -rf / $(id)"]).await,
        "a; rm -rf / $(id)\n"
    );

    // cwd and env.
    std::fs::create_dir_all(sandbox.workspace().join("sub/dir")).unwrap();
    let mut req = ExecRequest::new(["sh", "-c", "pwd; echo $EXTRA"])
        .unwrap()
        .env("EXTRA", "x1");
    req.cwd = Some("sub/dir".into());
    let out = sandbox.exec(&req).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/workspace/sub/dir\nx1\n"
    );
    let mut bad = ExecRequest::new(["pwd"]).unwrap();
    bad.cwd = Some("../etc".into());
    assert!(matches!(
        sandbox.exec(&bad).await,
        Err(Error::InvalidOptions(_))
    ));

    // Output limit.
    let mut big = ExecRequest::new(["sh", "-c", "yes | head -c 10000"]).unwrap();
    big.output_limit = 100;
    let out = sandbox.exec(&big).await.unwrap();
    assert_eq!(out.stdout.len(), 100);
    assert!(out.truncated);

    // Timeout: reported, and the process is gone afterwards.
    let req = ExecRequest::new(["sleep", "37"])
        .unwrap()
        .timeout(Duration::from_millis(500));
    let out = sandbox.exec(&req).await.unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(out.duration < Duration::from_secs(30), "{:?}", out.duration);
    let mut gone = false;
    for _ in 0..50 {
        let ps = stdout(&*sandbox, &["ps", "-o", "args"]).await;
        if !ps.contains("sleep 37") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the timed-out command still runs");

    // A terminal when asked for.
    let mut tty = ExecRequest::new(["sh", "-c", "test -t 1 && echo tty"]).unwrap();
    tty.tty = true;
    let out = sandbox.exec(&tty).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tty"));
    let out = run(&*sandbox, &["sh", "-c", "test -t 1 && echo tty"]).await;
    assert_eq!(out.exit_code, Some(1), "no terminal unless asked");

    // A program that does not exist: a typed error (the CLI exits 127), not a hang.
    let missing = sandbox
        .exec(&ExecRequest::new(["/no/such/program"]).unwrap())
        .await;
    assert!(
        matches!(missing, Err(sandbox_core::Error::CommandNotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn reconnect_by_name_and_force_create() {
    let f = fixture!("reconnect_by_name_and_force_create");
    let name = f.name("again");
    let options = ConnectOptions::new().name(name.clone());
    let (first, how) = f.provider.connect(&options).await.unwrap();
    assert_eq!(how, Connected::Created);
    std::fs::write(first.workspace().join("kept.txt"), "kept").unwrap();

    let (second, how) = f
        .provider
        .connect(&options.clone().env("HS_AGAIN", "second connect"))
        .await
        .unwrap();
    assert_eq!(how, Connected::Reconnected);
    assert_eq!(second.id(), first.id());
    // The env of this connect reaches commands run through its handle.
    let env = stdout(&*second, &["env"]).await;
    assert!(env.lines().any(|l| l == "HS_AGAIN=second connect"), "{env}");

    // Stopped, then revived by connect.
    first.stop().await.unwrap();
    let listed = f.provider.list().await.unwrap();
    assert!(!listed[0].running, "{listed:?}");
    let err = first
        .exec(&ExecRequest::new(["true"]).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not running") && err.contains("connect"),
        "{err}"
    );
    let (third, how) = f.provider.connect(&options).await.unwrap();
    assert_eq!(how, Connected::Reconnected);
    assert_eq!(stdout(&*third, &["cat", "kept.txt"]).await, "kept");

    // force_create replaces container and workspace.
    let (fourth, how) = f
        .provider
        .connect(&options.clone().force_create(true))
        .await
        .unwrap();
    assert_eq!(how, Connected::Created);
    assert_ne!(fourth.id(), first.id());
    assert!(!fourth.workspace().join("kept.txt").exists());
    assert_eq!(f.scoped_containers().await.len(), 1);

    assert!(f.provider.get(&name).await.unwrap().is_some());
    f.provider.remove(&name).await.unwrap();
    assert!(f.provider.get(&name).await.unwrap().is_none());
    assert!(!fourth.workspace().exists());
    let err = f.provider.remove(&name).await.unwrap_err();
    assert!(matches!(err, Error::SandboxNotFound { .. }), "{err}");
}

#[tokio::test]
async fn failure_after_the_container_exists_removes_it() {
    // A bad entrypoint, and a user the image does not have: both fail at start, after
    // the container exists.
    type Configure = fn(DockerConfig) -> DockerConfig;
    let cases: [(&str, Configure); 2] = [
        ("entrypoint", |c| c.keep_alive(["/no/such/entrypoint"])),
        ("user", |c| c.user("no-such-user-in-image")),
    ];
    for (stem, configure) in cases {
        let f = fixture!("failure_after_the_container_exists_removes_it", configure);
        let name = f.name(stem);
        let err = f
            .provider
            .connect(&ConnectOptions::new().name(name.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Provider {
                    provider: "docker",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            f.scoped_containers().await.is_empty(),
            "a container with our labels remains"
        );
        assert!(f.provider.list().await.unwrap().is_empty());
        assert!(
            !f.dir
                .path()
                .join("data/sandboxes")
                .join(name.as_str())
                .exists()
        );
    }
}

#[tokio::test]
async fn two_sandboxes_of_one_repository_do_not_collide() {
    let f = fixture!("two_sandboxes_of_one_repository_do_not_collide");
    let up = Upstream::new("main", 10).unwrap();
    let (a_name, b_name, w_name) = (f.name("a"), f.name("b"), f.name("mine"));
    let (a, _) = f
        .provider
        .connect(&ConnectOptions::new().name(a_name.clone()))
        .await
        .unwrap();
    let (b, _) = f
        .provider
        .connect(&ConnectOptions::new().name(b_name.clone()))
        .await
        .unwrap();
    // The user's own checkout, bind-mounted as is.
    let mine = f.path("user's checkout: a,b");
    git::clone(&source(&up, None), &mine, &GitOptions::default()).unwrap();
    std::fs::write(mine.join("uncommitted.txt"), "my work").unwrap();
    let (w, _) = f
        .provider
        .connect(&ConnectOptions::new().name(w_name.clone()).workdir(&mine))
        .await
        .unwrap();
    assert_eq!(w.workspace(), std::fs::canonicalize(&mine).unwrap());
    for s in [&a, &b] {
        git::clone(&source(&up, None), s.workspace(), &GitOptions::default()).unwrap();
    }
    assert_ne!(a.id(), b.id());
    assert_ne!(a.workspace(), b.workspace());

    assert!(run(&*a, &["sh", "-c", "echo a > who.txt"]).await.success());
    assert!(run(&*b, &["sh", "-c", "echo b > who.txt"]).await.success());
    assert_eq!(stdout(&*a, &["cat", "who.txt"]).await, "a\n");
    assert_eq!(stdout(&*b, &["cat", "who.txt"]).await, "b\n");
    assert_eq!(stdout(&*w, &["cat", "uncommitted.txt"]).await, "my work");
    assert!(
        run(&*w, &["sh", "-c", "echo agent > from-agent.txt"])
            .await
            .success()
    );

    f.provider.remove(&a_name).await.unwrap();
    assert!(!a.workspace().exists());
    assert_eq!(stdout(&*b, &["cat", "who.txt"]).await, "b\n");
    assert_eq!(stdout(&*b, &["cat", "README.md"]).await, "# fixture\n");
    let names: Vec<_> = f
        .provider
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&b_name) && names.contains(&w_name));

    // Removing the workdir sandbox leaves the user's directory and files.
    f.provider.remove(&w_name).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(mine.join("uncommitted.txt")).unwrap(),
        "my work"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("from-agent.txt")).unwrap(),
        "agent\n"
    );
    assert!(mine.join(".git").is_dir());
    assert_eq!(stdout(&*b, &["cat", "who.txt"]).await, "b\n");
}

#[tokio::test]
async fn snapshot_then_warm_start_from_the_image() {
    let f = fixture!("snapshot_then_warm_start_from_the_image");
    let up = Upstream::new("main", 30).unwrap();
    let key = format!("test-{}-app", f.scope);
    let (builder, _) = f
        .provider
        .connect(&ConnectOptions::new().name(f.name("build")))
        .await
        .unwrap();
    let checkout = git::clone(
        &source(&up, None),
        builder.workspace(),
        &GitOptions::default(),
    )
    .unwrap();
    // The recipe installs a tool outside the workspace.
    let install = run(
        &*builder,
        &["sh", "-c", "printf '#!/bin/sh\\necho tool-ok\\n' > /usr/local/bin/hs-tool && chmod +x /usr/local/bin/hs-tool"],
    )
    .await;
    assert!(
        install.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );

    let request = SnapshotRequest::new(key.clone(), "recipe-1")
        .at("main", checkout.head.commit.clone())
        .source_url(up.file_url());
    let meta = builder.snapshot(&request).await.unwrap();
    assert_eq!(meta.name, key);
    assert!(meta.size_bytes > 0);
    let image_id = meta.provider_data["image_id"].as_str().unwrap().to_owned();
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    let img = f.docker.inspect_image(&image_id).await.unwrap();
    let labels = img.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(
        labels.get(LABEL_SNAPSHOT_STATUS).map(String::as_str),
        Some("ready")
    );

    // The stored workspace's directory pins the image by id next to its manifest.
    let stored = f
        .provider
        .store()
        .workspaces()
        .workspace_of(&meta.id)
        .unwrap();
    let pin: serde_json::Value = serde_json::from_slice(
        &std::fs::read(stored.parent().unwrap().join("image.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pin["image_id"], image_id.as_str());
    assert!(stored.join("README.md").is_file());

    let store = f.provider.snapshots();
    let found = store
        .latest_ready(&key)
        .await
        .unwrap()
        .expect("the snapshot is listed");
    assert_eq!(found.id, meta.id);
    assert_eq!(found.commit.as_deref(), Some(checkout.head.commit.as_str()));
    assert_eq!(found.provider_data["image_id"], image_id.as_str());

    // Upstream moves on, on another branch.
    let feature_tip = up
        .commit("feature", &[Change::write("feature.txt", "new work\n")])
        .unwrap();

    let warm_name = f.name("warm");
    let (warm, how) = f
        .provider
        .connect(
            &ConnectOptions::new()
                .name(warm_name.clone())
                .base_snapshot(meta.id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(how, Connected::Created);
    assert_eq!(warm.base_snapshot(), Some(&meta.id));
    assert_ne!(warm.workspace(), builder.workspace());
    // The tool from the recipe is in the image; the workspace is restored.
    assert_eq!(stdout(&*warm, &["hs-tool"]).await, "tool-ok\n");
    assert_eq!(stdout(&*warm, &["cat", "README.md"]).await, "# fixture\n");
    assert_eq!(
        git::head(warm.workspace()).unwrap().commit,
        checkout.head.commit
    );
    // The in-process sync runs on the host workspace; the container sees the result.
    let synced = git::sync(
        &source(&up, Some("feature")),
        warm.workspace(),
        &GitOptions::default(),
    )
    .unwrap();
    assert_eq!(synced.head.branch, "feature");
    assert_eq!(synced.head.commit, feature_tip);
    assert_eq!(stdout(&*warm, &["cat", "feature.txt"]).await, "new work\n");
    // The builder's workspace and the stored snapshot are untouched by the warm one.
    assert!(!builder.workspace().join("feature.txt").exists());

    // Deleting a snapshot a sandbox uses is refused; after removing it, the image goes.
    let err = store.delete(&meta.id).await.unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");
    f.provider.remove(&warm_name).await.unwrap();
    store.delete(&meta.id).await.unwrap();
    assert!(store.get(&meta.id).await.unwrap().is_none());
    assert!(
        f.docker.inspect_image(&image_id).await.is_err(),
        "the image is removed"
    );
    assert!(matches!(
        store.delete(&meta.id).await,
        Err(Error::SnapshotNotFound { .. })
    ));
}

#[tokio::test]
async fn snapshot_store_pages_newest_first_and_gc_removes_images() {
    let f = fixture!("snapshot_store_pages_newest_first_and_gc_removes_images");
    let key = format!("test-{}-paged", f.scope);
    let (sandbox, _) = f
        .provider
        .connect(&ConnectOptions::new().name(f.name("pages")))
        .await
        .unwrap();
    std::fs::write(sandbox.workspace().join("a.txt"), "a").unwrap();
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(
            sandbox
                .snapshot(&SnapshotRequest::new(key.clone(), "d"))
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = sandbox
        .snapshot(&SnapshotRequest::new(format!("{key}-other"), "d"))
        .await
        .unwrap();

    let store = f.provider.store().as_ref().clone().with_page_size(1);
    let page1 = store.list(Some(&key), None, 2).await.unwrap();
    let ids1: Vec<_> = page1.items.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids1, vec![made[2].id.clone(), made[1].id.clone()]);
    let page2 = store
        .list(Some(&key), page1.next.as_ref(), 2)
        .await
        .unwrap();
    let ids2: Vec<_> = page2.items.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids2, vec![made[0].id.clone()]);
    assert!(page2.next.is_none());
    assert_eq!(
        store.latest_ready(&key).await.unwrap().unwrap().id,
        made[2].id
    );
    let all = store.list(None, None, 100).await.unwrap();
    assert_eq!(all.items.len(), 4);
    assert_eq!(all.items[0].id, other.id);

    let removed = store.gc(&GcPolicy::new(1, None)).await.unwrap().removed;
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(removed.contains(&made[0].id) && removed.contains(&made[1].id));
    for m in &made[..2] {
        let image = m.provider_data["image_id"].as_str().unwrap();
        assert!(
            f.docker.inspect_image(image).await.is_err(),
            "gc removes the image"
        );
    }
    let left: Vec<_> = store
        .list(None, None, 100)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&made[2].id) && left.contains(&other.id));
}

/// True when something is mounted at `path` (its device differs from its parent's).
fn is_mount_point(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &std::path::Path| std::fs::metadata(p).unwrap().dev();
    dev(path) != dev(path.parent().unwrap())
}

#[tokio::test]
async fn overlay_workspace_survives_a_container_restart() {
    let f = fixture!("overlay_workspace_survives_a_container_restart", |c| c
        .restore_method(RestoreMethod::Overlay));
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP overlay_workspace_survives_a_container_restart: overlay mounts need root");
        return;
    }
    let up = Upstream::new("main", 10).unwrap();
    let key = format!("test-{}-overlay", f.scope);
    let (builder, _) = f
        .provider
        .connect(&ConnectOptions::new().name(f.name("obuild")))
        .await
        .unwrap();
    git::clone(
        &source(&up, None),
        builder.workspace(),
        &GitOptions::default(),
    )
    .unwrap();
    let meta = builder
        .snapshot(&SnapshotRequest::new(key, "d"))
        .await
        .unwrap();

    let name = f.name("overlay");
    let options = ConnectOptions::new()
        .name(name.clone())
        .base_snapshot(meta.id.clone());
    let (sandbox, _) = f.provider.connect(&options).await.unwrap();
    // The overlay is mounted on the host before the container starts, and the
    // container sees it (not the empty directory under it).
    assert!(
        is_mount_point(sandbox.workspace()),
        "the workspace is an overlay mount"
    );
    assert_eq!(
        stdout(&*sandbox, &["cat", "README.md"]).await,
        "# fixture\n"
    );
    assert!(
        run(&*sandbox, &["sh", "-c", "echo before-restart > agent.txt"])
            .await
            .success()
    );

    // A container restart re-binds the host path: the overlay is still there.
    f.docker
        .restart_container(sandbox.id(), None)
        .await
        .unwrap();
    assert_eq!(
        stdout(&*sandbox, &["cat", "agent.txt"]).await,
        "before-restart\n"
    );
    assert_eq!(
        stdout(&*sandbox, &["cat", "README.md"]).await,
        "# fixture\n"
    );

    // Stopped and the overlay gone (as after a reboot): reconnecting re-mounts it
    // before starting the container.
    sandbox.stop().await.unwrap();
    let out = std::process::Command::new("umount")
        .arg(sandbox.workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mount_point(sandbox.workspace()));
    let (again, how) = f
        .provider
        .connect(&ConnectOptions::new().name(name.clone()))
        .await
        .unwrap();
    assert_eq!(how, Connected::Reconnected);
    assert!(is_mount_point(again.workspace()));
    assert_eq!(
        stdout(&*again, &["cat", "agent.txt"]).await,
        "before-restart\n"
    );
    assert_eq!(stdout(&*again, &["cat", "README.md"]).await, "# fixture\n");
    // The snapshot itself is unchanged by the sandbox's writes.
    let stored = f
        .provider
        .store()
        .workspaces()
        .workspace_of(&meta.id)
        .unwrap();
    assert!(!stored.join("agent.txt").exists());

    f.provider.remove(&name).await.unwrap();
    assert!(
        !again.workspace().exists(),
        "removing unmounts and deletes the workspace"
    );
}

#[tokio::test]
async fn base_image_from_host_programs_runs_a_sandbox() {
    let Some(probe) = Fixture::new("base_image_from_host_programs_runs_a_sandbox").await else {
        return;
    };
    // Without busybox: this machine's own programs and their shared libraries. The
    // scope label makes the image this test's own (and removed with it).
    let spec = BaseImageSpec {
        from_host_binaries: true,
        labels: [(TEST_SCOPE_LABEL.to_owned(), probe.scope.clone())].into(),
        ..BaseImageSpec::default()
    };
    let image = build_base_image(&probe.docker, &spec).await.unwrap();
    let again = build_base_image(&probe.docker, &spec).await.unwrap();
    assert_eq!(image.id, again.id);
    let reference = image.reference.clone();
    let f = fixture!("base_image_from_host_programs_runs_a_sandbox", |c| c
        .default_image(reference));
    let (sandbox, _) = f
        .provider
        .connect(&ConnectOptions::new().name(f.name("hostbin")))
        .await
        .unwrap();
    assert_eq!(sandbox.base_snapshot(), None);
    std::fs::write(sandbox.workspace().join("hello.txt"), "from the host\n").unwrap();
    assert_eq!(
        stdout(&*sandbox, &["cat", "hello.txt"]).await,
        "from the host\n"
    );
    assert_eq!(
        stdout(&*sandbox, &["sh", "-c", "echo $((6 * 7)); pwd"]).await,
        "42\n/workspace\n"
    );
    assert_eq!(
        stdout(&*sandbox, &["id", "-u"]).await.trim(),
        host_user().split(':').next().unwrap()
    );
    drop(f);
    drop(probe);
}

#[tokio::test]
async fn timeouts_and_ttl_leave_nothing_behind() {
    let f = fixture!("timeouts_and_ttl_leave_nothing_behind");
    // A creation deadline that cannot be met: a timeout error, nothing half-made.
    let name = f.name("late");
    let options = ConnectOptions::new()
        .name(name.clone())
        .timeout(Duration::from_nanos(1));
    let err = f.provider.connect(&options).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(f.scoped_containers().await.is_empty());
    assert!(
        !f.dir
            .path()
            .join("data/sandboxes")
            .join(name.as_str())
            .exists()
    );

    // A sandbox past its TTL goes on prune; one within it stays.
    let (old, _) = f
        .provider
        .connect(
            &ConnectOptions::new()
                .name(f.name("old"))
                .ttl(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let (young, _) = f
        .provider
        .connect(
            &ConnectOptions::new()
                .name(f.name("young"))
                .ttl(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = f.provider.prune().await.unwrap();
    assert_eq!(report.expired, vec![old.name().clone()]);
    assert!(!old.workspace().exists());
    let left: Vec<_> = f
        .provider
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(left, vec![young.name().clone()]);
}

#[tokio::test]
async fn interactive_exec_feeds_stdin_and_gives_a_terminal() {
    let f = fixture!("interactive_exec_feeds_stdin_and_gives_a_terminal");
    let (sandbox, _) = f
        .provider
        .connect_sandbox(&ConnectOptions::new().name(f.name("chat")))
        .await
        .unwrap();
    // Without a terminal: input reaches the program, end of input ends it.
    let mut out = Vec::new();
    let code = sandbox
        .exec_interactive(
            &ExecRequest::new(["sh", "-c", "cat; echo done"]).unwrap(),
            None,
            &b"hello agent\n"[..],
            &mut out,
        )
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(String::from_utf8_lossy(&out), "hello agent\ndone\n");

    // With a terminal of a given size: the program reads a line typed at it.
    let script = "test -t 0 && read line && echo \"got $line\" && stty size; exit 7";
    let mut req = ExecRequest::new(["sh", "-c", script])
        .unwrap()
        .timeout(Duration::from_secs(60));
    req.tty = true;
    let mut out = Vec::new();
    let code = sandbox
        .exec_interactive(&req, Some((91, 17)), &b"hello\n"[..], &mut out)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, Some(7), "{text}");
    assert!(text.contains("got hello"), "{text}");
    assert!(text.contains("17 91"), "{text}");
}

#[tokio::test]
async fn exec_feeds_stdin_and_forwards_a_signal_to_the_group() {
    let f = fixture!("exec_feeds_stdin_and_forwards_a_signal_to_the_group");
    let (sandbox, _) = f
        .provider
        .connect(&ConnectOptions::new().name(f.name("sig")))
        .await
        .unwrap();
    let req = ExecRequest::new(["sh", "-c", "cat; echo done"])
        .unwrap()
        .stdin(ExecStdin::bytes("data\n"));
    let out = sandbox.exec(&req).await.unwrap();
    assert_eq!(out.stdout_lossy(), "data\ndone\n", "{out:?}");
    let out = run(&*sandbox, &["sh", "-c", "cat; echo done"]).await;
    assert_eq!(out.stdout_lossy(), "done\n", "no input unless given");

    // The signal ends the command (130) and what it started (a background job that
    // ignores SIGINT) is gone from the container.
    let token = SignalToken::new();
    let req = ExecRequest::new(["sh", "-c", "sleep 300 & echo $! > bg; exec sleep 301"])
        .unwrap()
        .signals(token.clone());
    let sender = crate::local_support::signal_when_written(
        sandbox.workspace().join("bg"),
        token,
        ExecSignal::Interrupt,
    );
    let out = tokio::time::timeout(Duration::from_secs(60), sandbox.exec(&req))
        .await
        .expect("the signal ended the command")
        .unwrap();
    sender.await.unwrap();
    assert_eq!(out.exit_code, Some(130), "{out:?}");
    let mut gone = false;
    for _ in 0..50 {
        let ps = stdout(&*sandbox, &["ps", "-eo", "args"]).await;
        if !ps.lines().any(|l| l.starts_with("sleep 30")) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the signalled command or its background job still runs"
    );
}
