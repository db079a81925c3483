//! Against a fake PostHog (wiremock) that follows the documented shapes of
//! `POST /flags/?v=2`, `GET /flags/definitions` and `POST /batch/`.

use std::time::{Duration, Instant};

use feature_flags::{
    BetaRequest, CachePolicy, DecisionSource, FastPaths, FeatureFlags, FlagValue, Purpose,
    StartCompleted, ValueOrigin, vars,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::config;

fn flags_answer(variant: &str) -> Value {
    json!({
        "flags": {
            "fast_provision": {
                "key": "fast_provision", "enabled": true, "variant": variant,
                "reason": {"code": "condition_match", "condition_index": 0, "description": "Matched condition set 1"},
                "metadata": {"id": 12, "version": 4, "payload": null}
            }
        },
        "errorsWhileComputingFlags": false,
        "requestId": "0f9c1f4e-request"
    })
}

fn flags_mock(answer: ResponseTemplate) -> Mock {
    Mock::given(method("POST"))
        .and(path("/flags/"))
        .and(query_param("v", "2"))
        .respond_with(answer)
}

async fn batch_ok(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/batch/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": 1})))
        .mount(server)
        .await;
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == p)
        .collect()
}

/// Every event sent to `/batch/`, checking the documented batch shape on the way.
async fn batched_events(server: &MockServer) -> Vec<Value> {
    let mut events = Vec::new();
    for r in requests_to(server, "/batch/").await {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["api_key"], "phc_test_key");
        for e in body["batch"].as_array().unwrap() {
            assert!(
                e["uuid"].is_string() && e["timestamp"].is_string() && e["distinct_id"].is_string()
            );
            events.push(e.clone());
        }
    }
    events
}

fn exposures(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"] == "$feature_flag_called")
        .collect()
}

#[tokio::test]
async fn the_experiment_decides_and_one_exposure_is_sent_on_exit() {
    let server = MockServer::start().await;
    flags_mock(ResponseTemplate::new(200).set_body_json(flags_answer("test")))
        .mount(&server)
        .await;
    batch_ok(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(dir.path(), &server.uri(), &[]));

    let d = flags
        .fast_paths(&BetaRequest::default(), Purpose::Provision)
        .await
        .unwrap();
    assert_eq!(d.paths, FastPaths::all());
    assert_eq!(d.beta_env(), "images,docker,sandbox");
    assert_eq!(
        d.source,
        DecisionSource::Experiment {
            value: FlagValue::Variant("test".into()),
            origin: ValueOrigin::Remote
        }
    );
    // The same decision again in this process: no second exposure.
    let again = flags
        .fast_paths(&BetaRequest::default(), Purpose::Provision)
        .await
        .unwrap();
    assert_eq!(again.paths, FastPaths::all());
    // Nothing is sent before the flush: capture never waits on the network.
    assert!(requests_to(&server, "/batch/").await.is_empty());
    flags.shutdown(Duration::from_secs(5)).await;

    let flag_req: Value =
        serde_json::from_slice(&requests_to(&server, "/flags/").await[0].body).unwrap();
    let id = flags.distinct_id().unwrap();
    assert_eq!(flag_req["api_key"], "phc_test_key");
    assert_eq!(flag_req["distinct_id"], id.as_str());
    assert_eq!(flag_req["flag_keys_to_evaluate"], json!(["fast_provision"]));

    let events = batched_events(&server).await;
    let exp = exposures(&events);
    assert_eq!(exp.len(), 1, "{events:#?}");
    let p = &exp[0]["properties"];
    assert_eq!(exp[0]["distinct_id"], id.as_str());
    assert_eq!(p["$feature_flag"], "fast_provision");
    assert_eq!(p["$feature_flag_response"], "test");
    assert_eq!(p["$feature/fast_provision"], "test");
    assert_eq!(p["locally_evaluated"], false);
    assert_eq!(p["$feature_flag_request_id"], "0f9c1f4e-request");
    assert_eq!(p["$feature_flag_reason"], "Matched condition set 1");
    assert!(p.get("$feature_flag_error").is_none());
}

