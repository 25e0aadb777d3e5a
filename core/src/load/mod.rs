//! Validation and compilation of a JSON flag document into a [`Document`].
//!
//! The document is walked by hand rather than through `serde` derives so that every problem is
//! reported with its exact path and a stable code, and so that *all* problems of a document are
//! reported at once, not only the first. Nothing here runs on the evaluation path.
//!
//! One file per part of the document: [`read`] holds the one field reader (paths, wrong
//! types, required and optional fields) and the scalar readers every part uses; [`suggest`] the
//! did-you-mean hint; then `document` (top level, kill switches), `segments`, `condition`,
//! `flag` (variants, fallback), `rules` (rules, splits, percentages), `ramp` (and its
//! `autopilot`), `guardrail` and
//! `state` (sticky, budgets, shadow).

mod autopilot;
mod condition;
mod cost;
mod document;
mod flag;
mod guardrail;
mod json;
mod ramp;
mod read;
mod rules;
mod segments;
mod state;
mod suggest;

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use crate::condition::Segment;
use crate::document::budget::Budget;
use crate::document::{Action, Document, Flag, KillSwitch};
use crate::error::{Error, Problem, ProblemKind, Result};
use crate::time::Millis;

pub use json::MAX_JSON_DEPTH;

/// Documents larger than this are rejected before parsing (a runaway generator, a wrong file).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Deepest chain of conditions, counted from a rule's `when` (or a segment) down to a test,
/// one level per condition object, segment references followed. It bounds the recursion of
/// evaluation (about 200 bytes of stack a level) whatever the document.
pub const MAX_CONDITION_DEPTH: usize = 128;
/// Most steps one evaluation of a flag may take in the worst case (see `load/cost.rs`): each
/// rule and condition 1, each string search 8, a shared segment once per rule.
pub const MAX_FLAG_COST: u64 = 10_000;
pub use crate::condition::MAX_COMPARED_BYTES;
pub use cost::SEARCH_COST;
/// Longest accepted `matches` pattern, in bytes.
pub const MAX_REGEX_LENGTH: usize = 1024;
/// Compiled-size bound of one `matches` pattern (the regex crate's `size_limit`).
pub(crate) const MAX_REGEX_COMPILED_BYTES: usize = 256 * 1024;

/// Sections that a later version implements; they are rejected rather than silently ignored.
/// (None at the moment: `UNSUPPORTED_FIELD` stays reserved for the next one.)
const NOT_YET_SUPPORTED_FLAG_FIELDS: &[&str] = &[];

/// Longest accepted sticky `ttl` and budget `window`: 31 days.
pub(crate) const MAX_STATE_WINDOW_MS: Millis = 31 * 86_400_000;

/// Longest `fallback` list (a chain is walked at most once: this bounds a call's attempts).
pub(crate) const MAX_FALLBACK_STEPS: usize = 16;
/// Longest accepted `timeout_ms` / `max_total_ms`: one hour.
pub(crate) const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The text entry: `bytes` are JSON text (UTF-8, a leading byte-order mark skipped).
///
/// Every loader of every language reaches the core through this function or [`from_value`];
/// the two give the same verdict for the same document (a text can also be wrong in ways a
/// value cannot: syntax, duplicate keys, numbers more precise than a float).
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Document> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large(bytes.len()));
    }
    let (value, notes) =
        json::parse(bytes).map_err(|problems| Error::InvalidDocument { problems })?;
    compile(value, notes.inexact_numbers)
}

/// The value entry: an already-built JSON value (a Python dict, a JavaScript object, a
/// `serde_json::Value`). Its size is that of its compact JSON text.
pub(crate) fn from_value(value: Value) -> Result<Document> {
    let size = compact_size(&value);
    if size > MAX_DOCUMENT_BYTES {
        return Err(too_large(size));
    }
    json::check_depth(&value).map_err(|problem| Error::InvalidDocument {
        problems: vec![problem],
    })?;
    compile(value, FxHashSet::default())
}

fn compile(value: Value, inexact_numbers: FxHashSet<String>) -> Result<Document> {
    let mut loader = Loader {
        problems: Vec::new(),
        inexact_numbers,
        segment_depths: Vec::new(),
        autopilots: Vec::new(),
    };
    let compiled = loader.document(&value);
    match compiled {
        Some(parts) if loader.problems.is_empty() => Ok(parts.into_document(value)),
        _ => Err(Error::InvalidDocument {
            problems: loader.problems,
        }),
    }
}

fn too_large(size: usize) -> Error {
    Error::InvalidDocument {
        problems: vec![Problem {
            path: String::new(),
            kind: ProblemKind::DocumentTooLarge,
            message: format!("document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes"),
        }],
    }
}

/// Bytes of the compact JSON text of `value`, counted up to just past the bound.
fn compact_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            if self.0 > MAX_DOCUMENT_BYTES {
                // Stops the serializer: the answer is already known.
                return Err(std::io::Error::other("over the bound"));
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Walks one document and collects every problem it finds.
struct Loader {
    problems: Vec<Problem>,
    /// Paths of numbers whose text was more precise than a float (text entry only).
    inexact_numbers: FxHashSet<String>,
    /// Each segment's depth in levels of conditions, references followed (0 while unknown).
    segment_depths: Vec<usize>,
    /// The autopilots of the ramps of the flag being read (moved into its `Flag`).
    autopilots: Vec<crate::autopilot::AutopilotSpec>,
}

impl Loader {
    fn report(&mut self, path: &str, kind: ProblemKind, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            kind,
            message: message.into(),
        });
    }
}

/// The compiled parts of a valid document, before the per-flag attribute lists are derived.
struct Parts {
    revision: Arc<str>,
    kill: KillSwitch,
    flags: Vec<Flag>,
    segments: Vec<Segment>,
    budgets: Vec<Budget>,
}

