//! What an unlucky user or an attacker tried, and what broke before it was fixed.

use crate::{headstart, stdout};

#[test]
fn a_json_usage_error_names_the_missing_argument() {
    let home = crate::TestHome::new();
    for (args, missing) in [
        (&["down", "--json"][..], "<NAME>"),
        (&["exec", "--json"][..], "<NAME>"),
    ] {
        let o = headstart(home.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON object ({e}): {}", stdout(&o)));
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("were not provided") && message.contains(missing),
            "{args:?}: {message}"
        );
    }
}

#[test]
fn wait_snapshot_says_how_the_build_ended_not_that_it_runs_in_the_background() {
    let up = test_support::Upstream::new("main", 3).unwrap();
    let url = up.file_url();
    let home = crate::TestHome::new();
    let recipe = |name: &str, argv: &str| {
        let file = home.path().join(name);
        std::fs::write(&file, format!(r#"{{"commands":[{{"argv":{argv}}}]}}"#)).unwrap();
        file.to_str().unwrap().to_owned()
    };
    let failing = recipe("fail.json", r#"["sh","-c","exit 3"]"#);
    let v = crate::json(&headstart(
        home.path(),
        &[
            "up",
            &url,
            "--name",
            "a",
            "--recipe",
            &failing,
            "--wait-snapshot",
            "--json",
        ],
    ));
    assert_eq!(v["waited"]["status"], "failed", "{v}");
    let error = v["waited"]["error"].as_str().unwrap();
    assert!(
        error.contains("exit status 3") && !error.contains("Some("),
        "{error}"
    );
    let o = headstart(
        home.path(),
        &[
            "up",
            &url,
            "--name",
            "b",
            "--recipe",
            &failing,
            "--wait-snapshot",
            "--force-create",
        ],
    );
    assert!(!stdout(&o).contains("in the background"), "{}", stdout(&o));

    let fine = recipe("ok.json", r#"["true"]"#);
    let o = headstart(
        home.path(),
        &[
            "up",
            &url,
            "--name",
            "c",
            "--recipe",
            &fine,
            "--wait-snapshot",
        ],
    );
    let text = stdout(&o);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert!(
        text.contains("built and ready") && !text.contains("in the background"),
        "{text}"
    );
}

#[test]
fn down_removes_what_a_killed_start_left_instead_of_saying_it_does_not_exist() {
    use crate::lifecycle::{BUDGET, STALL, big_upstream, up_until_stalled};
    let up = big_upstream();
    let server = test_support::GitHttpServer::start(up.root()).unwrap();
    let proxy = test_support::StallProxy::start(server.addr(), Some(BUDGET), STALL).unwrap();
    let url = proxy.url(up.name());
    let home = crate::TestHome::new();
    let running = up_until_stalled(home.path(), &proxy, &["up", &url, "--name", "dead"]);
    running.signal(rustix::process::Signal::KILL);
    let _ = running.finish(std::time::Duration::from_secs(10));
    let dir = home.path().join("sandboxes").join("dead");
    assert!(dir.exists(), "the killed start left its directory");

    let o = headstart(home.path(), &["down", "dead", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        stdout(&o),
        crate::stderr(&o)
    );
    assert_eq!(crate::json(&o)["removed"][0]["name"], "dead");
    assert!(!dir.exists(), "down removed it");
    let o = headstart(home.path(), &["down", "dead"]);
    assert_eq!(o.status.code(), Some(2), "now it is gone");
}

#[test]
fn exec_of_a_command_killed_by_a_signal_exits_128_plus_n_like_a_shell_and_docker() {
    let up = test_support::Upstream::new("main", 1).unwrap();
    let home = crate::TestHome::new();
    let o = headstart(
        home.path(),
        &["up", &up.file_url(), "--name", "k", "--no-snapshot", "-q"],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let o = headstart(home.path(), &["exec", "k", "sh", "-c", "kill -9 $$"]);
    assert_eq!(o.status.code(), Some(137), "{}", crate::stderr(&o));
    let o = headstart(
        home.path(),
        &["exec", "--json", "k", "sh", "-c", "kill -TERM $$"],
    );
    assert_eq!(o.status.code(), Some(143));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], 143, "{v}");
    assert_eq!(v["exit_code"], 143, "{v}");
}

#[test]
fn a_recipe_file_that_cannot_be_read_is_bad_input_and_starts_nothing() {
    let up = test_support::Upstream::new("main", 1).unwrap();
    let url = up.file_url();
    let home = crate::TestHome::new();
    let missing = home.path().join("no-such-recipe.json");
    let o = headstart(
        home.path(),
        &[
            "up",
            &url,
            "--name",
            "r",
            "--recipe",
            missing.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "invalid_input", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-recipe.json"),
        "{v}"
    );
    let ls = crate::json(&headstart(home.path(), &["ls", "--json"]));
    assert_eq!(ls, serde_json::json!([]), "nothing was started");
}
