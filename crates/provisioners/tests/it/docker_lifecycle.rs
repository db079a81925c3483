//! The Docker provider's lifecycle against the real engine: data-directory isolation,
//! one start per name, `creating` until `mark_ready`, interrupted starts repaired and
//! pruned (skipped with a reason where no engine runs, failing instead when
//! `HEADSTART_REQUIRE_DOCKER=1`).
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)] // tests may panic and print

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use provisioners::docker::{DockerConfig, DockerProvider, LABEL_DATA_DIR};
use sandbox_core::{
    CancelToken, ConnectOptions, Connected, Error, Sandbox, SandboxName, SandboxProvider,
    SandboxState,
};
use tokio::io::AsyncBufReadExt;

use crate::docker_common::{Fixture, TEST_SCOPE_LABEL, stdout};

macro_rules! fixture {
    ($test:expr) => {
        match Fixture::new($test).await {
            Some(f) => f,
            None => return,
        }
    };
}

/// Whether the engine still has container `id`, and whether it runs.
async fn container_state(f: &Fixture, id: &str) -> Option<bool> {
    match f.docker.inspect_container(id, None).await {
        Ok(c) => Some(c.state.and_then(|s| s.running).unwrap_or(false)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => None,
        Err(e) => panic!("inspecting {id}: {e}"),
    }
}

/// A second provider on the fixture's engine, with a data directory of its own and the
/// fixture's scope label (so the fixture's cleanup covers its containers).
fn second_provider(f: &Fixture, dir: &str) -> DockerProvider {
    DockerProvider::new(
        f.docker.clone(),
        DockerConfig::new(f.path(dir)).scope_label(TEST_SCOPE_LABEL, f.scope.clone()),
    )
}

#[tokio::test]
async fn two_data_dirs_with_one_sandbox_name_stay_apart() {
    let f = fixture!("two_data_dirs_with_one_sandbox_name_stay_apart");
    let a = &f.provider;
    let b = second_provider(&f, "data-b");
    let name = f.name("same");
    assert_ne!(a.container_name(&name), b.container_name(&name));

    let options = ConnectOptions::new().name(name.clone());
    let (in_a, how) = a.connect_sandbox(&options).await.unwrap();
    assert_eq!(how, Connected::Created);
    std::fs::write(in_a.workspace().join("whose.txt"), "A").unwrap();

    // B replaces "its" sandbox of that name: A's is not B's to replace.
    let (in_b, how) = b
        .connect_sandbox(&options.clone().force_create(true))
        .await
        .unwrap();
    assert_eq!(how, Connected::Created);
    assert_ne!(in_b.id(), in_a.id());
    assert_ne!(in_b.workspace(), in_a.workspace());
    assert_eq!(container_state(&f, in_a.id()).await, Some(true));
    let labels = f
        .docker
        .inspect_container(in_b.id(), None)
        .await
        .unwrap()
        .config
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(
        labels.get(LABEL_DATA_DIR).map(String::as_str),
        b.data_dir().to_str()
    );

    // A's handle and a fresh reconnect through A both run in A's container.
    assert_eq!(stdout(&in_a, &["cat", "whose.txt"]).await, "A");
    let (again, how) = a.connect(&options).await.unwrap();
    assert_eq!(how, Connected::Reconnected);
    assert_eq!(again.id(), in_a.id());
    assert_eq!(stdout(&*again, &["cat", "whose.txt"]).await, "A");
    assert_eq!(a.get(&name).await.unwrap().unwrap().id(), in_a.id());
    assert_eq!(b.get(&name).await.unwrap().unwrap().id(), in_b.id());
    let ids = |l: Vec<sandbox_core::SandboxInfo>| l.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(a.list().await.unwrap()), vec![in_a.id().to_owned()]);
    assert_eq!(ids(b.list().await.unwrap()), vec![in_b.id().to_owned()]);

    // A's remove leaves B's sandbox alone.
    a.remove(&name).await.unwrap();
    assert_eq!(container_state(&f, in_a.id()).await, None);
    assert!(!in_a.workspace().exists());
    assert_eq!(container_state(&f, in_b.id()).await, Some(true));
    assert!(in_b.workspace().is_dir());
    assert_eq!(b.get(&name).await.unwrap().unwrap().id(), in_b.id());
    assert!(a.get(&name).await.unwrap().is_none());

    // A container that is not ours holding the name A would give: a clear error, and
    // it is left alone.
    let other = f.name("taken");
    let cname = a.container_name(&other);
    let foreign = f
        .docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&cname)
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(in_b.image_id().to_owned()),
                labels: Some(HashMap::from([(
                    TEST_SCOPE_LABEL.to_owned(),
                    f.scope.clone(),
                )])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = a
        .connect(&ConnectOptions::new().name(other.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&cname) && err.contains("is not sandbox"),
        "{err}"
    );
    assert!(container_state(&f, &foreign.id).await.is_some());
    assert!(matches!(
        a.remove(&other).await.unwrap_err(),
        Error::SandboxNotFound { .. }
    ));
    assert!(container_state(&f, &foreign.id).await.is_some());

    in_b.remove().await.unwrap();
    assert_eq!(container_state(&f, in_b.id()).await, None);
    assert!(b.get(&name).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_of_one_name_wait_for_the_winner() {
    let f = fixture!("concurrent_starts_of_one_name_wait_for_the_winner");
    let name = f.name("race");
    let options = ConnectOptions::new().name(name.clone()).defer_ready(true);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (provider, options, barrier) = (f.provider.clone(), options.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let (sandbox, how) = provider.connect_sandbox(&options).await.unwrap();
            if how == Connected::Created {
                assert!(sandbox.holds_start_lock());
                // The winner fills the workspace while the others wait; meanwhile the
                // sandbox is not offered to anyone.
                std::fs::write(sandbox.workspace().join("checkout.txt"), "done").unwrap();
                assert!(provider.get(sandbox.name()).await.unwrap().is_none());
                let listed = provider.list().await.unwrap();
                assert_eq!(listed.len(), 1, "{listed:?}");
                assert_eq!(listed[0].state, SandboxState::Creating);
                tokio::time::sleep(Duration::from_millis(300)).await;
                let out = stdout(&sandbox, &["sh", "-c", "echo ran > recipe.txt"]).await;
                assert_eq!(out, "");
                sandbox.mark_ready().await.unwrap();
                assert!(!sandbox.holds_start_lock());
            }
            // Whoever returns sees a complete sandbox.
            let complete = sandbox.workspace().join("checkout.txt").is_file()
                && sandbox.workspace().join("recipe.txt").is_file();
            (how, sandbox.id().to_owned(), complete)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let created = results
        .iter()
        .filter(|(how, ..)| *how == Connected::Created)
        .count();
    assert_eq!(created, 1, "{results:?}");
    let ids: BTreeSet<_> = results.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|(.., complete)| *complete),
        "{results:?}"
    );
    let id = ids.into_iter().next().unwrap();
    assert_eq!(f.scoped_containers().await, vec![id.clone()]);
    assert_eq!(container_state(&f, &id).await, Some(true));
    let got = f.provider.get(&name).await.unwrap().unwrap();
    assert_eq!(got.id(), id);
    assert_eq!(
        stdout(&*got, &["cat", "checkout.txt", "recipe.txt"]).await,
        "doneran\n"
    );
    let listed = f.provider.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, SandboxState::Ready);
}

