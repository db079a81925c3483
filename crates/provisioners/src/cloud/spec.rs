//! What to create ([`VmSpec`]) and what exists ([`Vm`]).
//!
//! The image is not chosen here by name: [`VmSpec::images`] says which kinds of
//! prebuilt image a VM may boot ([`PrebuiltImages`]), and each cloud resolves that into
//! its own [`ImageChoice`] (a prebuilt image with nothing to install, or a plain OS
//! image plus a boot script).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use super::error::{CloudError, Result};

/// The clouds headstart can make VMs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// DigitalOcean droplets.
    DigitalOcean,
    /// Hetzner Cloud servers.
    Hetzner,
    /// Google Compute Engine instances.
    Gcp,
}

impl Cloud {
    /// All clouds.
    pub const ALL: [Cloud; 3] = [Cloud::DigitalOcean, Cloud::Hetzner, Cloud::Gcp];

    /// The name used on the command line (`digitalocean`, `hetzner`, `gcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DigitalOcean => "digitalocean",
            Self::Hetzner => "hetzner",
            Self::Gcp => "gcp",
        }
    }

    /// The SSH user the cloud's images let in with the injected key.
    pub fn ssh_user(self) -> &'static str {
        match self {
            Self::DigitalOcean | Self::Hetzner => "root",
            // GCP creates this user from the `ssh-keys` metadata entry.
            Self::Gcp => super::gcp::SSH_USER,
        }
    }

    /// The default machine size / type.
    pub fn default_size(self) -> &'static str {
        match self {
            Self::DigitalOcean => "s-1vcpu-1gb",
            Self::Hetzner => "cx22",
            Self::Gcp => "e2-small",
        }
    }

    /// The default region (DigitalOcean), location (Hetzner) or zone (GCP).
    pub fn default_region(self) -> &'static str {
        match self {
            Self::DigitalOcean => "nyc3",
            Self::Hetzner => "nbg1",
            Self::Gcp => "us-central1-a",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Cloud {
    type Err = CloudError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "digitalocean" | "do" => Ok(Self::DigitalOcean),
            "hetzner" | "hcloud" => Ok(Self::Hetzner),
            "gcp" | "gce" | "google" => Ok(Self::Gcp),
            _ => Err(CloudError::InvalidSpec(format!(
                "unknown cloud `{}`; use digitalocean, hetzner or gcp",
                s.escape_debug()
            ))),
        }
    }
}

/// Checks a DNS-label-like value: lowercase letters, digits and `-`, starting with a
/// letter, not ending with `-`, at most 63 characters. Every cloud accepts these as
/// names (GCP is the strictest) and as label values.
fn check_label(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CloudError::InvalidSpec(format!(
            "{what} `{}` must be 1-63 lowercase letters, digits or `-`, start with a letter and not end with `-`",
            value.escape_debug()
        )))
    }
}

/// A VM name valid on every cloud (RFC 1123 label, GCP's stricter form).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct VmName(String);

impl VmName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`CloudError::InvalidSpec`] saying what is accepted.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        check_label("VM name", &name)?;
        Ok(Self(name))
    }

    /// A fresh name `headstart-<8 hex>`.
    pub fn generate() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("headstart-{}", &id[..8]))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

sandbox_core::__string_newtype_fmt!(VmName);

/// Who a VM belongs to: attached to every VM as the label / tag
/// [`OWNER_LABEL`]` = <owner>`, and what [`VmProvisioner::list`](super::VmProvisioner::list)
/// filters by.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct OwnerTag(String);

/// The label (Hetzner, GCP) or tag prefix (DigitalOcean, `headstart-owner:<owner>`)
/// that carries the owner.
pub const OWNER_LABEL: &str = "headstart-owner";

impl OwnerTag {
    /// Validates an owner tag (same rules as a [`VmName`]).
    ///
    /// # Errors
    /// [`CloudError::InvalidSpec`] saying what is accepted.
    pub fn new(owner: impl Into<String>) -> Result<Self> {
        let owner = owner.into();
        check_label("owner tag", &owner)?;
        Ok(Self(owner))
    }

    /// An owner tag derived from any string (a user name): lowercased, other
    /// characters replaced by `-`, prefixed with `u-` when it does not start with a
    /// letter, cut at 63 characters.
    pub fn from_user(user: &str) -> Self {
        let mut s: String = user
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            s.insert_str(0, "u-");
        }
        s.truncate(63);
        while s.ends_with('-') {
            s.pop();
        }
        Self(s)
    }

    /// The owner.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

