//! Hetzner Cloud provisioner against a fake v1 API.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use provisioners::cloud::hetzner::{DOCKER_IMAGE, Hetzner, PLAIN_IMAGE};
use provisioners::cloud::{CloudError, DEFAULT_USER_DATA, VmProvisioner, VmStatus, up};
use serde_json::json;

use crate::cloud_fakes::*;

fn provisioner(fake: &FakeHetzner) -> Hetzner {
    Hetzner::new(fake.config()).unwrap()
}

#[tokio::test]
async fn docker_on_boots_docker_ce_without_user_data_and_follows_the_action() {
    let fake = FakeHetzner::start(HzBehaviour {
        action_success_after: Some(2),
        ..Default::default()
    })
    .await;
    let sshd = fake_sshd_banner().await;
    let p = provisioner(&fake);
    let report = up(
        &p,
        &spec("builder-1", prebuilt(false, true)),
        &banner_readiness(sshd, Duration::from_secs(10)),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.vm.status, VmStatus::Running);
    assert_eq!(report.vm.public_ipv4, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(
        fake.state.lock().unwrap().action_polls,
        3,
        "the create action was followed to success"
    );
    let reqs = requests(&fake.server).await;
    assert!(
        reqs.iter()
            .any(|(m, p, _)| m == "GET" && p == "/v1/actions/13"),
        "{reqs:?}"
    );

    let body = &bodies(&fake.server, "POST", "/v1/servers").await[0];
    assert_eq!(body["image"], DOCKER_IMAGE);
    assert!(
        body.get("user_data").is_none(),
        "no user data competing with docker-ce: {body}"
    );
    assert_eq!(body["server_type"], "cx22");
    assert_eq!(body["location"], "nbg1");
    assert_eq!(body["start_after_create"], true);
    assert_eq!(
        body["labels"],
        json!({"headstart-managed": "true", "headstart-owner": "alice"})
    );
    let key_id = fake.state.lock().unwrap().keys[0]["id"].clone();
    assert_eq!(body["ssh_keys"], json!([key_id]));
}

#[tokio::test]
async fn docker_off_boots_ubuntu_with_user_data_and_extra_labels() {
    let fake = FakeHetzner::start(HzBehaviour::default()).await;
    let mut s = spec("builder-2", prebuilt(true, false));
    s.labels.insert("team".into(), "infra".into());
    provisioner(&fake).create(&s).await.unwrap();
    let body = &bodies(&fake.server, "POST", "/v1/servers").await[0];
    assert_eq!(body["image"], PLAIN_IMAGE);
    assert_eq!(body["user_data"], DEFAULT_USER_DATA);
    assert_eq!(body["labels"]["team"], "infra");
}

#[tokio::test]
async fn an_existing_key_is_reused_not_registered_again() {
    let fake = FakeHetzner::start(HzBehaviour::default()).await;
    fake.state.lock().unwrap().keys.push(json!({"id": 777, "name": "laptop", "fingerprint": "aa", "public_key": PUBKEY.rsplit_once(' ').unwrap().0, "labels": {}}));
    provisioner(&fake)
        .create(&spec("builder-3", prebuilt(false, true)))
        .await
        .unwrap();
    assert!(
        bodies(&fake.server, "POST", "/v1/ssh_keys")
            .await
            .is_empty()
    );
    assert_eq!(
        bodies(&fake.server, "POST", "/v1/servers").await[0]["ssh_keys"],
        json!([777])
    );
}

#[tokio::test]
async fn a_failed_create_action_destroys_the_server() {
    let fake = FakeHetzner::start(HzBehaviour {
        action_success_after: None,
        ..Default::default()
    })
    .await;
    let p = provisioner(&fake);
    let err = up(
        &p,
        &spec("builder-4", prebuilt(false, true)),
        &banner_readiness(closed_port(), Duration::from_secs(5)),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CloudError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("no capacity"), "{err}");
    let s = fake.state.lock().unwrap();
    assert_eq!(
        s.deleted.len(),
        1,
        "the server was destroyed after the failed step"
    );
    assert!(s.servers.is_empty());
}

#[tokio::test]
async fn an_action_that_never_finishes_hits_the_deadline_and_the_server_is_destroyed() {
    let fake = FakeHetzner::start(HzBehaviour {
        action_success_after: Some(usize::MAX),
        ..Default::default()
    })
    .await;
    let p = provisioner(&fake);
    let err = up(
        &p,
        &spec("builder-5", prebuilt(false, true)),
        &banner_readiness(closed_port(), Duration::from_millis(300)),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CloudError::Timeout { .. }), "{err}");
    assert_eq!(fake.state.lock().unwrap().deleted.len(), 1);
}

