//! Shared helpers: configurations built from explicit values (never the process
//! environment) and flag definitions from JSON.

use std::collections::HashMap;
use std::path::Path;

use feature_flags::{Config, Definitions, vars};
use serde_json::Value;

/// A configuration with a project key and `host`, plus `extra` variables.
pub(crate) fn config(dir: &Path, host: &str, extra: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert(vars::PROJECT_KEY.into(), "phc_test_key".into());
    map.insert(vars::HOST.into(), host.into());
    for (k, v) in extra {
        map.insert((*k).into(), (*v).into());
    }
    Config::from_env(dir, move |k| map.get(k).cloned())
}

/// Definitions from a `{"flags": [...]}` JSON value.
pub(crate) fn defs(v: Value) -> Definitions {
    serde_json::from_value(v).expect("valid definitions")
}
