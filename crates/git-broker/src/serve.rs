//! The HTTP side: routes git's smart-HTTP requests of a capability URL to the grant's
//! upstream, adds the credentials there, checks pushes, streams bodies both ways and
//! logs one line per request. It holds no grant state of its own (`Inner` does) and
//! never looks inside a pack.

use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::write::GzDecoder;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sandbox_core::{Credentials, scrub};

use crate::Inner;
use crate::error::BrokerError;
use crate::grant::{Entry, url_repo_path};
use crate::pktline::{Commands, MAX_COMMANDS_BYTES, parse_commands, refusal_report, wants_report};
use crate::policy::{PushRefused, RefUpdate};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResBody = UnsyncBoxBody<Bytes, BoxError>;

/// Request headers passed upstream (never `Authorization`, `Cookie`, `Host`).
const REQUEST_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    header::USER_AGENT,
    header::PRAGMA,
];

/// Response headers passed back.
const RESPONSE_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LENGTH,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::PRAGMA,
    header::LAST_MODIFIED,
];

const GIT_PROTOCOL: &str = "git-protocol";

/// The upstream client: follows redirects only within the origin of the request
/// (reqwest also drops `Authorization` on a cross-host redirect; the broker never
/// gets that far).
pub(crate) fn upstream_client() -> Result<reqwest::Client, BrokerError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same = attempt
                .previous()
                .first()
                .is_some_and(|first| same_origin(first, attempt.url()));
            if same && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .connect_timeout(Duration::from_secs(15))
        // an upstream silent this long is gone (git servers send progress meanwhile)
        .read_timeout(Duration::from_secs(300))
        .tcp_nodelay(true)
        .build()
        .map_err(BrokerError::Client)
}

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Accepts connections forever, one task each.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    listener: tokio::net::TcpListener,
) -> Result<(), BrokerError> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "broker: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let inner = Arc::clone(&inner);
                async move { Ok::<_, Infallible>(handle(&inner, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %scrub(&e.to_string()), "broker: connection ended");
            }
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::UploadPack => "git-upload-pack",
            Self::ReceivePack => "git-receive-pack",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        match s {
            "git-upload-pack" => Some(Self::UploadPack),
            "git-receive-pack" => Some(Self::ReceivePack),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    InfoRefs(Service),
    Rpc(Service),
}

impl Endpoint {
    fn service(self) -> Service {
        match self {
            Self::InfoRefs(s) | Self::Rpc(s) => s,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Route<'a> {
    capability: &'a str,
    repo: &'a str,
    endpoint: Endpoint,
}

fn route<'a>(method: &Method, path: &'a str, query: Option<&str>) -> Option<Route<'a>> {
    let rest = path.strip_prefix("/g/")?;
    let (capability, rest) = rest.split_once('/')?;
    if let Some(repo) = rest.strip_suffix("/info/refs") {
        if method != Method::GET {
            return None;
        }
        let service = query?
            .split('&')
            .find_map(|kv| kv.strip_prefix("service="))?;
        let endpoint = Endpoint::InfoRefs(Service::from_name(service)?);
        return Some(Route {
            capability,
            repo,
            endpoint,
        });
    }
    for service in [Service::UploadPack, Service::ReceivePack] {
        if let Some(repo) = rest
            .strip_suffix(service.name())
            .and_then(|r| r.strip_suffix('/'))
        {
            if method != Method::POST {
                return None;
            }
            return Some(Route {
                capability,
                repo,
                endpoint: Endpoint::Rpc(service),
            });
        }
    }
    None
}

/// One request's log line, written when its answer is complete.
struct RequestLog {
    grant: String,
    service: &'static str,
    request: &'static str,
    refs: String,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
}

impl RequestLog {
    fn finish(&self, status: u16, result: &str, bytes_out: u64) {
        tracing::info!(
            grant = %self.grant,
            service = self.service,
            request = self.request,
            refs = %scrub(&self.refs),
            status,
            result = %scrub(result),
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "broker: git request"
        );
    }

    /// A complete answer from the broker itself, logged now.
    fn answer(
        &self,
        status: StatusCode,
        content_type: &str,
        body: Vec<u8>,
        result: &str,
    ) -> Response<ResBody> {
        self.finish(status.as_u16(), result, body.len() as u64);
        let mut resp = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|e| match e {})
                .boxed_unsync(),
        );
        *resp.status_mut() = status;
        if let Ok(v) = HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }

    /// A `text/plain` refusal (git prints each line as `remote: ...`).
    fn text(&self, status: StatusCode, message: &str) -> Response<ResBody> {
        let mut body = scrub(message).into_owned();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        self.answer(
            status,
            "text/plain; charset=utf-8",
            body.into_bytes(),
            message.lines().next().unwrap_or(""),
        )
    }
}

