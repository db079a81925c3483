//! Hetzner Cloud servers over the v1 REST API.
//!
//! `POST /v1/servers`, then the returned action is followed (`GET /v1/actions/{id}`)
//! to `success`, then the server until `running` with a public IPv4. With
//! [`PrebuiltImages::docker_ready`](super::PrebuiltImages::docker_ready) the server
//! boots the `docker-ce` app image and gets no user data. The SSH
//! key is registered in the project once (`/v1/ssh_keys`, found again by its key
//! material). Owner and labels are Hetzner labels; listing uses a label selector.
//!
//! Not covered: networks, volumes, firewalls, placement groups.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::common::{
    CreateRequest, KeyRegistry, NextPage, already_made, create_once, ensure_ssh_key, gone_is_fine,
    holds_key, member, owned_by_name, string_labels, text_at, unexpected, wait_running, walk_pages,
};
use super::error::{CloudError, Result};
use super::http::ApiClient;
use super::spec::{Cloud, ImageChoice, OWNER_LABEL, OwnerTag, SshPublicKey, Vm, VmSpec, VmStatus};
use super::{Backoff, CloudConfig, Deadline, VmProvisioner, parse_ipv4};

/// The Docker CE app image (Docker preinstalled).
pub const DOCKER_IMAGE: &str = "docker-ce";
/// The plain image used when a Docker-ready image is not wanted.
pub const PLAIN_IMAGE: &str = "ubuntu-24.04";

/// The Hetzner Cloud provisioner.
#[derive(Debug)]
pub struct Hetzner {
    api: ApiClient,
}

impl Hetzner {
    /// A provisioner for `config` (its base URL ends in `/v1`).
    ///
    /// # Errors
    /// [`CloudError::Transport`] when the HTTP client cannot be built.
    pub fn new(config: CloudConfig) -> Result<Self> {
        Ok(Self {
            api: ApiClient::new(config)?,
        })
    }

    /// The image a spec boots on Hetzner.
    ///
    /// # Errors
    /// [`CloudError::InvalidSpec`] for user data together with the `docker-ce` image.
    pub fn image_choice(spec: &VmSpec) -> Result<ImageChoice> {
        ImageChoice::resolve(spec, spec.images.docker_ready, DOCKER_IMAGE, PLAIN_IMAGE)
    }

    fn bad(what: &str) -> CloudError {
        unexpected(Cloud::Hetzner, what)
    }

    async fn paged(
        &self,
        path: &str,
        field: &str,
        filter: &[(&str, String)],
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let next_page: NextPage = |answer, _| {
            answer
                .pointer("/meta/pagination/next_page")
                .and_then(Value::as_u64)
        };
        walk_pages(&self.api, path, field, filter, 50, next_page, |items| {
            out.extend(items);
            Ok(false)
        })
        .await?;
        Ok(out)
    }

    async fn by_name(&self, spec: &VmSpec) -> Result<Option<Vm>> {
        let servers = self
            .paged("/servers", "servers", &[("name", spec.name.to_string())])
            .await?;
        let mut found = servers
            .iter()
            .map(parse_server)
            .filter(|vm| vm.as_ref().is_ok_and(|vm| vm.name == spec.name.as_str()));
        owned_by_name(Cloud::Hetzner, spec, found.next().transpose()?)
    }

    async fn follow_action(&self, id: &str, vm: &Vm, deadline: Deadline) -> Result<()> {
        let mut poll = Backoff::new(self.api.config.poll_interval);
        loop {
            let body = self.api.get(&format!("/actions/{id}"), &[]).await?;
            let action = member(Cloud::Hetzner, &body, "action", "answer")?;
            match action.get("status").and_then(Value::as_str) {
                Some("success") => return Ok(()),
                Some("error") => {
                    let message = action
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("no details");
                    let code = action
                        .pointer("/error/code")
                        .and_then(Value::as_str)
                        .unwrap_or("error");
                    return Err(CloudError::Failed {
                        cloud: Cloud::Hetzner,
                        message: self.api.redact(&format!(
                            "creating server `{}` failed ({code}): {message}",
                            vm.name
                        )),
                    });
                }
                other => {
                    let progress = action.get("progress").and_then(Value::as_u64).unwrap_or(0);
                    tracing::debug!(action = id, status = ?other, progress, "create action running");
                }
            }
            deadline
                .pause(poll.next_wait(), || {
                    format!("waiting for the create action of server `{}`", vm.name)
                })
                .await?;
        }
    }
}

