//! [`Headstart::ports`]: which host address reaches which sandbox port. Docker
//! sandboxes publish their ports on the host's loopback (read back from the container,
//! so a later look sees what the start made); local sandboxes are host processes that
//! bind host ports themselves (`direct`).

use sandbox_core::{PortRequest, PublishedPort, Sandbox, SandboxName};
use serde::Serialize;

use super::{Headstart, ProviderKind, Result};

/// What [`PublishedPort::host_address`] says of a port the sandbox binds on the host
/// itself.
pub const DIRECT: &str = "direct";

/// The ports of one sandbox (`docs/json/ports.schema.json`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PortsOutcome {
    /// The sandbox.
    pub name: SandboxName,
    /// Its provider.
    pub provider: &'static str,
    /// True when its processes bind host ports directly (no publishing needed).
    pub direct: bool,
    /// The published ports (empty for a direct sandbox).
    pub ports: Vec<PublishedPort>,
    /// Set when the sandbox was stopped (or hibernated) and started again first.
    pub resumed: Option<super::Resumed>,
}

/// The ports of `sandbox`: published ones read back from it, else the ports asked for
/// reported as [`DIRECT`].
pub(crate) async fn ports_of(
    sandbox: &dyn Sandbox,
    requested: &[PortRequest],
) -> Result<Vec<PublishedPort>> {
    Ok(match sandbox.ports().await? {
        Some(published) => published,
        None => requested
            .iter()
            .map(|p| PublishedPort {
                container: p.container,
                host_address: DIRECT.into(),
            })
            .collect(),
    })
}

impl Headstart {
    /// The ports of sandbox `name` (of `provider`, else wherever it is); a stopped
    /// sandbox is started again first (its ports exist only while it runs).
    ///
    /// # Errors
    /// An unknown sandbox, or an engine that cannot inspect it.
    pub async fn ports(&self, name: &str, provider: Option<ProviderKind>) -> Result<PortsOutcome> {
        let name = SandboxName::new(name)?;
        let _lease = super::lifecycle::Lease::shared(self.data_dir(), &name).await?;
        let (provider, sandbox, resumed) = self.open_sandbox(&name, provider).await?;
        let published = sandbox.ports().await?;
        Ok(PortsOutcome {
            name,
            provider: provider.kind(),
            direct: published.is_none(),
            ports: published.unwrap_or_default(),
            resumed,
        })
    }
}
