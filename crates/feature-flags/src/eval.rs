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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

use crate::{dates, regex_compat};

/// The posthog-python release whose local evaluation this module reproduces.
pub const REFERENCE_SDK: &str = "posthog-python 7.91.1";

/// Person properties passed to evaluation, as PostHog's JSON values.
pub type Properties = Map<String, Value>;

/// `0xFFFFFFFFFFFFFFF` (15 hex digits) as `f64`: the scale of [`hash`].
const LONG_SCALE: f64 = 0xFFF_FFFF_FFFF_FFFF_u64 as f64;

/// PostHog's bucketing hash: the first 15 hex digits of
/// `sha1("{key}.{distinct_id}{salt}")` divided by `0xFFFFFFFFFFFFFFF`, in `[0, 1]`.
///
/// The rollout uses salt `""`, the variant choice salt `"variant"`.
pub fn hash(key: &str, distinct_id: &str, salt: &str) -> f64 {
    hash_with_separator(key, ".", distinct_id, salt)
}

fn hash_with_separator(key: &str, separator: &str, value: &str, salt: &str) -> f64 {
    let mut hasher = Sha1::new();
    hasher.update(key.as_bytes());
    hasher.update(separator.as_bytes());
    hasher.update(value.as_bytes());
    hasher.update(salt.as_bytes());
    let digest = hasher.finalize();
    // 15 hex digits = the first 60 bits of the digest.
    let mut first8 = [0u8; 8];
    first8.copy_from_slice(&digest[..8]);
    let top60 = u64::from_be_bytes(first8) >> 4;
    top60 as f64 / LONG_SCALE
}

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

    /// Evaluates flag `key` for `distinct_id` with person `properties`, exactly as
    /// PostHog's reference SDK would ([`REFERENCE_SDK`]); [`Evaluation::Inconclusive`]
    /// when it cannot decide locally (a property it needs is missing, an unknown flag,
    /// a static cohort, ...): then ask the server.
    ///
    /// ```
    /// use feature_flags::{Definitions, Evaluation, FlagValue, Properties};
    ///
    /// let defs = Definitions::from_json(r#"{"flags": [
    ///   {"key": "fast_provision", "active": true, "filters": {
    ///     "groups": [{"properties": [], "rollout_percentage": 100}],
    ///     "multivariate": {"variants": [{"key": "test", "rollout_percentage": 100}]}}},
    ///   {"key": "staff_only", "active": true, "filters": {
    ///     "groups": [{"properties": [{"key": "email", "type": "person",
    ///                 "operator": "icontains", "value": "@acme.com"}],
    ///                 "rollout_percentage": 100}]}}
    /// ]}"#)?;
    ///
    /// let none = Properties::new();
    /// assert_eq!(
    ///     defs.evaluate("fast_provision", "user-1", &none),
    ///     Evaluation::Value(FlagValue::Variant("test".into()))
    /// );
    ///
    /// let mut staff = Properties::new();
    /// staff.insert("email".into(), "ada@ACME.com".into());
    /// assert_eq!(defs.evaluate("staff_only", "user-1", &staff).value(), Some(&FlagValue::Bool(true)));
    /// // without the property it needs, local evaluation cannot decide
    /// assert!(matches!(defs.evaluate("staff_only", "user-1", &none), Evaluation::Inconclusive(_)));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn evaluate(&self, key: &str, distinct_id: &str, properties: &Properties) -> Evaluation {
        match self.flag(key) {
            None => Evaluation::Inconclusive(Inconclusive::UnknownFlag),
            Some(flag) => match self.compute(flag, distinct_id, properties) {
                Ok(v) => Evaluation::Value(v),
                Err(e) => Evaluation::Inconclusive(e.reason()),
            },
        }
    }

    fn compute(
        &self,
        flag: &FlagDefinition,
        distinct_id: &str,
        properties: &Properties,
    ) -> Result<FlagValue, EvalError> {
        if !flag.active {
            return Ok(FlagValue::Bool(false));
        }
        if flag.ensure_experience_continuity {
            return Err(UNSUPPORTED);
        }
        if let Some(index) = flag.aggregation() {
            return if self.group_type_mapping.contains_key(&python_str(index)) {
                // A group flag evaluated without groups: the reference returns false
                // without asking the server (the answer would be the same).
                Ok(FlagValue::Bool(false))
            } else {
                Err(UNSUPPORTED)
            };
        }
        if flag.buckets_by_device_id() {
            // We evaluate for a distinct id only; the reference needs a device id here.
            return Err(MISSING);
        }
        let ctx = Ctx {
            defs: self,
            distinct_id,
            properties,
            cache: RefCell::new(HashMap::new()),
            depth: Cell::new(0),
        };
        ctx.match_flag(flag)
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

/// Why a step of evaluation stopped. `RequiresServer` stops the whole flag (the
/// reference's `RequiresServerEvaluation`); `Inconclusive` lets later conditions try.
#[derive(Debug, Clone, Copy)]
enum EvalError {
    Inconclusive(Inconclusive),
    RequiresServer,
}

impl EvalError {
    fn reason(self) -> Inconclusive {
        match self {
            EvalError::Inconclusive(r) => r,
            EvalError::RequiresServer => Inconclusive::UnsupportedDefinition,
        }
    }
}

const UNSUPPORTED: EvalError = EvalError::Inconclusive(Inconclusive::UnsupportedDefinition);
const MISSING: EvalError = EvalError::Inconclusive(Inconclusive::MissingProperty);

#[derive(Debug, PartialEq, Eq)]
enum ConditionMatch {
    Match,
    NoMatch,
    OutOfRollout,
}

impl FlagDefinition {
    /// The flag-level aggregation group type index, when it is a group flag.
    fn aggregation(&self) -> Option<&Value> {
        self.filters
            .as_ref()
            .and_then(|f| f.aggregation_group_type_index.as_ref())
            .filter(|v| !v.is_null())
    }

    fn buckets_by_device_id(&self) -> bool {
        let filters = self.filters.as_ref();
        self.bucketing_identifier
            .as_deref()
            .or_else(|| filters.and_then(|f| f.bucketing_identifier.as_deref()))
            == Some("device_id")
    }
}

/// Guards against cohorts or dependencies that refer to each other.
const MAX_DEPTH: u32 = 64;

/// One top-level evaluation: the definitions (for cohorts and flag dependencies), who
/// is evaluated, and the values of dependencies evaluated so far.
struct Ctx<'a> {
    defs: &'a Definitions,
    distinct_id: &'a str,
    properties: &'a Properties,
    /// Dependency values: `None` = evaluated and inconclusive.
    cache: RefCell<HashMap<String, Option<FlagValue>>>,
    depth: Cell<u32>,
}