sandbox_core::__string_newtype_fmt!(OwnerTag);

/// An OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
#[derive(Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    kind: String,
    data: String,
    comment: String,
}

impl SshPublicKey {
    /// Parses one public key line.
    ///
    /// # Errors
    /// [`CloudError::InvalidSpec`] when it is not `<type> <base64> [comment]`.
    pub fn parse(line: &str) -> Result<Self> {
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(data)) = (parts.next(), parts.next()) else {
            return Err(CloudError::InvalidSpec(
                "the SSH public key must look like `ssh-ed25519 AAAA... comment` (the .pub file)"
                    .into(),
            ));
        };
        let comment = parts.collect::<Vec<_>>().join(" ");
        let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=';
        if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
            || !data.chars().all(base64)
        {
            return Err(CloudError::InvalidSpec(format!(
                "`{}` is not an OpenSSH public key type (ssh-ed25519, ssh-rsa, ecdsa-...); pass the .pub file",
                kind.escape_debug()
            )));
        }
        Ok(Self {
            kind: kind.into(),
            data: data.into(),
            comment,
        })
    }

    /// The key type (`ssh-ed25519`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// `<type> <base64>` without the comment: what two keys are compared by.
    pub fn key(&self) -> String {
        format!("{} {}", self.kind, self.data)
    }

    /// True when `line` holds the same key (comments ignored).
    pub fn same_key(&self, line: &str) -> bool {
        Self::parse(line).is_ok_and(|other| other.kind == self.kind && other.data == self.data)
    }

    /// A short stable id for naming the key in a cloud account
    /// (`headstart-<first 12 hex of sha256(type base64)>`).
    pub fn cloud_name(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.key().as_bytes());
        format!("headstart-{}", &hex::encode(digest)[..12])
    }
}

impl fmt::Display for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.comment.is_empty() {
            write!(f, "{} {}", self.kind, self.data)
        } else {
            write!(f, "{} {} {}", self.kind, self.data, self.comment)
        }
    }
}

impl fmt::Debug for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SshPublicKey({} {})", self.kind, self.cloud_name())
    }
}

/// What one cloud boots: a prebuilt image (nothing to install, no user data) or a
/// plain OS image with a boot script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageChoice {
    /// A marketplace / app / container-optimized image with Docker already there.
    Prebuilt {
        /// The image slug, name or family URL.
        image: String,
    },
    /// A plain OS image; `user_data` runs at first boot.
    Plain {
        /// The image slug, name or family URL.
        image: String,
        /// cloud-init user data (DigitalOcean, Hetzner) or a startup script (GCP).
        user_data: String,
    },
}

impl ImageChoice {
    /// The image.
    pub fn image(&self) -> &str {
        match self {
            Self::Prebuilt { image } | Self::Plain { image, .. } => image,
        }
    }

    /// The boot script, if any.
    pub fn user_data(&self) -> Option<&str> {
        match self {
            Self::Prebuilt { .. } => None,
            Self::Plain { user_data, .. } => Some(user_data),
        }
    }

    /// Resolves a choice: `prebuilt` (this cloud's kind of prebuilt image is wanted) boots
    /// `prebuilt_image` and sends no user data: a caller's own user data would compete
    /// with the image and is refused. Otherwise `plain_image` boots with the caller's
    /// user data, or [`DEFAULT_USER_DATA`].
    pub(crate) fn resolve(
        spec: &VmSpec,
        prebuilt: bool,
        prebuilt_image: &str,
        plain_image: &str,
    ) -> Result<Self> {
        if let Some(image) = &spec.image {
            return Ok(match (&spec.user_data, prebuilt) {
                (Some(ud), _) => Self::Plain {
                    image: image.clone(),
                    user_data: ud.clone(),
                },
                (None, true) => Self::Prebuilt {
                    image: image.clone(),
                },
                (None, false) => Self::Plain {
                    image: image.clone(),
                    user_data: DEFAULT_USER_DATA.into(),
                },
            });
        }
        if prebuilt {
            if spec.user_data.is_some() {
                return Err(CloudError::InvalidSpec(format!(
                    "user data would compete with the prebuilt image `{prebuilt_image}` (Docker is already \
                     installed there); drop the user data, or turn the fast path off (--no-fast)"
                )));
            }
            return Ok(Self::Prebuilt {
                image: prebuilt_image.into(),
            });
        }
        Ok(Self::Plain {
            image: plain_image.into(),
            user_data: spec
                .user_data
                .clone()
                .unwrap_or_else(|| DEFAULT_USER_DATA.into()),
        })
    }
}

