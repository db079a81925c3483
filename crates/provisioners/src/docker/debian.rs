//! The preferred offline recipe for the base image: a minimal Debian (or Ubuntu) root
//! filesystem made with `mmdebstrap` from the distribution's packages.
//!
//! `mmdebstrap --variant=minbase --include=git,ca-certificates,...` with a fixed
//! `SOURCE_DATE_EPOCH`, writing a tarball that is then imported into the engine. It is
//! the one place this crate runs an external program to build an image: `mmdebstrap`
//! as an argv subprocess (never through a shell; its hook is its own `upload` command,
//! not a shell snippet). It needs `mmdebstrap` on `PATH`, the archive keyring and the
//! package mirror.
//!
//! The image is tagged by the digest of its **inputs** (recipe version, suite, package
//! sources, packages, architecture, the files put in), so it is known before anything
//! is built: a machine builds it once and reuses it. The suite and the sources default
//! to the host's own (`/etc/os-release`, `/etc/apt/sources.list` and
//! `/etc/apt/sources.list.d/`), so it reaches the mirror apt is configured with.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sandbox_core::{Error, Result};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::PROVIDER;

/// Bumped whenever the recipe below changes what it builds.
const RECIPE_VERSION: &str = "headstart-debian-1";
/// Packages every Debian base image has (on top of the `minbase` variant, which brings
/// `dash`, `bash`, `coreutils` with `stty`, `grep`, `sed`, `findutils`, `login`/`passwd`).
pub const DEBIAN_PACKAGES: &[&str] = &["git", "ca-certificates", "less", "procps"];
/// The suite used when the host is not Debian or Ubuntu.
pub const DEFAULT_SUITE: &str = "bookworm";
/// The mirror used when the host's sources name none for the suite.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Fixed timestamps (2024-01-01T00:00:00Z), so the same packages give the same tarball.
const SOURCE_DATE_EPOCH: &str = "1704067200";
/// Files dpkg leaves out (documentation and translations an agent does not need).
const PATH_EXCLUDES: &[&str] = &[
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
];
/// How long one `mmdebstrap` run may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// `/etc/gitconfig` in the image: the workspace is never "dubious" to git, whoever
/// owns it (the container user may differ from the files' owner).
pub(crate) const GITCONFIG: &str = "[safe]\n\tdirectory = /workspace\n";

/// Settings of the Debian recipe. The defaults follow the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DebianSpec {
    /// The `mmdebstrap` program (`None`: looked up on `PATH`).
    pub mmdebstrap: Option<PathBuf>,
    /// The suite (`None`: the host's `VERSION_CODENAME` on Debian and Ubuntu, else
    /// [`DEFAULT_SUITE`]).
    pub suite: Option<String>,
    /// Package sources, each a one-line `deb URI SUITE COMPONENTS` entry or a mirror
    /// URI (`None`: the host's apt sources for the suite, else [`DEFAULT_MIRROR`]).
    pub sources: Option<Vec<String>>,
    /// Packages installed besides [`DEBIAN_PACKAGES`].
    pub extra_packages: Vec<String>,
}

/// Everything a Debian base image is made from, resolved; its digest names the image.
#[derive(Debug, Clone)]
pub(crate) struct DebianPlan {
    mmdebstrap: PathBuf,
    suite: String,
    sources: Vec<String>,
    packages: Vec<String>,
    arch: &'static str,
}