impl Ctx<'_> {
    fn deeper<T>(&self, f: impl FnOnce() -> Result<T, EvalError>) -> Result<T, EvalError> {
        let d = self.depth.get();
        if d >= MAX_DEPTH {
            return Err(EvalError::RequiresServer);
        }
        self.depth.set(d + 1);
        let r = f();
        self.depth.set(d);
        r
    }

    /// Enrollment, holdout, then the conditions in list order.
    fn match_flag(&self, flag: &FlagDefinition) -> Result<FlagValue, EvalError> {
        let default_filters = Filters::default();
        let filters = flag.filters.as_ref().unwrap_or(&default_filters);

        if filters.feature_enrollment == Some(Value::Bool(true)) {
            if flag.aggregation().is_some() {
                return Err(UNSUPPORTED);
            }
            let key = format!("$feature_enrollment/{}", flag.key);
            return match self.properties.get(&key) {
                None => Err(MISSING),
                Some(v) => Ok(FlagValue::Bool(
                    *v == Value::Bool(true) || v.as_str() == Some("true"),
                )),
            };
        }

        if let Some(holdout) = &filters.holdout
            && let (Some(pct), Some(id)) = (holdout.exclusion_percentage, &holdout.id)
            && !id.is_null()
        {
            let pct = pct.clamp(0.0, 100.0);
            if pct == 100.0
                || hash_with_separator("holdout", "-", self.distinct_id, "") <= pct / 100.0
            {
                return Ok(FlagValue::Variant(format!("holdout-{}", python_str(id))));
            }
        }

        let early_exit = filters.early_exit == Some(true);
        let variants: &[Variant] = filters
            .multivariate
            .as_ref()
            .and_then(|m| m.variants.as_deref())
            .unwrap_or(&[]);
        let mut inconclusive: Option<Inconclusive> = None;
        for condition in filters.groups.as_deref().unwrap_or(&[]) {
            match self.match_condition(flag, condition) {
                Err(EvalError::RequiresServer) => return Err(EvalError::RequiresServer),
                Err(EvalError::Inconclusive(r)) => {
                    inconclusive = Some(pick_reason(inconclusive, r));
                }
                Ok(ConditionMatch::Match) => {
                    let overridden = condition
                        .variant
                        .as_deref()
                        .filter(|v| !v.is_empty() && variants.iter().any(|x| x.key == *v));
                    let variant = match overridden {
                        Some(v) => Some(v.to_owned()),
                        None => matching_variant(&flag.key, self.distinct_id, variants),
                    };
                    return Ok(variant.map_or(FlagValue::Bool(true), FlagValue::Variant));
                }
                Ok(ConditionMatch::OutOfRollout) if early_exit => break,
                Ok(_) => {}
            }
        }
        match inconclusive {
            Some(r) => Err(EvalError::Inconclusive(r)),
            None => Ok(FlagValue::Bool(false)),
        }
    }

    fn match_condition(
        &self,
        flag: &FlagDefinition,
        condition: &Condition,
    ) -> Result<ConditionMatch, EvalError> {
        // Mixed targeting: a condition aggregated differently from its flag targets a
        // group, and we never pass groups, so it cannot match.
        let flag_aggregation = flag.aggregation();
        let condition_aggregation = match &condition.aggregation_group_type_index {
            Some(v) => Some(v).filter(|v| !v.is_null()),
            None => flag_aggregation,
        };
        if condition_aggregation != flag_aggregation && condition_aggregation.is_some() {
            return Ok(ConditionMatch::NoMatch);
        }
        let filters = condition.properties.as_deref().unwrap_or(&[]);
        if !filters.is_empty() {
            if !self.match_condition_properties(filters)? {
                return Ok(ConditionMatch::NoMatch);
            }
            if condition.rollout_percentage.is_none() {
                return Ok(ConditionMatch::Match);
            }
        }
        if let Some(pct) = condition.rollout_percentage
            && hash(&flag.key, self.distinct_id, "") > pct / 100.0
        {
            return Ok(ConditionMatch::OutOfRollout);
        }
        Ok(ConditionMatch::Match)
    }

    /// All filters of a condition. A definite `false` anywhere wins over an inconclusive
    /// filter (filters have no order); otherwise the first server-only filter, then any
    /// inconclusive one, makes the condition inconclusive.
    fn match_condition_properties(&self, filters: &[PropertyFilter]) -> Result<bool, EvalError> {
        let mut inconclusive: Option<Inconclusive> = None;
        let mut requires_server = false;
        for filter in filters {
            match self.match_filter(filter) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(EvalError::RequiresServer) => {
                    if inconclusive.is_none() {
                        requires_server = true;
                    }
                    inconclusive = Some(pick_reason(
                        inconclusive,
                        Inconclusive::UnsupportedDefinition,
                    ));
                }
                Err(EvalError::Inconclusive(r)) => {
                    inconclusive = Some(pick_reason(inconclusive, r));
                }
            }
        }
        if requires_server {
            return Err(EvalError::RequiresServer);
        }
        match inconclusive {
            Some(r) => Err(EvalError::Inconclusive(r)),
            None => Ok(true),
        }
    }

    fn match_filter(&self, filter: &PropertyFilter) -> Result<bool, EvalError> {
        match filter.kind.as_deref() {
            Some("cohort") => self.match_cohort(filter),
            Some("flag") => self.match_dependency(filter),
            _ => match_property(filter, self.properties),
        }
    }

    /// A cohort filter, from the cohorts sent with the definitions. A cohort that was
    /// not sent (a static cohort) needs the server.
    fn match_cohort(&self, filter: &PropertyFilter) -> Result<bool, EvalError> {
        let id = python_str(&filter.value);
        let Some(group) = self.defs.cohorts.get(&id) else {
            return Err(EvalError::RequiresServer);
        };
        let operator = match filter.operator.as_deref() {
            None | Some("") => "exact",
            Some(op) => op,
        };
        if !matches!(operator, "exact" | "in" | "not_in") {
            return Err(UNSUPPORTED);
        }
        let matched = self.deeper(|| self.match_group(group))?;
        Ok(if operator == "not_in" {
            !matched
        } else {
            matched
        })
    }

    /// An AND/OR property group. Every entry is checked (a later server-only entry
    /// still sends the flag to the server); a decisive entry wins over inconclusive ones.
    fn match_group(&self, group: &Value) -> Result<bool, EvalError> {
        let Value::Object(obj) = group else {
            return Err(EvalError::RequiresServer);
        };
        if obj.is_empty() {
            return Ok(true);
        }
        let is_and = match obj.get("type").and_then(Value::as_str) {
            Some("AND") => true,
            Some("OR") => false,
            _ => return Err(EvalError::RequiresServer),
        };
        let Some(Value::Array(entries)) = obj.get("values") else {
            return Err(EvalError::RequiresServer);
        };
        if entries.is_empty() {
            return Ok(true); // an empty group matches, AND or OR
        }
        let mut decisive = None;
        let mut inconclusive = None;
        for entry in entries {
            match self.match_group_entry(entry) {
                Ok(m) => {
                    if m != is_and {
                        decisive = Some(m);
                    }
                }
                Err(EvalError::RequiresServer) => return Err(EvalError::RequiresServer),
                Err(EvalError::Inconclusive(r)) => {
                    inconclusive = Some(pick_reason(inconclusive, r))
                }
            }
        }
        if let Some(d) = decisive {
            return Ok(d);
        }
        match inconclusive {
            Some(r) => Err(EvalError::Inconclusive(r)),
            None => Ok(is_and),
        }
    }

    fn match_group_entry(&self, entry: &Value) -> Result<bool, EvalError> {
        let Value::Object(obj) = entry else {
            return Err(EvalError::RequiresServer);
        };
        let nested = obj.is_empty()
            || obj.contains_key("values")
            || matches!(obj.get("type").and_then(Value::as_str), Some("AND" | "OR"));
        if nested {
            return self.deeper(|| self.match_group(entry));
        }
        let filter: PropertyFilter =
            serde_json::from_value(entry.clone()).map_err(|_| UNSUPPORTED)?;
        let negation = obj.get("negation").is_some_and(python_truthy);
        Ok(self.match_filter(&filter)? != negation)
    }

    /// A flag dependency (`"type": "flag"`, operator `flag_evaluates_to`): evaluates the
    /// flags of `dependency_chain` in order, then compares the referenced flag's value.
    fn match_dependency(&self, filter: &PropertyFilter) -> Result<bool, EvalError> {
        let operator = filter
            .operator
            .as_deref()
            .filter(|o| !o.is_empty())
            .unwrap_or("exact");
        // A malformed condition is a definite no-match, as on the server.
        if operator != "flag_evaluates_to" || !python_truthy(&filter.key) || filter.value.is_null()
        {
            return Ok(false);
        }
        let Some(Value::Array(chain)) = &filter.dependency_chain else {
            return Err(UNSUPPORTED);
        };
        if chain.is_empty() {
            return Err(UNSUPPORTED); // an empty chain marks a circular dependency
        }
        let chain: Vec<&str> = chain
            .iter()
            .map(|k| k.as_str().unwrap_or("\u{0}"))
            .collect();
        {
            let mut cache = self.cache.borrow_mut();
            if let Some(missing) = chain
                .iter()
                .find(|k| !cache.contains_key(**k) && self.defs.flag(k).is_none())
            {
                cache.insert((*missing).to_owned(), None);
                return Err(UNSUPPORTED);
            }
        }
        for key in &chain {
            if self.cache.borrow().contains_key(*key) {
                continue;
            }
            self.deeper(|| self.evaluate_dependency(key))?;
        }
        let key = filter.key.as_str().unwrap_or("\u{0}");
        let actual = self.cache.borrow().get(key).cloned().flatten();
        let Some(actual) = actual else {
            return Err(EvalError::Inconclusive(Inconclusive::UnsupportedDefinition));
        };
        Ok(match (&actual, &filter.value) {
            (FlagValue::Variant(v), Value::Bool(b)) if !v.is_empty() => *b,
            (FlagValue::Variant(v), Value::String(want)) if !v.is_empty() => v == want,
            (FlagValue::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        })
    }

    fn evaluate_dependency(&self, key: &str) -> Result<(), EvalError> {
        let Some(dep) = self.defs.flag(key) else {
            return Err(UNSUPPORTED);
        };
        if !dep.active {
            self.cache
                .borrow_mut()
                .insert(key.to_owned(), Some(FlagValue::Bool(false)));
            return Ok(());
        }
        if dep.ensure_experience_continuity {
            self.cache.borrow_mut().insert(key.to_owned(), None);
            return Err(UNSUPPORTED);
        }
        let result = if dep.aggregation().is_none() && dep.buckets_by_device_id() {
            Err(MISSING)
        } else {
            self.match_flag(dep)
        };
        match result {
            Ok(v) => {
                self.cache.borrow_mut().insert(key.to_owned(), Some(v));
                Ok(())
            }
            // Nothing cached: another filter on this dependency needs the server too.
            Err(EvalError::RequiresServer) => Err(EvalError::RequiresServer),
            Err(EvalError::Inconclusive(r)) => {
                self.cache.borrow_mut().insert(key.to_owned(), None);
                Err(EvalError::Inconclusive(r))
            }
        }
    }
}

