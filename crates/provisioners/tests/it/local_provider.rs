//! The local provider: connect, reconnect, force_create, workdir, remove, list, prune,
//! and exec (argv, env, cwd, timeout, truncation, streaming).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::fs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use provisioners::local::RestoreMethod;
use sandbox_core::{
    ConnectOptions, Connected, Error, ExecRequest, ExecSignal, ExecStdin, SandboxName,
    SandboxProvider, SignalToken, Stream,
};

use crate::local_support::{TestHome, alive, assert_gone, signal_when_written};

fn name(s: &str) -> SandboxName {
    SandboxName::new(s).unwrap()
}

#[tokio::test]
async fn connect_creates_then_reconnects_to_the_same_sandbox() {
    let home = TestHome::new();
    let p = home.provider();
    let (a, how) = p
        .connect(&ConnectOptions::new().name(name("box")))
        .await
        .unwrap();
    assert_eq!(how, Connected::Created);
    assert!(a.workspace().is_dir());
    assert!(a.workspace().starts_with(p.home()));
    fs::write(a.workspace().join("kept.txt"), "x").unwrap();

    let (b, how) = p
        .connect(&ConnectOptions::new().name(name("box")))
        .await
        .unwrap();
    assert_eq!(how, Connected::Reconnected);
    assert_eq!(b.id(), a.id());
    assert_eq!(b.workspace(), a.workspace());
    assert_eq!(
        fs::read_to_string(b.workspace().join("kept.txt")).unwrap(),
        "x"
    );

    // a second provider on the same home (another process) sees it too
    let again = home
        .provider()
        .get(&name("box"))
        .await
        .unwrap()
        .expect("found by name");
    assert_eq!(again.id(), a.id());
    let list = p.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, name("box"));
    assert_eq!(list[0].provider, "local");
}

#[tokio::test]
async fn generated_names_are_distinct() {
    let home = TestHome::new();
    let p = home.provider();
    let (a, _) = p.connect(&ConnectOptions::new()).await.unwrap();
    let (b, _) = p.connect(&ConnectOptions::new()).await.unwrap();
    assert_ne!(a.name(), b.name());
    assert_ne!(a.workspace(), b.workspace());
}

