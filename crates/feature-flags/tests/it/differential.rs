//! Differential test against PostHog's own Python evaluator (the `posthog` package,
//! pinned in `.ci/run`): random flags, ids and properties, evaluated by both; every
//! answer must agree, including "inconclusive". Skips with a printed reason when
//! python3 or the package is missing.

use std::io::Write;
use std::process::{Command, Stdio};

use feature_flags::{Definitions, Properties};
use serde_json::{Value, json};

/// Small deterministic generator (splitmix64), so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

const KEYS: &[&str] = &["email", "plan", "age", "version", "country", "beta"];
const OPERATORS: &[&str] = &[
    "exact",
    "is_not",
    "icontains",
    "not_icontains",
    "regex",
    "not_regex",
    "gt",
    "gte",
    "lt",
    "lte",
    "is_set",
    "is_not_set",
    "starts_with",
    "ends_with",
    "semver_gte",
    "semver_caret",
    "is_date_before",
    "is_date_after",
    "unknown_op",
];
const PATTERNS: &[&str] = &[
    "^a",
    "com$",
    "[0-9]+",
    "(?:ab)+c",
    "a.c",
    "^$",
    "\\d{2,}",
    "x|y",
    "(",
    "(?i)abc",
    "\\bfoo",
    "\\w+@",
    "^[a-z]+@[a-z]+\\.com$",
    "",
    "\\.",
    "é",
    "a+$",
    "[^a-z]",
    "\\s",
    // Syntax where the engines differ or the reference defers.
    "\\x41",
    "[\\b]",
    "a{2,3}?",
    "\\/",
    "a**",
    "}",
    "]",
    "a|",
    "()",
    "(a)(b)",
    "[\\d-z]",
    "\\$",
    "\\ ",
    "a{,3}",
    "(?P<n>a)",
    "[^]]",
    "^.*$",
    "\\S+",
    "[[:alpha:]]",
    "a{1}{2}",
    "(ab)*c",
    "x*+",
    "(a*)*",
    "[a-]",
    "\\",
    "a{99999999999}",
    "\\d+$",
    "[.]",
    "(?:)",
    "\\W",
];

/// Date filter values: absolute, relative, a bare year, invalid ones. All far from the
/// dates in `random_scalar`, so "now" moving during the test changes nothing.
const DATE_FILTERS: &[&str] = &[
    "2024-01-01",
    "2024-06-15T12:30:00Z",
    "-30d",
    "-2m",
    "-1y",
    "-12h",
    "-3w",
    "2023",
    "not a date",
    "2024-13-01",
    "-10000d",
    "2024-01-01T10:00:00+02:00",
    "2024-01-01 10:00:00 UTC",
    "-5x",
];

fn random_scalar(rng: &mut Rng) -> Value {
    match rng.below(13) {
        0 => json!(rng.pick(&["alice@example.com", "Bob@Corp.io", "", "x@y"])),
        1 => json!(rng.pick(&["pro", "free", "PRO", "enterprise"])),
        2 => json!(rng.pick(&[0, 5, 18, 42, -3, 100])),
        3 => json!(rng.pick(&[1.5, 0.25, 42.0, 1e-5, 2.5e-7])),
        4 => json!(rng.pick(&["12", "3.5", "1e3", " 7", "abc", "+4."])),
        5 => json!(rng.pick(&[true, false])),
        6 => json!(rng.pick(&["true", "FALSE", "True"])),
        7 => json!(rng.pick(&["1.2.3", "v2.0", "0.9.12-beta", "01.2", "10"])),
        8 => Value::Null,
        9 => json!(rng.pick(&["ÉCOLE", "a\nb", "abc\n", "ab abc", "foo bar"])),
        10 => json!(rng.pick(&["FR", "de", "US"])),
        11 => json!(rng.pick(&[
            "2020-01-01",
            "2030-05-05T00:00:00Z",
            "2024-03-01 08:00:00+01:00",
            "2019",
            "2023-12-31T23:59:59.5",
            "2024-02-30",
            "2024-01-01 10:00:00 utc",
        ])),
        _ => json!(rng.pick(&["aabc", "xyz", "a_c", "ab1"])),
    }
}

fn random_filter(rng: &mut Rng) -> Value {
    let op = rng.pick(OPERATORS);
    let value = match op {
        "regex" | "not_regex" => json!(rng.pick(PATTERNS)),
        "exact" | "is_not" if rng.chance(30) => {
            json!(
                (0..1 + rng.below(3))
                    .map(|_| random_scalar(rng))
                    .collect::<Vec<_>>()
            )
        }
        "is_set" | "is_not_set" => json!(op),
        "semver_gte" | "semver_caret" => json!(rng.pick(&["1.2.0", "0.9", "2", "x.y"])),
        "is_date_before" | "is_date_after" => json!(rng.pick(DATE_FILTERS)),
        _ => random_scalar(rng),
    };
    let mut f = json!({"key": rng.pick(KEYS), "value": value, "type": "person"});
    if op != "exact" || rng.chance(50) {
        f["operator"] = json!(op);
    }
    f
}

