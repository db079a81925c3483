//! Configuration of the local provider, read from the environment in this one place.
//!
//! `HEADSTART_HOME` (the data directory) and `HEADSTART_RESTORE_METHOD` (force a restore
//! method) are read here and nowhere else; everything else takes explicit values so
//! tests never touch process environment variables.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sandbox_core::{Error, Result};

/// The environment variable that overrides the data directory.
pub const HOME_ENV: &str = "HEADSTART_HOME";
/// The environment variable that forces a restore method (`auto`, `overlay`,
/// `reflink`, `hardlink`, `copy`).
pub const RESTORE_METHOD_ENV: &str = "HEADSTART_RESTORE_METHOD";

/// How a snapshot's workspace becomes a new sandbox's workspace.
///
/// Every method gives each sandbox its own writable files: no two sandboxes ever share
/// a file they may write.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMethod {
    /// Probe the data directory's filesystem once and pick the fastest method that
    /// works there: overlay, then reflink, then hardlink-copy.
    #[default]
    Auto,
    /// An overlay mount: the snapshot's workspace is the read-only lower layer, the
    /// sandbox's writes go to its own upper layer. O(1); needs root (`CAP_SYS_ADMIN`).
    Overlay,
    /// Copy-on-write clones of every file (`FICLONE`), on filesystems that have them
    /// (XFS with `reflink=1`, btrfs). Files share blocks until written.
    Reflink,
    /// Hardlinks for immutable git objects (`.git/objects` packs and loose objects,
    /// which git never writes in place) and plain copies for everything else.
    HardlinkCopy,
    /// Plain copies of every file.
    Copy,
}

impl RestoreMethod {
    /// Its name in configuration and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Overlay => "overlay",
            Self::Reflink => "reflink",
            Self::HardlinkCopy => "hardlink",
            Self::Copy => "copy",
        }
    }

    /// Every concrete (non-`Auto`) method, fastest first.
    pub const CONCRETE: [RestoreMethod; 4] =
        [Self::Overlay, Self::Reflink, Self::HardlinkCopy, Self::Copy];
}

impl fmt::Display for RestoreMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RestoreMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "overlay" | "overlayfs" => Ok(Self::Overlay),
            "reflink" | "ficlone" | "cow" => Ok(Self::Reflink),
            "hardlink" | "hardlink-copy" | "hardlink_copy" => Ok(Self::HardlinkCopy),
            "copy" => Ok(Self::Copy),
            other => Err(Error::InvalidOptions(format!(
                "unknown restore method `{}`; use auto, overlay, reflink, hardlink or copy",
                other.escape_debug()
            ))),
        }
    }
}

/// The local provider's settings as the environment gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// The data directory (`sandboxes/` and `snapshots/` live under it).
    pub home: PathBuf,
    /// The restore method (`Auto` unless overridden).
    pub restore_method: RestoreMethod,
}

impl LocalConfig {
    /// Reads `HEADSTART_HOME` (else the XDG data directory, `~/.local/share/headstart`)
    /// and `HEADSTART_RESTORE_METHOD` (else `auto`).
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when `HEADSTART_RESTORE_METHOD` names no method or no
    /// data directory can be found (no `HEADSTART_HOME` and no home directory).
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// As [`from_env`](Self::from_env), with the variables looked up by `var` (tests
    /// and embedders pass their own instead of touching the process environment).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Self> {
        let home = home_from(var(HOME_ENV))?;
        let restore_method = match var(RESTORE_METHOD_ENV) {
            None => RestoreMethod::Auto,
            Some(value) => value
                .to_str()
                .ok_or_else(|| {
                    Error::InvalidOptions(format!(
                        "{RESTORE_METHOD_ENV} is not valid UTF-8; use auto, overlay, reflink, \
                         hardlink or copy"
                    ))
                })?
                .parse()?,
        };
        Ok(Self {
            home,
            restore_method,
        })
    }
}

/// The default data directory: `HEADSTART_HOME` if set (and not empty), else the XDG
/// data directory (`$XDG_DATA_HOME/headstart`, `~/.local/share/headstart`).
///
/// # Errors
/// [`Error::InvalidOptions`] when neither exists (no home directory).
pub fn default_home() -> Result<PathBuf> {
    home_from(std::env::var_os(HOME_ENV))
}

fn home_from(value: Option<OsString>) -> Result<PathBuf> {
    match value {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => directories::ProjectDirs::from("", "", "headstart")
            .map(|dirs| dirs.data_dir().to_path_buf())
            .ok_or_else(|| {
                Error::InvalidOptions(format!(
                    "cannot find a data directory (no home directory); set {HOME_ENV} to a \
                     writable directory"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_and_print() {
        for m in RestoreMethod::CONCRETE
            .into_iter()
            .chain([RestoreMethod::Auto])
        {
            assert_eq!(m.as_str().parse::<RestoreMethod>().unwrap(), m);
        }
        assert_eq!(
            " Overlay ".parse::<RestoreMethod>().unwrap(),
            RestoreMethod::Overlay
        );
        let err = "zfs".parse::<RestoreMethod>().unwrap_err().to_string();
        assert!(err.contains("reflink"), "{err}");
    }

    #[test]
    fn configuration_comes_from_the_variables_given() {
        let vars = |home: Option<&str>, method: Option<&str>| {
            let (home, method) = (home.map(OsString::from), method.map(OsString::from));
            LocalConfig::from_vars(move |name| match name {
                HOME_ENV => home.clone(),
                RESTORE_METHOD_ENV => method.clone(),
                _ => None,
            })
        };
        let c = vars(Some("/srv/hs"), Some("hardlink")).unwrap();
        assert_eq!(c.home, PathBuf::from("/srv/hs"));
        assert_eq!(c.restore_method, RestoreMethod::HardlinkCopy);
        assert_eq!(
            vars(Some("/srv/hs"), None).unwrap().restore_method,
            RestoreMethod::Auto
        );
        assert!(vars(Some("/srv/hs"), Some("tmpfs")).is_err());
        // an empty HEADSTART_HOME means the XDG default, which ends in `headstart`
        if let Ok(c) = vars(Some(""), None) {
            assert!(c.home.ends_with("headstart"), "{}", c.home.display());
        }
    }
}
