//! The Docker provider: a container per sandbox, the workspace bind-mounted at
//! `/workspace`, snapshots as committed images plus stored workspaces.
//!
//! - **Engine**: the one named by `DOCKER_HOST` or the default socket
//!   ([`EngineHost::from_env`], [`connect`]); when none answers, the error says how to
//!   start one.
//! - **Sandboxes**: container `headstart-<name>-<tag>` ([`container_name`]: the tag
//!   names the data directory, so two data directories never share a container name),
//!   labelled with the sandbox name, the canonical data directory ([`LABEL_DATA_DIR`]),
//!   the start that made it ([`LABEL_START`]), the base snapshot and key, the workspace
//!   and [`LABEL_OWNER`]` = `[`OWNER`]; a keep-alive entrypoint; env and resource
//!   limits from [`ConnectOptions`]; the host user's `uid:gid` by default so files the
//!   agent writes stay the user's. Every lookup (reconnect, `get`, `list`, `remove`,
//!   `prune`, `force_create`'s replacement) matches the data directory and scope
//!   labels: another data directory's containers are never touched.
//! - **States**: one start per name at a time (a `flock` per name under the data
//!   directory, see `state.rs`), and a start record `containers/<name>.json` saying
//!   `creating` or `ready`. Only `ready` sandboxes are reconnected to or returned by
//!   `get`; with [`ConnectOptions::defer_ready`] a new sandbox stays `creating`, its
//!   handle holding the name's lock, until [`Sandbox::mark_ready`]. A `creating` record
//!   whose lock is free is an interrupted start (a crash, Ctrl-C during the clone):
//!   `list` says `interrupted` for it (`creating` only while a start holds the lock),
//!   the next `connect` of the name replaces it and [`prune`](sandbox_core::SandboxProvider::prune) removes it.
//!   A failed start removes only what it made itself (its container by id, the
//!   workspace it made).
//! - **Workspaces**: host directories bind-mounted at `/workspace`, managed by the
//!   [`local`](crate::local) provider's machinery under [`DockerConfig::data_dir`] (records,
//!   snapshot leases, restores by overlay mount, reflink or copy; an overlay is mounted
//!   on the host *before* the container starts, and re-made on reconnect). Two kinds:
//!   a **headstart workspace** (the default: `headstart up <repo> --provider docker`
//!   clones or restores into it, and `headstart down` deletes it), or, with
//!   [`ConnectOptions::workdir`], **the user's own directory** (`headstart up
//!   --workdir .` and the `sandbox` fast path for a local coding agent), bind-mounted
//!   as is and never deleted; it may be neither inside [`DockerConfig::data_dir`] nor
//!   contain it ([`crate::workdir::check_workdir`]). The git engine works on the host side in-process, as for
//!   every provider.
//! - **Images**: local first, pulled only when missing and allowed
//!   ([`DockerConfig::allow_pull`]); without an image ([`default_image`]) the pinned
//!   [`PUBLIC_BASE_IMAGE`] when pulls are allowed, else the offline base image with
//!   git: a Debian made with `mmdebstrap` (run as an argv subprocess), or else this
//!   machine's own programs and their shared libraries ([`build_base_image`]), reused
//!   once built. Any numeric container user gets a passwd entry and a home.
//! - **Exec**: an argv through the engine's exec API, output streamed to the sink,
//!   exit status, timeout (the process is killed), optional terminal;
//!   [`DockerSandbox::exec_interactive`] also feeds standard input.
//! - **Lifecycle**: [`Sandbox::stop`] and [`DockerProvider::stop_sandbox`] stop the
//!   container (the workspace stays; the next open starts it);
//!   [`DockerProvider::hibernate`] commits it to an image and removes it, and the next
//!   open makes it again from that image with the same mount, ports and labels
//!   (`hibernate.rs`);
//!   [`SandboxProvider::remove`] and [`Sandbox::remove`] remove both;
//!   [`prune`](sandbox_core::SandboxProvider::prune) removes sandboxes past their TTL, interrupted starts
//!   and workspaces left without a container.
//! - **Snapshot images** carry the data directory label too: a data directory sees
//!   only its own (their stored workspaces live in it).
//! - **Snapshots**: [`Sandbox::snapshot`] stores the workspace, then commits the
//!   container to `headstart-snapshot/<key>:<id>` with the metadata in labels; a warm
//!   start creates the container from that image (pinned by id) and restores the
//!   workspace. [`DockerSnapshotStore`] lists by label, newest first, in pages.
//!
//! ```no_run
//! use provisioners::docker::{DockerConfig, DockerProvider};
//! use sandbox_core::{ConnectOptions, ExecRequest, SandboxName, SandboxProvider};
//!
//! # async fn demo() -> sandbox_core::Result<()> {
//! let provider = DockerProvider::from_env(DockerConfig::from_env()?).await?;
//! let options = ConnectOptions::new().name(SandboxName::new("demo")?);
//! let (sandbox, _) = provider.connect(&options).await?;
//! // the git engine writes `sandbox.workspace()` on the host; the container sees it
//! let out = sandbox.exec(&ExecRequest::new(["ls", "-a"])?).await?;
//! assert!(out.success());
//! provider.remove(sandbox.name()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Not here: deciding when to snapshot or which snapshot to use (`snapshot-refresh`),
//! cloning or syncing (`sandbox_core::git`), which registry and tags snapshots go to
//! (`snapshot-registry`; `publish.rs` only commits, pushes and pulls the references it is
//! given), or Dockerfile builds.
//!
//! Layout: [`DockerConfig`] in `config.rs`; [`DockerProvider`] and its
//! [`SandboxProvider`] impl in `provider.rs`; which containers are this data
//! directory's in `lookup.rs`; creating a sandbox (and undoing a failed one) in
//! `create.rs`; [`DockerSandbox`] in `sandbox.rs`; the engine connection, exec, images,
//! the Debian base, snapshots, start states, container users and tar in their own
//! modules.
//!
//! [`ConnectOptions`]: sandbox_core::ConnectOptions
//! [`ConnectOptions::defer_ready`]: sandbox_core::ConnectOptions::defer_ready
//! [`ConnectOptions::workdir`]: sandbox_core::ConnectOptions::workdir
//! [`Sandbox::mark_ready`]: sandbox_core::Sandbox::mark_ready
//! [`Sandbox::remove`]: sandbox_core::Sandbox::remove
//! [`Sandbox::snapshot`]: sandbox_core::Sandbox::snapshot
//! [`Sandbox::stop`]: sandbox_core::Sandbox::stop
//! [`SandboxProvider`]: sandbox_core::SandboxProvider
//! [`SandboxProvider::remove`]: sandbox_core::SandboxProvider::remove

