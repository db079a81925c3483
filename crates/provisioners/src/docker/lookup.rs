//! Which containers are this data directory's sandboxes (by label), which of them a
//! start record says is the ready one, and removing them.
//!
//! What it is not: the start states themselves (`state.rs`) or creating containers
//! (`create.rs`).

use std::collections::HashMap;
use std::path::Path;

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use sandbox_core::{Error, Result, SandboxName, SandboxProvider, SandboxState};

use super::engine::{engine_error, is_not_found, list_containers};
use super::state::StartRecord;
use super::{
    DockerProvider, KIND_WORKDIR, LABEL_DATA_DIR, LABEL_OWNER, LABEL_SANDBOX, LABEL_START,
    LABEL_WORKSPACE, LABEL_WORKSPACE_KIND, OWNER, PROVIDER,
};

/// One of this data directory's containers, from a listing.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) id: String,
    pub(super) name: SandboxName,
    pub(super) labels: HashMap<String, String>,
    pub(super) running: bool,
    /// When the engine created it (seconds since the epoch).
    pub(super) created: Option<i64>,
    /// Made before containers carried [`LABEL_DATA_DIR`] (its workspace is ours).
    pub(super) legacy: bool,
}

impl Found {
    pub(super) fn start(&self) -> Option<&str> {
        self.labels.get(LABEL_START).map(String::as_str)
    }
}

/// The container a start record says is the ready sandbox: the record's container, or
/// with no record an older version's container (which had none).
pub(super) fn ready_container<'a>(
    record: Option<&StartRecord>,
    found: &'a [Found],
) -> Option<&'a Found> {
    match record {
        Some(r) if r.state == SandboxState::Ready => found.iter().find(|c| {
            r.container.as_deref() == Some(c.id.as_str())
                || (!r.start.is_empty() && c.start() == Some(r.start.as_str()))
        }),
        Some(_) => None,
        None => found.iter().find(|c| c.legacy),
    }
}

impl DockerProvider {
    /// True when a container with these labels is this data directory's sandbox
    /// (`name`, if given): made by headstart, carrying every scope label and this data
    /// directory, or made by an older version without the data-directory label whose
    /// workspace is one of ours.
    pub(super) fn is_ours(
        &self,
        labels: &HashMap<String, String>,
        name: Option<&SandboxName>,
    ) -> bool {
        let label = |k: &str| labels.get(k).map(String::as_str);
        if label(LABEL_OWNER) != Some(OWNER)
            || label(LABEL_SANDBOX).is_none()
            || name.is_some_and(|n| label(LABEL_SANDBOX) != Some(n.as_str()))
        {
            return false;
        }
        if !self
            .config
            .scope_labels
            .iter()
            .all(|(k, v)| label(k) == Some(v.as_str()))
        {
            return false;
        }
        match label(LABEL_DATA_DIR) {
            Some(dir) => Path::new(dir) == self.data_dir.as_path(),
            None => label(LABEL_WORKSPACE).is_some_and(|w| {
                let w = Path::new(w);
                w.starts_with(self.config.data_dir.join("sandboxes"))
                    || w.starts_with(self.data_dir.join("sandboxes"))
                    // an older workdir sandbox: ours when our workspace record exists
                    || (label(LABEL_WORKSPACE_KIND) == Some(KIND_WORKDIR)
                        && self
                            .config
                            .data_dir
                            .join("sandboxes")
                            .join(label(LABEL_SANDBOX).unwrap_or_default())
                            .exists())
            }),
        }
    }

    /// This data directory's containers (of sandbox `name`, if given), found by label.
    pub(super) async fn ours(&self, name: Option<&SandboxName>) -> Result<Vec<Found>> {
        let mut label_filters = vec![
            format!("{LABEL_OWNER}={OWNER}"),
            match name {
                Some(n) => format!("{LABEL_SANDBOX}={n}"),
                None => LABEL_SANDBOX.to_owned(),
            },
        ];
        label_filters.extend(
            self.config
                .scope_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        let filters = HashMap::from([("label".to_owned(), label_filters)]);
        let list = list_containers(&self.docker, &filters).await?;
        let mut out = Vec::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            if !self.is_ours(&labels, name) {
                continue;
            }
            let (Some(id), Some(sandbox)) = (
                c.id,
                labels
                    .get(LABEL_SANDBOX)
                    .and_then(|n| SandboxName::new(n.clone()).ok()),
            ) else {
                continue;
            };
            out.push(Found {
                id,
                name: sandbox,
                legacy: !labels.contains_key(LABEL_DATA_DIR),
                labels,
                running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                created: c.created,
            });
        }
        Ok(out)
    }

    /// Refuses to create when a container already has the name this sandbox's would
    /// get (it is not ours: ours were removed just before).
    pub(super) async fn refuse_foreign(&self, name: &SandboxName) -> Result<()> {
        let cname = self.container_name(name);
        match self.docker.inspect_container(&cname, None).await {
            Ok(c) => {
                let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
                let whose = match labels.get(LABEL_DATA_DIR) {
                    Some(dir) if labels.get(LABEL_OWNER).map(String::as_str) == Some(OWNER) => {
                        format!(
                            "it belongs to the headstart data directory {dir} (or another scope)"
                        )
                    }
                    _ => "headstart did not create it".to_owned(),
                };
                Err(Error::provider(
                    PROVIDER,
                    format!(
                        "a container named {cname} exists but is not sandbox {name} of the data \
                         directory {}: {whose}; pick another sandbox name, or remove that \
                         container if you know it is unused (`docker rm -f {cname}`)",
                        self.data_dir.display()
                    ),
                ))
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(engine_error(format!("inspecting container {cname}"), e)),
        }
    }

    /// Removes one container by id; `false` when it was already gone.
    pub(super) async fn remove_container(&self, id: &str) -> Result<bool> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(engine_error(format!("removing container {id}"), e)),
        }
    }

    /// Removes everything of this data directory under `name`: the containers found
    /// (by id), a hibernated one's image, the workspace (a user's workdir stays: only the record pointing at it
    /// goes) and the start record. Call with the name's lock held. Returns whether
    /// anything existed.
    pub(super) async fn clear(&self, name: &SandboxName, found: &[Found]) -> Result<bool> {
        let mut any = false;
        for c in found {
            any |= self.remove_container(&c.id).await?;
            // made again from a hibernation image: that image goes with it
            if let Some(image) = c.labels.get(super::LABEL_HIBERNATED) {
                self.remove_hibernated_image(image).await;
            }
        }
        if let Some(h) = self.states.read(name)?.and_then(|r| r.hibernated) {
            self.remove_hibernated_image(&h.image).await;
            any = true;
        }
        match self.local.remove(name).await {
            Ok(()) => any = true,
            Err(Error::SandboxNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        any |= self.states.read(name)?.is_some();
        self.states.delete(name)?;
        Ok(any)
    }
}
