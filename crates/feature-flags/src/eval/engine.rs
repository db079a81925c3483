//! The evaluation walk: a flag's enrollment, holdout and condition groups, each
//! condition's filters and rollout, then the variant; plus PostHog's bucketing [`hash`].
//!
//! What it is not: the matching of single filters. Person properties are matched in
//! `operators`, cohorts and flag dependencies in `references`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use serde_json::Value;
use sha1::{Digest, Sha1};

use super::Properties;
use super::model::{
    Condition, Definitions, Evaluation, Filters, FlagDefinition, FlagValue, Inconclusive,
    PropertyFilter, Variant,
};
use super::operators::match_property;
use super::python::python_str;

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

impl Definitions {
    /// Evaluates flag `key` for `distinct_id` with person `properties`.
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

/// Why a step of evaluation stopped. `RequiresServer` stops the whole flag (the
/// reference's `RequiresServerEvaluation`); `Inconclusive` lets later conditions try.
#[derive(Debug, Clone, Copy)]
pub(super) enum EvalError {
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

pub(super) const UNSUPPORTED: EvalError =
    EvalError::Inconclusive(Inconclusive::UnsupportedDefinition);
pub(super) const MISSING: EvalError = EvalError::Inconclusive(Inconclusive::MissingProperty);

#[derive(Debug, PartialEq, Eq)]
enum ConditionMatch {
    Match,
    NoMatch,
    OutOfRollout,
}

/// Guards against cohorts or dependencies that refer to each other.
const MAX_DEPTH: u32 = 64;

/// One top-level evaluation: the definitions (for cohorts and flag dependencies), who
/// is evaluated, and the values of dependencies evaluated so far.
pub(super) struct Ctx<'a> {
    pub(super) defs: &'a Definitions,
    distinct_id: &'a str,
    properties: &'a Properties,
    /// Dependency values: `None` = evaluated and inconclusive.
    pub(super) cache: RefCell<HashMap<String, Option<FlagValue>>>,
    depth: Cell<u32>,
}

impl Ctx<'_> {
    pub(super) fn deeper<T>(
        &self,
        f: impl FnOnce() -> Result<T, EvalError>,
    ) -> Result<T, EvalError> {
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
    pub(super) fn match_flag(&self, flag: &FlagDefinition) -> Result<FlagValue, EvalError> {
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

    pub(super) fn match_filter(&self, filter: &PropertyFilter) -> Result<bool, EvalError> {
        match filter.kind.as_deref() {
            Some("cohort") => self.match_cohort(filter),
            Some("flag") => self.match_dependency(filter),
            _ => match_property(filter, self.properties),
        }
    }
}

pub(super) fn pick_reason(current: Option<Inconclusive>, new: Inconclusive) -> Inconclusive {
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
