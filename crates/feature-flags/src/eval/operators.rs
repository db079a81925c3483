//! One person-property filter matched with the reference semantics: the operator list,
//! `exact`/`is_not` with PostHog's truthy/falsy rules, string, regex, numeric, semver
//! and date operators.
//!
//! What it is not: the regex dialect or date parsing themselves (`crate::regex_compat`,
//! `crate::dates`) nor semver parsing (`super::semver`).

use serde_json::Value;

use super::Properties;
use super::engine::{EvalError, MISSING, UNSUPPORTED};
use super::model::PropertyFilter;
use super::python::{python_scalar_str, value_to_string};
use super::semver::match_semver;
use crate::{dates, regex_compat};

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
pub(super) fn match_property(
    filter: &PropertyFilter,
    properties: &Properties,
) -> Result<bool, EvalError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_literals() {
        for ok in ["1", "+1.", ".5", "-2.5e3", "1E+5"] {
            assert!(is_numeric_literal(ok), "{ok}");
        }
        for bad in ["", ".", "1e", "abc", " 1", "1_000", "inf", "0x10"] {
            assert!(!is_numeric_literal(bad), "{bad}");
        }
    }
}
