//! Validated repository URLs.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The accepted forms, quoted in every URL error so the user knows what to type.
const ACCEPTED: &str = "accepted forms: https://host/owner/repo, http://host/owner/repo, \
ssh://[user@]host[:port]/owner/repo, git@host:owner/repo, git://host/owner/repo, \
file:///absolute/path, or a local path (`/...`, `./...`, `../...`, `.`, `..`)";

/// How a [`RepoUrl`] reaches its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `https://` (and `http://`, for loopback servers and tests).
    Http,
    /// `ssh://` or the scp-like `user@host:path`.
    Ssh,
    /// `git://` (the git daemon protocol, unauthenticated).
    Git,
    /// `file://` or a local path. libgit2's local transport cannot do shallow fetches,
    /// so the git engine fetches full history over it.
    File,
}

/// A repository URL, validated at construction.
///
/// Accepted: `https://`, `http://`, `ssh://`, scp-like `user@host:owner/repo(.git)`,
/// `git://`, `file://` and local paths (`/abs`, `./rel`, `../rel`, made absolute).
/// Refused: userinfo in `http(s)://` URLs and token-like query parameters
/// (`?token=`, `?access_token=`, `?private_token=`, …) (pass a token through
/// [`Credentials`](crate::Credentials) instead, so it never lands in a URL, a log or
/// `.git/config`), passwords in `ssh://` URLs, a leading `-` (option injection),
/// whitespace and control characters, and unknown schemes.
///
/// `Display` prints the URL as given minus nothing secret (a validated URL holds no
/// secret), so it is safe to log.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RepoUrl {
    transport: Transport,
    scheme: &'static str,
    scp_like: bool,
    user: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: String,
}

