//! The structural differences between two flag documents, read from their JSON (both already
//! validated by the caller): what an approver reads before the movement numbers.

use serde::Serialize;
use serde_json::{Map, Value};

/// One difference. `kind` is a stable code:
///
/// | kind | meaning |
/// |---|---|
/// | `flag_added`, `flag_removed` | the flag |
/// | `variant_added`, `variant_removed`, `payload_changed` | one variant (`item`) |
/// | `default_changed` | the flag's `default` |
/// | `kill_changed` | the flag's `kill` (active, serve, reason) |
/// | `salt_changed`, `bucket_by_changed` | how the flag buckets its units (effective values) |
/// | `rule_added`, `rule_removed`, `rule_changed` | one rule (`item`, its id) |
/// | `ramp_changed` | a ramp rule whose schedule, variant or state changed (`item`) |
/// | `rules_reordered` | the same rules in another order |
/// | `field_changed` | any other flag field (`item`: its name) |
/// | `segment_added`, `segment_removed`, `segment_changed` | a document segment (`item`) |
/// | `document_kill_changed` | the document-wide kill switch |
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    /// The flag, `None` for a document-level change (segments, document kill).
    pub flag: Option<String>,
    pub kind: &'static str,
    /// The variant, rule, segment or field concerned, if any.
    pub item: Option<String>,
    /// Old and new values, short (`"a" -> "b"`), when they say more than the kind.
    pub detail: Option<String>,
}

/// The flag fields compared one by one below; any other field is compared whole.
const COMPARED: &[&str] = &["variants", "default", "kill", "salt", "bucket_by", "rules"];

/// Every difference from `old` to `new`, flags in key order, then the document's.
pub fn changes(old: &Value, new: &Value) -> Vec<Change> {
    let empty = Map::new();
    let flags_of = |doc: &Value| doc.get("flags").and_then(Value::as_object).cloned();
    let (old_flags, new_flags) = (
        flags_of(old).unwrap_or_default(),
        flags_of(new).unwrap_or_default(),
    );
    let mut out = Vec::new();
    for key in union(&old_flags, &new_flags) {
        match (old_flags.get(&key), new_flags.get(&key)) {
            (None, Some(_)) => out.push(change(Some(&key), "flag_added", None, None)),
            (Some(_), None) => out.push(change(Some(&key), "flag_removed", None, None)),
            (Some(a), Some(b)) => flag_changes(
                &key,
                a.as_object().unwrap_or(&empty),
                b.as_object().unwrap_or(&empty),
                &mut out,
            ),
            (None, None) => {}
        }
    }
    let segments_of = |doc: &Value| doc.get("segments").and_then(Value::as_object).cloned();
    let (old_segments, new_segments) = (
        segments_of(old).unwrap_or_default(),
        segments_of(new).unwrap_or_default(),
    );
    for name in union(&old_segments, &new_segments) {
        let kind = match (old_segments.get(&name), new_segments.get(&name)) {
            (None, Some(_)) => "segment_added",
            (Some(_), None) => "segment_removed",
            (Some(a), Some(b)) if a != b => "segment_changed",
            _ => continue,
        };
        out.push(change(None, kind, Some(&name), None));
    }
    if old.get("kill") != new.get("kill") {
        out.push(change(
            None,
            "document_kill_changed",
            None,
            Some(arrow(old.get("kill"), new.get("kill"))),
        ));
    }
    out
}

fn flag_changes(
    key: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    out: &mut Vec<Change>,
) {
    let flag = Some(key);
    let empty = Map::new();
    let variants = |f: &Map<String, Value>| f.get("variants").and_then(Value::as_object).cloned();
    let (old_variants, new_variants) = (
        variants(old).unwrap_or_default(),
        variants(new).unwrap_or_default(),
    );
    for id in union(&old_variants, &new_variants) {
        match (old_variants.get(&id), new_variants.get(&id)) {
            (None, Some(_)) => out.push(change(flag, "variant_added", Some(&id), None)),
            (Some(_), None) => out.push(change(flag, "variant_removed", Some(&id), None)),
            (Some(a), Some(b)) if a != b => {
                let fields = changed_fields(
                    a.as_object().unwrap_or(&empty),
                    b.as_object().unwrap_or(&empty),
                );
                out.push(change(
                    flag,
                    "payload_changed",
                    Some(&id),
                    Some(format!("fields: {}", fields.join(", "))),
                ));
            }
            _ => {}
        }
    }
    if old.get("default") != new.get("default") {
        out.push(change(
            flag,
            "default_changed",
            None,
            Some(arrow(old.get("default"), new.get("default"))),
        ));
    }
    if old.get("kill") != new.get("kill") {
        out.push(change(
            flag,
            "kill_changed",
            None,
            Some(arrow(old.get("kill"), new.get("kill"))),
        ));
    }
    // Effective values: an absent salt is the flag key, an absent bucket_by is user_id.
    let key_value = Value::from(key);
    let user_id = Value::from("user_id");
    let salt = |f: &Map<String, Value>| f.get("salt").cloned().unwrap_or(key_value.clone());
    if salt(old) != salt(new) {
        out.push(change(
            flag,
            "salt_changed",
            None,
            Some(arrow(Some(&salt(old)), Some(&salt(new)))),
        ));
    }
    let unit = |f: &Map<String, Value>| f.get("bucket_by").cloned().unwrap_or(user_id.clone());
    if unit(old) != unit(new) {
        out.push(change(
            flag,
            "bucket_by_changed",
            None,
            Some(arrow(Some(&unit(old)), Some(&unit(new)))),
        ));
    }
    rule_changes(key, old, new, out);
    for field in union(old, new) {
        if COMPARED.contains(&field.as_str()) || old.get(&field) == new.get(&field) {
            continue;
        }
        out.push(change(flag, "field_changed", Some(&field), None));
    }
}

