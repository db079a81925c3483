//! What the local and Docker execs share around a running command: feeding its
//! standard input ([`sandbox_core::ExecStdin`]) and waiting for a signal to forward
//! ([`sandbox_core::SignalToken`]).

use std::io::Read;
use std::time::Duration;

use sandbox_core::{ExecSignal, ExecStdin, SignalToken};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How often a [`SignalToken`] is looked at while a command runs.
const SIGNAL_POLL: Duration = Duration::from_millis(20);

/// The chunks of `stdin`, read on a thread of its own: a blocking reader (a terminal
/// nobody types into) never holds up the runtime or the process's exit. The channel
/// ends at the input's end (or a read error).
pub(crate) fn stdin_chunks(stdin: &ExecStdin) -> mpsc::Receiver<Vec<u8>> {
    let mut reader = stdin.take();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
    let spawned = std::thread::Builder::new()
        .name("exec-stdin".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return; // the command is done
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(%e, "reading the command's standard input");
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(%e, "could not start the thread feeding standard input; the command gets none");
    }
    rx
}

/// Writes the chunks to `to` until they end, then shuts `to` down (the command sees
/// end of file) unless `keep_open`. A command that stops reading (it exited) ends the
/// copy quietly.
pub(crate) async fn feed<W: AsyncWrite + Unpin>(
    mut chunks: mpsc::Receiver<Vec<u8>>,
    mut to: W,
    keep_open: bool,
) {
    while let Some(chunk) = chunks.recv().await {
        if to.write_all(&chunk).await.is_err() || to.flush().await.is_err() {
            return;
        }
    }
    if keep_open {
        std::future::pending::<()>().await;
    }
    let _ = to.shutdown().await;
}

/// The first signal sent through `token`; never resolves without a token.
pub(crate) async fn signalled(token: Option<&SignalToken>) -> ExecSignal {
    let Some(token) = token else {
        return std::future::pending().await;
    };
    loop {
        if let Some(s) = token.received() {
            return s;
        }
        tokio::time::sleep(SIGNAL_POLL).await;
    }
}

/// `signal` as rustix names it.
pub(crate) fn os_signal(signal: ExecSignal) -> rustix::process::Signal {
    match signal {
        ExecSignal::Hangup => rustix::process::Signal::HUP,
        ExecSignal::Terminate => rustix::process::Signal::TERM,
        _ => rustix::process::Signal::INT,
    }
}
