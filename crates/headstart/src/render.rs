//! Terminal output: tracing setup, progress bars, reports.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sandbox_core::StartupReport;
use sandbox_core::git::{Progress, ProgressFn};

/// Logs go to stderr; `--log` or `RUST_LOG` pick the level (default: warnings).
pub(crate) fn init_tracing(filter: Option<&str>) {
    let filter = filter
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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

/// A transfer progress bar on stderr when it is a terminal; `None` otherwise (quiet).
pub(crate) fn progress_bar(quiet: bool) -> Option<(ProgressBar, ProgressFn)> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} objects, {binary_bytes}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("fetching");
    bar.enable_steady_tick(Duration::from_millis(120));
    let b = bar.clone();
    let f: ProgressFn = Arc::new(move |p: &Progress| {
        b.set_length(p.total_objects as u64);
        b.set_position(p.received_objects as u64);
        b.set_message(format!("fetching ({} KiB)", p.received_bytes / 1024));
    });
    Some((bar, f))
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