impl DebianPlan {
    /// Resolves `spec` against the host. `Ok(None)` when `mmdebstrap` is not installed.
    pub(crate) fn resolve(spec: &DebianSpec) -> Result<Option<Self>> {
        let mmdebstrap = match &spec.mmdebstrap {
            Some(p) => p.clone(),
            None => match find_on_path("mmdebstrap") {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        let (suite, host_family) = match &spec.suite {
            Some(s) => (s.clone(), true),
            None => match host_codename() {
                Some(s) => (s, true),
                None => (DEFAULT_SUITE.to_owned(), false),
            },
        };
        let sources = match &spec.sources {
            Some(s) => s.clone(),
            None => {
                let host = if host_family {
                    host_sources(&suite)
                } else {
                    Vec::new()
                };
                if host.is_empty() {
                    vec![DEFAULT_MIRROR.to_owned()]
                } else {
                    host
                }
            }
        };
        let mut packages: Vec<String> = DEBIAN_PACKAGES.iter().map(|p| (*p).to_owned()).collect();
        for p in &spec.extra_packages {
            if p.is_empty() || p.starts_with('-') || p.contains([',', ' ']) {
                return Err(Error::InvalidOptions(format!(
                    "not a Debian package name: {p:?}"
                )));
            }
            if !packages.contains(p) {
                packages.push(p.clone());
            }
        }
        Ok(Some(Self {
            mmdebstrap,
            suite,
            sources,
            packages,
            arch: std::env::consts::ARCH,
        }))
    }

    /// The digest of the inputs (hex sha256).
    pub(crate) fn digest(&self) -> String {
        let mut h = Sha256::new();
        let mut line = |k: &str, v: &str| h.update(format!("{k}={v}\n").as_bytes());
        line("recipe", RECIPE_VERSION);
        line("suite", &self.suite);
        for s in &self.sources {
            line("source", s);
        }
        line("packages", &self.packages.join(","));
        line("arch", self.arch);
        line("epoch", SOURCE_DATE_EPOCH);
        for p in PATH_EXCLUDES {
            line("exclude", p);
        }
        line("gitconfig", GITCONFIG);
        hex::encode(h.finalize())
    }

    /// What it is made from, for logs and labels.
    pub(crate) fn describe(&self) -> String {
        format!(
            "mmdebstrap {} minbase + {} from {}",
            self.suite,
            self.packages.join(","),
            self.sources.join(" | ")
        )
    }

    /// Runs `mmdebstrap`, writing the root filesystem tarball into `dir`; returns its
    /// path.
    pub(crate) async fn build(&self, dir: &Path) -> Result<PathBuf> {
        let gitconfig = dir.join("gitconfig");
        std::fs::write(&gitconfig, GITCONFIG)
            .map_err(|e| Error::io(format!("writing {}", gitconfig.display()), e))?;
        let out = dir.join("rootfs.tar");
        let mut cmd = tokio::process::Command::new(&self.mmdebstrap);
        cmd.arg("--variant=minbase")
            .arg(format!("--include={}", self.packages.join(",")))
            .arg("--format=tar")
            .arg("--quiet");
        for p in PATH_EXCLUDES {
            cmd.arg(format!("--dpkgopt=path-exclude={p}"));
        }
        cmd.arg(format!(
            "--customize-hook=upload {} /etc/gitconfig",
            gitconfig.display()
        ))
        .arg(&self.suite)
        .arg(&out)
        .args(&self.sources)
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let started = std::time::Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            Error::provider(
                PROVIDER,
                format!("running {}: {e}", self.mmdebstrap.display()),
            )
        })?;
        let mut stderr = child.stderr.take();
        let run = async {
            let mut err = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut err).await;
            }
            (child.wait().await, err)
        };
        let (status, err) = tokio::time::timeout(BUILD_TIMEOUT, run)
            .await
            .map_err(|_| Error::Timeout {
                what: format!("building the base image with {}", self.describe()),
                after: BUILD_TIMEOUT,
            })?;
        let status = status
            .map_err(|e| Error::io(format!("waiting for {}", self.mmdebstrap.display()), e))?;
        if !status.success() {
            let err = String::from_utf8_lossy(&err);
            let tail: Vec<&str> = err.lines().rev().take(12).collect();
            return Err(Error::provider(
                PROVIDER,
                format!(
                    "{} failed ({status}) building the base image ({}): {}",
                    self.mmdebstrap.display(),
                    self.describe(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            ));
        }
        tracing::info!(elapsed = ?started.elapsed(), "mmdebstrap built the base root filesystem");
        Ok(out)
    }
}

/// The first executable `name` on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `VERSION_CODENAME` from `/etc/os-release` on Debian and Ubuntu.
fn host_codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    parse_codename(&text)
}

fn parse_codename(os_release: &str) -> Option<String> {
    let get = |key: &str| {
        os_release.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
    };
    let id = get("ID")?;
    let like = get("ID_LIKE").unwrap_or_default();
    let debianish = ["debian", "ubuntu"]
        .iter()
        .any(|d| id == *d || like.split_whitespace().any(|l| l == *d));
    let codename = get("VERSION_CODENAME").filter(|c| !c.is_empty())?;
    (debianish && codename.chars().all(|c| c.is_ascii_alphanumeric())).then_some(codename)
}