#[tokio::test]
async fn exposures_are_deduplicated_across_runs_per_value() {
    let server = MockServer::start().await;
    flags_mock(ResponseTemplate::new(200).set_body_json(flags_answer("control")))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    flags_mock(ResponseTemplate::new(200).set_body_json(flags_answer("test")))
        .mount(&server)
        .await;
    batch_ok(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let no_cache = CachePolicy {
        ttl: Duration::ZERO,
        stale_while_revalidate: Duration::ZERO,
        ..CachePolicy::default()
    };
    for _ in 0..3 {
        let flags =
            FeatureFlags::new(config(dir.path(), &server.uri(), &[]).with_cache_policy(no_cache));
        let _ = flags
            .fast_paths(&BetaRequest::default(), Purpose::Provision)
            .await
            .unwrap();
        flags.shutdown(Duration::from_secs(5)).await;
    }
    let events = batched_events(&server).await;
    let values: Vec<&Value> = exposures(&events)
        .iter()
        .map(|e| &e["properties"]["$feature_flag_response"])
        .collect();
    // control (run 1), not again (run 2), test (run 3): control is exposed too.
    assert_eq!(values, vec![&json!("control"), &json!("test")]);
}

#[tokio::test]
async fn inspecting_never_sends_an_exposure() {
    let server = MockServer::start().await;
    flags_mock(ResponseTemplate::new(200).set_body_json(flags_answer("test")))
        .mount(&server)
        .await;
    batch_ok(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(dir.path(), &server.uri(), &[]));
    let d = flags
        .fast_paths(&BetaRequest::default(), Purpose::Inspect)
        .await
        .unwrap();
    assert_eq!(d.paths, FastPaths::all());
    // An explicit opt-in on a provisioning command: the experiment decided nothing.
    let d = flags
        .fast_paths(
            &BetaRequest {
                beta: vec!["docker".into()],
                fast: false,
            },
            Purpose::Provision,
        )
        .await
        .unwrap();
    assert!(matches!(d.source, DecisionSource::Explicit { .. }));
    flags.shutdown(Duration::from_secs(5)).await;
    assert!(exposures(&batched_events(&server).await).is_empty());
}

#[tokio::test]
async fn a_timeout_falls_back_and_the_host_is_remembered() {
    let server = MockServer::start().await;
    flags_mock(
        ResponseTemplate::new(200)
            .set_body_json(flags_answer("test"))
            .set_delay(Duration::from_secs(3)),
    )
    .mount(&server)
    .await;
    batch_ok(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        || config(dir.path(), &server.uri(), &[]).with_request_timeout(Duration::from_millis(300));

    let flags = FeatureFlags::new(cfg());
    let started = Instant::now();
    let d = flags
        .fast_paths(&BetaRequest::default(), Purpose::Provision)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(d.paths, FastPaths::default());
    assert_eq!(
        d.source,
        DecisionSource::Error {
            error: "timeout".into()
        }
    );
    flags.shutdown(Duration::from_secs(2)).await;

    // The next run does not ask the unreachable host again (negative cache) and
    // answers at once: with a 5 s timeout, asking would take the server's 3 s.
    let flags = FeatureFlags::new(cfg().with_request_timeout(Duration::from_secs(5)));
    let started = Instant::now();
    let d = flags
        .fast_paths(&BetaRequest::default(), Purpose::Provision)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(d.source, DecisionSource::Error { .. }));
    flags.shutdown(Duration::from_secs(2)).await;
    assert_eq!(requests_to(&server, "/flags/").await.len(), 1);
    // Events are not sent to a host known to be unreachable.
    assert!(requests_to(&server, "/batch/").await.is_empty());

    // Once the record expires, the host is asked again.
    let expired = CachePolicy {
        unreachable_for: Duration::ZERO,
        ..CachePolicy::default()
    };
    let flags = FeatureFlags::new(cfg().with_cache_policy(expired));
    let _ = flags
        .fast_paths(&BetaRequest::default(), Purpose::Inspect)
        .await
        .unwrap();
    let flags2 = FeatureFlags::new(cfg().with_cache_policy(expired));
    let _ = flags2
        .fast_paths(&BetaRequest::default(), Purpose::Inspect)
        .await
        .unwrap();
    assert_eq!(requests_to(&server, "/flags/").await.len(), 3);
}

#[tokio::test]
async fn a_server_error_is_recorded_in_the_exposure_not_a_fake_control() {
    let server = MockServer::start().await;
    flags_mock(ResponseTemplate::new(500)).mount(&server).await;
    batch_ok(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(dir.path(), &server.uri(), &[]));
    let d = flags
        .fast_paths(&BetaRequest::default(), Purpose::Provision)
        .await
        .unwrap();
    assert_eq!(d.paths, FastPaths::default());
    assert_eq!(
        d.source,
        DecisionSource::Error {
            error: "api_error_500".into()
        }
    );
    assert!(d.experiment_value().is_none());
    flags.shutdown(Duration::from_secs(5)).await;
    let events = batched_events(&server).await;
    let exp = exposures(&events);
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0]["properties"]["$feature_flag_error"], "api_error_500");
    assert_eq!(exp[0]["properties"]["$feature_flag_response"], Value::Null);
}