impl RepoUrl {
    /// Parses and validates `input`.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] naming what is wrong and listing the accepted forms. The
    /// error never repeats userinfo it refused.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: crate::scrub::scrub(&redact_userinfo(input)).into_owned(),
            reason: format!("{reason}; {ACCEPTED}"),
        };
        if input.is_empty() {
            return Err(bad("the URL is empty"));
        }
        if input.starts_with('-') {
            return Err(bad(
                "a URL may not start with `-` (it would be read as an option)",
            ));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the URL contains whitespace or control characters"));
        }
        if let Some(name) = token_query_param(input) {
            return Err(bad(&format!(
                "a credential in the URL's query (`{name}=`) is refused (it would end up in \
                 logs and .git/config); pass the token through HEADSTART_GIT_TOKEN or \
                 `Credentials` instead"
            )));
        }
        if let Some((scheme, rest)) = input.split_once("://") {
            let scheme_lc = scheme.to_ascii_lowercase();
            let (transport, scheme): (Transport, &'static str) = match scheme_lc.as_str() {
                "https" => (Transport::Http, "https"),
                "http" => (Transport::Http, "http"),
                "ssh" | "git+ssh" | "ssh+git" => (Transport::Ssh, "ssh"),
                "git" => (Transport::Git, "git"),
                "file" => (Transport::File, "file"),
                _ => return Err(bad(&format!("unknown scheme `{scheme}`"))),
            };
            if transport == Transport::File {
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(bad("a file:// URL needs an absolute path (file:///path)"));
                }
                return Self::local(normalize_local(Path::new(path)), "file");
            }
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((userinfo, hostport)) => {
                    if transport != Transport::Ssh {
                        return Err(bad(
                            "credentials in the URL are refused (they would end up in logs and \
                             .git/config); pass the token through HEADSTART_GIT_TOKEN or \
                             `Credentials` instead",
                        ));
                    }
                    if userinfo.contains(':') {
                        return Err(bad(
                            "a password in an ssh:// URL is refused; use key authentication",
                        ));
                    }
                    (Some(userinfo.to_owned()), hostport)
                }
                None => (None, authority),
            };
            let (host, port) = split_host_port(hostport).map_err(|r| bad(&r))?;
            check_path(path).map_err(|r| bad(&r))?;
            if let Some(u) = &user {
                check_user(u).map_err(|r| bad(&r))?;
            }
            return Ok(Self {
                transport,
                scheme,
                scp_like: false,
                user,
                host: Some(host),
                port,
                path: path.to_owned(),
            });
        }
        if input.starts_with('/')
            || input.starts_with("./")
            || input.starts_with("../")
            || input == "."
            || input == ".."
        {
            let abs = std::path::absolute(input).map_err(|e| bad(&e.to_string()))?;
            return Self::local(normalize_local(&abs), "file");
        }
        // `<transport>::<address>` is git's remote-helper syntax (`ext::` runs a
        // command in the git CLI): never a repository URL here.
        if let Some((helper, _)) = input.split_once("::") {
            if !helper.contains('/') {
                return Err(bad(&format!(
                    "the remote-helper syntax `{helper}::...` is refused"
                )));
            }
        }
        // scp-like: [user@]host:path, with the colon before any slash.
        if let Some((left, path)) = input.split_once(':') {
            if !left.contains('/') && !left.is_empty() {
                let (user, host) = match left.rsplit_once('@') {
                    Some((u, h)) => (Some(u.to_owned()), h),
                    None => (None, left),
                };
                if let Some(u) = &user {
                    check_user(u).map_err(|r| bad(&r))?;
                }
                check_host(host).map_err(|r| bad(&r))?;
                if path.starts_with('-') {
                    return Err(bad("the repository path may not start with `-`"));
                }
                let path = if path.starts_with('/') {
                    path.to_owned()
                } else {
                    format!("/{path}")
                };
                check_path(&path).map_err(|r| bad(&r))?;
                return Ok(Self {
                    transport: Transport::Ssh,
                    scheme: "ssh",
                    scp_like: true,
                    user,
                    host: Some(host.to_ascii_lowercase()),
                    port: None,
                    path,
                });
            }
        }
        Err(bad("not a URL or local path git can use"))
    }

    /// A URL for a local repository directory (made absolute, not required to exist).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when the path cannot be made absolute or is not UTF-8.
    pub fn from_path(path: &Path) -> Result<Self, Error> {
        let abs = std::path::absolute(path).map_err(|e| Error::InvalidUrl {
            url: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::local(normalize_local(&abs), "file")
    }

    fn local(path: PathBuf, scheme: &'static str) -> Result<Self, Error> {
        let s = path.to_str().ok_or_else(|| Error::InvalidUrl {
            url: path.display().to_string(),
            reason: "local paths must be valid UTF-8".into(),
        })?;
        if s.chars().any(|c| c.is_control()) {
            return Err(Error::InvalidUrl {
                url: s.escape_debug().to_string(),
                reason: "the path contains control characters".into(),
            });
        }
        Ok(Self {
            transport: Transport::File,
            scheme,
            scp_like: false,
            user: None,
            host: None,
            port: None,
            path: s.to_owned(),
        })
    }

    /// The transport this URL uses.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The host, lower-cased; `None` for local repositories.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The port when the URL names one other than its scheme's default (`https` 443,
    /// `http` 80, `ssh` 22, `git` 9418); `None` for the default, for no port and for
    /// local repositories. Two servers on one host are told apart by it.
    pub fn non_default_port(&self) -> Option<u16> {
        let origin = self.origin()?;
        self.port.filter(|p| *p != default_port(origin.scheme))
    }

    /// The path on the host (always starting with `/`), or the absolute local path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The ssh user name, if the URL names one (never a secret).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// True for `file://` URLs and local paths.
    pub fn is_local(&self) -> bool {
        self.transport == Transport::File
    }

    /// The local directory of a `file://` URL.
    pub fn local_path(&self) -> Option<&Path> {
        self.is_local().then(|| Path::new(&self.path))
    }

    /// Scheme, host and port (default ports filled in); `None` for local
    /// repositories. Credentials are only ever sent to this origin.
    pub fn origin(&self) -> Option<Origin> {
        let host = self.host.clone()?;
        let scheme = match self.transport {
            Transport::Http => self.scheme,
            Transport::Ssh => "ssh",
            Transport::Git => "git",
            Transport::File => return None,
        };
        Some(Origin {
            scheme,
            host,
            port: self.port.unwrap_or_else(|| default_port(scheme)),
        })
    }

    /// True when `other` names the same repository, in any URL form: the same host
    /// (case-insensitive; scheme, port and ssh user ignored) and the same path,
    /// ignoring a trailing `/` and `.git`. So `https://host/o/app.git`,
    /// `git://host/o/app`, `git@host:o/app.git` and `ssh://host:2222/o/app/` are one
    /// repository. Local repositories compare canonical paths (a repository's `.git`
    /// directory is the repository); a local and a remote URL never match.
    pub fn same_repository(&self, other: &RepoUrl) -> bool {
        match (self.local_path(), other.local_path()) {
            (Some(a), Some(b)) => local_key(a) == local_key(b),
            (None, None) => {
                self.host == other.host && repo_path_key(&self.path) == repo_path_key(&other.path)
            }
            _ => false,
        }
    }

    /// The string handed to git (identical to `Display`).
    pub fn as_git_url(&self) -> String {
        self.to_string()
    }
}

/// Where credentials may go: scheme, host and port of a URL, default ports filled in
/// (`https` 443, `http` 80, `ssh` 22, `git` 9418) and the host lower-cased.
///
/// The git engine binds a token to the [`RepoUrl::origin`] of the repository the user
/// named and refuses to hand it to any other origin (a redirect to another port, host
/// or scheme).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: &'static str,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of a URL string as libgit2 hands it to callbacks (`scheme://[user@]host[:port]/...`
    /// or scp-like `[user@]host:path`); `None` when it names no network origin.
    pub fn of(url: &str) -> Option<Self> {
        if let Some((scheme, rest)) = url.split_once("://") {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "https" => "https",
                "http" => "http",
                "ssh" | "git+ssh" | "ssh+git" => "ssh",
                "git" => "git",
                _ => return None,
            };
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let (host, port) = split_host_port(hostport).ok()?;
            return Some(Self {
                scheme,
                host,
                port: port.unwrap_or_else(|| default_port(scheme)),
            });
        }
        let (left, _) = url.split_once(':')?;
        if left.is_empty() || left.contains('/') {
            return None;
        }
        let host = left.rsplit_once('@').map_or(left, |(_, h)| h);
        check_host(host).ok()?;
        Some(Self {
            scheme: "ssh",
            host: host.to_ascii_lowercase(),
            port: default_port("ssh"),
        })
    }

    /// `https`, `http`, `ssh` or `git`.
    pub fn scheme(&self) -> &str {
        self.scheme
    }

    /// The host, lower-cased.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, the scheme's default when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

