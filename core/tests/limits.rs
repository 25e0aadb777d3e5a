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
    assert_eq!(err.problems()[0].code(), "INVALID_JSON");
}
