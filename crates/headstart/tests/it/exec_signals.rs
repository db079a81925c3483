//! `headstart exec` like `docker exec` and `ssh host cmd`: SIGINT, SIGTERM and SIGHUP
//! reach the command (which then no longer runs) and `exec` exits 130, 143 or 129;
//! input that is not a terminal reaches the command, and ends. Locally and on Docker
//! (skipped with a printed reason when no engine answers).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use test_support::{GitHttpServer, Upstream};

use crate::docker_lifecycle::{DownAll, docker_or_skip};
use crate::{headstart, stderr, stdout};

/// A sandbox `box` of a small repository (`extra`: e.g. the provider); its workspace.
fn sandbox(home: &Path, extra: &[&str]) -> PathBuf {
    let up = Upstream::new("main", 1).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let mut args = vec!["up", "--name", "box", "--no-snapshot", "--json"];
    let url = server.url(up.name());
    args.insert(1, &url);
    args.extend_from_slice(extra);
    let o = headstart(home, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    PathBuf::from(v["sandbox"]["workspace"].as_str().unwrap())
}

/// `headstart exec box -- ARGV` running, its input `stdin`.
fn spawn_exec(home: &Path, argv: &[&str], stdin: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(["exec", "box", "--"])
        .args(argv)
        .env("HEADSTART_HOME", home)
        .env_remove("HEADSTART_GIT_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run headstart")
}

/// The pid a command wrote to `file` (waits for it).
fn pid_in(file: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `child`'s exit status, within a minute.
fn status_within_a_minute(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("headstart exec did not end after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while host process `pid` exists (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn signal(child: &Child, sig: Signal) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

const SIGNALS: [(Signal, i32, &str); 3] = [
    (Signal::INT, 130, "int"),
    (Signal::TERM, 143, "term"),
    (Signal::HUP, 129, "hup"),
];

#[test]
fn a_signal_to_a_local_exec_ends_the_command_and_exits_like_a_shell() {
    let home = crate::TestHome::new();
    let ws = sandbox(home.path(), &["--provider", "local"]);
    for (sig, code, stem) in SIGNALS {
        // a group: the shell and what it started in the background
        let script =
            format!("sleep 300 & echo $! > {stem}.bg; echo $$ > {stem}.pid; exec sleep 301");
        let mut child = spawn_exec(home.path(), &["sh", "-c", &script], Stdio::null());
        let pid = pid_in(&ws.join(format!("{stem}.pid")));
        let bg = pid_in(&ws.join(format!("{stem}.bg")));
        signal(&child, sig);
        assert_eq!(status_within_a_minute(&mut child), Some(code), "{stem}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while (alive(pid) || (sig != Signal::INT && alive(bg))) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "{stem}: the command {pid} still runs");
        // a background job of a non-interactive shell ignores SIGINT: killed after the grace
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(bg) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(bg),
            "{stem}: what the command started ({bg}) still runs"
        );
    }
}

/// Pipes `input` to `headstart exec box -- ARGV`; its output.
fn exec_with_input(
    home: &Path,
    argv: &[&str],
    input: &[u8],
    extra: &[&str],
) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .arg("exec")
        .args(extra)
        .args(["box", "--"])
        .args(argv)
        .env("HEADSTART_HOME", home)
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin); // end of file
    child.wait_with_output().unwrap()
}

/// Piped input reaches the command and ends (also with `-i`); no input is empty.
fn check_input(home: &Path, ws: &Path) {
    let o = exec_with_input(home, &["sh", "-c", "cat > piped.txt"], b"data\n", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(ws.join("piped.txt")).unwrap(),
        "data\n"
    );
    let big = vec![b'x'; 300_000];
    let o = exec_with_input(home, &["wc", "-c"], &big, &["-i"]);
    assert_eq!(stdout(&o).trim(), "300000", "{}", stderr(&o));
    let o = headstart(home, &["exec", "box", "sh", "-c", "cat; echo end"]);
    assert_eq!(stdout(&o), "end\n", "{}", stderr(&o));
}

#[test]
fn piped_input_reaches_a_local_command() {
    let home = crate::TestHome::new();
    let ws = sandbox(home.path(), &["--provider", "local"]);
    check_input(home.path(), &ws);
}

#[test]
fn a_signal_to_a_docker_exec_ends_the_command_and_piped_input_reaches_it() {
    if !docker_or_skip("a_signal_to_a_docker_exec_ends_the_command_and_piped_input_reaches_it") {
        return;
    }
    let home = crate::TestHome::new();
    let _down = DownAll(home.path());
    let ws = sandbox(home.path(), &["--provider", "docker"]);
    check_input(home.path(), &ws);
    for (sig, code, stem) in SIGNALS {
        let script = format!("sleep 300 & echo $$ > {stem}.pid; exec sleep 301");
        let mut child = spawn_exec(home.path(), &["sh", "-c", &script], Stdio::null());
        let _ = pid_in(&ws.join(format!("{stem}.pid")));
        signal(&child, sig);
        assert_eq!(status_within_a_minute(&mut child), Some(code), "{stem}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = headstart(home.path(), &["exec", "box", "ps", "-eo", "args"]);
            let left: Vec<String> = stdout(&o)
                .lines()
                .filter(|l| l.starts_with("sleep 30"))
                .map(str::to_owned)
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{stem}: still running in the container: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_terminal_is_forwarded_only_with_dash_i() {
    let have_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_script {
        eprintln!("skipping: the `script` utility (util-linux) is not installed");
        return;
    }
    let home = crate::TestHome::new();
    sandbox(home.path(), &["--provider", "local"]);
    // what the command's standard input is, with headstart's on a pseudo-terminal
    let stdin_of = |flags: &str| {
        let line = format!(
            "exec {} exec {flags} box -- readlink /proc/self/fd/0",
            env!("CARGO_BIN_EXE_headstart")
        );
        let o = Command::new("script")
            .args(["--quiet", "--return", "--command", &line, "/dev/null"])
            .env("SHELL", "/bin/sh")
            .env("HEADSTART_HOME", home.path())
            .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run script");
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    assert_eq!(
        stdin_of("").trim(),
        "/dev/null",
        "a terminal is not read without -i"
    );
    assert!(stdin_of("-i").trim().starts_with("pipe:"), "-i forwards it");
}

/// The command's output that cannot be written stops the command: a reader that went
/// away ends `exec` with 141 (what SIGPIPE gives a writer), a full disk is an error
/// (status 1); a full stderr is no abort.
#[test]
fn output_that_cannot_be_written_stops_the_command() {
    let home = crate::TestHome::new();
    let h = home.path();
    sandbox(h, &[]);

    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let o = crate::headstart_cmd(h, &["exec", "box", "--", "echo", "hi"])
        .stdout(full())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot write the command's output to stdout"),
        "{}",
        stderr(&o)
    );

    // `exec box -- yes | head -0`: the reader is gone before the first line
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let started = Instant::now();
    let o = crate::headstart_cmd(h, &["exec", "box", "--", "yes"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(141), "{}", stderr(&o));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it stopped the command: {:?}",
        started.elapsed()
    );

    // an error that cannot be printed still ends with a status, not an abort
    let o = crate::headstart_cmd(h, &["exec", "nosuch", "--", "true"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}
