//! The git engine: clone and sync in-process through git2 (libgit2).
//!
//! No `git` subprocess and no shell: URLs and branch names are validated types and go
//! to libgit2 as data. Credentials reach libgit2 only through a credential callback,
//! only for the repository's own origin (scheme, host, port), and are never written to `.git/config`.
//!
//! All functions here **block**; async callers use `tokio::task::spawn_blocking`.
//!
//! Decisions (each tested in `tests/it/git_*.rs` against real loopback servers):
//! - **Branch**: `Source.branch`, else the remote's default branch read from the ref
//!   advertisement (the `HEAD` symref), never an assumed `main`. One connection serves
//!   both the advertisement and the fetch. `refs/remotes/origin/HEAD` names that
//!   default branch when its remote-tracking branch is present (never dangling).
//! - **Fetch**: exactly `+refs/heads/B:refs/remotes/origin/B`, no tags. Clones are
//!   shallow by default ([`Depth`]); [`sync`] always fetches depth 1, so it works on a
//!   single-branch snapshot for any other branch and after force-pushes.
//! - **Local repositories** (`file://`, paths): libgit2's local transport refuses
//!   shallow fetches, so they are fetched in full (no network is involved).
//! - **Checkout** is `git checkout -B B origin/B`: HEAD names the branch, index and
//!   worktree equal the fetched tree; [`sync`] then removes untracked files like
//!   `git clean -fd` (judged by the *new* tree's `.gitignore` files; nested
//!   repositories stay). Files the older tree tracked are gone even if now ignored;
//!   **ignored** files nobody tracked are kept (they are what a snapshot's setup
//!   recipe built: dependencies, caches).
//!   The local branch tracks `origin/B`; a `new_branch` tracks nothing until pushed.
//!   **Warm path**: when a status proves the snapshot's worktree and index equal its
//!   HEAD (no local change, no untracked file), [`sync`] checks out only the paths of
//!   the tree-to-tree diff and skips the clean (unless the diff changes a `.gitignore`
//!   or `.gitattributes`): one walk of the worktree instead of two. A diff that writes
//!   more than half of the new tree (a **far** branch: an orphan, a rewritten tree) is
//!   written the same way even when it changes those files (the new tree's
//!   `.gitattributes` blobs are read before anything is written, and a changed
//!   `.gitignore` is followed by the clean). Anything else takes
//!   the full checkout and clean, with the same result. A snapshot proved clean when
//!   it was captured ([`seal_clean`]) and restored so that nothing can have written
//!   to it ([`GitOptions::clean_seal`]) skips that walk too, while HEAD and the index
//!   checksum still match the seal.
//! - **Submodules and Git LFS** are refused with [`Error::UnsupportedRepository`]
//!   naming the paths: the engine fetches neither, and a sandbox silently missing
//!   those files is worse than a clear error.
//! - **ssh** (`ssh://`, `user@host:path`): key authentication with the key file in
//!   [`Credentials::ssh_key`]; the server's host key must be listed in a `known_hosts`
//!   file ([`Credentials::with_known_hosts`], default `~/.ssh/known_hosts`): an
//!   unknown, changed or revoked key is [`Error::AuthFailed`] saying what to do, never
//!   a prompt or a silent accept. Tested against a loopback OpenSSH `sshd`.
//! - **Credentials** (token as user/password over HTTP, key over ssh) are offered once,
//!   only when libgit2 asks for the repository's own origin (scheme, host and port,
//!   default ports normalised; a redirect elsewhere gets nothing); a refused one is
//!   [`Error::AuthFailed`] (libgit2 would otherwise ask again forever). No error or log
//!   line contains the token.
//! - **Sockets**: the engine registers its own TCP stream with libgit2 (`nodelay.rs`,
//!   the only `unsafe` here): `TCP_NODELAY` so requests are not held back by Nagle's
//!   algorithm (~40 ms per smart-HTTP POST otherwise), `TCP_QUICKACK` so servers that
//!   write in pieces (git daemon) are not held back by our delayed ACKs, and a silent
//!   server fails after 5 minutes instead of blocking forever.
//! - **Limits** ([`GitOptions::limits`], [`GitOptions::cancel`]): clone, sync and
//!   ls-remote stop when the token is cancelled, the deadline passes, or the server
//!   sends less than the low-speed limit for its window: progress callbacks and
//!   checkout notifications return "stop", and the socket reads in 250 ms slices so
//!   a stalled or trickling server is noticed too (`watch.rs`). The errors are
//!   [`Error::Cancelled`], [`Error::Timeout`] and [`Error::TooSlow`], never a guessed
//!   network error. A full disk is [`Error::NoSpace`].
//!
//! - **Inspection** ([`inspect`]): origin, HEAD and local changes of a workspace,
//!   read-only, for deciding whether a reconnect may switch branches.
//!
//! Not here: deciding between clone and sync, snapshots, or running anything in a
//! sandbox (`snapshot-refresh` and `provisioners` do that).

