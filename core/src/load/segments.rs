//! `segments`: named conditions, compiled once, with reference cycles rejected.

use rustc_hash::FxHashSet;
use serde_json::{Map, Value};

use super::read::join;
use super::Loader;
use crate::condition::Condition;
use crate::document::Segment;
use crate::error::ProblemKind;

impl Loader {
    pub(super) fn segments(&mut self, value: &Value) -> Vec<Segment> {
        let Some(object) = self.object("segments", value) else {
            return Vec::new();
        };
        let map = object.map;
        let names: Vec<&str> = map.keys().map(String::as_str).collect();
        // Cycles are found on the raw JSON first so that compilation can assume a DAG.
        let mut cyclic = FxHashSet::default();
        for name in &names {
            let mut stack = Vec::new();
            if let Some(cycle) = find_cycle(map, name, &mut stack) {
                if cycle.first() == Some(&name.to_string()) && cyclic.insert(name.to_string()) {
                    self.report(
                        &join("segments", name),
                        ProblemKind::SegmentCycle,
                        format!("segment references form a cycle: {}", cycle.join(" -> ")),
                    );
                }
            }
        }
        let mut segments = Vec::with_capacity(map.len());
        for (name, body) in map {
            let path = join("segments", name);
            if name.is_empty() {
                self.report(
                    &path,
                    ProblemKind::InvalidValue,
                    "segment names must not be empty",
                );
            }
            let condition = if cyclic.contains(name) {
                None
            } else {
                self.condition(&path, body, &names)
            };
            segments.push(Segment {
                name: name.as_str().into(),
                // A placeholder never evaluates: the document is rejected when any problem exists.
                condition: condition.unwrap_or(Condition::Any(Vec::new())),
            });
        }
        segments
    }
}

/// Finds a cycle through `name` in the raw segment definitions; returns the path of names.
fn find_cycle(
    segments: &Map<String, Value>,
    name: &str,
    stack: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(pos) = stack.iter().position(|s| s == name) {
        let mut cycle = stack[pos..].to_vec();
        cycle.push(name.to_string());
        return Some(cycle);
    }
    let body = segments.get(name)?;
    stack.push(name.to_string());
    let mut refs = Vec::new();
    collect_segment_refs(body, &mut refs);
    for reference in refs {
        if let Some(cycle) = find_cycle(segments, &reference, stack) {
            stack.pop();
            return Some(cycle);
        }
    }
    stack.pop();
    None
}

fn collect_segment_refs(value: &Value, out: &mut Vec<String>) {
    let Value::Object(map) = value else { return };
    if let Some(Value::String(name)) = map.get("segment") {
        out.push(name.clone());
    }
    for key in ["all", "any"] {
        if let Some(Value::Array(items)) = map.get(key) {
            items
                .iter()
                .for_each(|item| collect_segment_refs(item, out));
        }
    }
    if let Some(inner) = map.get("not") {
        collect_segment_refs(inner, out);
    }
}
