//! The limits of the git operation running on this thread: cancellation, the
//! deadline and the low-speed limit of [`GitOptions`](super::GitOptions), and the
//! mapping of a stop (and of a full disk) to the [`Error`] a caller can act on.
//!
//! Each engine entry point ([`clone`](super::clone), [`sync`](super::sync),
//! [`remote_default_branch_with`](super::remote_default_branch_with)) enters a
//! [`Scope`] for its whole run. libgit2 runs everything of one operation (transport,
//! callbacks, checkout) on the calling thread, so the scope lives in a
//! **thread-local**: the progress callbacks and the socket layer (`nodelay.rs`, which
//! has no other way to reach the operation from inside libgit2) ask
//! [`proceed`] / [`note_network`] whether to go on. A scope restores the previous one
//! when dropped, so nested or sequential operations on one thread do not mix.
//!
//! A stalled server sends no progress, so progress callbacks alone cannot notice it:
//! the socket layer reads in short slices and reports each slice here (bytes and time
//! spent waiting). The low-speed limit is judged on that **waiting time** only (time
//! libgit2 spends indexing or checking out between reads is not the server's fault):
//! it fails once the bytes received over the last `low_speed.time` of waiting are
//! below `bytes_per_sec × time`.
//!
//! The first stop decided is remembered, so whatever error libgit2 then reports
//! ("user cancelled", a socket error) becomes [`Error::Cancelled`], [`Error::Timeout`]
//! or [`Error::TooSlow`]. Over ssh too: our vendored libgit2 makes libssh2 read and
//! write through the same stream (see `vendor/README.md`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::cancel::{CancelToken, TransferLimits};
use crate::error::Error;

/// Why an operation was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The [`CancelToken`] was cancelled.
    Cancelled,
    /// The deadline passed.
    Deadline,
    /// The transfer stayed below the low-speed limit for its window.
    TooSlow,
}

/// One running clone, sync or ls-remote.
#[derive(Debug)]
pub(crate) struct Operation {
    /// `git clone of <url>`, for messages.
    what: String,
    /// The directory written (for [`Error::NoSpace`]).
    dir: Option<PathBuf>,
    cancel: Option<CancelToken>,
    limits: TransferLimits,
    started: Instant,
    meter: RefCell<Meter>,
    stopped: Cell<Option<Stop>>,
}

/// Bytes received against time spent waiting on the network.
#[derive(Debug, Default)]
struct Meter {
    waited: Duration,
    bytes: u64,
    /// `(waited, bytes)` after each report, oldest first; pruned to one sample at or
    /// before the start of the window.
    samples: VecDeque<(Duration, u64)>,
}

impl Operation {
    /// An operation `what` (e.g. `git clone of <url>`) writing to `dir`.
    pub(crate) fn new(
        what: String,
        dir: Option<PathBuf>,
        cancel: Option<CancelToken>,
        limits: TransferLimits,
    ) -> Self {
        Self {
            what,
            dir,
            cancel,
            limits,
            started: Instant::now(),
            meter: RefCell::new(Meter::default()),
            stopped: Cell::new(None),
        }
    }

    /// Whether to go on: `Err` (remembered) once cancelled, past the deadline, or
    /// judged too slow.
    pub(crate) fn check(&self) -> Result<(), Stop> {
        if let Some(stop) = self.stopped.get() {
            return Err(stop);
        }
        let stop = if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            Stop::Cancelled
        } else if self.limits.deadline.is_some_and(|d| Instant::now() >= d) {
            Stop::Deadline
        } else {
            return Ok(());
        };
        self.stopped.set(Some(stop));
        Err(stop)
    }

    /// Records `bytes` received after `waited` on the socket, then [`check`](Self::check)s,
    /// including the low-speed limit.
    pub(crate) fn note_network(&self, bytes: usize, waited: Duration) -> Result<(), Stop> {
        self.check()?;
        let Some(low) = self.limits.low_speed else {
            return Ok(());
        };
        let mut m = self.meter.borrow_mut();
        m.waited += waited;
        m.bytes += bytes as u64;
        let now = (m.waited, m.bytes);
        m.samples.push_back(now);
        let Some(start) = now.0.checked_sub(low.time) else {
            return Ok(()); // not a whole window of waiting yet
        };
        while m.samples.get(1).is_some_and(|s| s.0 <= start) {
            m.samples.pop_front();
        }
        let base = m.samples.front().filter(|s| s.0 <= start).copied();
        let base_bytes = base.map_or(0, |s| s.1);
        let got = now.1.saturating_sub(base_bytes);
        let need = (low.bytes_per_sec as f64 * low.time.as_secs_f64()) as u64;
        if got < need {
            self.stopped.set(Some(Stop::TooSlow));
            return Err(Stop::TooSlow);
        }
        Ok(())
    }

    /// The error for `stop`.
    pub(crate) fn stop_error(&self, stop: Stop) -> Error {
        match stop {
            Stop::Cancelled => Error::Cancelled {
                what: self.what.clone(),
            },
            Stop::Deadline => Error::Timeout {
                what: self.what.clone(),
                after: self.limits.deadline_len.unwrap_or_else(|| {
                    self.limits.deadline.map_or(Duration::ZERO, |d| {
                        d.saturating_duration_since(self.started)
                    })
                }),
            },
            Stop::TooSlow => {
                let low = self.limits.low_speed.unwrap_or_default();
                Error::TooSlow {
                    what: self.what.clone(),
                    bytes_per_sec: low.bytes_per_sec,
                    window: low.time,
                }
            }
        }
    }

    /// The error the caller sees for `e`: the stop if the operation was stopped (the
    /// stop caused whatever libgit2 reported), [`Error::NoSpace`] when the disk is full,
    /// else `e`.
    pub(crate) fn refine(&self, e: Error) -> Error {
        if let Some(stop) = self.stopped.get() {
            return self.stop_error(stop);
        }
        if is_no_space(&e) {
            let detail = match &e {
                Error::Git { message, .. } | Error::Network { message, .. } => message.clone(),
                other => other.to_string(),
            };
            return Error::NoSpace {
                path: self.dir.clone().unwrap_or_default(),
                context: format!("running {} ({detail})", self.what),
            };
        }
        e
    }
}

