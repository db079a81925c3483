//! Events to PostHog: `$feature_flag_called` exposures and the
//! `headstart_start_completed` goal event, batched to `/batch/` by a background task.
//!
//! What it is: a non-blocking queue (capturing never waits on the network), dedup of
//! exposures per (distinct id, flag, value) across runs, and a flush on shutdown with
//! a bounded wait. What it is not: a retry queue. Events that cannot be delivered
//! (host unreachable, error answer) are dropped and logged at debug level.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::FastPaths;
use crate::eval::FlagValue;
use crate::remote::Remote;
use crate::store::Store;

const BATCH_SIZE: usize = 50;
const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What an exposure says about one flag decision.
#[derive(Debug, Clone)]
pub(crate) struct Exposure {
    pub(crate) flag: String,
    /// `None` when evaluation failed (then `error` is set).
    pub(crate) response: Option<FlagValue>,
    pub(crate) locally_evaluated: bool,
    pub(crate) request_id: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) flag_id: Option<i64>,
    pub(crate) flag_version: Option<i64>,
    pub(crate) payload: Option<Value>,
}

impl Exposure {
    fn response_json(&self) -> Value {
        self.response
            .as_ref()
            .map_or(Value::Null, FlagValue::to_json)
    }

    fn properties(&self) -> Map<String, Value> {
        let mut p = Map::new();
        let response = self.response_json();
        p.insert("$feature_flag".into(), json!(self.flag));
        p.insert("$feature_flag_response".into(), response.clone());
        p.insert("locally_evaluated".into(), json!(self.locally_evaluated));
        p.insert(format!("$feature/{}", self.flag), response);
        let mut opt = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                p.insert(k.into(), v);
            }
        };
        opt(
            "$feature_flag_request_id",
            self.request_id.clone().map(Value::from),
        );
        opt("$feature_flag_reason", self.reason.clone().map(Value::from));
        opt("$feature_flag_error", self.error.clone().map(Value::from));
        opt("$feature_flag_id", self.flag_id.map(Value::from));
        opt("$feature_flag_version", self.flag_version.map(Value::from));
        opt("$feature_flag_payload", self.payload.clone());
        p
    }
}

/// The goal event of the `fast_provision` experiment: one finished `headstart up`.
///
/// Plain values so this crate needs nothing from the sandbox crates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartCompleted {
    /// Which path the start took (e.g. `"warm"` or `"cold"`).
    pub path: String,
    /// Wall time of the whole start.
    pub total: Duration,
    /// Each phase and its duration, in order (e.g. `("git_sync", 60ms)`).
    pub phases: Vec<(String, Duration)>,
    /// The fast paths the start ran with.
    pub fast_paths: FastPaths,
    /// The provider used (e.g. `"local"`, `"docker"`).
    pub provider: String,
    /// The error the start ended with, if it failed (a short kind, not user data).
    pub error: Option<String>,
}

impl StartCompleted {
    pub(crate) fn properties(&self, experiment: Option<(&str, &FlagValue)>) -> Map<String, Value> {
        let mut p = Map::new();
        p.insert("path".into(), json!(self.path));
        p.insert("total_ms".into(), json!(self.total.as_millis() as u64));
        let phases: BTreeMap<&str, u64> = self
            .phases
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_millis() as u64))
            .collect();
        p.insert("phases_ms".into(), json!(phases));
        p.insert("fast_paths".into(), json!(self.fast_paths.names()));
        p.insert("provider".into(), json!(self.provider));
        p.insert("success".into(), json!(self.error.is_none()));
        if let Some(e) = &self.error {
            p.insert("error".into(), json!(e));
        }
        if let Some((flag, value)) = experiment {
            // PostHog attributes goal events to a variant through this property.
            p.insert(format!("$feature/{flag}"), value.to_json());
        }
        p
    }
}

struct Pending {
    event: Value,
    exposure_key: Option<String>,
}

enum Msg {
    Event(Pending),
    Flush(oneshot::Sender<()>),
}

/// The event pipeline. Disabled (a no-op) when telemetry is off or unconfigured.
pub(crate) struct Telemetry {
    tx: Mutex<Option<mpsc::UnboundedSender<Msg>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    seen: Mutex<HashSet<String>>,
}

