//! Google Compute Engine instances over the Compute v1 REST API (no `gcloud`).
//!
//! `instances.insert` (with a `requestId`, so a resent insert is not acted on twice),
//! then the zone operation is polled to `DONE`, then the instance until `RUNNING` with
//! an external IPv4 (`natIP`). With
//! [`PrebuiltImages::docker_ready`](super::PrebuiltImages::docker_ready) the instance
//! boots Container-Optimized OS (image family `cos-stable`); otherwise Ubuntu with a
//! `startup-script` that installs Docker. The SSH key goes into the `ssh-keys`
//! metadata for the user [`SSH_USER`]; owner and labels are GCE labels.
//!
//! The OAuth access token comes from the environment (see
//! [`GCP_TOKEN_VAR`](super::GCP_TOKEN_VAR)); this module does not mint or refresh
//! tokens. Not covered: service accounts, custom networks, disks beyond the boot disk.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::common::{
    CreateRequest, already_made, create_once, gone_is_fine, owned_by_name, string_labels, text_at,
    unexpected, wait_running,
};
use super::error::{CloudError, Result};
use super::http::ApiClient;
use super::spec::{Cloud, ImageChoice, OWNER_LABEL, OwnerTag, Vm, VmSpec, VmStatus};
use super::{Backoff, CloudConfig, Deadline, VmProvisioner, parse_ipv4};

/// Container-Optimized OS, stable channel (Docker preinstalled).
pub const COS_IMAGE: &str = "projects/cos-cloud/global/images/family/cos-stable";
/// The plain image used when a Docker-ready image is not wanted.
pub const PLAIN_IMAGE: &str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64";
/// The login the `ssh-keys` metadata creates.
pub const SSH_USER: &str = "headstart";

/// The Compute Engine provisioner.
#[derive(Debug)]
pub struct Gcp {
    api: ApiClient,
    project: String,
}

impl Gcp {
    /// A provisioner for `config` (base URL ends in `/compute/v1`; needs a project).
    ///
    /// # Errors
    /// [`CloudError::MissingConfig`] without a project.
    pub fn new(config: CloudConfig) -> Result<Self> {
        let project = config.project.clone().ok_or(CloudError::MissingConfig {
            cloud: Cloud::Gcp,
            var: super::GCP_PROJECT_VAR,
            hint: "set it to the project id that will hold the instances",
        })?;
        Ok(Self {
            api: ApiClient::new(config)?,
            project,
        })
    }

    /// The image a spec boots on GCP.
    ///
    /// # Errors
    /// [`CloudError::InvalidSpec`] for user data together with Container-Optimized OS.
    pub fn image_choice(spec: &VmSpec) -> Result<ImageChoice> {
        ImageChoice::resolve(spec, spec.images.docker_ready, COS_IMAGE, PLAIN_IMAGE)
    }

    fn zone_path(&self, zone: &str) -> String {
        format!("/projects/{}/zones/{zone}", self.project)
    }

    fn bad(what: &str) -> CloudError {
        unexpected(Cloud::Gcp, what)
    }