use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

mod apply;
mod checkout;
mod identity;
mod inspect;
mod known_hosts;
mod nodelay;
mod seal;
pub mod seed;
mod transfer;
mod watch;

use git2::Repository;

pub use identity::{GitIdentity, identity, set_identity};
pub use inspect::{Inspection, LocalChanges, WorkspaceSummary, inspect, summary};
pub use seal::{CleanSeal, seal_clean};

use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::report::HeadInfo;
use crate::source::Source;
use crate::url::RepoUrl;

/// How much history a clone fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The newest `n` commits of the branch (default: 1).
    Shallow(NonZeroU32),
    /// All history.
    Full,
}

impl Default for Depth {
    fn default() -> Self {
        Self::Shallow(NonZeroU32::MIN)
    }
}

/// Transfer progress, as libgit2 reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Objects received so far.
    pub received_objects: usize,
    /// Objects the server will send.
    pub total_objects: usize,
    /// Deltas resolved so far.
    pub indexed_deltas: usize,
    /// Deltas to resolve.
    pub total_deltas: usize,
    /// Bytes received so far.
    pub received_bytes: usize,
}

/// Receives [`Progress`] during transfers.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Options for [`clone`] and [`sync`].
#[derive(Clone, Default)]
pub struct GitOptions {
    /// Credentials for the repository's host.
    pub credentials: Credentials,
    /// History depth for clones (sync always fetches depth 1 where the transport
    /// allows it).
    pub depth: Depth,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
    /// Deadline and low-speed limit for the whole operation.
    pub limits: crate::TransferLimits,
    /// Stops the operation when cancelled ([`Error::Cancelled`]).
    pub cancel: Option<crate::CancelToken>,
    /// [`sync`] only: the [`CleanSeal`] of the snapshot the workspace was restored
    /// from, when the restore guarantees the workspace is exactly the captured one.
    /// While it matches HEAD and the index, the sync skips the walk proving the
    /// worktree clean; otherwise it is ignored.
    pub clean_seal: Option<CleanSeal>,
}

impl fmt::Debug for GitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitOptions")
            .field("credentials", &self.credentials)
            .field("depth", &self.depth)
            .field("progress", &self.progress.is_some())
            .field("limits", &self.limits)
            .field("cancel", &self.cancel)
            .field("clean_seal", &self.clean_seal)
            .finish()
    }
}

/// The result of a clone or sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// Branch and commit HEAD is on.
    pub head: HeadInfo,
    /// Bytes received from the remote.
    pub received_bytes: u64,
    /// Objects received from the remote.
    pub received_objects: u64,
}

