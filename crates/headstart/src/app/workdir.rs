//! A start in the user's own directory ([`UpRequest::workdir`](super::UpRequest)):
//! checking the directory and naming its sandbox.
//!
//! - The directory may be neither inside the data directory (`HEADSTART_HOME`) nor
//!   contain it, whatever the spelling of either (symlinks, relative paths, `..`):
//!   [`provisioners::workdir::check_workdir`]. The app layer checks against the whole
//!   data directory, which also holds the Docker provider's (`<home>/docker`); every
//!   provider checks its own again.
//! - Without a repository the directory must exist (it is used as it is); with one it
//!   may be missing or empty (the repository is cloned into it), or a checkout of that
//!   repository (`FastStart` decides; anything else is refused there).
//! - Without a name, the sandbox is the one already using that directory (a ready
//!   sandbox whose workspace is it, found with `list`), else the stable name
//!   [`provisioners::workdir::sandbox_name_for`] derives from the resolved path: a
//!   second start in the same directory reconnects instead of adding a sandbox each time.

use std::path::{Path, PathBuf};

use sandbox_core::{BranchName, RepoUrl, SandboxName, SandboxProvider, Source};

use super::{Error, Result};

/// The workdir resolved and checked against the data directory `home`.
///
/// # Errors
/// [`Error::InvalidInput`] when it is inside or contains the data directory, or
/// (without a repository) is not an existing directory.
pub(crate) fn checked(dir: &Path, home: &Path, has_repo: bool) -> Result<PathBuf> {
    let resolved = provisioners::workdir::check_workdir(dir, home).map_err(|e| match e {
        sandbox_core::Error::InvalidOptions(why) => Error::InvalidInput(format!("workdir: {why}")),
        other => Error::InvalidInput(format!("workdir: {other}")),
    })?;
    if !has_repo && !resolved.is_dir() {
        return Err(Error::InvalidInput(format!(
            "workdir {} is not a directory (give a repository to clone into a new one)",
            dir.display()
        )));
    }
    Ok(resolved)
}

/// The source of a start without a repository: the directory itself, with the
/// branches asked for (a reconnect switches to them when it can).
pub(crate) fn source_of(
    dir: &Path,
    branch: Option<&str>,
    new_branch: Option<&str>,
) -> Result<Source> {
    let mut source = Source::new(RepoUrl::from_path(dir)?);
    if let Some(b) = branch {
        source = source.with_branch(BranchName::new(b)?)?;
    }
    if let Some(n) = new_branch {
        source = source.with_new_branch(BranchName::new(n)?)?;
    }
    Ok(source)
}

/// The name of the sandbox for workdir `dir` (resolved) when no name is given:
/// a ready sandbox of `provider` whose workspace is `dir`, else the stable derived name.
pub(crate) async fn sandbox_name(provider: &dyn SandboxProvider, dir: &Path) -> SandboxName {
    let derived = provisioners::workdir::sandbox_name_for(dir);
    match provider.list().await {
        Ok(all) => all
            .into_iter()
            .filter(|s| !s.state.is_unfinished())
            .filter(|s| {
                s.workspace == dir
                    || std::fs::canonicalize(&s.workspace).is_ok_and(|w| w.as_path() == dir)
            })
            .map(|s| s.name)
            .min_by_key(|n| n != &derived)
            .unwrap_or(derived),
        Err(e) => {
            tracing::debug!(error = %e, "could not list sandboxes; using the derived name");
            derived
        }
    }
}
