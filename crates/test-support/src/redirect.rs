//! An HTTP server on loopback that answers every request with `302 Found` to another
//! base URL, optionally only after the client authenticated (as a forge that checks a
//! token and then sends the client to a mirror would). It logs whether each request
//! carried an `Authorization` header.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

/// One request the redirecting server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRecord {
    /// The request target (path and query).
    pub target: String,
    /// Whether it carried an `Authorization` header.
    pub had_authorization: bool,
    /// `302` or `401`.
    pub status: u16,
}

#[derive(Debug)]
struct Shared {
    to: String,
    demand_auth: bool,
    log: Mutex<Vec<RedirectRecord>>,
    stop: AtomicBool,
}

/// `http://127.0.0.1:<free port>` answering `302 Found` with `Location: <to><target>`.
/// Stops on drop.
#[derive(Debug)]
pub struct RedirectServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl RedirectServer {
    /// Redirects every request to `to` (a base URL such as `http://127.0.0.1:1234`)
    /// followed by the request's path and query.
    ///
    /// # Errors
    /// When binding fails.
    pub fn start(to: &str) -> anyhow::Result<Self> {
        Self::spawn(to, false)
    }

    /// As [`start`](Self::start), but a request without an `Authorization` header
    /// first gets `401` with `WWW-Authenticate: Basic` (any credentials pass).
    ///
    /// # Errors
    /// When binding fails.
    pub fn start_after_auth(to: &str) -> anyhow::Result<Self> {
        Self::spawn(to, true)
    }

    fn spawn(to: &str, demand_auth: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            to: to.trim_end_matches('/').to_owned(),
            demand_auth,
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("redirect-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Err(e) = serve(stream, &s) {
                        tracing::debug!(error = %e, "redirect connection ended");
                    }
                }
            })?;
        Ok(Self {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:<port>/<repo>`.
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{}", self.addr, repo.trim_start_matches('/'))
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<RedirectRecord> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for RedirectServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake accept()
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Answers one request and closes the connection (`Connection: close`).
fn serve(stream: TcpStream, shared: &Shared) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut had_authorization = false;
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                had_authorization = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let (status, head) = if shared.demand_auth && !had_authorization {
        (
            401,
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n".to_owned(),
        )
    } else {
        (
            302,
            format!("HTTP/1.1 302 Found\r\nLocation: {}{target}\r\n", shared.to),
        )
    };
    shared
        .log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(RedirectRecord {
            target,
            had_authorization,
            status,
        });
    let mut w = stream;
    w.write_all(format!("{head}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())?;
    w.flush()?;
    Ok(())
}
