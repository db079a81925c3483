//! Stateful fake cloud APIs (wiremock) that follow the documented request and response
//! shapes of DigitalOcean v2, Hetzner Cloud v1 and Compute Engine v1, plus helpers the
//! cloud tests share. `cloud_spec` checks these shapes against the specs shipped in
//! pydo, hcloud and google-api-python-client.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use provisioners::cloud::{
    ApiToken, Cloud, CloudConfig, OwnerTag, PrebuiltImages, Readiness, SshPublicKey, VmName, VmSpec,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The token every fake expects; tests assert it never leaks.
pub(crate) const TOKEN: &str = "tok-3f9a1c7e5b2d4f60a8c9e1d2b3a4c5d6";
pub(crate) const PUBKEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGs7Zp2v0Q8cM4n3k6mXbq1s9t2u3v4w5x6y7z8A9B0C alice@laptop";

pub(crate) fn owner() -> OwnerTag {
    OwnerTag::new("alice").unwrap()
}

pub(crate) fn spec(name: &str, images: PrebuiltImages) -> VmSpec {
    VmSpec::new(
        VmName::new(name).unwrap(),
        owner(),
        SshPublicKey::parse(PUBKEY).unwrap(),
        images,
    )
}

/// Which prebuilt images a spec may boot: DigitalOcean's marketplace image, the
/// Docker-ready image of Hetzner and GCP.
pub(crate) fn prebuilt(marketplace: bool, docker_ready: bool) -> PrebuiltImages {
    PrebuiltImages {
        marketplace,
        docker_ready,
    }
}

pub(crate) fn config(cloud: Cloud, server: &MockServer, prefix: &str) -> CloudConfig {
    let mut c = CloudConfig::new(
        cloud,
        ApiToken::new(TOKEN).unwrap(),
        format!("{}{prefix}", server.uri()),
    );
    c.poll_interval = Duration::from_millis(20);
    c.max_retry_wait = Duration::from_secs(3);
    c.max_attempts = 4;
    if cloud == Cloud::Gcp {
        c = c.with_project("demo-project");
    }
    c
}

/// Readiness that stops after the SSH banner (no `ssh` client needed).
pub(crate) fn banner_readiness(port: u16, deadline: Duration) -> Readiness {
    let mut r = Readiness::new(std::env::temp_dir().join("headstart-unused-known-hosts"));
    r.ssh_port = port;
    r.ssh_command = false;
    r.deadline = deadline;
    r.retry_interval = Duration::from_millis(30);
    r
}

/// A loopback TCP server that greets like sshd (`SSH-2.0-...`).
pub(crate) async fn fake_sshd_banner() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 fake\r\n").await;
        }
    });
    port
}

/// A loopback port with nothing listening.
pub(crate) fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Bodies of the requests the server received for `verb` on exactly `path`.
pub(crate) async fn bodies(server: &MockServer, verb: &str, exact: &str) -> Vec<Value> {
    let re = |p: &str| p == exact;
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && re(r.url.path()))
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// Requests (method, path, query) the server received.
pub(crate) async fn requests(server: &MockServer) -> Vec<(String, String, String)> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.url.path().to_owned(),
                r.url.query().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Captures everything logged through `tracing` in this test process (TRACE level).