impl Telemetry {
    /// A pipeline that drops everything (telemetry off, no key, or no runtime).
    pub(crate) fn disabled() -> Self {
        Telemetry {
            tx: Mutex::new(None),
            task: Mutex::new(None),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Starts the background sender. Must be called inside a Tokio runtime; outside
    /// one, the pipeline is disabled (and says so at debug level).
    pub(crate) fn start(remote: Remote, store: Store, timeouts: SendPolicy) -> Self {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("no Tokio runtime: telemetry events are disabled");
            return Self::disabled();
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = store.exposures().into_iter().collect();
        let task = handle.spawn(run(remote, store, rx, timeouts));
        Telemetry {
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            seen: Mutex::new(seen),
        }
    }

    fn enabled(&self) -> bool {
        self.tx.lock().is_ok_and(|t| t.is_some())
    }

    fn enqueue(&self, pending: Pending) {
        if let Ok(tx) = self.tx.lock()
            && let Some(tx) = tx.as_ref()
        {
            let _ = tx.send(Msg::Event(pending));
        }
    }

    /// Queues an exposure unless this (distinct id, flag, value) was already sent.
    /// Returns whether it was queued.
    pub(crate) fn exposure(&self, distinct_id: &str, exposure: &Exposure) -> bool {
        if !self.enabled() {
            return false;
        }
        let key = format!(
            "{distinct_id}\u{1f}{}\u{1f}{}",
            exposure.flag,
            exposure.response_json()
        );
        match self.seen.lock() {
            Ok(mut seen) => {
                if !seen.insert(key.clone()) {
                    return false;
                }
            }
            Err(_) => return false,
        }
        self.enqueue(Pending {
            event: event("$feature_flag_called", distinct_id, exposure.properties()),
            exposure_key: Some(key),
        });
        true
    }

    /// Queues any other event.
    pub(crate) fn capture(&self, name: &str, distinct_id: &str, properties: Map<String, Value>) {
        if self.enabled() {
            self.enqueue(Pending {
                event: event(name, distinct_id, properties),
                exposure_key: None,
            });
        }
    }

    /// Sends what is queued and waits for it, at most `max_wait`.
    pub(crate) async fn flush(&self, max_wait: Duration) {
        let (ack_tx, ack_rx) = oneshot::channel();
        let sent = match self.tx.lock() {
            Ok(tx) => tx
                .as_ref()
                .is_some_and(|tx| tx.send(Msg::Flush(ack_tx)).is_ok()),
            Err(_) => false,
        };
        if sent && tokio::time::timeout(max_wait, ack_rx).await.is_err() {
            tracing::debug!("telemetry flush did not finish in {max_wait:?}");
        }
    }

    /// Sends what is queued, stops the background task, and waits at most `max_wait`.
    pub(crate) async fn shutdown(&self, max_wait: Duration) {
        let tx = self.tx.lock().ok().and_then(|mut t| t.take());
        drop(tx);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(mut task) = task {
            if tokio::time::timeout(max_wait, &mut task).await.is_err() {
                tracing::debug!("telemetry did not finish in {max_wait:?}; dropping the rest");
                task.abort();
            }
        }
    }
}

fn event(name: &str, distinct_id: &str, mut properties: Map<String, Value>) -> Value {
    properties.insert("$lib".into(), json!("headstart-feature-flags"));
    properties.insert("$lib_version".into(), json!(env!("CARGO_PKG_VERSION")));
    json!({
        "event": name,
        "distinct_id": distinct_id,
        "properties": properties,
        "timestamp": rfc3339_now(),
        "uuid": uuid::Uuid::new_v4().to_string(),
    })
}

/// How the sender talks to the host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendPolicy {
    pub(crate) timeout: Duration,
    pub(crate) unreachable_for: Duration,
}

async fn run(
    remote: Remote,
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    timeout: SendPolicy,
) {
    let mut buffer: Vec<Pending> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Event(p)) => {
                    buffer.push(p);
                    if buffer.len() >= BATCH_SIZE {
                        send(&remote, &store, &mut buffer, timeout).await;
                    }
                }
                Some(Msg::Flush(ack)) => {
                    send(&remote, &store, &mut buffer, timeout).await;
                    let _ = ack.send(());
                }
                None => {
                    send(&remote, &store, &mut buffer, timeout).await;
                    break;
                }
            },
            _ = tick.tick() => {
                if !buffer.is_empty() {
                    send(&remote, &store, &mut buffer, timeout).await;
                }
            }
        }
    }
}

async fn send(remote: &Remote, store: &Store, buffer: &mut Vec<Pending>, policy: SendPolicy) {
    if buffer.is_empty() {
        return;
    }
    let batch: Vec<Pending> = std::mem::take(buffer);
    if store
        .unreachable(remote.host(), policy.unreachable_for)
        .is_some()
    {
        tracing::debug!(
            events = batch.len(),
            "PostHog host recently unreachable: dropping events"
        );
        return;
    }
    let events: Vec<Value> = batch.iter().map(|p| p.event.clone()).collect();
    match remote.batch(&events, policy.timeout).await {
        Ok(()) => {
            let keys: Vec<String> = batch
                .iter()
                .filter_map(|p| p.exposure_key.clone())
                .collect();
            store.add_exposures(&keys);
        }
        Err(e) => {
            tracing::debug!(error = %e.code(), events = events.len(), "could not send events");
            if e.is_unreachable() {
                store.mark_unreachable(remote.host(), &e.code());
            }
        }
    }
}
