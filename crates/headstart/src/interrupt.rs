//! Stopping `headstart up` from outside: SIGINT and SIGTERM, and the `--timeout`
//! deadline.
//!
//! Both cancel the start's [`CancelToken`]; the start then removes what it created
//! and fails. The process waits for that at most [`CLEANUP_GRACE`] (a second signal
//! stops the wait at once), then exits: 130 for SIGINT, 143 for SIGTERM, 1 for the
//! deadline. A start that could not clean up in time leaves a `creating` sandbox that
//! the next `up` of the name or `prune` repairs.

use std::future::Future;
use std::time::Duration;

use sandbox_core::CancelToken;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long an interrupted start may take to remove what it created.
pub(crate) const CLEANUP_GRACE: Duration = Duration::from_secs(10);

/// Why a start was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// The `--timeout` deadline passed.
    Deadline(Duration),
}

impl Stop {
    /// The exit status for a signal (128 + its number); `None` for the deadline.
    pub(crate) fn exit_code(self) -> Option<u8> {
        match self {
            Self::Interrupt => Some(130),
            Self::Terminate => Some(143),
            Self::Deadline(_) => None,
        }
    }
}

/// SIGINT and SIGTERM, caught from [`install`](Self::install) on (their default
/// action, ending the process at once, would leave a half-made sandbox behind).
#[derive(Debug)]
pub(crate) struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Starts catching SIGINT and SIGTERM.
    pub(crate) fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next signal.
    pub(crate) async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
        }
    }
}

/// How a guarded operation ended.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    /// It finished on its own.
    Finished(T),
    /// A signal or the deadline stopped it; `result` is what it returned after being
    /// cancelled, `None` when it did not return within [`CLEANUP_GRACE`] (or a second
    /// signal came first).
    Stopped {
        /// Why.
        why: Stop,
        /// What the operation returned once cancelled.
        result: Option<T>,
    },
}

/// Runs `fut` until it finishes, a signal arrives or `timeout` passes; on the latter
/// two it cancels `cancel` and gives `fut` [`CLEANUP_GRACE`] to finish.
pub(crate) async fn guard<T>(
    fut: impl Future<Output = T>,
    signals: &mut Signals,
    cancel: &CancelToken,
    timeout: Option<Duration>,
) -> Outcome<T> {
    tokio::pin!(fut);
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
        r = &mut fut => return Outcome::Finished(r),
        why = signals.recv() => why,
        t = deadline => Stop::Deadline(t),
    };
    tracing::debug!(?why, "stopping the start");
    cancel.cancel();
    let result = tokio::select! {
        r = tokio::time::timeout(CLEANUP_GRACE, &mut fut) => r.ok(),
        again = signals.recv() => {
            tracing::debug!(?again, "a second signal: not waiting for the cleanup");
            None
        }
    };
    Outcome::Stopped { why, result }
}

/// `fut`, unless a signal comes first (then `Err` with it).
pub(crate) async fn or_signal<T>(
    fut: impl Future<Output = T>,
    signals: &mut Signals,
) -> Result<T, Stop> {
    tokio::select! {
        r = fut => Ok(r),
        why = signals.recv() => Err(why),
    }
}

/// A duration the way `--timeout` and `--ttl` take it: `90s`, `10m`, `2h`, `1d`.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_read_like_the_flags() {
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(3)), "3s");
        assert_eq!(human(Duration::from_secs(7200)), "2h");
        assert_eq!(human(Duration::from_secs(86_400)), "1d");
        assert_eq!(human(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn signals_exit_with_128_plus_their_number() {
        assert_eq!(Stop::Interrupt.exit_code(), Some(130));
        assert_eq!(Stop::Terminate.exit_code(), Some(143));
        assert_eq!(Stop::Deadline(Duration::from_secs(1)).exit_code(), None);
    }
}
