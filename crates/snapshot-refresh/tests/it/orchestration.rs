//! FastStart's decisions when the store misbehaves (a scripted store; the sandboxes
//! and git servers are real).

use std::sync::Arc;

use async_trait::async_trait;
use sandbox_core::{
    ConnectOptions, Connected, Cursor, GcPolicy, GcReport, Page, PruneReport, Sandbox, SandboxInfo,
    SandboxName, SandboxProvider, SnapshotId, SnapshotMeta, SnapshotStatus, SnapshotStore, Source,
    StartPath,
};
use snapshot_refresh::{FastStart, SnapshotBuilder};
use test_support::{GitHttpServer, Upstream};

use crate::Rig;

type ListFn =
    dyn Fn(Option<&str>, Option<&Cursor>) -> sandbox_core::Result<Page<SnapshotMeta>> + Send + Sync;

/// A store whose listing is scripted by the test; `get` finds nothing.
struct FakeStore {
    list: Box<ListFn>,
    lists: std::sync::atomic::AtomicUsize,
}

impl FakeStore {
    fn new(
        list: impl Fn(Option<&str>, Option<&Cursor>) -> sandbox_core::Result<Page<SnapshotMeta>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            list: Box::new(list),
            lists: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl SnapshotStore for FakeStore {
    async fn list(
        &self,
        name: Option<&str>,
        cursor: Option<&Cursor>,
        _limit: usize,
    ) -> sandbox_core::Result<Page<SnapshotMeta>> {
        self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (self.list)(name, cursor)
    }
    async fn get(&self, _id: &SnapshotId) -> sandbox_core::Result<Option<SnapshotMeta>> {
        Ok(None)
    }
    async fn delete(&self, _id: &SnapshotId) -> sandbox_core::Result<()> {
        Ok(())
    }
    async fn gc(&self, _policy: &GcPolicy) -> sandbox_core::Result<GcReport> {
        Ok(GcReport::default())
    }
}

/// The local provider with its store replaced.
struct WithStore {
    inner: Arc<dyn SandboxProvider>,
    store: Arc<dyn SnapshotStore>,
}

#[async_trait]
impl SandboxProvider for WithStore {
    fn kind(&self) -> &'static str {
        "local"
    }
    async fn connect(
        &self,
        o: &ConnectOptions,
    ) -> sandbox_core::Result<(Box<dyn Sandbox>, Connected)> {
        self.inner.connect(o).await
    }
    async fn get(&self, n: &SandboxName) -> sandbox_core::Result<Option<Box<dyn Sandbox>>> {
        self.inner.get(n).await
    }
    async fn list(&self) -> sandbox_core::Result<Vec<SandboxInfo>> {
        self.inner.list().await
    }
    async fn remove(&self, n: &SandboxName) -> sandbox_core::Result<()> {
        self.inner.remove(n).await
    }
    async fn prune(&self) -> sandbox_core::Result<PruneReport> {
        self.inner.prune().await
    }
    fn snapshots(&self) -> Arc<dyn SnapshotStore> {
        self.store.clone()
    }
}

fn rig_with(store: FakeStore) -> (Rig, FastStart) {
    let rig = Rig::new();
    let provider: Arc<dyn SandboxProvider> = Arc::new(WithStore {
        inner: rig.provider.clone(),
        store: Arc::new(store),
    });
    let builder = Arc::new(SnapshotBuilder::new(
        provider.clone(),
        crate::state_dir(rig.home.path()),
    ));
    (rig, FastStart::new(provider, builder))
}

#[tokio::test]
async fn a_store_error_falls_back_to_cold_with_the_reason() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let store = FakeStore::new(|_, _| {
        Err(sandbox_core::Error::provider(
            "local",
            "manifest store is corrupt",
        ))
    });
    let (_rig, fast) = rig_with(store);
    let started = fast
        .start(
            &Source::parse(&server.url(up.name())).unwrap(),
            &ConnectOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(started.report.path, StartPath::Cold);
    assert!(
        started.report.reason.contains("manifest store is corrupt"),
        "{}",
        started.report.reason
    );
    assert_eq!(started.report.head.unwrap().commit, up.tip("main").unwrap());
}

#[tokio::test]
async fn a_ready_snapshot_that_cannot_be_restored_falls_back_to_cold() {
    let up = Upstream::new("main", 3).unwrap();
    let server = GitHttpServer::start(up.root()).unwrap();
    let source = Source::parse(&server.url(up.name())).unwrap();
    // Lookup follows pages: the first page has only failures, the second a "ready"
    // snapshot that does not exist on disk.
    let store = FakeStore::new(|name, cursor| {
        let meta = |id: &str, status| SnapshotMeta {
            id: SnapshotId::new(id).unwrap(),
            name: name.unwrap_or_default().to_owned(),
            status,
            created_at: time::OffsetDateTime::now_utc(),
            commit: None,
            branch: None,
            source_url: None,
            recipe_digest: String::new(),
            size_bytes: 0,
            error: None,
            provider_data: serde_json::Value::Null,
        };
        Ok(match cursor {
            None => Page {
                items: vec![
                    meta("f1", SnapshotStatus::Failed),
                    meta("f2", SnapshotStatus::Building),
                ],
                next: Some(Cursor("2".into())),
            },
            Some(_) => Page {
                items: vec![meta("ghost", SnapshotStatus::Ready)],
                next: None,
            },
        })
    });
    let (rig, fast) = rig_with(store);
    let started = fast.start(&source, &ConnectOptions::new()).await.unwrap();
    assert_eq!(started.report.path, StartPath::Cold);
    assert!(
        started.report.reason.contains("ghost"),
        "{}",
        started.report.reason
    );
    assert_eq!(
        rig.provider.list().await.unwrap().len(),
        1,
        "the failed warm sandbox was removed"
    );
}
