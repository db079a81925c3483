//! DigitalOcean droplets over the v2 REST API.
//!
//! `POST /v2/droplets`, then `GET /v2/droplets/{id}` until `status` is `active` with a
//! public IPv4. With [`PrebuiltImages::marketplace`](super::PrebuiltImages::marketplace)
//! the droplet boots the Docker marketplace image ([`MARKETPLACE_IMAGE`]) and gets no
//! user data. The SSH key is registered in
//! the account once (`/v2/account/keys`, found again by its key material). Owner and
//! labels become `key:value` tags; listing filters by the owner tag.
//!
//! Not covered: volumes, VPCs, projects, reserved IPs.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::common::{
    CreateRequest, KeyRegistry, already_made, create_once, ensure_ssh_key, gone_is_fine, holds_key,
    member, owned_by_name, text_at, unexpected, wait_running, walk_pages,
};
use super::error::{CloudError, Result};
use super::http::ApiClient;
use super::spec::{Cloud, ImageChoice, OWNER_LABEL, OwnerTag, SshPublicKey, Vm, VmSpec, VmStatus};
use super::{CloudConfig, Deadline, VmProvisioner, parse_ipv4};

/// The Docker 1-click marketplace image slug (Docker preinstalled).
pub const MARKETPLACE_IMAGE: &str = "docker-20-04";
/// The plain image used when marketplace images are not wanted.
pub const PLAIN_IMAGE: &str = "ubuntu-24-04-x64";

/// The DigitalOcean provisioner.
#[derive(Debug)]
pub struct DigitalOcean {
    api: ApiClient,
}

impl DigitalOcean {
    /// A provisioner for `config` (its base URL is the API root, without `/v2`).
    ///
    /// # Errors
    /// [`CloudError::Transport`] when the HTTP client cannot be built.
    pub fn new(config: CloudConfig) -> Result<Self> {
        Ok(Self {
            api: ApiClient::new(config)?,
        })
    }

    /// The image a spec boots on DigitalOcean.
    ///
    /// # Errors
    /// [`CloudError::InvalidSpec`] for user data together with the marketplace image.
    pub fn image_choice(spec: &VmSpec) -> Result<ImageChoice> {
        ImageChoice::resolve(
            spec,
            spec.images.marketplace,
            MARKETPLACE_IMAGE,
            PLAIN_IMAGE,
        )
    }

    fn owner_tag(owner: &OwnerTag) -> String {
        format!("{OWNER_LABEL}:{owner}")
    }

    /// Walks the pages of a `/v2` listing (200 items a page) while `visit` is not done.
    async fn pages(
        &self,
        path: &str,
        field: &str,
        filter: &[(&str, String)],
        visit: impl FnMut(Vec<Value>) -> Result<bool> + Send,
    ) -> Result<()> {
        walk_pages(&self.api, path, field, filter, 200, next_page, visit).await
    }

    async fn droplets(&self, filter: (&str, String)) -> Result<Vec<Vm>> {
        let mut out = Vec::new();
        self.pages("/v2/droplets", "droplets", &[filter], |items| {
            for d in &items {
                out.push(parse_droplet(d)?);
            }
            Ok(false)
        })
        .await?;
        Ok(out)
    }

    async fn by_name(&self, spec: &VmSpec) -> Result<Option<Vm>> {
        let found = self.droplets(("name", spec.name.to_string())).await?;
        let found = found.into_iter().find(|vm| vm.name == spec.name.as_str());
        owned_by_name(Cloud::DigitalOcean, spec, found)
    }
}

/// DigitalOcean links the next page while there is one.
fn next_page(answer: &Value, page: u64) -> Option<u64> {
    answer
        .pointer("/links/pages/next")
        .and_then(Value::as_str)
        .map(|_| page + 1)
}

/// Account keys: `/v2/account/keys`, paged until the key is found.
#[async_trait]
impl KeyRegistry for DigitalOcean {
    const CLOUD: Cloud = Cloud::DigitalOcean;
    // "SSH Key is already in use"
    const CONFLICT: u16 = 422;

    async fn find_key(&self, key: &SshPublicKey) -> Result<Option<Value>> {
        let mut found = None;
        self.pages("/v2/account/keys", "ssh_keys", &[], |keys| {
            found = keys.into_iter().find(|k| holds_key(k, key));
            Ok(found.is_some())
        })
        .await?;
        Ok(found)
    }

