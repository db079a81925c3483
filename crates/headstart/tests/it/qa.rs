//! What an unlucky user or an attacker tried, and what broke before it was fixed.

use crate::{headstart, stdout};

#[test]
fn a_json_usage_error_names_the_missing_argument() {
    let home = crate::TestHome::new();
    for (args, missing) in [
        (&["down", "--json"][..], "<NAME>"),
        (&["exec", "--json"][..], "<NAME>"),
    ] {
        let o = headstart(home.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON object ({e}): {}", stdout(&o)));
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("were not provided") && message.contains(missing),
            "{args:?}: {message}"
        );
    }
}
