//! Filters that refer to other definitions: cohorts sent with the definitions (AND/OR
//! property groups, nested) and flag dependencies (`flag_evaluates_to`).
//!
//! What it is not: static cohorts, which only the server knows; those need the server.

use serde_json::Value;

use super::engine::{Ctx, EvalError, MISSING, UNSUPPORTED, pick_reason};
use super::model::{FlagValue, Inconclusive, PropertyFilter};
use super::python::{python_str, python_truthy};

impl Ctx<'_> {
    /// A cohort filter, from the cohorts sent with the definitions. A cohort that was
    /// not sent (a static cohort) needs the server.
    pub(super) fn match_cohort(&self, filter: &PropertyFilter) -> Result<bool, EvalError> {
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
    pub(super) fn match_dependency(&self, filter: &PropertyFilter) -> Result<bool, EvalError> {
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
