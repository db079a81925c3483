//! Terminal output: tracing setup, progress bars, reports.
//!
//! Log lines and error messages pass through the one scrubber
//! ([`sandbox_core::scrub()`]) on their way out: a registered secret never reaches the
//! terminal or a build log.

use std::io::Write;
use std::time::Duration;

use indicatif::ProgressBar;
use sandbox_core::StartupReport;
use sandbox_core::git::ProgressFn;

/// Logs go to stderr; `--log` or `RUST_LOG` pick the level (default: warnings).
/// Colour (`ansi`) only when stderr is a terminal and `NO_COLOR` is unset.
pub(crate) fn init_tracing(filter: Option<&str>, ansi: bool) {
    let filter = filter
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Scrubbed(std::io::stderr))
        // colour only on a terminal without NO_COLOR (never in a build log file)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// A [`MakeWriter`](tracing_subscriber::fmt::MakeWriter) whose writers scrub what they
/// write: each event's formatted line is collected and written, scrubbed, when the
/// subscriber is done with it (so a secret split across writes is still hidden).
#[derive(Debug, Clone)]
pub(crate) struct Scrubbed<M>(pub(crate) M);

impl<'a, M> tracing_subscriber::fmt::MakeWriter<'a> for Scrubbed<M>
where
    M: tracing_subscriber::fmt::MakeWriter<'a>,
{
    type Writer = ScrubbingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter {
            inner: self.0.make_writer(),
            buf: Vec::new(),
        }
    }
}

/// One event's writer: buffers, and writes the scrubbed text on flush or drop.
pub(crate) struct ScrubbingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> ScrubbingWriter<W> {
    fn emit(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let clean = sandbox_core::scrub(&text);
        let res = self.inner.write_all(clean.as_bytes());
        self.buf.clear();
        res
    }
}

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for ScrubbingWriter<W> {
    fn drop(&mut self) {
        let _ = self.emit();
    }
}

/// The error and its causes on one line, scrubbed of secrets.
pub(crate) fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    sandbox_core::scrub(&out).into_owned()
}

/// A transfer progress display for a start (see `progress.rs`); `None` when nothing
/// should be shown (`quiet` is `--json`).
pub(crate) fn progress_bar(quiet: bool) -> Option<(ProgressBar, ProgressFn)> {
    super::progress::for_start(quiet)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The human form of a start report.
pub(crate) fn report_text(report: &StartupReport) -> String {
    let mut out = format!(
        "{:?} start in {} — {}\n",
        report.path,
        ms(report.total),
        report.reason
    );
    for p in &report.phases {
        out.push_str(&format!(
            "  {:<16} {:>10}\n",
            p.name.as_str(),
            ms(p.duration)
        ));
    }
    if let Some(h) = &report.head {
        out.push_str(&format!("  HEAD: {} at {}\n", h.branch, h.commit));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_token_in_a_log_line_is_scrubbed() {
        let token = test_support::random_token();
        let token = token.as_str();
        // the CLI registers what it reads; Credentials::token does it for the git token
        let _creds = sandbox_core::Credentials::token(token);
        let capture = Capture::default();
        let sink = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Scrubbed(move || sink.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(output = %format!("HEADSTART_GIT_TOKEN={token}"), "recipe said");
            tracing::error!("clone of https://x:{token}@example.com/a.git failed");
        });
        let logged = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(!logged.contains(token), "{logged}");
        assert_eq!(logged.matches("[redacted]").count(), 2, "{logged}");
        assert!(
            logged.contains("HEADSTART_GIT_TOKEN=[redacted]"),
            "{logged}"
        );
        assert_eq!(logged.lines().count(), 2, "{logged}");
    }

    #[test]
    fn errors_are_scrubbed() {
        let token = test_support::random_token();
        sandbox_core::register_secret(&token);
        let e = anyhow::anyhow!("token {token} refused").context("creating a VM");
        assert_eq!(chain(&e), "creating a VM: token [redacted] refused");
    }
}
