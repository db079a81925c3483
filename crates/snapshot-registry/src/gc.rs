//! Registry GC: keep the newest N snapshots per key, delete the older manifests.

use std::collections::BTreeMap;

use oci_client::RegistryOperation;
use secrecy::ExposeSecret;

use crate::auth::Auth;
use crate::error::Error;
use crate::store::RegistrySnapshots;

/// What registry GC did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RegistryGcReport {
    /// Tags (`<key>-<id>`) whose manifests were deleted.
    pub removed: Vec<String>,
    /// Tags kept (the newest per key).
    pub kept: Vec<String>,
}

/// `<key>-<13 digits>-<8 hex>`: a snapshot tag, split into key and id.
fn split_tag(tag: &str) -> Option<(&str, &str)> {
    let (rest, rand) = tag.rsplit_once('-')?;
    let (key, millis) = rest.rsplit_once('-')?;
    let ok = millis.len() == 13
        && millis.bytes().all(|b| b.is_ascii_digit())
        && rand.len() == 8
        && rand.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| (key, &tag[key.len() + 1..]))
}

impl RegistrySnapshots {
    /// Keeps the newest `keep` (at least 1) snapshots of every key and deletes the
    /// manifests of the older ones (the one the `<key>` tag names is always kept).
    ///
    /// # Errors
    /// [`Error::DeleteUnsupported`] when the registry refuses deletes, and as [`Error`].
    pub async fn gc(&self, keep: usize) -> Result<RegistryGcReport, Error> {
        let keep = keep.max(1);
        let reference = self.reference();
        let any = reference.tag("latest");
        let auth = self.auth().to_oci();
        self.client()
            .store_auth_if_needed(any.resolve_registry(), &auth)
            .await;
        let tags = match self.client().list_tags(&any, &auth, None, None).await {
            Ok(t) => t.tags,
            // a repository nothing was pushed to has no tags
            Err(e) if crate::store::is_not_found(&e) => return Ok(RegistryGcReport::default()),
            Err(e) => {
                let e = Error::oci(reference.registry(), e);
                if e.to_string().contains("NAME_UNKNOWN") || e.to_string().contains("404") {
                    return Ok(RegistryGcReport::default());
                }
                return Err(e);
            }
        };
        let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for tag in &tags {
            if let Some((key, id)) = split_tag(tag) {
                by_key.entry(key).or_default().push(id);
            }
        }
        let mut report = RegistryGcReport::default();
        for (key, mut ids) in by_key {
            ids.sort_unstable_by(|a, b| b.cmp(a));
            let newest = self.manifest(key).await?.map(|(_, d)| d);
            for (i, id) in ids.iter().enumerate() {
                let tag = format!("{key}-{id}");
                let Some((_, digest)) = self.manifest(&tag).await? else {
                    continue;
                };
                if i < keep || newest.as_deref() == Some(digest.as_str()) {
                    report.kept.push(tag);
                    continue;
                }
                self.delete_manifest(&tag, &digest).await?;
                report.removed.push(tag);
            }
        }
        Ok(report)
    }
}

impl RegistrySnapshots {
    async fn delete_manifest(&self, tag: &str, digest: &str) -> Result<(), Error> {
        let reference = self.reference();
        let image = reference.tag(tag);
        let registry = reference.registry().to_owned();
        let scheme = if reference.is_loopback() || self.insecure() {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{digest}",
            reference.repository()
        );
        let bearer = self
            .client()
            .auth(&image, &self.auth().to_oci(), RegistryOperation::Push)
            .await
            .ok()
            .flatten();
        let mut req = reqwest::Client::new().delete(&url);
        match (bearer, self.auth()) {
            (Some(token), _) => req = req.bearer_auth(token),
            (None, Auth::Basic { username, password }) => {
                req = req.basic_auth(username, Some(password.expose_secret()));
            }
            (None, Auth::Anonymous) => {}
        }
        let resp = req.send().await.map_err(|e| Error::Unreachable {
            registry: registry.clone(),
            message: e.to_string(),
        })?;
        match resp.status().as_u16() {
            200..=299 | 404 => Ok(()),
            405 => Err(Error::DeleteUnsupported(registry)),
            401 | 403 => Err(Error::Denied {
                registry,
                message: format!("deleting {tag}: {}", resp.status()),
            }),
            _ => Err(Error::Registry {
                registry,
                message: format!("deleting {tag}: {}", resp.status()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_snapshot_tags_only() {
        assert_eq!(
            super::split_tag("github.com-a-b-0123-1700000000000-ab12cd34"),
            Some(("github.com-a-b-0123", "1700000000000-ab12cd34"))
        );
        assert_eq!(super::split_tag("github.com-a-b-0123"), None);
        assert_eq!(super::split_tag("github.com-a-b-0123-building"), None);
    }
}
