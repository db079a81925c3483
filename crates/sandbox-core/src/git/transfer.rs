//! Talking to a remote: credential and progress callbacks, one connection that reads
//! the ref advertisement and then fetches over the same transport, and the mapping of
//! libgit2 failures to [`Error`] variants a user can act on.
//!
//! Not here: what to do with the fetched commit (see `checkout`).

use std::cell::Cell;
use std::rc::Rc;

use git2::{AutotagOption, CredentialType, Direction, FetchOptions, Oid, RemoteCallbacks};

use super::{Depth, GitOptions, Progress, known_hosts};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::url::{RepoUrl, Transport};

/// What happened in the credential and certificate callbacks, for error mapping.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    /// A secret (token or ssh key) was offered; libgit2 asking again means refused.
    offered: Cell<bool>,
    /// The credential callback declined (nothing to offer, or already refused).
    declined: Cell<bool>,
    /// The callback was asked for credentials for another origin (after a redirect):
    /// that origin, as far as it could be read.
    foreign_origin: std::cell::RefCell<Option<String>>,
    /// Why the ssh host key was rejected, if it was.
    host_key: std::cell::RefCell<Option<String>>,
    /// Why the token was withheld from the server that asked for it, if it was.
    withheld: std::cell::RefCell<Option<String>>,
    /// When the pack's last object arrived (what follows is libgit2 resolving deltas
    /// and completing a thin pack), for the fetch's log line.
    received_at: Cell<Option<std::time::Instant>>,
}

/// The branches a remote advertises and its default branch.
#[derive(Debug, Default)]
pub(crate) struct Advertisement {
    /// `(short branch name, tip)` for every `refs/heads/*`.
    pub(crate) branches: Vec<(String, Oid)>,
    /// The short name of the branch the remote's `HEAD` names, if it says.
    pub(crate) default_branch: Option<String>,
}

impl Advertisement {
    /// The tip of `branch`, if advertised.
    pub(crate) fn tip(&self, branch: &str) -> Option<Oid> {
        self.branches
            .iter()
            .find(|(b, _)| b == branch)
            .map(|(_, oid)| *oid)
    }

    /// A few branch names that exist, for "branch not found" errors: the default
    /// branch first, then others in name order.
    pub(crate) fn some_names(&self, max: usize) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        if let Some(d) = &self.default_branch {
            names.push(d.clone());
        }
        let mut others: Vec<&String> = self
            .branches
            .iter()
            .map(|(b, _)| b)
            .filter(|b| Some(*b) != self.default_branch.as_ref())
            .collect();
        others.sort();
        names.extend(others.into_iter().cloned());
        names.truncate(max);
        names
    }
}

