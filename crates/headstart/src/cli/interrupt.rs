//! Stopping `headstart up` from outside: SIGINT and SIGTERM, and the `--timeout`
//! deadline. `headstart exec` catches them too (and SIGHUP) to forward them to its
//! command ([`Stop::exec_signal`]).
//!
//! A signal cancels the start's `CancelToken` (`headstart::UpRequest::cancel`); the
//! start then removes what it created and fails. The app layer waits for that at most
//! `headstart::CLEANUP_GRACE` (a second signal cancels `UpRequest::abandon`: no more
//! waiting), then the process exits: 130 for SIGINT, 143 for SIGTERM, 1 for the
//! deadline. A start that could not clean up in time leaves an unfinished sandbox
//! (`interrupted` in `ls --all` once the process is gone) that the next `up` of the
//! name, `prune` or `down` repairs. The deadline itself is the app
//! layer's (`UpRequest::timeout`).

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Why a start was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP (caught only when asked for: [`Signals::install_with_hangup`]).
    Hangup,
    /// The `--timeout` deadline passed.
    Deadline(Duration),
}

impl Stop {
    /// The exit status for a signal (128 + its number); `None` for the deadline.
    pub(crate) fn exit_code(self) -> Option<u8> {
        match self {
            Self::Interrupt => Some(130),
            Self::Terminate => Some(143),
            Self::Hangup => Some(129),
            Self::Deadline(_) => None,
        }
    }

    /// The signal to forward to a command; `None` for the deadline.
    pub(crate) fn exec_signal(self) -> Option<sandbox_core::ExecSignal> {
        match self {
            Self::Interrupt => Some(sandbox_core::ExecSignal::Interrupt),
            Self::Terminate => Some(sandbox_core::ExecSignal::Terminate),
            Self::Hangup => Some(sandbox_core::ExecSignal::Hangup),
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
    hangup: Option<Signal>,
}

impl Signals {
    /// Starts catching SIGINT and SIGTERM.
    pub(crate) fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: None,
        })
    }

    /// Starts catching SIGINT, SIGTERM and SIGHUP.
    pub(crate) fn install_with_hangup() -> std::io::Result<Self> {
        Ok(Self {
            hangup: Some(signal(SignalKind::hangup())?),
            ..Self::install()?
        })
    }

    /// The next signal.
    pub(crate) async fn recv(&mut self) -> Stop {
        let hangup = async {
            match &mut self.hangup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
            _ = hangup => Stop::Hangup,
        }
    }
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
        assert_eq!(Stop::Hangup.exit_code(), Some(129));
        assert_eq!(Stop::Deadline(Duration::from_secs(1)).exit_code(), None);
    }
}
