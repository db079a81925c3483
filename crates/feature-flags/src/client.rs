//! [`FeatureFlags`]: the one object a binary holds. It resolves the `fast_provision`
//! decision, evaluates flags (definitions → cache → `/flags`), sends exposures and the
//! goal event, and flushes on shutdown.
//!
//! What it is not: blocking. Every network call has a short timeout, an unreachable
//! host is remembered, a stale cached answer is served while it is refreshed in the
//! background, and events go through a background queue.

use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::FastPaths;
use crate::config::Config;
use crate::eval::{Evaluation, FlagValue};
use crate::experiment::{
    self, BetaRequest, Decision, DecisionSource, DisabledReason, FAST_PROVISION, Purpose,
    ValueOrigin,
};
use crate::remote::{DefinitionsFetch, Remote, RemoteError, RemoteFlag, RemoteFlags};
use crate::store::{self, CachedDefinitions, CachedFlag, FlagsCache, Store};
use crate::telemetry::{Exposure, SendPolicy, StartCompleted, Telemetry};

/// A flag's value with where it came from, or the error that stood in for it.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagResult {
    /// The value, or why there is none (its [`code`](FlagError::code) is PostHog's
    /// `$feature_flag_error`).
    pub value: Result<FlagValue, FlagError>,
    /// Where the value came from (meaningless on error).
    pub origin: ValueOrigin,
    pub(crate) request_id: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) flag_id: Option<i64>,
    pub(crate) flag_version: Option<i64>,
    pub(crate) payload: Option<serde_json::Value>,
}

/// Why [`FeatureFlags::evaluate`] has no value for a flag: PostHog's
/// `$feature_flag_error` code (`flag_missing`, `timeout`, `api_error_401`,
/// `disabled`, ...), which is also what the exposure event reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no flag value ({code})")]
pub struct FlagError {
    code: String,
}

impl FlagError {
    /// PostHog's `$feature_flag_error` code.
    pub fn code(&self) -> &str {
        &self.code
    }
}

impl FlagResult {
    fn error(code: String) -> Self {
        FlagResult {
            value: Err(FlagError { code }),
            origin: ValueOrigin::Remote,
            request_id: None,
            reason: None,
            flag_id: None,
            flag_version: None,
            payload: None,
        }
    }

    fn from_remote(flag: &RemoteFlag, origin: ValueOrigin, request_id: Option<String>) -> Self {
        FlagResult {
            value: flag.value.clone().ok_or_else(|| FlagError {
                code: "evaluation_failed".to_owned(),
            }),
            origin,
            request_id,
            reason: flag.reason.clone(),
            flag_id: flag.id,
            flag_version: flag.version,
            payload: flag.payload.clone(),
        }
    }

    /// The payload attached to the value, if any.
    pub fn payload(&self) -> Option<&serde_json::Value> {
        self.payload.as_ref()
    }
}

