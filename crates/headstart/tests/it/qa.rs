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