/// Python truthiness of a JSON value.
fn python_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn pick_reason(current: Option<Inconclusive>, new: Inconclusive) -> Inconclusive {
    match current {
        Some(Inconclusive::UnsupportedDefinition) => Inconclusive::UnsupportedDefinition,
        _ if new == Inconclusive::UnsupportedDefinition => new,
        Some(c) => c,
        None => new,
    }
}

/// The variant whose cumulative bounds `[min, max)` contain the variant hash.
fn matching_variant(key: &str, distinct_id: &str, variants: &[Variant]) -> Option<String> {
    let h = hash(key, distinct_id, "variant");
    let mut min = 0.0_f64;
    for v in variants {
        let max = min + v.rollout_percentage / 100.0;
        if h >= min && h < max {
            return Some(v.key.clone());
        }
        min = max;
    }
    None
}

const OPERATORS: &[&str] = &[
    "exact",
    "is_not",
    "is_set",
    "is_not_set",
    "icontains",
    "not_icontains",
    "regex",
    "not_regex",
    "starts_with",
    "not_starts_with",
    "ends_with",
    "not_ends_with",
    "gt",
    "gte",
    "lt",
    "lte",
    "is_date_before",
    "is_date_after",
    "semver_eq",
    "semver_neq",
    "semver_gt",
    "semver_gte",
    "semver_lt",
    "semver_lte",
    "semver_tilde",
    "semver_caret",
    "semver_wildcard",
];

