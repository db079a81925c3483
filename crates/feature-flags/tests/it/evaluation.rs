//! Local evaluation: PostHog's public consistency vectors and the edges of the rules.

use feature_flags::{Evaluation, FlagValue, Inconclusive, Properties, hash};
use serde_json::{Value, json};

use crate::support::defs;

fn props(v: Value) -> Properties {
    v.as_object().cloned().unwrap_or_default()
}

fn variant(s: &str) -> Evaluation {
    Evaluation::Value(FlagValue::Variant(s.into()))
}

fn boolean(b: bool) -> Evaluation {
    Evaluation::Value(FlagValue::Bool(b))
}

fn multivariate_flag() -> Value {
    json!({"flags": [{
        "key": "multivariate-flag", "active": true,
        "filters": {
            "groups": [{"properties": [], "rollout_percentage": 55}],
            "multivariate": {"variants": [
                {"key": "first-variant", "rollout_percentage": 50},
                {"key": "second-variant", "rollout_percentage": 20},
                {"key": "third-variant", "rollout_percentage": 20},
                {"key": "fourth-variant", "rollout_percentage": 5},
                {"key": "fifth-variant", "rollout_percentage": 5}
            ]}
        }
    }, {
        "key": "simple-flag", "active": true,
        "filters": {"groups": [{"properties": [], "rollout_percentage": 45}]}
    }]})
}

#[test]
fn posthog_consistency_vectors() {
    let d = defs(multivariate_flag());
    let none = Properties::new();
    assert_eq!(
        d.evaluate("multivariate-flag", "distinct_id_0", &none),
        variant("second-variant")
    );
    assert_eq!(
        d.evaluate("multivariate-flag", "distinct_id_1", &none),
        variant("second-variant")
    );
    assert_eq!(
        d.evaluate("multivariate-flag", "distinct_id_2", &none),
        variant("first-variant")
    );
    assert_eq!(
        d.evaluate("simple-flag", "distinct_id_0", &none),
        boolean(false)
    );
    assert_eq!(
        d.evaluate("simple-flag", "distinct_id_1", &none),
        boolean(true)
    );
    assert_eq!(
        d.evaluate("simple-flag", "distinct_id_2", &none),
        boolean(true)
    );
}

#[test]
fn hash_is_sha1_of_key_dot_id_salt_over_fifteen_hex_digits() {
    // sha1("simple-flag.distinct_id_0") starts with c8a05362b9f414f and
    // sha1("multivariate-flag.distinct_id_0variant") with 9e5f8c67dc34910 (computed
    // independently with Python's hashlib).
    let scale = 0xFFF_FFFF_FFFF_FFFF_u64 as f64;
    assert_eq!(
        hash("simple-flag", "distinct_id_0", ""),
        0xc8a05362b9f414f_u64 as f64 / scale
    );
    assert_eq!(
        hash("multivariate-flag", "distinct_id_0", "variant"),
        0x9e5f8c67dc34910_u64 as f64 / scale
    );
    assert_ne!(hash("k", "id", ""), hash("k", "id", "variant"));
    // The key/id boundary matters: "ab" + "." + "c" differs from "a" + "." + "bc".
    assert_ne!(hash("ab", "c", ""), hash("a", "bc", ""));
}

fn rollout(pct: f64) -> feature_flags::Definitions {
    defs(json!({"flags": [{"key": "r", "active": true,
        "filters": {"groups": [{"properties": [], "rollout_percentage": pct}]}}]}))
}

#[test]
fn zero_and_full_rollouts() {
    let zero = rollout(0.0);
    let full = rollout(100.0);
    let none = Properties::new();
    for i in 0..500 {
        let id = format!("user-{i}");
        assert_eq!(zero.evaluate("r", &id, &none), boolean(false), "{id}");
        assert_eq!(full.evaluate("r", &id, &none), boolean(true), "{id}");
    }
}

