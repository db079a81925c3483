//! The local provider's lifecycle: a `defer_ready` sandbox stays `creating` with its
//! name locked by the handle until `mark_ready` or `remove`; an interrupted creation is
//! repaired by the next `connect` and removed by `prune`; `prune` leaves busy names
//! alone and unlinks the lock files of names that are gone, safely for waiters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::time::Duration;

use sandbox_core::{
    CancelToken, ConnectOptions, Connected, Error, SandboxName, SandboxProvider, SandboxState,
};

use crate::local_support::TestHome;

fn name(s: &str) -> SandboxName {
    SandboxName::new(s).unwrap()
}

fn deferred(n: &str) -> ConnectOptions {
    ConnectOptions::new().name(name(n)).defer_ready(true)
}

const BOUND: Duration = Duration::from_secs(20);

#[tokio::test]
async fn defer_ready_keeps_a_new_sandbox_creating_and_its_name_locked_until_mark_ready() {
    let home = TestHome::new();
    let p = home.provider();
    let (a, how) = p.connect(&deferred("box")).await.unwrap();
    assert_eq!(how, Connected::Created);
    assert!(p.get(&name("box")).await.unwrap().is_none(), "not offered");
    let list = p.list().await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        list[0].state,
        SandboxState::Creating,
        "its start holds the lock"
    );
    assert_eq!(p.state(&name("box")).unwrap(), Some(SandboxState::Creating));

    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.connect(&ConnectOptions::new().name(name("box"))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "a second connect waits on the lock");
    fs::write(a.workspace().join("cloned.txt"), "x").unwrap();
    tokio::time::timeout(BOUND, a.mark_ready())
        .await
        .unwrap()
        .unwrap();

    let (b, how) = tokio::time::timeout(BOUND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(how, Connected::Reconnected, "it finds the finished sandbox");
    assert_eq!(b.id(), a.id());
    assert!(b.workspace().join("cloned.txt").exists());
    let list = p.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, SandboxState::Ready);
    // mark_ready again (and on a reconnected handle) changes nothing
    a.mark_ready().await.unwrap();
    b.mark_ready().await.unwrap();
    assert_eq!(p.state(&name("box")).unwrap(), Some(SandboxState::Ready));
}

#[tokio::test]
async fn remove_through_a_creating_handle_uses_its_own_lock_and_removes_the_lock_file() {
    let home = TestHome::new();
    let p = home.provider();
    let (a, _) = p.connect(&deferred("box")).await.unwrap();
    let dir = p.home().join("sandboxes/box");
    assert!(dir.exists() && p.home().join("locks/box.lock").exists());
    // taking the lock again from this process would wait forever: bounded here
    tokio::time::timeout(BOUND, a.remove())
        .await
        .expect("remove does not wait on its own lock")
        .unwrap();
    assert!(!dir.exists());
    assert!(!p.home().join("locks/box.lock").exists());
    assert_eq!(p.state(&name("box")).unwrap(), None);
    let (_, how) = p
        .connect(&ConnectOptions::new().name(name("box")))
        .await
        .unwrap();
    assert_eq!(how, Connected::Created, "the name is free again");
}

#[tokio::test]
async fn a_creating_sandbox_whose_owner_died_is_repaired_by_the_next_connect() {
    let home = TestHome::new();
    let p = home.provider();
    let (a, _) = p.connect(&deferred("box")).await.unwrap();
    fs::write(a.workspace().join("half.txt"), "half a clone").unwrap();
    let old_id = a.id().to_owned();
    // the lock goes with the handle, as it goes with a killed process
    drop(a);
    assert_eq!(
        p.state(&name("box")).unwrap(),
        Some(SandboxState::Interrupted)
    );
    assert!(p.get(&name("box")).await.unwrap().is_none());

    let (b, how) = p
        .connect(&ConnectOptions::new().name(name("box")))
        .await
        .unwrap();
    assert_eq!(how, Connected::Created, "replaced, not reconnected");
    assert_ne!(b.id(), old_id);
    assert!(!b.workspace().join("half.txt").exists());
    assert_eq!(p.state(&name("box")).unwrap(), Some(SandboxState::Ready));
}