/// Clones `source` into `dest` (which must not exist or be empty) and checks out the
/// branch the source asks for: `branch`, else the remote's default branch; with
/// `new_branch`, a new branch from that tip (an error if the remote has it already).
///
/// `origin` is `source.url()` as given (no credentials), fetching only the branch
/// checked out (like `git clone --single-branch`). On failure, whatever the clone
/// created in `dest` is removed (also when cancelled or out of time).
///
/// # Errors
/// [`Error::BranchNotFound`], [`Error::NewBranchExists`], [`Error::AuthFailed`],
/// [`Error::RepoNotFound`], [`Error::Network`], [`Error::UnsupportedRepository`],
/// [`Error::InvalidOptions`] (`dest` not empty), [`Error::Cancelled`] (the
/// [`GitOptions::cancel`] token), [`Error::Timeout`] (the deadline of
/// [`GitOptions::limits`]), [`Error::TooSlow`] (its low-speed limit),
/// [`Error::NoSpace`] (the disk under `dest` is full), [`Error::Git`].
#[tracing::instrument(level = "debug", skip_all, fields(repository = %source.url()))]
pub fn clone(source: &Source, dest: &Path, options: &GitOptions) -> Result<Checkout> {
    nodelay::install();
    let scope = watch::Scope::enter(operation("clone", source.url(), Some(dest), options));
    let created = scope.run(|| prepare_dest(dest))?;
    // the marker's lock, held until the marker is gone
    let mut marker_lock = None;
    let result = scope
        .run(|| clone_into(source, dest, options, &mut marker_lock))
        .and_then(|checkout| {
            let marker = dest.join(".git").join(CLONE_MARKER);
            std::fs::remove_file(&marker)
                .map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
            Ok(checkout)
        });
    drop(marker_lock);
    if result.is_err() {
        cleanup_dest(dest, created);
    }
    result
}

/// The file in `.git` that says a [`clone`] into the directory has not finished: made
/// right after `git init` and locked (a `flock`) by the cloning process, removed once
/// the checkout is complete.
const CLONE_MARKER: &str = "headstart-clone-incomplete";

/// `Some(true)` while a [`clone`] into `dir` runs (its process holds the marker's
/// lock), `Some(false)` when one started and its process is gone, `None` without one.
fn clone_marker(dir: &Path) -> Option<bool> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(".git").join(CLONE_MARKER))
        .ok()?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Some(true),
        _ => Some(false),
    }
}

/// True when `dir` holds what a [`clone`] left that never finished: its process was
/// killed (or the machine stopped) before the clone completed or cleaned up after
/// itself. Such a directory is no checkout (its HEAD may be unborn, its files
/// partial) and, as a clone only starts in an empty directory, everything in it came
/// from that clone: clear it and clone again.
pub fn is_interrupted_clone(dir: &Path) -> bool {
    clone_marker(dir) == Some(false)
}

/// True while a [`clone`] into `dir` runs, in this process or another: the directory
/// is no checkout yet. Wait for the clone to finish (or fail) instead of using it.
pub fn is_clone_running(dir: &Path) -> bool {
    clone_marker(dir) == Some(true)
}

fn clone_into(
    source: &Source,
    dest: &Path,
    options: &GitOptions,
    marker_lock: &mut Option<std::fs::File>,
) -> Result<Checkout> {
    use std::io::Write as _;
    let started = std::time::Instant::now();
    let url = source.url();
    let repo = Repository::init(dest).map_err(git_err("init"))?;
    let marker = repo.path().join(CLONE_MARKER);
    let io = |e| Error::io(format!("writing {}", marker.display()), e);
    let mut file = std::fs::File::create(&marker).map_err(io)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| io(e.into()))?;
    file.write_all(b"a clone started here and has not finished\n")
        .map_err(io)?;
    *marker_lock = Some(file);
    let branch = source.branch().map(|b| b.as_str());
    let new_branch = source.new_branch().map(|b| b.as_str());
    // The refspec is configured once we know the branch; until then, none.
    let mut remote = repo
        .remote_with_fetch("origin", &url.as_git_url(), "")
        .map_err(git_err("clone"))?;
    let depth = transfer::effective_depth(url, options.depth);
    let fetched = transfer::connect_and_fetch(
        "clone",
        &mut remote,
        url,
        branch,
        new_branch,
        depth,
        options,
    )?;
    drop(remote);
    repo.remote_add_fetch("origin", &transfer::tracking_refspec(&fetched.base))
        .map_err(git_err("clone"))?;
    check_out_fetched(&repo, url, &fetched, new_branch, Step::Clone, started, None)
}

/// Initialises libgit2 now, so the first [`clone`] or [`sync`] of the process does not
/// pay for it: its TLS stack reads the system's CA certificates when it starts (about
/// 25 ms with OpenSSL 3 on a loaded 2-core machine, for any URL scheme). Meant for a
/// spare thread early in a short-lived process (a CLI start), while it does other
/// work; later calls return at once.
pub fn preload() {
    nodelay::install();
}