/// Matches one person-property filter with the reference semantics.
fn match_property(filter: &PropertyFilter, properties: &Properties) -> Result<bool, EvalError> {
    let operator = match filter.operator.as_deref() {
        None | Some("") => "exact",
        Some(op) => op,
    };
    if !OPERATORS.contains(&operator) {
        return Err(UNSUPPORTED);
    }
    let Some(actual) = filter.key.as_str().and_then(|k| properties.get(k)) else {
        return Err(MISSING);
    };
    let value = &filter.value;
    match operator {
        "is_set" => return Ok(true),
        "is_not_set" => return Ok(false),
        "gt" | "gte" | "lt" | "lte" => {
            let wanted = parse_number(value).ok_or(UNSUPPORTED)?;
            let Some(got) = parse_number(actual) else {
                return Ok(false);
            };
            return Ok(match operator {
                "gt" => got > wanted,
                "gte" => got >= wanted,
                "lt" => got < wanted,
                _ => got <= wanted,
            });
        }
        _ => {}
    }
    let string_op = operator.contains("contains")
        || operator.contains("starts_with")
        || operator.contains("ends_with")
        || operator.contains("regex");
    if actual.is_null() && !string_op && operator != "exact" && operator != "is_not" {
        return Ok(false);
    }
    match operator {
        "exact" | "is_not" => {
            let matched = match_exact(value, actual)?;
            Ok(if operator == "exact" {
                matched
            } else {
                !matched
            })
        }
        "icontains" | "not_icontains" | "starts_with" | "not_starts_with" | "ends_with"
        | "not_ends_with" => {
            let got = ascii_lower(&value_to_string(actual).ok_or(MISSING)?);
            let wanted = ascii_lower(&value_to_string(value).ok_or(UNSUPPORTED)?);
            let matched = if operator.ends_with("icontains") {
                got.contains(&wanted)
            } else if operator.ends_with("starts_with") {
                got.starts_with(&wanted)
            } else {
                got.ends_with(&wanted)
            };
            Ok(if operator.starts_with("not_") {
                !matched
            } else {
                matched
            })
        }
        "regex" | "not_regex" => {
            let got = value_to_string(actual).ok_or(MISSING)?;
            let pattern = python_scalar_str(value).ok_or(UNSUPPORTED)?;
            match regex_compat::is_match(&pattern, &got) {
                Err(regex_compat::Deferred) => Err(UNSUPPORTED),
                // An invalid pattern matches nothing, for regex and not_regex alike.
                Ok(None) => Ok(false),
                Ok(Some(m)) => Ok(if operator == "regex" { m } else { !m }),
            }
        }
        op if op.starts_with("semver_") => match_semver(op, value, actual),
        "is_date_before" | "is_date_after" => {
            let now = time::OffsetDateTime::now_utc();
            let wanted = python_scalar_str(value)
                .and_then(|text| dates::parse_filter(&text, now).ok())
                .ok_or(UNSUPPORTED)?;
            let got = match actual {
                Value::String(text) => dates::parse_absolute(text, now).map_err(|_| MISSING)?,
                _ => return Err(MISSING),
            };
            Ok(if operator == "is_date_before" {
                got < wanted
            } else {
                got > wanted
            })
        }
        _ => Err(UNSUPPORTED),
    }
}

