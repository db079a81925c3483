//! A TCP proxy on loopback that forwards to a server (a [`GitHttpServer`]) and, when
//! given a byte budget, **stalls** each connection once the server has sent that many
//! bytes: it stops forwarding, holds the connection open for a bounded time, then
//! closes it. A clone through it starts (the ref advertisement and the beginning of
//! the pack arrive, progress callbacks fire) and then hangs, which is what interrupt
//! and deadline tests need.
//!
//! [`GitHttpServer`]: crate::GitHttpServer

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

/// No budget: forward everything.
const UNLIMITED: u64 = u64::MAX;

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    /// Server-to-client bytes each new connection may forward ([`UNLIMITED`]: all).
    budget: AtomicU64,
    /// How long a stalled connection is held open before it is closed.
    stall_for: Duration,
    /// Connections that used up their budget so far.
    stalls: AtomicUsize,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// A stalling TCP proxy on `127.0.0.1:<free port>`. Stops on drop (closing every
/// connection).
#[derive(Debug)]
pub struct StallProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl StallProxy {
    /// Proxies to `upstream`; connections stall after `budget` bytes from the server
    /// (`None`: never) and are closed `stall_for` after stalling.
    ///
    /// # Errors
    /// When binding fails.
    pub fn start(
        upstream: SocketAddr,
        budget: Option<u64>,
        stall_for: Duration,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            budget: AtomicU64::new(budget.unwrap_or(UNLIMITED)),
            stall_for,
            stalls: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("stall-accept".into())
            .spawn(move || accept_loop(&listener, &s))?;
        Ok(Self {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Sets the budget of connections accepted from now on (`None`: no stall).
    pub fn set_budget(&self, budget: Option<u64>) {
        self.shared
            .budget
            .store(budget.unwrap_or(UNLIMITED), Ordering::SeqCst);
    }

    /// `http://127.0.0.1:<port>/<repo>`.
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{}", self.addr, repo.trim_start_matches('/'))
    }

    /// How many connections have stalled so far.
    pub fn stalls(&self) -> usize {
        self.shared.stalls.load(Ordering::SeqCst)
    }

    /// Waits until more than `seen` connections have stalled; false after `within`.
    pub fn wait_for_stall(&self, seen: usize, within: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.stalls() > seen {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake accept()
        for c in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else { continue };
        let s = Arc::clone(shared);
        let _ = std::thread::Builder::new()
            .name("stall-conn".into())
            .spawn(move || {
                if let Err(e) = proxy(client, &s) {
                    tracing::debug!(error = %e, "stall proxy connection ended");
                }
            });
    }
}

fn proxy(client: TcpStream, shared: &Shared) -> anyhow::Result<()> {
    let server = TcpStream::connect(shared.upstream).context("connecting upstream")?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    {
        let mut conns = shared.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.push(client.try_clone()?);
        conns.push(server.try_clone()?);
    }
    let budget = shared.budget.load(Ordering::SeqCst);
    // client -> server: everything
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::Builder::new()
        .name("stall-up".into())
        .spawn(move || {
            let _ = std::io::copy(&mut c_read, &mut s_write);
            let _ = s_write.shutdown(Shutdown::Write);
        })?;
    // server -> client: up to the budget
    let (mut s_read, mut c_write) = (server.try_clone()?, client.try_clone()?);
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = s_read.read(&mut buf)?;
        if n == 0 {
            let _ = c_write.shutdown(Shutdown::Write);
            break;
        }
        let allowed = usize::try_from(budget.saturating_sub(sent))
            .unwrap_or(usize::MAX)
            .min(n);
        sent += allowed as u64;
        let stall = allowed < n || (budget != UNLIMITED && sent >= budget);
        if stall {
            // counted before the client can see the last bytes: a test that reads them
            // and then asks whether the proxy stalled must get yes
            shared.stalls.fetch_add(1, Ordering::SeqCst);
        }
        c_write.write_all(&buf[..allowed])?;
        if stall {
            let t = Instant::now();
            while t.elapsed() < shared.stall_for && !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}
