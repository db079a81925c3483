//! Removing what a start made: [`Started::remove`] and the opt-in [`SandboxGuard`].
//!
//! Not a lifecycle manager: sandboxes persist by design (see [`Started`]); this is for
//! callers that want one gone (tests, one-shot jobs).

use sandbox_core::Sandbox;
use tokio::runtime::RuntimeFlavor;

/// How long dropping a guard on a current-thread runtime waits for the removal.
const CURRENT_THREAD_DROP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

use crate::error::Result;
use crate::fast_start::Started;

impl Started {
    /// Removes the sandbox (its workspace, and for a sandbox restored by overlay its
    /// mount) through its handle. Snapshots are kept.
    ///
    /// # Errors
    /// The provider's error when the sandbox cannot be removed.
    pub async fn remove(self) -> Result<()> {
        self.sandbox.remove().await?;
        Ok(())
    }

    /// Keeps the sandbox only as long as the returned guard lives: dropping the
    /// guard removes it (testcontainers style). Best-effort: removal on drop cannot
    /// report an error (it is logged), and a process that exits or aborts without
    /// dropping the guard (`std::process::exit`, a panic with `panic = "abort"`, a
    /// kill) leaves the sandbox (the CLI's `prune` repairs that). Prefer
    /// [`SandboxGuard::remove`] where you can await it.
    pub fn remove_on_drop(self) -> SandboxGuard {
        SandboxGuard {
            started: Some(self),
        }
    }
}

/// A [`Started`] whose sandbox is removed when the guard is dropped (see
/// [`Started::remove_on_drop`]).
///
/// The removal has finished when `drop` returns, wherever the guard is dropped (at the
/// end of a `#[tokio::test]` or of `#[tokio::main]` too, where a spawned task would
/// be cancelled by the runtime's shutdown):
///
/// - inside a multi-thread tokio runtime: on this worker, in
///   [`block_in_place`](tokio::task::block_in_place);
/// - inside a current-thread runtime (which must not block): on a thread with a runtime
///   of its own, which `drop` waits for, at most 10 s: a provider whose client keeps
///   its connections on the runtime being blocked (a Docker client made on it) may not
///   finish meanwhile; the removal then goes on once that runtime runs again (not at
///   all if the process exits first). Use a multi-thread runtime
///   (`#[tokio::test(flavor = "multi_thread")]`) or [`remove`](Self::remove) there;
/// - outside any runtime: on a small runtime of its own.
///
/// ```
/// # #[cfg(feature = "local")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use snapshot_refresh::prelude::*;
/// # let tmp = tempfile::tempdir()?;
/// # let (upstream, data_dir) = (tmp.path().join("upstream"), tmp.path().join("data"));
/// # {
/// #     let repo = git2::Repository::init(&upstream)?;
/// #     let sig = git2::Signature::now("demo", "demo@example.com")?;
/// #     let tree = repo.find_tree(repo.index()?.write_tree()?)?;
/// #     repo.commit(Some("HEAD"), &sig, &sig, "empty", &tree, &[])?;
/// # }
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let workspace = rt.block_on(async {
///     let fast = FastStart::local(&data_dir)?;
///     let source = Source::parse(&format!("file://{}", upstream.display()))?;
///     let guard = fast.start(&source, &ConnectOptions::new()).await?.remove_on_drop();
///     let workspace = guard.sandbox.workspace().to_path_buf();
///     assert!(workspace.is_dir());
///     Ok::<_, snapshot_refresh::Error>(workspace)
/// })?; // the guard was dropped at the end of the block
/// assert!(!workspace.exists());
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "local"))]
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct SandboxGuard {
    started: Option<Started>,
}

impl SandboxGuard {
    /// The start this guard holds.
    pub fn started(&self) -> &Started {
        self.started.as_ref().unwrap_or_else(|| unreachable!())
    }

    /// The sandbox.
    pub fn sandbox(&self) -> &dyn Sandbox {
        &*self.started().sandbox
    }

    /// Removes the sandbox now and reports how that went.
    ///
    /// # Errors
    /// As [`Started::remove`].
    pub async fn remove(mut self) -> Result<()> {
        match self.started.take() {
            Some(s) => s.remove().await,
            None => Ok(()),
        }
    }

    /// Keeps the sandbox after all: gives the [`Started`] back; nothing is removed.
    pub fn keep(mut self) -> Started {
        self.started.take().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::Deref for SandboxGuard {
    type Target = Started;

    fn deref(&self) -> &Started {
        self.started()
    }
}

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        let Some(started) = self.started.take() else {
            return;
        };
        let name = started.sandbox.name().clone();
        let name_for_log = name.clone();
        let removal = async move {
            if let Err(e) = started.sandbox.remove().await {
                tracing::warn!(sandbox = %name, error = %e, "could not remove the sandbox of a dropped guard");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(removal));
            }
            // a current-thread runtime cannot block in place: remove on a thread of
            // our own and wait for it
            Ok(_) => {
                let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
                let spawned = std::thread::Builder::new()
                    .name("sandbox-guard-drop".into())
                    .spawn(move || {
                        block_on_own_runtime(removal);
                        let _ = done_tx.send(());
                    });
                match spawned {
                    // bounded: a removal whose client has connections on the runtime this
                    // drop blocks would otherwise wait for it forever
                    Ok(_) => match done_rx.recv_timeout(CURRENT_THREAD_DROP_WAIT) {
                        Ok(()) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => tracing::warn!(
                            sandbox = %name_for_log,
                            "the removal of a dropped guard's sandbox is still running; it goes on in the background"
                        ),
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => tracing::warn!(
                            sandbox = %name_for_log,
                            "the removal of a dropped guard's sandbox did not complete"
                        ),
                    },
                    Err(e) => tracing::warn!(sandbox = %name_for_log, error = %e,
                        "no thread to remove a dropped guard's sandbox"),
                }
            }
            Err(_) => block_on_own_runtime(removal),
        }
    }
}

/// Runs `fut` to completion on a new current-thread runtime (logged when there is none).
fn block_on_own_runtime(fut: impl std::future::Future<Output = ()>) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => tracing::warn!(error = %e, "no runtime to remove a dropped guard's sandbox"),
    }
}
