//! Agent-session settings of `up`, driving the binary: a git identity in the sandbox's
//! own `.git/config` (local and Docker), after-start hooks on every start (cold, warm,
//! reconnected) and a failing hook leaving no ready sandbox, and `--image`.

use std::path::Path;
use std::process::Output;

use test_support::{GitHttpServer, Upstream};

use crate::lifecycle::ls_names;
use crate::{headstart, json, stderr, stdout};

const ADA: &str = "Ada Lovelace <ada@example.com>";

/// `git log -1 --format=%an <%ae>` after an empty commit made inside sandbox `name`.
fn commit_author(home: &Path, name: &str) -> String {
    let o = headstart(
        home,
        &[
            "exec",
            name,
            "--",
            "git",
            "commit",
            "--allow-empty",
            "-q",
            "-m",
            "x",
        ],
    );
    assert!(o.status.success(), "commit: {}{}", stdout(&o), stderr(&o));
    let o = headstart(
        home,
        &["exec", name, "--", "git", "log", "-1", "--format=%an <%ae>"],
    );
    assert!(o.status.success(), "log: {}{}", stdout(&o), stderr(&o));
    stdout(&o).trim().to_owned()
}

fn write_recipe(dir: &Path, after_start: &serde_json::Value) -> String {
    let p = dir.join("recipe.json");
    std::fs::write(
        &p,
        serde_json::json!({ "after_start": after_start }).to_string(),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn git_user_is_written_into_the_sandbox_repository_and_kept_on_reconnect() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let h = home.path();

    let bad = headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "local",
            "--git-user",
            "Ada",
            "--name",
            "id",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("Name <email>"), "{}", stderr(&bad));

    let base = [
        "up",
        url.as_str(),
        "--provider",
        "local",
        "--no-snapshot",
        "--name",
        "id",
        "--json",
    ];
    let v = json(&headstart(h, &[&base[..], &["--git-user", ADA]].concat()));
    assert_eq!(v["git_identity"]["email"], "ada@example.com", "{v}");
    assert_eq!(commit_author(h, "id"), ADA);
    let ws = v["sandbox"]["workspace"].as_str().unwrap();
    let config = std::fs::read_to_string(Path::new(ws).join(".git/config")).unwrap();
    assert!(config.contains("ada@example.com"), "{config}");

    // a reconnect keeps it, and applies a newly given one
    let v = json(&headstart(h, &base));
    assert_eq!(v["path"], "reconnected", "{v}");
    assert_eq!(v["git_identity"]["name"], "Ada Lovelace", "{v}");
    let v = json(&headstart(
        h,
        &[&base[..], &["--git-user", "Bo <bo@example.com>"]].concat(),
    ));
    assert_eq!(v["git_identity"]["email"], "bo@example.com", "{v}");
    assert_eq!(commit_author(h, "id"), "Bo <bo@example.com>");
}

#[test]
fn after_start_hooks_run_on_cold_warm_and_reconnected_starts() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let h = home.path();
    let recipe = write_recipe(
        h,
        &serde_json::json!([{"argv": ["sh", "-c", "echo ran >> .hook-runs"], "timeout": 30}]),
    );
    let start = |name: &str, extra: &[&str]| {
        let args = [
            &[
                "up",
                url.as_str(),
                "--provider",
                "local",
                "--recipe",
                recipe.as_str(),
                "--name",
                name,
                "--json",
            ][..],
            extra,
        ]
        .concat();
        json(&headstart(h, &args))
    };
    let runs = |v: &serde_json::Value| {
        let ws = v["sandbox"]["workspace"].as_str().unwrap();
        std::fs::read_to_string(Path::new(ws).join(".hook-runs"))
            .unwrap()
            .lines()
            .count()
    };
    let has_phase = |v: &serde_json::Value| {
        v["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "after_start")
    };

    let cold = start("a", &["--wait-snapshot"]);
    assert_eq!(cold["path"], "cold", "{cold}");
    assert!(has_phase(&cold), "{cold}");
    assert_eq!(runs(&cold), 1);

    let warm = start("b", &[]);
    assert_eq!(warm["path"], "warm", "{warm}");
    assert!(has_phase(&warm), "{warm}");
    assert_eq!(
        runs(&warm),
        1,
        "the snapshot holds no hook output of the build"
    );

    let again = start("a", &[]);
    assert_eq!(again["path"], "reconnected", "{again}");
    assert!(has_phase(&again), "{again}");
    assert_eq!(runs(&again), 2);
}

