//! A start that cannot lie: interrupted (SIGINT, SIGTERM), killed (SIGKILL) and
//! timed-out `up`s leave no sandbox that reconnects as ready; the next `up` of the
//! name or `prune` repairs what a killed one left; concurrent `up`s of one name clone
//! once; `prune` removes the lock files of names that are gone.
//!
//! Each runs the real `headstart` binary as a child process against loopback git
//! servers. A [`StallProxy`] in front of `git http-backend` lets a clone or sync start
//! and then hang (it closes the stalled connection a few seconds later, so even a git
//! engine that only notices cancellation when its transfer ends keeps these bounded).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use test_support::{Change, GitHttpServer, StallProxy, TrickleProxy, Upstream};

use crate::{headstart, json, stderr, stdout};

/// Bytes the proxy forwards per connection before it stalls: the ref advertisement
/// and the first part of the pack.
pub(crate) const BUDGET: u64 = 96 * 1024;
/// How long a stalled connection stays open.
pub(crate) const STALL: Duration = Duration::from_secs(4);

/// A running `headstart`, killed (SIGKILL) if the test ends before it does.
pub(crate) struct Running {
    child: Option<Child>,
}

impl Running {
    pub(crate) fn spawn(home: &Path, args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_headstart"))
            .args(args)
            .env("HEADSTART_HOME", home)
            .env_remove("HEADSTART_GIT_TOKEN")
            .env_remove("GITHUB_TOKEN")
            .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start headstart");
        Self { child: Some(child) }
    }

    fn pid(&self) -> Pid {
        let id = self.child.as_ref().unwrap().id();
        Pid::from_raw(i32::try_from(id).unwrap()).unwrap()
    }

    /// Sends `sig` to this process only (never a group, never through `kill(1)`).
    pub(crate) fn signal(&self, sig: Signal) {
        rustix::process::kill_process(self.pid(), sig).expect("headstart still runs");
    }

