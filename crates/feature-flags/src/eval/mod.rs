//! Local evaluation of PostHog flag definitions, with the semantics of posthog-python
//! [`REFERENCE_SDK`] (person flags).
//!
//! What it is: a pure function from a flag definition, a distinct id and person
//! properties to a value or an explicit [`Evaluation::Inconclusive`]. It does no I/O.
//!
//! What it is not: a full PostHog engine. Anything the reference SDK itself cannot decide
//! locally (static cohorts, missing properties, unknown operators) is inconclusive here
//! too, and so is the little we chose not to implement (group flags with groups,
//! `device_id` bucketing, date formats other than the common ISO shapes): every such case is reported as inconclusive so
//! the caller asks the server, never as a silent `false`. Cohorts sent with the
//! definitions and flag dependencies are evaluated as the reference does.
//!
//! Layout: [`model`] is the serde model of PostHog's definitions and the outcome types;
//! [`engine`] walks a flag (enrollment, holdout, conditions, rollout, variants);
//! [`references`] decides cohort and flag-dependency filters; [`operators`] matches one
//! person-property filter; [`python`] reproduces the reference's Python stringification
//! and [`semver`] its version comparisons.

mod engine;
mod model;
mod operators;
mod python;
mod references;
mod semver;

use serde_json::{Map, Value};

pub use engine::hash;
pub use model::{
    Condition, Definitions, Evaluation, Filters, FlagDefinition, FlagValue, Holdout, Inconclusive,
    Multivariate, PropertyFilter, Variant,
};

/// The posthog-python release whose local evaluation this module reproduces.
pub const REFERENCE_SDK: &str = "posthog-python 7.91.1";

/// Person properties passed to evaluation, as PostHog's JSON values.
pub type Properties = Map<String, Value>;
