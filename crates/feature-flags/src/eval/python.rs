//! Python's view of JSON values, as posthog-python compares them: truthiness, `str()`,
//! `repr(float)` and `json.dumps` with sorted keys.
//!
//! What it is not: a general Python emulation; only what flag matching needs.

use serde_json::Value;

/// Python truthiness of a JSON value.
pub(super) fn python_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A property value as the reference stringifies it for comparison: strings as they
/// are, everything else as compact JSON (sorted object keys, Python float formatting).
pub(super) fn value_to_string(v: &Value) -> Option<String> {
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
pub(super) fn python_scalar_str(v: &Value) -> Option<String> {
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
pub(super) fn python_str(v: &Value) -> String {
    python_scalar_str(v).unwrap_or_else(|| v.to_string())
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
}
