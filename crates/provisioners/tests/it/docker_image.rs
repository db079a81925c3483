//! The base image an agent works in, against the real engine: git (status, log, an
//! HTTP fetch from a loopback server, commit) inside a fresh sandbox, a terminal with
//! `stty`, a user for any uid, and how each recipe (Debian via `mmdebstrap`, this
//! machine's programs) is built and reused. Skipped with a reason where no engine
//! runs (failing instead when `HEADSTART_REQUIRE_DOCKER=1`); never because busybox or
//! mmdebstrap is missing: the recipe that works here is used.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)] // test helpers may panic and print

use std::path::Path;
use std::time::{Duration, Instant};

use provisioners::docker::{
    BaseImageSpec, BaseRecipe, DebianSpec, DockerSandbox, ImageRef, LABEL_BASE_RECIPE, LABEL_OWNER,
    PUBLIC_BASE_IMAGE, SANDBOX_USER, build_base_image, default_image, host_user,
};
use sandbox_core::git::{self, GitOptions};
use sandbox_core::{ConnectOptions, ExecRequest, Sandbox, Source};
use test_support::{Change, GitHttpServer, Upstream, git_in};

use crate::docker_common::{Fixture, TEST_SCOPE_LABEL, owner, run, stdout};

/// True when `mmdebstrap` is on `PATH` (the default recipe then is Debian).
fn mmdebstrap_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("mmdebstrap").is_file()))
}

/// The recipe label of an image.
async fn recipe_of(f: &Fixture, image: &ImageRef) -> String {
    let img = f.docker.inspect_image(&image.reference).await.unwrap();
    let labels = img.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(
        labels.get(LABEL_OWNER).map(String::as_str),
        Some("headstart")
    );
    labels.get(LABEL_BASE_RECIPE).cloned().unwrap_or_default()
}

/// The host-programs image, scoped to `probe`'s test (removed with it).
async fn host_programs_image(probe: &Fixture) -> ImageRef {
    let spec = BaseImageSpec {
        recipe: BaseRecipe::HostPrograms,
        labels: [(TEST_SCOPE_LABEL.to_owned(), probe.scope.clone())].into(),
        ..BaseImageSpec::default()
    };
    let started = Instant::now();
    let image = build_base_image(&probe.docker, &spec).await.unwrap();
    eprintln!(
        "host-programs base image {} built in {:?}",
        image.reference,
        started.elapsed()
    );
    image
}

/// Gives `dir` and everything under it to `uid:gid` (as the host's root may).
fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).unwrap();
    if std::fs::symlink_metadata(dir).unwrap().is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// In a fresh sandbox of `f` (host networking): a checkout made on the host from a
