//! Grants: what a capability URL may reach (one upstream repository, until an expiry,
//! with a push policy) and the token the broker adds upstream. Also their file form,
//! which never holds a token. Not the HTTP side (`serve`).

use std::fmt;
use std::net::SocketAddr;

use sandbox_core::{Credentials, RepoUrl};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::BrokerError;
use crate::policy::PushPolicy;

/// How many characters of a capability [`GrantSummary`] shows.
const CAPABILITY_PREFIX: usize = 6;

/// What [`Broker::grant`](crate::Broker::grant) grants.
#[derive(Debug, Clone)]
pub struct GrantSpec {
    /// The one repository the grant reaches (`http://` or `https://`).
    pub upstream: RepoUrl,
    /// The token sent upstream (as `Authorization: Basic`, user name
    /// [`Credentials::username`]); kept in memory only.
    pub credentials: Credentials,
    /// After this instant every request answers 403.
    pub expires_at: OffsetDateTime,
    /// What may be pushed.
    pub push: PushPolicy,
    /// What to tell the user when the grant is unusable.
    pub hints: GrantHints,
}

/// Text appended to the broker's refusals, so the caller (a CLI) can say what to run.
/// The library's own messages name no command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantHints {
    /// After "this grant expired" or "this grant was revoked".
    pub renew: Option<String>,
    /// After "the broker holds no credentials for this grant" (a reloaded grant) or
    /// "the upstream refused the grant's credentials".
    pub register: Option<String>,
}

/// A grant's id: names it in logs, listings and [`Broker::revoke`](crate::Broker::revoke).
/// Not a secret and not the capability.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantId(String);

impl GrantId {
    /// The id as text (`g-1a2b3c4d5e6f7a8b`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id as printed by [`Display`](fmt::Display) (no check beyond non-empty).
    ///
    /// # Errors
    /// [`BrokerError::UnknownGrant`] for an empty string.
    pub fn new(id: impl Into<String>) -> Result<Self, BrokerError> {
        let id = id.into();
        if id.trim().is_empty() {
            return Err(BrokerError::UnknownGrant(id));
        }
        Ok(Self(id))
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A granted capability: hand [`url`](Self::url) to the sandbox as its remote.
///
/// `Debug` shows only a prefix of the capability.
#[derive(Clone)]
pub struct Grant {
    pub(crate) id: GrantId,
    pub(crate) capability: String,
    pub(crate) upstream: RepoUrl,
    pub(crate) expires_at: OffsetDateTime,
}

impl Grant {
    /// The grant's id.
    pub fn id(&self) -> &GrantId {
        &self.id
    }

    /// The repository the grant reaches.
    pub fn upstream(&self) -> &RepoUrl {
        &self.upstream
    }

    /// When the grant stops working.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// `http://<broker_addr>/g/<capability>/<owner>/<repo>.git`: the remote URL for the
    /// sandbox. Whoever holds it can use the grant, so treat it as a secret.
    pub fn url(&self, broker_addr: SocketAddr) -> String {
        self.url_at(&broker_addr.to_string())
    }

    /// `/g/<capability>/<owner>/<repo>.git`: the path of every URL of this grant,
    /// whatever address the broker is reached at. As secret as the URL.
    pub fn path(&self) -> String {
        format!("/g/{}/{}", self.capability, url_repo_path(&self.upstream))
    }

    /// As [`url`](Self::url) with the broker reached at `authority` (`host:port`),
    /// e.g. `host.docker.internal:7420` from a container on a bridge network.
    pub fn url_at(&self, authority: &str) -> String {
        format!("http://{authority}{}", self.path())
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("id", &self.id)
            .field("capability", &capability_prefix(&self.capability))
            .field("upstream", &self.upstream)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One line of [`Broker::grants`](crate::Broker::grants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSummary {
    /// The grant's id.
    pub id: GrantId,
    /// The repository.
    pub upstream: RepoUrl,
    /// What may be pushed.
    pub push: PushPolicy,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
    /// The first characters of the capability and `…` (never the whole of it).
    pub capability_prefix: String,
    /// Whether the broker holds a token for it.
    pub has_credentials: bool,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A grant as the broker holds it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) id: GrantId,
    pub(crate) capability: String,
    pub(crate) upstream: RepoUrl,
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) push: PushPolicy,
    pub(crate) hints: GrantHints,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) revoked: bool,
}

impl Entry {
    pub(crate) fn grant(&self) -> Grant {
        Grant {
            id: self.id.clone(),
            capability: self.capability.clone(),
            upstream: self.upstream.clone(),
            expires_at: self.expires_at,
        }
    }

    pub(crate) fn summary(&self) -> GrantSummary {
        GrantSummary {
            id: self.id.clone(),
            upstream: self.upstream.clone(),
            push: self.push.clone(),
            expires_at: self.expires_at,
            capability_prefix: capability_prefix(&self.capability),
            has_credentials: self.credentials.is_some(),
            revoked: self.revoked,
        }
    }

    /// True when `path` (after the capability, before `/info/refs` etc.) names this
    /// grant's repository (a trailing `.git` or `/` is optional).
    pub(crate) fn serves_path(&self, path: &str) -> bool {
        repo_key(path) == repo_key(self.upstream.path())
    }
}

fn repo_key(path: &str) -> &str {
    let p = path.trim_matches('/');
    p.strip_suffix(".git").unwrap_or(p)
}

/// The upstream's repository path as it appears in a grant URL (`owner/repo.git`).
pub(crate) fn url_repo_path(upstream: &RepoUrl) -> String {
    format!("{}.git", repo_key(upstream.path()))
}

pub(crate) fn capability_prefix(capability: &str) -> String {
    let n = capability.len().min(CAPABILITY_PREFIX);
    format!("{}…", &capability[..n])
}

/// 192 random bits, hex.
pub(crate) fn new_capability() -> Result<String, BrokerError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| BrokerError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// `g-` and 64 random bits, hex.
pub(crate) fn new_id() -> Result<GrantId, BrokerError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| BrokerError::Random(e.to_string()))?;
    Ok(GrantId(format!("g-{}", hex::encode(bytes))))
}

/// The grants file: everything but the tokens.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredGrants {
    pub(crate) version: u32,
    pub(crate) grants: Vec<StoredGrant>,
}

/// One grant in the file.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredGrant {
    pub(crate) id: GrantId,
    pub(crate) capability: String,
    pub(crate) upstream: RepoUrl,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) push: PushPolicy,
    pub(crate) hints: GrantHints,
    pub(crate) revoked: bool,
}

impl From<&Entry> for StoredGrant {
    fn from(e: &Entry) -> Self {
        Self {
            id: e.id.clone(),
            capability: e.capability.clone(),
            upstream: e.upstream.clone(),
            expires_at: e.expires_at,
            push: e.push.clone(),
            hints: e.hints.clone(),
            revoked: e.revoked,
        }
    }
}

impl From<StoredGrant> for Entry {
    fn from(s: StoredGrant) -> Self {
        Self {
            id: s.id,
            capability: s.capability,
            upstream: s.upstream,
            expires_at: s.expires_at,
            push: s.push,
            hints: s.hints,
            credentials: None,
            revoked: s.revoked,
        }
    }
}