#[tokio::test]
async fn force_create_replaces_a_live_sandbox() {
    let home = TestHome::new();
    let p = home.provider();
    let (a, _) = p
        .connect(&ConnectOptions::new().name(name("box")))
        .await
        .unwrap();
    fs::write(a.workspace().join("old.txt"), "x").unwrap();
    let (b, how) = p
        .connect(&ConnectOptions::new().name(name("box")).force_create(true))
        .await
        .unwrap();
    assert_eq!(how, Connected::Created);
    assert_ne!(b.id(), a.id());
    assert!(b.workspace().is_dir());
    assert!(
        !b.workspace().join("old.txt").exists(),
        "the old workspace is gone"
    );
    assert_eq!(p.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_crashed_creation_is_replaced_even_without_force() {
    let home = TestHome::new();
    let p = home.provider();
    // what a process killed mid-creation leaves: a directory, a partial workspace,
    // a record that never reached `ready` (here: unreadable)
    let dir = p.home().join("sandboxes/box");
    fs::create_dir_all(dir.join("workspace")).unwrap();
    fs::write(dir.join("workspace/partial"), "half").unwrap();
    fs::write(dir.join("sandbox.json"), "{\"id\": \"trunc").unwrap();
    assert!(
        p.get(&name("box")).await.unwrap().is_none(),
        "a broken sandbox is not handed out"
    );
    assert!(p.list().await.unwrap().is_empty());
    let (b, how) = p
        .connect(&ConnectOptions::new().name(name("box")))
        .await
        .unwrap();
    assert_eq!(how, Connected::Created);
    assert!(!b.workspace().join("partial").exists());
}

#[tokio::test]
async fn workdir_sandbox_uses_the_users_directory_and_never_deletes_it() {
    let home = TestHome::new();
    let p = home.provider();
    let mine = home.path().join("my-checkout");
    fs::create_dir_all(mine.join("src")).unwrap();
    fs::write(mine.join("src/main.rs"), "fn main() {}").unwrap();
    let (s, _) = p
        .connect(&ConnectOptions::new().name(name("wd")).workdir(&mine))
        .await
        .unwrap();
    assert_eq!(s.workspace(), fs::canonicalize(&mine).unwrap());
    let out = s
        .exec(&ExecRequest::new(["ls", "src"]).unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "main.rs\n");

    // force_create and remove both leave the user's files alone
    let (s2, _) = p
        .connect(
            &ConnectOptions::new()
                .name(name("wd"))
                .workdir(&mine)
                .force_create(true),
        )
        .await
        .unwrap();
    assert_ne!(s2.id(), s.id());
    p.remove(&name("wd")).await.unwrap();
    assert_eq!(
        fs::read_to_string(mine.join("src/main.rs")).unwrap(),
        "fn main() {}"
    );
    assert!(p.get(&name("wd")).await.unwrap().is_none());

    let err = p
        .connect(
            &ConnectOptions::new()
                .workdir(&mine)
                .base_snapshot(sandbox_core::SnapshotId::new("0000000000000-abcdef01").unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
}

#[tokio::test]
async fn remove_deletes_the_workspace_and_unknown_names_are_clear_errors() {
    let home = TestHome::new();
    let p = home.provider();
    let (s, _) = p
        .connect(&ConnectOptions::new().name(name("gone")))
        .await
        .unwrap();
    let ws = s.workspace().to_path_buf();
    p.remove(&name("gone")).await.unwrap();
    assert!(!ws.exists());
    let err = p.remove(&name("gone")).await.unwrap_err();
    assert!(matches!(err, Error::SandboxNotFound { .. }), "{err}");
    assert!(err.is_user_error());
    assert!(p.get(&name("gone")).await.unwrap().is_none());
}

#[tokio::test]
async fn unknown_base_snapshot_fails_and_leaves_nothing() {
    let home = TestHome::new();
    let p = home.provider().with_restore_method(RestoreMethod::Copy);
    let id = sandbox_core::SnapshotId::new("0000000000000-abcdef01").unwrap();
    let err = p
        .connect(&ConnectOptions::new().name(name("x")).base_snapshot(id))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SnapshotNotFound { .. }), "{err}");
    assert!(
        !p.home().join("sandboxes/x").exists(),
        "nothing half-created"
    );
    assert!(p.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn ttl_is_recorded_and_prune_removes_expired_and_orphaned_sandboxes() {
    let home = TestHome::new();
    let p = home.provider();
    p.connect(
        &ConnectOptions::new()
            .name(name("short"))
            .ttl(Duration::from_millis(1)),
    )
    .await
    .unwrap();
    p.connect(
        &ConnectOptions::new()
            .name(name("long"))
            .ttl(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    p.connect(&ConnectOptions::new().name(name("forever")))
        .await
        .unwrap();
    fs::create_dir_all(p.home().join("sandboxes/orphan/workspace")).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = p.prune().await.unwrap();
    assert_eq!(report.expired, vec![name("short")]);
    assert_eq!(
        report.orphan_workspaces,
        vec![p.home().join("sandboxes/orphan")]
    );
    let names: Vec<_> = p
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(names, ["forever", "long"]);
    assert!(!p.home().join("sandboxes/orphan").exists());
}

#[tokio::test]
async fn exec_passes_argv_literally_with_env_and_cwd() {
    let home = TestHome::new();
    let p = home.provider();
    let (s, _) = p
        .connect(
            &ConnectOptions::new()
                .name(name("ex"))
                .env("FROM_SANDBOX", "s v"),
        )
        .await
        .unwrap();
    let tricky = ["a b", "it's", "\"q\"", "$HOME", ";", "*", "`id`", ""];
    let mut argv = vec!["printf", "[%s]\\n"];
    argv.extend(tricky);
    let out = s.exec(&ExecRequest::new(argv).unwrap()).await.unwrap();
    assert!(out.success(), "{out:?}");
    let expected: String = tricky.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    let out = s
        .exec(
            &ExecRequest::new(["printenv", "FROM_SANDBOX", "FROM_REQUEST"])
                .unwrap()
                .env("FROM_REQUEST", "r=1"),
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s v\nr=1\n");

    fs::create_dir_all(s.workspace().join("sub/dir")).unwrap();
    let mut req = ExecRequest::new(["pwd"]).unwrap();
    req.cwd = Some("sub/dir".into());
    let out = s.exec(&req).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        s.workspace().join("sub/dir").to_str().unwrap()
    );
    let out = s.exec(&ExecRequest::new(["pwd"]).unwrap()).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        s.workspace().to_str().unwrap()
    );

    for bad in ["../outside", "/etc"] {
        let mut req = ExecRequest::new(["pwd"]).unwrap();
        req.cwd = Some(bad.into());
        let err = s.exec(&req).await.unwrap_err();
        assert!(matches!(err, Error::InvalidOptions(_)), "{bad}: {err}");
    }
}

#[tokio::test]
async fn exec_reports_exit_status_stderr_and_missing_programs() {
    let home = TestHome::new();
    let (s, _) = home
        .provider()
        .connect(&ConnectOptions::new())
        .await
        .unwrap();
    let out = s
        .exec(&ExecRequest::new(["sh", "-c", "echo oops >&2; exit 3"]).unwrap())
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.success());
    assert_eq!(out.stderr, b"oops\n");
    assert!(!out.timed_out);
    let err = s
        .exec(&ExecRequest::new(["definitely-not-a-program-xyz"]).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("definitely-not-a-program-xyz"),
        "{err}"
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let home = TestHome::new();
    let (s, _) = home
        .provider()
        .connect(&ConnectOptions::new())
        .await
        .unwrap();
    let started = Instant::now();
    let req = ExecRequest::new(["sh", "-c", "sleep 300 & echo $!; wait"])
        .unwrap()
        .timeout(Duration::from_millis(500));
    let out = s.exec(&req).await.unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(started.elapsed() < Duration::from_secs(30));
    let pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the background pid was captured");
    assert_gone(pid, "the grandchild, not killed with the group,").await;
}

#[tokio::test]
async fn output_is_capped_with_a_flag_and_streamed_whole() {
    let home = TestHome::new();
    let (s, _) = home
        .provider()
        .connect(&ConnectOptions::new())
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new((0usize, 0usize)));
    let sink_seen = Arc::clone(&seen);
    let mut req = ExecRequest::new(["sh", "-c", "head -c 100000 /dev/zero; echo err >&2"])
        .unwrap()
        .sink(Arc::new(move |stream, chunk: &[u8]| {
            let mut s = sink_seen.lock().unwrap();
            match stream {
                Stream::Stdout => s.0 += chunk.len(),
                Stream::Stderr => s.1 += chunk.len(),
            }
        }));
    req.output_limit = 1000;
    let out = s.exec(&req).await.unwrap();
    assert!(out.success());
    assert!(out.truncated);
    assert_eq!(out.stdout.len(), 1000);
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(
        *seen.lock().unwrap(),
        (100_000, 4),
        "the sink sees everything"
    );

    let out = s
        .exec(&ExecRequest::new(["echo", "short"]).unwrap())
        .await
        .unwrap();
    assert!(!out.truncated);
}

#[tokio::test]
async fn output_streams_while_the_command_runs() {
    let home = TestHome::new();
    let (s, _) = home
        .provider()
        .connect(&ConnectOptions::new())
        .await
        .unwrap();
    let first_at = Arc::new(Mutex::new(None::<Instant>));
    let f = Arc::clone(&first_at);
    let req = ExecRequest::new(["sh", "-c", "echo first; sleep 1; echo second"])
        .unwrap()
        .sink(Arc::new(move |_, chunk: &[u8]| {
            if chunk.starts_with(b"first") {
                f.lock().unwrap().get_or_insert_with(Instant::now);
            }
        }));
    let out = s.exec(&req).await.unwrap();
    let done = Instant::now();
    assert_eq!(out.stdout, b"first\nsecond\n");
    let first = first_at
        .lock()
        .unwrap()
        .expect("the first line reached the sink");
    assert!(
        done - first >= Duration::from_millis(500),
        "the first line arrived before the command ended"
    );
}

#[tokio::test]
async fn stop_kills_running_commands_and_keeps_the_workspace() {
    let home = TestHome::new();
    let p = home.provider();
    let (s, _) = p
        .connect(&ConnectOptions::new().name(name("st")))
        .await
        .unwrap();
    let s: Arc<dyn sandbox_core::Sandbox> = Arc::from(s);
    fs::write(s.workspace().join("f"), "x").unwrap();
    let runner = Arc::clone(&s);
    let task = tokio::spawn(async move {
        runner
            .exec(&ExecRequest::new(["sleep", "300"]).unwrap())
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("exec returned")
        .unwrap()
        .unwrap();
    assert!(
        out.exit_code.is_some_and(|c| c > 128),
        "killed by a signal: 128 + N, as a shell says: {:?}",
        out.exit_code
    );
    assert!(s.workspace().join("f").exists());
    assert!(p.get(&name("st")).await.unwrap().is_some());
}

#[tokio::test]
async fn concurrent_connects_to_one_name_make_one_sandbox() {
    let home = TestHome::new();
    let p = home.provider();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move {
                p.connect(&ConnectOptions::new().name(name("shared")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (s, how) = t.await.unwrap();
        created += usize::from(how == Connected::Created);
        ids.insert(s.id().to_owned());
    }
    assert_eq!(created, 1, "exactly one connect creates");
    assert_eq!(ids.len(), 1, "everyone got the same sandbox");
}

#[tokio::test]
async fn a_background_process_holding_the_pipes_does_not_hold_exec() {
    let home = TestHome::new();
    let (s, _) = home
        .provider()
        .connect(&ConnectOptions::new())
        .await
        .unwrap();
    let started = Instant::now();
    let out = s
        .exec(&ExecRequest::new(["sh", "-c", "sleep 60 & echo $!; echo done"]).unwrap())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "returned when sh exited"
    );
    assert_eq!(out.exit_code, Some(0));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let pid: i32 = lines.next().unwrap().parse().unwrap();
    assert_eq!(
        lines.next(),
        Some("done"),
        "output written before the exit is all there"
    );
    assert!(
        alive(pid),
        "the background process is left running (not an isolation boundary)"
    );
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    );
}

#[tokio::test]
async fn stdin_is_fed_and_a_signal_reaches_the_whole_group() {
    let home = TestHome::new();
    let (s, _) = home
        .provider()
        .connect(&ConnectOptions::new())
        .await
        .unwrap();
    // Input: bytes (every run), a reader (once), none (`/dev/null`).
    let req = ExecRequest::new(["cat"])
        .unwrap()
        .stdin(ExecStdin::bytes("data\n"));
    assert_eq!(s.exec(&req).await.unwrap().stdout, b"data\n");
    assert_eq!(s.exec(&req).await.unwrap().stdout, b"data\n");
    let req = ExecRequest::new(["wc", "-c"])
        .unwrap()
        .stdin(ExecStdin::reader(std::io::Cursor::new(vec![b'x'; 300_000])));
    assert_eq!(s.exec(&req).await.unwrap().stdout_lossy().trim(), "300000");
    let out = s.exec(&ExecRequest::new(["cat"]).unwrap()).await.unwrap();
    assert_eq!((out.exit_code, out.stdout), (Some(0), vec![]));

    // A signal: the command ends by it (128 + N) at once; what it started in the
    // background (ignoring SIGINT, as a shell's background jobs do) is killed too.
    let token = SignalToken::new();
    let req = ExecRequest::new(["sh", "-c", "sleep 300 & echo $! > bg; exec sleep 301"])
        .unwrap()
        .signals(token.clone());
    let sender = signal_when_written(s.workspace().join("bg"), token, ExecSignal::Interrupt);
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), s.exec(&req))
        .await
        .expect("the signal ended the command")
        .unwrap();
    sender.await.unwrap();
    assert_eq!(out.exit_code, Some(130), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let bg: i32 = fs::read_to_string(s.workspace().join("bg"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_gone(bg, "the background process, not killed with the group,").await;

    // A command that ignores the signal is killed after the grace.
    let token = SignalToken::new();
    let req = ExecRequest::new(["sh", "-c", "trap '' TERM; echo > trapped; sleep 300"])
        .unwrap()
        .signals(token.clone());
    let sender = signal_when_written(s.workspace().join("trapped"), token, ExecSignal::Terminate);
    let out = s.exec(&req).await.unwrap();
    sender.await.unwrap();
    assert_eq!(out.exit_code, Some(137), "{out:?}");
    assert!(out.duration >= sandbox_core::SIGNAL_GRACE, "{out:?}");
}
