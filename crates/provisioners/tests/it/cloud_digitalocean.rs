//! DigitalOcean provisioner against a fake v2 API.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use provisioners::cloud::digitalocean::{DigitalOcean, MARKETPLACE_IMAGE, PLAIN_IMAGE};
use provisioners::cloud::{CloudError, DEFAULT_USER_DATA, VmPhase, VmProvisioner, VmStatus, up};
use serde_json::json;

use crate::cloud_fakes::*;

fn provisioner(fake: &FakeDo) -> DigitalOcean {
    DigitalOcean::new(fake.config()).unwrap()
}

#[tokio::test]
async fn images_on_boots_the_marketplace_image_without_user_data_and_reaches_ssh() {
    let fake = FakeDo::start(DoBehaviour {
        active_after: Some(2),
        ..Default::default()
    })
    .await;
    let sshd = fake_sshd_banner().await;
    let p = provisioner(&fake);
    let mut seen = Vec::new();
    let report = up(
        &p,
        &spec("web-1", prebuilt(true, false)),
        &banner_readiness(sshd, Duration::from_secs(10)),
        |ph, _| seen.push(ph),
    )
    .await
    .unwrap();

    assert_eq!(
        seen,
        [VmPhase::VmCreate, VmPhase::VmActive, VmPhase::SshReady]
    );
    let names: Vec<_> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["vm_create", "vm_active", "ssh_ready"]);
    assert_eq!(report.vm.status, VmStatus::Running);
    assert_eq!(
        report.vm.public_ipv4,
        Some("127.0.0.1".parse().unwrap()),
        "the public address, not the private one"
    );

    let creates = bodies(&fake.server, "POST", "/v2/droplets").await;
    assert_eq!(creates.len(), 1);
    let body = &creates[0];
    assert_eq!(body["image"], MARKETPLACE_IMAGE);
    assert!(
        body.get("user_data").is_none(),
        "no user data with the marketplace image: {body}"
    );
    assert_eq!(body["name"], "web-1");
    assert_eq!(body["size"], "s-1vcpu-1gb");
    assert_eq!(body["region"], "nyc3");
    let tags: Vec<&str> = body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"headstart-owner:alice") && tags.contains(&"headstart-managed:true"),
        "{tags:?}"
    );
    // The key was registered once and referenced by its id.
    let keys = bodies(&fake.server, "POST", "/v2/account/keys").await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["public_key"], PUBKEY);
    let key_id = fake.state.lock().unwrap().keys[0]["id"].clone();
    assert_eq!(body["ssh_keys"], json!([key_id]));
}

#[tokio::test]
async fn images_off_boots_ubuntu_with_the_docker_user_data() {
    let fake = FakeDo::start(DoBehaviour::default()).await;
    let vm = provisioner(&fake)
        .create(&spec("web-2", prebuilt(false, true)))
        .await
        .unwrap();
    assert_eq!(vm.status, VmStatus::Provisioning);
    let body = &bodies(&fake.server, "POST", "/v2/droplets").await[0];
    assert_eq!(body["image"], PLAIN_IMAGE);
    assert_eq!(body["user_data"], DEFAULT_USER_DATA);
}

#[tokio::test]
async fn user_data_with_the_marketplace_image_is_refused_before_any_request() {
    let fake = FakeDo::start(DoBehaviour::default()).await;
    let mut s = spec("web-3", prebuilt(true, false));
    s.user_data = Some("#!/bin/sh\ndocker pull nginx\n".into());
    let err = provisioner(&fake).create(&s).await.unwrap_err();
    assert!(matches!(err, CloudError::InvalidSpec(_)), "{err}");
    assert!(err.to_string().contains("compete"), "{err}");
    assert!(requests(&fake.server).await.is_empty());
}

#[tokio::test]
async fn a_second_create_finds_the_droplet_instead_of_making_another() {
    let fake = FakeDo::start(DoBehaviour::default()).await;
    let p = provisioner(&fake);
    let s = spec("web-4", prebuilt(true, false));
    let a = p.create(&s).await.unwrap();
    let b = p.create(&s).await.unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(fake.state.lock().unwrap().droplets.len(), 1);
    assert_eq!(bodies(&fake.server, "POST", "/v2/droplets").await.len(), 1);
}