/// True when `e` says a filesystem is full (ENOSPC from std I/O, or libgit2's
/// message for it).
pub(crate) fn is_no_space(e: &Error) -> bool {
    const MSG: &str = "no space left on device";
    match e {
        Error::Io { source, .. } => {
            source.kind() == std::io::ErrorKind::StorageFull
                || source.raw_os_error() == Some(28)
                || source.to_string().to_ascii_lowercase().contains(MSG)
        }
        Error::Git { message, .. } | Error::Network { message, .. } => {
            message.to_ascii_lowercase().contains(MSG)
        }
        _ => false,
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Operation>>> = const { RefCell::new(None) };
}

/// Makes an [`Operation`] the current one on this thread until dropped.
#[derive(Debug)]
pub(crate) struct Scope {
    op: Rc<Operation>,
    previous: Option<Rc<Operation>>,
}

impl Scope {
    /// Enters `op`.
    pub(crate) fn enter(op: Operation) -> Self {
        let op = Rc::new(op);
        let previous = CURRENT.with(|c| c.replace(Some(Rc::clone(&op))));
        Self { op, previous }
    }

    /// Runs `f` unless the operation is already stopped (a cancelled token, a passed
    /// deadline), and maps its error with [`Operation::refine`].
    pub(crate) fn run<T>(&self, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        if let Err(stop) = self.op.check() {
            return Err(self.op.stop_error(stop));
        }
        f().map_err(|e| self.op.refine(e))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

fn with_current<T>(default: T, f: impl FnOnce(&Operation) -> T) -> T {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some(op) => f(op),
        None => default,
    })
}

/// For callbacks: true to go on, false once the current operation is stopped.
pub(crate) fn proceed() -> bool {
    with_current(true, |op| op.check().is_ok())
}

/// The error of the current operation if it is stopped (for loops of our own, such
/// as the clean after a checkout).
pub(crate) fn stopped_error() -> Option<Error> {
    with_current(None, |op| op.check().err().map(|s| op.stop_error(s)))
}

/// For the socket layer: records a read slice (`bytes` after `waited`); `Err` with a
/// message for libgit2 once the operation must stop.
pub(crate) fn note_network(bytes: usize, waited: Duration) -> Result<(), String> {
    with_current(Ok(()), |op| {
        op.note_network(bytes, waited)
            .map_err(|s| op.stop_error(s).to_string())
    })
}

/// For the socket layer while it waits without reading (connect, write): `Err` with a
/// message once the operation must stop.
pub(crate) fn check_current() -> Result<(), String> {
    with_current(Ok(()), |op| {
        op.check().map_err(|s| op.stop_error(s).to_string())
    })
}

/// Time left before the current operation's deadline, if it has one.
pub(crate) fn remaining() -> Option<Duration> {
    with_current(None, |op| op.limits.remaining())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::LowSpeed;

    fn op(low: LowSpeed) -> Operation {
        Operation::new(
            "test".into(),
            None,
            None,
            TransferLimits::none().low_speed(Some(low)),
        )
    }

    #[test]
    fn low_speed_is_judged_over_a_whole_window_of_waiting() {
        let low = LowSpeed {
            bytes_per_sec: 100,
            time: Duration::from_secs(3),
        };
        // Fast, then nothing: fails only once a whole window passed without enough.
        let o = op(low);
        assert!(o.note_network(10_000, Duration::from_secs(1)).is_ok());
        for _ in 0..11 {
            assert!(o.note_network(0, Duration::from_millis(250)).is_ok());
        }
        // 4 s of waiting: the last 3 s brought nothing.
        assert_eq!(
            o.note_network(0, Duration::from_millis(250)),
            Err(Stop::TooSlow)
        );
        assert_eq!(o.check(), Err(Stop::TooSlow), "remembered");

        // Steady 200 B/s never fails.
        let o = op(low);
        for _ in 0..100 {
            assert!(o.note_network(50, Duration::from_millis(250)).is_ok());
        }
    }

    #[test]
    fn cancel_and_deadline_stop_and_map_to_their_errors() {
        let token = CancelToken::new();
        let o = Operation::new(
            "git clone of x".into(),
            None,
            Some(token.clone()),
            TransferLimits::none(),
        );
        assert!(o.check().is_ok());
        token.cancel();
        assert!(matches!(
            o.refine(Error::InvalidOptions("x".into())),
            Error::InvalidOptions(_)
        ));
        assert_eq!(o.check(), Err(Stop::Cancelled));
        assert!(matches!(
            o.refine(Error::InvalidOptions("x".into())),
            Error::Cancelled { .. }
        ));
        let o = Operation::new(
            "git sync of x".into(),
            None,
            None,
            TransferLimits::within(Duration::ZERO),
        );
        assert_eq!(o.check(), Err(Stop::Deadline));
        assert!(
            matches!(o.stop_error(Stop::Deadline), Error::Timeout { after, .. } if after == Duration::ZERO)
        );
    }
}