/// A process-wide subscriber: a per-thread one misses events whose callsite another
/// test thread registered first. Tests assert on their own unique strings.
pub(crate) struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub(crate) fn start() -> Option<Self> {
        static BUF: std::sync::OnceLock<Option<Arc<Mutex<Vec<u8>>>>> = std::sync::OnceLock::new();
        BUF.get_or_init(|| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let writer = buf.clone();
            // Everything from this crate and its HTTP stack; other crates' warnings.
            let targets = tracing_subscriber::filter::Targets::new()
                .with_target("provisioners", tracing::Level::TRACE)
                .with_target("reqwest", tracing::Level::TRACE)
                .with_target("hyper", tracing::Level::TRACE)
                .with_target("hyper_util", tracing::Level::TRACE)
                .with_default(tracing::Level::WARN);
            use tracing_subscriber::layer::SubscriberExt as _;
            let subscriber = tracing_subscriber::registry().with(targets).with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || CaptureWriter(writer.clone())),
            );
            tracing::subscriber::set_global_default(subscriber)
                .ok()
                .map(|()| buf)
        })
        .clone()
        .map(Self)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut kept = self.0.lock().unwrap();
        // Bounded: the tests share one process-wide capture.
        if kept.len() < 16 << 20 {
            kept.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_response(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

fn auth() -> wiremock::matchers::HeaderExactMatcher {
    header("authorization", format!("Bearer {TOKEN}").as_str())
}

fn query(req: &Request) -> BTreeMap<String, String> {
    req.url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

// ------------------------------------------------------------------ DigitalOcean

/// A canned failure answer: status, JSON body, extra headers.
pub(crate) type Failure = (u16, Value, Vec<(&'static str, String)>);

/// How the fake DigitalOcean behaves.
#[derive(Clone, Default)]
pub(crate) struct DoBehaviour {
    /// GET polls of a droplet before it turns `active` (`None`: never).
    pub(crate) active_after: Option<usize>,
    /// Answer the first N droplet creates with this (status, body, headers).
    pub(crate) create_failures: Vec<Failure>,
    /// Store the droplet even when answering a create with a failure (the server
    /// acted, then the answer was lost).
    pub(crate) store_on_failure: bool,
    /// Answer creates only after this long (the droplet exists at once).
    pub(crate) create_delay: Option<Duration>,
    /// The first key registration races another client: the key is stored, but the
    /// answer is 422 "SSH Key is already in use on your account".
    pub(crate) key_race: bool,
}

#[derive(Default)]
pub(crate) struct DoState {
    pub(crate) droplets: Vec<Value>,
    pub(crate) keys: Vec<Value>,
    pub(crate) polls: BTreeMap<u64, usize>,
    pub(crate) creates: usize,
    pub(crate) deleted: Vec<u64>,
    next_id: u64,
}

pub(crate) struct FakeDo {
    pub(crate) server: MockServer,
    pub(crate) state: Arc<Mutex<DoState>>,
}

/// A droplet as `GET /v2/droplets/{id}` documents it.
pub(crate) fn do_droplet(id: u64, body: &Value, status: &str, ip: Option<&str>) -> Value {
    let v4: Vec<Value> = match ip {
        Some(ip) => vec![
            json!({"ip_address": "10.128.0.5", "netmask": "255.255.0.0", "gateway": "10.128.0.1", "type": "private"}),
            json!({"ip_address": ip, "netmask": "255.255.240.0", "gateway": "127.0.0.254", "type": "public"}),
        ],
        None => vec![],
    };
    json!({
        "id": id,
        "name": body["name"],
        "memory": 1024,
        "vcpus": 1,
        "disk": 25,
        "locked": false,
        "status": status,
        "created_at": "2026-11-25T17:00:00Z",
        "features": [],
        "backup_ids": [],
        "snapshot_ids": [],
        "volume_ids": [],
        "image": {"id": 112929454, "name": "Docker on Ubuntu", "distribution": "Ubuntu", "slug": body["image"], "public": true},
        "size": {"slug": body["size"]},
        "size_slug": body["size"],
        "networks": {"v4": v4, "v6": []},
        "region": {"name": "New York 3", "slug": body["region"], "features": [], "available": true, "sizes": []},
        "tags": body["tags"],
    })
}

impl FakeDo {
    pub(crate) async fn start(behaviour: DoBehaviour) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(DoState {
            next_id: 3164444,
            ..Default::default()
        }));

        let st = state.clone();
        Mock::given(method("GET"))
            .and(path("/v2/account/keys"))
            .and(auth())
            .respond_with(move |_: &Request| {
                let s = st.lock().unwrap();
                json_response(
                    200,
                    json!({"ssh_keys": s.keys, "links": {}, "meta": {"total": s.keys.len()}}),
                )
            })
            .mount(&server)
            .await;
        let st = state.clone();
        let key_race = behaviour.key_race;
        Mock::given(method("POST")).and(path("/v2/account/keys")).and(auth())
            .respond_with(move |req: &Request| {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let mut s = st.lock().unwrap();
                let key = json!({"id": 512189 + s.keys.len(), "fingerprint": "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa",
                    "public_key": body["public_key"], "name": body["name"]});
                s.keys.push(key.clone());
                if key_race && s.keys.len() == 1 {
                    return json_response(422, json!({"id": "unprocessable_entity", "message": "SSH Key is already in use on your account"}));
                }
                json_response(201, json!({"ssh_key": key}))
            })
            .mount(&server).await;
        let st = state.clone();
        Mock::given(method("GET"))
            .and(path("/v2/droplets"))
            .and(auth())
            .respond_with(move |req: &Request| {
                let q = query(req);
                let s = st.lock().unwrap();
                let list: Vec<Value> = s
                    .droplets
                    .iter()
                    .filter(|d| {
                        q.get("name").is_none_or(|n| d["name"] == n.as_str())
                            && q.get("tag_name").is_none_or(|t| {
                                d["tags"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .any(|x| x == t.as_str())
                            })
                    })
                    .cloned()
                    .collect();
                json_response(
                    200,
                    json!({"droplets": list, "links": {}, "meta": {"total": list.len()}}),
                )
            })
            .mount(&server)
            .await;
        let st = state.clone();
        let failures = Arc::new(Mutex::new(behaviour.create_failures.clone()));
        let store_on_failure = behaviour.store_on_failure;
        let create_delay = behaviour.create_delay;
        Mock::given(method("POST")).and(path("/v2/droplets")).and(auth())
            .respond_with(move |req: &Request| {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let mut s = st.lock().unwrap();
                let failure = { let mut f = failures.lock().unwrap(); if f.is_empty() { None } else { Some(f.remove(0)) } };
                if let Some((status, fbody, headers)) = failure {
                    if store_on_failure {
                        s.next_id += 1;
                        let id = s.next_id;
                        s.creates += 1;
                        s.droplets.push(do_droplet(id, &body, "new", None));
                    }
                    let mut r = json_response(status, fbody);
                    for (k, v) in headers { r = r.insert_header(k, v.as_str()); }
                    return r;
                }
                s.next_id += 1;
                s.creates += 1;
                let id = s.next_id;
                let droplet = do_droplet(id, &body, "new", None);
                s.droplets.push(droplet.clone());
let r = json_response(202, json!({"droplet": droplet, "links": {"actions": [
                    {"id": 7515, "rel": "create", "href": format!("https://api.digitalocean.com/v2/actions/{}", 7515)}]}}));
                match create_delay { Some(d) => r.set_delay(d), None => r }
            })
            .mount(&server).await;
        let st = state.clone();
        let active_after = behaviour.active_after;
        Mock::given(method("GET")).and(path_regex(r"^/v2/droplets/\d+$")).and(auth())
            .respond_with(move |req: &Request| {
                let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
                let mut s = st.lock().unwrap();
                let n = { let p = s.polls.entry(id).or_default(); *p += 1; *p };
                let Some(pos) = s.droplets.iter().position(|d| d["id"] == id) else {
                    return json_response(404, json!({"id": "not_found", "message": "The resource you were accessing could not be found."}));
                };
                if active_after.is_some_and(|after| n > after) {
                    let d = s.droplets[pos].clone();
                    let mut active = do_droplet(id, &json!({"name": d["name"], "image": d["image"]["slug"], "size": d["size_slug"],
                        "region": d["region"]["slug"], "tags": d["tags"]}), "active", Some("127.0.0.1"));
                    active["status"] = json!("active");
                    s.droplets[pos] = active;
                }
                json_response(200, json!({"droplet": s.droplets[pos]}))
            })
            .mount(&server).await;
        let st = state.clone();
        Mock::given(method("DELETE")).and(path_regex(r"^/v2/droplets/\d+$")).and(auth())
            .respond_with(move |req: &Request| {
                let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
                let mut s = st.lock().unwrap();
                let before = s.droplets.len();
                s.droplets.retain(|d| d["id"] != id);
                if s.droplets.len() == before {
                    return json_response(404, json!({"id": "not_found", "message": "The resource you were accessing could not be found."}));
                }
                s.deleted.push(id);
                ResponseTemplate::new(204)
            })
            .mount(&server).await;
        Self { server, state }
    }

    pub(crate) fn config(&self) -> CloudConfig {
        config(Cloud::DigitalOcean, &self.server, "")
    }
}

// ------------------------------------------------------------------ Hetzner

#[derive(Clone, Default)]
pub(crate) struct HzBehaviour {
    /// Action polls before `success` (`None`: the action ends in `error`).
    pub(crate) action_success_after: Option<usize>,
    /// Answer the first N server creates with this (status, body, headers).
    pub(crate) create_failures: Vec<Failure>,
}

#[derive(Default)]
pub(crate) struct HzState {
    pub(crate) servers: Vec<Value>,
    pub(crate) keys: Vec<Value>,
    pub(crate) action_polls: usize,
    pub(crate) deleted: Vec<u64>,
    next_id: u64,
}

pub(crate) struct FakeHetzner {
    pub(crate) server: MockServer,
    pub(crate) state: Arc<Mutex<HzState>>,
}

/// A server as `GET /v1/servers/{id}` documents it.
pub(crate) fn hz_server(id: u64, body: &Value, status: &str) -> Value {
    json!({
        "id": id,
        "name": body["name"],
        "status": status,
        "created": "2026-11-25T17:00:00+00:00",
        "public_net": {"ipv4": {"id": 42, "ip": "127.0.0.1", "blocked": false, "dns_ptr": "static.1.0.0.127.clients.your-server.de"},
                       "ipv6": null, "floating_ips": [], "firewalls": []},
        "private_net": [],
        "server_type": {"id": 1, "name": body["server_type"], "cores": 2, "memory": 4.0, "disk": 40},
        "location": {"id": 2, "name": body["location"], "city": "Nuremberg", "country": "DE", "network_zone": "eu-central"},
        "image": {"id": 4711, "type": "app", "status": "available", "name": body["image"], "os_flavor": "ubuntu"},
        "iso": null,
        "rescue_enabled": false,
        "locked": false,
        "backup_window": null,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": 21990232555520u64,
        "protection": {"delete": false, "rebuild": false},
        "labels": body["labels"],
        "volumes": [],
        "primary_disk_size": 40,
        "placement_group": null,
    })
}

fn hz_action(id: u64, status: &str, server_id: u64) -> Value {
    let error = if status == "error" {
        json!({"code": "server_create_failed", "message": "no capacity in nbg1"})
    } else {
        Value::Null
    };
    json!({"id": id, "command": "create_server", "status": status, "progress": if status == "running" { 40 } else { 100 },
           "started": "2026-11-25T17:00:00+00:00", "finished": null,
           "resources": [{"id": server_id, "type": "server"}], "error": error})
}

impl FakeHetzner {
    pub(crate) async fn start(behaviour: HzBehaviour) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(HzState {
            next_id: 42000,
            ..Default::default()
        }));
        let meta = |n: usize| json!({"pagination": {"page": 1, "per_page": 50, "previous_page": null, "next_page": null, "last_page": 1, "total_entries": n}});

        let st = state.clone();
        Mock::given(method("GET"))
            .and(path("/v1/ssh_keys"))
            .and(auth())
            .respond_with(move |_: &Request| {
                let s = st.lock().unwrap();
                json_response(200, json!({"ssh_keys": s.keys, "meta": meta(s.keys.len())}))
            })
            .mount(&server)
            .await;
        let st = state.clone();
        Mock::given(method("POST")).and(path("/v1/ssh_keys")).and(auth())
            .respond_with(move |req: &Request| {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let mut s = st.lock().unwrap();
                let key = json!({"id": 2323 + s.keys.len(), "name": body["name"], "fingerprint": "b7:2f:30:a0:2f:6c:58:6c:21:04:58:61:ba:06:3b:2f",
                    "public_key": body["public_key"], "labels": body["labels"], "created": "2026-11-25T17:00:00+00:00"});
                s.keys.push(key.clone());
                json_response(201, json!({"ssh_key": key}))
            })
            .mount(&server).await;
        let st = state.clone();
        Mock::given(method("GET"))
            .and(path("/v1/servers"))
            .and(auth())
            .respond_with(move |req: &Request| {
                let q = query(req);
                let s = st.lock().unwrap();
                let list: Vec<Value> = s
                    .servers
                    .iter()
                    .filter(|d| {
                        q.get("name").is_none_or(|n| d["name"] == n.as_str())
                            && q.get("label_selector").is_none_or(|sel| {
                                let (k, v) = sel.split_once("==").unwrap();
                                d["labels"][k] == v
                            })
                    })
                    .cloned()
                    .collect();
                json_response(200, json!({"servers": list, "meta": meta(list.len())}))
            })
            .mount(&server)
            .await;
        let st = state.clone();
        let failures = Arc::new(Mutex::new(behaviour.create_failures.clone()));
        Mock::given(method("POST")).and(path("/v1/servers")).and(auth())
            .respond_with(move |req: &Request| {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let failure = { let mut f = failures.lock().unwrap(); if f.is_empty() { None } else { Some(f.remove(0)) } };
                if let Some((status, fbody, headers)) = failure {
                    let mut r = json_response(status, fbody);
                    for (k, v) in headers { r = r.insert_header(k, v.as_str()); }
                    return r;
                }
                let mut s = st.lock().unwrap();
                if s.servers.iter().any(|x| x["name"] == body["name"]) {
                    return json_response(409, json!({"error": {"code": "uniqueness_error", "message": "server name is already used", "details": {"fields": [{"name": "name"}]}}}));
                }
                s.next_id += 1;
                let id = s.next_id;
                let srv = hz_server(id, &body, "initializing");
                s.servers.push(srv.clone());
                json_response(201, json!({"server": srv, "action": hz_action(13, "running", id), "next_actions": [], "root_password": null}))
            })
            .mount(&server).await;
        let st = state.clone();
        let after = behaviour.action_success_after;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/actions/\d+$"))
            .and(auth())
            .respond_with(move |_: &Request| {
                let mut s = st.lock().unwrap();
                s.action_polls += 1;
                let server_id = s
                    .servers
                    .last()
                    .map(|x| x["id"].as_u64().unwrap())
                    .unwrap_or(0);
                let status = match after {
                    Some(n) if s.action_polls > n => {
                        for x in s.servers.iter_mut() {
                            x["status"] = json!("running");
                        }
                        "success"
                    }
                    Some(_) => "running",
                    None => "error",
                };
                json_response(200, json!({"action": hz_action(13, status, server_id)}))
            })
            .mount(&server)
            .await;
        let st = state.clone();
        Mock::given(method("GET")).and(path_regex(r"^/v1/servers/\d+$")).and(auth())
            .respond_with(move |req: &Request| {
                let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
                let s = st.lock().unwrap();
                match s.servers.iter().find(|x| x["id"] == id) {
                    Some(x) => json_response(200, json!({"server": x})),
                    None => json_response(404, json!({"error": {"code": "not_found", "message": "server not found", "details": {}}})),
                }
            })
            .mount(&server).await;
        let st = state.clone();
        Mock::given(method("DELETE")).and(path_regex(r"^/v1/servers/\d+$")).and(auth())
            .respond_with(move |req: &Request| {
                let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
                let mut s = st.lock().unwrap();
                let before = s.servers.len();
                s.servers.retain(|x| x["id"] != id);
                if s.servers.len() == before {
                    return json_response(404, json!({"error": {"code": "not_found", "message": "server not found", "details": {}}}));
                }
                s.deleted.push(id);
                let mut a = hz_action(14, "running", id);
                a["command"] = json!("delete_server");
                json_response(200, json!({"action": a}))
            })
            .mount(&server).await;
        Self { server, state }
    }

    pub(crate) fn config(&self) -> CloudConfig {
        config(Cloud::Hetzner, &self.server, "/v1")
    }
}

// ------------------------------------------------------------------ Compute Engine

#[derive(Clone, Default)]
pub(crate) struct GceBehaviour {
    /// Operation polls before `DONE`.
    pub(crate) done_after: usize,
    /// The operation ends with an error.
    pub(crate) operation_error: bool,
    /// Answer the first N inserts with this (status, body) without acting.
    pub(crate) insert_failures: Vec<(u16, Value)>,
}

#[derive(Default)]
pub(crate) struct GceState {
    pub(crate) instances: Vec<Value>,
    pub(crate) request_ids: Vec<String>,
    acted: Vec<String>,
    pub(crate) op_polls: usize,
    pub(crate) deleted: Vec<String>,
}

pub(crate) struct FakeGce {
    pub(crate) server: MockServer,
    pub(crate) state: Arc<Mutex<GceState>>,
}

pub(crate) const GCE_PREFIX: &str = "/compute/v1";
const ZONE_URL: &str =
    "https://www.googleapis.com/compute/v1/projects/demo-project/zones/us-central1-a";

/// An instance as `instances.get` documents it.
pub(crate) fn gce_instance(body: &Value, status: &str) -> Value {
    json!({
        "kind": "compute#instance",
        "id": "8837416221960485375",
        "creationTimestamp": "2026-11-25T09:00:00.000-08:00",
        "name": body["name"],
        "status": status,
        "zone": ZONE_URL,
        "machineType": format!("{ZONE_URL}/machineTypes/e2-small"),
        "labels": body["labels"],
        "networkInterfaces": [{
            "kind": "compute#networkInterface",
            "name": "nic0",
            "network": "https://www.googleapis.com/compute/v1/projects/demo-project/global/networks/default",
            "networkIP": "10.128.0.7",
            "accessConfigs": [{"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT", "name": "External NAT", "natIP": "127.0.0.1", "networkTier": "PREMIUM"}],
        }],
        "selfLink": format!("{ZONE_URL}/instances/{}", body["name"].as_str().unwrap_or("")),
    })
}

pub(crate) fn gce_operation(name: &str, status: &str, target: &str, error: bool) -> Value {
    let mut op = json!({
        "kind": "compute#operation",
        "id": "1234567890",
        "name": name,
        "zone": ZONE_URL,
        "operationType": "insert",
        "targetLink": format!("{ZONE_URL}/instances/{target}"),
        "status": status,
        "progress": if status == "DONE" { 100 } else { 0 },
        "insertTime": "2026-11-25T09:00:00.000-08:00",
        "selfLink": format!("{ZONE_URL}/operations/{name}"),
    });
    if error {
        op["error"] = json!({"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "The zone does not have enough resources available."}]});
        op["httpErrorStatusCode"] = json!(503);
    }
    op
}

impl FakeGce {
    pub(crate) async fn start(behaviour: GceBehaviour) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(GceState::default()));
        let base = format!("{GCE_PREFIX}/projects/demo-project/zones/us-central1-a");

        let st = state.clone();
        let failures = Arc::new(Mutex::new(behaviour.insert_failures.clone()));
        let done_after = behaviour.done_after;
        Mock::given(method("POST")).and(path(format!("{base}/instances"))).and(auth())
            .respond_with(move |req: &Request| {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let q = query(req);
                let mut s = st.lock().unwrap();
                let rid = q.get("requestId").cloned().unwrap_or_default();
                s.request_ids.push(rid.clone());
                let failure = { let mut f = failures.lock().unwrap(); if f.is_empty() { None } else { Some(f.remove(0)) } };
                if let Some((status, fbody)) = failure {
                    return json_response(status, fbody);
                }
                let name = body["name"].as_str().unwrap().to_owned();
                // A requestId already acted on returns the original operation, as
                // Compute Engine documents; only a new request creates.
                let repeat = !rid.is_empty() && s.acted.contains(&rid);
                if !repeat && s.instances.iter().any(|i| i["name"] == name.as_str()) {
                    return json_response(409, json!({"error": {"code": 409, "message": format!("The resource 'projects/demo-project/zones/us-central1-a/instances/{name}' already exists"),
                        "errors": [{"message": "already exists", "domain": "global", "reason": "alreadyExists"}]}}));
                }
                if !repeat {
                    s.acted.push(rid);
                    s.instances.push(gce_instance(&body, "PROVISIONING"));
                }
                json_response(200, gce_operation("operation-1732550400000-insert", if done_after == 0 { "DONE" } else { "RUNNING" }, &name, false))
            })
            .mount(&server).await;
        let st = state.clone();
        let op_error = behaviour.operation_error;
        Mock::given(method("GET"))
            .and(path_regex(format!(r"^{base}/operations/[\w-]+$")))
            .and(auth())
            .respond_with(move |req: &Request| {
                let name = req.url.path().rsplit('/').next().unwrap().to_owned();
                let mut s = st.lock().unwrap();
                s.op_polls += 1;
                let done = s.op_polls > done_after;
                if done && !op_error {
                    for i in s.instances.iter_mut() {
                        i["status"] = json!("RUNNING");
                    }
                }
                let target = s
                    .instances
                    .last()
                    .map(|i| i["name"].as_str().unwrap().to_owned())
                    .unwrap_or_default();
                json_response(
                    200,
                    gce_operation(
                        &name,
                        if done { "DONE" } else { "RUNNING" },
                        &target,
                        done && op_error,
                    ),
                )
            })
            .mount(&server)
            .await;
        let st = state.clone();
        Mock::given(method("GET")).and(path_regex(format!(r"^{base}/instances/[a-z0-9-]+$"))).and(auth())
            .respond_with(move |req: &Request| {
                let name = req.url.path().rsplit('/').next().unwrap();
                let s = st.lock().unwrap();
                match s.instances.iter().find(|i| i["name"] == name) {
                    Some(i) => json_response(200, i.clone()),
                    None => json_response(404, json!({"error": {"code": 404, "message": format!("The resource 'projects/demo-project/zones/us-central1-a/instances/{name}' was not found"),
                        "errors": [{"message": "not found", "domain": "global", "reason": "notFound"}]}})),
                }
            })
            .mount(&server).await;
        let st = state.clone();
        Mock::given(method("DELETE"))
            .and(path_regex(format!(r"^{base}/instances/[a-z0-9-]+$")))
            .and(auth())
            .respond_with(move |req: &Request| {
                let name = req.url.path().rsplit('/').next().unwrap().to_owned();
                let mut s = st.lock().unwrap();
                s.instances.retain(|i| i["name"] != name.as_str());
                s.deleted.push(name.clone());
                let mut op =
                    gce_operation("operation-1732550499999-delete", "RUNNING", &name, false);
                op["operationType"] = json!("delete");
                json_response(200, op)
            })
            .mount(&server)
            .await;
        let st = state.clone();
        Mock::given(method("GET")).and(path(format!("{GCE_PREFIX}/projects/demo-project/aggregated/instances"))).and(auth())
            .respond_with(move |req: &Request| {
                let q = query(req);
                let s = st.lock().unwrap();
                // Supports the one filter form the provisioner sends: labels.K = "V".
                let filter = q.get("filter").cloned().unwrap_or_default();
                let (k, v) = filter.trim_start_matches("labels.").split_once(" = ").unwrap();
                let v = v.trim_matches('"');
                let list: Vec<Value> = s.instances.iter().filter(|i| i["labels"][k] == v).cloned().collect();
                json_response(200, json!({"kind": "compute#instanceAggregatedList", "id": "projects/demo-project/aggregated/instances",
                    "items": {"zones/us-central1-a": {"instances": list}, "zones/europe-west1-b": {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "none"}}}}))
            })
            .mount(&server).await;
        Self { server, state }
    }

    pub(crate) fn config(&self) -> CloudConfig {
        config(Cloud::Gcp, &self.server, GCE_PREFIX)
    }
}