/// A cohort filter: known cohorts (1..=4), a static one (9), odd operators.
fn random_cohort_filter(rng: &mut Rng, below: usize) -> Value {
    let id = if rng.chance(15) {
        9
    } else {
        1 + rng.below(below.max(1))
    };
    let mut f = json!({"key": "id", "type": "cohort", "value": id});
    match rng.below(6) {
        0 => f["operator"] = json!("in"),
        1 => f["operator"] = json!("not_in"),
        2 => f["operator"] = json!("bogus"),
        _ => {}
    }
    if rng.chance(20) {
        f["negation"] = json!(true);
    }
    f
}

/// Cohort property groups; cohort n may refer to cohorts below n (no cycles).
fn random_cohorts(rng: &mut Rng) -> Value {
    let mut cohorts = serde_json::Map::new();
    for id in 1..=4usize {
        let entries: Vec<Value> = (0..rng.below(4))
            .map(|_| match rng.below(5) {
                0 if id > 1 => random_cohort_filter(rng, id - 1),
                1 => json!({"type": rng.pick(&["AND", "OR"]), "values": (0..rng.below(3)).map(|_| {
                    let mut f = random_filter(rng);
                    if rng.chance(25) { f["negation"] = json!(true); }
                    f
                }).collect::<Vec<_>>()}),
                _ => {
                    let mut f = random_filter(rng);
                    if rng.chance(25) {
                        f["negation"] = json!(true);
                    }
                    f
                }
            })
            .collect();
        let group = if rng.chance(5) {
            json!({})
        } else {
            json!({"type": rng.pick(&["AND", "OR"]), "values": entries})
        };
        cohorts.insert(id.to_string(), group);
    }
    Value::Object(cohorts)
}

/// A dependency on an earlier flag (so no cycles), sometimes malformed.
fn random_dependency(rng: &mut Rng, index: usize) -> Value {
    let target = format!("flag-{}", rng.below(index.max(1)));
    let before = format!("flag-{}", rng.below(index.max(1)));
    let chain = match rng.below(8) {
        0 => json!([]),
        1 => json!(["flag-missing", target]),
        2 => Value::Null,
        3 | 4 => json!([before, target]),
        _ => json!([target]),
    };
    let mut f = json!({
        "key": target,
        "type": "flag",
        "operator": if rng.chance(90) { "flag_evaluates_to" } else { "exact" },
        "value": rng.pick(&[json!(true), json!(false), json!("v0"), json!("v1"), Value::Null]),
    });
    if !chain.is_null() {
        f["dependency_chain"] = chain;
    }
    f
}

fn random_flag(rng: &mut Rng, key: &str, index: usize) -> Value {
    let rollouts: &[Option<f64>] = &[
        None,
        Some(0.0),
        Some(10.0),
        Some(33.3),
        Some(50.0),
        Some(55.0),
        Some(99.9),
        Some(100.0),
    ];
    let mut variants = Vec::new();
    if rng.chance(50) {
        let mut left = 100.0_f64;
        for i in 0..1 + rng.below(4) {
            let share = if rng.chance(20) {
                left
            } else {
                (rng.below(60) as f64).min(left)
            };
            left -= share;
            variants.push(json!({"key": format!("v{i}"), "rollout_percentage": share}));
        }
    }
    let groups: Vec<Value> = (0..rng.below(4))
        .map(|_| {
            let properties: Vec<Value> = (0..rng.below(3))
                .map(|_| match rng.below(10) {
                    0 => random_cohort_filter(rng, 4),
                    1 if index > 0 => random_dependency(rng, index),
                    _ => random_filter(rng),
                })
                .collect();
            let mut g = json!({"properties": properties});
            if let Some(r) = rng.pick(rollouts) {
                g["rollout_percentage"] = json!(r);
            }
            if rng.chance(20) {
                g["variant"] = json!(rng.pick(&["v0", "v1", "missing"]));
            }
            g
        })
        .collect();
    let mut filters = json!({"groups": groups});
    if !variants.is_empty() {
        filters["multivariate"] = json!({"variants": variants});
    }
    if rng.chance(15) {
        filters["early_exit"] = json!(true);
    }
    if rng.chance(10) {
        filters["holdout"] =
            json!({"id": rng.below(9), "exclusion_percentage": rng.pick(&[10, 50, 100])});
    }
    let mut flag = json!({"key": key, "active": rng.chance(90), "filters": filters});
    // Rarer shapes: group flags (mapped or not), experience continuity, early-access
    // enrollment, device-id bucketing, cohorts, per-condition aggregation.
    match rng.below(40) {
        0 => flag["filters"]["aggregation_group_type_index"] = json!(rng.pick(&[0, 7])),
        1 => flag["ensure_experience_continuity"] = json!(true),
        2 => flag["filters"]["feature_enrollment"] = json!(true),
        3 => flag["bucketing_identifier"] = json!("device_id"),
        4 => {
            if let Some(groups) = flag["filters"]["groups"].as_array_mut() {
                groups.push(json!({"properties": [{"key": "id", "type": "cohort", "value": 3}], "rollout_percentage": 100}));
            }
        }
        5 => {
            if let Some(groups) = flag["filters"]["groups"].as_array_mut() {
                groups.insert(0, json!({"properties": [], "rollout_percentage": 100, "aggregation_group_type_index": 0}));
            }
        }
        _ => {}
    }
    flag
}