    async fn instance(&self, zone: &str, name: &str) -> Result<Option<Vm>> {
        match self
            .api
            .get(&format!("{}/instances/{name}", self.zone_path(zone)), &[])
            .await
        {
            Ok(body) => Ok(Some(parse_instance(&body)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn by_name(&self, spec: &VmSpec, zone: &str) -> Result<Option<Vm>> {
        let found = self.instance(zone, spec.name.as_str()).await?;
        owned_by_name(Cloud::Gcp, spec, found)
    }

    async fn wait_operation(
        &self,
        zone: &str,
        op: &str,
        vm: &Vm,
        deadline: Deadline,
    ) -> Result<()> {
        let mut poll = Backoff::new(self.api.config.poll_interval);
        loop {
            let body = self
                .api
                .get(&format!("{}/operations/{op}", self.zone_path(zone)), &[])
                .await?;
            if body.get("status").and_then(Value::as_str) == Some("DONE") {
                if let Some(errors) = body.pointer("/error/errors").and_then(Value::as_array) {
                    let message = errors
                        .iter()
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e.get("code").and_then(Value::as_str).unwrap_or("ERROR"),
                                e.get("message").and_then(Value::as_str).unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(CloudError::Failed {
                        cloud: Cloud::Gcp,
                        message: self.api.redact(&format!(
                            "creating instance `{}` failed: {message}",
                            vm.name
                        )),
                    });
                }
                return Ok(());
            }
            deadline
                .pause(poll.next_wait(), || {
                    format!("waiting for the insert operation of instance `{}`", vm.name)
                })
                .await?;
        }
    }
}

fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn parse_instance(i: &Value) -> Result<Vm> {
    let name = i
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Gcp::bad("an instance without a name"))?;
    let raw_status = text_at(i, "/status");
    let status = match raw_status.as_str() {
        "PROVISIONING" | "STAGING" | "PENDING" | "REPAIRING" => VmStatus::Provisioning,
        "RUNNING" => VmStatus::Running,
        "STOPPING" | "STOPPED" | "SUSPENDING" | "SUSPENDED" | "TERMINATED" | "PENDING_STOP" => {
            VmStatus::Stopped
        }
        "DEPROVISIONING" => VmStatus::Deleting,
        _ => VmStatus::Other,
    };
    let nat_ip = i
        .get("networkInterfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|n| {
            n.get("accessConfigs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find_map(|a| a.get("natIP").and_then(Value::as_str));
    let labels = string_labels(i.get("labels"));
    Ok(Vm {
        cloud: Cloud::Gcp,
        id: name.to_owned(),
        name: name.to_owned(),
        status,
        raw_status,
        public_ipv4: parse_ipv4(nat_ip),
        region: i
            .get("zone")
            .and_then(Value::as_str)
            .map(last_segment)
            .unwrap_or("")
            .to_owned(),
        image: None,
        labels,
        pending_operation: None,
    })
}

#[async_trait]
impl VmProvisioner for Gcp {
    fn cloud(&self) -> Cloud {
        Cloud::Gcp
    }

    async fn create(&self, spec: &VmSpec) -> Result<Vm> {
        let image = Self::image_choice(spec)?;
        let labels = spec.all_labels()?;
        let zone = spec.region_or_default(Cloud::Gcp).to_owned();
        if let Some(vm) = already_made(self.by_name(spec, &zone).await?, "instance") {
            return Ok(vm);
        }
        let mut metadata = vec![
            json!({"key": "ssh-keys", "value": format!("{SSH_USER}:{}", spec.ssh_key.key())}),
            json!({"key": "enable-oslogin", "value": "FALSE"}),
        ];
        if let Some(script) = image.user_data() {
            metadata.push(json!({"key": "startup-script", "value": script}));
        }
        let body = json!({
            "name": spec.name.as_str(),
            "machineType": format!("zones/{zone}/machineTypes/{}", spec.size_or_default(Cloud::Gcp)),
            "labels": labels,
            "disks": [{
                "boot": true,
                "autoDelete": true,
                "initializeParams": {"sourceImage": image.image()},
            }],
            "networkInterfaces": [{
                "network": "global/networks/default",
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}],
            }],
            "metadata": {"items": metadata},
        });
        // The same requestId on every attempt: Compute Engine ignores a repeat.
        let request_id = uuid::Uuid::new_v4().to_string();
        let path = format!("{}/instances", self.zone_path(&zone));
        let query = [("requestId", request_id)];
        let request = CreateRequest {
            noun: "instance",
            find: || self.by_name(spec, &zone),
            post: || self.api.post(&path, &query, &body),
            parse: |op: Value| {
                let op_name = op.get("name").and_then(Value::as_str).map(str::to_owned);
                Ok(Vm {
                    cloud: Cloud::Gcp,
                    id: spec.name.to_string(),
                    name: spec.name.to_string(),
                    status: VmStatus::Provisioning,
                    raw_status: op
                        .get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("PENDING")
                        .to_owned(),
                    public_ipv4: None,
                    region: zone.clone(),
                    image: Some(image.image().to_owned()),
                    labels,
                    pending_operation: op_name,
                })
            },
            name_taken: |e: &CloudError| matches!(e, CloudError::Rejected { status: 409, .. }),
            // The same requestId on every attempt: Compute Engine ignores a repeat.
            look_before_retry: false,
        };
        create_once(self, request).await
    }

    async fn get(&self, vm: &Vm) -> Result<Vm> {
        self.instance(&vm.region, &vm.id)
            .await?
            .ok_or_else(|| CloudError::NotFound {
                cloud: Cloud::Gcp,
                name: vm.name.clone(),
            })
    }

    async fn wait_active(&self, vm: &Vm, deadline: Deadline) -> Result<Vm> {
        if let Some(op) = &vm.pending_operation {
            self.wait_operation(&vm.region, op, vm, deadline).await?;
        }
        let poll = self.api.config.poll_interval;
        wait_running(self, vm, deadline, poll, "instance", "run").await
    }

    async fn destroy(&self, vm: &Vm) -> Result<()> {
        let path = format!("{}/instances/{}", self.zone_path(&vm.region), vm.id);
        gone_is_fine(self.api.delete(&path).await)
    }

    async fn list(&self, owner: &OwnerTag) -> Result<Vec<Vm>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let path = format!("/projects/{}/aggregated/instances", self.project);
        // The label filter saves pages; the owner is checked here as well, so when the
        // API refuses the filter expression (400) the listing goes on without it.
        let mut filter = Some(format!("labels.{OWNER_LABEL} = \"{owner}\""));
        loop {
            let mut query = Vec::new();
            if let Some(f) = &filter {
                query.push(("filter", f.clone()));
            }
            if let Some(t) = &token {
                query.push(("pageToken", t.clone()));
            }
            let body = match self.api.get(&path, &query).await {
                Ok(body) => body,
                Err(CloudError::Rejected {
                    status: 400,
                    message,
                    ..
                }) if filter.is_some() => {
                    tracing::warn!(%message, "instance filter refused; listing without it");
                    filter = None;
                    token = None;
                    out.clear();
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(items) = body.get("items").and_then(Value::as_object) {
                for scoped in items.values() {
                    for i in scoped
                        .get("instances")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let vm = parse_instance(i)?;
                        if vm.is_owned_by(owner) {
                            out.push(vm);
                        }
                    }
                }
            }
            match body.get("nextPageToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}