struct Inner {
    config: Config,
    store: Store,
    /// Present only when a project key is configured and telemetry is on.
    remote: Option<Remote>,
    telemetry: Telemetry,
    distinct_id: OnceLock<Result<String, String>>,
    definitions: RwLock<Option<CachedDefinitions>>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

/// Feature flags and experiment telemetry for one process. Cheap to clone; create it
/// inside a Tokio runtime and call [`FeatureFlags::shutdown`] before exiting.
#[derive(Clone)]
pub struct FeatureFlags {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FeatureFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureFlags")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl FeatureFlags {
    /// Creates the client. Nothing is read from the network here; the install id is
    /// only created when a request or event needs it.
    pub fn new(config: Config) -> Self {
        let store = Store::new(config.flags_dir());
        // No project key, telemetry off or flags disabled: no HTTP client at all, so
        // no request and no event can happen.
        let remote = match (
            &config.project_key,
            config.telemetry_off,
            config.flags_disabled,
        ) {
            (Some(key), None, false) => Some(Remote::new(&config.host, key)),
            _ => None,
        };
        let telemetry = match &remote {
            Some(r) if config.may_send_events() => Telemetry::start(
                r.clone(),
                store.clone(),
                SendPolicy {
                    timeout: config.events_timeout,
                    unreachable_for: config.cache.unreachable_for,
                },
            ),
            _ => Telemetry::disabled(),
        };
        let definitions = if config.secret_key.is_some() {
            store.definitions().filter(|d| d.host == config.host)
        } else {
            None
        };
        FeatureFlags {
            inner: Arc::new(Inner {
                config,
                store,
                remote,
                telemetry,
                distinct_id: OnceLock::new(),
                definitions: RwLock::new(definitions),
                background: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The install id used as distinct id (created on first use, mode 0600), or `None`
    /// when nothing may be sent (telemetry off, flags disabled or no project key): then
    /// no id is created.
    pub fn distinct_id(&self) -> Option<String> {
        self.inner.remote.as_ref()?;
        self.inner
            .distinct_id
            .get_or_init(|| {
                store::install_id(self.inner.store.dir()).map_err(|e| {
                    tracing::warn!(
                        "could not create the install id in {}: {e}; check that the directory is writable",
                        self.inner.store.dir().display()
                    );
                    "install_id_unavailable".to_owned()
                })
            })
            .as_ref()
            .ok()
            .cloned()
    }

    /// Decides the fast paths for a command. See the crate docs for the precedence.
    /// For [`Purpose::Provision`], an exposure is queued when (and only when) the
    /// experiment was consulted. Fails only on a user error (an unknown `--beta` name,
    /// a malformed `HEADSTART_BETA` or `HEADSTART_FLAG_OVERRIDES`).
    pub async fn fast_paths(
        &self,
        request: &BetaRequest,
        purpose: Purpose,
    ) -> Result<Decision, crate::Error> {
        let config = &self.inner.config;
        if let Some(decision) = experiment::explicit(request, config.beta_env.as_deref())? {
            return Ok(decision);
        }
        if let Some(text) = &config.overrides_env
            && let Some(value) = experiment::parse_overrides(text)?.remove(FAST_PROVISION)
        {
            return Ok(Decision {
                paths: experiment::fast_paths_for(&value),
                source: DecisionSource::Override { value },
            });
        }
        let disabled = if let Some(off) = config.telemetry_off {
            Some(DisabledReason::TelemetryOff(off))
        } else if config.flags_disabled {
            Some(DisabledReason::FlagsDisabled)
        } else if config.project_key.is_none() {
            Some(DisabledReason::NotConfigured)
        } else {
            None
        };
        if let Some(reason) = disabled {
            return Ok(Decision {
                paths: FastPaths::default(),
                source: DecisionSource::Disabled(reason),
            });
        }

        let result = self.evaluate(FAST_PROVISION).await;
        let decision = match &result.value {
            Ok(value) => Decision {
                paths: experiment::fast_paths_for(value),
                source: DecisionSource::Experiment {
                    value: value.clone(),
                    origin: result.origin,
                },
            },
            Err(error) => Decision {
                paths: FastPaths::default(),
                source: DecisionSource::Error {
                    error: error.code().to_owned(),
                },
            },
        };
        if purpose == Purpose::Provision {
            self.expose(FAST_PROVISION, &result);
        }
        Ok(decision)
    }

    /// Spawns [`FeatureFlags::fast_paths`] so it runs alongside provisioning.
    pub fn spawn_fast_paths(
        &self,
        request: BetaRequest,
        purpose: Purpose,
    ) -> JoinHandle<Result<Decision, crate::Error>> {
        let this = self.clone();
        tokio::spawn(async move { this.fast_paths(&request, purpose).await })
    }

    fn expose(&self, flag: &str, result: &FlagResult) {
        let Some(distinct_id) = self.distinct_id() else {
            return;
        };
        let exposure = Exposure {
            flag: flag.to_owned(),
            response: result.value.as_ref().ok().cloned(),
            locally_evaluated: result.value.is_ok() && result.origin == ValueOrigin::Local,
            request_id: result.request_id.clone(),
            reason: result.reason.clone(),
            error: result.value.as_ref().err().map(|e| e.code().to_owned()),
            flag_id: result.flag_id,
            flag_version: result.flag_version,
            payload: result.payload.clone(),
        };
        self.inner.telemetry.exposure(&distinct_id, &exposure);
    }

    /// Evaluates `flag` for this install: polled definitions first (local), then the
    /// cached `/flags` answer (fresh, or stale and refreshed in the background), then
    /// `/flags` itself with a short timeout. Never sends an exposure. Without a project
    /// key or with telemetry off, returns an error code without any request.
    pub async fn evaluate(&self, flag: &str) -> FlagResult {
        let Some(remote) = self.inner.remote.clone() else {
            return FlagResult::error("disabled".to_owned());
        };
        let Some(distinct_id) = self.distinct_id() else {
            return FlagResult::error("install_id_unavailable".to_owned());
        };
        let config = &self.inner.config;

        if let Some(result) = self.evaluate_locally(flag, &distinct_id) {
            return result;
        }

        if let Some(cached) = cached_flag(&self.inner, &distinct_id, flag) {
            let age = cached.age();
            if age < config.cache.ttl {
                return FlagResult::from_remote(
                    &cached.flag,
                    ValueOrigin::Cache { stale: false },
                    cached.request_id,
                );
            }
            if age < config.cache.ttl + config.cache.stale_while_revalidate {
                self.revalidate(remote, distinct_id, flag.to_owned());
                return FlagResult::from_remote(
                    &cached.flag,
                    ValueOrigin::Cache { stale: true },
                    cached.request_id,
                );
            }
        }

        if let Some(u) = self
            .inner
            .store
            .unreachable(&config.host, config.cache.unreachable_for)
        {
            tracing::debug!(error = %u.error, "PostHog host recently unreachable: not asking");
            return FlagResult::error(u.error);
        }
        match fetch_and_cache(&self.inner, &remote, &distinct_id, flag).await {
            Ok(flags) => match flags.flags.get(flag) {
                Some(f) => {
                    FlagResult::from_remote(f, ValueOrigin::Remote, flags.request_id.clone())
                }
                None if flags.errors_while_computing => {
                    FlagResult::error("errors_while_computing_flags".to_owned())
                }
                None => FlagResult::error("flag_missing".to_owned()),
            },
            Err(e) => FlagResult::error(e.code()),
        }
    }

    fn evaluate_locally(&self, flag: &str, distinct_id: &str) -> Option<FlagResult> {
        let guard = self.inner.definitions.read().ok()?;
        let defs = &guard.as_ref()?.definitions;
        let def = defs.flag(flag)?;
        match defs.evaluate(flag, distinct_id, &self.inner.config.person_properties) {
            Evaluation::Value(value) => Some(FlagResult {
                payload: def.payload(&value).cloned(),
                value: Ok(value),
                origin: ValueOrigin::Local,
                request_id: None,
                reason: None,
                flag_id: def.id,
                flag_version: def.version,
            }),
            Evaluation::Inconclusive(why) => {
                tracing::debug!(
                    flag,
                    reason = why.as_str(),
                    "local evaluation inconclusive; asking PostHog"
                );
                None
            }
        }
    }

    fn revalidate(&self, remote: Remote, distinct_id: String, flag: String) {
        let inner = Arc::clone(&self.inner);
        let handle = tokio::spawn(async move {
            if inner
                .store
                .unreachable(&inner.config.host, inner.config.cache.unreachable_for)
                .is_some()
            {
                return;
            }
            if let Err(e) = fetch_and_cache(&inner, &remote, &distinct_id, &flag).await {
                tracing::debug!(error = %e.code(), "background flag refresh failed");
            }
        });
        if let Ok(mut bg) = self.inner.background.lock() {
            bg.retain(|h| !h.is_finished());
            bg.push(handle);
        }
    }

    /// Fetches flag definitions (`/flags/definitions`, with `If-None-Match`) for local
    /// evaluation. Needs PostHog's secret key (`HEADSTART_POSTHOG_SECRET_KEY`), so it is
    /// for servers; the CLI uses `/flags`. Returns whether the definitions changed.
    pub async fn poll_definitions(&self) -> Result<bool, crate::Error> {
        let config = &self.inner.config;
        let (Some(remote), Some(secret)) = (&self.inner.remote, &config.secret_key) else {
            return Err(crate::Error::NoSecretKey);
        };
        let etag = self
            .inner
            .definitions
            .read()
            .ok()
            .and_then(|d| d.as_ref().and_then(|d| d.etag.clone()));
        match remote
            .definitions(secret, etag.as_deref(), config.request_timeout * 4)
            .await
        {
            Ok(DefinitionsFetch::NotModified) => Ok(false),
            Ok(DefinitionsFetch::New { definitions, etag }) => {
                let cached = CachedDefinitions {
                    host: config.host.clone(),
                    etag,
                    fetched_at_ms: store::now_ms(),
                    definitions,
                };
                self.inner.store.save_definitions(&cached);
                if let Ok(mut d) = self.inner.definitions.write() {
                    *d = Some(cached);
                }
                Ok(true)
            }
            Err(e) => Err(crate::Error::Remote { code: e.code() }),
        }
    }

    /// Polls definitions every `every` until the returned task is aborted.
    pub fn spawn_definitions_poller(&self, every: Duration) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = this.poll_definitions().await {
                    tracing::debug!("definitions poll failed: {e}");
                }
            }
        })
    }