#[test]
fn a_failing_hook_fails_the_start_with_its_output_and_leaves_nothing_ready() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let h = home.path();
    let recipe = write_recipe(
        h,
        &serde_json::json!([{"argv": ["sh", "-c", "echo hook-said-no >&2; exit 3"]}]),
    );
    let o: Output = headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "local",
            "--no-snapshot",
            "--recipe",
            &recipe,
            "--name",
            "f",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("hook-said-no") && err.contains("exit status 3"),
        "{err}"
    );
    assert!(ls_names(h).is_empty(), "no sandbox left ready");

    // a kept sandbox: the error says so and it stays
    json(&headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "local",
            "--no-snapshot",
            "--name",
            "k",
            "--json",
        ],
    ));
    let o = headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "local",
            "--recipe",
            &recipe,
            "--name",
            "k",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "hook_failed", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("is kept"),
        "{v}"
    );
    assert_eq!(ls_names(h), ["k"]);
}

#[test]
fn docker_sessions_get_identity_hooks_loopback_ports_and_the_image_asked_for() {
    use crate::docker_lifecycle::{DownAll, docker_or_skip};
    if !docker_or_skip("docker_sessions_get_identity_hooks_loopback_ports_and_the_image_asked_for")
    {
        return;
    }
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let h = home.path();
    let _down = DownAll(h);

    // --image reaches the provider: an image that is not there fails the start
    let o = headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--no-snapshot",
            "--name",
            "img",
            "--image",
            "headstart-h14-missing:none",
        ],
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("headstart-h14-missing:none"),
        "{}",
        stderr(&o)
    );

    let recipe = write_recipe(
        h,
        &serde_json::json!([{"argv": ["sh", "-c", "id -u > .hook-ran"]}]),
    );
    let v = json(&headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--no-snapshot",
            "--name",
            "web",
            "--recipe",
            &recipe,
            "--git-user",
            ADA,
            "--port",
            "3000",
            "--json",
        ],
    ));
    crate::schema::check("up", &v);
    let ws = Path::new(v["sandbox"]["workspace"].as_str().unwrap());
    assert!(
        ws.join(".hook-ran").exists(),
        "the hook ran in the container"
    );
    assert_eq!(v["git_identity"]["email"], "ada@example.com", "{v}");
    let addr = v["ports"][0]["host_address"].as_str().unwrap().to_owned();
    assert_eq!(v["ports"][0]["container"], 3000, "{v}");
    assert!(addr.starts_with("127.0.0.1:"), "loopback only: {addr}");
    assert_eq!(commit_author(h, "web"), ADA);

    // a host port another sandbox publishes: bad input, said as such, nothing left
    let taken = addr.rsplit_once(':').unwrap().1;
    let o = headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--no-snapshot",
            "--name",
            "clash",
            "--port",
            &format!("{taken}:3001"),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a host port it publishes is already in use")
            && !stderr(&o).contains("keep-alive"),
        "{}",
        stderr(&o)
    );
    assert!(!ls_names(h).contains(&"clash".to_owned()));

    // without an identity, a container's commits would be refused: the start says how
    let o = headstart(
        h,
        &[
            "up",
            &url,
            "--provider",
            "docker",
            "--no-snapshot",
            "--name",
            "anon",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("hint: commits in this sandbox need an identity"),
        "{}",
        stderr(&o)
    );
    assert!(headstart(h, &["down", "anon"]).status.success());

    // `ports` and `ls` read them back from the container
    let p = json(&headstart(h, &["ports", "web", "--json"]));
    crate::schema::check("ports", &p);
    assert_eq!(p["ports"][0]["host_address"], addr.as_str(), "{p}");
    let ls = json(&headstart(h, &["ls", "--json"]));
    crate::schema::check("ls", &ls);
    assert_eq!(ls[0]["ports"][0]["host_address"], addr.as_str(), "{ls}");

    // something listening on 3000 inside answers on the published loopback address
    let _daemon = crate::lifecycle::Running::spawn(
        h,
        &[
            "exec",
            "web",
            "--",
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--port=3000",
            "--listen=0.0.0.0",
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let listed = loop {
        let o = std::process::Command::new("git")
            .args(["ls-remote", &format!("git://{addr}/workspace"), "HEAD"])
            .output()
            .unwrap();
        if o.status.success() || std::time::Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("HEAD"), "{}", stdout(&listed));
}

#[test]
fn local_sandboxes_report_ports_as_direct() {
    let up = Upstream::new("main", 2).unwrap();
    let home = crate::TestHome::new();
    let h = home.path();
    let repo = up.path();
    let v = json(&headstart(
        h,
        &[
            "up",
            repo.to_str().unwrap(),
            "--provider",
            "local",
            "--no-snapshot",
            "--name",
            "l",
            "--port",
            "5173",
            "--json",
        ],
    ));
    crate::schema::check("up", &v);
    assert_eq!(
        v["ports"],
        serde_json::json!([{"container": 5173, "host_address": "direct"}])
    );
    let p = json(&headstart(h, &["ports", "l", "--json"]));
    crate::schema::check("ports", &p);
    assert_eq!(p["direct"], true, "{p}");
    let o = headstart(h, &["ports", "l"]);
    assert!(stdout(&o).contains("directly"), "{}", stdout(&o));
    let bad = headstart(h, &["up", repo.to_str().unwrap(), "--port", "70000"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
