//! Snapshots shared between hosts: the [`RemoteSnapshots`] trait that [`FastStart`]
//! consults on a local miss (pull) and the [`SnapshotBuilder`] after a build (push).
//!
//! This crate defines the seam only; `snapshot-registry` implements it on an OCI
//! registry. A remote never fails a start: a failed or slow pull is a cold start that
//! says why, a failed push is recorded (see [`PushRecord`]) and nothing more.
//!
//! [`FastStart`]: crate::FastStart
//! [`SnapshotBuilder`]: crate::SnapshotBuilder

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sandbox_core::scrub::scrub;
use sandbox_core::{SnapshotId, SnapshotMeta};
use time::OffsetDateTime;

/// Why a remote operation failed: a stable [`kind`](Self::kind) and a message scrubbed
/// of every registered secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    kind: &'static str,
    message: String,
}

impl RemoteError {
    /// An error of `kind` (snake_case, stable) saying `message` (scrubbed here).
    pub fn new(kind: &'static str, message: impl AsRef<str>) -> Self {
        Self {
            kind,
            message: scrub(message.as_ref()).into_owned(),
        }
    }

    /// The stable kind, e.g. `registry_unreachable`, `digest_mismatch`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// A snapshot a remote put into the local store.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The snapshot, now ready in the local store.
    pub snapshot: SnapshotMeta,
    /// False when another start on this host downloaded it while this one waited.
    pub downloaded: bool,
    /// Bytes downloaded (0 when not `downloaded`).
    pub bytes: u64,
    /// Where it came from (e.g. `127.0.0.1:5000/headstart:<key>`).
    pub reference: String,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pushed {
    /// Where it went (the `<key>-<id>` reference).
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    /// Bytes of the pushed layers and config.
    pub bytes: u64,
}

/// What another host's build lease says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This host holds the lease now: build.
    Taken,
    /// Another host holds a fresh lease: do not build.
    HeldElsewhere {
        /// Who holds it (a host name and process id).
        holder: String,
        /// When it expires.
        expires_at: OffsetDateTime,
    },
}

/// Snapshots shared between hosts (an OCI registry in `snapshot-registry`).
#[async_trait]
pub trait RemoteSnapshots: Send + Sync + fmt::Debug {
    /// Where it is, for reasons and logs (never with credentials).
    fn location(&self) -> String;

    /// Puts the newest snapshot of `key` the remote has into the local store (verified,
    /// written atomically) and returns it; `Ok(None)` when the remote has none.
    /// Concurrent pulls of one key on one host download once.
    async fn pull(&self, key: &str) -> Result<Option<Pulled>, RemoteError>;

    /// Publishes the local ready snapshot `snapshot`, and makes it the newest of its key.
    async fn push(&self, snapshot: &SnapshotMeta) -> Result<Pushed, RemoteError>;

    /// Takes the build lease of `key` for `ttl` unless another host holds a fresh one.
    /// The default takes it always (a remote without leases).
    async fn lease(&self, key: &str, ttl: Duration) -> Result<Lease, RemoteError> {
        let _ = (key, ttl);
        Ok(Lease::Taken)
    }

    /// Gives a lease this host took back (best effort; it expires anyway).
    async fn release(&self, key: &str) -> Result<(), RemoteError> {
        let _ = key;
        Ok(())
    }
}

/// How a push after a build ended, as recorded for `snapshot ls` (phase
/// `snapshot_push` of the build).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushRecord {
    /// The snapshot pushed.
    pub snapshot: SnapshotId,
    /// Where it went; `None` when it failed.
    pub pushed: Option<Pushed>,
    /// Why it failed (scrubbed); `None` when it succeeded.
    pub error: Option<String>,
    /// The stable kind of the failure.
    pub error_kind: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Wall time of the phase in milliseconds.
    pub ms: u64,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl PushRecord {
    fn path(state_dir: &Path, id: &SnapshotId) -> PathBuf {
        state_dir.join("pushes").join(format!("{id}.json"))
    }

    /// The record of snapshot `id`'s push under the builder's `state_dir`, if any (a
    /// corrupt record reads as none).
    pub fn read(state_dir: &Path, id: &SnapshotId) -> Option<Self> {
        let bytes = std::fs::read(Self::path(state_dir, id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub(crate) fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(state_dir, &self.snapshot);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)
    }
}

/// Attempts per push, and the first pause between them (doubled each time).
const PUSH_ATTEMPTS: u32 = 3;
const PUSH_BACKOFF: Duration = Duration::from_millis(500);

/// Pushes `snapshot` with retries and records how it went under `state_dir`. Never
/// fails: a push is an extra.
pub(crate) async fn push_with_retries(
    remote: &dyn RemoteSnapshots,
    snapshot: &SnapshotMeta,
    state_dir: &Path,
) -> PushRecord {
    let started = std::time::Instant::now();
    let mut attempts = 0;
    let mut pause = PUSH_BACKOFF;
    let result = loop {
        attempts += 1;
        match remote.push(snapshot).await {
            Ok(p) => break Ok(p),
            Err(e) if attempts >= PUSH_ATTEMPTS || !retryable(&e) => break Err(e),
            Err(e) => {
                tracing::warn!(snapshot = %snapshot.id, attempt = attempts, error = %e, "snapshot push failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    };
    let record = PushRecord {
        snapshot: snapshot.id.clone(),
        error: result.as_ref().err().map(ToString::to_string),
        error_kind: result.as_ref().err().map(|e| e.kind().to_owned()),
        pushed: result.ok(),
        attempts,
        ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        at: OffsetDateTime::now_utc(),
    };
    match &record.error {
        Some(e) => {
            tracing::warn!(snapshot = %snapshot.id, to = %remote.location(), error = %e, "snapshot push failed")
        }
        None => tracing::info!(snapshot = %snapshot.id, to = %remote.location(), "snapshot pushed"),
    }
    if let Err(e) = record.write(state_dir) {
        tracing::warn!(error = %e, "could not record the snapshot push");
    }
    record
}

fn retryable(e: &RemoteError) -> bool {
    !matches!(e.kind(), "registry_denied" | "invalid_registry")
}
