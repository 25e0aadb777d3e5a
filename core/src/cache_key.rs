//! Cache keys segmented by flag, variant and variant revision.
//!
//! `variant.cache_key(*parts)` is `flagrail:v1:<flag>:<variant>:<payload hash>` followed, when
//! parts are given, by `:<parts hash>`. The payload hash is the first 16 hex digits of the
//! SHA-256 of the payload's canonical JSON, so editing a variant's prompt or model changes its
//! keys and an answer cached for one variant is never served for another. The exact rules are
//! in docs/flag-document.md ("Cache keys"); tests/vectors/v1/cache-keys.json pins them for every
//! language.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Version of the key format; part of every key.
pub(crate) const CACHE_KEY_VERSION: u32 = 1;

/// One part of a cache key: text, or an integer (written in decimal).
#[derive(Debug, Clone, Copy)]
pub enum KeyPart<'a> {
    Text(&'a str),
    Int(i64),
}

/// The canonical JSON of a value: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings escaped as JSON does, integers (and floats with no fractional part below 2^53) in
/// decimal, other floats in their shortest round-trip form.
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(f) = n.as_f64() {
                // 1.0 and 1 are the same number in JSON (and in JavaScript): one form.
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    out.push_str(&(f as i64).to_string());
                } else {
                    out.push_str(&n.to_string());
                }
            }
        }
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
    }
}

fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The payload hash: 16 hex digits of SHA-256 over the payload's canonical JSON.
pub(crate) fn payload_hash(payload: &Value) -> Box<str> {
    hex16(&Sha256::digest(canonical_json(payload).as_bytes())).into_boxed_str()
}

/// The parts hash: 16 hex digits of SHA-256 over each part as its UTF-8 length (8 bytes,
/// little-endian) followed by its UTF-8 bytes, so that `("ab", "c")` and `("a", "bc")` differ.
pub(crate) fn parts_hash(parts: &[KeyPart<'_>]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        let text;
        let bytes = match part {
            KeyPart::Text(s) => s.as_bytes(),
            KeyPart::Int(i) => {
                text = i.to_string();
                text.as_bytes()
            }
        };
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hex16(&hasher.finalize())
}

/// `%` and `:` in a flag or variant id are written `%25` and `%3A`, so that the fields of a
/// key cannot run into each other.
fn escape(id: &str, out: &mut String) {
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            other => out.push(other),
        }
    }
}

/// The cache key of a variant of a flag with optional parts.
pub fn cache_key(flag: &str, variant: &str, payload_hash: &str, parts: &[KeyPart<'_>]) -> String {
    let mut out = format!("flagrail:v{CACHE_KEY_VERSION}:");
    escape(flag, &mut out);
    out.push(':');
    escape(variant, &mut out);
    out.push(':');
    out.push_str(payload_hash);
    if !parts.is_empty() {
        out.push(':');
        out.push_str(&parts_hash(parts));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_and_unifies_integral_floats() {
        let a = json!({"b": 1.0, "a": [true, null, "x\"y"], "c": 0.5});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":[true,null,"x\"y"],"b":1,"c":0.5}"#
        );
        assert_eq!(
            payload_hash(&json!({"t": 1})),
            payload_hash(&json!({"t": 1.0}))
        );
    }

    #[test]
    fn parts_are_length_prefixed_and_ids_escaped() {
        let ab_c = cache_key("f", "v", "h", &[KeyPart::Text("ab"), KeyPart::Text("c")]);
        let a_bc = cache_key("f", "v", "h", &[KeyPart::Text("a"), KeyPart::Text("bc")]);
        assert_ne!(ab_c, a_bc);
        assert_eq!(cache_key("a:b", "c", "h", &[]), "flagrail:v1:a%3Ab:c:h");
        assert_eq!(
            cache_key("f", "v", "h", &[KeyPart::Int(42)]),
            cache_key("f", "v", "h", &[KeyPart::Text("42")])
        );
    }
}
