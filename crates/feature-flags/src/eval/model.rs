//! The serde model of PostHog's flag definitions (what `/flags/definitions` serves) and
//! the outcome types of evaluation ([`FlagValue`], [`Evaluation`], [`Inconclusive`]).
//!
//! What it is not: evaluation itself. Apart from small accessors (payloads, the
//! aggregation and bucketing of a flag) the logic lives in the sibling modules.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::python::python_truthy;

/// A flag's value: `true`/`false`, or the key of a variant of a multivariate flag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FlagValue {
    /// A boolean flag (or a multivariate flag whose hash fell outside every variant).
    Bool(bool),
    /// The key of the variant this id is bucketed into.
    Variant(String),
}

impl FlagValue {
    /// The variant key, if this is a variant.
    pub fn variant(&self) -> Option<&str> {
        match self {
            FlagValue::Variant(v) => Some(v),
            FlagValue::Bool(_) => None,
        }
    }

    /// This value as JSON (`true`, `false` or `"variant"`), as PostHog sends it.
    pub fn to_json(&self) -> Value {
        match self {
            FlagValue::Bool(b) => Value::Bool(*b),
            FlagValue::Variant(v) => Value::String(v.clone()),
        }
    }

    /// The key PostHog uses for this value's payload (`"true"`, `"false"` or the variant).
    fn payload_key(&self) -> String {
        match self {
            FlagValue::Bool(b) => b.to_string(),
            FlagValue::Variant(v) => v.clone(),
        }
    }
}

impl std::fmt::Display for FlagValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlagValue::Bool(b) => write!(f, "{b}"),
            FlagValue::Variant(v) => f.write_str(v),
        }
    }
}

/// Why local evaluation could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inconclusive {
    /// A property a filter needs was not passed (ask the server, which knows the person).
    MissingProperty,
    /// The definition uses something local evaluation cannot decide: an unknown
    /// operator, a filter value that does not parse, a cohort or flag dependency,
    /// a group flag, experience continuity, `device_id` bucketing.
    UnsupportedDefinition,
    /// The flag is not in the definitions.
    UnknownFlag,
}

impl Inconclusive {
    /// A short machine-readable name (`missing_property`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Inconclusive::MissingProperty => "missing_property",
            Inconclusive::UnsupportedDefinition => "unsupported_definition",
            Inconclusive::UnknownFlag => "unknown_flag",
        }
    }
}

/// The outcome of local evaluation: a value, or an explicit "cannot decide here".
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Evaluation {
    /// The flag's value for this id and these properties.
    Value(FlagValue),
    /// Local evaluation cannot decide; the caller should ask the server.
    Inconclusive(Inconclusive),
}

impl Evaluation {
    /// The value, or `None` when inconclusive.
    pub fn value(&self) -> Option<&FlagValue> {
        match self {
            Evaluation::Value(v) => Some(v),
            Evaluation::Inconclusive(_) => None,
        }
    }

    /// This outcome as JSON: `true`, `false`, `"variant"`, or `null` when inconclusive.
    pub fn to_json(&self) -> Value {
        self.value().map_or(Value::Null, FlagValue::to_json)
    }
}

/// PostHog's flag definitions document (`{"flags": [...], ...}`), as served by
/// `/flags/definitions` and `/api/feature_flag/local_evaluation`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Definitions {
    /// The flags, in the order PostHog sent them.
    #[serde(default)]
    pub flags: Vec<FlagDefinition>,
    /// Group type index → group type name (only used to tell group flags apart).
    #[serde(default)]
    pub group_type_mapping: HashMap<String, String>,
    /// Cohort id → property group (`{"type": "AND"|"OR", "values": [...]}`), sent with
    /// `send_cohorts`; cohorts not listed here (static cohorts) need the server.
    #[serde(default)]
    pub cohorts: HashMap<String, Value>,
}

impl Definitions {
    /// Parses PostHog's definitions JSON.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The definition of `key`, if present (the last one, when a key repeats).
    pub fn flag(&self, key: &str) -> Option<&FlagDefinition> {
        self.flags.iter().rev().find(|f| f.key == key)
    }
}