#[tokio::test]
async fn list_says_creating_while_a_start_holds_the_name_and_interrupted_once_it_died() {
    let home = TestHome::new();
    let p = home.provider();
    p.connect(&ConnectOptions::new().name(name("done")))
        .await
        .unwrap();
    let (busy, _) = p.connect(&deferred("busy")).await.unwrap();
    let (dead, _) = p.connect(&deferred("dead")).await.unwrap();
    let dead_id = dead.id().to_owned();
    // the lock goes with the handle, as it goes with a killed process
    drop(dead);

    let list = p.list().await.unwrap();
    let states: Vec<_> = list.iter().map(|i| (i.name.as_str(), i.state)).collect();
    assert_eq!(
        states,
        [
            ("busy", SandboxState::Creating),
            ("dead", SandboxState::Interrupted),
            ("done", SandboxState::Ready),
        ]
    );
    let dead_info = &list[1];
    assert_eq!(dead_info.id, dead_id);
    assert!(!dead_info.running, "nothing runs an interrupted creation");
    assert_eq!(
        p.state(&name("dead")).unwrap(),
        Some(SandboxState::Interrupted)
    );
    assert!(p.get(&name("dead")).await.unwrap().is_none(), "not offered");

    // listing took no lock it kept: prune (the same lock test) agrees and repairs
    let report = p.prune().await.unwrap();
    assert_eq!(report.interrupted, vec![name("dead")]);
    assert_eq!(report.busy, vec![name("busy")]);
    busy.mark_ready().await.unwrap();
    let states: Vec<_> = p
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.state))
        .collect();
    assert_eq!(
        states,
        [
            (name("busy"), SandboxState::Ready),
            (name("done"), SandboxState::Ready)
        ]
    );
}

#[tokio::test]
async fn prune_removes_interrupted_creations_skips_busy_names_and_unlinks_stale_locks() {
    let home = TestHome::new();
    let p = home.provider();
    let (dead, _) = p.connect(&deferred("dead")).await.unwrap();
    drop(dead);
    let (busy, _) = p.connect(&deferred("busy")).await.unwrap();
    p.connect(&ConnectOptions::new().name(name("gone")))
        .await
        .unwrap();
    p.remove(&name("gone")).await.unwrap();
    let locks = p.home().join("locks");
    assert!(
        !locks.join("gone.lock").exists(),
        "remove takes its lock file"
    );
    fs::write(locks.join("ghost.lock"), "").unwrap();

    let report = p.prune().await.unwrap();
    assert_eq!(report.interrupted, vec![name("dead")]);
    assert_eq!(report.busy, vec![name("busy")]);
    assert_eq!(
        report.stale_locks, 1,
        "ghost (dead's went with it): {report:?}"
    );
    assert!(report.orphans.is_empty() && report.expired.is_empty());
    assert!(!p.home().join("sandboxes/dead").exists());
    assert!(!locks.join("dead.lock").exists() && !locks.join("ghost.lock").exists());
    assert!(
        p.home().join("sandboxes/busy").exists(),
        "a start in progress is kept"
    );
    assert!(locks.join("busy.lock").exists());

    busy.mark_ready().await.unwrap();
    let names: Vec<_> = p
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec![name("busy")]);
}

#[tokio::test]
async fn a_waiter_on_an_unlinked_lock_file_locks_the_file_the_path_names() {
    let home = TestHome::new();
    let p = home.provider();
    let (a, _) = p.connect(&deferred("x")).await.unwrap();
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.connect(&deferred("x")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // unlinks locks/x.lock while holding it; the waiter has the old file open
    a.remove().await.unwrap();
    let (b, how) = tokio::time::timeout(BOUND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(how, Connected::Created);

    // b's lock must be the one a newcomer sees at the path, or two would hold the name
    let path = p.home().join("locks/x.lock");
    let f = fs::File::open(&path).expect("the lock file b holds exists");
    let got = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive);
    assert_eq!(
        got,
        Err(rustix::io::Errno::WOULDBLOCK),
        "b holds the file at the path"
    );
    b.mark_ready().await.unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .expect("free once b is ready");
}

#[tokio::test]
async fn a_connect_waiting_for_the_name_lock_stops_when_cancelled() {
    let home = TestHome::new();
    let p = home.provider();
    let (a, _) = p.connect(&deferred("box")).await.unwrap();
    let token = CancelToken::new();
    let waiter = {
        let p = p.clone();
        let token = token.clone();
        tokio::spawn(async move {
            p.connect(&ConnectOptions::new().name(name("box")).cancel(token))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    token.cancel();
    let got = tokio::time::timeout(BOUND, waiter).await.unwrap().unwrap();
    assert!(matches!(got, Err(Error::Cancelled { .. })), "{got:?}");
    // the holder's creation is untouched
    assert_eq!(p.state(&name("box")).unwrap(), Some(SandboxState::Creating));
    a.mark_ready().await.unwrap();
    assert!(p.get(&name("box")).await.unwrap().is_some());
}
