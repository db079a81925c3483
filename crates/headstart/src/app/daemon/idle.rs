//! The daemon's idle watch: every [`TICK`] it asks the app layer to stop (or
//! hibernate) the sandboxes whose idle time passed ([`Headstart::idle_sweep`], which
//! takes each sandbox's lease exclusively and re-checks under it, so a command in
//! flight or a start in progress always wins). Not here: the decision or the stop
//! itself (`app/lifecycle/`).

use std::path::PathBuf;
use std::time::Duration;

use crate::app::{Config, Headstart};

/// How often the watch looks.
const TICK: Duration = Duration::from_millis(500);

/// Watches the sandboxes of `data_dir` until the task is dropped. The configuration
/// comes from the environment the daemon was started with (the Docker engine, the
/// restore method), over `data_dir`.
pub(super) async fn watch(data_dir: PathBuf) {
    let mut config = Config::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "idle watch: the environment's settings are ignored");
        Config::new(&data_dir)
    });
    config.data_dir = data_dir;
    let app = Headstart::new(config);
    loop {
        for (name, action) in app.idle_sweep().await {
            tracing::info!(%name, ?action, "idle sandbox");
        }
        tokio::time::sleep(TICK).await;
    }
}
