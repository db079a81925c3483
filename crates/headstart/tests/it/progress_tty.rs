//! The progress bar as a person sees it: `headstart up` on a pseudo-terminal (the
//! `script` utility allocates one), a real clone over smart HTTP. The bar never shows
//! `0/0` (as if complete before anything is known) and its byte count is bytes, not
//! the object count again. Off a terminal, nothing unless `--progress`.

use std::process::{Command, Stdio};

use test_support::{GitHttpServer, Upstream};

use crate::{headstart, stderr};

fn have_script() -> bool {
    Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `headstart args` on a pseudo-terminal of 120 columns; everything it drew.
fn on_a_terminal(home: &std::path::Path, args: &[&str]) -> String {
    let line = format!(
        "stty cols 120 rows 40; exec {} {}",
        env!("CARGO_BIN_EXE_headstart"),
        args.join(" ")
    );
    let o = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("HEADSTART_HOME", home)
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
        .env_remove("HEADSTART_GIT_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

#[test]
fn the_bar_counts_objects_and_bytes_apart_and_never_shows_zero_of_zero() {
    if !have_script() {
        eprintln!("skipping: the `script` utility (util-linux) is not installed");
        return;
    }
    // Enough objects that the bar draws while they arrive.
    let up = Upstream::new("main", 3000).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let drawn = on_a_terminal(home.path(), &["up", &url, "--name", "tty", "--no-snapshot"]);
    assert!(
        drawn.contains("sandbox: tty"),
        "the start finished: {drawn}"
    );

    let frame = regex::Regex::new(r"(\d+)/(\d+) objects, ([0-9.]+ (?:B|KiB|MiB|GiB))").unwrap();
    let frames: Vec<(u64, u64, String)> = frame
        .captures_iter(&drawn)
        .map(|c| {
            (
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                c[3].to_owned(),
            )
        })
        .collect();
    assert!(!frames.is_empty(), "the bar drew object counts: {drawn:?}");
    for (received, total, bytes) in &frames {
        assert!(*total > 0, "never 0/0: {drawn:?}");
        // (before the first object arrives, 0 objects and 0 bytes may both be true)
        if *received > 0 {
            assert_ne!(
                *bytes,
                format!("{received} B"),
                "bytes are not the object count: {drawn:?}"
            );
        }
    }
    assert!(
        frames.iter().any(|f| f.0 > 0),
        "objects arrived while drawing: {drawn:?}"
    );
    assert!(!drawn.contains(" 0/0 "), "{drawn:?}");
}

#[test]
fn off_a_terminal_progress_shows_only_when_asked() {
    let up = Upstream::new("main", 50).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let o = headstart(home.path(), &["up", &url, "--name", "a", "--no-snapshot"]);
    assert!(o.status.success());
    assert!(
        !stderr(&o).contains("objects"),
        "no progress into a pipe: {}",
        stderr(&o)
    );
    let o = headstart(
        home.path(),
        &["up", &url, "--name", "b", "--no-snapshot", "--progress"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("objects,") && !err.contains('\u{1b}'),
        "plain lines: {err:?}"
    );
    assert!(!err.contains("0/0"), "{err}");
}