#[tokio::test]
async fn an_interrupted_start_is_repaired_and_pruned() {
    let f = fixture!("an_interrupted_start_is_repaired_and_pruned");
    let name = f.name("crashed");
    let deferred = ConnectOptions::new().name(name.clone()).defer_ready(true);

    // A handle dropped without mark_ready: the start never completed.
    let (first, how) = f.provider.connect_sandbox(&deferred).await.unwrap();
    assert_eq!(how, Connected::Created);
    let first_id = first.id().to_owned();
    let listed = f.provider.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0].state,
        SandboxState::Creating,
        "its start holds the lock"
    );
    // the lock goes with the handle, as it goes with a killed process
    drop(first);
    assert!(f.provider.get(&name).await.unwrap().is_none());
    let listed = f.provider.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, first_id);
    assert_eq!(listed[0].state, SandboxState::Interrupted, "its start died");

    // The next connect of the name replaces it instead of reconnecting to it.
    let (second, how) = f
        .provider
        .connect(&ConnectOptions::new().name(name.clone()))
        .await
        .unwrap();
    assert_eq!(how, Connected::Created);
    assert_ne!(second.id(), first_id);
    assert_eq!(container_state(&f, &first_id).await, None);
    assert_eq!(f.scoped_containers().await, vec![second.id().to_owned()]);
    assert_eq!(
        f.provider.list().await.unwrap()[0].state,
        SandboxState::Ready
    );

    // prune removes an interrupted start, and leaves a ready one.
    let other = f.name("crashed-too");
    let (third, _) = f
        .provider
        .connect_sandbox(&ConnectOptions::new().name(other.clone()).defer_ready(true))
        .await
        .unwrap();
    let (third_id, third_ws) = (third.id().to_owned(), third.workspace().to_path_buf());
    // While its handle holds the start, prune skips it.
    assert!(f.provider.prune().await.unwrap().interrupted.is_empty());
    drop(third);
    let state_of = |listed: Vec<sandbox_core::SandboxInfo>, n: &SandboxName| {
        listed.into_iter().find(|i| &i.name == n).map(|i| i.state)
    };
    assert_eq!(
        state_of(f.provider.list().await.unwrap(), &other),
        Some(SandboxState::Interrupted)
    );
    let report = f.provider.prune().await.unwrap();
    assert_eq!(report.interrupted, vec![other.clone()]);
    assert_eq!(container_state(&f, &third_id).await, None);
    assert!(!third_ws.exists());
    assert_eq!(container_state(&f, second.id()).await, Some(true));
    assert!(f.provider.get(&name).await.unwrap().is_some());

    // remove() through a handle that holds the start reuses its lock (no self-deadlock).
    let (fourth, _) = f
        .provider
        .connect_sandbox(&ConnectOptions::new().name(other.clone()).defer_ready(true))
        .await
        .unwrap();
    let fourth_id = fourth.id().to_owned();
    tokio::time::timeout(Duration::from_secs(5), fourth.remove())
        .await
        .expect("remove through the lock-holding handle returns at once")
        .unwrap();
    assert_eq!(container_state(&f, &fourth_id).await, None);
    assert!(f.provider.get(&other).await.unwrap().is_none());
    // ... and the name is free again.
    let (_fifth, how) = tokio::time::timeout(
        Duration::from_secs(60),
        f.provider
            .connect(&ConnectOptions::new().name(other.clone())),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(how, Connected::Created);
}

