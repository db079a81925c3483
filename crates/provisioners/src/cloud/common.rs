//! Steps the clouds take the same way: finding or registering the SSH key once per
//! account ([`ensure_ssh_key`]) and polling a VM until it runs ([`wait_running`]).
//!
//! Not here: the requests themselves, their paths, paging and bodies (each cloud's
//! module), nor the clouds' own create actions / operations that come before the poll.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::error::{CloudError, Result};
use super::spec::{Cloud, SshPublicKey, Vm};
use super::{Backoff, Deadline, VmProvisioner};

/// Where a cloud keeps the SSH keys of an account or project.
#[async_trait]
pub(crate) trait KeyRegistry: Sync {
    /// The cloud (for messages).
    const CLOUD: Cloud;
    /// The status a registration is refused with when the key is already there (a
    /// concurrent start registered it first).
    const CONFLICT: u16;

    /// The registered key object (it has an `id`) holding `key`, if any.
    async fn find_key(&self, key: &SshPublicKey) -> Result<Option<Value>>;

    /// Registers `key`; the answer carries `/ssh_key/id`.
    async fn register_key(&self, key: &SshPublicKey) -> Result<Value>;
}

/// True when a registered key object holds `key` (comments ignored).
pub(crate) fn holds_key(registered: &Value, key: &SshPublicKey) -> bool {
    registered
        .get("public_key")
        .and_then(Value::as_str)
        .is_some_and(|p| key.same_key(p))
}

/// Finds (by key material) or registers the public key; returns its id. When the
/// registration is refused because the key appeared meanwhile, looks once more.
pub(crate) async fn ensure_ssh_key<R: KeyRegistry>(
    registry: &R,
    key: &SshPublicKey,
) -> Result<Value> {
    for attempt in 0..2 {
        if let Some(found) = registry.find_key(key).await? {
            return found
                .get("id")
                .cloned()
                .ok_or_else(|| unexpected(R::CLOUD, "an SSH key without an id"));
        }
        match registry.register_key(key).await {
            Ok(created) => {
                return created
                    .pointer("/ssh_key/id")
                    .cloned()
                    .ok_or_else(|| unexpected(R::CLOUD, "a created SSH key without an id"));
            }
            Err(CloudError::Rejected { status, .. }) if status == R::CONFLICT && attempt == 0 => {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(unexpected(
        R::CLOUD,
        "the SSH key could be neither found nor registered",
    ))
}

/// Polls [`VmProvisioner::get`] (intervals growing to `poll`) until the VM runs with a
/// public IPv4; on timeout the message says `waiting for <noun> `<name>` to <until>
/// (status `<status>`)`.
pub(crate) async fn wait_running(
    provisioner: &dyn VmProvisioner,
    vm: &Vm,
    deadline: Deadline,
    poll: Duration,
    noun: &str,
    until: &str,
) -> Result<Vm> {
    let mut backoff = Backoff::new(poll);
    loop {
        let now = provisioner.get(vm).await?;
        if now.is_active() {
            return Ok(now);
        }
        tracing::debug!(vm = %now.name, status = %now.raw_status, "{noun} not running yet");
        deadline
            .pause(backoff.next_wait(), || {
                format!(
                    "waiting for {noun} `{}` to {until} (status `{}`)",
                    vm.name, now.raw_status
                )
            })
            .await?;
    }
}

/// An answer the client cannot use.
pub(crate) fn unexpected(cloud: Cloud, what: &str) -> CloudError {
    CloudError::Transport {
        cloud,
        message: format!("unexpected answer: {what}"),
    }
}
