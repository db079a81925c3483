//! The machinery of one start for [`Headstart::up`](super::Headstart::up): running
//! `FastStart::start` against a cancel token and a deadline (with a grace for the
//! cleanup), the `StartCompleted` telemetry event built from typed values, and the
//! fast-path decision of a spawned evaluation. Not here: the request, the outcome or
//! the wiring (`up.rs`).

use std::time::Duration;

use super::choice::ProviderKind;
use feature_flags::{Decision, StartCompleted};
use sandbox_core::{CancelToken, SandboxName, SandboxProvider, SandboxState};

use super::{Error, Result};

/// How long a stopped start may take to remove what it created.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(10);

pub(super) type StartResult =
    std::result::Result<snapshot_refresh::Started, snapshot_refresh::Error>;

/// Resolves when `token` is cancelled.
pub(crate) async fn cancelled(token: &CancelToken) {
    while !token.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the start until it finishes, `cancel` is cancelled or `timeout` passes; on
/// the latter two it cancels and gives the start [`CLEANUP_GRACE`] (unless `abandon`
/// comes first) to clean up. Returns its result and, when it was stopped, the
/// deadline that stopped it (if any) and whether it returned. A start that completed
/// despite the stop counts as finished; one that failed on its own deadline (inside
/// git) counts as stopped by the timeout.
#[allow(clippy::type_complexity)]
pub(super) async fn run_start(
    start: impl std::future::Future<Output = StartResult>,
    cancel: &CancelToken,
    abandon: &CancelToken,
    timeout: Option<Duration>,
) -> (StartResult, Option<(Option<Duration>, bool)>) {
    tokio::pin!(start);
    let deadline = async {
        match timeout {
            Some(t) => {
                tokio::time::sleep(t).await;
                t
            }
            None => std::future::pending().await,
        }
    };
    let why = tokio::select! {
        r = &mut start => {
            return match (&r, timeout) {
                (Err(snapshot_refresh::Error::Core(sandbox_core::Error::Timeout { .. })), Some(t)) => {
                    (r, Some((Some(t), true)))
                }
                // The cancel reached the transfer first and the start already failed
                // with it (both branches were ready): still a stopped start, not a failure.
                (Err(_), _) if cancel.is_cancelled() => (r, Some((None, true))),
                _ => (r, None),
            };
        }
        () = cancelled(cancel) => None,
        t = deadline => Some(t),
    };
    tracing::debug!(?why, "stopping the start");
    cancel.cancel();
    let result = tokio::select! {
        r = tokio::time::timeout(CLEANUP_GRACE, &mut start) => r.ok(),
        () = cancelled(abandon) => {
            tracing::debug!("abandoned: not waiting for the cleanup");
            None
        }
    };
    match result {
        Some(r @ Ok(_)) => (r, None),
        Some(r) => (r, Some((why, true))),
        None => (
            Err(sandbox_core::Error::Cancelled {
                what: "starting a sandbox".into(),
            }
            .into()),
            Some((why, false)),
        ),
    }
}

/// The telemetry event of a start, from typed values.
pub(super) fn start_completed(
    started: &StartResult,
    decision: Option<&Decision>,
    kind: ProviderKind,
) -> StartCompleted {
    StartCompleted {
        path: started
            .as_ref()
            .map_or_else(|_| "failed".to_owned(), |s| s.report.path.to_string()),
        total: started.as_ref().map(|s| s.report.total).unwrap_or_default(),
        phases: started.as_ref().map_or_else(
            |_| Vec::new(),
            |s| {
                s.report
                    .phases
                    .iter()
                    .map(|p| (p.name.as_str().to_owned(), p.duration))
                    .collect()
            },
        ),
        fast_paths: decision.map(|d| d.paths).unwrap_or_default(),
        provider: kind.as_str().to_owned(),
        error: started.as_ref().err().map(|e| e.kind().to_owned()),
    }
}

type PendingDecision = std::result::Result<
    std::result::Result<Decision, feature_flags::Error>,
    tokio::task::JoinError,
>;

/// The decision of a spawned evaluation; a bad `--beta` or `HEADSTART_BETA` is bad input.
pub(super) fn decided(r: PendingDecision) -> Result<Decision> {
    match r {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(Error::InvalidInput(e.to_string())),
        Err(e) => Err(Error::Failed(format!("flag evaluation failed: {e}"))),
    }
}

impl super::Headstart {
    /// What a stopped start left of `name`.
    pub(super) async fn left_behind(
        &self,
        provider: &dyn SandboxProvider,
        name: &SandboxName,
    ) -> Option<SandboxState> {
        match provider.kind() {
            "local" => self
                .local_provider()
                .state(name)
                .unwrap_or(Some(SandboxState::Creating)),
            _ => match provider.get(name).await {
                Ok(Some(_)) => Some(SandboxState::Ready),
                Ok(None) => None,
                Err(_) => Some(SandboxState::Creating),
            },
        }
    }
}