fn match_exact(value: &Value, actual: &Value) -> Result<bool, EvalError> {
    let got = value_to_string(actual).ok_or(MISSING)?.to_lowercase();
    if let Value::Array(items) = value
        && items.is_empty()
    {
        return Ok(is_truthy(actual));
    }
    if is_truthy_or_falsy(value) {
        return Ok(is_truthy(value) == is_truthy(actual));
    }
    if let Value::Array(items) = value {
        for item in items {
            if value_to_string(item).ok_or(UNSUPPORTED)?.to_lowercase() == got {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    Ok(value_to_string(value).ok_or(UNSUPPORTED)?.to_lowercase() == got)
}

fn is_truthy_or_falsy(v: &Value) -> bool {
    match v {
        Value::Bool(_) => true,
        Value::String(s) => {
            let l = s.to_lowercase();
            l == "true" || l == "false"
        }
        Value::Array(items) => items.iter().all(is_truthy_or_falsy),
        _ => false,
    }
}

fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.to_lowercase() == "true",
        Value::Array(items) => items.iter().all(is_truthy),
        _ => false,
    }
}

fn ascii_lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// A property value as the reference stringifies it for comparison: strings as they
/// are, everything else as compact JSON (sorted object keys, Python float formatting).
fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => json_to_string(other),
    }
}