    /// Waits for it to exit (at most `within`) and returns its output.
    pub(crate) fn finish(mut self, within: Duration) -> Output {
        let mut child = self.child.take().unwrap();
        let t = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if t.elapsed() > within {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "headstart did not exit within {within:?}: {}{}",
                    stdout(&out),
                    stderr(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Deterministic incompressible bytes (xorshift), so the pack is big enough to stall in.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An upstream whose default branch `main` holds 2 MiB of noise.
pub(crate) fn big_upstream() -> Upstream {
    let up = Upstream::new("main", 20).unwrap();
    up.commit(
        "main",
        &[Change::Write("blob.bin".into(), noise(2 << 20, 7))],
    )
    .unwrap();
    up
}

fn sandbox_dir(home: &Path, name: &str) -> PathBuf {
    home.join("sandboxes").join(name)
}

pub(crate) fn ls_names(home: &Path) -> Vec<String> {
    json(&headstart(home, &["ls", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `(name, state)` of every sandbox `ls --all --json` lists (its output checked against
/// the schema).
pub(crate) fn ls_all_states(home: &Path) -> Vec<(String, String)> {
    let v = json(&headstart(home, &["ls", "--all", "--json"]));
    crate::schema::check("ls", &v);
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap().to_owned();
            (field("name"), field("state"))
        })
        .collect()
}

/// `git status --porcelain` is empty and HEAD is `commit`.
pub(crate) fn assert_clean_checkout(ws: &Path, commit: &str) {
    let repo = git2::Repository::open(ws).unwrap();
    let head = repo
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id()
        .to_string();
    assert_eq!(head, commit, "HEAD of {}", ws.display());
    let status = test_support::git_in(ws, &["status", "--porcelain"]).unwrap();
    assert!(status.trim().is_empty(), "{}: {status}", ws.display());
}

/// Starts `up` through a stalling proxy and waits until its transfer stalled.
pub(crate) fn up_until_stalled(home: &Path, proxy: &StallProxy, args: &[&str]) -> Running {
    let seen = proxy.stalls();
    let running = Running::spawn(home, args);
    assert!(
        proxy.wait_for_stall(seen, Duration::from_secs(60)),
        "the transfer never reached the stall"
    );
    running
}

/// A big upstream served over smart HTTP behind a proxy that stalls the transfer
/// after [`BUDGET`] bytes, and a data directory: the rig of the interrupted-start tests.
struct Stalling {
    up: Upstream,
    _server: GitHttpServer,
    proxy: StallProxy,
    url: String,
    home: crate::TestHome,
}

impl Stalling {
    fn new() -> Self {
        let up = big_upstream();
        let server = GitHttpServer::start(up.root()).unwrap();
        let proxy = StallProxy::start(server.addr(), Some(BUDGET), STALL).unwrap();
        let url = proxy.url(up.name());
        Self {
            up,
            _server: server,
            proxy,
            url,
            home: crate::TestHome::new(),
        }
    }

    /// `headstart up URL --name NAME --no-snapshot`, returned once its clone stalled.
    fn start(&self, name: &str) -> Running {
        up_until_stalled(
            self.home.path(),
            &self.proxy,
            &["up", &self.url, "--name", name, "--no-snapshot"],
        )
    }
}

fn interrupted_cold_start_removes_its_sandbox(sig: Signal, code: i32) {
    let rig = Stalling::new();
    let (up, url, home) = (&rig.up, &rig.url, &rig.home);
    let running = rig.start("same");
    running.signal(sig);
    let out = running.finish(Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted; removed sandbox same"),
        "{}",
        stderr(&out)
    );
    assert!(ls_names(home.path()).is_empty());
    assert!(!sandbox_dir(home.path(), "same").exists(), "nothing left");

    // The next start of the name is a real cold start, at the upstream commit.
    rig.proxy.set_budget(None);
    let v = json(&headstart(
        home.path(),
        &["up", url, "--name", "same", "--no-snapshot", "--json"],
    ));
    assert_eq!(v["path"], "cold", "{v}");
    assert_eq!(v["head"]["commit"], up.tip("main").unwrap().as_str());
    assert_clean_checkout(
        Path::new(v["sandbox"]["workspace"].as_str().unwrap()),
        &up.tip("main").unwrap(),
    );
}

#[test]
fn sigint_mid_clone_exits_130_and_removes_the_sandbox() {
    interrupted_cold_start_removes_its_sandbox(Signal::INT, 130);
}

#[test]
fn sigterm_mid_clone_exits_143_and_removes_the_sandbox() {
    interrupted_cold_start_removes_its_sandbox(Signal::TERM, 143);
}

#[test]
fn sigkill_mid_clone_is_repaired_by_the_next_up_of_the_name() {
    let rig = Stalling::new();
    let (up, url, home) = (&rig.up, &rig.url, &rig.home);
    let running = rig.start("same");
    running.signal(Signal::KILL);
    let _ = running.finish(Duration::from_secs(10));
    assert!(
        ls_names(home.path()).is_empty(),
        "a killed start is not listed as ready"
    );

    rig.proxy.set_budget(None);
    let o = headstart(
        home.path(),
        &["up", url, "--name", "same", "--no-snapshot", "--json"],
    );
    let v = json(&o);
    assert_eq!(v["path"], "cold", "repaired, not reconnected: {v}");
    assert!(
        stderr(&o).contains("repairing sandbox same"),
        "{}",
        stderr(&o)
    );
    let tip = up.tip("main").unwrap();
    assert_eq!(v["head"]["commit"], tip.as_str());
    assert_clean_checkout(Path::new(v["sandbox"]["workspace"].as_str().unwrap()), &tip);
    assert_eq!(ls_names(home.path()), ["same"]);
}

/// A `--workdir` clone killed mid-transfer leaves a `.git` with no commit in the
/// user's directory: the next `up` of that directory must clone again, never report
/// the empty repository as a ready workspace.
#[test]
fn a_sigkilled_workdir_clone_is_cloned_again_by_the_next_up() {
    let rig = Stalling::new();
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    let wd_s = wd.to_str().unwrap();
    let running = up_until_stalled(
        rig.home.path(),
        &rig.proxy,
        &["up", &rig.url, "--workdir", wd_s],
    );
    running.signal(Signal::KILL);
    let _ = running.finish(Duration::from_secs(10));
    assert!(wd.join(".git").exists(), "the kill left a partial clone");

    rig.proxy.set_budget(None);
    let o = headstart(
        rig.home.path(),
        &["up", &rig.url, "--workdir", wd_s, "--json"],
    );
    let v = json(&o);
    let tip = rig.up.tip("main").unwrap();
    assert_eq!(v["path"], "workdir", "{v}");
    assert_eq!(v["head"]["commit"], tip.as_str(), "{v}");
    assert_clean_checkout(&wd, &tip);
    let again = json(&headstart(
        rig.home.path(),
        &["up", &rig.url, "--workdir", wd_s, "--json"],
    ));
    assert_eq!(again["head"]["commit"], tip.as_str(), "{again}");
}

/// A second `up` of a directory being cloned into by a running start leaves that clone
/// alone (it is no interrupted one) and says to wait.
#[test]
fn a_workdir_being_cloned_is_not_cleared_by_a_second_up() {
    let rig = Stalling::new();
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("wd");
    let wd_s = wd.to_str().unwrap();
    let running = up_until_stalled(
        rig.home.path(),
        &rig.proxy,
        &["up", &rig.url, "--workdir", wd_s, "--json"],
    );
    let second = headstart(rig.home.path(), &["up", &rig.url, "--workdir", wd_s]);
    assert!(!second.status.success(), "{}", stdout(&second));
    assert!(
        stderr(&second).contains("is being cloned into by another start"),
        "{}",
        stderr(&second)
    );
    assert!(wd.join(".git").exists(), "the running clone is untouched");

    // the proxy closes the stalled transfer: the first start fails and cleans up
    // after itself, and the next one clones
    let first = running.finish(Duration::from_secs(60));
    assert!(!first.status.success(), "{}", stdout(&first));
    rig.proxy.set_budget(None);
    let v = json(&headstart(
        rig.home.path(),
        &["up", &rig.url, "--workdir", wd_s, "--json"],
    ));
    let tip = rig.up.tip("main").unwrap();
    assert_eq!(v["head"]["commit"], tip.as_str(), "{v}");
    assert_clean_checkout(&wd, &tip);
}

#[test]
fn sigkill_mid_clone_then_prune_removes_it_and_says_so() {
    let rig = Stalling::new();
    let home = &rig.home;
    let running = rig.start("same");
    running.signal(Signal::KILL);
    let _ = running.finish(Duration::from_secs(10));
    assert!(
        sandbox_dir(home.path(), "same").exists(),
        "what the kill left"
    );

    let o = headstart(home.path(), &["prune"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("removed same: its start was interrupted"),
        "{}",
        stdout(&o)
    );
    assert!(!sandbox_dir(home.path(), "same").exists());
    assert!(!home.path().join("locks/same.lock").exists());
    let again = headstart(home.path(), &["prune"]);
    assert!(
        stdout(&again).contains("nothing to prune"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn a_sigkilled_start_is_listed_interrupted_with_all_until_prune_removes_it() {
    let rig = Stalling::new();
    let home = &rig.home;

    // while the start runs (stalled mid-clone, holding the name's lock): `creating`
    let running = rig.start("dead");
    assert_eq!(
        ls_all_states(home.path()),
        [("dead".to_owned(), "creating".to_owned())]
    );
    running.signal(Signal::KILL);
    let _ = running.finish(Duration::from_secs(10));

    // its process is gone: never `creating` again, and not shown without --all
    assert_eq!(
        ls_all_states(home.path()),
        [("dead".to_owned(), "interrupted".to_owned())]
    );
    let v = json(&headstart(home.path(), &["ls", "--all", "--json"]));
    assert_eq!(v[0]["status"], "interrupted", "{v}");
    assert!(
        v[0]["branch"].is_null(),
        "a half clone is on no branch: {v}"
    );
    assert!(ls_names(home.path()).is_empty(), "not ready: not listed");
    let o = headstart(home.path(), &["ls"]);
    assert!(stdout(&o).contains("no sandboxes"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("not shown: 1 interrupted start(s) (dead)")
            && stderr(&o).contains("`headstart ls --all`"),
        "{}",
        stderr(&o)
    );
    let o = headstart(home.path(), &["ls", "--all"]);
    let row: Vec<String> = stdout(&o)
        .lines()
        .find(|l| l.starts_with("dead "))
        .expect("a row for dead")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        &row[..3],
        ["dead", "local", "interrupted"],
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("`headstart prune` removes it, as does `headstart down dead`"),
        "{}",
        stderr(&o)
    );
    let o = headstart(home.path(), &["exec", "dead", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "not offered: {}", stderr(&o));

    // `prune` removes what `ls --all` called interrupted
    let o = headstart(home.path(), &["prune"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("removed dead: its start was interrupted"),
        "{}",
        stdout(&o)
    );
    assert!(ls_all_states(home.path()).is_empty());
    assert!(!sandbox_dir(home.path(), "dead").exists());
}

#[test]
fn sigkill_during_a_warm_sync_is_never_reconnected_as_ready() {
    let up = Upstream::new("main", 20).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let proxy = StallProxy::start(server.addr(), None, STALL).unwrap();
    let url = proxy.url(up.name());
    let home = crate::TestHome::new();

    // A snapshot of the small repository, built in this process.
    let first = json(&headstart(
        home.path(),
        &["up", &url, "--name", "first", "--wait-snapshot", "--json"],
    ));
    assert_eq!(first["path"], "cold", "{first}");
    // Upstream moves on by 2 MiB: the warm sync has a big pack to stall in.
    let tip = up
        .commit(
            "main",
            &[Change::Write("blob.bin".into(), noise(2 << 20, 11))],
        )
        .unwrap();

    proxy.set_budget(Some(BUDGET));
    let running = up_until_stalled(home.path(), &proxy, &["up", &url, "--name", "warm"]);
    running.signal(Signal::KILL);
    let _ = running.finish(Duration::from_secs(10));
    assert_eq!(
        ls_names(home.path()),
        ["first"],
        "the killed one is not ready"
    );
    let o = headstart(home.path(), &["exec", "warm", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "not offered: {}", stderr(&o));

    proxy.set_budget(None);
    let v = json(&headstart(
        home.path(),
        &["up", &url, "--name", "warm", "--json"],
    ));
    assert_eq!(
        v["path"], "warm",
        "repaired and synced, not reconnected: {v}"
    );
    assert_eq!(v["head"]["commit"], tip.as_str());
    assert_clean_checkout(Path::new(v["sandbox"]["workspace"].as_str().unwrap()), &tip);
}

#[test]
fn eight_concurrent_ups_of_one_name_clone_once_and_the_rest_reconnect() {
    let up = Upstream::new("main", 300).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let tip = up.tip("main").unwrap();

    for round in 0..3 {
        let name = format!("same{round}");
        let runs: Vec<Running> = (0..8)
            .map(|_| Running::spawn(home.path(), &["up", &url, "--name", &name, "--json"]))
            .collect();
        let outs: Vec<Output> = runs
            .into_iter()
            .map(|r| r.finish(Duration::from_secs(120)))
            .collect();
        let mut made = 0;
        let mut workspaces = std::collections::BTreeSet::new();
        for o in &outs {
            let v = json(o);
            match v["path"].as_str().unwrap() {
                "reconnected" => {}
                "cold" | "warm" => made += 1,
                other => panic!("round {round}: unexpected path {other}: {v}"),
            }
            workspaces.insert(v["sandbox"]["workspace"].as_str().unwrap().to_owned());
        }
        assert_eq!(made, 1, "round {round}: exactly one start clones or syncs");
        assert_eq!(workspaces.len(), 1, "round {round}: {workspaces:?}");
        let ws = workspaces.into_iter().next().unwrap();
        assert_clean_checkout(Path::new(&ws), &tip);
    }
    let names = ls_names(home.path());
    assert!(
        ["same0", "same1", "same2"]
            .iter()
            .all(|n| names.iter().any(|m| m == n)),
        "{names:?}"
    );
}

#[test]
fn prune_removes_the_lock_files_of_names_that_are_gone() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    for n in ["a", "b"] {
        json(&headstart(
            home.path(),
            &["up", &url, "--name", n, "--no-snapshot", "--json"],
        ));
    }
    let failed = headstart(
        home.path(),
        &[
            "up",
            &url,
            "--name",
            "c",
            "--branch",
            "nope",
            "--no-snapshot",
        ],
    );
    assert_eq!(failed.status.code(), Some(2), "{}", stderr(&failed));
    assert!(headstart(home.path(), &["down", "a"]).status.success());
    // what older versions left behind: a lock per name ever tried
    let locks = home.path().join("locks");
    std::fs::write(locks.join("ghost.lock"), "").unwrap();

    let o = headstart(home.path(), &["prune"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut left: Vec<String> = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["b.lock"], "only the lock of the sandbox that exists");
    assert_eq!(ls_names(home.path()), ["b"]);
}

#[test]
fn up_timeout_against_a_stalling_server_fails_naming_the_deadline() {
    let up = big_upstream();
    let server = GitHttpServer::start(up.root()).unwrap();
    let proxy = StallProxy::start(server.addr(), Some(BUDGET), STALL).unwrap();
    let url = proxy.url(up.name());
    let home = crate::TestHome::new();

    let took = slow_up_fails_with(
        home.path(),
        &url,
        "3s",
        "headstart up did not finish within 3s (--timeout)",
    );
    assert!(proxy.stalls() > 0, "it stalled rather than failed early");
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

/// With `--json`, a start stopped by its deadline or a signal prints the error object
/// on stdout (kind `timeout` or `cancelled`), as every failing `--json` command does.
#[test]
fn a_stopped_json_start_prints_the_error_object() {
    let rig = Stalling::new();
    let timed = Running::spawn(
        rig.home.path(),
        &[
            "up",
            &rig.url,
            "--name",
            "t",
            "--no-snapshot",
            "--timeout",
            "3s",
            "--json",
        ],
    )
    .finish(Duration::from_secs(30));
    assert_eq!(timed.status.code(), Some(1), "{}", stderr(&timed));
    let v: serde_json::Value = serde_json::from_slice(&timed.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(&timed)));
    assert_eq!(v["error"]["kind"], "timeout", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not finish within 3s"),
        "{v}"
    );

    let running = up_until_stalled(
        rig.home.path(),
        &rig.proxy,
        &["up", &rig.url, "--name", "i", "--no-snapshot", "--json"],
    );
    running.signal(Signal::INT);
    let out = running.finish(Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(&out)));
    assert_eq!(v["error"]["kind"], "cancelled", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("removed sandbox i"),
        "{v}"
    );
}

/// `up URL --name slow --timeout TIMEOUT` exits 1 saying `says`, leaving nothing;
/// how long it took.
fn slow_up_fails_with(home: &Path, url: &str, timeout: &str, says: &str) -> Duration {
    let t = Instant::now();
    let out = Running::spawn(
        home,
        &[
            "up",
            url,
            "--name",
            "slow",
            "--no-snapshot",
            "--timeout",
            timeout,
        ],
    )
    .finish(Duration::from_secs(90));
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(says), "{}", stderr(&out));
    assert!(ls_names(home).is_empty());
    assert!(!sandbox_dir(home, "slow").exists(), "nothing left");
    took
}

#[test]
fn up_timeout_zero_still_fails_a_trickling_server_by_the_low_speed_limit() {
    let up = big_upstream();
    let server = GitHttpServer::start(up.root()).unwrap();
    // 16 bytes a second: far below 1 KiB/s, never silent for long
    let proxy = TrickleProxy::trickle(server.addr(), 16, Duration::from_secs(1)).unwrap();
    let url = format!(
        "http://{}/{}",
        proxy.addr(),
        up.name().trim_start_matches('/')
    );
    let home = crate::TestHome::new();

    let took = slow_up_fails_with(
        home.path(),
        &url,
        "0",
        "the server sent less than 1024 B/s for 30s",
    );
    // the low-speed window (30 s), not the proxy giving up (60 s)
    assert!(took < Duration::from_secs(50), "took {took:?}");
}

#[test]
fn a_sandbox_whose_workspace_was_removed_is_broken_refused_and_pruned() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let home = crate::TestHome::new();
    let started = json(&headstart(
        home.path(),
        &["up", &url, "--name", "gone", "--no-snapshot", "--json"],
    ));
    let ws = PathBuf::from(started["sandbox"]["workspace"].as_str().unwrap());
    std::fs::remove_dir_all(&ws).unwrap();

    // never listed as running
    let ls = json(&headstart(home.path(), &["ls", "--json"]));
    let row = &ls.as_array().unwrap()[0];
    assert_eq!(row["name"], "gone");
    assert_eq!(row["state"], "broken", "{row}");
    assert_eq!(row["status"], "broken", "{row}");
    assert_eq!(row["running"], false, "{row}");

    // never reconnected as a success
    let again = headstart(home.path(), &["up", &url, "--name", "gone"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("no longer exists"),
        "{}",
        stderr(&again)
    );

    // prune removes it and says so; the name then starts afresh
    let pruned = json(&headstart(home.path(), &["prune", "--json"]));
    let orphans = pruned["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{pruned}");
    assert_eq!(orphans[0]["name"], "gone", "{pruned}");
    assert!(ls_names(home.path()).is_empty());
    let fresh = headstart(home.path(), &["up", &url, "--name", "gone", "--json"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert_clean_checkout(&ws, &up.tip("main").unwrap());
}
