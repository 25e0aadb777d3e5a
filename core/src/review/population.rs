//! The synthetic population of a review: seeded, so the same documents and seed give the same
//! units in every run (and in CI).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::hash::bucket;

/// `users` synthetic contexts for reviewing the change from `old` to `new` (JSON documents).
///
/// Every unit attribute either document buckets by (each flag's and rule's `bucket_by`, default
/// `user_id`, and each `sticky.by`) holds the unit's id, `"<attr>-<seed>-<i>"`. Every other
/// attribute a condition reads takes, per unit, one of the values the documents compare it
/// with, or is absent; which one is drawn with bucketing v1 from the seed, the attribute and the
/// unit, so targeting rules and segments see a spread of matching and non-matching units.
pub fn synthetic_population(old: &Value, new: &Value, users: usize, seed: u64) -> Vec<Value> {
    let mut units: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for doc in [old, new] {
        collect(doc, &mut units, &mut values);
    }
    if units.is_empty() {
        units.push("user_id".into());
    }
    for unit in &units {
        values.remove(unit);
    }
    (0..users)
        .map(|i| {
            let mut ctx = Map::new();
            for unit in &units {
                ctx.insert(unit.clone(), Value::from(format!("{unit}-{seed}-{i}")));
            }
            for (attr, choices) in &values {
                let total = u32::try_from(choices.len() + 1).unwrap_or(u32::MAX);
                let pick = bucket(&format!("review/{seed}/{attr}"), &i.to_string(), total);
                if let Some(value) = pick.and_then(|p| choices.get(p as usize)) {
                    ctx.insert(attr.clone(), value.clone());
                }
            }
            Value::Object(ctx)
        })
        .collect()
}

/// The unit attributes and the compared values of every condition in `value` (a document or
/// any part of one).
fn collect(value: &Value, units: &mut Vec<String>, values: &mut BTreeMap<String, Vec<Value>>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(attr)) = map.get("bucket_by") {
                push_unique(units, attr.clone());
            }
            if let (Some(Value::Object(sticky)), true) =
                (map.get("sticky"), map.contains_key("variants"))
            {
                if let Some(Value::String(by)) = sticky.get("by") {
                    push_unique(units, by.clone());
                }
            }
            if map.contains_key("variants") && !map.contains_key("bucket_by") {
                push_unique(units, "user_id".into());
            }
            if let (Some(Value::String(attr)), Some(_)) = (map.get("attr"), map.get("op")) {
                let seen = values.entry(attr.clone()).or_default();
                match map.get("value") {
                    Some(Value::Array(items)) => {
                        for item in items {
                            push_unique(seen, item.clone());
                        }
                    }
                    Some(Value::Object(_)) | None => {}
                    Some(item) => push_unique(seen, item.clone()),
                }
            }
            for (key, child) in map {
                // Payloads are the app's data, not conditions.
                if key != "variants" {
                    collect(child, units, values);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, units, values);
            }
        }
        _ => {}
    }
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}
