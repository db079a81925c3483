//! Stopping long operations from outside: [`CancelToken`] and [`TransferLimits`].
//!
//! A start can be interrupted (Ctrl-C, SIGTERM, a caller dropping interest) or run out
//! of time. Blocking work (a git transfer on a blocking thread) cannot be dropped like
//! a future, so it polls a token instead: the git engine checks it in its progress
//! callbacks and while waiting on a socket, and fails with [`Error::Cancelled`] or
//! [`Error::Timeout`](crate::Error::Timeout).
//!
//! A running command is stopped differently: with a signal, like a terminal's Ctrl-C
//! ([`SignalToken`], set on [`ExecRequest::signals`](crate::ExecRequest::signals)).
//!
//! This module is not a runtime: it holds no threads and sends no signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// A shared flag that asks running work to stop. Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
}

impl CancelToken {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder of this token (and its clones) to stop.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// True once [`cancel`](Self::cancel) was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// A signal for a running command: those a terminal or a supervisor sends to stop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecSignal {
    /// SIGHUP (the terminal went away).
    Hangup,
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl ExecSignal {
    /// The signal's number (1, 2, 15).
    pub fn number(self) -> i32 {
        match self {
            Self::Hangup => 1,
            Self::Interrupt => 2,
            Self::Terminate => 15,
        }
    }

    fn from_number(n: i32) -> Option<Self> {
        match n {
            1 => Some(Self::Hangup),
            2 => Some(Self::Interrupt),
            15 => Some(Self::Terminate),
            _ => None,
        }
    }
}

/// How long a command sent a signal through a [`SignalToken`] has to end before the
/// provider kills it.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(3);

/// Sends a signal to a running command from outside (what `docker exec` and `ssh` do
/// with the Ctrl-C they receive). Set it on
/// [`ExecRequest::signals`](crate::ExecRequest::signals); the providers that support it
/// (local, Docker) watch it while the command runs and deliver the first signal
/// [`send`](Self::send) gives to the command's whole process group, wait at most
/// [`SIGNAL_GRACE`] for the command to end, then kill what is left of the group (the
/// command, or what it started and that ignored the signal). The command's
/// [`ExecOutput`](crate::ExecOutput) says how it ended (`128 + N` for signal N).
/// Cloning shares the token; a signal sent before the command starts is delivered as
/// soon as it has.
#[derive(Debug, Clone, Default)]
pub struct SignalToken {
    signal: Arc<AtomicI32>,
}

impl SignalToken {
    /// A token no signal was sent through yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for `signal` to be delivered to the command (only the first signal sent
    /// counts: after it the command is killed at the end of the grace anyway).
    pub fn send(&self, signal: ExecSignal) {
        let _ =
            self.signal
                .compare_exchange(0, signal.number(), Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal sent through this token or a clone, if any.
    pub fn received(&self) -> Option<ExecSignal> {
        ExecSignal::from_number(self.signal.load(Ordering::SeqCst))
    }
}

/// Bounds on a network transfer, like git's `http.lowSpeedLimit`/`http.lowSpeedTime`
/// plus an overall deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransferLimits {
    /// When the whole operation must be done (`None`: no deadline).
    pub deadline: Option<Instant>,
    /// The deadline's length as the user gave it, for error messages.
    pub deadline_len: Option<Duration>,
    /// Fail when fewer than `low_speed_bytes` per second arrive for `low_speed_time`
    /// (`None`: no low-speed limit).
    pub low_speed: Option<LowSpeed>,
}

/// A minimum transfer rate sustained over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowSpeed {
    /// Bytes per second below which the transfer counts as stalled.
    pub bytes_per_sec: u64,
    /// How long it may stay below that rate before it fails.
    pub time: Duration,
}

impl Default for LowSpeed {
    /// git's spirit with a cap for loopback-fast machines: 1 KiB/s for 30 s.
    fn default() -> Self {
        Self {
            bytes_per_sec: 1024,
            time: Duration::from_secs(30),
        }
    }
}

impl TransferLimits {
    /// No deadline, no low-speed limit.
    pub fn none() -> Self {
        Self::default()
    }

    /// An overall deadline `len` from now, plus the default low-speed limit.
    pub fn within(len: Duration) -> Self {
        Self {
            deadline: Instant::now().checked_add(len),
            deadline_len: Some(len),
            low_speed: Some(LowSpeed::default()),
        }
    }

    /// Sets the low-speed limit.
    #[must_use]
    pub fn low_speed(mut self, low_speed: Option<LowSpeed>) -> Self {
        self.low_speed = low_speed;
        self
    }

    /// Time left before the deadline (`None`: no deadline; zero: passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_sent_counts() {
        let token = SignalToken::new();
        let clone = token.clone();
        assert_eq!(token.received(), None);
        clone.send(ExecSignal::Terminate);
        token.send(ExecSignal::Interrupt);
        assert_eq!(token.received(), Some(ExecSignal::Terminate));
        assert_eq!(ExecSignal::Hangup.number(), 1);
    }
}