/// Builds callbacks: credentials only for `url`'s exact origin (scheme, host, port)
/// and at most once, progress to the caller's callback.
///
/// libgit2 hands the credential callback the URL it is authenticating for, which
/// after a redirect (libgit2 follows one on the initial request) is the redirect's
/// target: a target on another origin gets nothing.
pub(crate) fn callbacks<'a>(
    url: &'a RepoUrl,
    options: &'a GitOptions,
    auth: &Rc<AuthState>,
) -> RemoteCallbacks<'a> {
    let mut cbs = RemoteCallbacks::new();
    let state = Rc::clone(auth);
    let creds: &Credentials = &options.credentials;
    cbs.credentials(move |cb_url, user_from_url, allowed| {
        let expected = url.origin();
        let asked = crate::url::Origin::of(cb_url);
        if expected.is_none() || asked != expected {
            let shown = asked.map_or_else(|| "an unrecognised URL".to_owned(), |o| o.to_string());
            tracing::warn!(repository = %url, asked = %shown, "credentials requested for another origin; refused");
            *state.foreign_origin.borrow_mut() = Some(shown);
            return Err(git2::Error::from_str(
                "credentials refused for an origin other than the repository's",
            ));
        }
        let ssh_user = user_from_url.or(url.user()).unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) {
            return git2::Cred::username(ssh_user);
        }
        if state.offered.get() {
            // libgit2 asks again, forever, when the server refuses what we offered.
            state.declined.set(true);
            return Err(git2::Error::from_str("the server refused the credentials"));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            let Some(key) = creds.ssh_key_path() else {
                state.declined.set(true);
                return Err(git2::Error::from_str(
                    "the server asked for an ssh key and none was given",
                ));
            };
            state.offered.set(true);
            tracing::debug!(repository = %url, "offering the ssh key to the server");
            return git2::Cred::ssh_key(ssh_user, None, key, None);
        }
        let Some(token) = creds.expose_token() else {
            state.declined.set(true);
            return Err(git2::Error::from_str(
                "the server asked for credentials and none were given",
            ));
        };
        if let Some(why) = token_withheld(url, creds) {
            tracing::warn!(repository = %url, reason = %why, "token withheld");
            state.declined.set(true);
            *state.withheld.borrow_mut() = Some(why);
            return Err(git2::Error::from_str("the token was withheld"));
        }
        if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            state.declined.set(true);
            return Err(git2::Error::from_str(
                "the server wants a credential type other than a token",
            ));
        }
        state.offered.set(true);
        tracing::debug!(repository = %url, "offering the token to the server");
        git2::Cred::userpass_plaintext(creds.username(), token)
    });
    let state = Rc::clone(auth);
    cbs.certificate_check(move |cert, _host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2 verifies against the system's CA store.
            return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
        };
        match check_host_key(url, creds, hostkey.hostkey()) {
            Ok(()) => Ok(git2::CertificateCheckStatus::CertificateOk),
            Err(why) => {
                tracing::warn!(repository = %url, reason = %why, "ssh host key rejected");
                *state.host_key.borrow_mut() = Some(why.clone());
                Err(git2::Error::from_str(&why))
            }
        }
    });
    // Both stop the transfer (libgit2 then fails with "user cancelled", which the
    // engine maps to the stop) once the operation is cancelled or out of time.
    cbs.sideband_progress(|_| super::watch::proceed());
    // Always installed: libgit2 counts received bytes only when a transfer progress
    // callback is set.
    let progress = options.progress.clone();
    let state = Rc::clone(auth);
    cbs.transfer_progress(move |p| {
        if p.total_objects() > 0
            && p.received_objects() == p.total_objects()
            && state.received_at.get().is_none()
        {
            state.received_at.set(Some(std::time::Instant::now()));
        }
        if let Some(progress) = &progress {
            progress(&Progress {
                received_objects: p.received_objects(),
                total_objects: p.total_objects(),
                indexed_deltas: p.indexed_deltas(),
                total_deltas: p.total_deltas(),
                received_bytes: p.received_bytes(),
            });
        }
        super::watch::proceed()
    });
    cbs
}

/// What one fetch brought.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The branch fetched (`Source.branch`, else the remote's default branch).
    pub(crate) base: String,
    /// The remote's default branch, if it names one.
    pub(crate) default_branch: Option<String>,
    /// Its tip.
    pub(crate) tip: Oid,
    /// Bytes received.
    pub(crate) received_bytes: u64,
    /// Objects received.
    pub(crate) received_objects: u64,
}

/// The depth to ask for: libgit2's local transport refuses shallow fetches ("shallow
/// fetch is not supported by the local transport"), so local repositories are fetched
/// in full (they are on the same disk, so this costs copying, not a network).
pub(crate) fn effective_depth(url: &RepoUrl, depth: Depth) -> Option<i32> {
    match (url.transport(), depth) {
        (Transport::File, _) | (_, Depth::Full) => None,
        (_, Depth::Shallow(n)) => Some(i32::try_from(n.get()).unwrap_or(i32::MAX)),
    }
}