/// loopback smart-HTTP server, then `git status`, `git log`, `git fetch` of a new
/// upstream commit and `git commit` inside the container; the commit lands in the
/// host workspace, owned by `uid:gid`.
async fn git_round_trip(f: &Fixture, stem: &str, uid: u32, gid: u32) {
    let up = Upstream::new("main", 5).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let (sandbox, _) = f
        .provider
        .connect_sandbox(&ConnectOptions::new().name(f.name(stem)))
        .await
        .unwrap();
    let ws = sandbox.workspace().to_path_buf();
    // the provider gave the workspace to the container user; the host (root here)
    // clones into it as itself, then hands the checkout over
    let me = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    chown_tree(&ws, me.0, me.1);
    let checkout = git::clone(&Source::parse(&url).unwrap(), &ws, &GitOptions::default()).unwrap();
    let first = up.tip("main").unwrap();
    assert_eq!(checkout.head.commit, first);
    chown_tree(&ws, uid, gid);

    // who am I, and where is home
    assert_eq!(
        stdout(&sandbox, &["id", "-u"]).await.trim(),
        uid.to_string()
    );
    let me = stdout(&sandbox, &["whoami"]).await;
    let home = stdout(&sandbox, &["sh", "-c", "echo $HOME"]).await;
    if uid == 0 {
        assert_eq!((me.trim(), home.trim()), ("root", "/root"));
    } else {
        assert!(me.trim().starts_with(SANDBOX_USER), "{me}");
        assert!(home.trim().starts_with("/home/"), "{home}");
        let made = stdout(&sandbox, &["sh", "-c", "touch \"$HOME/.probe\" && echo ok"]).await;
        assert_eq!(made, "ok\n", "HOME is writable");
    }

    assert_eq!(
        stdout(&sandbox, &["git", "status", "--porcelain"]).await,
        ""
    );
    assert_eq!(
        stdout(&sandbox, &["git", "log", "-1", "--format=%H"])
            .await
            .trim(),
        first
    );
    let branch = stdout(&sandbox, &["git", "rev-parse", "--abbrev-ref", "HEAD"]).await;
    assert_eq!(branch.trim(), "main");

    // a new upstream commit, fetched over smart HTTP from inside the container
    let second = up
        .commit("main", &[Change::write("NEWS.md", "fetched inside\n")])
        .unwrap();
    let fetched = run(&sandbox, &["git", "fetch", "origin", "main"]).await;
    assert!(
        fetched.success(),
        "git fetch: {}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert_eq!(
        stdout(&sandbox, &["git", "rev-parse", "origin/main"])
            .await
            .trim(),
        second
    );
    assert!(
        server.upload_pack_posts().len() >= 2,
        "the container's fetch reached the loopback server"
    );

    // a commit made inside lands on the host, owned by the container user
    std::fs::write(ws.join("agent.txt"), "written by the agent\n").unwrap();
    chown_tree(&ws.join("agent.txt"), uid, gid);
    assert_eq!(stdout(&sandbox, &["git", "add", "agent.txt"]).await, "");
    let mut commit =
        ExecRequest::new(["git", "commit", "-q", "-m", "agent: add agent.txt"]).unwrap();
    commit.env.insert("GIT_AUTHOR_NAME".into(), "Agent".into());
    commit
        .env
        .insert("GIT_AUTHOR_EMAIL".into(), "agent@example.invalid".into());
    commit
        .env
        .insert("GIT_COMMITTER_NAME".into(), "Agent".into());
    commit
        .env
        .insert("GIT_COMMITTER_EMAIL".into(), "agent@example.invalid".into());
    let out = sandbox.exec(&commit).await.unwrap();
    assert!(
        out.success(),
        "git commit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inside = stdout(&sandbox, &["git", "rev-parse", "HEAD"]).await;
    // read on the host with the git CLI (the checkout is the container user's now)
    let on_host = |args: &[&str]| {
        let mut all = vec!["-c", "safe.directory=*"];
        all.extend_from_slice(args);
        git_in(&ws, &all).unwrap()
    };
    assert_eq!(
        on_host(&["rev-parse", "HEAD"]),
        inside.trim(),
        "the host sees the container's commit"
    );
    assert_eq!(on_host(&["rev-parse", "HEAD^"]), first);
    assert_eq!(
        on_host(&["log", "-1", "--format=%s"]),
        "agent: add agent.txt"
    );
    assert_eq!(on_host(&["symbolic-ref", "--short", "HEAD"]), "main");
    let object = ws
        .join(".git/objects")
        .join(&inside.trim()[..2])
        .join(&inside.trim()[2..]);
    assert_eq!(owner(&object), (uid, gid), "{}", object.display());
    assert_eq!(owner(&ws.join(".git/index")), (uid, gid));
}

#[tokio::test]
async fn default_image_lets_an_agent_use_git() {
    let Some(f) = Fixture::with("default_image_lets_an_agent_use_git", |c| {
        c.network_mode("host")
    })
    .await
    else {
        return;
    };
    let started = Instant::now();
    let image = build_base_image(&f.docker, &BaseImageSpec::default())
        .await
        .unwrap();
    eprintln!(
        "default base image {} ready in {:?}",
        image.reference,
        started.elapsed()
    );
    let recipe = recipe_of(&f, &image).await;
    if mmdebstrap_installed() {
        assert_eq!(
            recipe, "debian",
            "mmdebstrap is installed: the Debian recipe"
        );
    } else {
        assert_eq!(
            recipe, "host-programs",
            "no mmdebstrap: this machine's programs"
        );
    }
    let (uid, gid) = host_user()
        .split_once(':')
        .map(|(u, g)| (u.parse().unwrap(), g.parse().unwrap()))
        .unwrap();
    git_round_trip(&f, "git", uid, gid).await;
}

#[tokio::test]
async fn default_image_serves_a_non_root_user() {
    let Some(f) = Fixture::with("default_image_serves_a_non_root_user", |c| {
        c.network_mode("host").user("1000:1000")
    })
    .await
    else {
        return;
    };
    git_round_trip(&f, "uid1000", 1000, 1000).await;
}

#[tokio::test]
async fn host_programs_image_has_git_stty_and_certificates() {
    let Some(probe) = Fixture::new("host_programs_image_has_git_stty_and_certificates").await
    else {
        return;
    };
    let image = host_programs_image(&probe).await;
    assert_eq!(recipe_of(&probe, &image).await, "host-programs");
    let again = build_base_image(
        &probe.docker,
        &BaseImageSpec {
            recipe: BaseRecipe::HostPrograms,
            labels: [(TEST_SCOPE_LABEL.to_owned(), probe.scope.clone())].into(),
            ..BaseImageSpec::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(image.id, again.id, "built once, then reused");
    let size = probe
        .docker
        .inspect_image(&image.reference)
        .await
        .unwrap()
        .size
        .unwrap_or_default();
    eprintln!("host-programs base image size: {} MB", size / 1_000_000);

    let reference = image.reference.clone();
    let Some(f) = Fixture::with("host_programs_image_has_git_stty_and_certificates", |c| {
        c.default_image(reference)
            .network_mode("host")
            .user("1000:1000")
    })
    .await
    else {
        return;
    };
    // the whole agent round trip, as a non-root user
    git_round_trip(&f, "hostgit", 1000, 1000).await;

    let (sandbox, _) = f
        .provider
        .connect_sandbox(&ConnectOptions::new().name(f.name("tty")))
        .await
        .unwrap();
    let certs = stdout(
        &sandbox,
        &[
            "sh",
            "-c",
            "test -s /etc/ssl/certs/ca-certificates.crt && echo present",
        ],
    )
    .await;
    assert_eq!(certs, "present\n");
    assert!(
        stdout(&sandbox, &["git", "--version"])
            .await
            .starts_with("git version ")
    );
    // https is a remote helper git finds under its exec path
    let helpers = stdout(&sandbox, &["sh", "-c", "ls \"$(git --exec-path)\""]).await;
    assert!(
        helpers.lines().any(|l| l == "git-remote-https"),
        "{helpers}"
    );
    assert_stty_in_a_terminal(&sandbox).await;
}

/// `stty` answers in a terminal of the size asked for.
async fn assert_stty_in_a_terminal(sandbox: &DockerSandbox) {
    // the terminal gets its size once the exec runs: ask after the first line typed
    let mut req = ExecRequest::new(["sh", "-c", "read line && stty size && stty -a | head -1"])
        .unwrap()
        .timeout(Duration::from_secs(60));
    req.tty = true;
    let mut out = Vec::new();
    let code = sandbox
        .exec_interactive(&req, Some((100, 30)), &b"go\n"[..], &mut out)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("30 100"), "{text}");
}

#[tokio::test]
async fn default_image_has_stty_in_a_terminal() {
    let Some(f) = Fixture::new("default_image_has_stty_in_a_terminal").await else {
        return;
    };
    let (sandbox, _) = f
        .provider
        .connect_sandbox(&ConnectOptions::new().name(f.name("stty")))
        .await
        .unwrap();
    assert_stty_in_a_terminal(&sandbox).await;
    // the CA bundle every recipe puts in
    assert_eq!(
        run(
            &sandbox,
            &["test", "-s", "/etc/ssl/certs/ca-certificates.crt"]
        )
        .await
        .exit_code,
        Some(0)
    );
}

#[tokio::test]
async fn concurrent_builds_make_one_image() {
    let Some(f) = Fixture::new("concurrent_builds_make_one_image").await else {
        return;
    };
    let spec = BaseImageSpec {
        recipe: BaseRecipe::HostPrograms,
        host_tools: vec!["sh".into(), "sleep".into(), "stty".into()],
        labels: [(TEST_SCOPE_LABEL.to_owned(), f.scope.clone())].into(),
        ..BaseImageSpec::default()
    };
    let builds: Vec<_> = (0..3)
        .map(|_| {
            let (docker, spec) = (f.docker.clone(), spec.clone());
            tokio::spawn(async move { build_base_image(&docker, &spec).await })
        })
        .collect();
    let mut ids = Vec::new();
    for b in builds {
        ids.push(b.await.unwrap().unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // the lock file that keeps other processes out
    let tag = spec_tag(&f, &ids[0]).await;
    assert!(
        std::env::temp_dir()
            .join(format!("headstart-base-{tag}.lock"))
            .exists()
    );
}

/// The tag of the image with `id` in the base repository.
async fn spec_tag(f: &Fixture, id: &str) -> String {
    let img = f.docker.inspect_image(id).await.unwrap();
    img.repo_tags
        .unwrap_or_default()
        .into_iter()
        .find_map(|t| t.strip_prefix("headstart/base:").map(str::to_owned))
        .unwrap()
}

#[tokio::test]
async fn the_debian_recipe_reports_a_failing_mirror() {
    let Some(f) = Fixture::new("the_debian_recipe_reports_a_failing_mirror").await else {
        return;
    };
    // A mirror where nothing listens: mmdebstrap fails and says so; where it is not
    // installed, the error says how to install it. Never a hang, never a silent image.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let spec = BaseImageSpec {
        recipe: BaseRecipe::Debian,
        debian: DebianSpec {
            sources: Some(vec![format!("http://127.0.0.1:{port}/debian")]),
            ..DebianSpec::default()
        },
        labels: [(TEST_SCOPE_LABEL.to_owned(), f.scope.clone())].into(),
        ..BaseImageSpec::default()
    };
    let err = tokio::time::timeout(Duration::from_secs(600), build_base_image(&f.docker, &spec))
        .await
        .expect("a failing build returns")
        .unwrap_err()
        .to_string();
    if mmdebstrap_installed() {
        assert!(
            err.contains("mmdebstrap") && err.contains("failed"),
            "{err}"
        );
    } else {
        assert!(err.contains("apt-get install mmdebstrap"), "{err}");
    }
}

#[tokio::test]
async fn without_a_working_mmdebstrap_the_default_uses_host_programs() {
    let Some(f) = Fixture::new("without_a_working_mmdebstrap_the_default_uses_host_programs").await
    else {
        return;
    };
    // As on a machine without mmdebstrap (or where it fails): the default recipe still
    // gives an image with git, made from this machine's programs.
    let spec = BaseImageSpec {
        debian: DebianSpec {
            mmdebstrap: Some("/nonexistent/headstart-test/mmdebstrap".into()),
            ..DebianSpec::default()
        },
        labels: [(TEST_SCOPE_LABEL.to_owned(), f.scope.clone())].into(),
        ..BaseImageSpec::default()
    };
    let image = build_base_image(&f.docker, &spec).await.unwrap();
    assert_eq!(recipe_of(&f, &image).await, "host-programs");
    let reference = image.reference.clone();
    let Some(g) = Fixture::with(
        "without_a_working_mmdebstrap_the_default_uses_host_programs",
        |c| c.default_image(reference),
    )
    .await
    else {
        return;
    };
    let (sandbox, _) = g
        .provider
        .connect_sandbox(&ConnectOptions::new().name(g.name("fallback")))
        .await
        .unwrap();
    assert!(
        stdout(&sandbox, &["git", "--version"])
            .await
            .starts_with("git version ")
    );
    assert_eq!(
        stdout(&sandbox, &["whoami"]).await.trim(),
        whoami_expected()
    );
}

/// `whoami` for the host user inside a sandbox: `root` for uid 0, else the name the
/// provider gives an unknown uid.
fn whoami_expected() -> &'static str {
    if host_user().starts_with("0:") {
        "root"
    } else {
        SANDBOX_USER
    }
}

#[tokio::test]
async fn with_pulls_allowed_the_pinned_public_image_or_else_the_offline_one() {
    let Some(f) =
        Fixture::new("with_pulls_allowed_the_pinned_public_image_or_else_the_offline_one").await
    else {
        return;
    };
    assert!(
        PUBLIC_BASE_IMAGE.contains("@sha256:") && PUBLIC_BASE_IMAGE.len() > 64,
        "pinned by digest: {PUBLIC_BASE_IMAGE}"
    );
    let started = Instant::now();
    let image = tokio::time::timeout(
        Duration::from_secs(900),
        default_image(&f.docker, &BaseImageSpec::default(), true),
    )
    .await
    .expect("resolving the default image returns")
    .unwrap();
    eprintln!(
        "default image with pulls allowed: {} in {:?}",
        image.reference,
        started.elapsed()
    );
    if image.reference == PUBLIC_BASE_IMAGE {
        // a registry answered: the pinned image itself
        assert!(image.repo_digest.is_some());
    } else {
        // no registry here: the offline base image, not an error
        assert!(
            image.reference.starts_with("headstart/base:"),
            "{}",
            image.reference
        );
        let recipe = recipe_of(&f, &image).await;
        assert!(recipe == "debian" || recipe == "host-programs", "{recipe}");
    }
}
