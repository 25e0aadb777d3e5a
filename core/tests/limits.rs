//! Bounds that protect a process from hostile or runaway documents.

use flagrail_core::load::{MAX_DOCUMENT_BYTES, MAX_REGEX_LENGTH};
use flagrail_core::Document;
use serde_json::json;

#[test]
fn documents_over_the_size_bound_are_refused_before_parsing() {
    let mut bytes = b"{\"flags\": {}, \"description\": \"".to_vec();
    bytes.resize(MAX_DOCUMENT_BYTES + 1, b'x');
    let err = Document::from_slice(&bytes).expect_err("too large");
    assert_eq!(err.problems()[0].code(), "DOCUMENT_TOO_LARGE");
}

#[test]
fn regex_patterns_are_bounded() {
    let doc = |pattern: String| {
        json!({ "flags": { "f": { "variants": { "a": {} }, "default": "a",
            "rules": [{ "when": { "attr": "p", "op": "matches", "value": pattern }, "serve": "a" }] } } })
    };
    let long = "a".repeat(MAX_REGEX_LENGTH + 1);
    let err = Document::from_value(doc(long)).expect_err("too long");
    assert_eq!(err.problems()[0].code(), "INVALID_REGEX");
    assert!(
        err.problems()[0].message.contains("limit"),
        "{}",
        err.problems()[0].message
    );
    assert!(Document::from_value(doc("a".repeat(MAX_REGEX_LENGTH))).is_ok());
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = Document::from_json(&deep).expect_err("too deep");
    assert_eq!(err.problems()[0].code(), "NESTING_TOO_DEEP");
}

/// `s0 -> s1 -> … -> s<n-1>`, the last a test, and a flag whose rule reads `s0`.
fn segment_chain(length: usize) -> serde_json::Value {
    let mut segments = serde_json::Map::new();
    for i in 0..length - 1 {
        segments.insert(format!("s{i}"), json!({ "segment": format!("s{}", i + 1) }));
    }
    segments.insert(
        format!("s{}", length - 1),
        json!({ "attr": "plan", "op": "eq", "value": "pro" }),
    );
    json!({ "segments": segments, "flags": { "f": { "variants": { "a": {}, "b": {} }, "default": "a",
        "rules": [{ "when": { "segment": "s0" }, "serve": "b" }] } } })
}

#[test]
fn a_chain_of_100k_segment_references_is_one_problem_not_a_crash() {
    use flagrail_core::load::MAX_CONDITION_DEPTH;
    let length = 100_000;
    let text = segment_chain(length).to_string();
    // The text entry, on a thread with the 2 MiB stack of a reload thread.
    let err = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || Document::from_json(&text).expect_err("too deep"))
        .expect("spawn")
        .join()
        .expect("no crash");
    // One problem where the depth bound is crossed; the flag reading the chain is also over
    // its complexity budget (100k segments).
    let found: Vec<(&str, &str)> = err
        .problems()
        .iter()
        .map(|p| (p.path.as_str(), p.code()))
        .collect();
    let crossing = format!("segments.s{}", length - MAX_CONDITION_DEPTH - 1);
    assert_eq!(
        found,
        vec![
            (crossing.as_str(), "NESTING_TOO_DEEP"),
            ("flags.f", "FLAG_TOO_COMPLEX")
        ],
        "{err}"
    );
    // The value entry gives the same verdict (a shorter chain: debug builds are slow).
    let err = Document::from_value(segment_chain(5_000)).expect_err("too deep");
    assert_eq!(err.problems().len(), 1, "{err}");
    assert_eq!(err.problems()[0].code(), "NESTING_TOO_DEEP");
}

#[test]
fn a_chain_at_the_depth_bound_loads_and_evaluates_on_a_small_stack() {
    use flagrail_core::load::MAX_CONDITION_DEPTH;
    // The rule's `{"segment": "s0"}` is one level more than the chain.
    let document =
        Document::from_value(segment_chain(MAX_CONDITION_DEPTH - 1)).expect("at the bound");
    let variant = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let ctx = json!({ "plan": "pro" });
            let decision =
                document.evaluate("f", &ctx, &flagrail_core::At(0), &flagrail_core::NoOverlay);
            decision.variant_id().map(str::to_string)
        })
        .expect("spawn")
        .join()
        .expect("no crash");
    assert_eq!(variant.as_deref(), Some("b"));
    let err = Document::from_value(segment_chain(MAX_CONDITION_DEPTH)).expect_err("one level more");
    assert_eq!(err.problems()[0].code(), "NESTING_TOO_DEEP", "{err}");
}