/// Connects `remote` once, reads the advertisement, decides the base branch, checks
/// `new_branch` is not taken, and fetches exactly
/// `+refs/heads/B:refs/remotes/origin/B` over the same connection.
pub(crate) fn connect_and_fetch(
    op: &'static str,
    remote: &mut git2::Remote<'_>,
    url: &RepoUrl,
    branch: Option<&str>,
    new_branch: Option<&str>,
    depth: Option<i32>,
    options: &GitOptions,
) -> Result<Fetched, Error> {
    let auth = Rc::new(AuthState::default());
    let started = std::time::Instant::now();
    let mut conn = remote
        .connect_auth(Direction::Fetch, Some(callbacks(url, options, &auth)), None)
        .map_err(|e| map_error(op, url, options, &auth, &e))?;
    let advertisement = read_advertisement(&conn, url, options, &auth)?;
    tracing::debug!(
        repository = %url,
        branches = advertisement.branches.len(),
        default_branch = advertisement.default_branch.as_deref().unwrap_or("-"),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "connected"
    );
    let base = match branch {
        Some(b) => b.to_owned(),
        None => advertisement.default_branch.clone().ok_or_else(|| Error::Git {
            op,
            message: format!(
                "{url} does not name a default branch (HEAD); it may be empty. Pass a branch explicitly"
            ),
        })?,
    };
    let Some(tip) = advertisement.tip(&base) else {
        return Err(Error::BranchNotFound {
            branch: base,
            url: url.to_string(),
            available: advertisement.some_names(5),
        });
    };
    if let Some(nb) = new_branch {
        if advertisement.tip(nb).is_some() {
            return Err(Error::NewBranchExists {
                branch: nb.to_owned(),
                url: url.to_string(),
            });
        }
    }
    let refspec = tracking_refspec(&base);
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(url, options, &auth));
    fo.download_tags(AutotagOption::None);
    fo.update_fetchhead(false);
    if let Some(d) = depth {
        fo.depth(d);
    }
    let remote = conn.remote();
    remote
        .fetch(
            &[refspec.as_str()],
            Some(&mut fo),
            Some(&format!("headstart: fetch {base}")),
        )
        .map_err(|e| map_error(op, url, options, &auth, &e))?;
    let stats = remote.stats();
    let fetched = Fetched {
        default_branch: advertisement.default_branch.clone(),
        base,
        tip,
        received_bytes: stats.received_bytes() as u64,
        received_objects: stats.received_objects() as u64,
    };
    tracing::debug!(
        repository = %url,
        branch = %fetched.base,
        depth = depth.unwrap_or(0),
        received_bytes = fetched.received_bytes,
        received_objects = fetched.received_objects,
        // bases libgit2 copied in from the local store to complete a thin pack (one
        // per pass over the pack's deltas), and the time after the last object arrived
        local_objects = stats.local_objects(),
        resolve_ms = auth.received_at.get().map_or(0, |t| t.elapsed().as_millis() as u64),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "fetched"
    );
    Ok(fetched)
}

/// Connects to `url` without a repository and reads the advertisement.
pub(crate) fn ls_remote(url: &RepoUrl, options: &GitOptions) -> Result<Advertisement, Error> {
    let auth = Rc::new(AuthState::default());
    let op = "ls-remote";
    let mut remote = git2::Remote::create_detached(url.as_git_url())
        .map_err(|e| map_error(op, url, options, &auth, &e))?;
    let conn = remote
        .connect_auth(Direction::Fetch, Some(callbacks(url, options, &auth)), None)
        .map_err(|e| map_error(op, url, options, &auth, &e))?;
    read_advertisement(&conn, url, options, &auth)
}

fn read_advertisement(
    conn: &git2::RemoteConnection<'_, '_, '_>,
    url: &RepoUrl,
    options: &GitOptions,
    auth: &AuthState,
) -> Result<Advertisement, Error> {
    let op = "ls-remote";
    let heads = conn
        .list()
        .map_err(|e| map_error(op, url, options, auth, &e))?;
    let mut adv = Advertisement::default();
    for h in heads {
        if let Some(b) = h.name().strip_prefix("refs/heads/") {
            adv.branches.push((b.to_owned(), h.oid()));
        }
    }
    adv.default_branch = match conn.default_branch() {
        Ok(buf) => buf
            .as_str()
            .ok()
            .and_then(|s| s.strip_prefix("refs/heads/"))
            .map(str::to_owned),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(map_error(op, url, options, auth, &e)),
    };
    Ok(adv)
}