/// Project keys: `/ssh_keys`, all pages.
#[async_trait]
impl KeyRegistry for Hetzner {
    const CLOUD: Cloud = Cloud::Hetzner;
    // uniqueness_error
    const CONFLICT: u16 = 409;

    async fn find_key(&self, key: &SshPublicKey) -> Result<Option<Value>> {
        let keys = self.paged("/ssh_keys", "ssh_keys", &[]).await?;
        Ok(keys.into_iter().find(|k| holds_key(k, key)))
    }

    async fn register_key(&self, key: &SshPublicKey) -> Result<Value> {
        let body = json!({
            "name": key.cloud_name(),
            "public_key": key.to_string(),
            "labels": {"headstart-managed": "true"},
        });
        self.api.post("/ssh_keys", &[], &body).await
    }
}

fn parse_server(s: &Value) -> Result<Vm> {
    let id = match s.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Hetzner::bad("a server without an id")),
    };
    let raw_status = text_at(s, "/status");
    let status = match raw_status.as_str() {
        "initializing" | "starting" => VmStatus::Provisioning,
        "running" => VmStatus::Running,
        "off" | "stopping" => VmStatus::Stopped,
        "deleting" => VmStatus::Deleting,
        _ => VmStatus::Other,
    };
    let labels = string_labels(s.get("labels"));
    Ok(Vm {
        cloud: Cloud::Hetzner,
        id,
        name: text_at(s, "/name"),
        status,
        raw_status,
        public_ipv4: parse_ipv4(s.pointer("/public_net/ipv4/ip").and_then(Value::as_str)),
        region: s
            .pointer("/datacenter/location/name")
            .or_else(|| s.pointer("/location/name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        image: s
            .pointer("/image/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        labels,
        pending_operation: None,
    })
}

#[async_trait]
impl VmProvisioner for Hetzner {
    fn cloud(&self) -> Cloud {
        Cloud::Hetzner
    }

    async fn create(&self, spec: &VmSpec) -> Result<Vm> {
        let image = Self::image_choice(spec)?;
        let labels = spec.all_labels()?;
        if let Some(vm) = already_made(self.by_name(spec).await?, "server") {
            return Ok(vm);
        }
        let key_id = ensure_ssh_key(self, &spec.ssh_key).await?;
        let mut body = json!({
            "name": spec.name.as_str(),
            "server_type": spec.size_or_default(Cloud::Hetzner),
            "image": image.image(),
            "location": spec.region_or_default(Cloud::Hetzner),
            "start_after_create": true,
            "ssh_keys": [key_id],
            "labels": labels,
            "public_net": {"enable_ipv4": true, "enable_ipv6": true},
        });
        if let Some(user_data) = image.user_data() {
            body["user_data"] = Value::String(user_data.to_owned());
        }
        let request = CreateRequest {
            noun: "server",
            find: || self.by_name(spec),
            post: || self.api.post("/servers", &[], &body),
            parse: |answer: Value| {
                let mut vm =
                    parse_server(member(Cloud::Hetzner, &answer, "server", "create answer")?)?;
                vm.pending_operation = answer.pointer("/action/id").map(|id| match id {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                vm.image.get_or_insert_with(|| image.image().to_owned());
                Ok(vm)
            },
            name_taken: |e: &CloudError| matches!(e, CloudError::Rejected { status: 409, code, .. } if code.contains("uniqueness")),
            look_before_retry: true,
        };
        create_once(self, request).await
    }

    async fn get(&self, vm: &Vm) -> Result<Vm> {
        let body = self.api.get(&format!("/servers/{}", vm.id), &[]).await?;
        parse_server(member(Cloud::Hetzner, &body, "server", "answer")?)
    }

    async fn wait_active(&self, vm: &Vm, deadline: Deadline) -> Result<Vm> {
        if let Some(action) = &vm.pending_operation {
            self.follow_action(action, vm, deadline).await?;
        }
        let poll = self.api.config.poll_interval;
        wait_running(self, vm, deadline, poll, "server", "run").await
    }

    async fn destroy(&self, vm: &Vm) -> Result<()> {
        gone_is_fine(self.api.delete(&format!("/servers/{}", vm.id)).await)
    }

    async fn list(&self, owner: &OwnerTag) -> Result<Vec<Vm>> {
        let selector = format!("{OWNER_LABEL}=={owner}");
        let servers = self
            .paged("/servers", "servers", &[("label_selector", selector)])
            .await?;
        let vms = servers
            .iter()
            .map(parse_server)
            .collect::<Result<Vec<_>>>()?;
        Ok(vms.into_iter().filter(|vm| vm.is_owned_by(owner)).collect())
    }
}
