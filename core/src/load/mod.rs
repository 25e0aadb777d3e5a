//! Validation and compilation of a JSON flag document into a [`Document`].
//!
//! The document is walked by hand rather than through `serde` derives so that every problem is
//! reported with its exact path and a stable code, and so that *all* problems of a document are
//! reported at once, not only the first. Nothing here runs on the evaluation path.
//!
//! One file per part of the document: [`read`] holds the one field reader (paths, wrong
//! types, required and optional fields) and the scalar readers every part uses; [`suggest`] the
//! did-you-mean hint; then `document` (top level, kill switches), `segments`, `condition`,
//! `flag` (variants, fallback), `rules` (rules, splits, percentages), `ramp`, `guardrail` and
//! `state` (sticky, budgets, shadow).

mod condition;
mod document;
mod flag;
mod guardrail;
mod ramp;
mod read;
mod rules;
mod segments;
mod state;
mod suggest;

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::document::{Action, Document, Flag, KillSwitch, Segment};
use crate::error::{Error, Problem, ProblemKind, Result};
use crate::runtime::budget::Budget;
use crate::time::Millis;

/// Documents larger than this are rejected before parsing (a runaway generator, a wrong file).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Longest accepted `matches` pattern, in bytes.
pub const MAX_REGEX_LENGTH: usize = 1024;
/// Compiled-size bound of one `matches` pattern (the regex crate's `size_limit`).
pub const MAX_REGEX_COMPILED_BYTES: usize = 256 * 1024;

/// Sections that a later version implements; they are rejected rather than silently ignored.
/// (None at the moment: `UNSUPPORTED_FIELD` stays reserved for the next one.)
const NOT_YET_SUPPORTED_FLAG_FIELDS: &[&str] = &[];

/// Longest accepted sticky `ttl` and budget `window`: 31 days.
pub const MAX_STATE_WINDOW_MS: Millis = 31 * 86_400_000;

/// Longest `fallback` list (a chain is walked at most once: this bounds a call's attempts).
pub const MAX_FALLBACK_STEPS: usize = 16;
/// Longest accepted `timeout_ms` / `max_total_ms`: one hour.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

pub(crate) fn from_slice(bytes: &[u8]) -> Result<Document> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(single(
            "",
            ProblemKind::DocumentTooLarge,
            format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes",
                bytes.len()
            ),
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|err| {
        single(
            "",
            ProblemKind::InvalidJson,
            format!(
                "invalid JSON at line {}, column {}: {}",
                err.line(),
                err.column(),
                json_error_reason(&err)
            ),
        )
    })?;
    from_value(value)
}

fn json_error_reason(err: &serde_json::Error) -> String {
    // serde_json appends " at line L column C" to its message; the position is already said.
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

fn single(path: &str, kind: ProblemKind, message: String) -> Error {
    Error::InvalidDocument {
        problems: vec![Problem {
            path: path.to_string(),
            kind,
            message,
        }],
    }
}

pub(crate) fn from_value(value: Value) -> Result<Document> {
    let mut loader = Loader::default();
    let compiled = loader.document(&value);
    match compiled {
        Some(parts) if loader.problems.is_empty() => Ok(parts.into_document(value)),
        _ => Err(Error::InvalidDocument {
            problems: loader.problems,
        }),
    }
}

/// Walks one document and collects every problem it finds.
#[derive(Default)]
struct Loader {
    problems: Vec<Problem>,
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
