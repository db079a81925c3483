//! `exec NAME cmd args` like `docker exec`: `--` optional, the command's own options
//! pass through, and a shell's exit statuses for programs that cannot start (127 not
//! found, 126 not executable).

use test_support::{GitHttpServer, Upstream};

use crate::{headstart, stderr, stdout};

#[test]
fn exec_takes_the_command_without_dashes_and_exits_like_a_shell() {
    let up = Upstream::new("main", 2).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let home = crate::TestHome::new();
    let h = home.path();
    let o = headstart(
        h,
        &[
            "up",
            &server.url(up.name()),
            "--name",
            "box",
            "--no-snapshot",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ws: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ws = std::path::PathBuf::from(ws["sandbox"]["workspace"].as_str().unwrap());

    let o = headstart(h, &["exec", "box", "false"]);
    assert_eq!(o.status.code(), Some(1));
    let o = headstart(h, &["exec", "box", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "no `--` needed: {}", stderr(&o));
    let o = headstart(h, &["exec", "box", "printf", "%s|", "-x", "--json", "a b"]);
    assert_eq!(
        stdout(&o),
        "-x|--json|a b|",
        "everything after the program is its own"
    );
    let o = headstart(
        h,
        &["exec", "box", "--", "printf", "%s", "dashes still work"],
    );
    assert_eq!(stdout(&o), "dashes still work");

    let o = headstart(h, &["exec", "box", "no-such-program-here"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("command not found"), "{}", stderr(&o));
    let o = headstart(h, &["exec", "--json", "box", "no-such-program-here"]);
    assert_eq!(o.status.code(), Some(127));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    crate::schema::check("error", &v);
    assert_eq!(v["error"]["kind"], "command_not_found");

    std::fs::write(ws.join("notexecutable"), "#!/bin/sh\necho hi\n").unwrap();
    let o = headstart(h, &["exec", "box", "./notexecutable"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot run"), "{}", stderr(&o));
    let o = headstart(h, &["exec", "box", "sh", "-c", "exit 127"]);
    assert_eq!(
        o.status.code(),
        Some(127),
        "a command's own 127 passes through"
    );
}
