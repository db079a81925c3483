//! Removing what a start made: [`Started::remove`] and the opt-in [`SandboxGuard`].
//!
//! Not a lifecycle manager: sandboxes persist by design (see [`Started`]); this is for
//! callers that want one gone (tests, one-shot jobs).

use sandbox_core::Sandbox;

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
    /// report an error (it is logged), and a process that exits or aborts before the
    /// removal ran leaves the sandbox (the CLI's `prune` repairs that). Prefer
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
/// On drop inside a tokio runtime the removal is spawned on it (so it may finish after
/// `drop` returned, and not at all if the runtime shuts down first); outside one it
/// runs to completion on a small runtime of its own before `drop` returns.
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
        let removal = async move {
            if let Err(e) = started.sandbox.remove().await {
                tracing::warn!(sandbox = %name, error = %e, "could not remove the sandbox of a dropped guard");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(removal);
            }
            Err(_) => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(removal),
                Err(e) => {
                    tracing::warn!(error = %e, "no runtime to remove a dropped guard's sandbox")
                }
            },
        }
    }
}