/// The host's apt sources for `suite` (and its `-updates`/`-security` suites) as
/// one-line entries, in file order.
fn host_sources(suite: &str) -> Vec<String> {
    let mut texts: Vec<(bool, String)> = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            let deb822 = match ext {
                "sources" => true,
                "list" => false,
                _ => continue,
            };
            if let Ok(t) = std::fs::read_to_string(&p) {
                texts.push((deb822, t));
            }
        }
    }
    let mut out = Vec::new();
    for (deb822, text) in texts {
        let entries = if deb822 {
            parse_deb822(&text)
        } else {
            parse_one_line(&text)
        };
        for e in entries {
            if !out.contains(&e) && source_matches(&e, suite) {
                out.push(e);
            }
        }
    }
    out
}

fn source_matches(entry: &str, suite: &str) -> bool {
    // `deb [options] URI SUITE COMPONENTS...`
    let mut words = entry.split_whitespace().skip(1);
    let mut next = words.next();
    if next.is_some_and(|w| w.starts_with('[')) {
        while next.is_some_and(|w| !w.ends_with(']')) {
            next = words.next();
        }
        next = words.next();
    }
    let Some(_uri) = next else { return false };
    let Some(s) = words.next() else { return false };
    s == suite || s == format!("{suite}-updates") || s == format!("{suite}-security")
}

/// One-line `deb` entries of a `sources.list` file.
fn parse_one_line(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("deb ") || l.starts_with("deb\t"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// deb822 stanzas of a `.sources` file as one-line `deb` entries (enabled, type `deb`).
fn parse_deb822(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(last) = fields.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        if get("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no"))
            || !get("types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
        {
            continue;
        }
        let (Some(uris), Some(suites)) = (get("uris"), get("suites")) else {
            continue;
        };
        let components = get("components").unwrap_or("main");
        let options = get("signed-by")
            .filter(|s| s.starts_with('/') && !s.contains(' '))
            .map(|s| format!("[signed-by={s}] "))
            .unwrap_or_default();
        for uri in uris.split_whitespace() {
            for suite in suites.split_whitespace() {
                out.push(format!("deb {options}{uri} {suite} {components}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_host_suite_only() {
        let text = "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n\nTypes: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        let entries: Vec<String> = parse_deb822(text)
            .into_iter()
            .filter(|e| source_matches(e, "bookworm"))
            .collect();
        assert_eq!(
            entries,
            [
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main",
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main",
            ]
        );
        let lines = parse_one_line(
            "# x\ndeb http://mirror/debian bookworm main contrib\ndeb-src http://m bookworm main\ndeb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n",
        );
        let lines: Vec<_> = lines
            .into_iter()
            .filter(|e| source_matches(e, "bookworm"))
            .collect();
        assert_eq!(lines, ["deb http://mirror/debian bookworm main contrib"]);
    }

    #[test]
    fn codename_only_for_debian_and_ubuntu() {
        assert_eq!(
            parse_codename("ID=debian\nVERSION_CODENAME=bookworm\n").as_deref(),
            Some("bookworm")
        );
        assert_eq!(
            parse_codename("ID=pop\nID_LIKE=\"ubuntu debian\"\nVERSION_CODENAME=jammy\n")
                .as_deref(),
            Some("jammy")
        );
        assert_eq!(parse_codename("ID=fedora\nVERSION_CODENAME=\"\"\n"), None);
    }

    #[test]
    fn the_digest_names_the_inputs() {
        let spec = DebianSpec {
            mmdebstrap: Some(PathBuf::from("/nonexistent/mmdebstrap")),
            suite: Some("bookworm".into()),
            sources: Some(vec![DEFAULT_MIRROR.into()]),
            extra_packages: vec![],
        };
        let a = DebianPlan::resolve(&spec).unwrap().unwrap();
        let mut other = spec.clone();
        other.extra_packages = vec!["curl".into()];
        let b = DebianPlan::resolve(&other).unwrap().unwrap();
        assert_eq!(
            a.digest(),
            DebianPlan::resolve(&spec).unwrap().unwrap().digest()
        );
        assert_ne!(a.digest(), b.digest());
        other.extra_packages = vec!["--evil".into()];
        assert!(DebianPlan::resolve(&other).is_err());
    }
}