fn json_to_string(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => serde_json::to_string(s).ok()?,
        Value::Number(n) => json_number(n),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(json_to_string).collect();
            format!("[{}]", parts?.join(","))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut parts = Vec::with_capacity(keys.len());
            for k in keys {
                parts.push(format!(
                    "{}:{}",
                    serde_json::to_string(k).ok()?,
                    json_to_string(&map[k])?
                ));
            }
            format!("{{{}}}", parts.join(","))
        }
    })
}

/// JSON formatting of a number the way the reference does it (Python `repr` for
/// floats, with small negative exponents written out in full).
fn json_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    let repr = python_float_repr(f);
    match repr.split_once('e') {
        None => repr,
        Some((mantissa, exp)) => {
            let exp: i32 = exp.parse().unwrap_or(0);
            if -6 < exp && exp < 0 {
                decimal_fixed(mantissa, exp)
            } else {
                let sign = if exp >= 0 { "+" } else { "" };
                format!("{mantissa}e{sign}{exp}")
            }
        }
    }
}

/// Writes `mantissa * 10^exp` (exp < 0) in fixed notation.
fn decimal_fixed(mantissa: &str, exp: i32) -> String {
    let (sign, m) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let (int_part, frac_part) = m.split_once('.').unwrap_or((m, ""));
    let digits = format!("{int_part}{frac_part}");
    // value = 0.digits * 10^(len(int_part) + exp)
    let point = int_part.len() as i32 + exp;
    let body = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else {
        let (a, b) = digits.split_at(point as usize);
        if b.is_empty() {
            a.to_owned()
        } else {
            format!("{a}.{b}")
        }
    };
    format!("{sign}{body}")
}