#[test]
fn a_diamond_of_shared_segments_is_evaluated_once_per_segment() {
    // d<i> references d<i+1> twice: 2^40 paths, 41 segments.
    let depth = 40;
    let mut segments = serde_json::Map::new();
    for i in 0..depth {
        let next = json!({ "segment": format!("d{}", i + 1) });
        segments.insert(
            format!("d{i}"),
            json!({ "all": [next.clone(), { "any": [next] }] }),
        );
    }
    segments.insert(
        format!("d{depth}"),
        json!({ "attr": "plan", "op": "eq", "value": "pro" }),
    );
    let document = Document::from_value(json!({ "segments": segments, "flags": { "f": {
        "variants": { "a": {}, "b": {} }, "default": "a",
        "rules": [{ "id": "deep", "when": { "segment": "d0" }, "serve": "b" }] } } }))
    .expect("valid");
    for (plan, variant) in [("pro", "b"), ("free", "a")] {
        let ctx = json!({ "plan": plan });
        let explained = document
            .explain("f", &ctx, &flagrail_core::At(0), &flagrail_core::NoOverlay)
            .to_value();
        assert_eq!(explained["variant"], variant, "{explained}");
        // One note per reference followed or remembered, one test: linear, not 2^40.
        let steps = explained["steps"].as_array().expect("steps");
        let tests = steps.iter().filter(|s| s.get("attr").is_some()).count();
        assert_eq!(tests, 1, "the shared test ran once");
        assert!(steps.len() <= 2 * depth + 4, "{} steps", steps.len());
    }
}

#[test]
fn a_flag_over_its_complexity_budget_is_refused_quickly() {
    use flagrail_core::load::MAX_FLAG_COST;
    // 20k rules: refused after counting just past the budget, not after walking them all.
    let rules: Vec<serde_json::Value> = (0..20_000)
        .map(|i| json!({ "when": { "attr": "n", "op": "eq", "value": i }, "serve": "a" }))
        .collect();
    let err = Document::from_value(
        json!({ "flags": { "f": { "variants": { "a": {} }, "default": "a", "rules": rules } } }),
    )
    .expect_err("over budget");
    assert_eq!(err.problems().len(), 1, "{err}");
    assert_eq!(err.problems()[0].code(), "FLAG_TOO_COMPLEX");
    assert!(err.problems()[0]
        .message
        .contains(&MAX_FLAG_COST.to_string()));
    // At the budget: each rule 1 and its test 1.
    let rules: Vec<serde_json::Value> = (0..MAX_FLAG_COST / 2)
        .map(|i| json!({ "when": { "attr": "n", "op": "eq", "value": i }, "serve": "a" }))
        .collect();
    assert!(Document::from_value(
        json!({ "flags": { "f": { "variants": { "a": {} }, "default": "a", "rules": rules } } })
    )
    .is_ok());
}

#[test]
fn a_long_cycle_is_found_in_linear_time_with_short_messages() {
    let length = 10_000;
    let mut segments = serde_json::Map::new();
    for i in 0..length {
        segments.insert(
            format!("c{i}"),
            json!({ "segment": format!("c{}", (i + 1) % length) }),
        );
    }
    let err =
        Document::from_value(json!({ "segments": segments, "flags": {} })).expect_err("cycle");
    assert_eq!(err.problems().len(), length);
    assert!(err.problems().iter().all(|p| p.code() == "SEGMENT_CYCLE"));
    let first = &err.problems()[0];
    assert_eq!(first.path, "segments.c0");
    assert!(
        first
            .message
            .starts_with("segment references form a cycle: c0 -> c1 -> c2"),
        "{}",
        first.message
    );
    assert!(first.message.len() < 200, "{}", first.message);
}
