//! Snapshot metadata and paging.

use time::OffsetDateTime;

use crate::names::SnapshotId;

/// Where a snapshot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    /// Being written; not usable.
    Building,
    /// Complete and usable.
    Ready,
    /// The build failed; kept only as a record.
    Failed,
    /// Past its age; GC removes it.
    Expired,
}

/// What a store knows about one snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotMeta {
    /// Unique id.
    pub id: SnapshotId,
    /// The snapshot name (the key of the repository and recipe it was built for).
    pub name: String,
    /// Status.
    pub status: SnapshotStatus,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The commit the workspace was at.
    pub commit: Option<String>,
    /// The branch the workspace was on.
    pub branch: Option<String>,
    /// The repository URL (credential-free).
    pub source_url: Option<String>,
    /// Digest of the setup recipe and base image it was built with.
    pub recipe_digest: String,
    /// Size on disk in bytes (0 when unknown).
    pub size_bytes: u64,
    /// Why it failed, for [`SnapshotStatus::Failed`].
    pub error: Option<String>,
    /// Provider-specific data (e.g. the image id and digest for Docker).
    #[serde(default)]
    pub provider_data: serde_json::Value,
}

/// What the caller knows when asking a sandbox to snapshot itself.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SnapshotRequest {
    /// The snapshot name (key).
    pub name: String,
    /// The commit the workspace is at.
    pub commit: Option<String>,
    /// The branch the workspace is on.
    pub branch: Option<String>,
    /// The repository URL (credential-free).
    pub source_url: Option<String>,
    /// The recipe digest.
    pub recipe_digest: String,
}

impl SnapshotRequest {
    /// A request for a snapshot called `name` built with `recipe_digest`.
    pub fn new(name: impl Into<String>, recipe_digest: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            recipe_digest: recipe_digest.into(),
            ..Self::default()
        }
    }

    /// Records the commit and branch the workspace is at.
    #[must_use]
    pub fn at(mut self, branch: impl Into<String>, commit: impl Into<String>) -> Self {
        self.branch = Some(branch.into());
        self.commit = Some(commit.into());
        self
    }

    /// Records the source URL.
    #[must_use]
    pub fn source_url(mut self, url: impl Into<String>) -> Self {
        self.source_url = Some(url.into());
        self
    }
}

/// An opaque position in a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor(pub String);

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}
