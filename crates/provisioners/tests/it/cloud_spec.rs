//! The fakes must not just agree with the provisioners: the requests the provisioners
//! send and the answers the fakes give are checked against machine-readable specs
//! shipped in registry packages (pydo for DigitalOcean, hcloud for Hetzner, the
//! Compute Engine discovery document in google-api-python-client). The facts are
//! vendored in `tests/fixtures/cloud-specs/` (package versions inside each file;
//! `regenerate.py` there rebuilds them from the wheels).

#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::time::Duration;

use provisioners::cloud::digitalocean::DigitalOcean;
use provisioners::cloud::gcp::Gcp;
use provisioners::cloud::hetzner::Hetzner;
use provisioners::cloud::{Cloud, CloudConfig, VmProvisioner, up};
use serde_json::{Value, json};

use crate::cloud_fakes::*;

fn fixture(name: &str) -> Value {
    let text = match name {
        "pydo" => include_str!("../fixtures/cloud-specs/pydo.json"),
        "hcloud" => include_str!("../fixtures/cloud-specs/hcloud.json"),
        "gce" => include_str!("../fixtures/cloud-specs/gce-compute-v1.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Every field path of a JSON value (`a/b`, array elements share their array's path).
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}/{k}")
                };
                out.insert(p.clone());
                paths(child, &p, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| paths(i, prefix, out)),
        _ => {}
    }
}

fn query_keys(q: &str) -> BTreeSet<String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split('=').next().unwrap().to_owned())
        .collect()
}

// ------------------------------------------------------------------ DigitalOcean / pydo

#[tokio::test]
async fn digitalocean_requests_and_fake_answers_match_pydo() {
    let spec_doc = fixture("pydo");
    assert!(spec_doc["source"].as_str().unwrap().starts_with("pydo "));
    let fake = FakeDo::start(DoBehaviour {
        active_after: Some(0),
        ..Default::default()
    })
    .await;
    let sshd = fake_sshd_banner().await;
    let p = DigitalOcean::new(fake.config()).unwrap();
    for (name, fp) in [
        ("spec-a", prebuilt(true, false)),
        ("spec-b", prebuilt(false, false)),
    ] {
        up(
            &p,
            &spec(name, fp),
            &banner_readiness(sshd, Duration::from_secs(10)),
            |_, _| {},
        )
        .await
        .unwrap();
    }
    p.list(&owner()).await.unwrap();

    let fields = &spec_doc["droplet_create_fields"];
    let allowed = keys(fields);
    let creates = bodies(&fake.server, "POST", "/v2/droplets").await;
    assert_eq!(creates.len(), 2);
    for body in &creates {
        let sent = keys(body);
        assert!(
            sent.is_subset(&allowed),
            "fields pydo does not know: {:?}",
            sent.difference(&allowed).collect::<Vec<_>>()
        );
        for (field, meta) in fields.as_object().unwrap() {
            if meta["required"] == true {
                assert!(
                    sent.contains(field),
                    "required field `{field}` missing from {body}"
                );
            }
        }
        assert!(
            strings(&fields["region"]["known_values"]).contains(body["region"].as_str().unwrap())
        );
        assert!(body["ssh_keys"].is_array() && body["tags"].is_array());
    }
    // The plain image sends user_data, a field the spec documents.
    assert!(creates.iter().any(|b| b.get("user_data").is_some()) && allowed.contains("user_data"));

    let key_fields = &spec_doc["ssh_keys_create_fields"];
    for body in bodies(&fake.server, "POST", "/v2/account/keys").await {
        let sent = keys(&body);
        assert!(sent.is_subset(&keys(key_fields)), "{sent:?}");
        for (f, meta) in key_fields.as_object().unwrap() {
            assert!(
                meta["required"] != true || sent.contains(f),
                "required `{f}` missing"
            );
        }
    }

    // The fake's droplet answer: only documented fields, required ones present, and
    // every field the provisioner reads is one pydo documents.
    let documented = &spec_doc["droplet_get_response"];
    let droplet = json!({"droplet": fake.state.lock().unwrap().droplets[0].clone()});
    let mut have = BTreeSet::new();
    paths(&droplet, "", &mut have);
    let known = keys(documented);
    let unknown: Vec<_> = have.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "fake droplet fields not in pydo: {unknown:?}"
    );
    for (f, meta) in documented.as_object().unwrap() {
        let parent_present = f
            .rsplit_once('/')
            .is_none_or(|(parent, _)| have.contains(parent));
        if meta["required"] == true
            && parent_present
            && !f.starts_with("droplet/size/")
            && !f.starts_with("droplet/region/")
        {
            assert!(have.contains(f), "the fake omits required `{f}`");
        }
    }
    for read in [
        "droplet/id",
        "droplet/name",
        "droplet/status",
        "droplet/networks/v4/ip_address",
        "droplet/networks/v4/type",
        "droplet/region/slug",
        "droplet/image/slug",
        "droplet/image/name",
        "droplet/tags",
    ] {
        assert!(
            known.contains(read),
            "the provisioner reads `{read}`, which pydo does not document"
        );
    }
    let statuses = strings(&documented["droplet/status"]["known_values"]);
    assert!(
        statuses.contains("new") && statuses.contains("active"),
        "{statuses:?}"
    );
    assert!(strings(&documented["droplet/networks/v4/type"]["known_values"]).contains("public"));
    let list_fields: BTreeSet<String> = strings(&spec_doc["droplets_list_response"]);
    for f in ["droplets", "links", "meta"] {
        assert!(list_fields.contains(f));
    }
}