fn random_properties(rng: &mut Rng) -> Properties {
    let mut p = Properties::new();
    for k in KEYS {
        if rng.chance(60) {
            p.insert((*k).into(), random_scalar(rng));
        }
    }
    p
}

/// The posthog-python release the evaluator is pinned to (also in `.ci/run`).
const PINNED: &str = "7.91.1";

fn python_has_posthog() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import posthog; print(posthog.VERSION)"])
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the posthog package is not installed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if version != PINNED {
        return Err(format!(
            "posthog {version} is installed, but the reference is {PINNED}"
        ));
    }
    Ok(())
}

#[test]
fn agrees_with_posthog_python_on_random_flags() {
    if let Err(reason) = python_has_posthog() {
        println!(
            "SKIPPED differential test: {reason} (install with: python3 -m pip install posthog=={PINNED})"
        );
        return;
    }
    let mut rng = Rng(0x5EED_F1A6);
    let flags: Vec<Value> = (0..400)
        .map(|i| random_flag(&mut rng, &format!("flag-{i}"), i))
        .collect();
    let cohorts = random_cohorts(&mut rng);
    let definitions =
        json!({"flags": flags, "group_type_mapping": {"0": "company"}, "cohorts": cohorts});
    let mut cases = Vec::new();
    for _ in 0..4000 {
        let flag = format!("flag-{}", rng.below(400));
        let id = match rng.below(3) {
            0 => format!("user-{}", rng.below(10_000)),
            1 => uuid_like(&mut rng),
            _ => format!("distinct_id_{}", rng.below(100)),
        };
        let mut properties = random_properties(&mut rng);
        if rng.chance(30) {
            let enrolled = rng.pick(&[json!(true), json!("true"), json!(false)]);
            properties.insert(format!("$feature_enrollment/{flag}"), enrolled);
        }
        cases.push(json!({"flag": flag, "distinct_id": id, "properties": properties}));
    }
    let request = json!({"definitions": definitions, "cases": cases});

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/posthog_reference.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("reference JSON");
    assert_eq!(
        answer["version"], PINNED,
        "the pinned posthog release is expected"
    );
    let reference = answer["results"].as_array().unwrap();

    let defs: Definitions = serde_json::from_value(request["definitions"].clone()).unwrap();
    let mut mismatches = Vec::new();
    let (mut decided, mut inconclusive) = (0, 0);
    for (case, want) in cases.iter().zip(reference) {
        let flag = case["flag"].as_str().unwrap();
        let id = case["distinct_id"].as_str().unwrap();
        let props = case["properties"].as_object().unwrap();
        let got = defs.evaluate(flag, id, props).to_json();
        if got.is_null() {
            inconclusive += 1
        } else {
            decided += 1
        }
        if &got != want {
            mismatches.push(format!(
                "flag {} id {id} props {} -> ours {got}, posthog {want}",
                defs.flag(flag)
                    .map(|f| serde_json::to_string(f).unwrap())
                    .unwrap_or_default(),
                Value::Object(props.clone())
            ));
        }
    }
    println!(
        "differential: {} cases, {decided} decided, {inconclusive} inconclusive",
        cases.len()
    );
    assert!(
        decided > 1000 && inconclusive > 100,
        "the generator should exercise both outcomes"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first ones:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(5)].join("\n")
    );
}

fn uuid_like(rng: &mut Rng) -> String {
    format!("{:016x}-{:04x}", rng.next(), rng.next() & 0xffff)
}