/// The boot script for plain images: installs Docker from the distribution, once.
pub const DEFAULT_USER_DATA: &str = "#!/bin/sh\n\
# headstart: make this VM a Docker host (plain image; the fast paths skip this)\n\
set -e\n\
if ! command -v docker >/dev/null 2>&1; then\n\
  export DEBIAN_FRONTEND=noninteractive\n\
  apt-get update -q\n\
  apt-get install -y -q docker.io\n\
  systemctl enable --now docker\n\
fi\n";

/// Which prebuilt images (Docker already installed, no boot script) a VM may boot
/// instead of a plain OS image that installs Docker at first boot. Each cloud offers
/// one kind; the default is plain images everywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrebuiltImages {
    /// Marketplace images with Docker preinstalled (DigitalOcean's Docker 1-click
    /// image).
    pub marketplace: bool,
    /// The cloud's own Docker-ready image (Hetzner's `docker-ce` app image, GCP's
    /// Container-Optimized OS).
    pub docker_ready: bool,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// The VM name (unique per owner; a retried create finds it instead of making a
    /// second VM).
    pub name: VmName,
    /// Size / server type / machine type (`None`: [`Cloud::default_size`]).
    pub size: Option<String>,
    /// Region / location / zone (`None`: [`Cloud::default_region`]).
    pub region: Option<String>,
    /// Which prebuilt images may boot: decides the image per cloud.
    pub images: PrebuiltImages,
    /// An explicit image instead of the one [`images`](Self::images) picks.
    pub image: Option<String>,
    /// The public key that may log in.
    pub ssh_key: SshPublicKey,
    /// Your own user data / startup script (refused together with a prebuilt image).
    pub user_data: Option<String>,
    /// The owner; attached as [`OWNER_LABEL`].
    pub owner: OwnerTag,
    /// Extra labels (Hetzner, GCP) or `key:value` tags (DigitalOcean); keys and values
    /// follow the [`VmName`] rules.
    pub labels: BTreeMap<String, String>,
}

impl VmSpec {
    /// A spec with default size, region and image choice.
    pub fn new(
        name: VmName,
        owner: OwnerTag,
        ssh_key: SshPublicKey,
        images: PrebuiltImages,
    ) -> Self {
        Self {
            name,
            size: None,
            region: None,
            images,
            image: None,
            ssh_key,
            user_data: None,
            owner,
            labels: BTreeMap::new(),
        }
    }

    /// The size, or the cloud's default.
    pub fn size_or_default(&self, cloud: Cloud) -> &str {
        self.size.as_deref().unwrap_or(cloud.default_size())
    }

    /// The region, or the cloud's default.
    pub fn region_or_default(&self, cloud: Cloud) -> &str {
        self.region.as_deref().unwrap_or(cloud.default_region())
    }

    /// All labels including the owner and `headstart-managed=true`, validated.
    ///
    /// # Errors
    /// [`CloudError::InvalidSpec`] for a key or value the clouds would refuse.
    pub fn all_labels(&self) -> Result<BTreeMap<String, String>> {
        let mut labels = BTreeMap::new();
        for (k, v) in &self.labels {
            check_label("label key", k)?;
            if !v.is_empty() {
                check_label("label value", v)?;
            }
            labels.insert(k.clone(), v.clone());
        }
        labels.insert("headstart-managed".into(), "true".into());
        labels.insert(OWNER_LABEL.into(), self.owner.as_str().into());
        Ok(labels)
    }
}

/// A VM's state as the cloud reports it, normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmStatus {
    /// Being created / booting.
    Provisioning,
    /// Running.
    Running,
    /// Stopped or off.
    Stopped,
    /// Being deleted.
    Deleting,
    /// Anything else the cloud said.
    Other,
}

/// A VM that exists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vm {
    /// The cloud.
    pub cloud: Cloud,
    /// The cloud's id (droplet id, server id, instance name).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its state.
    pub status: VmStatus,
    /// The status word as the cloud said it.
    pub raw_status: String,
    /// The public IPv4 address, once it has one.
    pub public_ipv4: Option<IpAddr>,
    /// Region / location / zone.
    pub region: String,
    /// The image it booted.
    pub image: Option<String>,
    /// Labels / tags (DigitalOcean `key:value` tags are split).
    pub labels: BTreeMap<String, String>,
    /// A pending cloud operation to follow (Hetzner action id, GCP operation name).
    #[serde(skip)]
    pub pending_operation: Option<String>,
}

