//! The precedence of the `fast_provision` decision. A fake PostHog that must receive
//! nothing is mounted wherever no request is allowed, and asserts it.

use feature_flags::{
    BetaRequest, DecisionSource, DisabledReason, FastPaths, FeatureFlags, FlagValue, Purpose,
    TelemetryOff, vars,
};
use std::time::Duration;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::config;

async fn silent_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("no request at all")
        .mount(&server)
        .await;
    server
}

fn beta(items: &[&str], fast: bool) -> BetaRequest {
    BetaRequest {
        beta: items.iter().map(|s| s.to_string()).collect(),
        fast,
    }
}

async fn decide(
    server: &MockServer,
    extra: &[(&str, &str)],
    request: BetaRequest,
) -> (
    Result<feature_flags::Decision, feature_flags::Error>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let flags = FeatureFlags::new(config(dir.path(), &server.uri(), extra));
    let d = flags.fast_paths(&request, Purpose::Provision).await;
    flags.shutdown(Duration::from_secs(2)).await;
    (d, dir)
}

#[tokio::test]
async fn explicit_choices_win_and_skip_the_experiment() {
    let server = silent_server().await;
    let (d, _dir) = decide(&server, &[], beta(&["images,docker", "sandbox"], false)).await;
    let d = d.unwrap();
    assert_eq!(d.paths, FastPaths::all());
    assert!(matches!(d.source, DecisionSource::Explicit { .. }));

    let (d, _dir) = decide(&server, &[(vars::BETA, "docker")], beta(&["images"], false)).await;
    let d = d.unwrap();
    // Union of --beta and HEADSTART_BETA; the environment is respected, not overwritten.
    assert_eq!(
        d.paths,
        FastPaths {
            images: true,
            docker: true,
            sandbox: false
        }
    );
    assert_eq!(d.beta_env(), "images,docker");
    assert_eq!(
        d.source,
        DecisionSource::Explicit {
            cli: FastPaths {
                images: true,
                ..FastPaths::default()
            },
            env: FastPaths {
                docker: true,
                ..FastPaths::default()
            }
        }
    );

    let (d, _dir) = decide(&server, &[(vars::BETA, "sandbox")], BetaRequest::default()).await;
    let d = d.unwrap();
    assert_eq!(
        d.paths,
        FastPaths {
            sandbox: true,
            ..FastPaths::default()
        }
    );
    assert!(matches!(d.source, DecisionSource::Env { .. }));
    assert!(d.source.to_string().contains("HEADSTART_BETA"));

    let (d, _dir) = decide(&server, &[], beta(&[], true)).await;
    assert_eq!(d.unwrap().paths, FastPaths::all());
}

#[tokio::test]
async fn unknown_names_are_a_clear_error() {
    let server = silent_server().await;
    let (d, _dir) = decide(&server, &[], beta(&["images,gpu"], false)).await;
    let msg = d.unwrap_err().to_string();
    assert!(
        msg.contains("\"gpu\"") && msg.contains("images, docker, sandbox"),
        "{msg}"
    );
    let (d, _dir) = decide(&server, &[(vars::BETA, "fast")], BetaRequest::default()).await;
    assert!(d.unwrap_err().to_string().contains("HEADSTART_BETA"));
}

#[tokio::test]
async fn overrides_test_a_variant_without_network() {
    let server = silent_server().await;
    let (d, _dir) = decide(
        &server,
        &[(vars::FLAG_OVERRIDES, "fast_provision=test")],
        BetaRequest::default(),
    )
    .await;
    let d = d.unwrap();
    assert_eq!(d.paths, FastPaths::all());
    assert_eq!(
        d.source,
        DecisionSource::Override {
            value: FlagValue::Variant("test".into())
        }
    );
    let (d, _dir) = decide(
        &server,
        &[(vars::FLAG_OVERRIDES, "fast_provision=control")],
        BetaRequest::default(),
    )
    .await;
    assert_eq!(d.unwrap().paths, FastPaths::default());
    let (d, _dir) = decide(
        &server,
        &[(vars::FLAG_OVERRIDES, "fast_provision")],
        BetaRequest::default(),
    )
    .await;
    assert!(d.is_err());
}

#[tokio::test]
async fn switches_that_turn_the_experiment_off_send_nothing() {
    let server = silent_server().await;
    let cases: &[(&[(&str, &str)], DisabledReason)] = &[
        (
            &[(vars::FLAGS_DISABLED, "1")],
            DisabledReason::FlagsDisabled,
        ),
        (
            &[(vars::TELEMETRY, "0")],
            DisabledReason::TelemetryOff(TelemetryOff::HeadstartTelemetry),
        ),
        (
            &[(vars::DO_NOT_TRACK, "1")],
            DisabledReason::TelemetryOff(TelemetryOff::DoNotTrack),
        ),
        (&[(vars::PROJECT_KEY, "")], DisabledReason::NotConfigured),
    ];
    for (extra, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let flags = FeatureFlags::new(config(dir.path(), &server.uri(), extra));
        let d = flags
            .fast_paths(&BetaRequest::default(), Purpose::Provision)
            .await
            .unwrap();
        assert_eq!(d.paths, FastPaths::default());
        assert_eq!(d.source, DecisionSource::Disabled(*reason));
        assert!(!d.source.consulted_experiment());
        flags.start_completed(&feature_flags::StartCompleted::default(), Some(&d));
        flags.shutdown(Duration::from_secs(2)).await;
        // Not even an install id is created.
        assert!(flags.distinct_id().is_none());
        assert!(!dir.path().join("feature-flags/install-id").exists());
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}