/// Why the token may not go to `url`'s server, if it may not: plain `http://` to a
/// host other than this machine (anyone on the way would read it), or a host other
/// than the one the token is limited to ([`Credentials::with_token_only_for`]).
fn token_withheld(url: &RepoUrl, creds: &Credentials) -> Option<String> {
    let host = url.host()?.trim_start_matches('[').trim_end_matches(']');
    let lower = host.to_ascii_lowercase();
    if let Some(only) = creds.token_host() {
        if lower != only {
            return Some(format!(
                "the server asked for credentials and the token was withheld: it is only sent \
                 to {only} (GITHUB_TOKEN is for github.com; set HEADSTART_GIT_TOKEN for {host})"
            ));
        }
    }
    let loopback = lower == "localhost"
        || lower
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.origin().is_some_and(|o| o.scheme() == "http") && !loopback {
        return Some(format!(
            "the server asked for credentials over plain http:// and the token was withheld \
             (anyone between here and {host} could read it); use the https:// URL"
        ));
    }
    None
}

/// `+refs/heads/B:refs/remotes/origin/B`.
pub(crate) fn tracking_refspec(branch: &str) -> String {
    format!("+refs/heads/{branch}:refs/remotes/origin/{branch}")
}

/// Removes anything secret from a message: every registered secret, URL userinfo and
/// token-like query parameters ([`crate::scrub`]), and this operation's token even if
/// it is too short to have been registered.
pub(crate) fn scrub(message: &str, credentials: &Credentials) -> String {
    let out = crate::scrub::scrub(message).into_owned();
    match credentials.expose_token() {
        Some(t) if !t.is_empty() && out.contains(t) => out.replace(t, crate::scrub::REDACTED),
        _ => out,
    }
}

/// Maps a libgit2 failure to the [`Error`] a user can act on.
pub(crate) fn map_error(
    op: &'static str,
    url: &RepoUrl,
    options: &GitOptions,
    auth: &AuthState,
    e: &git2::Error,
) -> Error {
    let message = scrub(e.message(), &options.credentials);
    let lower = message.to_ascii_lowercase();
    tracing::debug!(repository = %url, op, class = ?e.class(), code = ?e.code(), %message, "git failure");
    let url_s = url.to_string();
    if let Some(why) = auth.host_key.borrow().clone() {
        return Error::AuthFailed {
            url: url_s,
            hint: why,
        };
    }
    if let Some(why) = auth.withheld.borrow().clone() {
        return Error::AuthFailed {
            url: url_s,
            hint: why,
        };
    }
    if let Some(other) = auth.foreign_origin.borrow().clone() {
        let own = url
            .origin()
            .map_or_else(|| url.to_string(), |o| o.to_string());
        return Error::AuthFailed {
            url: url_s,
            hint: format!(
                "the server redirected to another origin ({other}, not {own}) and asked for \
                 credentials there; the token was withheld (headstart sends it only to the \
                 scheme, host and port of the URL you gave). Use the URL the server redirects to"
            ),
        };
    }
    let auth_like = auth.declined.get()
        || e.code() == git2::ErrorCode::Auth
        || lower.contains("401")
        || lower.contains("403")
        || lower.contains("authenticat")
        || lower.contains("credentials");
    if auth_like {
        let ssh = url.transport() == Transport::Ssh;
        if let Some(key) = options
            .credentials
            .ssh_key_path()
            .filter(|k| ssh && !k.is_file())
        {
            return Error::AuthFailed {
                url: url_s,
                hint: format!(
                    "the ssh key file {} does not exist or is not a file",
                    key.display()
                ),
            };
        }
        let hint = if ssh && options.credentials.ssh_key_path().is_none() {
            "the server requires an ssh key; pass one (Credentials::ssh_key) or use the https URL with a token"
        } else if ssh {
            "the server refused the ssh key; check that its public key is authorized for this repository"
        } else if options.credentials.is_empty() {
            "the server requires credentials; pass a token with read access (HEADSTART_GIT_TOKEN)"
        } else if lower.contains("403") {
            "the server refused access with this token; check that it has read access to the repository"
        } else {
            "the server refused the token; check that it is valid, not expired, and has read access to the repository"
        };
        return Error::AuthFailed {
            url: url_s,
            hint: hint.into(),
        };
    }
    if NOT_FOUND_WORDS.iter().any(|w| lower.contains(w)) {
        return Error::RepoNotFound { url: url_s };
    }
    let network = matches!(
        e.class(),
        git2::ErrorClass::Net | git2::ErrorClass::Os | git2::ErrorClass::Ssl
    ) || NETWORK_WORDS.iter().any(|w| lower.contains(w));
    if e.code() == git2::ErrorCode::Certificate || lower.contains("certificate") {
        return Error::Network {
            url: url_s,
            message: format!(
                "{message}: the server's TLS certificate is not trusted here (behind a \
                 TLS-intercepting proxy, install its CA certificate)"
            ),
        };
    }
    if network {
        return Error::Network {
            url: url_s,
            message,
        };
    }
    Error::Git { op, message }
}