/// One flag definition, as PostHog serves it. Unknown fields are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlagDefinition {
    /// The flag key.
    #[serde(default)]
    pub key: String,
    /// Inactive flags evaluate to `false` (a missing or null field counts as inactive).
    #[serde(default, deserialize_with = "truthy")]
    pub active: bool,
    /// Flags that keep a value across identities need the server.
    #[serde(default, deserialize_with = "truthy")]
    pub ensure_experience_continuity: bool,
    /// PostHog's flag id (sent as `$feature_flag_id`).
    #[serde(default)]
    pub id: Option<i64>,
    /// The definition version (sent as `$feature_flag_version`).
    #[serde(default)]
    pub version: Option<i64>,
    /// `"distinct_id"` (default) or `"device_id"`.
    #[serde(default)]
    pub bucketing_identifier: Option<String>,
    /// Release conditions, variants, payloads.
    #[serde(default)]
    pub filters: Option<Filters>,
}

impl FlagDefinition {
    /// The payload PostHog attaches to `value` (`filters.payloads["true"]` or the variant).
    pub fn payload(&self, value: &FlagValue) -> Option<&Value> {
        self.filters
            .as_ref()?
            .payloads
            .as_ref()?
            .get(&value.payload_key())
    }
}

/// The `filters` object of a flag definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Filters {
    /// Condition groups, tried in list order; the first that matches decides.
    #[serde(default)]
    pub groups: Option<Vec<Condition>>,
    /// Variants of a multivariate flag.
    #[serde(default)]
    pub multivariate: Option<Multivariate>,
    /// Payloads by value (`"true"` or a variant key).
    #[serde(default)]
    pub payloads: Option<Map<String, Value>>,
    /// Set for group flags.
    #[serde(default)]
    pub aggregation_group_type_index: Option<Value>,
    /// Stop at the first condition whose filters match but whose rollout excludes the id.
    #[serde(default)]
    pub early_exit: Option<bool>,
    /// A holdout group evaluated before the conditions.
    #[serde(default)]
    pub holdout: Option<Holdout>,
    /// Early-access feature enrollment (`$feature_enrollment/<key>` decides).
    #[serde(default)]
    pub feature_enrollment: Option<Value>,
    /// Bucketing identifier, when set on the filters instead of the flag.
    #[serde(default)]
    pub bucketing_identifier: Option<String>,
}

/// A holdout: a share of ids excluded from the flag into `holdout-<id>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Holdout {
    /// The holdout id (the value is `holdout-<id>`).
    #[serde(default)]
    pub id: Option<Value>,
    /// Percentage of ids held out.
    #[serde(default)]
    pub exclusion_percentage: Option<f64>,
}

/// The variants of a multivariate flag.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Multivariate {
    /// Variants in order; each takes the next `rollout_percentage` of the variant hash.
    #[serde(default)]
    pub variants: Option<Vec<Variant>>,
}

/// One variant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Variant {
    /// The variant key.
    pub key: String,
    /// Its share, in percent.
    pub rollout_percentage: f64,
}

/// One condition group of a flag.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Condition {
    /// Property filters, all of which must match.
    #[serde(default)]
    pub properties: Option<Vec<PropertyFilter>>,
    /// Share of matching ids that get the flag; absent means all of them.
    #[serde(default)]
    pub rollout_percentage: Option<f64>,
    /// Variant forced for ids matching this condition (if it names a real variant).
    #[serde(default)]
    pub variant: Option<String>,
    /// Per-condition aggregation (mixed targeting). Present-but-null is kept apart from absent.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub aggregation_group_type_index: Option<Value>,
}

/// One property filter.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PropertyFilter {
    /// The property name.
    #[serde(default)]
    pub key: Value,
    /// The operator; absent or empty means `exact`.
    #[serde(default)]
    pub operator: Option<String>,
    /// The filter value.
    #[serde(default)]
    pub value: Value,
    /// `person` (default), `cohort` or `flag`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// For flag dependencies: the flags to evaluate first, ending with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_chain: Option<Value>,
}

/// Python truthiness of a JSON value (`null`, `false`, `0`, `""`, `[]`, `{}` are false).
fn truthy<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(python_truthy(&Value::deserialize(d)?))
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl FlagDefinition {
    /// The flag-level aggregation group type index, when it is a group flag.
    pub(super) fn aggregation(&self) -> Option<&Value> {
        self.filters
            .as_ref()
            .and_then(|f| f.aggregation_group_type_index.as_ref())
            .filter(|v| !v.is_null())
    }

    pub(super) fn buckets_by_device_id(&self) -> bool {
        let filters = self.filters.as_ref();
        self.bucketing_identifier
            .as_deref()
            .or_else(|| filters.and_then(|f| f.bucketing_identifier.as_deref()))
            == Some("device_id")
    }
}
