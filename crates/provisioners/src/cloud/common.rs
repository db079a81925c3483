//! Steps the clouds take the same way: finding or registering the SSH key once per
//! account ([`ensure_ssh_key`]), looking a VM up by name ([`owned_by_name`]), sending a
//! create request without ever making two VMs ([`create_once`]), polling a VM until it
//! runs ([`wait_running`]), deleting one that may already be gone ([`gone_is_fine`]),
//! walking numbered listing pages ([`walk_pages`]) and reading answers ([`member`],
//! [`text_at`], [`string_labels`]).
//!
//! Not here: the requests themselves, their paths and bodies (each cloud's module),
//! nor the clouds' own create actions / operations that come before the poll.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::error::{CloudError, Result};
use super::http::ApiClient;
use super::spec::{Cloud, SshPublicKey, Vm, VmSpec};
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

/// How [`create_once`] sends a create request and reads what comes back.
pub(crate) struct CreateRequest<Find, Post, Parse, Taken> {
    /// What the cloud calls a VM (`droplet`, `server`, `instance`), for logs.
    pub(crate) noun: &'static str,
    /// Looks the VM up by name (ours, or an error when another owner has the name).
    pub(crate) find: Find,
    /// Sends the create request once.
    pub(crate) post: Post,
    /// Reads the VM from the answer.
    pub(crate) parse: Parse,
    /// True when the refusal says the name is taken: it may be our own earlier attempt.
    pub(crate) name_taken: Taken,
    /// Look the VM up before sending again after a transient failure (the request may
    /// have been acted on); false where the cloud deduplicates repeats itself.
    pub(crate) look_before_retry: bool,
}

/// Sends a create request (up to three times on transient failures) so that a retry
/// never makes a second VM: before each repeat, and when the name is taken, the VM is
/// looked up by name. A VM created whose answer cannot be read is destroyed.
pub(crate) async fn create_once<Find, FindFut, Post, PostFut, Parse, Taken>(
    provisioner: &dyn VmProvisioner,
    req: CreateRequest<Find, Post, Parse, Taken>,
) -> Result<Vm>
where
    Find: Fn() -> FindFut,
    FindFut: Future<Output = Result<Option<Vm>>> + Send,
    Post: Fn() -> PostFut,
    PostFut: Future<Output = Result<Value>> + Send,
    Parse: FnOnce(Value) -> Result<Vm>,
    Taken: Fn(&CloudError) -> bool,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match (req.post)().await {
            Ok(answer) => {
                return match (req.parse)(answer) {
                    Ok(vm) => Ok(vm),
                    // Created, but unreadable: find it by name and remove it.
                    Err(e) => match (req.find)().await {
                        Ok(Some(vm)) => {
                            Err(super::destroy_after_failure(provisioner, &vm, e).await)
                        }
                        _ => Err(e),
                    },
                };
            }
            // The name exists: ours (an earlier attempt went through) or someone else's.
            Err(e) if (req.name_taken)(&e) => {
                return match (req.find)().await? {
                    Some(vm) => Ok(vm),
                    None => Err(e),
                };
            }
            Err(e) if e.is_transient() && attempt < 3 => {
                let noun = req.noun;
                tracing::warn!(error = %e, attempt, "{noun} create failed; sending it again");
                if req.look_before_retry {
                    if let Some(vm) = (req.find)().await? {
                        return Ok(vm);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A delete's result where "not found" means done.
pub(crate) fn gone_is_fine(result: Result<Value>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// An answer the client cannot use.
pub(crate) fn unexpected(cloud: Cloud, what: &str) -> CloudError {
    CloudError::Transport {
        cloud,
        message: format!("unexpected answer: {what}"),
    }
}

/// What a lookup by name found, read for `spec`'s owner: the VM when it is theirs, none,
/// or [`CloudError::NameInUse`] when the name belongs to a VM not managed for them.
pub(crate) fn owned_by_name(cloud: Cloud, spec: &VmSpec, found: Option<Vm>) -> Result<Option<Vm>> {
    match found {
        Some(vm) if vm.is_owned_by(&spec.owner) => Ok(Some(vm)),
        Some(_) => Err(CloudError::NameInUse {
            cloud,
            name: spec.name.to_string(),
        }),
        None => Ok(None),
    }
}

/// The VM a create found already made (logged as such): a create then returns it
/// instead of making another.
pub(crate) fn already_made(found: Option<Vm>, noun: &str) -> Option<Vm> {
    if let Some(vm) = &found {
        tracing::info!(vm = %vm.name, id = %vm.id, "{noun} exists already; not creating another");
    }
    found
}

/// The member `key` of an answer, or an `unexpected answer: no `key` in the <what>`
/// error.
pub(crate) fn member<'a>(
    cloud: Cloud,
    answer: &'a Value,
    key: &str,
    what: &str,
) -> Result<&'a Value> {
    answer
        .get(key)
        .ok_or_else(|| unexpected(cloud, &format!("no `{key}` in the {what}")))
}

/// The string at `pointer` (`/name`) in `v`; empty when it is missing or no string.
pub(crate) fn text_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// A `labels` object as labels (a value that is no string reads as empty).
pub(crate) fn string_labels(labels: Option<&Value>) -> BTreeMap<String, String> {
    labels
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// How a listing says which page comes after page `page`, if any.
pub(crate) type NextPage = fn(answer: &Value, page: u64) -> Option<u64>;

/// Walks a listing paged by number (`page`, `per_page`), page 1 first, handing each
/// page's `field` array to `visit` until `visit` says it is done (`true`), a page is
/// empty, or `next_page` names no later page.
pub(crate) async fn walk_pages(
    api: &ApiClient,
    path: &str,
    field: &str,
    filter: &[(&str, String)],
    per_page: u32,
    next_page: NextPage,
    mut visit: impl FnMut(Vec<Value>) -> Result<bool> + Send,
) -> Result<()> {
    let mut page = 1u64;
    loop {
        let mut query = filter.to_vec();
        query.push(("per_page", per_page.to_string()));
        query.push(("page", page.to_string()));
        let body = api.get(path, &query).await?;
        let items = body
            .get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let empty = items.is_empty();
        if visit(items)? || empty {
            return Ok(());
        }
        match next_page(&body, page) {
            Some(next) if next > page => page = next,
            _ => return Ok(()),
        }
    }
}
