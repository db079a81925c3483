//! A small checker for the JSON Schemas in `docs/json/`: the subset of JSON Schema
//! 2020-12 those files use (`type`, `required`, `properties`, `additionalProperties`,
//! `items`, `enum`, `pattern`, `minimum`, `maximum`, `minItems`). Chosen over the
//! `jsonschema` crate to keep the test build light on two cores; every keyword a
//! schema file uses must be one this checker knows (tested below), so nothing is
//! silently ignored.

use std::path::PathBuf;

use serde_json::Value;

const KNOWN: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "type",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minItems",
];

/// Every command with a schema file.
pub(crate) const SCHEMAS: &[&str] = &[
    "up",
    "exec",
    "down",
    "ls",
    "ports",
    "hibernate",
    "prune",
    "snapshot-ls",
    "snapshot-gc",
    "snapshot-gc-registry",
    "snapshot-pull",
    "snapshot-build",
    "snapshot-rm",
    "flags-status",
    "daemon-status",
    "daemon-stop",
    "vm-up",
    "vm-ls",
    "vm-down",
    "vm-exec",
    "error",
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/json")
}

/// The schema `docs/json/<name>.schema.json`.
pub(crate) fn load(name: &str) -> Value {
    let path = dir().join(format!("{name}.schema.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Panics with every mismatch when `value` does not match schema `name`.
pub(crate) fn check(name: &str, value: &Value) {
    let schema = load(name);
    let mut errors = Vec::new();
    validate(&schema, value, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "output does not match docs/json/{name}.schema.json:\n  {}\n{value:#}",
        errors.join("\n  ")
    );
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        other => panic!("unknown type {other} in a schema"),
    }
}

fn validate(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        return; // `true` / `{}`: anything
    };
    if let Some(ty) = s.get("type") {
        let types: Vec<&str> = match ty {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type keyword at {at}"),
        };
        if !types.iter().any(|t| type_matches(t, v)) {
            errors.push(format!("{at}: expected {types:?}, got {v}"));
            return;
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.contains(v) {
            errors.push(format!("{at}: {v} is not one of {options:?}"));
        }
    }
    if let (Some(Value::String(p)), Some(text)) = (s.get("pattern"), v.as_str()) {
        if !regex::Regex::new(p).unwrap().is_match(text) {
            errors.push(format!("{at}: {text:?} does not match {p}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            errors.push(format!("{at}: {n} is below the minimum"));
        }
        if s.get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            errors.push(format!("{at}: {n} is above the maximum"));
        }
    }
    if let Some(obj) = v.as_object() {
        for key in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap();
            if !obj.contains_key(key) {
                errors.push(format!("{at}: missing required `{key}`"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, child) in obj {
            let path = format!("{at}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(sub) => validate(sub, child, &path, errors),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{at}: unexpected key `{k}`"));
                    }
                    Some(sub @ Value::Object(_)) => validate(sub, child, &path, errors),
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = v.as_array() {
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (items.len() as u64) < m)
        {
            errors.push(format!("{at}: fewer items than minItems"));
        }
        if let Some(sub) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(sub, item, &format!("{at}[{i}]"), errors);
            }
        }
    }
}

fn keywords_known(schema: &Value, at: &str, unknown: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        return;
    };
    for (k, v) in s {
        if !KNOWN.contains(&k.as_str()) {
            unknown.push(format!("{at}: {k}"));
        }
        match k.as_str() {
            "properties" => {
                for (name, sub) in v.as_object().into_iter().flatten() {
                    keywords_known(sub, &format!("{at}.{name}"), unknown);
                }
            }
            "items" | "additionalProperties" => keywords_known(v, &format!("{at}[]"), unknown),
            _ => {}
        }
    }
}

#[test]
fn every_schema_file_uses_only_keywords_the_checker_enforces() {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = SCHEMAS.iter().map(|s| format!("{s}.schema.json")).collect();
    expected.sort();
    assert_eq!(files, expected, "one schema per command, each tested");
    for name in SCHEMAS {
        let mut unknown = Vec::new();
        keywords_known(&load(name), "$", &mut unknown);
        assert!(unknown.is_empty(), "{name}: {unknown:?}");
    }
}

#[test]
fn the_checker_rejects_what_a_schema_forbids() {
    let ok = serde_json::json!({"error": {"kind": "invalid_url", "message": "m", "hint": null}});
    let mut errors = Vec::new();
    validate(&load("error"), &ok, "$", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    for bad in [
        serde_json::json!({"error": {"kind": "InvalidUrl", "message": "m", "hint": null}}),
        serde_json::json!({"error": {"kind": "x", "hint": null}}),
        serde_json::json!({"error": {"kind": "x", "message": 3, "hint": null}}),
        serde_json::json!({"error": {"kind": "x", "message": "m", "hint": null}, "extra": 1}),
    ] {
        let mut errors = Vec::new();
        validate(&load("error"), &bad, "$", &mut errors);
        assert!(!errors.is_empty(), "{bad} passed");
    }
}
