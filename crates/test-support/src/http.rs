//! A smart-HTTP git server on loopback: std threads, HTTP/1.1 with keep-alive,
//! chunked and gzip request bodies, each request handed to `git http-backend` (CGI).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::git_cli::git_command;
use crate::pktline::{UploadPackRequest, parse_upload_pack};

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET` or `POST`.
    pub method: String,
    /// The path (`/app.git/info/refs`).
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// `git-upload-pack` / `git-receive-pack`, from `?service=` or the path.
    pub service: Option<String>,
    /// The `Git-Protocol` header (`version=2`), if sent.
    pub git_protocol: Option<String>,
    /// Whether the request carried an `Authorization` header.
    pub had_authorization: bool,
    /// The request's `Content-Encoding` (`gzip` when the client compressed the body).
    pub content_encoding: Option<String>,
    /// Whether the body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The status the server answered.
    pub status: u16,
    /// For upload-pack POSTs: the parsed pkt-lines.
    pub upload_pack: Option<UploadPackRequest>,
    /// When the request line arrived, since the server started.
    pub started_at: Duration,
    /// When the request was fully read (headers and body), since the server started.
    pub received_at: Duration,
    /// How long the server took to answer (mostly `git http-backend`).
    pub handled_in: Duration,
}

impl RequestRecord {
    /// True for a `POST .../git-upload-pack` (a fetch negotiation or pack request).
    pub fn is_upload_pack_post(&self) -> bool {
        self.method == "POST" && self.service.as_deref() == Some("git-upload-pack")
    }
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    token: Option<String>,
    redirect_to: Option<String>,
    log: Mutex<Vec<RequestRecord>>,
    stop: AtomicBool,
    /// Open connections by id (a clone of each, to shut them down on drop).
    conns: Mutex<HashMap<u64, TcpStream>>,
    started: Instant,
}

/// Smart HTTP on `127.0.0.1:<free port>` serving the repositories under a root
/// directory through `git http-backend`. Stops on drop (closing connections).
#[derive(Debug)]
pub struct GitHttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl GitHttpServer {
    /// Serves `root` without authentication.
    ///
    /// # Errors
    /// When binding fails or `git --exec-path` does not list `git-http-backend`.
    pub fn start(root: &Path) -> anyhow::Result<Self> {
        Self::spawn(root, None, None)
    }

    /// Serves `root`, demanding HTTP basic auth whose password is `token` (any user
    /// name): requests without it get `401` with `WWW-Authenticate`, wrong ones `401`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with_token(root: &Path, token: &str) -> anyhow::Result<Self> {
        Self::spawn(root, Some(token.to_owned()), None)
    }

    /// A server that answers every request with `302 Found` to `base` followed by the
    /// request's path and query (e.g. to send clients to another host name).
    ///
    /// # Errors
    /// When binding fails.
    pub fn start_redirect(base: &str) -> anyhow::Result<Self> {
        Self::spawn(
            Path::new("/nonexistent"),
            None,
            Some(base.trim_end_matches('/').to_owned()),
        )
    }

    fn spawn(
        root: &Path,
        token: Option<String>,
        redirect_to: Option<String>,
    ) -> anyhow::Result<Self> {
        let exec = crate::git(&["--exec-path"])?;
        if !Path::new(&exec).join("git-http-backend").exists() {
            bail!("git-http-backend not found in {exec}");
        }
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            token,
            redirect_to,
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            started: Instant::now(),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("git-http-accept".into())
            .spawn(move || accept_loop(&listener, &s))?;
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

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The requests answered so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The upload-pack POSTs answered so far.
    pub fn upload_pack_posts(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(RequestRecord::is_upload_pack_post)
            .collect()
    }

    /// Forgets the requests logged so far.
    pub fn clear_log(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake accept()
        for c in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            let _ = c.1.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        next_id += 1;
        let id = next_id;
        if let Ok(clone) = stream.try_clone() {
            shared
                .conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, clone);
        }
        let s = Arc::clone(shared);
        if let Ok(h) = std::thread::Builder::new()
            .name("git-http-conn".into())
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &s) {
                    tracing::debug!(error = %e, "git http connection ended");
                }
                // Long benchmark runs open thousands of connections: release each fd.
                s.conns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
            })
        {
            workers.push(h);
        }
        workers.retain(|h| !h.is_finished());
    }
    for c in shared
        .conns
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain()
    {
        let _ = c.1.shutdown(Shutdown::Both);
    }
    for h in workers {
        let _ = h.join();
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    version: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some((first_byte, req)) = read_request(&mut reader)? else {
            return Ok(());
        };
        let close = req
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
            || req.version == "HTTP/1.0";
        let t = Instant::now();
        let (status, headers, body, mut record) = handle(&req, shared);
        record.started_at = first_byte.duration_since(shared.started);
        record.received_at = t.duration_since(shared.started);
        record.handled_in = t.elapsed();
        shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
                continue;
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        writer.write_all(&body)?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> anyhow::Result<Option<(Instant, Request)>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let first_byte = Instant::now();
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!("malformed request line {line:?}");
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.to_owned(), String::new()),
    };
    let (method, version) = (method.to_owned(), version.to_owned());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            bail!("connection closed in headers");
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    if headers
        .get("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        // The client waits for this before sending the body (libgit2 with
        // GIT_OPT_ENABLE_HTTP_EXPECT_CONTINUE, curl for large bodies).
        let mut stream: &TcpStream = reader.get_ref();
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().context("bad Content-Length")?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };
    Ok(Some((
        first_byte,
        Request {
            method,
            path,
            query,
            version,
            headers,
            body,
        },
    )))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = size.trim().split(';').next().unwrap_or("");
        let n =
            usize::from_str_radix(size, 16).with_context(|| format!("bad chunk size {size:?}"))?;
        if n == 0 {
            // trailers until an empty line
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + n, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

type Headers = Vec<(String, String)>;
type CgiResponse = (u16, Headers, Vec<u8>);
type Response = (u16, Headers, Vec<u8>, RequestRecord);

fn handle(req: &Request, shared: &Shared) -> Response {
    let service = service_of(req);
    let mut record = RequestRecord {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        service: service.clone(),
        git_protocol: req.header("git-protocol").map(str::to_owned),
        had_authorization: req.header("authorization").is_some(),
        content_encoding: req.header("content-encoding").map(str::to_owned),
        chunked: req
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked")),
        status: 0,
        upload_pack: None,
        started_at: Duration::ZERO,
        received_at: Duration::ZERO,
        handled_in: Duration::ZERO,
    };
    if let Some(base) = &shared.redirect_to {
        record.status = 302;
        let q = if req.query.is_empty() {
            String::new()
        } else {
            format!("?{}", req.query)
        };
        let headers = vec![("Location".to_owned(), format!("{base}{}{q}", req.path))];
        return (302, headers, Vec::new(), record);
    }
    if let Some(token) = &shared.token {
        if !authorized(req.header("authorization"), token) {
            record.status = 401;
            let headers = vec![
                (
                    "WWW-Authenticate".to_owned(),
                    "Basic realm=\"git\"".to_owned(),
                ),
                ("Content-Type".to_owned(), "text/plain".to_owned()),
            ];
            return (401, headers, b"authentication required\n".to_vec(), record);
        }
    }
    if req.method == "POST" && service.as_deref() == Some("git-upload-pack") {
        let gzip = req
            .header("content-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
        let plain = if gzip {
            gunzip(&req.body)
        } else {
            req.body.clone()
        };
        record.upload_pack = Some(parse_upload_pack(&plain));
    }
    let (status, headers, body) = match run_cgi(req, shared) {
        Ok(r) => r,
        Err(e) => (
            500,
            vec![("Content-Type".to_owned(), "text/plain".to_owned())],
            format!("{e:#}\n").into_bytes(),
        ),
    };
    record.status = status;
    (status, headers, body, record)
}

fn service_of(req: &Request) -> Option<String> {
    for kv in req.query.split('&') {
        if let Some(s) = kv.strip_prefix("service=") {
            return Some(s.to_owned());
        }
    }
    ["git-upload-pack", "git-receive-pack"]
        .into_iter()
        .find(|s| req.path.ends_with(&format!("/{s}")))
        .map(str::to_owned)
}

fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(h) = header else { return false };
    let Some(b64) = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))
    else {
        return false;
    };
    use base64::Engine as _;
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let decoded = String::from_utf8_lossy(&decoded);
    decoded
        .split_once(':')
        .is_some_and(|(_, pass)| pass == token)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match flate2::read::GzDecoder::new(data).read_to_end(&mut out) {
        Ok(_) => out,
        Err(_) => Vec::new(),
    }
}

fn run_cgi(req: &Request, shared: &Shared) -> anyhow::Result<CgiResponse> {
    let mut cmd: Command = git_command();
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path)
        .env("QUERY_STRING", &req.query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ct) = req.header("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if req.method == "POST" {
        cmd.env("CONTENT_LENGTH", req.body.len().to_string());
    }
    if let Some(enc) = req.header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(p) = req.header("git-protocol") {
        cmd.env("HTTP_GIT_PROTOCOL", p);
    }
    if shared.token.is_some() {
        cmd.env("REMOTE_USER", "token");
    }
    let mut child = cmd.spawn().context("starting git http-backend")?;
    let mut stdin = child.stdin.take().context("http-backend stdin")?;
    let body = req.body.clone();
    // Feed the body from another thread: upload-pack may answer before reading it all.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output()?;
    let _ = feeder.join();
    parse_cgi(&out.stdout).with_context(|| {
        format!(
            "http-backend output unreadable; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn parse_cgi(out: &[u8]) -> anyhow::Result<CgiResponse> {
    let (head_end, sep) = if let Some(i) = find(out, b"\r\n\r\n") {
        (i, 4)
    } else if let Some(i) = find(out, b"\n\n") {
        (i, 2)
    } else {
        bail!("no header terminator in {} bytes", out.len());
    };
    let head = String::from_utf8_lossy(&out[..head_end]);
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
        } else {
            headers.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok((status, headers, out[head_end + sep..].to_vec()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_checks_the_password() {
        assert!(authorized(Some("Basic dXNlcjpwYXNz"), "pass"));
        assert!(authorized(Some("basic dXNlcjpwYXNz "), "pass"));
        assert!(!authorized(Some("Basic dXNlcjpwYXNz"), "other"));
        assert!(!authorized(Some("Basic **"), "pass"));
        assert!(!authorized(None, "pass"));
    }
}