    async fn register_key(&self, key: &SshPublicKey) -> Result<Value> {
        self.api
            .post(
                "/v2/account/keys",
                &[],
                &json!({"name": key.cloud_name(), "public_key": key.to_string()}),
            )
            .await
    }
}

fn parse_droplet(d: &Value) -> Result<Vm> {
    let id = match d.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return Err(unexpected(Cloud::DigitalOcean, "a droplet without an id")),
    };
    let raw_status = text_at(d, "/status");
    let status = match raw_status.as_str() {
        "new" => VmStatus::Provisioning,
        "active" => VmStatus::Running,
        "off" | "archive" => VmStatus::Stopped,
        _ => VmStatus::Other,
    };
    let public_ipv4 = d
        .pointer("/networks/v4")
        .and_then(Value::as_array)
        .and_then(|v4| {
            v4.iter()
                .find(|n| n.get("type").and_then(Value::as_str) == Some("public"))
                .and_then(|n| n.get("ip_address").and_then(Value::as_str))
        })
        .and_then(|ip| parse_ipv4(Some(ip)));
    let labels: BTreeMap<String, String> = d
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(Value::as_str)
                .map(|t| match t.split_once(':') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (t.to_owned(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Vm {
        cloud: Cloud::DigitalOcean,
        id,
        name: text_at(d, "/name"),
        status,
        raw_status,
        public_ipv4,
        region: text_at(d, "/region/slug"),
        image: d
            .pointer("/image/slug")
            .and_then(Value::as_str)
            .or_else(|| d.pointer("/image/name").and_then(Value::as_str))
            .map(str::to_owned),
        labels,
        pending_operation: None,
    })
}

#[async_trait]
impl VmProvisioner for DigitalOcean {
    fn cloud(&self) -> Cloud {
        Cloud::DigitalOcean
    }

    async fn create(&self, spec: &VmSpec) -> Result<Vm> {
        let image = Self::image_choice(spec)?;
        let labels = spec.all_labels()?;
        if let Some(vm) = already_made(self.by_name(spec).await?, "droplet") {
            return Ok(vm);
        }
        let key_id = ensure_ssh_key(self, &spec.ssh_key).await?;
        let tags: Vec<String> = labels
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}:{v}")
                }
            })
            .collect();
        debug_assert!(tags.contains(&Self::owner_tag(&spec.owner)));
        let mut body = json!({
            "name": spec.name.as_str(),
            "region": spec.region_or_default(Cloud::DigitalOcean),
            "size": spec.size_or_default(Cloud::DigitalOcean),
            "image": image.image(),
            "ssh_keys": [key_id],
            "tags": tags,
            "ipv6": true,
        });
        if let Some(user_data) = image.user_data() {
            body["user_data"] = Value::String(user_data.to_owned());
        }
        let request = CreateRequest {
            noun: "droplet",
            find: || self.by_name(spec),
            post: || self.api.post("/v2/droplets", &[], &body),
            parse: |answer: Value| {
                let mut vm = parse_droplet(member(
                    Cloud::DigitalOcean,
                    &answer,
                    "droplet",
                    "create answer",
                )?)?;
                vm.image.get_or_insert_with(|| image.image().to_owned());
                Ok(vm)
            },
            // Droplet names need not be unique: a retry looks before sending again.
            name_taken: |_: &CloudError| false,
            look_before_retry: true,
        };
        create_once(self, request).await
    }

    async fn get(&self, vm: &Vm) -> Result<Vm> {
        let body = self
            .api
            .get(&format!("/v2/droplets/{}", vm.id), &[])
            .await?;
        parse_droplet(member(Cloud::DigitalOcean, &body, "droplet", "answer")?)
    }

    async fn wait_active(&self, vm: &Vm, deadline: Deadline) -> Result<Vm> {
        let poll = self.api.config.poll_interval;
        wait_running(self, vm, deadline, poll, "droplet", "become active").await
    }

    async fn destroy(&self, vm: &Vm) -> Result<()> {
        gone_is_fine(self.api.delete(&format!("/v2/droplets/{}", vm.id)).await)
    }

    async fn list(&self, owner: &OwnerTag) -> Result<Vec<Vm>> {
        let vms = self.droplets(("tag_name", Self::owner_tag(owner))).await?;
        Ok(vms.into_iter().filter(|vm| vm.is_owned_by(owner)).collect())
    }
}