#[tokio::test]
async fn stale_answers_are_served_while_revalidating() {
    let server = MockServer::start().await;
    flags_mock(ResponseTemplate::new(200).set_body_json(flags_answer("test")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    flags_mock(ResponseTemplate::new(200).set_body_json(flags_answer("control")))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let stale = CachePolicy {
        ttl: Duration::ZERO,
        stale_while_revalidate: Duration::from_secs(3600),
        ..CachePolicy::default()
    };
    let fresh = CachePolicy {
        ttl: Duration::from_secs(3600),
        ..CachePolicy::default()
    };
    let eval = |policy: CachePolicy| {
        let cfg =
            config(dir.path(), &server.uri(), &[(vars::TELEMETRY, "1")]).with_cache_policy(policy);
        async move {
            let flags = FeatureFlags::new(cfg);
            let r = flags.evaluate("fast_provision").await;
            flags.shutdown(Duration::from_secs(5)).await;
            r
        }
    };

    let first = eval(stale).await;
    assert_eq!(first.value, Ok(FlagValue::Variant("test".into())));
    assert_eq!(first.origin, ValueOrigin::Remote);
    // Stale: the cached "test" is served at once; the refresh happens in the background.
    let second = eval(stale).await;
    assert_eq!(second.value, Ok(FlagValue::Variant("test".into())));
    assert_eq!(second.origin, ValueOrigin::Cache { stale: true });
    assert_eq!(requests_to(&server, "/flags/").await.len(), 2);
    // Fresh: the refreshed answer, without a request.
    let third = eval(fresh).await;
    assert_eq!(third.value, Ok(FlagValue::Variant("control".into())));
    assert_eq!(third.origin, ValueOrigin::Cache { stale: false });
    assert_eq!(requests_to(&server, "/flags/").await.len(), 2);
}

#[tokio::test]
async fn the_legacy_decide_shape_is_understood() {
    let server = MockServer::start().await;
    flags_mock(ResponseTemplate::new(200).set_body_json(json!({
        "featureFlags": {"fast_provision": "test"},
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": false
    })))
    .mount(&server)
    .await;
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(dir.path(), &server.uri(), &[]));
    let d = flags
        .fast_paths(&BetaRequest::default(), Purpose::Inspect)
        .await
        .unwrap();
    assert_eq!(d.paths, FastPaths::all());
    let r = flags.evaluate("not_in_answer").await;
    assert_eq!(
        r.value.map_err(|e| e.code().to_owned()),
        Err("flag_missing".into())
    );
    flags.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn the_goal_event_is_batched_with_the_exposure_and_flushed_on_exit() {
    let server = MockServer::start().await;
    flags_mock(ResponseTemplate::new(200).set_body_json(flags_answer("test")))
        .mount(&server)
        .await;
    batch_ok(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(dir.path(), &server.uri(), &[]));
    let d = flags
        .spawn_fast_paths(BetaRequest::default(), Purpose::Provision)
        .await
        .unwrap()
        .unwrap();
    flags.start_completed(
        &StartCompleted {
            path: "warm".into(),
            total: Duration::from_millis(1234),
            phases: vec![
                ("provision".into(), Duration::from_millis(200)),
                ("git_sync".into(), Duration::from_millis(60)),
            ],
            fast_paths: d.paths,
            provider: "docker".into(),
            error: None,
        },
        Some(&d),
    );
    assert!(requests_to(&server, "/batch/").await.is_empty());
    flags.shutdown(Duration::from_secs(5)).await;
    let batches = requests_to(&server, "/batch/").await;
    assert_eq!(batches.len(), 1, "both events in one batch");
    let events = batched_events(&server).await;
    let goal = events
        .iter()
        .find(|e| e["event"] == "headstart_start_completed")
        .unwrap();
    let p = &goal["properties"];
    assert_eq!(p["path"], "warm");
    assert_eq!(p["total_ms"], 1234);
    assert_eq!(p["phases_ms"], json!({"provision": 200, "git_sync": 60}));
    assert_eq!(p["fast_paths"], json!(["images", "docker", "sandbox"]));
    assert_eq!(p["provider"], "docker");
    assert_eq!(p["success"], true);
    assert_eq!(p["$feature/fast_provision"], "test");
}

#[tokio::test]
async fn the_exit_flush_waits_a_bounded_time() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/batch/"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(dir.path(), &server.uri(), &[]));
    flags.start_completed(&StartCompleted::default(), None);
    let started = Instant::now();
    flags.shutdown(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn definitions_are_polled_with_an_etag_and_evaluated_locally() {
    let server = MockServer::start().await;
    let definitions = json!({"flags": [{
        "key": "fast_provision", "active": true, "id": 12, "version": 4,
        "filters": {
            "groups": [{"properties": [], "rollout_percentage": 100, "variant": "test"}],
            "multivariate": {"variants": [
                {"key": "control", "rollout_percentage": 50},
                {"key": "test", "rollout_percentage": 50}
            ]}
        }
    }], "group_type_mapping": {}, "cohorts": {}});
    Mock::given(method("GET"))
        .and(path("/flags/definitions"))
        .and(header("if-none-match", "\"v1\""))
        .respond_with(ResponseTemplate::new(304))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/flags/definitions"))
        .and(query_param("token", "phc_test_key"))
        .and(header("authorization", "Bearer phs_secret"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(definitions)
                .insert_header("ETag", "\"v1\""),
        )
        .mount(&server)
        .await;
    batch_ok(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(
        dir.path(),
        &server.uri(),
        &[(vars::SECRET_KEY, "phs_secret")],
    ));
    assert!(
        flags.poll_definitions().await.unwrap(),
        "first poll loads definitions"
    );
    assert!(
        !flags.poll_definitions().await.unwrap(),
        "second poll is 304 Not Modified"
    );
    let d = flags
        .fast_paths(&BetaRequest::default(), Purpose::Provision)
        .await
        .unwrap();
    assert_eq!(
        d.source,
        DecisionSource::Experiment {
            value: FlagValue::Variant("test".into()),
            origin: ValueOrigin::Local
        }
    );
    flags.shutdown(Duration::from_secs(5)).await;
    assert!(
        requests_to(&server, "/flags/").await.is_empty(),
        "no remote evaluation needed"
    );
    let events = batched_events(&server).await;
    let exp = exposures(&events);
    assert_eq!(exp[0]["properties"]["locally_evaluated"], true);
    assert_eq!(exp[0]["properties"]["$feature_flag_id"], 12);

    // Definitions persist for the next process (still local, still no /flags).
    let flags = FeatureFlags::new(config(
        dir.path(),
        &server.uri(),
        &[(vars::SECRET_KEY, "phs_secret")],
    ));
    let r = flags.evaluate("fast_provision").await;
    assert_eq!(r.origin, ValueOrigin::Local);
    flags.shutdown(Duration::from_secs(2)).await;
    // Without the secret key, polling is refused with a clear error and no request.
    let flags = FeatureFlags::new(config(dir.path(), &server.uri(), &[]));
    assert!(
        flags
            .poll_definitions()
            .await
            .unwrap_err()
            .to_string()
            .contains("HEADSTART_POSTHOG_SECRET_KEY")
    );
    let before = server.received_requests().await.unwrap().len();
    flags.shutdown(Duration::from_secs(2)).await;
    assert_eq!(server.received_requests().await.unwrap().len(), before);
}

#[tokio::test]
async fn inconclusive_local_evaluation_falls_back_to_the_server() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/flags/definitions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"flags": [{
            "key": "fast_provision", "active": true,
            "filters": {"groups": [{"properties": [
                {"key": "plan", "operator": "exact", "value": "pro", "type": "person"}
            ], "rollout_percentage": 100}]}
        }]})))
        .mount(&server)
        .await;
    flags_mock(ResponseTemplate::new(200).set_body_json(flags_answer("control")))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(
        dir.path(),
        &server.uri(),
        &[(vars::SECRET_KEY, "phs_secret")],
    ));
    flags.poll_definitions().await.unwrap();
    let r = flags.evaluate("fast_provision").await;
    assert_eq!(r.value, Ok(FlagValue::Variant("control".into())));
    assert_eq!(r.origin, ValueOrigin::Remote);
    flags.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn the_cache_keeps_each_flag_and_follows_person_properties() {
    let server = MockServer::start().await;
    let answer = |key: &str, variant: &str| json!({"flags": {key: {"key": key, "enabled": true, "variant": variant}}, "requestId": "r"});
    Mock::given(method("POST"))
        .and(path("/flags/"))
        .and(wiremock::matchers::body_partial_json(
            json!({"flag_keys_to_evaluate": ["a"]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("a", "x")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/flags/"))
        .and(wiremock::matchers::body_partial_json(
            json!({"flag_keys_to_evaluate": ["b"]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("b", "y")))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let props = |os: &str| {
        let mut p = feature_flags::Properties::new();
        p.insert("os".into(), json!(os));
        p
    };
    let client = |os: &str| {
        FeatureFlags::new(config(dir.path(), &server.uri(), &[]).with_person_properties(props(os)))
    };
    let flags = client("linux");
    assert_eq!(flags.evaluate("a").await.origin, ValueOrigin::Remote);
    assert_eq!(flags.evaluate("b").await.origin, ValueOrigin::Remote);
    let a = flags.evaluate("a").await;
    assert_eq!(
        (a.value, a.origin),
        (
            Ok(FlagValue::Variant("x".into())),
            ValueOrigin::Cache { stale: false }
        )
    );
    assert_eq!(
        flags.evaluate("b").await.origin,
        ValueOrigin::Cache { stale: false }
    );
    flags.shutdown(Duration::from_secs(2)).await;
    assert_eq!(requests_to(&server, "/flags/").await.len(), 2);
    // Different person properties: the cached answers do not apply.
    let flags = client("macos");
    assert_eq!(flags.evaluate("a").await.origin, ValueOrigin::Remote);
    let body: Value =
        serde_json::from_slice(&requests_to(&server, "/flags/").await[2].body).unwrap();
    assert_eq!(body["person_properties"], json!({"os": "macos"}));
    flags.shutdown(Duration::from_secs(2)).await;
    // ... and they did not evict the first scope: back on linux, no request.
    let flags = client("linux");
    assert_eq!(
        flags.evaluate("b").await.origin,
        ValueOrigin::Cache { stale: false }
    );
    flags.shutdown(Duration::from_secs(2)).await;
    assert_eq!(requests_to(&server, "/flags/").await.len(), 3);
}

#[tokio::test]
async fn the_default_timeout_is_one_and_a_half_seconds() {
    let server = MockServer::start().await;
    flags_mock(
        ResponseTemplate::new(200)
            .set_body_json(flags_answer("test"))
            .set_delay(Duration::from_secs(6)),
    )
    .mount(&server)
    .await;
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(dir.path(), &server.uri(), &[]));
    let started = Instant::now();
    let r = flags.evaluate("fast_provision").await;
    let took = started.elapsed();
    assert_eq!(
        r.value.map_err(|e| e.code().to_owned()),
        Err("timeout".into())
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(5000),
        "{took:?}"
    );
    flags.shutdown(Duration::from_secs(1)).await;
}
