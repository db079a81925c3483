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

/// Runs `f` with a TRACE-level subscriber for this thread only (parallel tests do
/// not interfere) and returns its result and the captured log.
pub fn capture_tracing<T>(f: impl FnOnce() -> T) -> (T, CapturedLog) {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, log)
}
