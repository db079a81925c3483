//! The public API of headstart as an outside crate uses it: one flow through
//! `snapshot_refresh::prelude`, errors matched by kind, cleanup that leaves nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use std::path::{Path, PathBuf};

use snapshot_refresh::Phase;
use snapshot_refresh::prelude::*;

/// A `file://` upstream made with git2: one commit on `trunk` with a README.
fn upstream(dir: &Path) -> PathBuf {
    let path = dir.join("upstream");
    let repo = git2::Repository::init(&path).unwrap();
    repo.set_head("refs/heads/trunk").unwrap();
    commit(&repo, "README", "hello\n");
    path
}

fn commit(repo: &git2::Repository, file: &str, text: &str) -> git2::Oid {
    let root = repo.workdir().unwrap();
    std::fs::write(root.join(file), text).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new(file)).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("api", "api@example.com").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, file, &tree, &parents)
        .unwrap()
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Mount points under `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| Path::new(m).starts_with(&dir))
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn cold_then_warm_exec_remove_leaves_nothing() -> Result<(), snapshot_refresh::Error> {
    let tmp = tempfile::tempdir().unwrap();
    let up = upstream(tmp.path());
    let data = tmp.path().join("data");
    let fast = FastStart::builder()
        .provider(LocalProvider::new(&data))
        .data_dir(&data)
        .build()?;
    assert!(
        data.join("state").is_dir(),
        "builder state goes to <data_dir>/state"
    );
    let source = Source::parse(&file_url(&up))?;

    let cold = fast.start(&source, &ConnectOptions::new()).await?;
    assert_eq!(cold.report.path, StartPath::Cold, "{}", cold.report);
    let key = cold.key.clone().unwrap();
    let built = fast.snapshot_builder().wait(&key).await.unwrap();
    let built = built.unwrap_or_else(|e| panic!("build failed ({}): {e}", e.kind()));

    let repo = git2::Repository::open(&up).unwrap();
    let tip = commit(&repo, "NEWS", "news\n");
    let warm = fast
        .start(
            &source,
            &ConnectOptions::new().name(SandboxName::new("warm-one")?),
        )
        .await?;
    assert_eq!(warm.report.path, StartPath::Warm, "{}", warm.report);
    assert_eq!(warm.snapshot.as_ref().unwrap().id, built.snapshot.id);
    assert_eq!(warm.report.head.as_ref().unwrap().commit, tip.to_string());

    let out = warm
        .sandbox
        .exec(&ExecRequest::new(["cat", "README", "NEWS"])?)
        .await?;
    assert!(out.success(), "{out:?} {}", out.stderr_lossy());
    assert_eq!(out.stdout_lossy(), "hello\nnews\n");

    let (cold_ws, warm_ws) = (
        cold.sandbox.workspace().to_path_buf(),
        warm.sandbox.workspace().to_path_buf(),
    );
    assert!(cold_ws.is_dir() && warm_ws.is_dir());
    cold.remove().await?;
    warm.remove().await?;
    assert!(!cold_ws.exists() && !warm_ws.exists());
    assert_eq!(mounts_under(&data), Vec::<String>::new());
    assert_eq!(entries(&data.join("sandboxes")), Vec::<String>::new());
    // the snapshot persists, by design
    let snap = fast.provider().snapshots().get(&built.snapshot.id).await?;
    assert!(snap.is_some());
    Ok(())
}

#[tokio::test]
async fn prebuilt_false_clones_and_prebuilt_true_restores() -> Result<(), snapshot_refresh::Error> {
    let tmp = tempfile::tempdir().unwrap();
    let up = upstream(tmp.path());
    let data = tmp.path().join("data");
    let fast = FastStart::builder()
        .provider(LocalProvider::new(&data))
        .data_dir(&data)
        .build()?;
    let source = Source::parse(&file_url(&up))?;

    let first = fast.start(&source, &ConnectOptions::new()).await?;
    fast.snapshot_builder()
        .wait(first.key.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    first.remove().await?;

    let off = fast
        .start(&source.clone().prebuilt(false), &ConnectOptions::new())
        .await?;
    assert_eq!(off.report.path, StartPath::Cold, "{}", off.report);
    assert!(
        off.report.reason.contains("prebuilt(false)"),
        "{}",
        off.report
    );
    assert!(
        off.report.phase(Phase::GitClone).is_some(),
        "{}",
        off.report
    );
    let off_snapshot = off.snapshot.clone();
    off.remove().await?;

    let on = fast
        .start(&source.clone().prebuilt(true), &ConnectOptions::new())
        .await?;
    assert_eq!(on.report.path, StartPath::Warm, "{}", on.report);
    // synced from the snapshot (fetch + checkout), not cloned
    assert!(on.report.phase(Phase::GitSync).is_some(), "{}", on.report);
    assert!(on.report.phase(Phase::GitClone).is_none(), "{}", on.report);
    assert!(off_snapshot.is_none() && on.snapshot.is_some());
    on.remove().await?;
    assert_eq!(mounts_under(&data), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn errors_are_matched_by_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let up = upstream(tmp.path());
    let data = tmp.path().join("data");
    // no data dir: a typed error, not a panic
    let err = FastStart::builder()
        .provider(LocalProvider::new(&data))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_options", "{err}");

    let fast = FastStart::local(&data).unwrap();
    let bad_url: snapshot_refresh::Error = Source::parse("https://user:pw@example.com/a/b")
        .unwrap_err()
        .into();
    assert_eq!(bad_url.kind(), "invalid_url");
    assert!(bad_url.is_user_error());

    let missing = Source::parse(&file_url(&up))
        .unwrap()
        .with_branch(BranchName::new("no-such-branch").unwrap())
        .unwrap();
    let err = fast
        .start(&missing, &ConnectOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "branch_not_found", "{err}");
    assert_eq!(
        entries(&data.join("sandboxes")),
        Vec::<String>::new(),
        "a failed start leaves nothing"
    );

    let fast = fast.eligibility(snapshot_refresh::Eligibility::none());
    let err = fast
        .key_for(&Source::parse(&file_url(&up)).unwrap())
        .unwrap_err();
    assert_eq!(err.kind(), "not_eligible");
    assert!(matches!(
        err,
        snapshot_refresh::Error::NotEligible(snapshot_refresh::NotEligible::Disabled)
    ));
}

#[test]
fn a_guard_removes_on_drop_outside_a_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let up = upstream(tmp.path());
    let data = tmp.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fast = FastStart::local(&data).unwrap();
    let source = Source::parse(&file_url(&up)).unwrap().prebuilt(false);
    let guard = rt
        .block_on(fast.start(&source, &ConnectOptions::new()))
        .unwrap()
        .remove_on_drop();
    let ws = guard.sandbox.workspace().to_path_buf();
    assert!(ws.join("README").is_file());
    drop(guard); // no runtime entered here: removes before returning
    assert!(!ws.exists());
    assert_eq!(entries(&data.join("sandboxes")), Vec::<String>::new());
}

/// A warm start (restored from a snapshot: an overlay mount when the machine allows
/// one) held by a guard; dropped without waiting, as at the end of a test, it leaves no
/// workspace, sandbox directory or mount behind by the time `drop` returns.
async fn guard_dropped_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let up = upstream(tmp.path());
    let data = tmp.path().join("data");
    let fast = FastStart::local(&data).unwrap();
    let source = Source::parse(&file_url(&up)).unwrap();
    let cold = fast
        .start(&source, &ConnectOptions::new())
        .await
        .unwrap()
        .remove_on_drop();
    let key = cold.key.clone().unwrap();
    fast.snapshot_builder().wait(&key).await.unwrap().unwrap();
    let warm = fast
        .start(&source, &ConnectOptions::new())
        .await
        .unwrap()
        .remove_on_drop();
    assert_eq!(warm.report.path, StartPath::Warm, "{}", warm.report);
    let (cold_ws, warm_ws) = (
        cold.sandbox.workspace().to_path_buf(),
        warm.sandbox().workspace().to_path_buf(),
    );
    assert!(warm_ws.join("README").is_file());
    drop(warm);
    drop(cold);
    assert!(!warm_ws.exists() && !cold_ws.exists());
    assert_eq!(mounts_under(&data), Vec::<String>::new());
    assert_eq!(entries(&data.join("sandboxes")), Vec::<String>::new());
}

#[tokio::test] // current-thread: the removal runs on a thread of its own, joined
async fn a_guard_removes_on_drop_in_a_current_thread_runtime() {
    guard_dropped_leaves_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_removes_on_drop_in_a_multi_thread_runtime() {
    guard_dropped_leaves_nothing().await;
}

#[test]
fn a_guard_dropped_at_the_end_of_tokio_main_is_removed() {
    // what `#[tokio::main] async fn main` does: the guard is dropped inside `block_on`,
    // and the runtime shuts down right after (a spawned removal would be cancelled)
    let tmp = tempfile::tempdir().unwrap();
    let up = upstream(tmp.path());
    let data = tmp.path().join("data");
    let ws = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let fast = FastStart::local(&data).unwrap();
        // prebuilt(false): no background build to be cut short by the shutdown
        let source = Source::parse(&file_url(&up)).unwrap().prebuilt(false);
        let guard = fast
            .start(&source, &ConnectOptions::new())
            .await
            .unwrap()
            .remove_on_drop();
        guard.sandbox.workspace().to_path_buf()
    });
    assert!(!ws.exists());
    assert_eq!(entries(&data.join("sandboxes")), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_build_converts_with_question_mark_and_keeps_its_kind() {
    // `?` from wait's BuildError into snapshot_refresh::Error, as a library user writes it
    async fn cold_then_build(fast: &FastStart, source: &Source) -> snapshot_refresh::Result<()> {
        let cold = fast.start(source, &ConnectOptions::new()).await?;
        let key = cold.key.clone().expect("eligible");
        let built = fast
            .snapshot_builder()
            .wait(&key)
            .await
            .expect("a build started");
        cold.remove().await?;
        built?;
        Ok(())
    }
    let tmp = tempfile::tempdir().unwrap();
    let up = upstream(tmp.path());
    let fast = FastStart::local(tmp.path().join("data"))
        .unwrap()
        .recipe(Recipe::empty().command(RecipeCommand::new(["false"]).unwrap()));
    let source = Source::parse(&file_url(&up)).unwrap();
    let err = cold_then_build(&fast, &source).await.unwrap_err();
    assert_eq!(err.kind(), "recipe_failed", "{err}");
    assert!(matches!(err, snapshot_refresh::Error::Build(_)), "{err:?}");
    assert!(!err.is_user_error());
}
