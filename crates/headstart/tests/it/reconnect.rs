//! `up` against what already exists, driving the binary: a reconnect honours or
//! refuses a different request (another repository, another branch, clean or dirty),
//! says what the sandbox actually holds, and `--workdir` can neither reach the data
//! directory nor clone over a user's files, nor add a sandbox per run.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::{GitDaemon, GitHttpServer, Upstream, git_in};

use crate::{headstart, json, stderr, stdout};

/// Runs `headstart` in `cwd` with `HEADSTART_HOME` exactly as given (a symlink, a
/// relative path).
fn headstart_in(cwd: &Path, home: impl AsRef<OsStr>, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .current_dir(cwd)
        .env("HEADSTART_HOME", home)
        .env_remove("HEADSTART_GIT_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env("HEADSTART_FEATURE_FLAGS_DISABLED", "1")
        .output()
        .expect("run headstart")
}

fn exits_2(o: &Output, what: &str) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "{what}: {}{}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

/// Every file under `dir` (relative path → bytes, symlinks as their target).
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if meta.is_dir() {
                stack.push(p);
                out.insert(rel, Vec::new());
            } else if meta.is_symlink() {
                out.insert(
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn names(home: &Path) -> Vec<String> {
    json(&headstart(home, &["ls", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

fn branch_of(ws: &str) -> String {
    git_in(Path::new(ws), &["rev-parse", "--abbrev-ref", "HEAD"])
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn workdir_inside_a_snapshot_is_refused_whatever_the_spelling_of_home() {
    let up = Upstream::new("main", 5).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let url = server.url(up.name());
    let t = crate::TestHome::new();
    let home = t.path().join("home");
    let o = headstart(&home, &["up", &url, "--name", "a", "--wait-snapshot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let snap = json(&headstart(&home, &["snapshot", "ls", "--json"]));
    let snap = snap["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] == "ready")
        .expect("a ready snapshot")
        .clone();
    let rel = PathBuf::from("snapshots")
        .join(snap["name"].as_str().unwrap())
        .join(snap["id"].as_str().unwrap())
        .join("workspace");
    let stored = home.join(&rel);
    assert!(stored.join(".git").is_dir(), "{}", stored.display());
    let before = contents(&stored);

    let link = t.path().join("home-link");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    let real = stored.to_str().unwrap().to_owned();
    let via_link = link.join(&rel).to_str().unwrap().to_owned();
    let rel_ws = Path::new("home").join(&rel).to_str().unwrap().to_owned();
    let dotdot = format!(
        "{via_link}/../../{}/workspace",
        snap["id"].as_str().unwrap()
    );
    let cases: Vec<(&OsStr, Vec<&str>)> = vec![
        // HEADSTART_HOME a symlink, the workdir through the real path (the reported bug)
        (
            link.as_os_str(),
            vec!["up", "--workdir", &real, "--name", "x1"],
        ),
        // and the other way round, with a repository too
        (home.as_os_str(), vec!["up", &url, "--workdir", &via_link]),
        // HEADSTART_HOME relative, the workdir relative
        (OsStr::new("home"), vec!["up", "--workdir", &rel_ws]),
        (OsStr::new("home-link"), vec!["up", "--workdir", &dotdot]),
        // a workdir containing the data directory
        (link.as_os_str(), vec!["up", "--workdir", "."]),
    ];
    for (home_env, args) in &cases {
        let o = headstart_in(t.path(), home_env, args);
        let err = exits_2(&o, &format!("HEADSTART_HOME={home_env:?} {args:?}"));
        assert!(err.contains("data directory"), "{err}");
    }
    assert_eq!(contents(&stored), before, "the snapshot is untouched");
    assert_eq!(names(&home), vec!["a".to_owned()], "no sandbox was added");
}

#[test]
fn reconnect_to_another_repository_is_refused() {
    let a = Upstream::new("main", 2).unwrap();
    let b = Upstream::new("main", 3).unwrap();
    let home = crate::TestHome::new();
    let v = json(&headstart(
        home.path(),
        &[
            "up",
            &a.file_url(),
            "--name",
            "t1",
            "--no-snapshot",
            "--json",
        ],
    ));
    let ws = v["sandbox"]["workspace"].as_str().unwrap().to_owned();
    let o = headstart(
        home.path(),
        &["up", &b.file_url(), "--name", "t1", "--no-snapshot"],
    );
    let err = exits_2(&o, "another repository");
    assert!(
        err.contains(&a.path().display().to_string())
            && err.contains(&b.path().display().to_string())
            && err.contains("--force-create"),
        "{err}"
    );
    assert_eq!(
        git_in(Path::new(&ws), &["rev-parse", "HEAD"])
            .unwrap()
            .trim(),
        a.tip("main").unwrap()
    );
    assert_eq!(names(home.path()), vec!["t1".to_owned()]);
}

#[test]
fn reconnect_with_another_branch_switches_when_clean_and_refuses_when_dirty() {
    let up = Upstream::new("main", 3).unwrap();
    up.create_branch("other", "main").unwrap();
    let other_tip = up.advance("other", 1).unwrap();
    let url = up.file_url();
    let home = crate::TestHome::new();
    let first = json(&headstart(
        home.path(),
        &["up", &url, "--name", "t1", "--no-snapshot", "--json"],
    ));
    let ws = first["sandbox"]["workspace"].as_str().unwrap().to_owned();
    assert_eq!(branch_of(&ws), "main");

    let v = json(&headstart(
        home.path(),
        &["up", &url, "--name", "t1", "--branch", "other", "--json"],
    ));
    assert_eq!(v["path"], "reconnected", "{v}");
    assert_eq!(v["head"]["branch"], "other");
    assert_eq!(v["head"]["commit"], other_tip.as_str());
    assert!(v["reason"].as_str().unwrap().contains("switched"), "{v}");
    assert_eq!(branch_of(&ws), "other");
    assert_eq!(
        git_in(Path::new(&ws), &["rev-parse", "HEAD"])
            .unwrap()
            .trim(),
        other_tip
    );

    // no branch asked: as it is, and the report says what is there
    let v = json(&headstart(
        home.path(),
        &["up", &url, "--name", "t1", "--json"],
    ));
    assert_eq!(v["head"]["branch"], "other");
    assert_eq!(v["repo"], url.as_str());
    assert!(v["reason"].as_str().unwrap().contains("`other`"), "{v}");

    // a local change to a tracked file: refused, nothing touched
    let readme = Path::new(&ws).join("README.md");
    std::fs::write(&readme, "my edit\n").unwrap();
    let o = headstart(
        home.path(),
        &["up", &url, "--name", "t1", "--branch", "main"],
    );
    let err = exits_2(&o, "dirty switch");
    assert!(
        err.contains("README.md") && err.contains("stash") && err.contains("--force-create"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), "my edit\n");
    assert_eq!(branch_of(&ws), "other");
    assert_eq!(names(home.path()), vec!["t1".to_owned()]);
}

#[test]
fn a_sandbox_started_over_http_reconnects_over_git_protocol() {
    let up = Upstream::new("main", 3).unwrap();
    up.create_branch("other", "main").unwrap();
    let http = GitHttpServer::start(up.root()).unwrap();
    let daemon = GitDaemon::start(up.root()).unwrap();
    let (h, g) = (http.url(up.name()), daemon.url(up.name()));
    let home = crate::TestHome::new();
    let o = headstart(
        home.path(),
        &["up", &h, "--name", "t1", "--no-snapshot", "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&headstart(
        home.path(),
        &["up", &g, "--name", "t1", "--json"],
    ));
    assert_eq!(v["path"], "reconnected", "{v}");
    assert_eq!(v["repo"], h.as_str(), "the actual origin");
    assert!(
        v["reason"].as_str().unwrap().contains("another form"),
        "{v}"
    );
    // a switch fetches over the URL given, which becomes the origin
    let v = json(&headstart(
        home.path(),
        &["up", &g, "--name", "t1", "--branch", "other", "--json"],
    ));
    assert_eq!(v["head"]["branch"], "other", "{v}");
    assert_eq!(v["repo"], g.as_str());
}

#[test]
fn up_url_workdir_clones_into_an_empty_directory_and_refuses_a_full_one() {
    let up = Upstream::new("main", 3).unwrap();
    let url = up.file_url();
    let home = crate::TestHome::new();
    let mine = tempfile::tempdir().unwrap();
    let ws = mine.path().join("new-checkout");
    let v = json(&headstart(
        home.path(),
        &["up", &url, "--workdir", ws.to_str().unwrap(), "--json"],
    ));
    assert_eq!(v["path"], "workdir", "{v}");
    assert_eq!(v["head"]["commit"], up.tip("main").unwrap().as_str());
    assert_eq!(v["repo"], url.as_str());
    assert!(ws.join(".git").is_dir() && ws.join("README.md").is_file());
    let name = v["sandbox"]["name"].as_str().unwrap().to_owned();
    assert!(headstart(home.path(), &["down", &name]).status.success());
    assert!(
        ws.join("README.md").is_file(),
        "down keeps the user's directory"
    );

    // a checkout of the same repository: used as it is
    let v = json(&headstart(
        home.path(),
        &["up", &url, "--workdir", ws.to_str().unwrap(), "--json"],
    ));
    assert_eq!(v["path"], "workdir", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("holds"), "{v}");

    // anything else: refused, nothing written
    let full = mine.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("notes.txt"), "mine").unwrap();
    let args = [
        "up",
        &url,
        "--workdir",
        full.to_str().unwrap(),
        "--name",
        "f",
    ];
    let o = headstart(home.path(), &args);
    let err = exits_2(&o, "non-empty workdir");
    assert!(err.contains("not empty"), "{err}");
    assert!(
        !err.contains("--force-create to replace"),
        "no sandbox to replace; the hint is about the directory: {err}"
    );
    let o = headstart(home.path(), &[&args[..], &["--json"]].concat());
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    crate::schema::check("error", &v);
    assert_eq!(v["error"]["kind"], "workdir_unusable", "{v}");
    assert!(
        v["error"]["hint"].as_str().unwrap().contains("empty"),
        "{v}"
    );
    assert_eq!(
        contents(&full).into_keys().collect::<Vec<_>>(),
        vec![PathBuf::from("notes.txt")]
    );
    assert!(!names(home.path()).contains(&"f".to_owned()));
}

#[test]
fn up_workdir_twice_is_one_sandbox() {
    let home = crate::TestHome::new();
    let mine = tempfile::tempdir().unwrap();
    std::fs::write(mine.path().join("notes.txt"), "mine").unwrap();
    let link = home.path().with_extension("link");
    std::os::unix::fs::symlink(mine.path(), &link).unwrap();
    let first = headstart_in(
        mine.path(),
        home.path(),
        &["up", "--workdir", ".", "--json"],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let again = headstart_in(
        mine.path(),
        home.path(),
        &["up", "--workdir", ".", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["path"], "reconnected", "{v}");
    // the same directory through a symlink is the same sandbox
    let o = headstart(
        home.path(),
        &["up", "--workdir", link.to_str().unwrap(), "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&link).unwrap();
    assert_eq!(names(home.path()).len(), 1, "{:?}", names(home.path()));
}
