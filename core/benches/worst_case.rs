//! Worst-case cost of one evaluation for documents at the loader's bounds (docs/benchmarks.md).
//!
//!     cargo bench -p flagrail-core --bench worst_case
//!
//! Each document is the costliest shape the loader accepts for its kind (its flag at or just
//! under MAX_FLAG_COST, every value at MAX_COMPARED_BYTES, contexts that match nothing so every
//! rule and condition is visited). A plain timing loop, run once: the numbers are a bound to
//! publish, not a regression gate.

use std::hint::black_box;
use std::time::Instant;

use flagrail_core::condition::MAX_COMPARED_BYTES;
use flagrail_core::load::{MAX_FLAG_COST, SEARCH_COST};
use flagrail_core::{At, Attr, Document, NoOverlay};
use serde_json::{json, Value};

fn flag(rules: Vec<Value>) -> Value {
    json!({ "variants": { "a": {}, "b": {} }, "default": "a", "rules": rules })
}

/// One rule whose `any` holds `count` tests made by `test(i)`.
fn any_rule(count: u64, test: impl Fn(u64) -> Value) -> Vec<Value> {
    vec![json!({ "when": { "any": (0..count).map(test).collect::<Vec<_>>() }, "serve": "b" })]
}

fn main() {
    let searches = (MAX_FLAG_COST - 2) / SEARCH_COST;
    let long_text = "z".repeat(MAX_COMPARED_BYTES);
    // 200 needles a test keeps 1,249 tests under the 16 MiB document bound; an automaton's
    // scan does not depend on the number of needles.
    let needles: Vec<String> = (0..200).map(|i| format!("needle-{i:04}")).collect();
    let mut diamond = serde_json::Map::new();
    for i in 0..40 {
        let next = json!({ "segment": format!("d{}", i + 1) });
        diamond.insert(
            format!("d{i}"),
            json!({ "all": [next.clone(), { "any": [next] }] }),
        );
    }
    diamond.insert(
        "d40".into(),
        json!({ "attr": "text", "op": "eq", "value": "pro" }),
    );
    let cases: Vec<(&str, Value)> = vec![
        (
            "5,000 rules of one eq test each",
            flag((0..(MAX_FLAG_COST / 2)).map(|i| json!({ "when": { "attr": "n", "op": "eq", "value": i }, "serve": "b" })).collect()),
        ),
        (
            "any of 9,998 eq tests",
            flag(any_rule(MAX_FLAG_COST - 2, |i| json!({ "attr": "n", "op": "eq", "value": i }))),
        ),
        (
            "any of 1,249 contains tests, 1 needle, 4 KiB value",
            flag(any_rule(searches, |i| json!({ "attr": "text", "op": "contains", "value": format!("w{i}") }))),
        ),
        (
            "any of 1,249 contains tests, 200 needles each, 4 KiB value",
            flag(any_rule(searches, |_| json!({ "attr": "text", "op": "contains", "value": needles }))),
        ),
        (
            "any of 1,249 ends_with tests, 200 needles each, 4 KiB value",
            flag(any_rule(searches, |_| json!({ "attr": "text", "op": "ends_with", "value": needles }))),
        ),
        (
            "any of 1,249 matches tests (a.*b.*c), 4 KiB value",
            flag(any_rule(searches, |i| json!({ "attr": "text", "op": "matches", "value": format!("a.*b.*c{i}") }))),
        ),
        (
            "a 40-level diamond of shared segments (2^40 paths)",
            flag(vec![json!({ "when": { "segment": "d0" }, "serve": "b" })]),
        ),
    ];
    // The context as the bindings hand it over: the flag's attributes, already converted.
    let ctx: [(&str, Attr<'_>); 2] = [("n", Attr::Int(-1)), ("text", Attr::Str(&long_text))];
    println!("| document (one flag, context matching nothing) | ns per evaluation |");
    println!("|---|---:|");
    for (name, flag) in cases {
        let document = Document::from_value(json!({ "segments": diamond, "flags": { "f": flag } }))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let decision = document.evaluate("f", &ctx[..], &At(0), &NoOverlay);
        assert_eq!(decision.variant_id(), Some("a"), "{name}");
        // Enough evaluations for about half a second, at least 20.
        let started = Instant::now();
        let mut runs = 0u32;
        while runs < 20 || started.elapsed().as_millis() < 500 {
            black_box(document.evaluate("f", black_box(&ctx[..]), &At(0), &NoOverlay));
            runs += 1;
        }
        let ns = started.elapsed().as_nanos() / u128::from(runs);
        println!("| {name} | {ns} |");
    }
}
