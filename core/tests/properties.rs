//! Property tests over generated inputs (a seeded generator, so every run checks the same
//! large sample and a failure is reproducible from its seed):
//! bucket uniformity, ramp monotonicity, evaluation totality, parser totality.

use flagrail_core::hash::PERCENT_TOTAL;
use flagrail_core::time::format_timestamp;
use flagrail_core::{bucket, At, Document, NoOverlay, Reason};
use serde_json::{json, Value};

/// SplitMix64: tiny, fast, good enough to generate test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Chi-square of 100k sequential user ids over 100 equal buckets, for several salts. With 99
/// degrees of freedom the 0.1 % critical value is 148.23; the inputs are fixed, so this either
/// always passes or always fails.
#[test]
fn buckets_are_uniform() {
    for salt in ["support-bot", "chat-model", "", "日本語-flag"] {
        let mut counts = [0u64; 100];
        let units = 100_000;
        for i in 0..units {
            let b = bucket(salt, &format!("user-{i}"), PERCENT_TOTAL).expect("total > 0");
            counts[(b / 1000) as usize] += 1;
        }
        let expected = units as f64 / 100.0;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(
            chi2 < 148.23,
            "salt {salt:?}: chi-square {chi2:.1} over 100 buckets"
        );
    }
}

/// Different salts make flags independent: a unit's bucket under one salt says nothing about
/// its bucket under another (the 2x2 table of "in the lower half" is balanced).
#[test]
fn different_salts_are_independent() {
    let mut table = [[0u64; 2]; 2];
    for i in 0..100_000 {
        let unit = format!("user-{i}");
        let a = bucket("model-flag", &unit, 2).expect("total > 0") as usize;
        let b = bucket("prompt-flag", &unit, 2).expect("total > 0") as usize;
        table[a][b] += 1;
    }
    for row in table {
        for cell in row {
            assert!((24_000..26_000).contains(&cell), "{table:?}");
        }
    }
}

fn ramp_document(rng: &mut Rng) -> (Value, Vec<i64>) {
    let steps = 1 + rng.below(6);
    let mut percent = 0u64;
    let mut step_values = Vec::new();
    for i in 0..steps {
        let remaining = 100_000 - percent;
        if remaining == 0 {
            break;
        }
        percent += 1 + rng.below(remaining);
        let mut step = json!({ "percent": percent as f64 / 1000.0 });
        if i + 1 < steps {
            step["hold"] = json!(format!("{}m", 1 + rng.below(600)));
        }
        step_values.push(step);
    }
    if let Some(last) = step_values.last_mut() {
        last.as_object_mut().expect("object").remove("hold");
    }
    let start = 1_700_000_000_000i64 + rng.below(1_000_000_000) as i64;
    let doc = json!({
        "flags": { "f": {
            "variants": { "base": {}, "new": {} },
            "default": "base",
            "rules": [{ "id": "ramp", "ramp": {
                "variant": "new", "start": format_timestamp(start), "steps": step_values,
            }}],
        }}
    });
    // Instants spread over the whole schedule, in increasing order.
    let mut instants: Vec<i64> = (0..12)
        .map(|_| start - 3_600_000 + rng.below(steps * 600 * 60_000 + 7_200_000) as i64)
        .collect();
    instants.sort();
    (doc, instants)
}

/// A unit in the ramped variant at one instant is in it at every later instant.
#[test]
fn ramps_are_monotonic() {
    let mut rng = Rng(7);
    for _ in 0..200 {
        let (doc, instants) = ramp_document(&mut rng);
        let doc = Document::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        for u in 0..300 {
            let context = json!({ "user_id": format!("unit-{u}-{}", rng.below(1000)) });
            let mut was_in = false;
            for &t in &instants {
                let d = doc.evaluate("f", &context, &At(t), &NoOverlay);
                let is_in = d.variant_id() == Some("new");
                assert!(!was_in || is_in, "unit left the ramp at {t}: {context}");
                was_in = is_in;
            }
        }
    }
}

fn random_string(rng: &mut Rng) -> String {
    let pool = [
        "",
        "a",
        "pro",
        "user-1",
        "zoë",
        "🦀",
        "@acme.com",
        "x@acme.com",
        "1.2.3",
        "2026-01-01",
        "US",
        "beta",
        "ǅ",
        "\u{0}",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(3) {
        let piece: &&str = rng.pick(&pool);
        s.push_str(piece);
    }
    s
}

fn random_scalar(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => json!(random_string(rng)),
        1 => json!(rng.below(200) as i64 - 100),
        2 => json!((rng.below(2000) as f64 - 1000.0) / 7.0),
        3 => json!(rng.chance(50)),
        4 => Value::Null,
        5 => json!([random_string(rng), random_string(rng)]),
        6 => json!({ "k": 1 }),
        _ => json!(i64::MIN + rng.below(3) as i64),
    }
}

const ATTRS: &[&str] = &[
    "user_id",
    "plan",
    "email",
    "groups",
    "seats",
    "app_version",
    "signup",
    "org_id",
];

