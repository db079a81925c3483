//! `--json` on every command: real outputs validated against `docs/json/*.schema.json`,
//! and failures as exactly one `{"error": {...}}` object with the exit status the
//! same command has without `--json`.

use std::process::Output;

use test_support::{GitHttpServer, Upstream};

use crate::schema::check;
use crate::{headstart, json, stderr, stdout};

/// The one JSON value on stdout of a failed command, checked against the error schema.
fn error_object(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    assert_eq!(out.lines().count(), 1, "exactly one line: {out}");
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    check("error", &v);
    v
}

#[test]
fn every_command_prints_json_that_matches_its_schema() {
    let up = Upstream::new("trunk", 5).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let h = home.path();

    let v = json(&headstart(
        h,
        &["up", &url, "--name", "box", "--no-snapshot", "--json"],
    ));
    check("up", &v);
    assert_eq!(v["path"], "cold");

    let v = json(&headstart(h, &["ls", "--json"]));
    check("ls", &v);
    assert_eq!(v[0]["name"], "box");
    assert_eq!(v[0]["branch"], "trunk");
    assert!(v[0]["repo"].as_str().unwrap().ends_with(up.name()), "{v}");
    assert_eq!(v[0]["commit"], up.tip("trunk").unwrap());
    assert!(v[0]["created_at"].is_string());

    let o = headstart(h, &["exec", "--json", "box", "git", "rev-parse", "HEAD"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    check("exec", &v);
    assert_eq!(
        v["stdout"].as_str().unwrap().trim(),
        up.tip("trunk").unwrap()
    );
    assert_eq!(v["exit_code"], 0);
    let o = headstart(
        h,
        &["exec", "--json", "box", "sh", "-c", "echo oops >&2; exit 3"],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "the command's status, --json or not"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    check("exec", &v);
    assert_eq!(
        (v["exit_code"].as_i64(), v["stderr"].as_str()),
        (Some(3), Some("oops\n"))
    );

    let v = json(&headstart(h, &["snapshot", "build", &url, "--json"]));
    check("snapshot-build", &v);
    let id = v["snapshot"]["id"].as_str().unwrap().to_owned();
    let v = json(&headstart(h, &["snapshot", "ls", "--json"]));
    check("snapshot-ls", &v);
    let mine = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("the built snapshot is listed");
    assert_eq!(
        (mine["provider"].as_str(), mine["branch"].as_str()),
        (Some("local"), Some("trunk"))
    );

    // The same listing for people: sizes in binary units, ages, branch, provider.
    let table = stdout(&headstart(h, &["snapshot", "ls"]));
    let row = table
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(table.starts_with("ID "), "{table}");
    for expected in ["local", "ready", "trunk", "iB", "app"] {
        assert!(row.contains(expected), "`{expected}` in {row}");
    }
    assert!(row.contains("ago") || row.contains("just now"), "{row}");

    let v = json(&headstart(h, &["snapshot", "rm", &id, "--json"]));
    check("snapshot-rm", &v);
    assert_eq!(v["removed"][0], id.as_str());
    let v = json(&headstart(h, &["snapshot", "gc", "--json"]));
    check("snapshot-gc", &v);
    let v = json(&headstart(h, &["prune", "--json"]));
    check("prune", &v);
    let v = json(&headstart(h, &["flags", "status", "--json"]));
    check("flags-status", &v);

    let v = json(&headstart(h, &["down", "box", "--json"]));
    check("down", &v);
    assert_eq!(
        v["removed"],
        serde_json::json!([{"name": "box", "provider": "local"}])
    );
    let v = json(&headstart(h, &["ls", "--json"]));
    assert_eq!(v, serde_json::json!([]));
}

#[test]
fn a_failure_prints_one_error_object_with_the_exit_status_it_has_without_json() {
    let up = Upstream::new("main", 2).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    // A port nothing listens on: a network failure, not bad input.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}/o/r.git")
    };
    let home = crate::TestHome::new();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["up", "not a url"], 2, "invalid_url"),
        (
            vec!["up", &url, "--branch", "nope", "--name", "b"],
            2,
            "branch_not_found",
        ),
        (vec!["up", &closed, "--name", "c"], 1, "network"),
        (vec!["exec", "nosuch", "true"], 2, "sandbox_not_found"),
        (vec!["down", "nosuch"], 2, "sandbox_not_found"),
        (vec!["snapshot", "rm", "nosuch"], 2, ""),
        (vec!["up", &url, "--bogus-flag"], 2, "usage"),
    ];
    for (args, status, kind) in &cases {
        let plain = headstart(home.path(), args);
        assert_eq!(
            plain.status.code(),
            Some(*status),
            "{args:?}: {}",
            stderr(&plain)
        );
        assert!(
            plain.stdout.is_empty(),
            "{args:?}: nothing on stdout without --json"
        );
        // `exec` options come before the sandbox's command (everything after it is argv).
        let mut with_json = args.clone();
        let at = if args[0] == "exec" { 1 } else { args.len() };
        with_json.insert(at, "--json");
        let o = headstart(home.path(), &with_json);
        assert_eq!(
            o.status.code(),
            Some(*status),
            "{with_json:?}: {}",
            stderr(&o)
        );
        let v = error_object(&o);
        if !kind.is_empty() {
            assert_eq!(v["error"]["kind"], *kind, "{with_json:?}: {v}");
        }
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
}
