//! Cloud VM hosts in the app layer: the settings `vm` operations share (the owner tag,
//! the SSH key, the known-hosts file under the data directory) and the provisioner of
//! a cloud configured from [`crate::env`]. VMs are hosts, not sandboxes: no
//! repository is put on one. The logic lives in `provisioners::cloud`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use provisioners::cloud::{
    self, Cloud, CloudConfig, CloudError, OwnerTag, Readiness, VmProvisioner,
};

use super::Headstart;
use crate::env;

/// What `vm` operations need to know about the user and the data directory.
#[derive(Debug, Clone)]
pub struct VmSettings {
    /// The known-hosts file VM host keys are recorded in.
    pub known_hosts: PathBuf,
    /// The user's home directory (default SSH keys).
    pub user_home: Option<PathBuf>,
    /// The user name (the default owner tag).
    pub user: Option<String>,
}

impl Headstart {
    /// The VM settings of this data directory and user.
    pub fn vm_settings(&self) -> VmSettings {
        VmSettings {
            known_hosts: self.data_dir().join("vm").join("known_hosts"),
            user_home: env::non_empty(env::HOME).map(PathBuf::from),
            user: env::non_empty(env::USER).or_else(|| env::non_empty(env::LOGNAME)),
        }
    }
}

impl VmSettings {
    /// The owner tag: `explicit`, else one made from the user name.
    ///
    /// # Errors
    /// An explicit tag that is not valid.
    pub fn owner(&self, explicit: Option<&str>) -> Result<OwnerTag, CloudError> {
        Ok(match explicit {
            Some(o) => OwnerTag::new(o)?,
            None => OwnerTag::from_user(self.user.as_deref().unwrap_or("headstart")),
        })
    }

    /// The first default public key that exists: `~/.ssh/id_ed25519.pub`,
    /// `id_ecdsa.pub`, `id_rsa.pub`.
    pub fn default_public_key(&self) -> Option<PathBuf> {
        let ssh = self.user_home.as_ref().map(|h| h.join(".ssh"));
        ssh.iter()
            .flat_map(|d| ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"].map(|f| d.join(f)))
            .find(|p| p.exists())
    }

    /// How readiness is checked for a VM given `public_key` (its private key, the
    /// same path without `.pub`, is used for SSH), within `timeout`.
    pub fn readiness(&self, public_key: &Path, timeout: Duration) -> Readiness {
        let mut r = Readiness::new(self.known_hosts.clone());
        r.deadline = timeout;
        r.identity_file = public_key
            .to_str()
            .and_then(|s| s.strip_suffix(".pub"))
            .map(PathBuf::from)
            .filter(|p| p.exists());
        r
    }

    /// The provisioner of `cloud`, its token and endpoint from the environment.
    ///
    /// # Errors
    /// No token for the cloud.
    pub fn provisioner(&self, cloud: Cloud) -> Result<Box<dyn VmProvisioner>, CloudError> {
        cloud::provisioner(CloudConfig::from_lookup(cloud, env::var)?)
    }
}