/// Python's `repr(float)`: shortest round-trip digits, scientific notation when the
/// decimal exponent is below -4 or at least 16.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let sci = format!("{f:e}"); // e.g. "1.5e-5", "-1e16"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Python `str()` of a JSON scalar (`True`, `None`, `1.5`, text); `None` for containers.
fn python_scalar_str(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => python_float_repr(n.as_f64()?),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// Python `str()` of a JSON value used as an id (`holdout-<id>`, group index lookup).
fn python_str(v: &Value) -> String {
    python_scalar_str(v).unwrap_or_else(|| v.to_string())
}

fn parse_number(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            if !is_numeric_literal(s) {
                return None;
            }
            s.parse::<f64>().ok()?
        }
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// `[+-]?(digits[.digits*]|.digits)([eE][+-]?digits)?`, the whole string.
fn is_numeric_literal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - s;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    i == b.len()
}

type Semver = (u64, u64, u64);

fn semver_part(p: &str) -> Option<u64> {
    if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0'))
    {
        return None;
    }
    p.parse().ok()
}

fn parse_semver(text: &str) -> Option<Semver> {
    let t = text.trim().trim_start_matches(['v', 'V']);
    let t = t.split('-').next().unwrap_or("");
    let t = t.split('+').next().unwrap_or("");
    let parts: Vec<&str> = t.split('.').collect();
    let major = semver_part(parts.first().copied().filter(|p| !p.is_empty())?)?;
    let part = |i: usize| match parts.get(i) {
        Some(p) if !p.is_empty() => semver_part(p),
        _ => Some(0),
    };
    Some((major, part(1)?, part(2)?))
}

