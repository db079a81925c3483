//! What collecting snapshots and pruning sandboxes keep and report: the vocabulary of
//! [`SnapshotStore::gc`](crate::SnapshotStore::gc) and
//! [`SandboxProvider::prune`](crate::SandboxProvider::prune), shared by every provider so
//! that callers never match on a provider kind to do either.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::names::{SandboxName, SnapshotId};
use crate::snapshot::{SnapshotMeta, SnapshotStatus};

/// What snapshot collection keeps: the newest few per name, none past a maximum age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcPolicy {
    /// Keep at most this many ready snapshots per name (and as many failed or building
    /// records), newest first.
    pub keep_newest: usize,
    /// Remove anything older than this, even among the newest.
    pub max_age: Option<Duration>,
}

impl Default for GcPolicy {
    /// The newest 2 per name, nothing older than 14 days.
    fn default() -> Self {
        Self::new(2, Some(Duration::from_secs(14 * 24 * 3600)))
    }
}

impl GcPolicy {
    /// Keep the `keep_newest` newest per name, and nothing older than `max_age`.
    pub fn new(keep_newest: usize, max_age: Option<Duration>) -> Self {
        Self {
            keep_newest,
            max_age,
        }
    }

    /// The snapshots of `newest_first` this policy removes at `now`: beyond the newest
    /// [`keep_newest`](Self::keep_newest) of their name (ready ones and the others
    /// counted apart), or older than [`max_age`](Self::max_age). Leases and in-use
    /// checks are the store's.
    pub fn doomed(
        &self,
        newest_first: impl IntoIterator<Item = SnapshotMeta>,
        now: OffsetDateTime,
    ) -> Vec<SnapshotMeta> {
        let mut seen: HashMap<(String, bool), usize> = HashMap::new();
        newest_first
            .into_iter()
            .filter(|meta| {
                let ready = meta.status == SnapshotStatus::Ready;
                let rank = seen.entry((meta.name.clone(), ready)).or_insert(0);
                *rank += 1;
                let too_many = *rank > self.keep_newest;
                let too_old = self.max_age.is_some_and(|max| {
                    let age = now - meta.created_at;
                    age.is_positive() && age.unsigned_abs() > max
                });
                too_many || too_old
            })
            .collect()
    }
}

/// What [`SnapshotStore::gc`](crate::SnapshotStore::gc) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GcReport {
    /// Snapshots removed.
    pub removed: Vec<SnapshotId>,
    /// Snapshots the policy would remove but a sandbox still uses.
    pub kept_in_use: Vec<SnapshotId>,
    /// Interrupted snapshot writes removed.
    pub interrupted_writes_removed: usize,
}

/// What [`SandboxProvider::prune`](crate::SandboxProvider::prune) removed or left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Sandboxes removed because their TTL passed.
    pub expired: Vec<SandboxName>,
    /// Sandboxes removed whose creation was interrupted (left `creating` by a process
    /// that is gone: what `list` calls [`Interrupted`](crate::SandboxState::Interrupted)).
    pub interrupted: Vec<SandboxName>,
    /// Sandboxes removed whose other half was gone (a record whose container was
    /// removed by hand, a workspace without a record).
    pub orphans: Vec<SandboxName>,
    /// Workspace directories removed that had no usable record and no name.
    pub orphan_workspaces: Vec<PathBuf>,
    /// Sandboxes left alone because a start or removal of them is in progress.
    pub busy: Vec<SandboxName>,
    /// Lock files removed of names that no longer have a sandbox.
    pub stale_locks: usize,
    /// Interrupted snapshot writes removed.
    pub interrupted_snapshot_writes: usize,
}

impl PruneReport {
    /// True when nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.expired.is_empty()
            && self.interrupted.is_empty()
            && self.orphans.is_empty()
            && self.orphan_workspaces.is_empty()
            && self.stale_locks == 0
            && self.interrupted_snapshot_writes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, id: &str, status: SnapshotStatus, age_days: i64) -> SnapshotMeta {
        SnapshotMeta {
            id: SnapshotId::new(id).unwrap(),
            name: name.into(),
            status,
            created_at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000 - age_days),
            commit: None,
            branch: None,
            source_url: None,
            recipe_digest: String::new(),
            size_bytes: 0,
            error: None,
            provider_data: serde_json::Value::Null,
        }
    }

    #[test]
    fn keeps_the_newest_per_name_and_status_and_drops_the_old() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000);
        let all = vec![
            meta("a", "a3", SnapshotStatus::Ready, 1),
            meta("a", "af", SnapshotStatus::Failed, 1),
            meta("b", "b1", SnapshotStatus::Ready, 2),
            meta("a", "a2", SnapshotStatus::Ready, 2),
            meta("a", "a1", SnapshotStatus::Ready, 3),
            meta("b", "b0", SnapshotStatus::Ready, 30),
        ];
        let ids = |p: GcPolicy| -> Vec<String> {
            p.doomed(all.clone(), now)
                .into_iter()
                .map(|m| m.id.to_string())
                .collect()
        };
        assert_eq!(ids(GcPolicy::new(2, None)), ["a1"]);
        assert_eq!(ids(GcPolicy::new(1, None)), ["a2", "a1", "b0"]);
        assert_eq!(
            ids(GcPolicy::new(5, Some(Duration::from_secs(10 * 86_400)))),
            ["b0"]
        );
        assert!(ids(GcPolicy::new(5, None)).is_empty());
    }
}