// ------------------------------------------------------------------ Hetzner / hcloud

#[tokio::test]
async fn hetzner_requests_and_fake_answers_match_hcloud() {
    let spec_doc = fixture("hcloud");
    assert!(spec_doc["source"].as_str().unwrap().starts_with("hcloud "));
    let fake = FakeHetzner::start(HzBehaviour {
        action_success_after: Some(0),
        ..Default::default()
    })
    .await;
    let sshd = fake_sshd_banner().await;
    let p = Hetzner::new(fake.config()).unwrap();
    for (name, fp) in [
        ("spec-c", prebuilt(false, true)),
        ("spec-d", prebuilt(false, false)),
    ] {
        up(
            &p,
            &spec(name, fp),
            &banner_readiness(sshd, Duration::from_secs(10)),
            |_, _| {},
        )
        .await
        .unwrap();
    }
    p.list(&owner()).await.unwrap();

    let create = &spec_doc["servers_create"];
    let always = strings(&create["always_sent"]);
    let allowed: BTreeSet<String> = always
        .union(&strings(&create["optional"]))
        .cloned()
        .collect();
    for body in bodies(&fake.server, "POST", "/v1/servers").await {
        let sent = keys(&body);
        assert!(
            sent.is_subset(&allowed),
            "fields hcloud does not send: {:?}",
            sent.difference(&allowed).collect::<Vec<_>>()
        );
        assert!(
            always.is_subset(&sent),
            "hcloud always sends {always:?}; we sent {sent:?}"
        );
        assert_eq!(
            keys(&body["public_net"]),
            ["enable_ipv4", "enable_ipv6"].map(String::from).into()
        );
    }
    let key_create = &spec_doc["ssh_keys_create"];
    let key_allowed: BTreeSet<String> = strings(&key_create["always_sent"])
        .union(&strings(&key_create["optional"]))
        .cloned()
        .collect();
    for body in bodies(&fake.server, "POST", "/v1/ssh_keys").await {
        assert!(
            keys(&body).is_subset(&key_allowed)
                && strings(&key_create["always_sent"]).is_subset(&keys(&body))
        );
    }
    let list_params = strings(&spec_doc["servers_list_params"]);
    for (m, path, q) in requests(&fake.server).await {
        if m == "GET" && path == "/v1/servers" {
            assert!(
                query_keys(&q).is_subset(&list_params),
                "query {q} not in {list_params:?}"
            );
        }
    }

    // The fake's answers.
    let server_props = strings(&spec_doc["server_properties"]);
    let statuses = strings(&spec_doc["server_statuses"]);
    let servers = fake.state.lock().unwrap().servers.clone();
    for s in &servers {
        assert!(
            keys(s).is_subset(&server_props),
            "{:?}",
            keys(s).difference(&server_props).collect::<Vec<_>>()
        );
        assert!(statuses.contains(s["status"].as_str().unwrap()));
    }
    assert!(statuses.contains("initializing") && statuses.contains("running"));
    assert!(
        strings(&spec_doc["action_statuses"])
            == ["error", "running", "success"].map(String::from).into()
    );
    let create_resp: BTreeSet<String> = strings(&spec_doc["servers_create_response"]);
    assert_eq!(
        create_resp,
        ["action", "next_actions", "root_password", "server"]
            .map(String::from)
            .into()
    );
    let action_props = strings(&spec_doc["action_properties"]);
    let action = json!({"id": 1, "command": "create_server", "status": "running", "progress": 0, "started": "", "finished": null, "resources": [], "error": null});
    assert!(keys(&action).is_subset(&action_props));
    let key_props = strings(&spec_doc["ssh_key_properties"]);
    for k in fake.state.lock().unwrap().keys.iter() {
        assert!(keys(k).is_subset(&key_props), "{k}");
    }
}

