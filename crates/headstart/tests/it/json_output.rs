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

/// A loopback HTTP server answering every request with `body` (200, JSON), the way
/// Hetzner Cloud's API answers `GET /servers`; it records each request line.
fn answering(body: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let mut first = None;
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                first.get_or_insert_with(|| line.trim().to_owned());
                line.clear();
            }
            log.lock().unwrap().extend(first);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn vm_and_daemon_commands_speak_json_too() {
    let home = crate::TestHome::new();
    let h = home.path();

    // daemon start|stop --json (status is in the broker tests)
    let _daemon = crate::broker::DaemonGuard(h.to_path_buf());
    let v = json(&headstart(h, &["daemon", "stop", "--json"]));
    check("daemon-stop", &v);
    assert_eq!(v["stopped"], false, "none was running");
    let v = json(&headstart(h, &["daemon", "start", "--json"]));
    check("daemon-status", &v);
    assert_eq!(v["running"], true, "{v}");
    let v = json(&headstart(h, &["daemon", "stop", "--json"]));
    check("daemon-stop", &v);
    assert_eq!(v["stopped"], true);

    // vm: a failure is one error object, with or without --json the same status
    let vm = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_headstart"));
        c.args(args)
            .env("HEADSTART_HOME", h)
            .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
            .env_remove("HCLOUD_TOKEN")
            .env_remove("HEADSTART_CLOUD");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    for args in [
        vec!["vm", "ls", "--cloud", "hetzner"],
        vec!["vm", "down", "--cloud", "hetzner", "some-vm"],
    ] {
        let plain = vm(&args, &[]);
        assert_eq!(plain.status.code(), Some(2), "{args:?}: {}", stderr(&plain));
        assert!(plain.stdout.is_empty());
        let mut with_json = args.clone();
        with_json.push("--json");
        let o = vm(&with_json, &[]);
        assert_eq!(o.status.code(), Some(2), "{with_json:?}");
        let v = error_object(&o);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("HCLOUD_TOKEN"),
            "{v}"
        );
    }

    // vm ls --json against a loopback server speaking the Hetzner API
    let server = serde_json::json!({
        "id": 42,
        "name": "hs-one",
        "status": "running",
        "labels": {"headstart-owner": "tester"},
        "public_net": {"ipv4": {"ip": "203.0.113.7"}},
        "datacenter": {"location": {"name": "nbg1"}},
        "image": {"name": "ubuntu-24.04"}
    });
    let body = serde_json::json!({
        "servers": [server],
        "meta": {"pagination": {"page": 1, "next_page": null}}
    });
    let (url, seen) = answering(body.to_string());
    let env = [
        ("HCLOUD_TOKEN", "test-token-not-real"),
        ("HEADSTART_HCLOUD_API_URL", url.as_str()),
    ];
    let o = vm(
        &[
            "vm", "ls", "--cloud", "hetzner", "--owner", "tester", "--json",
        ],
        &env,
    );
    let v = json(&o);
    assert_eq!(stdout(&o).lines().count(), 1, "one line");
    check("vm-ls", &v);
    assert_eq!(v[0]["name"], "hs-one", "{v}");
    assert_eq!(v[0]["public_ipv4"], "203.0.113.7", "{v}");
    assert!(
        seen.lock().unwrap()[0].starts_with("GET /servers?"),
        "{:?}",
        seen.lock().unwrap()
    );
}