/// Brings an existing checkout (a restored snapshot) to the branch `source` asks for:
/// fetches exactly `+refs/heads/B:refs/remotes/origin/B` at depth 1, then does the
/// equivalent of `git checkout -B B origin/B` and removes untracked files left from
/// the snapshot's older tree (ignored files stay). With `new_branch`, the new branch is
/// created from B's tip instead (B being `branch` or the remote's default branch).
///
/// The workspace may be a single-branch shallow clone of any other branch; force-pushed
/// branches are followed (the refspec forces).
///
/// The workspace's `origin` may name the repository in another form
/// ([`RepoUrl::same_repository`]: another scheme, port or ssh user, with or without
/// `.git`); the fetch then goes to `source.url()` and `origin` becomes that URL.
///
/// # Errors
/// [`Error::OriginMismatch`] when the workspace's `origin` is another repository, and
/// the errors of [`clone`].
#[tracing::instrument(level = "debug", skip_all, fields(repository = %source.url()))]
pub fn sync(source: &Source, workspace: &Path, options: &GitOptions) -> Result<Checkout> {
    nodelay::install();
    let scope = watch::Scope::enter(operation("sync", source.url(), Some(workspace), options));
    scope.run(|| sync_in(source, workspace, options))
}

/// The limits of one operation (`op` of `url`) for [`watch`].
fn operation(
    op: &str,
    url: &RepoUrl,
    dir: Option<&Path>,
    options: &GitOptions,
) -> watch::Operation {
    watch::Operation::new(
        format!("git {op} of {url}"),
        dir.map(Path::to_path_buf),
        options.cancel.clone(),
        options.limits,
    )
}

fn sync_in(source: &Source, workspace: &Path, options: &GitOptions) -> Result<Checkout> {
    let started = std::time::Instant::now();
    let url = source.url();
    let repo = open_workspace(workspace, "sync")?;
    let mut remote = repo.find_remote("origin").map_err(|e| Error::Git {
        op: "sync",
        message: format!(
            "the workspace at {} has no `origin` remote: {}",
            workspace.display(),
            crate::scrub::scrub(e.message())
        ),
    })?;
    let actual = remote.url().unwrap_or("").to_owned();
    let same = RepoUrl::parse(&actual).is_ok_and(|a| a.same_repository(url));
    if !same {
        return Err(Error::OriginMismatch {
            workspace: workspace.to_path_buf(),
            expected: url.to_string(),
            actual: crate::scrub::scrub(&crate::url::redact_userinfo(&actual)).into_owned(),
        });
    }
    // The same repository in another form (git:// for a snapshot taken over https, a
    // mirror's port): fetch from the URL given, and make it the workspace's origin
    // (a validated URL holds no credential). A failed fetch puts the old one back.
    let wanted = url.as_git_url();
    let rewritten = actual != wanted;
    if rewritten {
        drop(remote);
        repo.remote_set_url("origin", &wanted)
            .map_err(git_err("sync"))?;
        remote = repo.find_remote("origin").map_err(git_err("sync"))?;
        tracing::debug!(from = %crate::scrub::scrub(&actual), to = %url, "origin rewritten to the URL given");
    }
    let branch = source.branch().map(|b| b.as_str());
    let new_branch = source.new_branch().map(|b| b.as_str());
    let depth = transfer::effective_depth(url, Depth::default());
    let fetched =
        transfer::connect_and_fetch("sync", &mut remote, url, branch, new_branch, depth, options);
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            if rewritten {
                if let Err(restore) = repo.remote_set_url("origin", &actual) {
                    tracing::warn!(error = %restore.message(), "could not restore the origin URL");
                }
            }
            return Err(e);
        }
    };
    drop(remote);
    ensure_fetch_refspec(&repo, &fetched.base)?;
    check_out_fetched(
        &repo,
        url,
        &fetched,
        new_branch,
        Step::Sync,
        started,
        options.clean_seal.as_ref(),
    )
}