// f64::next_up/next_down are newer than the workspace MSRV; positive finite values only.
fn next_up(x: f64) -> f64 {
    f64::from_bits(x.to_bits() + 1)
}

fn next_down(x: f64) -> f64 {
    f64::from_bits(x.to_bits() - 1)
}

/// A percentage `p` with `p / 100 == h` exactly, if one exists near `h * 100`.
fn exact_percentage(h: f64) -> Option<f64> {
    let mut p = h * 100.0;
    for _ in 0..4 {
        p = next_down(p);
    }
    (0..8)
        .map(|_| {
            p = next_up(p);
            p
        })
        .find(|p| p / 100.0 == h)
}

#[test]
fn a_hash_exactly_on_the_rollout_bound_is_in() {
    let none = Properties::new();
    let mut checked = 0;
    for i in 0..50 {
        let id = format!("bound-{i}");
        let h = hash("r", &id, "");
        let Some(p) = exact_percentage(h) else {
            continue;
        };
        // Out only when hash > p/100 (strictly): on the bound is in.
        assert_eq!(
            rollout(p).evaluate("r", &id, &none),
            boolean(true),
            "{id} at {p}"
        );
        assert_eq!(
            rollout(next_down(p)).evaluate("r", &id, &none),
            boolean(false),
            "{id}"
        );
        checked += 1;
    }
    assert!(
        checked > 10,
        "too few ids had an exact percentage: {checked}"
    );
}

#[test]
fn a_hash_exactly_on_a_variant_bound_goes_to_the_next_variant() {
    let none = Properties::new();
    let mut checked = 0;
    for i in 0..50 {
        let id = format!("vbound-{i}");
        let h = hash("v", &id, "variant");
        let Some(p) = exact_percentage(h) else {
            continue;
        };
        let d = defs(json!({"flags": [{"key": "v", "active": true, "filters": {
        "groups": [{"properties": [], "rollout_percentage": 100}],
        "multivariate": {"variants": [
            {"key": "a", "rollout_percentage": p},
            {"key": "b", "rollout_percentage": 100.0 - p}
        ]}}}]}));
        // Bounds are [min, max): a hash equal to a's max belongs to b.
        assert_eq!(d.evaluate("v", &id, &none), variant("b"), "{id}");
        checked += 1;
    }
    assert!(checked > 10);
}

#[test]
fn variants_summing_under_100_leave_a_boolean_true() {
    let d = defs(json!({"flags": [{"key": "v", "active": true, "filters": {
    "groups": [{"properties": [], "rollout_percentage": 100}],
    "multivariate": {"variants": [
        {"key": "a", "rollout_percentage": 10},
        {"key": "b", "rollout_percentage": 10}
    ]}}}]}));
    let none = Properties::new();
    let (mut uncovered, mut covered) = (0, 0);
    for i in 0..300 {
        let id = format!("u{i}");
        let h = hash("v", &id, "variant");
        let got = d.evaluate("v", &id, &none);
        if h >= 0.2 {
            assert_eq!(got, boolean(true), "{id}");
            uncovered += 1;
        } else {
            let want = if h < 0.1 { "a" } else { "b" };
            assert_eq!(got, variant(want), "{id}");
            covered += 1;
        }
    }
    assert!(uncovered > 0 && covered > 0);
}

