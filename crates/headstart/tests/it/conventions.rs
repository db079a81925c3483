//! What people expect of a command line: completion scripts a shell accepts, man
//! pages, `--quiet`, no escape codes in logs written to a file, `ls` with repository,
//! branch and age, `down` of several names or `--all`.

use std::process::Command;

use test_support::{GitHttpServer, Upstream};

use crate::{headstart, json, stderr, stdout};

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn completion_scripts_parse_in_their_shells() {
    let home = crate::TestHome::new();
    for (shell, check) in [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")] {
        let o = headstart(home.path(), &["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(
            script.contains("headstart") && script.contains("snapshot"),
            "{shell}"
        );
        if !have(shell) {
            eprintln!("skipping the {shell} syntax check: {shell} is not installed");
            assert_ne!(shell, "bash", "bash is required for this test");
            continue;
        }
        let file = home.path().join(format!("headstart.{shell}"));
        std::fs::write(&file, &script).unwrap();
        let o = Command::new(shell).arg(check).arg(&file).output().unwrap();
        assert!(o.status.success(), "{shell} {check}: {}", stderr(&o));
    }
    let o = headstart(home.path(), &["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "an unknown shell is bad input");
}

#[test]
fn generate_man_writes_one_page_per_command() {
    let home = crate::TestHome::new();
    let dir = home.path().join("man");
    let o = headstart(home.path(), &["generate-man", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for page in [
        "headstart.1",
        "headstart-up.1",
        "headstart-exec.1",
        "headstart-snapshot-ls.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is roff"
        );
    }
    let up = std::fs::read_to_string(dir.join("headstart-up.1")).unwrap();
    assert!(up.contains("new\\-branch"), "options are documented");
    assert!(
        !dir.join("headstart-generate-man.1").exists(),
        "hidden commands get no page"
    );
}

#[test]
fn quiet_prints_only_errors_and_logs_to_a_file_carry_no_escape_codes() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let h = home.path();

    let o = headstart(h, &["up", &url, "--name", "q", "--no-snapshot", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("", ""));
    let o = headstart(h, &["-q", "ls"]);
    assert_eq!(stdout(&o), "q\n", "ls -q: names only");
    let o = headstart(h, &["down", "nosuch", "-q"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nosuch"), "errors still show");

    // stderr is a pipe here, like a file: logs without ANSI escapes.
    let o = headstart(
        h,
        &[
            "up",
            &url,
            "--name",
            "logs",
            "--no-snapshot",
            "--log",
            "debug",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("DEBUG"), "debug logs were written: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "no escape codes in a log file: {err:?}"
    );
}

#[test]
fn ls_shows_repository_branch_and_age_and_down_takes_several_names_or_all() {
    let up = Upstream::new("main", 3).unwrap();
    up.git(&["branch", "feature", "main"]).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let h = home.path();
    for (name, branch) in [("a", "main"), ("b", "feature"), ("c", "main")] {
        let o = headstart(
            h,
            &[
                "up",
                &url,
                "--name",
                name,
                "--branch",
                branch,
                "--no-snapshot",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let table = stdout(&headstart(h, &["ls"]));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "PROVIDER", "STATE", "REPO", "BRANCH", "AGE", "USED", "IDLE"
        ]
    );
    let b: Vec<&str> = lines
        .find(|l| l.starts_with("b "))
        .expect("a row for b")
        .split_whitespace()
        .collect();
    let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    assert_eq!(&b[..3], ["b", "local", "running"], "{table}");
    assert!(
        b[3].starts_with(host) && b[3].contains(up.name().trim_end_matches(".git")),
        "{table}"
    );
    assert_eq!(b[4], "feature", "{table}");
    assert!(
        table.contains("ago") || table.contains("just now"),
        "{table}"
    );

    let o = headstart(h, &["down", "a", "nosuch"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        json(&headstart(h, &["ls", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        3,
        "a typo removes nothing"
    );
    let o = headstart(h, &["down", "a", "b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "removed a\nremoved b\n");
    let o = headstart(h, &["down", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "removed c\n");
    assert_eq!(stdout(&headstart(h, &["ls"])), "no sandboxes\n");
}

/// Output that cannot be written is an error, not a panic: a full disk (`> /dev/full`)
/// fails with status 1 and says so; a reader that closed the pipe ends the command
/// quietly, as other tools do.
#[test]
fn output_to_a_full_disk_fails_cleanly_and_to_a_closed_pipe_quietly() {
    let home = crate::TestHome::new();
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["completions", "bash"],
        &["flags", "status"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = crate::headstart_cmd(home.path(), args)
            .stdout(full)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("cannot write the output to stdout") && !err.contains("panicked"),
            "{args:?}: {err}"
        );

        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = crate::headstart_cmd(home.path(), args)
            .stdout(writer)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
}
