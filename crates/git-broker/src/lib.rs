//! A host-side git smart-HTTP credential broker.
//!
//! A sandbox gets a capability URL (`http://<broker>/g/<capability>/<owner>/<repo>.git`)
//! instead of a token. The broker forwards git's smart-HTTP requests (protocol v0, v1
//! and v2; fetch and push) to the grant's upstream repository, adding
//! `Authorization: Basic` there and nowhere else, and streams both ways. Before a push
//! reaches the upstream it reads receive-pack's command list and checks every ref
//! against the grant's [`PushPolicy`]: a push with a refused ref is answered by the
//! broker itself (`ng <ref> <reason>`, which `git push` prints as
//! `! [remote rejected]`) and never forwarded.
//!
//! - [`Broker::grant`] makes a [`Grant`] from a [`GrantSpec`]; [`Broker::revoke`],
//!   [`Broker::grants`], [`Broker::register_token`], [`Broker::renew`] (same
//!   capability, new token, expiry and policy: a sandbox started again).
//! - [`Broker::save_grants`] / [`Broker::load_grants`] keep grants in a `0600` JSON
//!   file **without tokens**: a reloaded grant answers 403 until its token is
//!   registered again.
//! - [`Broker::serve`] answers on a listener until dropped; [`Broker::spawn`] runs it
//!   as a task.
//!
//! It is **not** a daemon (no sockets of its own, no environment, no CLI words in its
//! messages: [`GrantHints`] carry what to run), not a git server (it never looks
//! inside packs) and not a general HTTP proxy (only the three smart-HTTP routes of a
//! grant's own repository are forwarded).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use git_broker::{Broker, GrantHints, GrantSpec, PushPolicy};
//! use sandbox_core::{BranchName, Credentials, RepoUrl};
//!
//! let broker = Broker::new()?;
//! let grant = broker.grant(GrantSpec {
//!     upstream: RepoUrl::parse("https://github.com/acme/app.git")?,
//!     credentials: Credentials::token("ghp_example_token"),
//!     expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(8),
//!     push: PushPolicy::own_branch(&BranchName::new("agent/fix-42")?),
//!     hints: GrantHints::default(),
//! })?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let remote = grant.url(listener.local_addr()?); // for the sandbox's `git remote`
//! # let _ = remote;
//! broker.serve(listener).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod error;
mod grant;
mod pktline;
mod policy;
mod serve;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use sandbox_core::{Credentials, Transport};

pub use error::BrokerError;
pub use grant::{Grant, GrantHints, GrantId, GrantSpec, GrantSummary};
pub use policy::{PushPolicy, PushRefused, RefUpdate};

use grant::{Entry, StoredGrant, StoredGrants};

/// The grants file format version.
const GRANTS_VERSION: u32 = 1;