mod config;
mod create;
mod debian;
mod engine;
mod exec;
mod gateway;
mod hibernate;
mod hostfs;
mod image;
mod lookup;
mod provider;
mod publish;
mod sandbox;
mod snapshot;
mod state;
mod tar;
mod user;

pub use config::{DockerConfig, container_name, data_dir_tag, host_user};
pub use debian::{DEBIAN_PACKAGES, DEFAULT_MIRROR, DEFAULT_SUITE, DebianSpec};
pub use engine::{DEFAULT_ENGINE_HOST, EngineHost, connect, connect_from_env};
pub use gateway::bridge_gateways;
pub use hibernate::{HIBERNATED_IMAGE_REPO, Hibernated, LABEL_HIBERNATED};
pub use image::{
    BASE_IMAGE_REPO, BaseImageSpec, BaseRecipe, IMAGE_ENV, ImageRef, LABEL_BASE_DIGEST,
    LABEL_BASE_RECIPE, PUBLIC_BASE_IMAGE, build_base_image, default_image, ensure_image,
    local_image,
};
pub use provider::DockerProvider;
pub use publish::{PUBLISHED_OWNER, PublishedImage};
pub use sandbox::DockerSandbox;
pub use snapshot::{
    DockerSnapshotStore, IMAGE_PIN, LABEL_SNAPSHOT_CREATED, LABEL_SNAPSHOT_ID, LABEL_SNAPSHOT_META,
    LABEL_SNAPSHOT_NAME, LABEL_SNAPSHOT_STATUS, SNAPSHOT_IMAGE_REPO, snapshot_image_repo,
};
pub use user::SANDBOX_USER;

pub(crate) const PROVIDER: &str = "docker";

/// Where the workspace is mounted in every container (and the working directory).
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// Container names are this prefix, the sandbox name and the data directory's tag
/// ([`container_name`]).
pub const CONTAINER_PREFIX: &str = "headstart-";
/// Ownership label on everything this provider creates.
pub const LABEL_OWNER: &str = "dev.headstart.owner";
/// The value of [`LABEL_OWNER`].
pub const OWNER: &str = "headstart";
/// Label: the sandbox name.
pub const LABEL_SANDBOX: &str = "dev.headstart.sandbox";
/// Label: the id of the snapshot the sandbox was restored from (empty if none).
pub const LABEL_BASE_SNAPSHOT: &str = "dev.headstart.base-snapshot";
/// Label: the snapshot key (name) the sandbox was restored from (empty if none).
pub const LABEL_SNAPSHOT_KEY: &str = "dev.headstart.snapshot-key";
/// Label: the host workspace directory.
pub const LABEL_WORKSPACE: &str = "dev.headstart.workspace";
/// Label: `managed` (a headstart workspace) or `workdir` (the user's own directory).
pub const LABEL_WORKSPACE_KIND: &str = "dev.headstart.workspace-kind";
/// Label: when the sandbox expires (unix seconds), if it has a TTL.
pub const LABEL_EXPIRES: &str = "dev.headstart.expires-at";
/// Label on every container and snapshot image: the canonical data directory of the
/// provider that made it. A provider touches only objects carrying its own.
pub const LABEL_DATA_DIR: &str = "dev.headstart.data-dir";
/// Label: the id of the start that made the container (its start record names it too).
pub const LABEL_START: &str = "dev.headstart.start";

const KIND_MANAGED: &str = "managed";
const KIND_WORKDIR: &str = "workdir";
