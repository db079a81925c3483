//! HTTP calls to PostHog: `POST /flags/?v=2` (legacy `/decide/?v=3` answers are
//! normalised too), `GET /flags/definitions` with an ETag, and `POST /batch/`.
//!
//! What it is: request/response shapes and error classification into PostHog's
//! `$feature_flag_error` vocabulary. What it is not: caching or policy (see `client`).
//! URLs are never logged and reqwest errors are stripped of their URL.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::eval::{Definitions, FlagValue, Properties};

/// Why a request gave no usable answer, in PostHog's `$feature_flag_error` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteError {
    Timeout,
    Connection,
    Api(u16),
    QuotaLimited,
    Malformed,
}

impl RemoteError {
    /// The `$feature_flag_error` value.
    pub(crate) fn code(&self) -> String {
        match self {
            RemoteError::Timeout => "timeout".into(),
            RemoteError::Connection => "connection_error".into(),
            RemoteError::Api(s) => format!("api_error_{s}"),
            RemoteError::QuotaLimited => "quota_limited".into(),
            RemoteError::Malformed => "unknown_error".into(),
        }
    }

    /// Whether the host itself is unreachable (worth remembering).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, RemoteError::Timeout | RemoteError::Connection)
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            RemoteError::Timeout
        } else if e.is_connect() || e.is_request() {
            RemoteError::Connection
        } else if let Some(s) = e.status() {
            RemoteError::Api(s.as_u16())
        } else if e.is_decode() {
            RemoteError::Malformed
        } else {
            RemoteError::Connection
        }
    }
}

/// One flag in a `/flags` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RemoteFlag {
    /// `None` when the server marked the flag failed.
    pub(crate) value: Option<FlagValue>,
    pub(crate) payload: Option<Value>,
    pub(crate) reason: Option<String>,
    pub(crate) id: Option<i64>,
    pub(crate) version: Option<i64>,
}

/// A normalised `/flags` answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RemoteFlags {
    pub(crate) flags: HashMap<String, RemoteFlag>,
    pub(crate) request_id: Option<String>,
    pub(crate) errors_while_computing: bool,
    pub(crate) quota_limited: bool,
}

/// Normalises a v2 `/flags` answer (`{"flags": {key: {enabled, variant, ...}}}`) or a
/// legacy `/decide` v3 answer (`{"featureFlags": {...}, "featureFlagPayloads": {...}}`).
pub(crate) fn parse_flags_response(body: &Value) -> Option<RemoteFlags> {
    let obj = body.as_object()?;
    let mut out = RemoteFlags {
        request_id: obj
            .get("requestId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        errors_while_computing: obj
            .get("errorsWhileComputingFlags")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        quota_limited: obj
            .get("quotaLimited")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("feature_flags"))),
        ..RemoteFlags::default()
    };
    if let Some(flags) = obj.get("flags").and_then(Value::as_object) {
        for (key, rec) in flags {
            let failed = rec.get("failed").and_then(Value::as_bool) == Some(true);
            let enabled = rec.get("enabled").and_then(Value::as_bool);
            let variant = rec
                .get("variant")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty());
            let value = match (failed, enabled, variant) {
                (true, _, _) | (_, None, _) => None,
                (false, Some(true), Some(v)) => Some(FlagValue::Variant(v.to_owned())),
                (false, Some(e), _) => Some(FlagValue::Bool(e)),
            };
            let metadata = rec.get("metadata");
            out.flags.insert(
                key.clone(),
                RemoteFlag {
                    payload: if value.is_some() {
                        metadata
                            .and_then(|m| m.get("payload"))
                            .filter(|p| !p.is_null())
                            .cloned()
                    } else {
                        None
                    },
                    value,
                    reason: rec
                        .get("reason")
                        .and_then(|r| r.get("description"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    id: metadata.and_then(|m| m.get("id")).and_then(Value::as_i64),
                    version: metadata
                        .and_then(|m| m.get("version"))
                        .and_then(Value::as_i64),
                },
            );
        }
    } else if let Some(flags) = obj.get("featureFlags").and_then(Value::as_object) {
        let payloads = obj.get("featureFlagPayloads").and_then(Value::as_object);
        for (key, v) in flags {
            let value = match v {
                Value::Bool(b) => Some(FlagValue::Bool(*b)),
                Value::String(s) if !s.is_empty() => Some(FlagValue::Variant(s.clone())),
                _ => None,
            };
            out.flags.insert(
                key.clone(),
                RemoteFlag {
                    payload: payloads
                        .and_then(|p| p.get(key))
                        .filter(|p| !p.is_null())
                        .cloned(),
                    value,
                    reason: None,
                    id: None,
                    version: None,
                },
            );
        }
    } else {
        return None;
    }
    Some(out)
}

/// Result of a definitions poll.
#[derive(Debug)]
pub(crate) enum DefinitionsFetch {
    NotModified,
    New {
        definitions: Definitions,
        etag: Option<String>,
    },
}

/// A PostHog HTTP client for one host and project.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    http: reqwest::Client,
    host: String,
    project_key: String,
}

impl Remote {
    pub(crate) fn new(host: &str, project_key: &str) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "headstart-feature-flags/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_default();
        Remote {
            http,
            host: host.to_owned(),
            project_key: project_key.to_owned(),
        }
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// `POST <host><path>` with a JSON body (errors without the URL).
    async fn post_json(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<reqwest::Response, RemoteError> {
        self.http
            .post(format!("{}{path}", self.host))
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| RemoteError::from_reqwest(&e.without_url()))
    }