/// Words (lower case) in a git or server message that mean the repository is not
/// there, or not readable by anyone: the git daemon, `http-backend`, hosting services.
const NOT_FOUND_WORDS: &[&str] = &[
    "404",
    "not found",
    "not exported",
    "no such repository",
    "could not find repository",
    "failed to resolve path",
    "does not appear to be a git repository",
    "not a git repository",
];

/// Words (lower case) in a message that mean the connection failed, beside libgit2's
/// network, OS and TLS error classes.
const NETWORK_WORDS: &[&str] = &[
    "failed to connect",
    "could not connect",
    "connection refused",
    "failed to resolve",
    "timed out",
    "early eof",
    "unexpected eof",
];

/// Checks the ssh host key the server presented against `known_hosts` (the one in
/// the credentials, else `~/.ssh/known_hosts`). Anything but a listed key is refused,
/// with what to do.
fn check_host_key(url: &RepoUrl, creds: &Credentials, key: Option<&[u8]>) -> Result<(), String> {
    let host = url.host().unwrap_or_default();
    let name = known_hosts::host_entry_name(host, url.port());
    let Some(key) = key else {
        return Err(format!(
            "the ssh server {name} presented no raw host key to verify"
        ));
    };
    let path = creds
        .known_hosts_path()
        .map(std::path::Path::to_path_buf)
        .or_else(known_hosts::default_path)
        .ok_or_else(|| "no known_hosts file to verify the ssh host key against".to_owned())?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} to verify the ssh host key of {name}: {e}",
            path.display()
        )
    })?;
    let scan = match url.port() {
        Some(p) if p != 22 => format!("ssh-keyscan -p {p} {host}"),
        _ => format!("ssh-keyscan {host}"),
    };
    match known_hosts::verify(&text, &name, key) {
        known_hosts::Verdict::Known => Ok(()),
        known_hosts::Verdict::Unknown => Err(format!(
            "the ssh host key of {name} is not in {}; verify the server's fingerprint, then add \
             it (`{scan} >> {}`)",
            path.display(),
            path.display()
        )),
        known_hosts::Verdict::Changed => Err(format!(
            "the ssh host key of {name} does not match the one in {} (it changed, or someone is \
             intercepting the connection); refusing to connect",
            path.display()
        )),
        known_hosts::Verdict::Revoked => Err(format!(
            "the ssh host key of {name} is marked @revoked in {}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_goes_over_plain_http_except_to_this_machine() {
        let creds = Credentials::token("tok_0123456789");
        let withheld = |u: &str| token_withheld(&RepoUrl::parse(u).unwrap(), &creds);
        assert!(withheld("http://git.example.com/o/r").is_some_and(|w| w.contains("https://")));
        assert!(withheld("HTTP://git.example.com:8080/o/r").is_some());
        assert_eq!(withheld("https://git.example.com/o/r"), None);
        assert_eq!(withheld("http://127.0.0.1:8080/o/r"), None);
        assert_eq!(withheld("http://localhost/o/r"), None);
        assert_eq!(withheld("http://[::1]:80/o/r"), None);
        let gh = creds.clone().with_token_only_for("github.com");
        let url = |u: &str| RepoUrl::parse(u).unwrap();
        assert_eq!(token_withheld(&url("https://GitHub.com/o/r"), &gh), None);
        assert!(token_withheld(&url("https://evil.example/o/r"), &gh).is_some());
    }
}