fn with_hint(message: String, hint: Option<&str>) -> String {
    match hint {
        Some(h) if !h.trim().is_empty() => format!("{message}\n{}", h.trim()),
        _ => message,
    }
}

async fn handle(inner: &Inner, req: Request<Incoming>) -> Response<ResBody> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let mut log = RequestLog {
        grant: "-".into(),
        service: "-",
        request: "-",
        refs: String::new(),
        started: Instant::now(),
        bytes_in: Arc::new(AtomicU64::new(0)),
    };
    let Some(route) = route(req.method(), &path, query.as_deref()) else {
        return log.text(
            StatusCode::NOT_FOUND,
            "headstart: not a git smart-HTTP URL of this broker",
        );
    };
    log.service = route.endpoint.service().name();
    log.request = match route.endpoint {
        Endpoint::InfoRefs(_) => "info/refs",
        Endpoint::Rpc(_) => "rpc",
    };
    let Some(entry) = inner.lookup(route.capability) else {
        return log.text(
            StatusCode::FORBIDDEN,
            "headstart: this broker knows no such grant (the capability in the URL is unknown)",
        );
    };
    log.grant = entry.id.to_string();
    if entry.revoked {
        let msg = with_hint(
            "headstart: this grant was revoked".into(),
            entry.hints.renew.as_deref(),
        );
        return log.text(StatusCode::FORBIDDEN, &msg);
    }
    if time::OffsetDateTime::now_utc() >= entry.expires_at {
        let at = entry
            .expires_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let msg = with_hint(
            format!("headstart: this grant expired (at {at})"),
            entry.hints.renew.as_deref(),
        );
        return log.text(StatusCode::FORBIDDEN, &msg);
    }
    if !entry.serves_path(route.repo) {
        let asked: String = route
            .repo
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let msg = format!(
            "headstart: this grant is for {} only, not {asked}",
            url_repo_path(&entry.upstream)
        );
        return log.text(StatusCode::FORBIDDEN, &msg);
    }
    let Some(credentials) = entry.credentials.clone() else {
        let msg = with_hint(
            "headstart: the broker holds no credentials for this grant (it was reloaded \
             without its token); re-register credentials for it"
                .into(),
            entry.hints.register.as_deref(),
        );
        return log.text(StatusCode::FORBIDDEN, &msg);
    };
    forward(inner, &entry, &credentials, route.endpoint, req, log).await
}

