//! Builder state on disk: cross-process build locks and the persisted failure cache.
//!
//! Both live in a state directory shared by every headstart process of one user, so
//! two processes never build the same key at once and a repository that cannot be
//! built is not retried on every start.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};
use sandbox_core::scrub::scrub;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// An exclusive, cross-process lock on one snapshot key. Released on drop, and by the
/// kernel when the holding process dies, so a killed build never leaves a stale lock.
#[derive(Debug)]
pub struct BuildLock {
    _file: File,
    path: PathBuf,
}

impl BuildLock {
    /// Takes the lock for `key` without waiting; `Ok(None)` when another process (or
    /// task) holds it.
    ///
    /// # Errors
    /// [`Error::State`] when the lock file cannot be opened.
    pub fn try_acquire(state_dir: &Path, key: &str) -> Result<Option<Self>> {
        let dir = state_dir.join("locks");
        fs::create_dir_all(&dir)
            .map_err(|e| Error::state(format!("creating {}", dir.display()), e))?;
        let path = dir.join(format!("{key}.lock"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::state(format!("opening {}", path.display()), e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Ok(None),
            Err(e) => {
                return Err(Error::state(
                    format!("locking {}", path.display()),
                    e.into(),
                ));
            }
        }
        // Who holds it, for people reading the state directory.
        let _ = file.set_len(0);
        let _ = writeln!(file, "pid {} since {}", std::process::id(), now_rfc3339());
        Ok(Some(Self { _file: file, path }))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One key's entry in the failure cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureRecord {
    /// The snapshot key.
    pub key: String,
    /// Consecutive failures.
    pub failures: u32,
    /// The last error, scrubbed of every registered secret.
    pub last_error: String,
    /// When the last attempt failed.
    #[serde(with = "time::serde::rfc3339")]
    pub failed_at: OffsetDateTime,
    /// No new attempt before this.
    #[serde(with = "time::serde::rfc3339")]
    pub retry_after: OffsetDateTime,
}

/// Persisted failure cache with exponential backoff: after the n-th consecutive
/// failure, no build of that key starts for `base * 2^(n-1)` (capped at `max`).
#[derive(Debug, Clone)]
pub struct FailureCache {
    dir: PathBuf,
    base: Duration,
    max: Duration,
}

impl FailureCache {
    /// A cache under `state_dir/failures`, with the default backoff (10 minutes,
    /// doubling, at most a day).
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("failures"),
            base: Duration::from_secs(600),
            max: Duration::from_secs(24 * 3600),
        }
    }

    /// Sets the backoff (first window and cap).
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base = base;
        self.max = max.max(base);
        self
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The record for `key`, if any (unreadable records count as none). Its error is
    /// scrubbed again on the way out (records written before a secret was registered).
    pub fn get(&self, key: &str) -> Option<FailureRecord> {
        let bytes = fs::read(self.path(key)).ok()?;
        match serde_json::from_slice::<FailureRecord>(&bytes) {
            Ok(mut r) => {
                r.last_error = scrub(&r.last_error).into_owned();
                Some(r)
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "ignoring an unreadable failure record");
                None
            }
        }
    }

    /// `Some(record)` when `key` is inside its backoff window now.
    pub fn blocked(&self, key: &str) -> Option<FailureRecord> {
        self.get(key)
            .filter(|r| r.retry_after > OffsetDateTime::now_utc())
    }

    /// Records a failure and returns the new record; `error` is scrubbed of every
    /// registered secret before it is written.
    ///
    /// # Errors
    /// [`Error::State`] when the record cannot be written.
    pub fn record_failure(&self, key: &str, error: &str) -> Result<FailureRecord> {
        let failures = self.get(key).map_or(0, |r| r.failures).saturating_add(1);
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        let window = self.base.saturating_mul(factor).min(self.max);
        let now = OffsetDateTime::now_utc();
        let record = FailureRecord {
            key: key.to_owned(),
            failures,
            last_error: scrub(error).into_owned(),
            failed_at: now,
            retry_after: now + window,
        };
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::state(format!("creating {}", self.dir.display()), e))?;
        let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
        write_atomic(&self.path(key), &bytes)?;
        Ok(record)
    }

    /// Forgets failures of `key` (after a successful build).
    pub fn clear(&self, key: &str) {
        let _ = fs::remove_file(self.path(key));
    }

    /// Every record, for `snapshot ls`.
    pub fn all(&self) -> Vec<FailureRecord> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<FailureRecord> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json").and_then(|k| self.get(k))
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    sandbox_core::tree::write_atomic(path, bytes, 0o666)
        .map_err(|e| Error::state(format!("writing {}", path.display()), e))
}

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = BuildLock::try_acquire(dir.path(), "k").unwrap();
        assert!(a.is_some());
        assert!(BuildLock::try_acquire(dir.path(), "k").unwrap().is_none());
        assert!(
            BuildLock::try_acquire(dir.path(), "other")
                .unwrap()
                .is_some()
        );
        drop(a);
        assert!(BuildLock::try_acquire(dir.path(), "k").unwrap().is_some());
    }

    #[test]
    fn failure_backoff_doubles_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FailureCache::new(dir.path())
            .with_backoff(Duration::from_secs(60), Duration::from_secs(150));
        assert!(cache.blocked("k").is_none());
        let r1 = cache.record_failure("k", "boom").unwrap();
        assert_eq!(r1.failures, 1);
        assert_eq!((r1.retry_after - r1.failed_at).whole_seconds(), 60);
        let r2 = cache.record_failure("k", "boom again").unwrap();
        assert_eq!((r2.retry_after - r2.failed_at).whole_seconds(), 120);
        let r3 = cache.record_failure("k", "boom").unwrap();
        assert_eq!(
            (r3.retry_after - r3.failed_at).whole_seconds(),
            150,
            "capped"
        );
        // A second cache over the same directory sees it (persisted).
        let again = FailureCache::new(dir.path());
        assert_eq!(again.blocked("k").unwrap().failures, 3);
        assert_eq!(again.all().len(), 1);
        again.clear("k");
        assert!(cache.blocked("k").is_none());
    }

    #[test]
    fn expired_window_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FailureCache::new(dir.path()).with_backoff(Duration::ZERO, Duration::ZERO);
        cache.record_failure("k", "boom").unwrap();
        assert!(cache.get("k").is_some());
        assert!(cache.blocked("k").is_none());
    }
}
