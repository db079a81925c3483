//! What an agent does in a fresh Docker sandbox, through the binary as users do:
//! `exec NAME git ...` without `--` (status, log, a fetch from a loopback smart-HTTP
//! server, a commit), the commit landing in the workspace on the host owned by the
//! user who ran headstart, and a Docker snapshot listed by `snapshot ls` beside local
//! ones and removed by `snapshot rm ID` as listed. The sandbox is on the host network (`HEADSTART_DOCKER_NETWORK=host`)
//! so the container reaches the loopback server directly. Skipped with a printed
//! reason when no Docker engine answers (a failure under `HEADSTART_REQUIRE_DOCKER=1`).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::{Change, GitHttpServer, Upstream, git_in};

use crate::{json, stderr, stdout};

fn headstart_host_net(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .env("HEADSTART_HOME", home)
        .env("HEADSTART_DOCKER_NETWORK", "host")
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
        .env_remove("HEADSTART_GIT_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env_remove("HEADSTART_IMAGE")
        .output()
        .expect("run headstart")
}

#[test]
fn git_works_in_a_fresh_docker_sandbox_and_its_commits_land_on_the_host() {
    if !crate::docker_lifecycle::docker_or_skip(
        "git_works_in_a_fresh_docker_sandbox_and_its_commits_land_on_the_host",
    ) {
        return;
    }
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let h = home.path();
    let _down = crate::docker_lifecycle::DownAll(h);
    let v = json(&headstart_host_net(
        h,
        &[
            "up",
            &url,
            "--name",
            "agent",
            "--provider",
            "docker",
            "--no-snapshot",
            "--json",
        ],
    ));
    let ws = PathBuf::from(v["sandbox"]["workspace"].as_str().unwrap());
    let first = up.tip("main").unwrap();
    let ok = |argv: &[&str]| {
        let mut args = vec!["exec", "agent"];
        args.extend_from_slice(argv);
        let o = headstart_host_net(h, &args);
        assert!(o.status.success(), "{argv:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };

    // no `--`: the command's own options are its own
    let status = ok(&["git", "status", "--short", "--branch"]);
    assert!(status.starts_with("## main"), "{status}");
    assert_eq!(ok(&["git", "log", "-1", "--format=%H"]).trim(), first);

    let second = up
        .commit("main", &[Change::write("NEWS.md", "fetched inside\n")])
        .unwrap();
    ok(&["git", "fetch", "origin", "main"]);
    assert_eq!(ok(&["git", "rev-parse", "FETCH_HEAD"]).trim(), second);

    ok(&["sh", "-c", "echo agent > agent.txt && git add agent.txt"]);
    ok(&[
        "git",
        "-c",
        "user.name=Agent",
        "-c",
        "user.email=agent@example.invalid",
        "commit",
        "-q",
        "-m",
        "agent work",
    ]);
    let inside = ok(&["git", "rev-parse", "HEAD"]).trim().to_owned();
    let on_host = git_in(&ws, &["-c", "safe.directory=*", "rev-parse", "HEAD"]).unwrap();
    assert_eq!(on_host, inside, "the host sees the container's commit");
    let me = std::fs::metadata(h).unwrap();
    let object = ws
        .join(".git/objects")
        .join(&inside[..2])
        .join(&inside[2..]);
    for made in [ws.join("agent.txt"), object, ws.join(".git/index")] {
        let m = std::fs::metadata(&made).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (me.uid(), me.gid()),
            "{} belongs to the user who ran headstart",
            made.display()
        );
    }

    // a Docker snapshot is listed with the local ones, readable
    let v = json(&headstart_host_net(
        h,
        &["snapshot", "build", &url, "--provider", "docker", "--json"],
    ));
    crate::schema::check("snapshot-build", &v);
    let id = v["snapshot"]["id"].as_str().unwrap().to_owned();
    let table = stdout(&headstart_host_net(h, &["snapshot", "ls"]));
    let row = table
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .unwrap_or_else(|| panic!("{table}"));
    for expected in ["docker", "ready", "main", "iB"] {
        assert!(row.contains(expected), "`{expected}` in {row}");
    }
    // and removed by the id it is listed under, without naming its provider
    let v = json(&headstart_host_net(h, &["snapshot", "rm", &id, "--json"]));
    crate::schema::check("snapshot-rm", &v);
    assert_eq!(v["removed"][0], id.as_str());
    let table = stdout(&headstart_host_net(h, &["snapshot", "ls"]));
    assert!(!table.contains(id.as_str()), "{table}");
}
