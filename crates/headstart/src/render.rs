//! Terminal output: tracing setup, progress bars, reports.

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
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// The error and its causes on one line.
pub(crate) fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// A transfer progress display for a start (see `progress.rs`); `None` when nothing
/// should be shown (`quiet` is `--json`).
pub(crate) fn progress_bar(quiet: bool) -> Option<(ProgressBar, ProgressFn)> {
    crate::progress::for_start(quiet)
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