    /// Queues the goal event `headstart_start_completed` (same opt-outs and batching as
    /// exposures). Pass the start's decision so PostHog can attribute the event to the
    /// variant when the experiment decided.
    pub fn start_completed(&self, event: &StartCompleted, decision: Option<&Decision>) {
        let Some(distinct_id) = self.distinct_id() else {
            return;
        };
        let experiment = decision.and_then(|d| match &d.source {
            DecisionSource::Experiment { value, .. } => Some((FAST_PROVISION, value)),
            _ => None,
        });
        self.inner.telemetry.capture(
            "headstart_start_completed",
            &distinct_id,
            event.properties(experiment),
        );
    }

    /// Sends queued events now and waits at most `max_wait`; the queue keeps working.
    pub async fn flush(&self, max_wait: Duration) {
        self.inner.telemetry.flush(max_wait).await;
    }

    /// Finishes background refreshes and sends queued events, waiting at most
    /// `max_wait` in total; whatever is left after that is dropped. Call before exit.
    pub async fn shutdown(&self, max_wait: Duration) {
        let deadline = tokio::time::Instant::now() + max_wait;
        let handles: Vec<JoinHandle<()>> = self
            .inner
            .background
            .lock()
            .map(|mut b| b.drain(..).collect())
            .unwrap_or_default();
        for mut h in handles {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                h.abort();
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.inner.telemetry.shutdown(left).await;
    }
}

/// This process's cache scope (host, project, distinct id, person properties), with the
/// flags cached for it so far.
fn scope(inner: &Inner, distinct_id: &str) -> FlagsCache {
    let config = &inner.config;
    let wanted = FlagsCache {
        host: config.host.clone(),
        project_key: config.project_key.clone().unwrap_or_default(),
        distinct_id: distinct_id.to_owned(),
        properties: config.person_properties.clone(),
        flags: Default::default(),
    };
    inner
        .store
        .flags_cache()
        .into_iter()
        .find(|c| c.same_scope(&wanted))
        .unwrap_or(wanted)
}

/// The cached answer for `flag` in this process's scope.
fn cached_flag(inner: &Inner, distinct_id: &str, flag: &str) -> Option<CachedFlag> {
    scope(inner, distinct_id).flags.remove(flag)
}

/// Adds (or replaces) the answered flags in this scope, keeping the other flags.
fn save_flags(inner: &Inner, distinct_id: &str, flags: &RemoteFlags) {
    let mut cache = scope(inner, distinct_id);
    let now = store::now_ms();
    for (key, flag) in &flags.flags {
        cache.flags.insert(
            key.clone(),
            CachedFlag {
                fetched_at_ms: now,
                request_id: flags.request_id.clone(),
                flag: flag.clone(),
            },
        );
    }
    inner.store.save_flags_scope(cache);
}

async fn fetch_and_cache(
    inner: &Inner,
    remote: &Remote,
    distinct_id: &str,
    flag: &str,
) -> Result<RemoteFlags, RemoteError> {
    let config = &inner.config;
    match remote
        .flags(
            distinct_id,
            &config.person_properties,
            &[flag],
            config.request_timeout,
        )
        .await
    {
        Ok(flags) => {
            inner.store.clear_unreachable();
            if !flags.flags.is_empty() {
                save_flags(inner, distinct_id, &flags);
            }
            Ok(flags)
        }
        Err(e) => {
            if e.is_unreachable() {
                inner.store.mark_unreachable(&config.host, &e.code());
            }
            Err(e)
        }
    }
}
