//! Compute Engine provisioner against a fake Compute v1 API.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use provisioners::cloud::gcp::{COS_IMAGE, Gcp, PLAIN_IMAGE, SSH_USER};
use provisioners::cloud::{CloudError, DEFAULT_USER_DATA, VmProvisioner, VmStatus, up};
use serde_json::{Value, json};

use crate::cloud_fakes::*;

const INSTANCES: &str = "/compute/v1/projects/demo-project/zones/us-central1-a/instances";

fn provisioner(fake: &FakeGce) -> Gcp {
    Gcp::new(fake.config()).unwrap()
}

fn metadata(body: &Value) -> Vec<(String, String)> {
    body["metadata"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_owned(),
                i["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn docker_on_boots_cos_without_a_startup_script_and_polls_the_operation() {
    let fake = FakeGce::start(GceBehaviour {
        done_after: 2,
        ..Default::default()
    })
    .await;
    let sshd = fake_sshd_banner().await;
    let p = provisioner(&fake);
    let report = up(
        &p,
        &spec("gce-1", prebuilt(false, true)),
        &banner_readiness(sshd, Duration::from_secs(10)),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.vm.status, VmStatus::Running);
    assert_eq!(report.vm.public_ipv4, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(report.vm.region, "us-central1-a");
    assert_eq!(
        fake.state.lock().unwrap().op_polls,
        3,
        "the zone operation was polled to DONE"
    );

    let body = &bodies(&fake.server, "POST", INSTANCES).await[0];
    assert_eq!(
        body["disks"][0]["initializeParams"]["sourceImage"],
        COS_IMAGE
    );
    assert_eq!(
        body["machineType"],
        "zones/us-central1-a/machineTypes/e2-small"
    );
    assert_eq!(
        body["labels"],
        json!({"headstart-managed": "true", "headstart-owner": "alice"})
    );
    let md = metadata(body);
    assert!(
        !md.iter()
            .any(|(k, _)| k == "startup-script" || k == "user-data"),
        "{md:?}"
    );
    let keys = md.iter().find(|(k, _)| k == "ssh-keys").unwrap();
    assert!(
        keys.1.starts_with(&format!("{SSH_USER}:ssh-ed25519 AAAA")),
        "{keys:?}"
    );
    let reqs = requests(&fake.server).await;
    assert!(
        reqs.iter()
            .any(|(m, p, q)| m == "POST" && p == INSTANCES && q.starts_with("requestId=")),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn docker_off_boots_ubuntu_with_a_startup_script() {
    let fake = FakeGce::start(GceBehaviour::default()).await;
    provisioner(&fake)
        .create(&spec("gce-2", prebuilt(true, false)))
        .await
        .unwrap();
    let body = &bodies(&fake.server, "POST", INSTANCES).await[0];
    assert_eq!(
        body["disks"][0]["initializeParams"]["sourceImage"],
        PLAIN_IMAGE
    );
    let md = metadata(body);
    assert!(
        md.contains(&("startup-script".to_string(), DEFAULT_USER_DATA.to_string())),
        "{md:?}"
    );
}

#[tokio::test]
async fn a_retried_insert_reuses_its_request_id_and_makes_one_instance() {
    let fake = FakeGce::start(GceBehaviour {
        insert_failures: vec![(
            503,
            json!({"error": {"code": 503, "message": "Backend Error", "status": "UNAVAILABLE"}}),
        )],
        ..Default::default()
    })
    .await;
    provisioner(&fake)
        .create(&spec("gce-3", prebuilt(false, true)))
        .await
        .unwrap();
    let s = fake.state.lock().unwrap();
    assert_eq!(s.request_ids.len(), 2);
    assert_eq!(
        s.request_ids[0], s.request_ids[1],
        "the same requestId on the retry"
    );
    assert_eq!(s.instances.len(), 1);
}

#[tokio::test]
async fn already_exists_returns_our_instance() {
    let fake = FakeGce::start(GceBehaviour::default()).await;
    let p = provisioner(&fake);
    let s = spec("gce-4", prebuilt(false, true));
    p.create(&s).await.unwrap();
    let again = p.create(&s).await.unwrap();
    assert_eq!(again.name, "gce-4");
    assert_eq!(fake.state.lock().unwrap().instances.len(), 1);
    assert_eq!(
        bodies(&fake.server, "POST", INSTANCES).await.len(),
        1,
        "found by name before inserting"
    );
}

#[tokio::test]
async fn a_failed_operation_destroys_the_instance() {
    let fake = FakeGce::start(GceBehaviour {
        done_after: 1,
        operation_error: true,
        ..Default::default()
    })
    .await;
    let p = provisioner(&fake);
    let err = up(
        &p,
        &spec("gce-5", prebuilt(false, true)),
        &banner_readiness(closed_port(), Duration::from_secs(5)),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("ZONE_RESOURCE_POOL_EXHAUSTED"),
        "{err}"
    );
    let s = fake.state.lock().unwrap();
    assert_eq!(s.deleted, ["gce-5"]);
    assert!(s.instances.is_empty());
}

#[tokio::test]
async fn quota_and_auth_errors_from_google() {
    let fake = FakeGce::start(GceBehaviour {
        insert_failures: vec![
            (403, json!({"error": {"code": 403, "message": "Quota 'CPUS' exceeded.  Limit: 8.0 in region us-central1.",
                "errors": [{"message": "Quota 'CPUS' exceeded.", "domain": "usageLimits", "reason": "quotaExceeded"}]}})),
            (401, json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED",
                "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError"}]}})),
        ],
        ..Default::default()
    })
    .await;
    let p = provisioner(&fake);
    let err = p
        .create(&spec("gce-6", prebuilt(false, true)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::Rejected { status: 403, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("raise the limit"), "{err}");
    let err = p
        .create(&spec("gce-6", prebuilt(false, true)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("GOOGLE_OAUTH_ACCESS_TOKEN"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains(TOKEN));
}

#[tokio::test]
async fn list_filters_by_owner_label_across_zones() {
    let fake = FakeGce::start(GceBehaviour::default()).await;
    let p = provisioner(&fake);
    p.create(&spec("mine-3", prebuilt(false, true)))
        .await
        .unwrap();
    let mut theirs = spec("theirs-3", prebuilt(false, true));
    theirs.owner = provisioners::cloud::OwnerTag::new("bob").unwrap();
    p.create(&theirs).await.unwrap();
    let mine = p.list(&owner()).await.unwrap();
    assert_eq!(
        mine.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["mine-3"]
    );
    p.destroy(&mine[0]).await.unwrap();
    assert_eq!(fake.state.lock().unwrap().deleted, ["mine-3"]);
}

#[tokio::test]
async fn a_refused_filter_falls_back_to_filtering_here() {
    let fake = FakeGce::start(GceBehaviour::default()).await;
    let p = provisioner(&fake);
    p.create(&spec("mine-4", prebuilt(false, true)))
        .await
        .unwrap();
    let mut theirs = spec("theirs-4", prebuilt(false, true));
    theirs.owner = provisioners::cloud::OwnerTag::new("bob").unwrap();
    p.create(&theirs).await.unwrap();
    // This API refuses any filter expression; without one it lists everything.
    let all: Vec<Value> = fake.state.lock().unwrap().instances.clone();
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(
            "/compute/v1/projects/demo-project/aggregated/instances",
        ))
        .and(wiremock::matchers::query_param_is_missing("filter"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(json!({"items": {"zones/us-central1-a": {"instances": all}}})),
        )
        .with_priority(1)
        .mount(&fake.server)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(
            "/compute/v1/projects/demo-project/aggregated/instances",
        ))
        .and(wiremock::matchers::query_param_contains("filter", "labels."))
        .respond_with(wiremock::ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "message": "Invalid value for field 'filter'",
            "errors": [{"message": "Invalid value for field 'filter'", "domain": "global", "reason": "invalid"}]}})))
        .with_priority(1)
        .mount(&fake.server)
        .await;
    let mine = p.list(&owner()).await.unwrap();
    assert_eq!(
        mine.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["mine-4"]
    );
}