fn basic_auth(credentials: &Credentials) -> Option<HeaderValue> {
    use base64::Engine as _;
    let token = credentials.expose_token()?;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{token}", credentials.username()));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

async fn forward(
    inner: &Inner,
    entry: &Entry,
    credentials: &Credentials,
    endpoint: Endpoint,
    req: Request<Incoming>,
    mut log: RequestLog,
) -> Response<ResBody> {
    let (parts, body) = req.into_parts();
    let base = entry.upstream.as_git_url();
    let base = base.trim_end_matches('/');
    let url = match endpoint {
        Endpoint::InfoRefs(s) => format!("{base}/info/refs?service={}", s.name()),
        Endpoint::Rpc(s) => format!("{base}/{}", s.name()),
    };
    let mut headers = HeaderMap::new();
    for name in REQUEST_HEADERS {
        if let Some(v) = parts.headers.get(name) {
            headers.insert(name.clone(), v.clone());
        }
    }
    if let Some(v) = parts.headers.get(GIT_PROTOCOL) {
        headers.insert(HeaderName::from_static(GIT_PROTOCOL), v.clone());
    }
    let gzip = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let upload = match endpoint {
        Endpoint::InfoRefs(_) => None,
        Endpoint::Rpc(Service::UploadPack) => {
            for name in [header::CONTENT_ENCODING, header::CONTENT_LENGTH] {
                if let Some(v) = parts.headers.get(&name) {
                    headers.insert(name, v.clone());
                }
            }
            Some(Upload::new(
                Bytes::new(),
                body,
                None,
                Arc::clone(&log.bytes_in),
            ))
        }
        Endpoint::Rpc(Service::ReceivePack) => {
            let (upload, updates) = match check_push(entry, body, gzip, &mut log).await {
                Ok(checked) => checked,
                Err(refusal) => return refusal,
            };
            if !gzip {
                // the bytes go upstream unchanged; gunzipped ones have another length
                if let Some(v) = parts.headers.get(header::CONTENT_LENGTH) {
                    headers.insert(header::CONTENT_LENGTH, v.clone());
                }
            }
            drop(updates);
            Some(upload)
        }
    };
    let Some(auth) = basic_auth(credentials) else {
        return log.text(
            StatusCode::FORBIDDEN,
            "headstart: the grant's credentials are empty",
        );
    };
    headers.insert(header::AUTHORIZATION, auth);
    let mut request = inner.client.request(parts.method, &url).headers(headers);
    if let Some(upload) = upload {
        request = request.body(reqwest::Body::wrap(upload));
    }
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("headstart: the upstream could not be reached: {e}");
            return log.text(StatusCode::BAD_GATEWAY, &msg);
        }
    };
    let status = upstream.status();
    if status == StatusCode::UNAUTHORIZED {
        // a 401 would make git prompt for a password it must not have
        let msg = with_hint(
            "headstart: the upstream refused the grant's credentials (HTTP 401)".into(),
            entry.hints.register.as_deref(),
        );
        return log.text(StatusCode::FORBIDDEN, &msg);
    }
    if status.is_redirection() {
        return log.text(
            StatusCode::BAD_GATEWAY,
            "headstart: the upstream redirected to another origin; the broker does not follow it",
        );
    }
    let mut resp_headers = HeaderMap::new();
    for name in RESPONSE_HEADERS {
        if let Some(v) = upstream.headers().get(name) {
            resp_headers.insert(name.clone(), v.clone());
        }
    }
    let body = Counted {
        inner: reqwest::Body::from(upstream),
        bytes: 0,
        failed: false,
        status: status.as_u16(),
        log: Some(log),
    };
    let mut resp = Response::new(body.boxed_unsync());
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    resp
}

/// Reads receive-pack's command list and checks it. `Ok`: the body to forward (the
/// bytes read so far, then the rest). `Err`: the answer to send instead.
async fn check_push(
    entry: &Entry,
    mut body: Incoming,
    gzip: bool,
    log: &mut RequestLog,
) -> Result<(Upload, Vec<RefUpdate>), Response<ResBody>> {
    let mut plain: Vec<u8> = Vec::new();
    let mut decoder = gzip.then(|| GzDecoder::new(Vec::new()));
    let (updates, capabilities) = loop {
        match parse_commands(&plain) {
            Commands::Done {
                updates,
                capabilities,
            } => break (updates, capabilities),
            Commands::Invalid(why) => {
                return Err(log.text(
                    StatusCode::BAD_REQUEST,
                    &format!("headstart: cannot check this push: {why}"),
                ));
            }
            Commands::NeedMore => {}
        }
        if plain.len() > MAX_COMMANDS_BYTES {
            return Err(log.text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "headstart: cannot check this push: its command list is too long",
            ));
        }
        let data = match body.frame().await {
            None => {
                return Err(log.text(
                    StatusCode::BAD_REQUEST,
                    "headstart: the push ended before its command list",
                ));
            }
            Some(Err(e)) => {
                return Err(log.text(
                    StatusCode::BAD_REQUEST,
                    &format!("headstart: reading the push failed: {e}"),
                ));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        log.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
        match &mut decoder {
            Some(d) => {
                // flate2 keeps output until the next write or a flush
                if let Err(e) = d.write_all(&data).and_then(|()| d.flush()) {
                    return Err(log.text(
                        StatusCode::BAD_REQUEST,
                        &format!("headstart: the push's gzip body is unreadable: {e}"),
                    ));
                }
                plain.append(d.get_mut());
            }
            None => plain.extend_from_slice(&data),
        }
    };
    log.refs = updates
        .iter()
        .map(|u| u.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let verdicts: Vec<(String, Result<(), PushRefused>)> = updates
        .iter()
        .map(|u| (u.name.clone(), entry.push.check(u)))
        .collect();
    if verdicts.iter().all(|(_, v)| v.is_ok()) {
        let upload = Upload::new(Bytes::from(plain), body, decoder, Arc::clone(&log.bytes_in));
        return Ok((upload, updates));
    }
    let refused: Vec<(String, String)> = verdicts
        .into_iter()
        .map(|(name, v)| {
            let reason = v.err().map(|r| r.to_string()).unwrap_or_else(|| {
                "headstart: not pushed: another ref of this push was refused".to_owned()
            });
            (name, reason)
        })
        .collect();
    // Read what the client still sends (the pack) so it sees the answer, not a reset.
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    log.bytes_in.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
            }
            Err(_) => break,
        }
    }
    let summary = refused
        .iter()
        .map(|(_, r)| r.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if !wants_report(&capabilities) {
        return Err(log.text(StatusCode::FORBIDDEN, &summary));
    }
    Err(log.answer(
        StatusCode::OK,
        "application/x-git-receive-pack-result",
        refusal_report(&refused, &capabilities),
        &format!("refused: {summary}"),
    ))
}

