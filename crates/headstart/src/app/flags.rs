//! Feature flags in the app layer: the process's flags client and
//! [`Headstart::flags_status`], the fast paths a start would use now and why. Not here:
//! evaluation, precedence or telemetry (the `feature-flags` crate).

use std::time::Duration;

use feature_flags::{BetaRequest, Decision, FeatureFlags, Purpose, REFERENCE_SDK};
use serde::Serialize;

use super::{Headstart, Result};

/// How long an operation waits at its end for queued events (never more).
pub const FLUSH_ON_EXIT: Duration = Duration::from_secs(2);

/// The fast-provisioning decision and the flags configuration
/// (`docs/json/flags-status.schema.json`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FlagsStatus {
    /// The fast paths on.
    pub fast_paths: Vec<&'static str>,
    /// The same, as a `HEADSTART_BETA` value.
    pub headstart_beta: String,
    /// Why.
    pub source: String,
    /// The experiment's value, when it decided.
    pub experiment_value: Option<serde_json::Value>,
    /// The id events are sent under (`None`: nothing is sent).
    pub distinct_id: Option<String>,
    /// The PostHog host.
    pub posthog_host: String,
    /// True when a project key is configured.
    pub project_key_configured: bool,
    /// True when telemetry is on.
    pub telemetry: bool,
    /// True when feature flags are disabled.
    pub feature_flags_disabled: bool,
    /// The SDK evaluation matches.
    pub reference_sdk: &'static str,
    /// The decision itself.
    #[serde(skip)]
    pub decision: Decision,
}

impl Headstart {
    /// A feature-flags client over the configuration. Create it inside a Tokio
    /// runtime and call `shutdown(FLUSH_ON_EXIT)` when done.
    pub fn flags_client(&self) -> FeatureFlags {
        FeatureFlags::new(self.config.flags.clone())
    }

    /// The fast paths a start asking for `beta` would use now, and why.
    ///
    /// # Errors
    /// A bad `beta` or `HEADSTART_BETA` value.
    pub async fn flags_status(&self, beta: &BetaRequest) -> Result<FlagsStatus> {
        let flags = self.flags_client();
        let decision = flags.fast_paths(beta, Purpose::Inspect).await;
        let distinct_id = flags.distinct_id();
        flags.shutdown(FLUSH_ON_EXIT).await;
        let decision = decision?;
        let config = flags.config();
        Ok(FlagsStatus {
            fast_paths: decision.paths.names(),
            headstart_beta: decision.beta_env(),
            source: decision.source.to_string(),
            experiment_value: decision.experiment_value().map(|v| v.to_json()),
            distinct_id,
            posthog_host: config.host().to_owned(),
            project_key_configured: config.has_project_key(),
            telemetry: config.telemetry_off().is_none(),
            feature_flags_disabled: config.flags_disabled(),
            reference_sdk: REFERENCE_SDK,
            decision,
        })
    }
}
