//! [`Headstart::daemon_start`]: starting the credential daemon ahead of a start (after
//! a stop or a reboot), detached, as `up` would on demand.

use super::{ControlRequest, ControlResponse, DaemonStatus};
use crate::app::{Error, Headstart, Result};

impl Headstart {
    /// Starts the credential daemon when none answers (detached, as `up` does when a
    /// grant needs it) and returns its status. Its grants come back from its file
    /// without tokens: each answers 403 until a start of its sandbox registers again.
    ///
    /// # Errors
    /// [`Error::Daemon`] when it cannot be started or does not answer in time.
    pub async fn daemon_start(&self) -> Result<DaemonStatus> {
        match self.daemon_request(&ControlRequest::Status).await? {
            ControlResponse::Status(s) => Ok(s),
            other => Err(Error::Daemon(format!("unexpected answer {other:?}"))),
        }
    }
}