// ------------------------------------------------------------------ Compute Engine discovery

struct Schemas<'a>(&'a Value);

impl Schemas<'_> {
    /// Validates `v` against `schema`; `method` turns on `requiredFor` checks.
    fn check(
        &self,
        v: &Value,
        schema: &Value,
        at: &str,
        method: Option<&str>,
        errors: &mut Vec<String>,
    ) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            match self.0.get(r) {
                Some(s) => return self.check(v, s, at, method, errors),
                None => return errors.push(format!("{at}: schema {r} is not in the fixture")),
            }
        }
        let ty = schema.get("type").and_then(Value::as_str).unwrap_or("any");
        match (ty, v) {
            ("object", Value::Object(m)) => {
                let props = schema.get("properties").and_then(Value::as_object);
                for (k, child) in m {
                    match (
                        props.and_then(|p| p.get(k)),
                        schema.get("additionalProperties"),
                    ) {
                        (Some(s), _) => self.check(child, s, &format!("{at}.{k}"), method, errors),
                        (None, Some(s)) => {
                            self.check(child, s, &format!("{at}.{k}"), method, errors)
                        }
                        (None, None) => errors.push(format!("{at}.{k}: not in the schema")),
                    }
                }
                if let (Some(method), Some(props)) = (method, props) {
                    for (k, s) in props {
                        let required = s
                            .get("requiredFor")
                            .and_then(Value::as_array)
                            .is_some_and(|r| r.iter().any(|x| x == method));
                        if required && !m.contains_key(k) {
                            errors.push(format!("{at}.{k}: required for {method}"));
                        }
                    }
                }
            }
            ("array", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(
                        item,
                        &schema["items"],
                        &format!("{at}[{i}]"),
                        method,
                        errors,
                    );
                }
            }
            ("string", Value::String(s)) => {
                if let Some(values) = schema.get("enum").and_then(Value::as_array) {
                    if !values.iter().any(|e| e == s.as_str()) {
                        errors.push(format!("{at}: `{s}` is not one of {values:?}"));
                    }
                }
            }
            ("boolean", Value::Bool(_))
            | ("integer", Value::Number(_))
            | ("number", Value::Number(_))
            | ("any", _) => {}
            (_, Value::Null) => {}
            (ty, other) => errors.push(format!("{at}: expected {ty}, got {other}")),
        }
    }
}

/// Whether a concrete path matches a discovery path template (`projects/{project}/...`).
fn matches_template(path: &str, template: &str) -> bool {
    let a: Vec<&str> = path.split('/').collect();
    let b: Vec<&str> = template.split('/').collect();
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, t)| (t.starts_with('{') && !x.is_empty()) || x == t)
}