fn semver_bounds(operator: &str, text: &str) -> Option<(Semver, Semver)> {
    match operator {
        "semver_tilde" => {
            let (a, b, c) = parse_semver(text)?;
            Some(((a, b, c), (a, b + 1, 0)))
        }
        "semver_caret" => {
            let (a, b, c) = parse_semver(text)?;
            let upper = if a > 0 {
                (a + 1, 0, 0)
            } else if b > 0 {
                (0, b + 1, 0)
            } else {
                (0, 0, c + 1)
            };
            Some(((a, b, c), upper))
        }
        _ => {
            let cleaned = text.trim().trim_start_matches(['v', 'V']).replace('*', "");
            let cleaned = cleaned.trim_end_matches('.');
            let parts: Vec<&str> = cleaned.split('.').filter(|p| !p.is_empty()).collect();
            match parts.len() {
                0 => None,
                1 => {
                    let a = semver_part(parts[0])?;
                    Some(((a, 0, 0), (a + 1, 0, 0)))
                }
                2 => {
                    let (a, b) = (semver_part(parts[0])?, semver_part(parts[1])?);
                    Some(((a, b, 0), (a, b + 1, 0)))
                }
                _ => {
                    let (a, b, c) = (
                        semver_part(parts[0])?,
                        semver_part(parts[1])?,
                        semver_part(parts[2])?,
                    );
                    Some(((a, b, c), (a, b, c + 1)))
                }
            }
        }
    }
}

fn match_semver(operator: &str, value: &Value, actual: &Value) -> Result<bool, EvalError> {
    let wanted_text = python_scalar_str(value).ok_or(UNSUPPORTED)?;
    let got = python_scalar_str(actual)
        .and_then(|s| parse_semver(&s))
        .ok_or(MISSING);
    if matches!(
        operator,
        "semver_tilde" | "semver_caret" | "semver_wildcard"
    ) {
        let (lo, hi) = semver_bounds(operator, &wanted_text).ok_or(UNSUPPORTED)?;
        let got = got?;
        return Ok(lo <= got && got < hi);
    }
    let wanted = parse_semver(&wanted_text).ok_or(UNSUPPORTED)?;
    let got = got?;
    Ok(match operator {
        "semver_eq" => got == wanted,
        "semver_neq" => got != wanted,
        "semver_gt" => got > wanted,
        "semver_gte" => got >= wanted,
        "semver_lt" => got < wanted,
        _ => got <= wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(python_float_repr(1.0), "1.0");
        assert_eq!(python_float_repr(1.5), "1.5");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(1.5e-5), "1.5e-05");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(123456789012345.6), "123456789012345.6");
    }

    #[test]
    fn json_numbers_are_stringified_like_the_reference() {
        let n = |v: Value| value_to_string(&v).unwrap();
        assert_eq!(n(json!(1.5e-5)), "0.000015");
        assert_eq!(n(json!(1e-7)), "1e-7");
        assert_eq!(n(json!(1e16)), "1e+16");
        assert_eq!(n(json!(3)), "3");
        assert_eq!(
            n(json!({"b": 1, "a": [true, null, "x"]})),
            r#"{"a":[true,null,"x"],"b":1}"#
        );
    }

    #[test]
    fn numeric_literals() {
        for ok in ["1", "+1.", ".5", "-2.5e3", "1E+5"] {
            assert!(is_numeric_literal(ok), "{ok}");
        }
        for bad in ["", ".", "1e", "abc", " 1", "1_000", "inf", "0x10"] {
            assert!(!is_numeric_literal(bad), "{bad}");
        }
    }

    #[test]
    fn semver_parsing() {
        assert_eq!(parse_semver("v1.2.3-beta"), Some((1, 2, 3)));
        assert_eq!(parse_semver("1.2"), Some((1, 2, 0)));
        assert_eq!(parse_semver("01.2"), None);
        assert_eq!(parse_semver(""), None);
        assert_eq!(
            semver_bounds("semver_caret", "0.0.3"),
            Some(((0, 0, 3), (0, 0, 4)))
        );
        assert_eq!(
            semver_bounds("semver_wildcard", "1.*"),
            Some(((1, 0, 0), (2, 0, 0)))
        );
    }
}
