//! Helpers for the Docker tests: the engine (or a skip), per-test scopes, cleanup.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)] // test helpers may panic and print

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use provisioners::docker::{DockerConfig, DockerProvider, connect_from_env};
use sandbox_core::{ExecOutput, ExecRequest, OutputSink, Sandbox, SandboxName, Stream};

/// Label on every container and image a Docker test creates (value: the test's scope).
pub(crate) const TEST_SCOPE_LABEL: &str = "dev.headstart.test-scope";

/// Whether this machine must have a working engine (`.ci/run` sets
/// `HEADSTART_REQUIRE_DOCKER=1` where `dockerd` is installed). The one place the tests
/// read it.
pub(crate) fn docker_required() -> bool {
    std::env::var("HEADSTART_REQUIRE_DOCKER").is_ok_and(|v| v.trim() == "1")
}

/// The engine, or `None` after printing why the test skips (a panic instead when the
/// engine is required).
pub(crate) async fn engine_or_skip(test: &str) -> Option<Docker> {
    match connect_from_env().await {
        Ok(docker) => Some(docker),
        Err(e) if docker_required() => {
            panic!("HEADSTART_REQUIRE_DOCKER=1 but no Docker engine answers: {e}")
        }
        Err(e) => {
            eprintln!("SKIP {test}: no Docker engine answers ({e})");
            None
        }
    }
}

/// One test's provider, scoped by a unique label, with its own data directory.
/// Dropping it removes every container and image carrying the scope label.
pub(crate) struct Fixture {
    pub(crate) provider: DockerProvider,
    pub(crate) docker: Docker,
    pub(crate) scope: String,
    pub(crate) dir: tempfile::TempDir,
    names: Arc<Mutex<Vec<SandboxName>>>,
}

impl Fixture {
    pub(crate) async fn new(test: &str) -> Option<Self> {
        Self::with(test, |c| c).await
    }

    pub(crate) async fn with(
        test: &str,
        configure: impl FnOnce(DockerConfig) -> DockerConfig,
    ) -> Option<Self> {
        let docker = engine_or_skip(test).await?;
        let scope = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = tempfile::Builder::new()
            .prefix("hs-docker-test-")
            .tempdir()
            .unwrap();
        let config = configure(
            DockerConfig::new(dir.path().join("data")).scope_label(TEST_SCOPE_LABEL, scope.clone()),
        );
        let provider = DockerProvider::new(docker.clone(), config);
        Some(Self {
            provider,
            docker,
            scope,
            dir,
            names: Arc::default(),
        })
    }

    /// A sandbox name unique to this test (`<stem>-<scope>`).
    pub(crate) fn name(&self, stem: &str) -> SandboxName {
        let name = SandboxName::new(format!("{stem}-{}", self.scope)).unwrap();
        self.names.lock().unwrap().push(name.clone());
        name
    }

    /// A scratch directory inside the fixture's temporary directory.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Containers carrying this test's scope label.
    pub(crate) async fn scoped_containers(&self) -> Vec<String> {
        scoped_containers(&self.docker, &self.scope).await
    }
}

pub(crate) async fn scoped_containers(docker: &Docker, scope: &str) -> Vec<String> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{TEST_SCOPE_LABEL}={scope}")],
    )]);
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

async fn cleanup(provider: DockerProvider, docker: Docker, scope: String, names: Vec<SandboxName>) {
    use sandbox_core::SandboxProvider;
    for name in names {
        let _ = provider.remove(&name).await;
    }
    for id in scoped_containers(&docker, &scope).await {
        let _ = docker
            .remove_container(
                &id,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
    }
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{TEST_SCOPE_LABEL}={scope}")],
    )]);
    if let Ok(images) = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
    {
        for image in images {
            let _ = docker
                .remove_image(
                    &image.id,
                    Some(RemoveImageOptionsBuilder::default().force(true).build()),
                    None,
                )
                .await;
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let provider = self.provider.clone();
        let docker = self.docker.clone();
        let scope = self.scope.clone();
        let names = std::mem::take(&mut *self.names.lock().unwrap());
        // Drop may run inside a runtime (or during a panic): clean up on a thread of
        // its own with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(cleanup(provider, docker, scope, names));
        })
        .join();
    }
}

/// Runs an argv in a sandbox and returns its output.
pub(crate) async fn run(sandbox: &dyn Sandbox, argv: &[&str]) -> ExecOutput {
    sandbox
        .exec(&ExecRequest::new(argv.iter().copied()).unwrap())
        .await
        .unwrap()
}

/// Runs an argv and returns its stdout as text, asserting success.
pub(crate) async fn stdout(sandbox: &dyn Sandbox, argv: &[&str]) -> String {
    let out = run(sandbox, argv).await;
    assert!(
        out.success(),
        "{argv:?} failed: exit {:?}, stderr {}",
        out.exit_code,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A sink collecting what it is sent.
/// What a collecting sink saw.
pub(crate) type Seen = Arc<Mutex<Vec<(Stream, Vec<u8>)>>>;

pub(crate) fn collecting_sink() -> (OutputSink, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    (
        Arc::new(move |stream, bytes: &[u8]| s.lock().unwrap().push((stream, bytes.to_vec()))),
        seen,
    )
}

/// Owner uid and gid of a path on the host.
pub(crate) fn owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}
