//! The JSON-over-HTTPS client the cloud provisioners share: bearer token, bounded
//! retries on 429 honouring `Retry-After` and the `RateLimit-Reset` headers, and
//! errors mapped to [`CloudError`] with the token scrubbed from every message.
//!
//! It is not a general HTTP client: it retries only what is safe to retry (a 429
//! means the server did not act), and leaves idempotency of creates to the callers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;

use super::config::CloudConfig;
use super::error::{CloudError, Result};
use super::spec::Cloud;

#[derive(Debug)]
pub(crate) struct ApiClient {
    pub(crate) config: CloudConfig,
    http: reqwest::Client,
    /// Set when the API said the rate-limit budget is spent (`RateLimit-Remaining: 0`):
    /// the next request waits until then instead of provoking a 429.
    not_before: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl ApiClient {
    pub(crate) fn new(config: CloudConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("headstart/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CloudError::Transport {
                cloud: config.cloud,
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            config,
            http,
            not_before: std::sync::Mutex::new(None),
        })
    }

    pub(crate) fn cloud(&self) -> Cloud {
        self.config.cloud
    }

    /// Removes the token from any text before it goes into an error or a log line.
    pub(crate) fn redact(&self, text: &str) -> String {
        let token = self.config.token.expose();
        let mut out = if token.len() >= 4 {
            text.replace(token, "[redacted]")
        } else {
            text.to_owned()
        };
        if out.len() > 600 {
            let mut cut = 600;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
        }
        out
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.config.base_url, path)
    }

    pub(crate) async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.send(Method::GET, path, query, None).await
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value> {
        self.send(Method::POST, path, query, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<Value> {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// Sends one request, retrying (bounded) while the API answers 429. The answer is
    /// the JSON body (`Null` when empty).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let cloud = self.cloud();
        let url = self.url(path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let wait_until = *self.not_before.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = wait_until.filter(|at| *at > tokio::time::Instant::now()) {
                tracing::info!(
                    cloud = cloud.as_str(),
                    path,
                    wait_ms = at
                        .saturating_duration_since(tokio::time::Instant::now())
                        .as_millis() as u64,
                    "rate-limit budget spent; waiting for its reset"
                );
                tokio::time::sleep_until(at).await;
            }
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.config.token.expose())
                .header(reqwest::header::ACCEPT, "application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            tracing::debug!(cloud = cloud.as_str(), %method, path, attempt, "cloud API request");
            let resp = req.send().await.map_err(|e| CloudError::Transport {
                cloud,
                message: self.redact(&format!("{method} {path}: {}", error_chain(&e))),
            })?;
            let status = resp.status();
            let headers = resp.headers().clone();
            self.note_budget(&headers, attempt);
            let text = resp.text().await.map_err(|e| CloudError::Transport {
                cloud,
                message: self.redact(&format!(
                    "{method} {path}: reading the answer: {}",
                    error_chain(&e)
                )),
            })?;
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = retry_wait(&headers, attempt).min(self.config.max_retry_wait);
                if attempt >= self.config.max_attempts {
                    return Err(CloudError::RateLimited {
                        cloud,
                        attempts: attempt,
                        last_wait: wait,
                    });
                }
                tracing::info!(
                    cloud = cloud.as_str(),
                    path,
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "rate limited (429); waiting as the API asked"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let body: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(_) if !status.is_success() => Value::String(text.clone()),
                    Err(e) => {
                        return Err(CloudError::Transport {
                            cloud,
                            message: format!("{method} {path}: the answer is not JSON ({e})"),
                        });
                    }
                }
            };
            if status.is_success() {
                return Ok(body);
            }
            return Err(self.error_for(status, &body));
        }
    }

    /// Remembers to pause before the next request when the budget is spent.
    fn note_budget(&self, headers: &HeaderMap, attempt: u32) {
        let remaining = headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut slot = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        *slot = match remaining {
            Some(0) if headers.contains_key("ratelimit-reset") => Some(
                tokio::time::Instant::now()
                    + retry_wait(headers, attempt).min(self.config.max_retry_wait),
            ),
            _ => None,
        };
    }

    fn error_for(&self, status: StatusCode, body: &Value) -> CloudError {
        let cloud = self.cloud();
        let (code, message) = error_fields(body);
        let message = self.redact(&message);
        let code = self.redact(&code);
        match status.as_u16() {
            401 => CloudError::Unauthorized {
                cloud,
                status: 401,
                message,
                var: self.config.token_var,
            },
            403 if !(code.contains("limit")
                || code.contains("quota")
                || message.contains("quota")) =>
            {
                CloudError::Unauthorized {
                    cloud,
                    status: 403,
                    message,
                    var: self.config.token_var,
                }
            }
            s @ 500..=599 => CloudError::Server {
                cloud,
                status: s,
                message,
            },
            s => CloudError::Rejected {
                cloud,
                status: s,
                code,
                message,
            },
        }
    }
}