/// Which operation [`check_out_fetched`] finishes.
#[derive(Clone, Copy)]
enum Step {
    Clone,
    Sync,
}

/// The tail clone and sync share: `origin/HEAD`, the submodule/LFS check, `checkout -B`
/// of the fetched tip (forced, with untracked files cleaned, for a sync) and the log line.
fn check_out_fetched(
    repo: &Repository,
    url: &RepoUrl,
    fetched: &transfer::Fetched,
    new_branch: Option<&str>,
    step: Step,
    started: std::time::Instant,
    seal: Option<&CleanSeal>,
) -> Result<Checkout> {
    let (op, sync) = match step {
        Step::Clone => ("clone", false),
        Step::Sync => ("sync", true),
    };
    set_origin_head(repo, fetched.default_branch.as_deref())?;
    let tree = repo
        .find_commit(fetched.tip)
        .and_then(|c| c.tree())
        .map_err(git_err(op))?;
    let t = std::time::Instant::now();
    let attributes = checkout::refuse_incomplete(repo, &tree, url)?;
    tracing::debug!(
        elapsed_ms = t.elapsed().as_millis() as u64,
        "checked for submodules and LFS"
    );
    let head = match new_branch {
        Some(nb) => checkout::checkout_branch(repo, nb, fetched.tip, None, sync, seal, attributes)?,
        None => {
            let up = Some(fetched.base.as_str());
            checkout::checkout_branch(repo, &fetched.base, fetched.tip, up, sync, seal, attributes)?
        }
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match step {
        Step::Clone => tracing::info!(
            repository = %url, branch = %head.branch, commit = %head.commit,
            received_bytes = fetched.received_bytes, elapsed_ms, "cloned"
        ),
        Step::Sync => tracing::info!(
            repository = %url, branch = %head.branch, commit = %head.commit,
            received_bytes = fetched.received_bytes, elapsed_ms, "synced"
        ),
    }
    Ok(Checkout {
        head,
        received_bytes: fetched.received_bytes,
        received_objects: fetched.received_objects,
    })
}

/// The remote's default branch (its `HEAD` symref), read from the remote.
///
/// # Errors
/// As [`clone`]; [`Error::Git`] when the remote names no default branch (empty
/// repository).
#[tracing::instrument(level = "debug", skip_all, fields(repository = %url))]
pub fn remote_default_branch(url: &RepoUrl, credentials: &Credentials) -> Result<String> {
    let options = GitOptions {
        credentials: credentials.clone(),
        ..GitOptions::default()
    };
    remote_default_branch_with(url, &options)
}

/// [`remote_default_branch`] with the credentials, limits and cancel token of
/// `options` (`depth` and `progress` do not apply).
///
/// # Errors
/// As [`remote_default_branch`]; [`Error::Cancelled`], [`Error::Timeout`],
/// [`Error::TooSlow`] when the limits stop it.
#[tracing::instrument(level = "debug", skip_all, fields(repository = %url))]
pub fn remote_default_branch_with(url: &RepoUrl, options: &GitOptions) -> Result<String> {
    nodelay::install();
    let scope = watch::Scope::enter(operation("ls-remote", url, None, options));
    let adv = scope.run(|| transfer::ls_remote(url, options))?;
    adv.default_branch.ok_or_else(|| Error::Git {
        op: "ls-remote",
        message: format!("{url} does not name a default branch (HEAD); it may be empty"),
    })
}

/// Opens the repository at `workspace`, or says it is not a git workspace (for `op`).
pub(crate) fn open_workspace(workspace: &Path, op: &'static str) -> Result<Repository> {
    Repository::open(workspace).map_err(|e| Error::Git {
        op,
        message: format!(
            "{} is not a git workspace: {}",
            workspace.display(),
            crate::scrub::scrub(e.message())
        ),
    })
}

/// The branch and commit of a workspace's HEAD.
///
/// # Errors
/// [`Error::Git`] when `workspace` is not a repository or HEAD is detached or unborn.
pub fn head(workspace: &Path) -> Result<HeadInfo> {
    let op = "head";
    let repo = open_workspace(workspace, op)?;
    if repo.head_detached().map_err(git_err(op))? {
        return Err(Error::Git {
            op,
            message: format!("HEAD of {} is detached", workspace.display()),
        });
    }
    let head = repo.head().map_err(|e| Error::Git {
        op,
        message: format!(
            "HEAD of {} names no commit: {}",
            workspace.display(),
            crate::scrub::scrub(e.message())
        ),
    })?;
    let branch = head.shorthand().unwrap_or_default().to_owned();
    let commit = head.peel_to_commit().map_err(git_err(op))?.id().to_string();
    Ok(HeadInfo { branch, commit })
}

fn git_err(op: &'static str) -> impl Fn(git2::Error) -> Error {
    move |e| Error::Git {
        op,
        message: crate::scrub::scrub(e.message()).into_owned(),
    }
}

/// Adds `+refs/heads/B:refs/remotes/origin/B` to origin's fetch refspecs if missing, so
/// `git status` and `git pull` in the sandbox know the branch's upstream.
fn ensure_fetch_refspec(repo: &Repository, branch: &str) -> Result<()> {
    let spec = transfer::tracking_refspec(branch);
    let remote = repo.find_remote("origin").map_err(git_err("sync"))?;
    let have = remote.fetch_refspecs().map_err(git_err("sync"))?;
    if have.iter().any(|s| matches!(s, Ok(Some(x)) if x == spec)) {
        return Ok(());
    }
    repo.remote_add_fetch("origin", &spec)
        .map_err(git_err("sync"))
}

/// Points `refs/remotes/origin/HEAD` at `origin/<default branch>` (as `git clone`
/// does) when that remote-tracking branch exists here, so tools in the sandbox that
/// ask git for the default branch (`git symbolic-ref refs/remotes/origin/HEAD`) get the
/// real one instead of guessing `main`. Never leaves a dangling symref.
fn set_origin_head(repo: &Repository, default_branch: Option<&str>) -> Result<()> {
    let Some(default) = default_branch else {
        return Ok(());
    };
    let target = format!("refs/remotes/origin/{default}");
    if repo.find_reference(&target).is_err() {
        return Ok(());
    }
    let current = repo
        .find_reference("refs/remotes/origin/HEAD")
        .ok()
        .and_then(|r| r.symbolic_target().ok().flatten().map(str::to_owned));
    if current.as_deref() == Some(target.as_str()) {
        return Ok(());
    }
    repo.reference_symbolic(
        "refs/remotes/origin/HEAD",
        &target,
        true,
        "headstart: origin HEAD",
    )
    .map(drop)
    .map_err(git_err("clone"))
}

/// Checks `dest` is absent or an empty directory; returns whether clone creates it.
fn prepare_dest(dest: &Path) -> Result<bool> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::InvalidOptions(format!(
                    "cannot clone into {}: the directory is not empty",
                    dest.display()
                )));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(format!("reading {}", dest.display()), e)),
    }
}

/// Removes what a failed clone left: `dest` itself if the clone created it, else its
/// contents.
fn cleanup_dest(dest: &Path, created: bool) {
    let result = if created {
        std::fs::remove_dir_all(dest)
    } else {
        std::fs::read_dir(dest).and_then(|entries| {
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
            Ok(())
        })
    };
    if let Err(e) = result {
        tracing::warn!(dest = %dest.display(), error = %e, "could not clean up after a failed clone");
    }
}

/// Makes `url` the workspace's `origin` for fetch and push (any `pushurl` removed):
/// what a credential broker's grant URL replaces the upstream with.
///
/// # Errors
/// [`Error::Git`] when `workspace` is not a repository or has no `origin`.
pub fn set_origin_url(workspace: &Path, url: &str) -> Result<()> {
    let op = "set origin";
    let repo = Repository::open(workspace).map_err(git_err(op))?;
    repo.find_remote("origin").map_err(git_err(op))?;
    repo.remote_set_url("origin", url).map_err(git_err(op))?;
    let mut config = repo.config().map_err(git_err(op))?;
    match config.remove("remote.origin.pushurl") {
        Ok(()) => Ok(()),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(()),
        Err(e) => Err(git_err(op)(e)),
    }
}
