//! A workdir can never reach the provider's own data: the local and the Docker
//! provider refuse a workdir inside their data directory (a stored snapshot's
//! workspace, spelled through a symlinked or relative data directory, or with `..`)
//! or one containing it, before anything is created or written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use provisioners::local::LocalProvider;
use sandbox_core::{
    ConnectOptions, Error, SandboxName, SandboxProvider, SnapshotRequest, SnapshotStatus,
};

use crate::local_support::{TestHome, fingerprint, make_repo};

/// `to` relative to the current directory (`../../..` up to `/`, then `to`).
fn relative_from_cwd(to: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let ups = cwd.components().count() - 1;
    let mut rel = PathBuf::new();
    for _ in 0..ups {
        rel.push("..");
    }
    rel.join(to.strip_prefix("/").unwrap())
}

fn assert_refused(r: sandbox_core::Result<impl Sized>, what: &str) {
    match r {
        Err(Error::InvalidOptions(msg)) => {
            assert!(msg.contains("data directory"), "{what}: {msg}");
        }
        Err(e) => panic!("{what}: refused for the wrong reason: {e}"),
        Ok(_) => panic!("{what}: a workdir reaching the data directory was accepted"),
    }
}

#[tokio::test]
async fn local_refuses_workdirs_inside_or_around_its_data_in_any_spelling() {
    let t = TestHome::new();
    let home = t.path().join("home");
    let provider = LocalProvider::new(&home);
    // a real snapshot, as the builder makes them
    let (sb, _) = provider
        .connect(&ConnectOptions::new().name(SandboxName::new("src").unwrap()))
        .await
        .unwrap();
    make_repo(sb.workspace(), 5);
    let meta = sb
        .snapshot(&SnapshotRequest::new("demo-key", "digest"))
        .await
        .unwrap();
    assert_eq!(meta.status, SnapshotStatus::Ready);
    let stored = home
        .join("snapshots/demo-key")
        .join(meta.id.as_str())
        .join("workspace");
    assert!(stored.join(".git").is_dir(), "{}", stored.display());
    let before = fingerprint(&stored);

    let link = t.path().join("home-link");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    let rel_home = relative_from_cwd(&home);
    let snap_rel = Path::new("snapshots/demo-key")
        .join(meta.id.as_str())
        .join("workspace");
    let cases: Vec<(&str, LocalProvider, PathBuf)> = vec![
        (
            "symlinked data dir, workdir through the real path",
            LocalProvider::new(&link),
            home.join(&snap_rel),
        ),
        (
            "real data dir, workdir through the symlink",
            LocalProvider::new(&home),
            link.join(&snap_rel),
        ),
        (
            "relative data dir",
            LocalProvider::new(&rel_home),
            home.join(&snap_rel),
        ),
        (
            "relative workdir with `..`",
            LocalProvider::new(&link),
            relative_from_cwd(&t.path().join("elsewhere/.."))
                .join("home-link")
                .join(&snap_rel),
        ),
        (
            "a new directory inside the data dir",
            LocalProvider::new(&link),
            home.join("snapshots/not-yet"),
        ),
        (
            "a workdir containing the data dir",
            LocalProvider::new(&link),
            t.path().to_path_buf(),
        ),
    ];
    for (i, (what, p, workdir)) in cases.into_iter().enumerate() {
        let name = SandboxName::new(format!("w{i}")).unwrap();
        let r = p
            .connect(&ConnectOptions::new().name(name.clone()).workdir(&workdir))
            .await;
        assert_refused(r, what);
        assert!(p.get(&name).await.unwrap().is_none(), "{what}");
        assert!(
            !home.join("sandboxes").join(name.as_str()).exists(),
            "{what}"
        );
    }
    assert!(!home.join("snapshots/not-yet").exists(), "nothing created");
    assert!(!t.path().join("elsewhere").exists(), "nothing created");
    assert_eq!(fingerprint(&stored), before, "the snapshot is untouched");

    // a directory of one's own is fine, relative or not
    let mine = t.path().join("mine");
    let (ok, _) = LocalProvider::new(&link)
        .connect(
            &ConnectOptions::new()
                .name(SandboxName::new("mine").unwrap())
                .workdir(relative_from_cwd(&mine)),
        )
        .await
        .unwrap();
    assert_eq!(ok.workspace(), std::fs::canonicalize(&mine).unwrap());
}

#[cfg(feature = "docker")]
#[tokio::test]
async fn docker_refuses_workdirs_inside_or_around_its_data() {
    let Some(fx) =
        crate::docker_common::Fixture::new("docker_refuses_workdirs_inside_or_around_its_data")
            .await
    else {
        return;
    };
    let data = fx.provider.data_dir().to_path_buf();
    let stored = data.join("snapshots/k/1/workspace");
    std::fs::create_dir_all(&stored).unwrap();
    std::fs::write(stored.join("config"), "stored").unwrap();
    let link = fx.path("links").join("data");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    for (what, workdir) in [
        ("through a symlink", link.join("snapshots/k/1/workspace")),
        ("with `..`", data.join("snapshots/k/x/../1/workspace")),
        ("the data dir itself", data.clone()),
        ("containing it", fx.dir.path().to_path_buf()),
    ] {
        let name = fx.name("wd");
        let r = fx
            .provider
            .connect(&ConnectOptions::new().name(name.clone()).workdir(&workdir))
            .await;
        assert_refused(r, what);
        assert!(fx.provider.get(&name).await.unwrap().is_none(), "{what}");
    }
    assert!(fx.scoped_containers().await.is_empty(), "no container made");
    assert_eq!(
        std::fs::read_to_string(stored.join("config")).unwrap(),
        "stored"
    );
    assert!(!data.join("snapshots/k/x").exists(), "nothing created");
}