#[tokio::test]
async fn a_create_answered_with_a_server_error_after_acting_is_not_repeated() {
    // The API made the droplet, then answered 500: the retry must find it by name.
    let fake = FakeDo::start(DoBehaviour {
        create_failures: vec![(
            500,
            json!({"id": "server_error", "message": "Server was unable to give you a response."}),
            vec![],
        )],
        store_on_failure: true,
        ..Default::default()
    })
    .await;
    let vm = provisioner(&fake)
        .create(&spec("web-5", prebuilt(true, false)))
        .await
        .unwrap();
    let s = fake.state.lock().unwrap();
    assert_eq!(s.creates, 1, "exactly one droplet made");
    assert_eq!(s.droplets.len(), 1);
    assert_eq!(vm.id, s.droplets[0]["id"].to_string());
}

#[tokio::test]
async fn a_name_held_by_a_foreign_droplet_is_refused() {
    let fake = FakeDo::start(DoBehaviour::default()).await;
    fake.state.lock().unwrap().droplets.push(do_droplet(
        99,
        &json!({"name": "web-6", "image": "ubuntu-24-04-x64", "size": "s-1vcpu-1gb", "region": "nyc3", "tags": ["prod"]}),
        "active",
        Some("127.0.0.1"),
    ));
    let err = provisioner(&fake)
        .create(&spec("web-6", prebuilt(true, false)))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::NameInUse { .. }), "{err}");
    assert!(
        bodies(&fake.server, "POST", "/v2/droplets")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn unauthorized_names_the_variable_and_never_the_token() {
    let fake = FakeDo::start(DoBehaviour::default()).await;
    let mut config = fake.config();
    // A different token: the fake's auth matcher does not match, so mount a 401 that
    // (like some proxies) echoes what it was sent.
    let other = "dop_v1_0123456789abcdef0123456789abcdef";
    config.token = provisioners::cloud::ApiToken::new(other).unwrap();
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(401).set_body_json(
            json!({"id": "unauthorized", "message": format!("Unable to authenticate you (Bearer {other}).")}),
        ))
        .mount(&fake.server)
        .await;
    let logs = LogCapture::start();
    let err = DigitalOcean::new(config)
        .unwrap()
        .create(&spec("web-7", prebuilt(true, false)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("DIGITALOCEAN_TOKEN"), "{shown}");
    assert!(
        !shown.contains(other),
        "token leaked into the error: {shown}"
    );
    if let Some(logs) = logs {
        let text = logs.text();
        assert!(
            text.contains("cloud API request"),
            "the capture sees the provisioner's logs"
        );
        assert!(!text.contains(other), "token leaked into the logs");
        assert!(!text.contains(TOKEN), "token leaked into the logs");
    } else {
        eprintln!("another tracing subscriber is installed: log capture skipped");
    }
}

#[tokio::test]
async fn quota_422_is_reported_with_what_to_do() {
    let fake = FakeDo::start(DoBehaviour {
        create_failures: vec![(
            422,
            json!({"id": "unprocessable_entity", "message": "creating this/these droplet(s) will exceed your droplet limit"}),
            vec![],
        )],
        ..Default::default()
    })
    .await;
    let err = provisioner(&fake)
        .create(&spec("web-8", prebuilt(true, false)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::Rejected { status: 422, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("droplet limit") && msg.contains("raise the limit"),
        "{msg}"
    );
    assert!(fake.state.lock().unwrap().droplets.is_empty());
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_creates_once() {
    let fake = FakeDo::start(DoBehaviour {
        create_failures: vec![(
            429,
            json!({"id": "too_many_requests", "message": "API Rate limit exceeded."}),
            vec![
                ("retry-after", "1".into()),
                ("ratelimit-remaining", "0".into()),
            ],
        )],
        ..Default::default()
    })
    .await;
    let t = Instant::now();
    provisioner(&fake)
        .create(&spec("web-9", prebuilt(true, false)))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured: {:?}",
        t.elapsed()
    );
    assert_eq!(bodies(&fake.server, "POST", "/v2/droplets").await.len(), 2);
    assert_eq!(fake.state.lock().unwrap().droplets.len(), 1);
}

#[tokio::test]
async fn rate_limit_gives_up_after_the_bounded_attempts() {
    let too_many = || {
        (
            429,
            json!({"id": "too_many_requests", "message": "slow down"}),
            vec![("retry-after", "0".into())],
        )
    };
    let fake = FakeDo::start(DoBehaviour {
        create_failures: (0..10).map(|_| too_many()).collect(),
        ..Default::default()
    })
    .await;
    let err = provisioner(&fake)
        .create(&spec("web-10", prebuilt(true, false)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::RateLimited { attempts: 4, .. }),
        "{err}"
    );
    assert_eq!(bodies(&fake.server, "POST", "/v2/droplets").await.len(), 4);
}

#[tokio::test]
async fn a_droplet_that_never_becomes_active_is_destroyed_at_the_deadline() {
    let fake = FakeDo::start(DoBehaviour {
        active_after: None,
        ..Default::default()
    })
    .await;
    let p = provisioner(&fake);
    let err = up(
        &p,
        &spec("web-11", prebuilt(true, false)),
        &banner_readiness(closed_port(), Duration::from_millis(400)),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CloudError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("active"), "{err}");
    let s = fake.state.lock().unwrap();
    assert_eq!(s.deleted.len(), 1, "the droplet was destroyed");
    assert!(s.droplets.is_empty());
}

#[tokio::test]
async fn a_droplet_whose_ssh_never_answers_is_destroyed() {
    let fake = FakeDo::start(DoBehaviour {
        active_after: Some(0),
        ..Default::default()
    })
    .await;
    let p = provisioner(&fake);
    let err = up(
        &p,
        &spec("web-12", prebuilt(true, false)),
        &banner_readiness(closed_port(), Duration::from_millis(600)),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("waiting for SSH"), "{err}");
    assert_eq!(fake.state.lock().unwrap().deleted.len(), 1);
}

#[tokio::test]
async fn list_filters_by_the_owner_tag() {
    let fake = FakeDo::start(DoBehaviour::default()).await;
    let p = provisioner(&fake);
    let debug = format!("{p:?} {:?}", fake.config());
    assert!(
        !debug.contains(TOKEN) && debug.contains("redacted"),
        "{debug}"
    );
    p.create(&spec("mine-1", prebuilt(true, false)))
        .await
        .unwrap();
    let mut theirs = spec("theirs-1", prebuilt(true, false));
    theirs.owner = provisioners::cloud::OwnerTag::new("bob").unwrap();
    p.create(&theirs).await.unwrap();
    let mine = p.list(&owner()).await.unwrap();
    assert_eq!(
        mine.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["mine-1"]
    );
    let reqs = requests(&fake.server).await;
    assert!(
        reqs.iter().any(|(m, p, q)| m == "GET"
            && p == "/v2/droplets"
            && q.contains("tag_name=headstart-owner%3Aalice")),
        "{reqs:?}"
    );
    // destroy is idempotent: a second delete of a gone droplet is fine.
    p.destroy(&mine[0]).await.unwrap();
    p.destroy(&mine[0]).await.unwrap();
    assert!(p.list(&owner()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_spent_rate_limit_budget_delays_the_next_request_instead_of_provoking_429() {
    let fake = FakeDo::start(DoBehaviour::default()).await;
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/v2/droplets"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(json!({"droplets": [], "links": {}, "meta": {"total": 0}}))
                .insert_header("ratelimit-limit", "5000")
                .insert_header("ratelimit-remaining", "0")
                .insert_header("ratelimit-reset", reset.to_string().as_str()),
        )
        .with_priority(1)
        .mount(&fake.server)
        .await;
    let t = Instant::now();
    provisioner(&fake)
        .create(&spec("web-13", prebuilt(true, false)))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "the next request waited for the reset: {:?}",
        t.elapsed()
    );
    let reqs = requests(&fake.server).await;
    assert_eq!(
        reqs.iter()
            .filter(|(m, p, _)| m == "POST" && p == "/v2/droplets")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_create_cut_off_by_the_deadline_is_found_and_destroyed() {
    let fake = FakeDo::start(DoBehaviour {
        create_delay: Some(Duration::from_secs(3)),
        ..Default::default()
    })
    .await;
    let p = provisioner(&fake);
    let err = up(
        &p,
        &spec("web-14", prebuilt(true, false)),
        &banner_readiness(closed_port(), Duration::from_millis(700)),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CloudError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("creating VM `web-14`"), "{err}");
    let s = fake.state.lock().unwrap();
    assert_eq!(s.creates, 1);
    assert_eq!(
        s.deleted.len(),
        1,
        "the droplet the late answer would have named was destroyed"
    );
}

#[tokio::test]
async fn a_key_registered_concurrently_422_in_use_is_found_and_used() {
    let fake = FakeDo::start(DoBehaviour {
        key_race: true,
        ..Default::default()
    })
    .await;
    provisioner(&fake)
        .create(&spec("web-15", prebuilt(true, false)))
        .await
        .unwrap();
    assert_eq!(
        bodies(&fake.server, "POST", "/v2/account/keys").await.len(),
        1
    );
    let key_id = fake.state.lock().unwrap().keys[0]["id"].clone();
    assert_eq!(
        bodies(&fake.server, "POST", "/v2/droplets").await[0]["ssh_keys"],
        json!([key_id])
    );
}