fn default_port(scheme: &str) -> u16 {
    match scheme {
        "https" => 443,
        "http" => 80,
        "ssh" => 22,
        _ => 9418,
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.transport == Transport::File {
            return write!(f, "file://{}", self.path);
        }
        let host = self.host.as_deref().unwrap_or_default();
        if self.scp_like {
            if let Some(u) = &self.user {
                write!(f, "{u}@")?;
            }
            return write!(f, "{host}:{}", self.path.trim_start_matches('/'));
        }
        write!(f, "{}://", self.scheme)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        f.write_str(host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(&self.path)
    }
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoUrl({self})")
    }
}

impl std::str::FromStr for RepoUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl serde::Serialize for RepoUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RepoUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A remote repository path without trailing `/` and `.git`.
fn repo_path_key(path: &str) -> &str {
    let p = path.trim_end_matches('/');
    p.strip_suffix(".git").unwrap_or(p).trim_end_matches('/')
}

/// A local repository path, canonical where it exists, without a final `.git`
/// component (the repository is its work tree).
fn local_key(path: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if canonical.file_name().is_some_and(|n| n == ".git") {
        if let Some(parent) = canonical.parent() {
            return parent.to_path_buf();
        }
    }
    canonical
}

/// Replaces the userinfo of a URL-looking string with `***` so errors never echo it.
pub(crate) fn redact_userinfo(input: &str) -> String {
    let cleaned: String = input
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if let Some((scheme, rest)) = cleaned.split_once("://") {
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    cleaned
}

/// The name of the first token-like query parameter of a URL (`?token=…`,
/// `&access_token=…`; see [`crate::scrub`]), if any. Local paths have no query.
fn token_query_param(input: &str) -> Option<String> {
    if input.starts_with('/') || input.starts_with('.') || input.starts_with("file:") {
        return None;
    }
    // The query, the fragment (`#token=`, which git would not send but stores in
    // .git/config and prints) and `;` parameters all count.
    let (_, params) = input.split_once(['?', '#', ';'])?;
    params
        .split(['&', ';', '?', '#'])
        .map(|kv| kv.split_once('=').map_or(kv, |(k, _)| k))
        .find(|k| crate::scrub::is_token_param(k))
        .map(|k| k.escape_debug().to_string())
}

fn normalize_local(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() {
        PathBuf::from("/")
    } else {
        PathBuf::from(trimmed)
    }
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unterminated IPv6 address")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("unexpected text after the IPv6 address".into()),
        };
        (format!("[{h}]"), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    check_host(host.trim_start_matches('[').trim_end_matches(']'))?;
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("`{p}` is not a valid port"))?,
        ),
        None => None,
    };
    Ok((host.to_ascii_lowercase(), port))
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    if host.starts_with('-') {
        return Err("a host may not start with `-`".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(format!("`{host}` is not a valid host name"));
    }
    Ok(())
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() || user.starts_with('-') {
        return Err("the ssh user name is empty or starts with `-`".into());
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    let repo = path.trim_matches('/');
    if repo.is_empty() {
        return Err("the URL names no repository path".into());
    }
    if repo.split('/').any(|seg| seg == "..") {
        return Err("the repository path may not contain `..`".into());
    }
    Ok(())
}
