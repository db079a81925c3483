//! The `fast_provision` experiment: what the user asked for, what the experiment says,
//! and which one wins.
//!
//! Precedence: `--beta` / `--fast` and `HEADSTART_BETA` (merged, a union) >
//! `HEADSTART_FLAG_OVERRIDES` > the switches that turn the experiment off
//! (`HEADSTART_TELEMETRY=0`, `DO_NOT_TRACK=1`, `HEADSTART_FEATURE_FLAGS_DISABLED=1`, no
//! project key) > the experiment > nothing.
//!
//! What it is not: an installer. A decision only says which fast paths a start may
//! use when they are already available; nothing is installed because of it.

use std::collections::HashMap;
use std::fmt;

use crate::FastPaths;
use crate::config::TelemetryOff;
use crate::eval::FlagValue;

/// The experiment's flag key.
pub const FAST_PROVISION: &str = "fast_provision";
/// The variant that turns every fast path on.
pub const TEST_VARIANT: &str = "test";

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BetaRequest {
    /// Each `--beta` value; each may be a comma-separated list (`images,docker`).
    pub beta: Vec<String>,
    /// `--fast`: all fast paths.
    pub fast: bool,
}

/// What the decision is for. Exposure events are only sent for [`Purpose::Provision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A command that provisions (`up`, recipes, `exec` that starts a sandbox).
    Provision,
    /// A command that only looks (`flags status`, `ls`, `help`): never an exposure.
    Inspect,
}

/// Why the experiment was not consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledReason {
    /// `HEADSTART_FEATURE_FLAGS_DISABLED=1`.
    FlagsDisabled,
    /// Telemetry is off (`HEADSTART_TELEMETRY=0` or `DO_NOT_TRACK=1`).
    TelemetryOff(TelemetryOff),
    /// No PostHog project key configured.
    NotConfigured,
}

/// Where a flag value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueOrigin {
    /// Evaluated here from polled definitions.
    Local,
    /// Answered by PostHog's `/flags` just now.
    Remote,
    /// A cached `/flags` answer; `stale` means it is being refreshed in the background.
    Cache {
        /// Older than the TTL (served while revalidating).
        stale: bool,
    },
}

/// Where a [`Decision`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionSource {
    /// `--beta` / `--fast`, merged with `HEADSTART_BETA` when that is set too.
    Explicit {
        /// What the command line asked for.
        cli: FastPaths,
        /// What `HEADSTART_BETA` asked for.
        env: FastPaths,
    },
    /// `HEADSTART_BETA` alone.
    Env {
        /// What it asked for.
        env: FastPaths,
    },
    /// `HEADSTART_FLAG_OVERRIDES=fast_provision=<value>` (testing a variant locally).
    Override {
        /// The overridden value.
        value: FlagValue,
    },
    /// The experiment decided.
    Experiment {
        /// The flag value (`"test"`, `"control"`, ...).
        value: FlagValue,
        /// How it was obtained.
        origin: ValueOrigin,
    },
    /// The experiment was not consulted.
    Disabled(DisabledReason),
    /// The experiment was consulted and failed (offline, timeout, server error): no
    /// fast paths, and the exposure records this `$feature_flag_error` code.
    Error {
        /// PostHog's error code (`timeout`, `connection_error`, `api_error_500`, ...).
        error: String,
    },
}

impl DecisionSource {
    /// Whether the experiment was consulted (then a provisioning command sends an
    /// exposure).
    pub fn consulted_experiment(&self) -> bool {
        matches!(
            self,
            DecisionSource::Experiment { .. } | DecisionSource::Error { .. }
        )
    }
}

impl fmt::Display for DecisionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecisionSource::Explicit { cli, env } if env.is_empty() => {
                write!(f, "explicit: --beta/--fast ({cli})")
            }
            DecisionSource::Explicit { cli, env } => {
                write!(
                    f,
                    "explicit: --beta/--fast ({cli}) merged with HEADSTART_BETA ({env})"
                )
            }
            DecisionSource::Env { env } => write!(f, "env: HEADSTART_BETA ({env})"),
            DecisionSource::Override { value } => {
                write!(
                    f,
                    "override: HEADSTART_FLAG_OVERRIDES sets {FAST_PROVISION}={value}"
                )
            }
            DecisionSource::Experiment { value, origin } => {
                let how = match origin {
                    ValueOrigin::Local => "evaluated locally from flag definitions",
                    ValueOrigin::Remote => "answered by PostHog",
                    ValueOrigin::Cache { stale: false } => "cached PostHog answer",
                    ValueOrigin::Cache { stale: true } => "cached PostHog answer, refreshing",
                };
                write!(f, "experiment: {FAST_PROVISION} variant {value} ({how})")
            }
            DecisionSource::Disabled(DisabledReason::FlagsDisabled) => {
                f.write_str("disabled: HEADSTART_FEATURE_FLAGS_DISABLED=1 (control, no network)")
            }
            DecisionSource::Disabled(DisabledReason::TelemetryOff(
                TelemetryOff::HeadstartTelemetry,
            )) => f.write_str("disabled: HEADSTART_TELEMETRY=0 (no flag request, no events)"),
            DecisionSource::Disabled(DisabledReason::TelemetryOff(TelemetryOff::DoNotTrack)) => {
                f.write_str("disabled: DO_NOT_TRACK=1 (no flag request, no events)")
            }
            DecisionSource::Disabled(DisabledReason::NotConfigured) => {
                f.write_str("disabled: no PostHog project key configured (HEADSTART_POSTHOG_KEY)")
            }
            DecisionSource::Error { error } => {
                write!(
                    f,
                    "error: the experiment could not be evaluated ({error}); no fast paths"
                )
            }
        }
    }
}