/// A request body going upstream: bytes already read, then the rest of the client's
/// body (gunzipped on the way when the start was). `Sync` through the mutex (never
/// contended: `poll_frame` has `&mut`), as reqwest wants.
struct Upload(Mutex<UploadState>);

struct UploadState {
    prefix: Option<Bytes>,
    rest: Incoming,
    gunzip: Option<GzDecoder<Vec<u8>>>,
    done: bool,
    bytes_in: Arc<AtomicU64>,
}

impl Upload {
    fn new(
        prefix: Bytes,
        rest: Incoming,
        gunzip: Option<GzDecoder<Vec<u8>>>,
        bytes_in: Arc<AtomicU64>,
    ) -> Self {
        Self(Mutex::new(UploadState {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
            gunzip,
            done: false,
            bytes_in,
        }))
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let st = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(prefix) = st.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        loop {
            if st.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut st.rest).poll_frame(cx)) {
                None => {
                    st.done = true;
                    if let Some(d) = &mut st.gunzip {
                        d.try_finish()?;
                        let out = std::mem::take(d.get_mut());
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out.into()))));
                        }
                    }
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    st.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                    match &mut st.gunzip {
                        None => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Some(d) => {
                            d.write_all(&data)?;
                            d.flush()?;
                            let out = std::mem::take(d.get_mut());
                            if !out.is_empty() {
                                return Poll::Ready(Some(Ok(Frame::data(out.into()))));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The upstream's answer streamed back, counted; logs the request when done.
struct Counted {
    inner: reqwest::Body,
    bytes: u64,
    failed: bool,
    status: u16,
    log: Option<RequestLog>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.failed = true;
                Poll::Ready(Some(Err(e.into())))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            let result = if self.failed {
                "upstream stream failed"
            } else {
                "forwarded"
            };
            log.finish(self.status, result, self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_are_never_passed_upstream() {
        for name in [
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
        ] {
            assert!(!REQUEST_HEADERS.contains(&name), "{name}");
        }
    }

    #[test]
    fn routes_the_three_smart_http_requests_only() {
        let r = route(
            &Method::GET,
            "/g/abc/acme/app.git/info/refs",
            Some("service=git-upload-pack"),
        );
        assert_eq!(
            r,
            Some(Route {
                capability: "abc",
                repo: "acme/app.git",
                endpoint: Endpoint::InfoRefs(Service::UploadPack)
            })
        );
        let r = route(&Method::POST, "/g/abc/app.git/git-receive-pack", None);
        assert_eq!(
            r.map(|r| r.endpoint),
            Some(Endpoint::Rpc(Service::ReceivePack))
        );
        assert_eq!(route(&Method::GET, "/g/abc/app.git/info/refs", None), None);
        assert_eq!(
            route(&Method::GET, "/g/abc/app.git/git-upload-pack", None),
            None
        );
        assert_eq!(route(&Method::POST, "/g/abc/app.git/HEAD", None), None);
        assert_eq!(
            route(
                &Method::GET,
                "/x/abc/app.git/info/refs",
                Some("service=git-upload-pack")
            ),
            None
        );
    }
}
