//! A broker sandbox started again: `up --name X` on a sandbox whose `origin` is its
//! own grant URL reconnects (it is the same repository), keeps that URL and renews
//! the grant; after a daemon restart the grant has no token, git in the sandbox is
//! told which `up` registers it again, and after that `up` fetch and push work.

use std::path::PathBuf;

use test_support::{GitHttpServer, Upstream, random_token};

use crate::broker::{DaemonGuard, git_in, headstart_with_token, ok};
use crate::{TestHome, headstart, json, stderr, stdout};

/// The one grant of `name` the daemon lists as live.
fn live_grants(home: &std::path::Path, name: &str) -> Vec<serde_json::Value> {
    let status = json(&headstart(home, &["daemon", "status", "--json"]));
    crate::schema::check("daemon-status", &status);
    status["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["sandbox"] == name && g["revoked"] == false)
        .cloned()
        .collect()
}

#[test]
fn a_broker_sandbox_reconnects_and_is_re_registered_after_a_daemon_restart() {
    let token = random_token();
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let url = server.url(up.name());
    let home = TestHome::new();
    let _daemon = DaemonGuard(home.path().to_path_buf());
    let start = |extra: &[&str]| {
        let mut args = vec![
            "up",
            url.as_str(),
            "--name",
            "rc",
            "--provider",
            "local",
            "--new-branch",
            "agent/r",
            "--no-snapshot",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = headstart_with_token(home.path(), &token, &args);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let v = json(&out);
        crate::schema::check("up", &v);
        (v, stdout(&out))
    };

    let (first, _) = start(&["--credentials", "broker"]);
    let ws = PathBuf::from(first["sandbox"]["workspace"].as_str().unwrap());
    let origin = ok(git_in(&ws, &["config", "remote.origin.url"]));
    assert!(origin.contains("/g/"), "{origin}");
    let cap = origin
        .split("/g/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    ok(git_in(&ws, &["fetch", "origin"]));

    // Again, by name: reconnected (not "another repository"), same URL, same grant,
    // and nothing printed holds the capability.
    let (again, printed) = start(&["--credentials", "broker"]);
    assert_eq!(again["path"], "reconnected", "{again}");
    assert!(
        !printed.contains(cap),
        "the capability is printed: {printed}"
    );
    assert_eq!(again["repo"].as_str(), Some(url.as_str()), "{again}");
    assert_eq!(again["grant"]["id"], first["grant"]["id"], "{again}");
    assert_eq!(ok(git_in(&ws, &["config", "remote.origin.url"])), origin);
    assert_eq!(live_grants(home.path(), "rc").len(), 1);
    // Without `--credentials`: a sandbox that has a grant keeps it.
    let (plain, _) = start(&[]);
    assert_eq!(plain["path"], "reconnected", "{plain}");
    assert_eq!(plain["grant"]["id"], first["grant"]["id"], "{plain}");
    ok(git_in(&ws, &["fetch", "origin"]));

    // A daemon restart: the grant comes back without its token.
    let stop = headstart(home.path(), &["daemon", "stop"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    let started = headstart(home.path(), &["daemon", "start"]);
    assert!(started.status.success(), "{}", stderr(&started));
    let grants = live_grants(home.path(), "rc");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["has_credentials"], false, "{grants:?}");
    let refused = git_in(&ws, &["fetch", "origin"]);
    assert!(!refused.status.success(), "a fetch without a token worked");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!(
            "run `headstart up {url} --name rc` to re-register credentials"
        )),
        "{err}"
    );

    // `up --name rc` registers the token again: fetch and push work, same URL.
    let (renewed, _) = start(&[]);
    assert_eq!(renewed["path"], "reconnected", "{renewed}");
    assert_eq!(renewed["grant"]["has_credentials"], true, "{renewed}");
    assert_eq!(ok(git_in(&ws, &["config", "remote.origin.url"])), origin);
    ok(git_in(&ws, &["fetch", "origin"]));
    std::fs::write(ws.join("after-restart.txt"), "still here\n").unwrap();
    ok(git_in(&ws, &["add", "after-restart.txt"]));
    ok(git_in(&ws, &["commit", "-m", "after the restart"]));
    let head = ok(git_in(&ws, &["rev-parse", "HEAD"]));
    ok(git_in(&ws, &["push", "origin", "HEAD:agent/r"]));
    assert_eq!(up.tip("agent/r").unwrap(), head);
    assert_eq!(
        test_support::files_containing(home.path(), &token),
        Vec::<PathBuf>::new()
    );

    // `--force-create` is a new sandbox (here without a grant): the old URL is revoked.
    // (agent/r exists upstream now: started as a branch, not a new one)
    let out = headstart_with_token(
        home.path(),
        &token,
        &[
            "up",
            &url,
            "--name",
            "rc",
            "--provider",
            "local",
            "--branch",
            "agent/r",
            "--force-create",
            "--no-snapshot",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let fresh = json(&out);
    assert!(
        fresh["grant"].is_null(),
        "a local sandbox's default: {fresh}"
    );
    assert!(live_grants(home.path(), "rc").is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let old = git_in(tmp.path(), &["ls-remote", &origin]);
    assert!(!old.status.success());
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&old.stderr)
    );
}

/// Another sandbox's grant URL is not "its own": a reconnect still refuses it as
/// another repository, without printing that capability.
#[test]
fn a_sandbox_holding_another_sandboxs_grant_url_is_refused() {
    let token = random_token();
    let up = Upstream::new("main", 1).unwrap();
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let url = server.url(up.name());
    let home = TestHome::new();
    let _daemon = DaemonGuard(home.path().to_path_buf());
    let mut workspaces = Vec::new();
    for name in ["one", "two"] {
        let out = headstart_with_token(
            home.path(),
            &token,
            &[
                "up",
                &url,
                "--name",
                name,
                "--provider",
                "local",
                "--credentials",
                "broker",
                "--no-snapshot",
                "--json",
            ],
        );
        let v = json(&out);
        workspaces.push(PathBuf::from(v["sandbox"]["workspace"].as_str().unwrap()));
    }
    let two = ok(git_in(&workspaces[1], &["config", "remote.origin.url"]));
    ok(git_in(
        &workspaces[0],
        &["remote", "set-url", "origin", &two],
    ));
    let out = headstart_with_token(
        home.path(),
        &token,
        &[
            "up",
            &url,
            "--name",
            "one",
            "--provider",
            "local",
            "--credentials",
            "broker",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let cap = two.split("/g/").nth(1).unwrap().split('/').next().unwrap();
    assert!(stderr(&out).contains("another name"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(cap), "{}", stderr(&out));
}

#[test]
fn credentials_none_on_a_broker_sandbox_revokes_its_grant_and_restores_the_upstream_origin() {
    let token = random_token();
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start_with_token(up.root(), &token).unwrap();
    let url = server.url(up.name());
    let home = TestHome::new();
    let _daemon = DaemonGuard(home.path().to_path_buf());
    let start = |mode: &str| {
        let out = headstart_with_token(
            home.path(),
            &token,
            &[
                "up",
                url.as_str(),
                "--name",
                "nb",
                "--provider",
                "local",
                "--no-snapshot",
                "--credentials",
                mode,
                "--json",
            ],
        );
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let v = json(&out);
        crate::schema::check("up", &v);
        v
    };
    let first = start("broker");
    let ws = PathBuf::from(first["sandbox"]["workspace"].as_str().unwrap());
    let grant_url = ok(git_in(&ws, &["config", "remote.origin.url"]));
    assert!(grant_url.contains("/g/"), "{grant_url}");
    assert_eq!(live_grants(home.path(), "nb").len(), 1);

    let none = start("none");
    assert_eq!(none["path"], "reconnected", "{none}");
    assert!(none["grant"].is_null(), "{none}");
    assert_eq!(ok(git_in(&ws, &["config", "remote.origin.url"])), url);
    assert!(live_grants(home.path(), "nb").is_empty());
    // the old grant URL no longer reads the repository
    let refused = git_in(&ws, &["ls-remote", &grant_url]);
    assert!(!refused.status.success(), "a revoked grant still reads");
    assert_eq!(
        test_support::files_containing(&ws, &token),
        Vec::<PathBuf>::new()
    );
}
