//! Capturing tracing output (at TRACE level) into a buffer, for leak assertions.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything the tracing subscriber wrote while [`capture_tracing`] ran.
#[derive(Debug, Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// The captured text.
    pub fn text(&self) -> String {
        let buf = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    /// Where this thread's events go while [`capture_tracing`] runs on it.
    static CAPTURE: std::cell::RefCell<Option<CapturedLog>> = const { std::cell::RefCell::new(None) };
}

/// The global subscriber's writer: this thread's capture, else nowhere.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(log) = c.borrow_mut().as_mut() {
                let _ = log.write(data);
            }
        });
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once per process, a global TRACE subscriber that writes each thread's
/// events to that thread's capture. A global subscriber (rather than a scoped one per
/// test) keeps every callsite's interest at "always": with scoped subscribers coming
/// and going on parallel test threads, tracing's callsite cache could record "never"
/// for a callsite and a capture would miss its events (a flaky leak test). False when
/// another global subscriber was installed first.
fn global_capture() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| ThreadWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).is_ok()
    })
}

/// Runs `f` with TRACE-level tracing captured for this thread only (parallel tests do
/// not interfere) and returns its result and the captured log.
pub fn capture_tracing<T>(f: impl FnOnce() -> T) -> (T, CapturedLog) {
    let log = CapturedLog::default();
    if global_capture() {
        let previous = CAPTURE.with(|c| c.borrow_mut().replace(log.clone()));
        let out = f();
        CAPTURE.with(|c| *c.borrow_mut() = previous);
        return (out, log);
    }
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, log)
}
