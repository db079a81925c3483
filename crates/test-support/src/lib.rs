//! Test fixtures for headstart, used as a dev-dependency by several crates and by the
//! benchmark.
//!
//! - [`Upstream`]: a bare "upstream" repository built with the git CLI (fixtures may
//!   use it; libraries may not): configurable default branch, N files, commits,
//!   branches, force-push rewrites, and changes such as submodule gitlinks or LFS
//!   attributes. Commits go in through `git fast-import`, so 1,000 files or 100
//!   commits take milliseconds.
//! - [`GitHttpServer`]: smart HTTP on `127.0.0.1:0` bridging to `git http-backend`
//!   (CGI), with an optional required token (HTTP basic auth) and a [`RequestRecord`]
//!   log that parses upload-pack pkt-lines (wants, haves, deepen).
//! - [`GitDaemon`]: `git daemon` on a free loopback port.
//! - [`RedirectServer`]: answers everything with `302` to another base URL
//!   (optionally only after a `401` challenge), logging `Authorization` headers.
//! - [`TrickleProxy`]: a TCP proxy passing a server's answer on a few bytes at a
//!   time, or never (a stalled server).
//! - [`SmallTmpfs`]: a tmpfs of a few MiB under a test's temp dir, to fill on purpose.
//! - [`SshServer`]: `sshd` on a free loopback port with key authentication and a
//!   matching `known_hosts`.
//! - [`StallProxy`]: a TCP proxy that stops forwarding a connection after N bytes from
//!   the server and closes it a bounded time later (interrupt and deadline tests).
//! - [`Registry`]: a real OCI registry (`docker-registry`, the reference `distribution`
//!   server) on a free loopback port with its storage in a temp dir.
//! - [`capture_tracing`] and [`random_token`] for secret-leak assertions.
//!
//! Everything stops or is removed on drop. This crate is **not** for production code:
//! it panics on nothing but returns `anyhow` errors with context, and it runs
//! subprocesses freely.
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! use test_support::{GitDaemon, Upstream};
//!
//! let upstream = Upstream::new("trunk", 10)?; // README.md and 10 files on `trunk`
//! let daemon = GitDaemon::start(upstream.root())?;
//! let url = daemon.url(upstream.name()); // git://127.0.0.1:<port>/app.git
//! let tip = upstream.advance("trunk", 1)?; // one more commit
//! assert_eq!(upstream.tip("trunk")?, tip);
//! # let _ = url;
//! # Ok(())
//! # }
//! ```

mod daemon;
mod git_cli;
mod http;
mod mounts;
mod pktline;
mod process;
mod redirect;
mod registry;
mod search;
mod ssh;
mod stall;
mod tmpfs;
mod tracing_capture;
mod trickle;
mod upstream;

pub use daemon::GitDaemon;
pub use git_cli::{git, git_command, git_in};
pub use http::{GitHttpServer, RequestRecord};
pub use mounts::{TempHome, mounts_under, unmount_all_under};
pub use pktline::{UploadPackRequest, parse_upload_pack};
pub use process::ChildGuard;
pub use redirect::{RedirectRecord, RedirectServer};
pub use registry::{REGISTRY_BIN, Registry};
pub use search::files_containing;
pub use ssh::{SshServer, ssh_unavailable};
pub use stall::StallProxy;
pub use tmpfs::SmallTmpfs;
pub use tracing_capture::{CapturedLog, capture_tracing};
pub use trickle::TrickleProxy;
pub use upstream::{Change, Upstream, fast_import};

/// A fresh random token-like secret, generated at run time (tests must not carry
/// token-looking literals).
pub fn random_token() -> String {
    format!("tk{}", uuid::Uuid::new_v4().simple())
}