/// `(code, message)` from the error shapes of DigitalOcean (`{id, message}`), Hetzner
/// (`{error: {code, message}}`) and Google (`{error: {code, status, message, errors}}`).
fn error_fields(body: &Value) -> (String, String) {
    let s = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if let Some(err) = body.get("error").filter(|e| e.is_object()) {
        let code = err
            .get("errors")
            .and_then(|e| e.get(0))
            .and_then(|e| e.get("reason"))
            .and_then(s)
            .or_else(|| err.get("status").and_then(s))
            .or_else(|| err.get("code").and_then(s))
            .unwrap_or_default();
        let message = err.get("message").and_then(s).unwrap_or_default();
        return (code, message);
    }
    if let Some(id) = body.get("id").and_then(s) {
        return (id, body.get("message").and_then(s).unwrap_or_default());
    }
    match body {
        Value::String(text) => (String::new(), text.clone()),
        Value::Null => (String::new(), "(empty answer)".into()),
        other => (String::new(), other.to_string()),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// How long to wait after a 429: `Retry-After` (seconds or an HTTP date), else the
/// `RateLimit-Reset` epoch (DigitalOcean, Hetzner), else exponential backoff.
pub(crate) fn retry_wait(headers: &HeaderMap, attempt: u32) -> Duration {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(v) = header("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Duration::from_secs_f64(secs.min(86_400.0));
            }
        }
        if let Ok(at) =
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822)
        {
            let now = time::OffsetDateTime::now_utc();
            return Duration::try_from(at - now).unwrap_or(Duration::ZERO);
        }
    }
    if let Some(reset) = header("ratelimit-reset").and_then(|v| v.parse::<u64>().ok()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Either an epoch (DigitalOcean, Hetzner) or, per the IETF draft, seconds.
        let secs = if reset > 1_000_000_000 {
            reset.saturating_sub(now)
        } else {
            reset
        };
        return Duration::from_secs(secs.max(1));
    }
    Duration::from_millis(500u64.saturating_mul(1u64 << attempt.min(6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_wait_reads_the_headers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_wait(&h, 1), Duration::from_secs(7));
        let mut h = HeaderMap::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        h.insert(
            "ratelimit-reset",
            HeaderValue::from_str(&(now + 5).to_string()).unwrap(),
        );
        let w = retry_wait(&h, 1);
        assert!(
            w >= Duration::from_secs(4) && w <= Duration::from_secs(5),
            "{w:?}"
        );
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_wait(&h, 1),
            Duration::ZERO,
            "a date in the past means now"
        );
        assert_eq!(retry_wait(&HeaderMap::new(), 1), Duration::from_secs(1));
        assert_eq!(retry_wait(&HeaderMap::new(), 3), Duration::from_secs(4));
    }

    #[test]
    fn error_fields_of_each_cloud() {
        let v: Value = serde_json::json!({"id": "unprocessable_entity", "message": "quota"});
        assert_eq!(
            error_fields(&v),
            ("unprocessable_entity".into(), "quota".into())
        );
        let v: Value =
            serde_json::json!({"error": {"code": "uniqueness_error", "message": "name taken"}});
        assert_eq!(
            error_fields(&v),
            ("uniqueness_error".into(), "name taken".into())
        );
        let v: Value = serde_json::json!({"error": {"code": 409, "message": "exists",
            "errors": [{"reason": "alreadyExists"}], "status": "ALREADY_EXISTS"}});
        assert_eq!(error_fields(&v), ("alreadyExists".into(), "exists".into()));
    }
}