#[test]
fn variant_overrides_and_condition_order() {
    let d = defs(json!({"flags": [{"key": "o", "active": true, "filters": {
    "groups": [
        {"properties": [{"key": "email", "operator": "exact", "value": "a@x.com", "type": "person"}],
         "rollout_percentage": 100, "variant": "second"},
        {"properties": [], "rollout_percentage": 100, "variant": "third"},
        {"properties": [], "rollout_percentage": 100, "variant": "first"}
    ],
    "multivariate": {"variants": [
        {"key": "first", "rollout_percentage": 34},
        {"key": "second", "rollout_percentage": 33},
        {"key": "third", "rollout_percentage": 33}
    ]}}}]}));
    for i in 0..50 {
        let id = format!("o{i}");
        assert_eq!(
            d.evaluate("o", &id, &props(json!({"email": "a@x.com"}))),
            variant("second")
        );
        // The first matching condition in list order decides: "third", never "first".
        assert_eq!(
            d.evaluate("o", &id, &props(json!({"email": "b@x.com"}))),
            variant("third")
        );
    }
    // An override naming no variant falls back to hashing.
    let bogus = defs(json!({"flags": [{"key": "o", "active": true, "filters": {
        "groups": [{"properties": [], "rollout_percentage": 100, "variant": "nope"}],
        "multivariate": {"variants": [{"key": "only", "rollout_percentage": 100}]}}}]}));
    assert_eq!(
        bogus.evaluate("o", "x", &Properties::new()),
        variant("only")
    );
}