/// The fast paths a command may use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Decision {
    /// The resolved set.
    pub paths: FastPaths,
    /// Why.
    pub source: DecisionSource,
}

impl Decision {
    /// The resolved set as a `HEADSTART_BETA` value, to pass to recipe and `exec`
    /// commands (empty when nothing is on).
    pub fn beta_env(&self) -> String {
        self.paths.to_beta_env()
    }

    /// The experiment's value, when the experiment (or an override) decided.
    pub fn experiment_value(&self) -> Option<&FlagValue> {
        match &self.source {
            DecisionSource::Experiment { value, .. } | DecisionSource::Override { value } => {
                Some(value)
            }
            _ => None,
        }
    }
}

/// The fast paths a `fast_provision` value turns on: all for `test`, none otherwise.
pub fn fast_paths_for(value: &FlagValue) -> FastPaths {
    if value.variant() == Some(TEST_VARIANT) {
        FastPaths::all()
    } else {
        FastPaths::default()
    }
}

/// Parses `HEADSTART_FLAG_OVERRIDES` (`key=value[,key=value...]`; `true`/`false` are
/// booleans, anything else a variant).
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) fn parse_overrides(text: &str) -> Result<HashMap<String, FlagValue>, crate::Error> {
    let mut out = HashMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((k, v)) = entry.split_once('=') else {
            return Err(crate::Error::BadOverride {
                entry: entry.to_owned(),
            });
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() {
            return Err(crate::Error::BadOverride {
                entry: entry.to_owned(),
            });
        }
        let value = match v.to_ascii_lowercase().as_str() {
            "true" => FlagValue::Bool(true),
            "false" => FlagValue::Bool(false),
            _ => FlagValue::Variant(v.to_owned()),
        };
        out.insert(k.to_owned(), value);
    }
    Ok(out)
}

/// The explicit part of the decision (command line and `HEADSTART_BETA`), if any.
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) fn explicit(
    request: &BetaRequest,
    beta_env: Option<&str>,
) -> Result<Option<Decision>, crate::Error> {
    let mut cli = FastPaths::parse_list(&request.beta, "the requested fast paths")?;
    if request.fast {
        cli = FastPaths::all();
    }
    let env = match beta_env {
        Some(text) => FastPaths::parse_list([text], crate::config::vars::BETA)?,
        None => FastPaths::default(),
    };
    let asked_cli = request.fast || request.beta.iter().any(|b| !b.trim().is_empty());
    let asked_env = beta_env.is_some_and(|t| !t.trim().is_empty());
    Ok(if asked_cli {
        Some(Decision {
            paths: cli.union(env),
            source: DecisionSource::Explicit { cli, env },
        })
    } else if asked_env {
        Some(Decision {
            paths: env,
            source: DecisionSource::Env { env },
        })
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse() {
        let o = parse_overrides("fast_provision=test, other=TRUE,x=false").unwrap();
        assert_eq!(o[FAST_PROVISION], FlagValue::Variant("test".into()));
        assert_eq!(o["other"], FlagValue::Bool(true));
        assert_eq!(o["x"], FlagValue::Bool(false));
        assert!(parse_overrides("fast_provision").is_err());
        assert!(parse_overrides("=test").is_err());
    }

    #[test]
    fn cli_and_env_are_merged() {
        let req = BetaRequest {
            beta: vec!["images".into()],
            fast: false,
        };
        let d = explicit(&req, Some("sandbox")).unwrap().unwrap();
        assert_eq!(
            d.paths,
            FastPaths {
                images: true,
                docker: false,
                sandbox: true
            }
        );
        assert!(matches!(d.source, DecisionSource::Explicit { .. }));
        let d = explicit(&BetaRequest::default(), Some("docker"))
            .unwrap()
            .unwrap();
        assert_eq!(
            d.source,
            DecisionSource::Env {
                env: FastPaths {
                    docker: true,
                    ..FastPaths::default()
                }
            }
        );
        assert!(explicit(&BetaRequest::default(), None).unwrap().is_none());
    }

    #[test]
    fn only_test_turns_paths_on() {
        assert_eq!(
            fast_paths_for(&FlagValue::Variant("test".into())),
            FastPaths::all()
        );
        assert_eq!(
            fast_paths_for(&FlagValue::Variant("control".into())),
            FastPaths::default()
        );
        assert_eq!(fast_paths_for(&FlagValue::Bool(true)), FastPaths::default());
    }
}
