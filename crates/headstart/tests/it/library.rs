//! headstart as a library: the app layer (`headstart::Headstart`) starts, lists, uses
//! and removes a sandbox without the binary, and its outcomes serialize to what the
//! CLI's `--json` prints (checked against the same schemas).

use std::time::Duration;

use headstart::{Config, ExecRequest, Headstart, UpRequest};
use sandbox_core::StartPath;
use test_support::{GitHttpServer, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_ls_exec_down_through_the_app_layer() {
    let up = Upstream::new("trunk", 20).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let home = crate::TestHome::new();
    // an explicit configuration: no environment read, builds in this process
    let app = Headstart::new(Config::new(home.path()));

    let mut req = UpRequest::new(server.url(up.name()));
    req.name = Some("lib".into());
    let started = app.up(req).await.unwrap();
    assert_eq!(started.report.path, StartPath::Cold);
    assert_eq!(started.sandbox.name.as_str(), "lib");
    let tip = up.tip("trunk").unwrap();
    assert_eq!(started.report.head.as_ref().unwrap().commit, tip);
    assert_eq!(started.provider, "local");
    crate::schema::check("up", &serde_json::to_value(&started).unwrap());
    // the snapshot for next time is built in-process; wait for it
    assert_eq!(started.builds.wait(Duration::from_secs(120)).await, 0);
    let snaps = app.snapshot_ls(None).await.unwrap();
    assert_eq!(snaps.snapshots.len(), 1, "{snaps:?}");
    crate::schema::check("snapshot-ls", &serde_json::to_value(&snaps).unwrap());

    let ls = app.ls(false).await.unwrap();
    assert_eq!(ls.sandboxes.len(), 1);
    assert_eq!(ls.sandboxes[0].branch.as_deref(), Some("trunk"));
    crate::schema::check("ls", &serde_json::to_value(&ls).unwrap());

    let ran = app
        .exec(ExecRequest::new(
            "lib",
            vec!["git".into(), "rev-parse".into(), "HEAD".into()],
        ))
        .await
        .unwrap();
    assert_eq!(ran.status, 0, "{ran:?}");
    assert_eq!(ran.stdout.trim(), tip);
    crate::schema::check("exec", &serde_json::to_value(&ran).unwrap());

    let e = app
        .exec(ExecRequest::new("nope", vec!["true".into()]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "sandbox_not_found");
    assert!(e.is_user_error());

    let down = app.down(&["lib".into()], false, None).await.unwrap();
    assert_eq!(down.removed.len(), 1);
    crate::schema::check("down", &serde_json::to_value(&down).unwrap());
    assert!(app.ls(false).await.unwrap().sandboxes.is_empty());
}