#[test]
fn inactive_flags_and_payloads() {
    let d = defs(json!({"flags": [
        {"key": "off", "active": false, "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}},
        {"key": "on", "active": true, "filters": {
            "groups": [{"properties": [], "rollout_percentage": 100}],
            "payloads": {"true": "{\"color\": \"blue\"}"}}}
    ]}));
    let none = Properties::new();
    assert_eq!(d.evaluate("off", "x", &none), boolean(false));
    assert_eq!(d.evaluate("on", "x", &none), boolean(true));
    let on = d.flag("on").unwrap();
    assert_eq!(
        on.payload(&FlagValue::Bool(true)),
        Some(&json!("{\"color\": \"blue\"}"))
    );
    assert_eq!(on.payload(&FlagValue::Bool(false)), None);
    assert_eq!(
        d.evaluate("missing", "x", &none),
        Evaluation::Inconclusive(Inconclusive::UnknownFlag)
    );
}

fn one_filter(operator: &str, value: Value) -> feature_flags::Definitions {
    defs(
        json!({"flags": [{"key": "p", "active": true, "filters": {"groups": [
        {"properties": [{"key": "k", "operator": operator, "value": value, "type": "person"}],
         "rollout_percentage": 100}]}}]}),
    )
}

#[test]
fn each_operator() {
    // (operator, filter value, property value, expected: Some(bool) or None = inconclusive)
    let cases: Vec<(&str, Value, Value, Option<bool>)> = vec![
        ("exact", json!("Alice"), json!("alice"), Some(true)),
        ("exact", json!(["a", "b"]), json!("B"), Some(true)),
        ("exact", json!(["a", "b"]), json!("c"), Some(false)),
        ("exact", json!("true"), json!(true), Some(true)),
        ("exact", json!(5), json!("5"), Some(true)),
        ("is_not", json!("alice"), json!("bob"), Some(true)),
        ("is_not", json!("alice"), json!("ALICE"), Some(false)),
        ("icontains", json!("LIC"), json!("alice"), Some(true)),
        ("icontains", json!("zz"), json!("alice"), Some(false)),
        ("not_icontains", json!("zz"), json!("alice"), Some(true)),
        ("not_icontains", json!("AL"), json!("alice"), Some(false)),
        ("regex", json!("^a.+e$"), json!("alice"), Some(true)),
        ("regex", json!("^b"), json!("alice"), Some(false)),
        ("regex", json!("(unclosed"), json!("alice"), Some(false)),
        ("not_regex", json!("(unclosed"), json!("alice"), Some(false)),
        ("not_regex", json!("^b"), json!("alice"), Some(true)),
        ("regex", json!("(?i)ALICE"), json!("alice"), None),
        ("gt", json!(5), json!(6), Some(true)),
        ("gt", json!("5"), json!("5"), Some(false)),
        ("gte", json!("5"), json!(5), Some(true)),
        ("lt", json!(5), json!("4.5"), Some(true)),
        ("lte", json!(5), json!(5.5), Some(false)),
        ("gt", json!(5), json!("abc"), Some(false)),
        ("gt", json!(5), json!(true), Some(false)),
        ("gt", json!("not a number"), json!(6), None),
        ("is_set", json!("is_set"), json!("anything"), Some(true)),
        (
            "is_not_set",
            json!("is_not_set"),
            json!("anything"),
            Some(false),
        ),
        ("regex", json!("b"), Value::Null, Some(false)),
        ("semver_gt", json!("1.2.3"), json!("1.10.0"), Some(true)),
        (
            "is_date_before",
            json!("2020-01-01"),
            json!("2019-01-01"),
            Some(true),
        ),
        (
            "is_date_after",
            json!("-30d"),
            json!("2019-01-01T00:00:00Z"),
            Some(false),
        ),
        (
            "is_date_after",
            json!("-30d"),
            json!("2999-01-01 10:00:00 +02:00"),
            Some(true),
        ),
        (
            "is_date_before",
            json!("not a date"),
            json!("2019-01-01"),
            None,
        ),
        (
            "is_date_before",
            json!("2020-01-01"),
            json!("yesterday"),
            None,
        ),
        ("made_up_operator", json!("x"), json!("x"), None),
    ];
    for (op, value, prop, want) in cases {
        let d = one_filter(op, value.clone());
        let got = d.evaluate("p", "id", &props(json!({"k": prop.clone()})));
        let Some(want) = want else {
            assert!(
                matches!(got, Evaluation::Inconclusive(_)),
                "{op} {value} vs {prop}: {got:?}"
            );
            continue;
        };
        let want = boolean(want);
        assert_eq!(got, want, "{op} {value} vs {prop}");
    }
}

#[test]
fn a_missing_property_is_inconclusive_never_false() {
    let none = Properties::new();
    for op in [
        "exact",
        "is_not",
        "icontains",
        "not_icontains",
        "regex",
        "not_regex",
        "gt",
        "is_set",
        "is_not_set",
    ] {
        let d = one_filter(op, json!("x"));
        assert_eq!(
            d.evaluate("p", "id", &none),
            Evaluation::Inconclusive(Inconclusive::MissingProperty),
            "{op}"
        );
        assert_eq!(d.evaluate("p", "id", &none).to_json(), Value::Null);
    }
}

#[test]
fn inconclusive_paths() {
    let d = defs(
        json!({"flags": [{"key": "f", "active": true, "filters": {"groups": [
            {"properties": [
                {"key": "plan", "operator": "exact", "value": "pro", "type": "person"},
                {"key": "country", "operator": "exact", "value": "FR", "type": "person"}
            ], "rollout_percentage": 100},
            {"properties": [{"key": "email", "operator": "icontains", "value": "@corp", "type": "person"}],
             "rollout_percentage": 100}
        ]}}]}),
    );
    // Missing `plan` but a definite no on `country`: the condition is a definite no.
    assert_eq!(
        d.evaluate("f", "id", &props(json!({"country": "DE", "email": "a@b"}))),
        boolean(false)
    );
    // Missing `plan`, `country` matches: inconclusive; the later condition matches and decides.
    assert_eq!(
        d.evaluate(
            "f",
            "id",
            &props(json!({"country": "FR", "email": "x@corp.com"}))
        ),
        boolean(true)
    );
    // ... and when the later one does not match, the flag stays inconclusive.
    assert_eq!(
        d.evaluate(
            "f",
            "id",
            &props(json!({"country": "FR", "email": "x@home"}))
        ),
        Evaluation::Inconclusive(Inconclusive::MissingProperty)
    );
    // Cohorts and experience continuity need the server.
    let c = defs(json!({"flags": [
        {"key": "c", "active": true, "filters": {"groups": [
            {"properties": [{"key": "id", "type": "cohort", "value": 42}], "rollout_percentage": 100},
            {"properties": [], "rollout_percentage": 100}]}},
        {"key": "e", "active": true, "ensure_experience_continuity": true,
         "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}}
    ]}));
    assert!(matches!(
        c.evaluate("c", "id", &Properties::new()),
        Evaluation::Inconclusive(_)
    ));
    assert!(matches!(
        c.evaluate("e", "id", &Properties::new()),
        Evaluation::Inconclusive(_)
    ));
}

#[test]
fn cohorts_sent_with_the_definitions_are_evaluated() {
    let cohort_filter =
        |op: &str, id: u32| json!({"key": "id", "type": "cohort", "operator": op, "value": id});
    let flag = |key: &str, filter: Value| json!({"key": key, "active": true, "filters": {"groups": [{"properties": [filter], "rollout_percentage": 100}]}});
    let d = defs(json!({
        "flags": [
            flag("in", cohort_filter("in", 5)),
            flag("not-in", cohort_filter("not_in", 5)),
            flag("static", cohort_filter("in", 6)),
        ],
        "cohorts": {"5": {"type": "OR", "values": [
            {"type": "AND", "values": [{"key": "plan", "operator": "exact", "value": "pro", "type": "person"}]},
            {"type": "AND", "values": [{"key": "email", "operator": "icontains", "value": "@corp", "type": "person", "negation": true}]}
        ]}}
    }));
    let pro = props(json!({"plan": "pro"}));
    let free_corp = props(json!({"plan": "free", "email": "a@corp.com"}));
    assert_eq!(d.evaluate("in", "id", &pro), boolean(true));
    assert_eq!(d.evaluate("not-in", "id", &pro), boolean(false));
    // plan is not pro, and the negated filter fails: not in the cohort.
    assert_eq!(d.evaluate("in", "id", &free_corp), boolean(false));
    assert_eq!(d.evaluate("not-in", "id", &free_corp), boolean(true));
    // Only `email` missing and plan not pro: the OR cannot be decided locally.
    assert!(matches!(
        d.evaluate("in", "id", &props(json!({"plan": "free"}))),
        Evaluation::Inconclusive(_)
    ));
    // A cohort that was not sent (static) needs the server.
    assert!(matches!(
        d.evaluate("static", "id", &pro),
        Evaluation::Inconclusive(_)
    ));
}

#[test]
fn flag_dependencies_follow_their_chain() {
    let dep = |value: Value, chain: Value, op: &str| {
        json!({"key": "dependent", "active": true, "filters": {"groups": [{"properties": [
            {"key": "base", "type": "flag", "operator": op, "value": value, "dependency_chain": chain}
        ], "rollout_percentage": 100}]}})
    };
    let base = |active: bool| {
        json!({"key": "base", "active": active, "filters": {
            "groups": [{"properties": [], "rollout_percentage": 100}],
            "multivariate": {"variants": [{"key": "blue", "rollout_percentage": 100}]}}})
    };
    let none = Properties::new();
    let eval = |dependent: Value, active: bool| {
        defs(json!({"flags": [base(active), dependent]})).evaluate("dependent", "id", &none)
    };
    let ok = "flag_evaluates_to";
    assert_eq!(
        eval(dep(json!(true), json!(["base"]), ok), true),
        boolean(true)
    );
    assert_eq!(
        eval(dep(json!("blue"), json!(["base"]), ok), true),
        boolean(true)
    );
    assert_eq!(
        eval(dep(json!("red"), json!(["base"]), ok), true),
        boolean(false)
    );
    // An inactive dependency is false, which a `false` expectation matches.
    assert_eq!(
        eval(dep(json!(false), json!(["base"]), ok), false),
        boolean(true)
    );
    // A malformed condition is a definite no; an empty chain (a cycle) or a missing
    // flag in the chain is inconclusive.
    assert_eq!(
        eval(dep(json!(true), json!(["base"]), "exact"), true),
        boolean(false)
    );
    assert!(matches!(
        eval(dep(json!(true), json!([]), ok), true),
        Evaluation::Inconclusive(_)
    ));
    assert!(matches!(
        eval(dep(json!(true), json!(["gone", "base"]), ok), true),
        Evaluation::Inconclusive(_)
    ));
}
