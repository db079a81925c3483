//! The transfer progress of a start, fed from git2's transfer callbacks
//! ([`sandbox_core::git::Progress`]).
//!
//! On a terminal (stderr) an indicatif bar goes through the phases git itself shows:
//! a spinner while connecting (never a bar at `0/0`), **receiving objects** (objects
//! received of the total, with the bytes received next to them: bytes are bytes, not
//! the object count), **resolving deltas**, then **checking out** until the start
//! returns. On a non-terminal nothing is shown unless `--progress` asks for it; then
//! plain lines at most twice a second (for logs and CI). `--quiet` shows nothing.
//!
//! Not here: how fast the transfer is or whether it stalls (`sandbox_core::git`
//! enforces limits; this only draws).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use sandbox_core::git::{Progress, ProgressFn};

/// Where a transfer is, as the bar shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Nothing known yet (no total): a spinner.
    Connecting,
    /// Objects arriving.
    Receiving,
    /// All objects here, deltas being resolved.
    Resolving,
    /// The transfer is complete; the worktree is being written.
    CheckingOut,
}

/// The stage `p` is in. A total of zero is never "complete": it means the server has
/// not said how much it will send yet (or sends nothing, when already up to date).
pub(crate) fn stage(p: &Progress) -> Stage {
    if p.total_objects == 0 {
        Stage::Connecting
    } else if p.received_objects < p.total_objects {
        Stage::Receiving
    } else if p.indexed_deltas < p.total_deltas {
        Stage::Resolving
    } else {
        Stage::CheckingOut
    }
}

/// One line of text for `p`, as the plain (non-terminal) reporter prints it.
pub(crate) fn line(p: &Progress) -> String {
    let received = || {
        format!(
            "receiving objects: {}/{} objects, {}",
            p.received_objects,
            p.total_objects,
            HumanBytes(p.received_bytes as u64)
        )
    };
    match stage(p) {
        Stage::Connecting => "connecting".to_owned(),
        Stage::Receiving => received(),
        Stage::CheckingOut if p.total_deltas == 0 => received(),
        Stage::Resolving | Stage::CheckingOut => format!(
            "resolving deltas: {}/{} deltas ({}/{} objects, {})",
            p.indexed_deltas,
            p.total_deltas,
            p.received_objects,
            p.total_objects,
            HumanBytes(p.received_bytes as u64)
        ),
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> ")
}

/// A progress display for a start, or `None` when nothing should be shown: with
/// `--quiet`, with `--json` (unless `--progress`), and on a non-terminal (unless
/// `--progress`). Finish the bar with `finish_and_clear` when the start returns.
pub(crate) fn for_start(json: bool) -> Option<(ProgressBar, ProgressFn)> {
    let forced = super::output::progress_forced();
    if super::output::quiet() || (json && !forced) {
        return None;
    }
    if std::io::stderr().is_terminal() {
        Some(terminal_bar())
    } else if forced {
        Some(plain_lines())
    } else {
        None
    }
}

fn terminal_bar() -> (ProgressBar, ProgressFn) {
    let bar = ProgressBar::new_spinner();
    let spinner = style("{spinner} {msg}");
    // The counts are in the message (not `{pos}/{len}`), so every frame is whole.
    let objects = style("{spinner} receiving objects [{bar:30}] {msg}");
    let deltas = style("{spinner} resolving deltas  [{bar:30}] {msg}");
    bar.set_style(spinner.clone());
    bar.set_message("connecting");
    bar.enable_steady_tick(Duration::from_millis(120));
    let b = bar.clone();
    let shown = Mutex::new(Stage::Connecting);
    let f: ProgressFn = Arc::new(move |p: &Progress| {
        let now = stage(p);
        let mut shown = shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Ordered so that no draw in between shows a mix: into a bar style only once
        // its length, position and message are right (a bar style with the spinner's
        // zero length would read `0/0`), into a spinner style before its message.
        let changed = *shown != now;
        *shown = now;
        let bytes = || HumanBytes(p.received_bytes as u64).to_string();
        match now {
            Stage::Receiving | Stage::Resolving => {
                let (pos, len, what, style) = if now == Stage::Receiving {
                    (p.received_objects, p.total_objects, "objects", &objects)
                } else {
                    (p.indexed_deltas, p.total_deltas, "deltas", &deltas)
                };
                b.set_length(len as u64);
                b.set_position(pos as u64);
                b.set_message(format!("{pos}/{len} {what}, {}", bytes()));
                if changed {
                    b.set_style(style.clone());
                }
            }
            Stage::Connecting | Stage::CheckingOut => {
                if changed {
                    b.set_style(spinner.clone());
                }
                if now == Stage::CheckingOut {
                    b.set_message(format!(
                        "checking out ({} objects, {} received)",
                        p.total_objects,
                        bytes()
                    ));
                }
            }
        }
    });
    (bar, f)
}

#[allow(clippy::print_stderr)]
fn plain_lines() -> (ProgressBar, ProgressFn) {
    let last = Mutex::new((None::<Instant>, Stage::Connecting));
    let f: ProgressFn = Arc::new(move |p: &Progress| {
        let now = stage(p);
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last
            .0
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(500));
        if now == Stage::Connecting || !(due || now != last.1) {
            return;
        }
        *last = (Some(Instant::now()), now);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", line(p));
        if now == Stage::CheckingOut {
            let _ = writeln!(err, "checking out");
        }
    });
    (ProgressBar::hidden(), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(received: usize, total: usize, deltas: (usize, usize), bytes: usize) -> Progress {
        Progress {
            received_objects: received,
            total_objects: total,
            indexed_deltas: deltas.0,
            total_deltas: deltas.1,
            received_bytes: bytes,
        }
    }

    #[test]
    fn zero_of_zero_is_connecting_not_complete() {
        assert_eq!(stage(&p(0, 0, (0, 0), 0)), Stage::Connecting);
        assert_eq!(line(&p(0, 0, (0, 0), 120)), "connecting");
    }

    #[test]
    fn stages_follow_the_transfer() {
        assert_eq!(stage(&p(10, 981, (0, 0), 4096)), Stage::Receiving);
        assert_eq!(stage(&p(981, 981, (3, 40), 1 << 20)), Stage::Resolving);
        assert_eq!(stage(&p(981, 981, (40, 40), 1 << 20)), Stage::CheckingOut);
        assert_eq!(stage(&p(981, 981, (0, 0), 1 << 20)), Stage::CheckingOut);
    }

    #[test]
    fn bytes_are_bytes_not_the_object_count() {
        let l = line(&p(930, 981, (0, 0), 1_457_000));
        assert_eq!(l, "receiving objects: 930/981 objects, 1.39 MiB");
    }
}
