//! A TCP proxy on loopback that slows a server down: it forwards what the client sends
//! at full speed, but passes the server's answer on a few bytes at a time with a pause
//! in between (a trickle), or never (a stall). For deadline, low-speed and cancel
//! tests of clients.
//!
//! Every loop is bounded: connections end when the proxy is dropped or its lifetime
//! runs out, whichever comes first, so a test that fails early leaves no thread behind
//! for long.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a proxy lives at most.
const MAX_LIFETIME: Duration = Duration::from_secs(60);

/// The step in which proxy threads notice they must stop.
const TICK: Duration = Duration::from_millis(50);

/// A slowing proxy on `127.0.0.1:<free port>`. Stops on drop.
#[derive(Debug)]
pub struct TrickleProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `bytes` of the server's answer every `every`.
    Trickle {
        upstream: SocketAddr,
        bytes: usize,
        every: Duration,
    },
    /// Accepts and reads, never answers.
    Stall,
}

impl TrickleProxy {
    /// Forwards to `upstream`, passing on `bytes` of its answer every `every`.
    ///
    /// # Errors
    /// When binding fails.
    pub fn trickle(upstream: SocketAddr, bytes: usize, every: Duration) -> anyhow::Result<Self> {
        Self::spawn(Mode::Trickle {
            upstream,
            bytes: bytes.max(1),
            every,
        })
    }

    /// Accepts connections, reads what clients send, and never answers.
    ///
    /// # Errors
    /// When binding fails.
    pub fn stall() -> anyhow::Result<Self> {
        Self::spawn(Mode::Stall)
    }

    fn spawn(mode: Mode) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let born = Instant::now();
        let accept = std::thread::Builder::new()
            .name("trickle-accept".into())
            .spawn(move || {
                let mut conns = Vec::new();
                for client in listener.incoming() {
                    if s.load(Ordering::SeqCst) || born.elapsed() > MAX_LIFETIME {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let s = Arc::clone(&s);
                    if let Ok(h) = std::thread::Builder::new()
                        .name("trickle-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve(client, mode, &s, born) {
                                tracing::debug!(error = %e, "trickle connection ended");
                            }
                        })
                    {
                        conns.push(h);
                    }
                }
                for h in conns {
                    let _ = h.join();
                }
            })?;
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:<port>/<repo>`.
    pub fn http_url(&self, repo: &str) -> String {
        format!("http://{}/{}", self.addr, repo.trim_start_matches('/'))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TrickleProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake accept()
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn running(stop: &AtomicBool, born: Instant) -> bool {
    !stop.load(Ordering::SeqCst) && born.elapsed() < MAX_LIFETIME
}

/// Sleeps `d` in ticks; false when the proxy must stop.
fn pause(d: Duration, stop: &AtomicBool, born: Instant) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if !running(stop, born) {
            return false;
        }
        std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
    }
    running(stop, born)
}

fn serve(
    client: TcpStream,
    mode: Mode,
    stop: &Arc<AtomicBool>,
    born: Instant,
) -> anyhow::Result<()> {
    client.set_read_timeout(Some(TICK))?;
    let Mode::Trickle {
        upstream,
        bytes,
        every,
    } = mode
    else {
        // Stall: drain the client until it gives up or the proxy stops.
        let mut c = client;
        let mut buf = [0u8; 4096];
        while running(stop, born) {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
        return Ok(());
    };
    let server = TcpStream::connect(upstream).context("connecting upstream")?;
    server.set_read_timeout(Some(TICK))?;
    // Client to server at full speed, on its own thread.
    let (mut c_in, mut s_out) = (client.try_clone()?, server.try_clone()?);
    let s2 = Arc::clone(stop);
    let up = std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while running(&s2, born) {
            match c_in.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
        let _ = s_out.shutdown(Shutdown::Write);
    });
    // Server to client, `bytes` every `every`.
    let (mut s_in, mut c_out) = (server, client);
    let mut buf = vec![0u8; bytes];
    'outer: while pause(every, stop, born) {
        let n = loop {
            match s_in.read(&mut buf) {
                Ok(0) => break 'outer,
                Ok(n) => break n,
                Err(e) if is_timeout(&e) => {
                    if !running(stop, born) {
                        break 'outer;
                    }
                }
                Err(_) => break 'outer,
            }
        };
        if c_out.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = c_out.shutdown(Shutdown::Both);
    let _ = s_in.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