    /// `POST /flags/?v=2` for `distinct_id`, only `flag_keys`.
    pub(crate) async fn flags(
        &self,
        distinct_id: &str,
        person_properties: &Properties,
        flag_keys: &[&str],
        timeout: Duration,
    ) -> Result<RemoteFlags, RemoteError> {
        let body = json!({
            "api_key": self.project_key,
            "distinct_id": distinct_id,
            "person_properties": person_properties,
            "flag_keys_to_evaluate": flag_keys,
            "geoip_disable": true,
        });
        let resp = self.post_json("/flags/?v=2", &body, timeout).await?;
        let status = resp.status();
        if status == StatusCode::PAYMENT_REQUIRED || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RemoteError::QuotaLimited);
        }
        if !status.is_success() {
            return Err(RemoteError::Api(status.as_u16()));
        }
        let value: Value = resp
            .json()
            .await
            .map_err(|e| RemoteError::from_reqwest(&e.without_url()))?;
        let parsed = parse_flags_response(&value).ok_or(RemoteError::Malformed)?;
        if parsed.quota_limited {
            return Err(RemoteError::QuotaLimited);
        }
        Ok(parsed)
    }

    /// `GET /flags/definitions` with the secret key; `If-None-Match` when `etag` is known.
    /// The project key (`phc_`, public by design) is a query parameter as PostHog
    /// documents it; the secret key travels only in the `Authorization` header, and
    /// URLs are never logged (errors are stripped of them).
    pub(crate) async fn definitions(
        &self,
        secret_key: &SecretString,
        etag: Option<&str>,
        timeout: Duration,
    ) -> Result<DefinitionsFetch, RemoteError> {
        let mut req = self
            .http
            .get(format!("{}/flags/definitions", self.host))
            .query(&[("token", self.project_key.as_str()), ("send_cohorts", "")])
            .bearer_auth(secret_key.expose_secret())
            .timeout(timeout);
        if let Some(etag) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| RemoteError::from_reqwest(&e.without_url()))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(DefinitionsFetch::NotModified);
        }
        if status == StatusCode::PAYMENT_REQUIRED || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RemoteError::QuotaLimited);
        }
        if !status.is_success() {
            return Err(RemoteError::Api(status.as_u16()));
        }
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp
            .text()
            .await
            .map_err(|e| RemoteError::from_reqwest(&e.without_url()))?;
        let definitions = Definitions::from_json(&text).map_err(|_| RemoteError::Malformed)?;
        Ok(DefinitionsFetch::New { definitions, etag })
    }

    /// `POST /batch/` with PostHog's documented shape.
    pub(crate) async fn batch(
        &self,
        events: &[Value],
        timeout: Duration,
    ) -> Result<(), RemoteError> {
        let body = json!({
            "api_key": self.project_key,
            "batch": events,
            "sent_at": crate::telemetry::rfc3339_now(),
        });
        let resp = self.post_json("/batch/", &body, timeout).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(RemoteError::Api(resp.status().as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_legacy_shapes_normalise_alike() {
        let v2 = json!({
            "flags": {
                "fast_provision": {
                    "key": "fast_provision", "enabled": true, "variant": "test",
                    "reason": {"code": "condition_match", "condition_index": 0, "description": "Matched condition set 1"},
                    "metadata": {"id": 7, "version": 3, "payload": "{\"a\":1}"}
                },
                "off": {"key": "off", "enabled": false, "variant": null, "metadata": {"id": 8}},
                "broken": {"key": "broken", "enabled": false, "failed": true}
            },
            "errorsWhileComputingFlags": false,
            "requestId": "req-1"
        });
        let p = parse_flags_response(&v2).unwrap();
        assert_eq!(p.request_id.as_deref(), Some("req-1"));
        let fp = &p.flags["fast_provision"];
        assert_eq!(fp.value, Some(FlagValue::Variant("test".into())));
        assert_eq!(fp.reason.as_deref(), Some("Matched condition set 1"));
        assert_eq!((fp.id, fp.version), (Some(7), Some(3)));
        assert_eq!(fp.payload, Some(json!("{\"a\":1}")));
        assert_eq!(p.flags["off"].value, Some(FlagValue::Bool(false)));
        assert_eq!(p.flags["broken"].value, None);

        let legacy = json!({
            "featureFlags": {"fast_provision": "test", "off": false},
            "featureFlagPayloads": {"fast_provision": "{\"a\":1}"},
            "errorsWhileComputingFlags": true
        });
        let l = parse_flags_response(&legacy).unwrap();
        assert_eq!(l.flags["fast_provision"].value, fp.value);
        assert_eq!(l.flags["fast_provision"].payload, fp.payload);
        assert_eq!(l.flags["off"].value, Some(FlagValue::Bool(false)));
        assert!(l.errors_while_computing);
        assert!(parse_flags_response(&json!({"unexpected": 1})).is_none());
    }

    #[test]
    fn error_codes_follow_posthog() {
        assert_eq!(RemoteError::Timeout.code(), "timeout");
        assert_eq!(RemoteError::Connection.code(), "connection_error");
        assert_eq!(RemoteError::Api(500).code(), "api_error_500");
        assert!(RemoteError::Timeout.is_unreachable());
        assert!(!RemoteError::Api(500).is_unreachable());
    }
}