/// The broker: grants and the upstream HTTP client. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// By capability.
    grants: RwLock<HashMap<String, Entry>>,
    pub(crate) client: reqwest::Client,
    /// Where every change is saved, if anywhere.
    state_file: Mutex<Option<PathBuf>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("grants", &self.grants().len())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker without grants.
    ///
    /// # Errors
    /// [`BrokerError::Client`] when the HTTP client cannot be built (TLS setup).
    pub fn new() -> Result<Self, BrokerError> {
        Ok(Self {
            inner: Arc::new(Inner {
                grants: RwLock::new(HashMap::new()),
                client: serve::upstream_client()?,
                state_file: Mutex::new(None),
            }),
        })
    }

    /// A broker that loads the grants of `path` when it exists (see
    /// [`load_grants`](Self::load_grants)) and saves them there after every change.
    ///
    /// # Errors
    /// As [`new`](Self::new) and [`load_grants`](Self::load_grants).
    pub fn with_state_file(path: impl Into<PathBuf>) -> Result<Self, BrokerError> {
        let path = path.into();
        let broker = Self::new()?;
        if path.exists() {
            broker.load_grants(&path)?;
        }
        *broker
            .inner
            .state_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(path);
        Ok(broker)
    }

    /// Grants access to one upstream repository: a fresh capability (192 random bits)
    /// and id.
    ///
    /// # Errors
    /// [`BrokerError::UnsupportedUpstream`] for a non-HTTP upstream;
    /// [`BrokerError::Random`]; a save error with a state file.
    pub fn grant(&self, spec: GrantSpec) -> Result<Grant, BrokerError> {
        if spec.upstream.transport() != Transport::Http {
            return Err(BrokerError::UnsupportedUpstream {
                url: spec.upstream.to_string(),
            });
        }
        let entry = Entry {
            id: grant::new_id()?,
            capability: grant::new_capability()?,
            upstream: spec.upstream,
            expires_at: spec.expires_at,
            push: spec.push,
            hints: spec.hints,
            credentials: (!spec.credentials.is_empty()).then_some(spec.credentials),
            revoked: false,
        };
        let grant = entry.grant();
        tracing::info!(grant = %entry.id, upstream = %sandbox_core::scrub(&entry.upstream.to_string()),
            expires_at = %entry.expires_at, "grant created");
        self.write().insert(entry.capability.clone(), entry);
        self.autosave()?;
        Ok(grant)
    }

    /// Revokes a grant: from now on its URL answers 403 "this grant was revoked" (the
    /// grant stays listed, marked revoked, and its token is dropped).
    ///
    /// # Errors
    /// [`BrokerError::UnknownGrant`]; a save error with a state file.
    pub fn revoke(&self, id: &GrantId) -> Result<(), BrokerError> {
        self.update(id, |e| {
            e.revoked = true;
            e.credentials = None;
        })?;
        tracing::info!(grant = %id, "grant revoked");
        Ok(())
    }

    /// Renews a grant for the same sandbox (a restarted or reconnected one): its
    /// capability, and so its URL, stay; the token, expiry, push policy and hints
    /// become `spec`'s. An expired grant may be renewed, a revoked one may not.
    ///
    /// # Errors
    /// [`BrokerError::UnknownGrant`]; [`BrokerError::Revoked`];
    /// [`BrokerError::OtherUpstream`] when `spec` names another repository; a save
    /// error with a state file.
    pub fn renew(&self, id: &GrantId, spec: GrantSpec) -> Result<Grant, BrokerError> {
        let grant = {
            let mut grants = self.write();
            let entry = grants
                .values_mut()
                .find(|e| &e.id == id)
                .ok_or_else(|| BrokerError::UnknownGrant(id.to_string()))?;
            if entry.revoked {
                return Err(BrokerError::Revoked(id.to_string()));
            }
            if !entry.upstream.same_repository(&spec.upstream) {
                return Err(BrokerError::OtherUpstream {
                    id: id.to_string(),
                    url: spec.upstream.to_string(),
                });
            }
            entry.credentials = (!spec.credentials.is_empty()).then_some(spec.credentials);
            entry.expires_at = spec.expires_at;
            entry.push = spec.push;
            entry.hints = spec.hints;
            entry.grant()
        };
        tracing::info!(grant = %id, expires_at = %grant.expires_at, "grant renewed");
        self.autosave()?;
        Ok(grant)
    }

    /// Gives a grant its token (again): after [`load_grants`](Self::load_grants), or to
    /// replace a token.
    ///
    /// # Errors
    /// [`BrokerError::UnknownGrant`]; a save error with a state file.
    pub fn register_token(
        &self,
        id: &GrantId,
        credentials: Credentials,
    ) -> Result<(), BrokerError> {
        let creds = (!credentials.is_empty()).then_some(credentials);
        self.update(id, |e| e.credentials = creds)?;
        tracing::info!(grant = %id, "credentials registered");
        Ok(())
    }

    /// Every grant (revoked and expired ones too), by id; never a whole capability.
    pub fn grants(&self) -> Vec<GrantSummary> {
        let mut all: Vec<_> = self.read().values().map(Entry::summary).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The grant with this id (its URL, for a sandbox started again).
    pub fn get(&self, id: &GrantId) -> Option<Grant> {
        self.read().values().find(|e| &e.id == id).map(Entry::grant)
    }

    /// Writes every grant, without tokens, to `path` (mode `0600`, written aside and
    /// renamed into place).
    ///
    /// # Errors
    /// [`BrokerError::Io`].
    pub fn save_grants(&self, path: &Path) -> Result<(), BrokerError> {
        let stored = StoredGrants {
            version: GRANTS_VERSION,
            grants: {
                let mut v: Vec<StoredGrant> = self.read().values().map(StoredGrant::from).collect();
                v.sort_by(|a, b| a.id.cmp(&b.id));
                v
            },
        };
        let json = serde_json::to_vec_pretty(&stored).map_err(|e| BrokerError::Io {
            action: "encoding grants for",
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        sandbox_core::tree::write_atomic_durable(path, &json, 0o600).map_err(|source| {
            BrokerError::Io {
                action: "writing grants to",
                path: path.to_owned(),
                source,
            }
        })
    }

    /// Adds the grants saved in `path` (without tokens: each answers 403 "re-register
    /// credentials" until [`register_token`](Self::register_token)). Returns how many.
    ///
    /// # Errors
    /// [`BrokerError::Io`], [`BrokerError::BadGrantsFile`].
    pub fn load_grants(&self, path: &Path) -> Result<usize, BrokerError> {
        let text = std::fs::read(path).map_err(|source| BrokerError::Io {
            action: "reading grants from",
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: String| BrokerError::BadGrantsFile {
            path: path.to_owned(),
            reason,
        };
        let stored: StoredGrants = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if stored.version != GRANTS_VERSION {
            return Err(bad(format!("unknown version {}", stored.version)));
        }
        let n = stored.grants.len();
        let mut grants = self.write();
        for g in stored.grants {
            if g.capability.len() < 32 || g.upstream.transport() != Transport::Http {
                return Err(bad(format!("grant {} is malformed", g.id)));
            }
            let entry = Entry::from(g);
            grants.insert(entry.capability.clone(), entry);
        }
        drop(grants);
        tracing::info!(grants = n, "grants loaded (without credentials)");
        Ok(n)
    }

    /// Answers git smart HTTP on `listener` until the returned future is dropped
    /// (each connection in its own task of the current tokio runtime).
    ///
    /// # Errors
    /// Never in practice: accept errors are logged and retried.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> Result<(), BrokerError> {
        serve::serve(Arc::clone(&self.inner), listener).await
    }

    /// [`serve`](Self::serve) as a task of the current tokio runtime (abort the handle
    /// to stop).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(
        &self,
        listener: tokio::net::TcpListener,
    ) -> tokio::task::JoinHandle<Result<(), BrokerError>> {
        tokio::spawn(serve::serve(Arc::clone(&self.inner), listener))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.inner.read()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.inner
            .grants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, id: &GrantId, f: impl FnOnce(&mut Entry)) -> Result<(), BrokerError> {
        {
            let mut grants = self.write();
            let entry = grants
                .values_mut()
                .find(|e| &e.id == id)
                .ok_or_else(|| BrokerError::UnknownGrant(id.to_string()))?;
            f(entry);
        }
        self.autosave()
    }

    fn autosave(&self) -> Result<(), BrokerError> {
        let path = self
            .inner
            .state_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match path {
            Some(p) => self.save_grants(&p),
            None => Ok(()),
        }
    }
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.grants.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The grant of a capability, cloned (with its token).
    pub(crate) fn lookup(&self, capability: &str) -> Option<Entry> {
        self.read().get(capability).cloned()
    }
}