fn random_condition(rng: &mut Rng, depth: u32) -> Value {
    let ops = [
        "eq",
        "ne",
        "in",
        "not_in",
        "contains",
        "starts_with",
        "ends_with",
        "matches",
        "gt",
        "gte",
        "lt",
        "lte",
        "semver_eq",
        "semver_gt",
        "semver_lte",
        "before",
        "after",
        "exists",
    ];
    match rng.below(if depth > 2 { 2 } else { 6 }) {
        0 | 1 => {
            let op = *rng.pick(&ops);
            let value = match op {
                "in" | "not_in" => json!([random_string(rng), rng.below(10), rng.chance(50)]),
                "matches" => json!(rng.pick(&["^a", "acme\\.com$", "[0-9]+", ".*"]).to_string()),
                "gt" | "gte" | "lt" | "lte" => json!(rng.below(100)),
                "semver_eq" | "semver_gt" | "semver_lte" => {
                    json!(rng.pick(&["1.2.3", "2.0.0-beta.1", "0.0.1"]).to_string())
                }
                "before" | "after" => json!(rng
                    .pick(&["2026-01-01", "2025-06-01T12:00:00Z"])
                    .to_string()),
                "exists" => Value::Null,
                _ => json!(random_string(rng)),
            };
            let mut c = json!({ "attr": rng.pick(ATTRS), "op": op });
            if !value.is_null() {
                c["value"] = value;
            }
            c
        }
        2 => {
            json!({ "all": (0..1 + rng.below(3)).map(|_| random_condition(rng, depth + 1)).collect::<Vec<_>>() })
        }
        3 => {
            json!({ "any": (0..1 + rng.below(3)).map(|_| random_condition(rng, depth + 1)).collect::<Vec<_>>() })
        }
        4 => json!({ "not": random_condition(rng, depth + 1) }),
        _ => json!({ "segment": rng.pick(&["s1", "s2"]) }),
    }
}

fn random_document(rng: &mut Rng) -> Value {
    let variants = ["a", "b", "c"];
    let mut rules = Vec::new();
    for i in 0..rng.below(5) {
        let mut rule = json!({ "id": format!("r{i}") });
        if rng.chance(70) {
            rule["when"] = random_condition(rng, 0);
        }
        match rng.below(3) {
            0 => rule["serve"] = json!(rng.pick(&variants)),
            1 => {
                rule["split"] = json!([
                    { "variant": "a", "weight": rng.below(5) },
                    { "variant": "b", "weight": 1 + rng.below(5) },
                ]);
                if rng.chance(30) {
                    rule["bucket_by"] = json!(rng.pick(ATTRS));
                }
            }
            _ => {
                rule["ramp"] = json!({
                    "variant": rng.pick(&variants), "start": "2026-01-01T00:00:00Z",
                    "steps": [{ "percent": 10, "hold": "1d" }, { "percent": 100 }],
                    "paused_at": if rng.chance(20) { json!("2026-01-01T12:00:00Z") } else { Value::Null },
                });
                if rule["ramp"]["paused_at"].is_null() {
                    rule["ramp"]
                        .as_object_mut()
                        .expect("object")
                        .remove("paused_at");
                }
            }
        }
        rules.push(rule);
    }
    json!({
        "revision": "prop",
        "kill": { "active": rng.chance(5) },
        "segments": { "s1": random_condition(rng, 2), "s2": { "any": [random_condition(rng, 2), { "segment": "s1" }] } },
        "flags": { "f": {
            "variants": { "a": { "n": 1 }, "b": [1, 2], "c": null },
            "default": rng.pick(&variants),
            "kill": { "active": rng.chance(10), "serve": rng.pick(&variants) },
            "rules": rules,
        }},
    })
}

/// Evaluation and explain are total: for valid documents and arbitrary contexts they return a
/// decision whose variant exists, never panic.
#[test]
fn evaluation_never_panics() {
    let mut rng = Rng(42);
    let mut evaluated = 0;
    for _ in 0..3000 {
        let value = random_document(&mut rng);
        let Ok(doc) = Document::from_value(value) else {
            continue;
        };
        for _ in 0..20 {
            let mut context = serde_json::Map::new();
            for attr in ATTRS {
                if rng.chance(60) {
                    context.insert(attr.to_string(), random_scalar(&mut rng));
                }
            }
            let at = At(1_767_225_600_000 + rng.below(4 * 86_400_000) as i64);
            let d = doc.evaluate("f", &context, &at, &NoOverlay);
            assert_ne!(d.reason, Reason::FlagNotFound);
            assert!(d.variant_id().is_some());
            let explained = doc.explain("f", &context, &at, &NoOverlay).to_value();
            assert_eq!(
                explained["variant"],
                json!(d.variant_id()),
                "explain agrees with evaluate"
            );
            evaluated += 1;
        }
    }
    assert!(
        evaluated > 10_000,
        "too few valid documents generated: {evaluated}"
    );
}

/// Loading is total: arbitrary bytes and mutated documents give a document or an error.
#[test]
fn parsing_never_panics() {
    let mut rng = Rng(99);
    let valid = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/flags.json"
    ))
    .expect("example");
    for _ in 0..3000 {
        let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.below(256) as u8).collect();
        let _ = Document::from_slice(&bytes);
    }
    let mut accepted = 0;
    for _ in 0..3000 {
        let mut bytes = valid.clone();
        for _ in 0..1 + rng.below(4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len() as u64) as usize;
            match rng.below(3) {
                0 => bytes[at] = rng.below(256) as u8,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        if let Ok(doc) = Document::from_slice(&bytes) {
            accepted += 1;
            let _ = doc.evaluate(
                "support-bot",
                &json!({ "user_id": "u" }),
                &At(0),
                &NoOverlay,
            );
        }
    }
    for _ in 0..3000 {
        let _ = Document::from_value(random_document(&mut rng));
    }
    // Some single-byte edits (inside strings) keep the document valid: the loop exercised both paths.
    assert!(accepted > 0);
}