impl Parts {
    fn into_document(mut self, source: Value) -> Document {
        for flag in &mut self.flags {
            flag.attributes = attributes_read(flag, &self.segments);
            // A tripped guardrail draws its half-open probe by unit.
            if !flag.guardrails.is_empty() && !flag.attributes.contains(&flag.bucket_by) {
                flag.attributes.push(flag.bucket_by.clone());
            }
            // Sticky pins, budget scopes and the shadow draw read these too.
            let mut state_attributes: Vec<&str> = Vec::new();
            if let Some(sticky) = &flag.sticky {
                state_attributes.push(&sticky.by);
            }
            if flag.shadow.is_some() {
                state_attributes.push(&flag.bucket_by);
            }
            for budget in flag.budgets.iter().chain(&self.budgets) {
                if let Some(per) = &budget.per {
                    state_attributes.push(per);
                }
            }
            for name in state_attributes {
                if !flag.attributes.iter().any(|a| &**a == name) {
                    flag.attributes.push(name.into());
                }
            }
            let mut run_attributes = flag.attributes.clone();
            for extra in [&*flag.bucket_by, crate::runtime::SEGMENT_ATTRIBUTE] {
                if !run_attributes.iter().any(|a| &**a == extra) {
                    run_attributes.push(extra.into());
                }
            }
            flag.run_attributes = run_attributes;
        }
        // The union covers `run_attributes`, so a binding that reads several flags on a handle
        // with exposures on finds the unit and the segment label in it too.
        let mut attributes: Vec<Box<str>> = Vec::new();
        let mut slot_of: FxHashMap<Box<str>, usize> = FxHashMap::default();
        for flag in &mut self.flags {
            flag.run_attribute_slots = flag
                .run_attributes
                .iter()
                .map(|name| {
                    *slot_of.entry(name.clone()).or_insert_with(|| {
                        attributes.push(name.clone());
                        attributes.len() - 1
                    })
                })
                .collect();
            // `run_attributes` starts with `attributes`.
            flag.attribute_slots = flag.run_attribute_slots[..flag.attributes.len()].to_vec();
        }
        let flag_index: FxHashMap<Box<str>, usize> = self
            .flags
            .iter()
            .enumerate()
            .map(|(i, f)| (Box::<str>::from(&*f.key), i))
            .collect();
        Document {
            revision: self.revision,
            kill: self.kill,
            flags: self.flags,
            flag_index,
            segments: self.segments,
            budgets: self.budgets,
            attributes,
            source: Arc::new(source),
        }
    }
}

/// Every attribute evaluation of `flag` can read, in first-use order.
fn attributes_read(flag: &Flag, segments: &[Segment]) -> Vec<Box<str>> {
    let mut names: Vec<&str> = Vec::new();
    for rule in &flag.rules {
        if let Some(when) = &rule.when {
            when.attributes(segments, &mut names);
        }
        if !matches!(rule.action, Action::Serve(_)) {
            let unit = rule.bucket_by.as_deref().unwrap_or(&flag.bucket_by);
            if !names.contains(&unit) {
                names.push(unit);
            }
        }
    }
    names.into_iter().map(Box::from).collect()
}

// The constructors of `Document` live here, with the loader they call: the document layer
// does not import the layer above it.
impl Document {
    /// Parses, validates and compiles a document from JSON bytes (the text entry).
    pub fn from_slice(bytes: &[u8]) -> Result<Document> {
        from_slice(bytes)
    }

    /// Parses, validates and compiles a document from JSON text (the text entry).
    pub fn from_json(text: &str) -> Result<Document> {
        from_slice(text.as_bytes())
    }

    /// Validates and compiles an already-built JSON value (the value entry): the same verdict
    /// as [`Document::from_slice`] for every document a value can hold.
    pub fn from_value(value: serde_json::Value) -> Result<Document> {
        from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribute_union_holds_every_flags_attributes_once() {
        let document = Document::from_json(
            r#"{"flags": {
                "a": {"bucket_by": "user_id", "variants": {"x": {}, "y": {}}, "default": "x",
                      "rules": [{"when": {"attr": "plan", "op": "eq", "value": "pro"}, "serve": "y"},
                                {"split": [{"variant": "x", "percent": 50}, {"variant": "y", "percent": 50}]}]},
                "b": {"bucket_by": "org_id", "variants": {"x": {}}, "default": "x",
                      "rules": [{"when": {"attr": "plan", "op": "eq", "value": "pro"}, "serve": "x"},
                                {"split": [{"variant": "x", "percent": 100}]}]},
                "c": {"variants": {"x": {}}, "default": "x"}
            }}"#,
        )
        .unwrap();
        let union: Vec<&str> = document.attributes().iter().map(|a| &**a).collect();
        // Flag a's attributes, then the segment label its runs read, then b's unit.
        assert_eq!(union, ["plan", "user_id", "segment", "org_id"]);
        for flag in document.flags() {
            assert_eq!(flag.attribute_slots.len(), flag.attributes.len());
            assert_eq!(flag.run_attribute_slots.len(), flag.run_attributes.len());
            for (name, &slot) in flag.attributes.iter().zip(&flag.attribute_slots) {
                assert_eq!(&document.attributes()[slot], name, "flag {}", flag.key);
            }
            for (name, &slot) in flag.run_attributes.iter().zip(&flag.run_attribute_slots) {
                assert_eq!(&document.attributes()[slot], name, "flag {}", flag.key);
            }
        }
        assert!(document.flags()[2].attribute_slots.is_empty());
        // c reads nothing to decide, but its runs (and exposed reads) read the unit and label.
        assert_eq!(document.flags()[2].run_attribute_slots, [1, 2]);
    }
}