#[tokio::test]
async fn a_cancelled_start_leaves_nothing_and_frees_the_name() {
    let f = fixture!("a_cancelled_start_leaves_nothing_and_frees_the_name");
    let name = f.name("cancelled");
    let token = CancelToken::new();
    token.cancel();
    let err = f
        .provider
        .connect(
            &ConnectOptions::new()
                .name(name.clone())
                .defer_ready(true)
                .cancel(token),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(f.scoped_containers().await.is_empty());
    let data = f.dir.path().join("data");
    assert!(!data.join("sandboxes").join(name.as_str()).exists());
    assert!(
        !data
            .join("containers")
            .join(format!("{name}.json"))
            .exists()
    );
    let (_sandbox, how) = tokio::time::timeout(
        Duration::from_secs(60),
        f.provider
            .connect(&ConnectOptions::new().name(name.clone())),
    )
    .await
    .expect("the name's lock is free")
    .unwrap();
    assert_eq!(how, Connected::Created);
}

/// Environment variables the child of [`a_start_killed_by_sigkill_is_repaired`] reads.
const CHILD_DATA: &str = "HS_LIFECYCLE_CHILD_DATA";
const CHILD_SCOPE: &str = "HS_LIFECYCLE_CHILD_SCOPE";
const CHILD_NAME: &str = "HS_LIFECYCLE_CHILD_NAME";
const CHILD_MARK: &str = "HS-CHILD-CREATED";

/// Run only as the child of [`a_start_killed_by_sigkill_is_repaired`]: starts a sandbox
/// with `defer_ready`, says so, and waits to be killed.
#[tokio::test]
#[ignore = "a helper process for a_start_killed_by_sigkill_is_repaired"]
async fn lifecycle_child_starts_and_waits() {
    let (Ok(data), Ok(scope), Ok(name)) = (
        std::env::var(CHILD_DATA),
        std::env::var(CHILD_SCOPE),
        std::env::var(CHILD_NAME),
    ) else {
        return;
    };
    let provider =
        DockerProvider::from_env(DockerConfig::new(data).scope_label(TEST_SCOPE_LABEL, scope))
            .await
            .unwrap();
    let options = ConnectOptions::new()
        .name(SandboxName::new(name).unwrap())
        .defer_ready(true);
    let (sandbox, how) = provider.connect_sandbox(&options).await.unwrap();
    assert_eq!(how, Connected::Created);
    println!("{CHILD_MARK} {}", sandbox.id());
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test]
async fn a_start_killed_by_sigkill_is_repaired() {
    let f = fixture!("a_start_killed_by_sigkill_is_repaired");
    let name = f.name("killed");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "docker_lifecycle::lifecycle_child_starts_and_waits",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DATA, f.dir.path().join("data"))
        .env(CHILD_SCOPE, &f.scope)
        .env(CHILD_NAME, name.as_str())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let child_id = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest prints `test <name> ... ` before it, on the same line
            if let Some((_, id)) = line.split_once(CHILD_MARK) {
                return id.trim().to_owned();
            }
        }
        panic!("the child ended before creating its sandbox");
    })
    .await
    .expect("the child creates its sandbox");

    // While the child holds the start, a connect of the name waits (here: times out)
    // and never sees the half-made sandbox as ready.
    let err = f
        .provider
        .connect(
            &ConnectOptions::new()
                .name(name.clone())
                .timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(f.provider.get(&name).await.unwrap().is_none());
    assert_eq!(container_state(&f, &child_id).await, Some(true));
    let listed = |f: &Fixture| {
        let p = f.provider.clone();
        async move {
            let all = p.list().await.unwrap();
            all.into_iter().map(|i| (i.id, i.state)).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(&f).await,
        [(child_id.clone(), SandboxState::Creating)],
        "another process holds its start"
    );

    // SIGKILL: no cleanup runs in the child; the kernel releases its lock.
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    assert!(f.provider.get(&name).await.unwrap().is_none());
    assert_eq!(
        listed(&f).await,
        [(child_id.clone(), SandboxState::Interrupted)],
        "its process is gone"
    );
    let (sandbox, how) = tokio::time::timeout(
        Duration::from_secs(60),
        f.provider
            .connect(&ConnectOptions::new().name(name.clone())),
    )
    .await
    .expect("the dead child's lock is free")
    .unwrap();
    assert_eq!(how, Connected::Created);
    assert_ne!(sandbox.id(), child_id);
    assert_eq!(container_state(&f, &child_id).await, None);
    assert_eq!(f.scoped_containers().await, vec![sandbox.id().to_owned()]);
}