fn rule_changes(
    key: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    out: &mut Vec<Change>,
) {
    let flag = Some(key);
    let rules = |f: &Map<String, Value>| -> Vec<(String, Value)> {
        f.get("rules")
            .and_then(Value::as_array)
            .map(|rules| {
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let id = r
                            .get("id")
                            .and_then(Value::as_str)
                            .map_or_else(|| format!("rules[{i}]"), str::to_owned);
                        (id, r.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old_rules, new_rules) = (rules(old), rules(new));
    let find = |rules: &[(String, Value)], id: &str| {
        rules
            .iter()
            .find(|(other, _)| other == id)
            .map(|(_, r)| r.clone())
    };
    for (id, _) in &old_rules {
        if find(&new_rules, id).is_none() {
            out.push(change(flag, "rule_removed", Some(id), None));
        }
    }
    for (id, rule) in &new_rules {
        match find(&old_rules, id) {
            None => out.push(change(flag, "rule_added", Some(id), None)),
            Some(before) if &before != rule => {
                let kind = if before.get("ramp").is_some() && rule.get("ramp").is_some() {
                    "ramp_changed"
                } else {
                    "rule_changed"
                };
                let fields = changed_fields(
                    before.as_object().unwrap_or(&Map::new()),
                    rule.as_object().unwrap_or(&Map::new()),
                );
                let detail = match (before.get("ramp"), rule.get("ramp")) {
                    (Some(a), Some(b)) => format!(
                        "ramp fields: {}",
                        changed_fields(
                            a.as_object().unwrap_or(&Map::new()),
                            b.as_object().unwrap_or(&Map::new())
                        )
                        .join(", ")
                    ),
                    _ => format!("fields: {}", fields.join(", ")),
                };
                out.push(change(flag, kind, Some(id), Some(detail)));
            }
            _ => {}
        }
    }
    let order = |rules: &[(String, Value)], other: &[(String, Value)]| -> Vec<String> {
        rules
            .iter()
            .filter(|(id, _)| other.iter().any(|(o, _)| o == id))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let (kept_old, kept_new) = (order(&old_rules, &new_rules), order(&new_rules, &old_rules));
    if kept_old != kept_new {
        out.push(change(
            flag,
            "rules_reordered",
            None,
            Some(format!(
                "{} -> {}",
                kept_old.join(", "),
                kept_new.join(", ")
            )),
        ));
    }
}

/// The keys of either object: `a`'s in order, then those only `b` has.
fn union(a: &Map<String, Value>, b: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = a.keys().cloned().collect();
    keys.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    keys
}

fn changed_fields(a: &Map<String, Value>, b: &Map<String, Value>) -> Vec<String> {
    union(a, b)
        .into_iter()
        .filter(|k| a.get(k) != b.get(k))
        .collect()
}

/// `old -> new` in compact JSON, each side cut to 80 characters.
fn arrow(old: Option<&Value>, new: Option<&Value>) -> String {
    let show = |v: Option<&Value>| {
        let text = v.map_or_else(|| "(none)".to_string(), Value::to_string);
        if text.chars().count() > 80 {
            let cut: String = text.chars().take(77).collect();
            format!("{cut}...")
        } else {
            text
        }
    };
    format!("{} -> {}", show(old), show(new))
}

fn change(
    flag: Option<&str>,
    kind: &'static str,
    item: Option<&str>,
    detail: Option<String>,
) -> Change {
    Change {
        flag: flag.map(str::to_owned),
        kind,
        item: item.map(str::to_owned),
        detail,
    }
}