#[tokio::test]
async fn uniqueness_409_returns_our_server_but_refuses_a_foreign_one() {
    let fake = FakeHetzner::start(HzBehaviour::default()).await;
    let p = provisioner(&fake);
    let s = spec("builder-6", prebuilt(false, true));
    let first = p.create(&s).await.unwrap();
    assert_eq!(
        p.create(&s).await.unwrap().id,
        first.id,
        "found by name, no second server"
    );
    assert_eq!(fake.state.lock().unwrap().servers.len(), 1);

    fake.state.lock().unwrap().servers.push(hz_server(
        5,
        &json!({"name": "taken", "server_type": "cx22", "location": "fsn1", "image": "debian-12", "labels": {}}),
        "running",
    ));
    let err = p
        .create(&spec("taken", prebuilt(false, true)))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::NameInUse { .. }), "{err}");
}

#[tokio::test]
async fn resource_limit_and_invalid_input_are_refusals_with_hints() {
    let fake = FakeHetzner::start(HzBehaviour {
        create_failures: vec![
            (403, json!({"error": {"code": "resource_limit_exceeded", "message": "server limit exceeded", "details": {}}}), vec![]),
            (422, json!({"error": {"code": "invalid_input", "message": "invalid input in field 'server_type'", "details": {"fields": [{"name": "server_type"}]}}}), vec![]),
        ],
        ..Default::default()
    })
    .await;
    let p = provisioner(&fake);
    let err = p
        .create(&spec("builder-7", prebuilt(false, true)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::Rejected { status: 403, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("raise the limit"), "{err}");
    let err = p
        .create(&spec("builder-7", prebuilt(false, true)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::Rejected { status: 422, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("size, region"), "{err}");
}

#[tokio::test]
async fn rate_limit_reset_header_is_honoured() {
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let fake = FakeHetzner::start(HzBehaviour {
        create_failures: vec![(
            429,
            json!({"error": {"code": "rate_limit_exceeded", "message": "limit of 3600 requests per hour reached", "details": {}}}),
            vec![("ratelimit-limit", "3600".into()), ("ratelimit-remaining", "0".into()), ("ratelimit-reset", reset.to_string())],
        )],
        ..Default::default()
    })
    .await;
    let t = Instant::now();
    provisioner(&fake)
        .create(&spec("builder-8", prebuilt(false, true)))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "waited for RateLimit-Reset: {:?}",
        t.elapsed()
    );
    assert_eq!(fake.state.lock().unwrap().servers.len(), 1);
}

#[tokio::test]
async fn unauthorized_401_never_shows_the_token() {
    let fake = FakeHetzner::start(HzBehaviour::default()).await;
    let mut config = fake.config();
    let other = "hz-Zq81LmNoPqRsTuVwXyZ0123456789abcdefghijklmnopqrstuvwxyzABCD";
    config.token = provisioners::cloud::ApiToken::new(other).unwrap();
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(401).set_body_json(
            json!({"error": {"code": "unauthorized", "message": format!("unable to authenticate token {other}"), "details": {}}}),
        ))
        .mount(&fake.server)
        .await;
    let logs = LogCapture::start();
    let err = Hetzner::new(config)
        .unwrap()
        .create(&spec("builder-9", prebuilt(false, true)))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(err, CloudError::Unauthorized { .. }) && shown.contains("HCLOUD_TOKEN"),
        "{shown}"
    );
    assert!(!shown.contains(other), "{shown}");
    if let Some(logs) = logs {
        assert!(!logs.text().contains(other));
    }
}

#[tokio::test]
async fn list_uses_the_owner_label_selector() {
    let fake = FakeHetzner::start(HzBehaviour::default()).await;
    let p = provisioner(&fake);
    p.create(&spec("mine-2", prebuilt(false, true)))
        .await
        .unwrap();
    let mut theirs = spec("theirs-2", prebuilt(false, true));
    theirs.owner = provisioners::cloud::OwnerTag::new("bob").unwrap();
    p.create(&theirs).await.unwrap();
    let mine = p.list(&owner()).await.unwrap();
    assert_eq!(
        mine.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["mine-2"]
    );
    let reqs = requests(&fake.server).await;
    assert!(
        reqs.iter().any(|(_, p, q)| p == "/v1/servers"
            && q.contains("label_selector=headstart-owner%3D%3Dalice")),
        "{reqs:?}"
    );
    p.destroy(&mine[0]).await.unwrap();
    p.destroy(&mine[0]).await.unwrap();
}