impl Vm {
    /// True when the cloud says it runs and it has a public IPv4.
    pub fn is_active(&self) -> bool {
        self.status == VmStatus::Running && self.public_ipv4.is_some()
    }

    /// True when it carries the owner label for `owner`.
    pub fn is_owned_by(&self, owner: &OwnerTag) -> bool {
        self.labels
            .get(OWNER_LABEL)
            .is_some_and(|o| o == owner.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGs7Zp2v0Q8cM4n3k6mXbq1s9t2u3v4w5x6y7z8A9B0C me@host";

    fn spec(images: PrebuiltImages) -> VmSpec {
        VmSpec::new(
            VmName::new("vm-1").unwrap(),
            OwnerTag::new("alice").unwrap(),
            SshPublicKey::parse(KEY).unwrap(),
            images,
        )
    }

    #[test]
    fn names_follow_the_strictest_cloud() {
        assert!(VmName::new("web-1").is_ok());
        for bad in [
            "",
            "Web",
            "1web",
            "web-",
            "web_1",
            "-web",
            &"a".repeat(64),
            "we b",
        ] {
            assert!(VmName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(VmName::new(VmName::generate().as_str()).is_ok());
    }

    #[test]
    fn owner_from_any_user_name() {
        assert_eq!(OwnerTag::from_user("Alice.Smith").as_str(), "alice-smith");
        assert_eq!(OwnerTag::from_user("42").as_str(), "u-42");
        assert!(OwnerTag::new(OwnerTag::from_user("x_-").as_str()).is_ok());
    }

    #[test]
    fn public_keys_compare_without_comments() {
        let k = SshPublicKey::parse(KEY).unwrap();
        assert!(k.same_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGs7Zp2v0Q8cM4n3k6mXbq1s9t2u3v4w5x6y7z8A9B0C other"
        ));
        assert!(!k.same_key("ssh-rsa AAAAB3NzaC1yc2E"));
        assert!(SshPublicKey::parse("-----BEGIN OPENSSH PRIVATE KEY-----").is_err());
        assert!(SshPublicKey::parse("ssh-ed25519 not$base64").is_err());
        assert!(k.cloud_name().starts_with("headstart-") && k.cloud_name().len() == 22);
        assert!(!format!("{k:?}").contains("AAAAC3"));
    }

    #[test]
    fn a_prebuilt_image_boots_without_user_data_and_refuses_competing_user_data() {
        let on = PrebuiltImages {
            docker_ready: true,
            ..PrebuiltImages::default()
        };
        let choice = ImageChoice::resolve(&spec(on), true, "docker-ce", "ubuntu").unwrap();
        assert_eq!(
            choice,
            ImageChoice::Prebuilt {
                image: "docker-ce".into()
            }
        );
        assert_eq!(choice.user_data(), None);
        let off = ImageChoice::resolve(
            &spec(PrebuiltImages::default()),
            false,
            "docker-ce",
            "ubuntu",
        )
        .unwrap();
        assert_eq!(off.image(), "ubuntu");
        assert_eq!(off.user_data(), Some(DEFAULT_USER_DATA));
        let mut s = spec(on);
        s.user_data = Some("#!/bin/sh\n".into());
        assert!(ImageChoice::resolve(&s, true, "docker-ce", "ubuntu").is_err());
        // An explicit image with user data is the caller's choice.
        s.image = Some("debian-12".into());
        let explicit = ImageChoice::resolve(&s, true, "docker-ce", "ubuntu").unwrap();
        assert_eq!(explicit.user_data(), Some("#!/bin/sh\n"));
    }

    #[test]
    fn labels_always_carry_owner_and_managed() {
        let mut s = spec(PrebuiltImages::default());
        s.labels.insert("team".into(), "infra".into());
        let l = s.all_labels().unwrap();
        assert_eq!(l.get(OWNER_LABEL).map(String::as_str), Some("alice"));
        assert_eq!(l.get("headstart-managed").map(String::as_str), Some("true"));
        s.labels.insert("Bad Key".into(), "x".into());
        assert!(s.all_labels().is_err());
    }
}