#[tokio::test]
async fn compute_requests_and_fake_answers_match_the_discovery_document() {
    let doc = fixture("gce");
    assert!(
        doc["source"]
            .as_str()
            .unwrap()
            .starts_with("google-api-python-client ")
    );
    let root = format!(
        "{}{}",
        doc["rootUrl"].as_str().unwrap(),
        doc["servicePath"].as_str().unwrap()
    );
    assert_eq!(
        CloudConfig::default_base_url(Cloud::Gcp),
        root.trim_end_matches('/')
    );
    let schemas = Schemas(&doc["schemas"]);
    let methods = &doc["methods"];

    let fake = FakeGce::start(GceBehaviour {
        done_after: 1,
        ..Default::default()
    })
    .await;
    let sshd = fake_sshd_banner().await;
    let p = Gcp::new(fake.config()).unwrap();
    for (name, fp) in [
        ("spec-e", prebuilt(false, true)),
        ("spec-f", prebuilt(false, false)),
    ] {
        up(
            &p,
            &spec(name, fp),
            &banner_readiness(sshd, Duration::from_secs(10)),
            |_, _| {},
        )
        .await
        .unwrap();
    }
    let vms = p.list(&owner()).await.unwrap();
    p.destroy(&vms[0]).await.unwrap();

    // Every request: a documented method, path and query parameters.
    let service = format!("/{}", doc["servicePath"].as_str().unwrap());
    let mut seen = BTreeSet::new();
    for (verb, path, q) in requests(&fake.server).await {
        let rel = path
            .strip_prefix(&service)
            .unwrap_or_else(|| panic!("{path} outside {service}"));
        let (id, m) = methods
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, m)| {
                m["httpMethod"] == verb.as_str()
                    && matches_template(rel, m["path"].as_str().unwrap())
            })
            .unwrap_or_else(|| panic!("{verb} {rel} is no Compute v1 method in the fixture"));
        assert!(
            query_keys(&q).is_subset(&strings(&m["queryParameters"])),
            "{id}: query {q}"
        );
        seen.insert(id.clone());
    }
    for id in [
        "instances.insert",
        "instances.get",
        "instances.delete",
        "instances.aggregatedList",
        "zoneOperations.get",
    ] {
        assert!(seen.contains(id), "{id} not exercised: {seen:?}");
    }

    // The insert bodies against the Instance schema, required fields included.
    let inserts = bodies(
        &fake.server,
        "POST",
        "/compute/v1/projects/demo-project/zones/us-central1-a/instances",
    )
    .await;
    assert_eq!(inserts.len(), 2);
    let mut errors = Vec::new();
    for body in &inserts {
        schemas.check(
            body,
            &json!({"$ref": "Instance"}),
            "Instance",
            Some("compute.instances.insert"),
            &mut errors,
        );
    }
    assert!(
        errors.is_empty(),
        "insert bodies do not match the discovery document: {errors:#?}"
    );
    // A deliberately wrong body is caught (the check can fail).
    let mut errors = Vec::new();
    schemas.check(
        &json!({"machineType": 3, "labelz": {}}),
        &json!({"$ref": "Instance"}),
        "Instance",
        Some("compute.instances.insert"),
        &mut errors,
    );
    assert!(errors.len() >= 3, "{errors:?}");

    // The fake's answers against Operation and Instance.
    let mut errors = Vec::new();
    for status in ["PENDING", "RUNNING", "DONE"] {
        schemas.check(
            &gce_operation("op-1", status, "x", status == "DONE"),
            &json!({"$ref": "Operation"}),
            "Operation",
            None,
            &mut errors,
        );
    }
    let instance = gce_instance(&inserts[0], "RUNNING");
    schemas.check(
        &instance,
        &json!({"$ref": "Instance"}),
        "Instance",
        None,
        &mut errors,
    );
    schemas.check(
        &gce_instance(&inserts[0], "PROVISIONING"),
        &json!({"$ref": "Instance"}),
        "Instance",
        None,
        &mut errors,
    );
    assert!(
        errors.is_empty(),
        "the fake's answers do not match the discovery document: {errors:#?}"
    );
}
