//! Validation and compilation of a JSON flag document into a [`Document`].
//!
//! The document is walked by hand rather than through `serde` derives so that every problem is
//! reported with its exact path and a stable code, and so that *all* problems of a document are
//! reported at once, not only the first. Nothing here runs on the evaluation path.

use std::sync::Arc;

use regex::RegexBuilder;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{Map, Value};

use crate::condition::Segment;
use crate::condition::{parse_version, Condition, Op, Scalar, SemverOp, Test, ValueSet, OPERATORS};
use crate::document::budget::{Budget, BudgetAction, Measure};
use crate::document::guardrail::{self, GuardAction, Guardrail, Metric};
use crate::document::sticky::Sticky;
use crate::document::{Action, Document, Flag, KillSwitch, Rule, Shadow, Split, Variant};
use crate::error::{Error, Problem, ProblemKind, Result};
use crate::hash::{murmur3_32, SaltedHasher, HASH_VERSION, PERCENT_TOTAL};
use crate::ramp::{Ramp, RampStep};
use crate::time::{parse_duration, parse_timestamp, Millis};

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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Default)]
struct Loader {
    problems: Vec<Problem>,
}

/// The variants of the flag being compiled, for resolving references.
struct VariantNames<'a> {
    ids: Vec<&'a str>,
}

impl VariantNames<'_> {
    fn find(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|v| *v == id)
    }
}

impl Loader {
    fn report(&mut self, path: &str, kind: ProblemKind, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            kind,
            message: message.into(),
        });
    }

    fn object<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.report(
                    path,
                    ProblemKind::WrongType,
                    format!("expected an object, found {}", json_type(other)),
                );
                None
            }
        }
    }

    /// Reports every key of `map` that is not in `allowed` (or that is known but unsupported).
    fn check_fields(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        allowed: &[&str],
        unsupported: &[&str],
    ) {
        for key in map.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            if unsupported.contains(&key.as_str()) {
                self.report(
                    &join(path, key),
                    ProblemKind::UnsupportedField,
                    format!("\"{key}\" is not supported by this version of flagrail yet (it would be silently ignored)"),
                );
            } else {
                let hint = closest(key, allowed)
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                self.report(
                    &join(path, key),
                    ProblemKind::UnknownField,
                    format!(
                        "unknown field \"{key}\"{hint}; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn string<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.report(
                    path,
                    ProblemKind::WrongType,
                    format!("expected a string, found {}", json_type(other)),
                );
                None
            }
        }
    }

    fn non_empty_string<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v str> {
        let s = self.string(path, value)?;
        if s.is_empty() {
            self.report(path, ProblemKind::InvalidValue, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn optional_string(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        key: &str,
    ) -> Option<String> {
        map.get(key)
            .and_then(|v| self.string(&join(path, key), v))
            .map(str::to_string)
    }

    fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.report(
                    path,
                    ProblemKind::WrongType,
                    format!("expected true or false, found {}", json_type(other)),
                );
                None
            }
        }
    }

    fn timestamp(&mut self, path: &str, value: &Value) -> Option<Millis> {
        let text = self.string(path, value)?;
        let parsed = parse_timestamp(text);
        if parsed.is_none() {
            self.report(
                path,
                ProblemKind::InvalidDate,
                format!("\"{text}\" is not an RFC 3339 timestamp (2026-11-21T09:00:00Z) or a date (2026-11-21)"),
            );
        }
        parsed
    }

    fn duration(&mut self, path: &str, value: &Value) -> Option<Millis> {
        let text = self.string(path, value)?;
        let parsed = parse_duration(text);
        if parsed.is_none() {
            self.report(
                path,
                ProblemKind::InvalidDuration,
                format!("\"{text}\" is not a duration (examples: 500ms, 30s, 90m, 24h, 7d, 1h30m)"),
            );
        }
        parsed
    }

    fn required<'v>(
        &mut self,
        path: &str,
        map: &'v Map<String, Value>,
        key: &str,
    ) -> Option<&'v Value> {
        let value = map.get(key);
        if value.is_none() {
            self.report(
                &join(path, key),
                ProblemKind::MissingField,
                format!("\"{key}\" is required"),
            );
        }
        value
    }

    fn variant_ref(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
    ) -> Option<usize> {
        let id = self.string(path, value)?;
        let found = variants.find(id);
        if found.is_none() {
            self.report(
                path,
                ProblemKind::UnknownVariant,
                format!(
                    "flag \"{flag}\" has no variant \"{id}\" (variants: {})",
                    variants.ids.join(", ")
                ),
            );
        }
        found
    }

    // ---- document -------------------------------------------------------------------------

    fn document(&mut self, value: &Value) -> Option<Parts> {
        let map = self.object("", value)?;
        self.check_fields(
            "",
            map,
            &[
                "$schema",
                "revision",
                "description",
                "hash_version",
                "kill",
                "segments",
                "flags",
                "budgets",
            ],
            &[],
        );
        let revision: Arc<str> = match map.get("revision") {
            Some(v) => Arc::from(self.non_empty_string("revision", v).unwrap_or("")),
            None => {
                // A document without a revision still needs an identity for telemetry: a hash
                // of its canonical text.
                let text = value.to_string();
                Arc::from(format!("auto-{:08x}", murmur3_32(text.as_bytes(), 0)))
            }
        };
        if let Some(v) = map.get("hash_version") {
            match v.as_f64() {
                None => self.report(
                    "hash_version",
                    ProblemKind::WrongType,
                    format!("expected a number, found {}", json_type(v)),
                ),
                Some(n) if n == f64::from(HASH_VERSION) => {}
                Some(_) => self.report(
                    "hash_version",
                    ProblemKind::UnsupportedHashVersion,
                    format!("this build implements bucketing hash_version {HASH_VERSION} only, found {v}"),
                ),
            }
        }
        if let Some(v) = map.get("description") {
            self.string("description", v);
        }
        let kill = match map.get("kill") {
            Some(v) => self.kill_switch("kill", v, None, ""),
            None => KillSwitch::default(),
        };
        let segments = match map.get("segments") {
            Some(v) => self.segments(v),
            None => Vec::new(),
        };
        let flags = match self.required("", map, "flags") {
            Some(v) => self.flags(v, &segments),
            None => Vec::new(),
        };
        let budgets = match map.get("budgets") {
            Some(v) => self.budgets("budgets", v, None, None),
            None => Vec::new(),
        };
        Some(Parts {
            revision,
            kill,
            flags,
            segments,
            budgets,
        })
    }

    fn kill_switch(
        &mut self,
        path: &str,
        value: &Value,
        variants: Option<&VariantNames<'_>>,
        flag: &str,
    ) -> KillSwitch {
        let mut kill = KillSwitch::default();
        let Some(map) = self.object(path, value) else {
            return kill;
        };
        let allowed: &[&str] = if variants.is_some() {
            &["active", "serve", "reason", "actor", "at"]
        } else {
            &["active", "reason", "actor", "at"]
        };
        self.check_fields(path, map, allowed, &[]);
        if let Some(v) = self.required(path, map, "active") {
            kill.active = self.boolean(&join(path, "active"), v).unwrap_or(false);
        }
        if let (Some(v), Some(variants)) = (map.get("serve"), variants) {
            kill.serve = self.variant_ref(&join(path, "serve"), v, variants, flag);
        }
        kill.reason = self.optional_string(path, map, "reason");
        kill.actor = self.optional_string(path, map, "actor");
        if let Some(v) = map.get("at") {
            kill.at = self.timestamp(&join(path, "at"), v);
        }
        kill
    }

    // ---- segments -------------------------------------------------------------------------

    fn segments(&mut self, value: &Value) -> Vec<Segment> {
        let Some(map) = self.object("segments", value) else {
            return Vec::new();
        };
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

    // ---- conditions -----------------------------------------------------------------------

    fn condition(&mut self, path: &str, value: &Value, segments: &[&str]) -> Option<Condition> {
        let map = self.object(path, value)?;
        let shape = ["all", "any", "not", "segment", "attr"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect::<Vec<_>>();
        match shape.as_slice() {
            ["all"] | ["any"] => {
                let key = shape[0];
                self.check_fields(path, map, &[key], &[]);
                let list_path = join(path, key);
                let Value::Array(items) = &map[key] else {
                    self.report(
                        &list_path,
                        ProblemKind::WrongType,
                        "expected an array of conditions",
                    );
                    return None;
                };
                if items.is_empty() {
                    self.report(
                        &list_path,
                        ProblemKind::InvalidValue,
                        "must list at least one condition",
                    );
                }
                let compiled: Vec<Option<Condition>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.condition(&index(&list_path, i), item, segments))
                    .collect();
                let compiled: Option<Vec<Condition>> = compiled.into_iter().collect();
                let compiled = compiled?;
                Some(if key == "all" {
                    Condition::All(compiled)
                } else {
                    Condition::Any(compiled)
                })
            }
            ["not"] => {
                self.check_fields(path, map, &["not"], &[]);
                let inner = self.condition(&join(path, "not"), &map["not"], segments)?;
                Some(Condition::Not(Box::new(inner)))
            }
            ["segment"] => {
                self.check_fields(path, map, &["segment"], &[]);
                let seg_path = join(path, "segment");
                let name = self.string(&seg_path, &map["segment"])?;
                match segments.iter().position(|s| *s == name) {
                    Some(i) => Some(Condition::Segment(i)),
                    None => {
                        self.report(
                            &seg_path,
                            ProblemKind::UnknownSegment,
                            format!("no segment named \"{name}\""),
                        );
                        None
                    }
                }
            }
            ["attr"] => {
                self.check_fields(path, map, &["attr", "op", "value"], &[]);
                self.test(path, map).map(Condition::Test)
            }
            [] => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    "a condition needs one of \"attr\" (with \"op\"), \"segment\", \"all\", \"any\" or \"not\"",
                );
                None
            }
            _ => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!(
                        "a condition has exactly one of attr/segment/all/any/not, found {}; combine them with \"all\"",
                        shape.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn test(&mut self, path: &str, map: &Map<String, Value>) -> Option<Test> {
        let attr = self.non_empty_string(&join(path, "attr"), &map["attr"]);
        let op_path = join(path, "op");
        let op_name = self
            .required(path, map, "op")
            .and_then(|v| self.string(&op_path, v));
        let op_name = op_name?;
        if !OPERATORS.contains(&op_name) {
            let hint = closest(op_name, OPERATORS)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            self.report(
                &op_path,
                ProblemKind::UnknownOperator,
                format!("unknown operator \"{op_name}\"{hint}"),
            );
            return None;
        }
        let value_path = join(path, "value");
        let value = map.get("value");
        if op_name == "exists" {
            if value.is_some() {
                self.report(
                    &value_path,
                    ProblemKind::InvalidValue,
                    "\"exists\" takes no value",
                );
            }
            return Some(Test {
                attr: attr?.into(),
                op: Op::Exists,
            });
        }
        let Some(value) = value else {
            self.report(
                &value_path,
                ProblemKind::MissingField,
                format!("operator \"{op_name}\" needs a \"value\""),
            );
            return None;
        };
        let op = match op_name {
            "eq" => Op::Eq(self.scalar(&value_path, value)?),
            "ne" => Op::Ne(self.scalar(&value_path, value)?),
            "in" => Op::In(self.value_set(&value_path, value)?),
            "not_in" => Op::NotIn(self.value_set(&value_path, value)?),
            "contains" => Op::Contains(self.strings(&value_path, value)?),
            "starts_with" => Op::StartsWith(self.strings(&value_path, value)?),
            "ends_with" => Op::EndsWith(self.strings(&value_path, value)?),
            "matches" => Op::Matches(Box::new(self.regex(&value_path, value)?)),
            "gt" => Op::Gt(self.number(&value_path, value)?),
            "gte" => Op::Gte(self.number(&value_path, value)?),
            "lt" => Op::Lt(self.number(&value_path, value)?),
            "lte" => Op::Lte(self.number(&value_path, value)?),
            "before" => Op::Before(self.timestamp(&value_path, value)?),
            "after" => Op::After(self.timestamp(&value_path, value)?),
            semver_op => {
                let which = match semver_op {
                    "semver_eq" => SemverOp::Eq,
                    "semver_ne" => SemverOp::Ne,
                    "semver_gt" => SemverOp::Gt,
                    "semver_gte" => SemverOp::Gte,
                    "semver_lt" => SemverOp::Lt,
                    _ => SemverOp::Lte,
                };
                let text = self.string(&value_path, value)?;
                let Some(version) = parse_version(text) else {
                    self.report(
                        &value_path,
                        ProblemKind::InvalidSemver,
                        format!("\"{text}\" is not a semantic version (1.4.2, 2.0.0-beta.1)"),
                    );
                    return None;
                };
                Op::Semver(which, version)
            }
        };
        Some(Test {
            attr: attr?.into(),
            op,
        })
    }

    fn scalar(&mut self, path: &str, value: &Value) -> Option<Scalar> {
        match value {
            Value::String(s) => Some(Scalar::Str(s.as_str().into())),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => n.as_f64().map(Scalar::Num),
            other => {
                self.report(
                    path,
                    ProblemKind::WrongType,
                    format!(
                        "expected a string, number or boolean, found {}",
                        json_type(other)
                    ),
                );
                None
            }
        }
    }

    fn value_set(&mut self, path: &str, value: &Value) -> Option<ValueSet> {
        let Value::Array(items) = value else {
            self.report(
                path,
                ProblemKind::WrongType,
                format!("expected an array, found {}", json_type(value)),
            );
            return None;
        };
        let mut set = ValueSet::default();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.scalar(&index(path, i), item) {
                Some(Scalar::Str(s)) => {
                    set.strings.insert(s);
                }
                Some(Scalar::Num(n)) => set.numbers.push(n),
                Some(Scalar::Bool(b)) => set.bools.push(b),
                None => ok = false,
            }
        }
        ok.then_some(set)
    }

    /// A string, or a non-empty array of strings (any of which may match).
    fn strings(&mut self, path: &str, value: &Value) -> Option<Vec<Box<str>>> {
        match value {
            Value::String(s) => Some(vec![s.as_str().into()]),
            Value::Array(items) if !items.is_empty() => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(Box::from(self.string(&index(path, i), item)?));
                }
                Some(out)
            }
            other => {
                self.report(
                    path,
                    ProblemKind::WrongType,
                    format!(
                        "expected a string or a non-empty array of strings, found {}",
                        json_type(other)
                    ),
                );
                None
            }
        }
    }

    fn number(&mut self, path: &str, value: &Value) -> Option<f64> {
        match value.as_f64() {
            Some(n) => Some(n),
            None => {
                self.report(
                    path,
                    ProblemKind::WrongType,
                    format!("expected a number, found {}", json_type(value)),
                );
                None
            }
        }
    }

    fn regex(&mut self, path: &str, value: &Value) -> Option<regex::Regex> {
        let pattern = self.string(path, value)?;
        if pattern.len() > MAX_REGEX_LENGTH {
            self.report(
                path,
                ProblemKind::InvalidRegex,
                format!(
                    "pattern is {} bytes; the limit is {MAX_REGEX_LENGTH}",
                    pattern.len()
                ),
            );
            return None;
        }
        match RegexBuilder::new(pattern)
            .size_limit(MAX_REGEX_COMPILED_BYTES)
            .dfa_size_limit(MAX_REGEX_COMPILED_BYTES)
            .build()
        {
            Ok(regex) => Some(regex),
            Err(err) => {
                let reason = match err {
                    regex::Error::CompiledTooBig(limit) => {
                        format!("pattern compiles to more than {limit} bytes")
                    }
                    other => other
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_string(),
                };
                self.report(
                    path,
                    ProblemKind::InvalidRegex,
                    format!("invalid pattern: {reason}"),
                );
                None
            }
        }
    }

    // ---- flags ----------------------------------------------------------------------------

    fn flags(&mut self, value: &Value, segments: &[Segment]) -> Vec<Flag> {
        let Some(map) = self.object("flags", value) else {
            return Vec::new();
        };
        let segment_names: Vec<&str> = segments.iter().map(|s| &*s.name).collect();
        map.iter()
            .filter_map(|(key, body)| self.flag(key, body, &segment_names))
            .collect()
    }

    fn flag(&mut self, key: &str, value: &Value, segments: &[&str]) -> Option<Flag> {
        let path = join("flags", key);
        if key.is_empty() {
            self.report(
                &path,
                ProblemKind::InvalidValue,
                "flag keys must not be empty",
            );
        }
        if key.starts_with('$') {
            // `metrics()` keeps its own entries (such as "$budgets") beside the flags.
            self.report(
                &path,
                ProblemKind::InvalidValue,
                "flag keys must not start with \"$\" (reserved)",
            );
        }
        let map = self.object(&path, value)?;
        self.check_fields(
            &path,
            map,
            &[
                "description",
                "owner",
                "expires",
                "tags",
                "bucket_by",
                "salt",
                "variants",
                "default",
                "kill",
                "rules",
                "fallback",
                "max_attempts",
                "max_total_ms",
                "guardrails",
                "sticky",
                "budgets",
                "shadow",
            ],
            NOT_YET_SUPPORTED_FLAG_FIELDS,
        );
        let description = self.optional_string(&path, map, "description");
        let owner = self.optional_string(&path, map, "owner");
        let expires = map
            .get("expires")
            .and_then(|v| self.timestamp(&join(&path, "expires"), v));
        let tags = match map.get("tags") {
            Some(Value::Array(items)) if items.is_empty() => Vec::new(),
            Some(v) => self
                .strings(&join(&path, "tags"), v)
                .unwrap_or_default()
                .into_iter()
                .map(String::from)
                .collect(),
            None => Vec::new(),
        };
        let bucket_by: Box<str> = match map.get("bucket_by") {
            Some(v) => self
                .non_empty_string(&join(&path, "bucket_by"), v)
                .unwrap_or("user_id")
                .into(),
            None => "user_id".into(),
        };
        let salt: Box<str> = match map.get("salt") {
            Some(v) => self.string(&join(&path, "salt"), v).unwrap_or(key).into(),
            None => key.into(),
        };

        let variants_path = join(&path, "variants");
        let variant_map = self
            .required(&path, map, "variants")
            .and_then(|v| self.object(&variants_path, v));
        let mut variants = Vec::new();
        if let Some(variant_map) = variant_map {
            if variant_map.is_empty() {
                self.report(
                    &variants_path,
                    ProblemKind::InvalidValue,
                    "a flag needs at least one variant",
                );
            }
            for (id, payload) in variant_map {
                if id.is_empty() {
                    self.report(
                        &variants_path,
                        ProblemKind::InvalidValue,
                        "variant ids must not be empty",
                    );
                }
                let mut variant = Variant::plain(id, payload.clone());
                self.variant_runtime(&join(&variants_path, id), payload, &mut variant);
                variants.push(variant);
            }
        }
        let names = VariantNames {
            ids: variants.iter().map(|v| &*v.id).collect(),
        };
        let default = self
            .required(&path, map, "default")
            .and_then(|v| self.variant_ref(&join(&path, "default"), v, &names, key));
        let kill = match map.get("kill") {
            Some(v) => self.kill_switch(&join(&path, "kill"), v, Some(&names), key),
            None => KillSwitch::default(),
        };
        let mut rules = match map.get("rules") {
            Some(v) => self.rules(&join(&path, "rules"), v, &names, key, segments),
            None => Vec::new(),
        };
        for rule in &mut rules {
            rule.hasher = SaltedHasher::new(rule.salt.as_deref().unwrap_or(&salt));
        }
        let fallback = match map.get("fallback") {
            Some(v) => self.fallback(&join(&path, "fallback"), v, &names, key),
            None => Vec::new(),
        };
        let max_attempts = map.get("max_attempts").and_then(|v| {
            self.positive_integer(
                &join(&path, "max_attempts"),
                v,
                MAX_FALLBACK_STEPS as u64 + 1,
            )
            .map(|n| n as u32)
        });
        let max_total_ms = map
            .get("max_total_ms")
            .and_then(|v| self.positive_integer(&join(&path, "max_total_ms"), v, MAX_TIMEOUT_MS));
        let guardrails = match map.get("guardrails") {
            Some(v) => self.guardrails(
                &join(&path, "guardrails"),
                v,
                &variants,
                &fallback,
                &rules,
                key,
            ),
            None => Vec::new(),
        };
        let sticky = map
            .get("sticky")
            .and_then(|v| self.sticky(&join(&path, "sticky"), v));
        let budgets = match map.get("budgets") {
            Some(v) => self.budgets(&join(&path, "budgets"), v, Some(&names), Some(key)),
            None => Vec::new(),
        };
        let shadow = map
            .get("shadow")
            .and_then(|v| self.shadow(&join(&path, "shadow"), v, &variants, &names, key, &salt));
        let has_ai = variants.iter().any(|v| v.ai);
        Some(Flag {
            key: Arc::from(key),
            description,
            owner,
            expires,
            tags,
            bucket_by,
            salt,
            default: default?,
            kill,
            rules,
            variants,
            attributes: Vec::new(),
            run_attributes: Vec::new(),
            fallback,
            max_attempts,
            max_total_ms,
            guardrails,
            sticky,
            budgets,
            shadow,
            has_ai,
        })
    }

    // ---- sticky, budgets, shadow ----------------------------------------------------------

    /// A finite number above 0 (a money limit).
    fn positive_number(&mut self, path: &str, value: &Value) -> Option<f64> {
        let n = self.number(path, value)?;
        if n > 0.0 && n.is_finite() {
            return Some(n);
        }
        self.report(
            path,
            ProblemKind::InvalidValue,
            format!("must be above 0, found {n}"),
        );
        None
    }

    /// A duration of at least a second and at most [`MAX_STATE_WINDOW_MS`].
    fn state_window(&mut self, path: &str, value: &Value) -> Option<Millis> {
        let ms = self.duration(path, value)?;
        if !self.at_least_a_second(path, ms) {
            return None;
        }
        if ms > MAX_STATE_WINDOW_MS {
            self.report(path, ProblemKind::InvalidValue, "must be at most 31d");
            return None;
        }
        Some(ms)
    }

    fn sticky(&mut self, path: &str, value: &Value) -> Option<Sticky> {
        let map = self.object(path, value)?;
        self.check_fields(path, map, &["by", "ttl"], &[]);
        let by: Box<str> = match map.get("by") {
            Some(v) => self.non_empty_string(&join(path, "by"), v)?.into(),
            None => "conversation_id".into(),
        };
        let ttl = self
            .required(path, map, "ttl")
            .and_then(|v| self.state_window(&join(path, "ttl"), v))?;
        Some(Sticky { by, ttl })
    }

    /// `budgets` of a flag (`variants` and `flag` given) or of the document.
    fn budgets(
        &mut self,
        path: &str,
        value: &Value,
        variants: Option<&VariantNames<'_>>,
        flag: Option<&str>,
    ) -> Vec<Budget> {
        let Value::Array(items) = value else {
            self.report(
                path,
                ProblemKind::WrongType,
                format!("expected an array of budgets, found {}", json_type(value)),
            );
            return Vec::new();
        };
        let mut out: Vec<Budget> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = index(path, i);
            let Some(budget) = self.budget(&item_path, item, variants, flag) else {
                continue;
            };
            if let Some(first) = out.iter().position(|other| other.id == budget.id) {
                self.report(
                    &item_path,
                    ProblemKind::DuplicateBudgetId,
                    format!(
                        "budget id \"{}\" is already used by budgets[{first}] (give each an \"id\")",
                        budget.id
                    ),
                );
                continue;
            }
            out.push(budget);
        }
        out
    }

    fn budget(
        &mut self,
        path: &str,
        value: &Value,
        variants: Option<&VariantNames<'_>>,
        flag: Option<&str>,
    ) -> Option<Budget> {
        let map = self.object(path, value)?;
        self.check_fields(
            path,
            map,
            &[
                "id",
                "description",
                "per",
                "max_requests",
                "max_cost",
                "window",
                "action",
            ],
            &[],
        );
        if let Some(v) = map.get("description") {
            self.string(&join(path, "description"), v);
        }
        let per: Option<Box<str>> = match map.get("per") {
            Some(v) => Some(self.non_empty_string(&join(path, "per"), v)?.into()),
            None => None,
        };
        let measure_limit = match (map.get("max_requests"), map.get("max_cost")) {
            (Some(_), Some(_)) => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    "give either \"max_requests\" or \"max_cost\", not both",
                );
                None
            }
            (None, None) => {
                self.report(
                    &join(path, "max_requests"),
                    ProblemKind::MissingField,
                    "a budget needs \"max_requests\" or \"max_cost\"",
                );
                None
            }
            (Some(v), None) => self
                .positive_integer(&join(path, "max_requests"), v, 1_000_000_000_000)
                .map(|n| (Measure::Requests, n as f64)),
            (None, Some(v)) => self
                .positive_number(&join(path, "max_cost"), v)
                .map(|n| (Measure::Cost, n)),
        };
        let window = self
            .required(path, map, "window")
            .and_then(|v| self.state_window(&join(path, "window"), v));
        let action_path = join(path, "action");
        let action = match (self.required(path, map, "action"), variants) {
            (None, _) => None,
            (Some(Value::String(text)), _) if text == "kill" => Some(BudgetAction::Kill),
            (Some(Value::Object(body)), Some(names)) => {
                self.check_fields(&action_path, body, &["serve"], &[]);
                self.required(&action_path, body, "serve").and_then(|v| {
                    self.variant_ref(&join(&action_path, "serve"), v, names, flag.unwrap_or(""))
                        .map(BudgetAction::Serve)
                })
            }
            (Some(_), Some(_)) => {
                self.report(
                    &action_path,
                    ProblemKind::InvalidValue,
                    "expected \"kill\" or {\"serve\": \"<variant>\"} (a cheaper, cached or static variant)",
                );
                None
            }
            (Some(_), None) => {
                self.report(
                    &action_path,
                    ProblemKind::InvalidValue,
                    "a document-wide budget's action is \"kill\" (variants belong to flags: give a flag its own budget to serve one)",
                );
                None
            }
        };
        let (measure, limit) = measure_limit?;
        let window = window?;
        let id: Arc<str> = match map.get("id") {
            Some(v) => Arc::from(self.non_empty_string(&join(path, "id"), v)?),
            None => Arc::from(format!(
                "{}{}-{}",
                per.as_deref().map(|p| format!("{p}-")).unwrap_or_default(),
                measure.as_str(),
                crate::time::format_duration(window)
            )),
        };
        Some(Budget {
            key: Arc::from(format!("{}\u{1f}{id}", flag.unwrap_or(""))),
            id,
            flag: flag.map(Arc::from),
            per,
            measure,
            limit,
            window,
            action: action?,
        })
    }

    fn shadow(
        &mut self,
        path: &str,
        value: &Value,
        variants: &[Variant],
        names: &VariantNames<'_>,
        flag: &str,
        flag_salt: &str,
    ) -> Option<Shadow> {
        let map = self.object(path, value)?;
        self.check_fields(
            path,
            map,
            &["variant", "percent", "max_cost_per_hour", "salt"],
            &[],
        );
        let variant_path = join(path, "variant");
        let variant = self
            .required(path, map, "variant")
            .and_then(|v| self.variant_ref(&variant_path, v, names, flag));
        if let Some(v) = variant {
            if !variants[v].ai {
                self.report(
                    &variant_path,
                    ProblemKind::InvalidValue,
                    format!(
                        "variant \"{}\" calls no model (\"ai\": false): there is nothing to shadow",
                        variants[v].id
                    ),
                );
            }
        }
        let milli_percent = self
            .required(path, map, "percent")
            .and_then(|v| self.percent(&join(path, "percent"), v, false));
        let cap = match map.get("max_cost_per_hour") {
            Some(v) => self
                .positive_number(&join(path, "max_cost_per_hour"), v)
                .map(Some),
            None => Some(None),
        };
        let salt: Box<str> = match map.get("salt") {
            Some(v) => self.string(&join(path, "salt"), v)?.into(),
            None => format!("{flag_salt}/shadow").into(),
        };
        let variant = variant?;
        if !variants[variant].ai {
            return None;
        }
        Some(Shadow {
            variant,
            milli_percent: milli_percent?,
            hasher: SaltedHasher::new(&salt),
            salt,
            cap: cap?.map(|limit| Budget {
                id: Arc::from("shadow"),
                key: Arc::from(format!("{flag}\u{1f}\u{1f}shadow")),
                flag: Some(Arc::from(flag)),
                per: None,
                measure: Measure::Cost,
                limit,
                window: 3_600_000,
                action: BudgetAction::SkipShadow,
            }),
        })
    }

    /// A positive integer of at most `max`.
    fn positive_integer(&mut self, path: &str, value: &Value, max: u64) -> Option<u64> {
        match value.as_u64() {
            Some(n) if n >= 1 && n <= max => Some(n),
            Some(n) => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!("must be from 1 to {max}, found {n}"),
                );
                None
            }
            None => {
                self.report(
                    path,
                    ProblemKind::WrongType,
                    format!("expected a positive integer, found {}", json_type(value)),
                );
                None
            }
        }
    }

    /// The payload fields the runtime reads: validated here so that a typo'd price or a
    /// string timeout is a load error, not a silently ignored setting.
    fn variant_runtime(&mut self, path: &str, payload: &Value, variant: &mut Variant) {
        let Value::Object(map) = payload else {
            return;
        };
        if let Some(v) = map.get("ai") {
            variant.ai = self.boolean(&join(path, "ai"), v).unwrap_or(true);
        }
        if let Some(v) = map.get("timeout_ms") {
            variant.timeout_ms =
                self.positive_integer(&join(path, "timeout_ms"), v, MAX_TIMEOUT_MS);
        }
        if let Some(v) = map.get("max_tokens") {
            variant.max_tokens =
                self.positive_integer(&join(path, "max_tokens"), v, u32::MAX as u64);
        }
        if let Some(v) = map.get("max_input_tokens") {
            variant.max_input_tokens =
                self.positive_integer(&join(path, "max_input_tokens"), v, u32::MAX as u64);
        }
        if let Some(Value::String(model)) = map.get("model") {
            variant.model = Some(Arc::from(model.as_str()));
        }
        for (key, slot) in [
            (
                "cost_per_1k_input_tokens",
                &mut variant.cost_per_1k_input_tokens,
            ),
            (
                "cost_per_1k_output_tokens",
                &mut variant.cost_per_1k_output_tokens,
            ),
        ] {
            if let Some(v) = map.get(key) {
                let field = join(path, key);
                match v.as_f64() {
                    Some(price) if price >= 0.0 && price.is_finite() => *slot = Some(price),
                    Some(price) => self.report(
                        &field,
                        ProblemKind::InvalidValue,
                        format!("a price must be 0 or more, found {price}"),
                    ),
                    None => self.report(
                        &field,
                        ProblemKind::WrongType,
                        format!("expected a number, found {}", json_type(v)),
                    ),
                }
            }
        }
    }

    fn fallback(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
    ) -> Vec<usize> {
        let Value::Array(items) = value else {
            self.report(
                path,
                ProblemKind::WrongType,
                format!(
                    "expected an array of variant ids, found {}",
                    json_type(value)
                ),
            );
            return Vec::new();
        };
        if items.len() > MAX_FALLBACK_STEPS {
            self.report(
                path,
                ProblemKind::InvalidValue,
                format!(
                    "at most {MAX_FALLBACK_STEPS} fallback steps, found {}",
                    items.len()
                ),
            );
        }
        let mut out: Vec<usize> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = index(path, i);
            if let Some(v) = self.variant_ref(&item_path, item, variants, flag) {
                if out.contains(&v) {
                    self.report(
                        &item_path,
                        ProblemKind::InvalidValue,
                        format!("variant \"{}\" is already in the fallback list (a chain tries each variant once)", variants.ids[v]),
                    );
                } else {
                    out.push(v);
                }
            }
        }
        out
    }

    fn guardrails(
        &mut self,
        path: &str,
        value: &Value,
        variants: &[Variant],
        fallback: &[usize],
        rules: &[Rule],
        flag: &str,
    ) -> Vec<Guardrail> {
        let Value::Array(items) = value else {
            self.report(
                path,
                ProblemKind::WrongType,
                format!(
                    "expected an array of guardrails, found {}",
                    json_type(value)
                ),
            );
            return Vec::new();
        };
        let names = VariantNames {
            ids: variants.iter().map(|v| &*v.id).collect(),
        };
        let mut out: Vec<Guardrail> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = index(path, i);
            let Some(g) = self.guardrail(&item_path, item, variants, &names, fallback, rules, flag)
            else {
                continue;
            };
            if let Some(first) = out.iter().position(|other| other.id == g.id) {
                self.report(
                    &item_path,
                    ProblemKind::DuplicateGuardrailId,
                    format!("guardrail id \"{}\" is already used by guardrails[{first}] (give each an \"id\")", g.id),
                );
                continue;
            }
            out.push(g);
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn guardrail(
        &mut self,
        path: &str,
        value: &Value,
        variants: &[Variant],
        names: &VariantNames<'_>,
        fallback: &[usize],
        rules: &[Rule],
        flag: &str,
    ) -> Option<Guardrail> {
        let map = self.object(path, value)?;
        self.check_fields(
            path,
            map,
            &[
                "id",
                "metric",
                "max",
                "min",
                "window",
                "min_samples",
                "action",
                "cooldown",
                "probe_percent",
                "variants",
            ],
            &[],
        );
        let metric_text = self
            .required(path, map, "metric")
            .and_then(|v| self.string(&join(path, "metric"), v));
        let metric = metric_text.and_then(|text| {
            let parsed = Metric::parse(text);
            if parsed.is_none() {
                let all: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
                let hint = closest(text, &all)
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                self.report(
                    &join(path, "metric"),
                    ProblemKind::InvalidValue,
                    format!(
                        "unknown metric \"{text}\"{hint}; expected one of: {}",
                        all.join(", ")
                    ),
                );
            }
            parsed
        });
        let id: Arc<str> = match map.get("id") {
            Some(v) => Arc::from(self.non_empty_string(&join(path, "id"), v)?),
            None => Arc::from(metric_text.unwrap_or("guardrail")),
        };
        let metric = metric?;
        let (wanted, unwanted) = if metric.is_floor() {
            ("min", "max")
        } else {
            ("max", "min")
        };
        if map.contains_key(unwanted) {
            self.report(
                &join(path, unwanted),
                ProblemKind::InvalidValue,
                format!(
                    "metric \"{}\" takes \"{wanted}\", not \"{unwanted}\"",
                    metric.as_str()
                ),
            );
        }
        let threshold_path = join(path, wanted);
        let threshold = self
            .required(path, map, wanted)
            .and_then(|v| self.number(&threshold_path, v));
        let threshold = threshold.and_then(|t| {
            let ok = match metric {
                Metric::ErrorRate => (0.0..1.0).contains(&t),
                _ => t >= 0.0 && t.is_finite(),
            };
            if !ok {
                let range = if metric == Metric::ErrorRate {
                    "a rate from 0 up to (not including) 1"
                } else {
                    "0 or more"
                };
                self.report(
                    &threshold_path,
                    ProblemKind::InvalidValue,
                    format!("must be {range}, found {t}"),
                );
            }
            ok.then_some(t)
        });
        let window = match map.get("window") {
            Some(v) => self
                .duration(&join(path, "window"), v)
                .filter(|&ms| self.at_least_a_second(&join(path, "window"), ms)),
            None => Some(guardrail::DEFAULT_WINDOW),
        };
        let cooldown = match map.get("cooldown") {
            Some(v) => self
                .duration(&join(path, "cooldown"), v)
                .filter(|&ms| self.at_least_a_second(&join(path, "cooldown"), ms)),
            None => Some(guardrail::DEFAULT_COOLDOWN),
        };
        let min_samples = match map.get("min_samples") {
            Some(v) => self.positive_integer(&join(path, "min_samples"), v, 1_000_000),
            None => Some(guardrail::DEFAULT_MIN_SAMPLES),
        };
        let probe_share = match map.get("probe_percent") {
            Some(v) => self.percent(&join(path, "probe_percent"), v, false),
            None => Some(guardrail::DEFAULT_PROBE_PERCENT * 1000),
        };
        let action_path = join(path, "action");
        let action_text = self
            .required(path, map, "action")
            .and_then(|v| self.string(&action_path, v));
        let action = action_text.and_then(|text| {
            let parsed = GuardAction::parse(text);
            if parsed.is_none() {
                let all: Vec<&str> = GuardAction::ALL.iter().map(|a| a.as_str()).collect();
                self.report(
                    &action_path,
                    ProblemKind::InvalidValue,
                    format!(
                        "unknown action \"{text}\"; expected one of: {}",
                        all.join(", ")
                    ),
                );
            }
            parsed
        });
        let watched: Vec<usize> = match map.get("variants") {
            Some(v) => {
                let list_path = join(path, "variants");
                match v {
                    Value::Array(items) if !items.is_empty() => items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| {
                            self.variant_ref(&index(&list_path, i), item, names, flag)
                        })
                        .collect(),
                    other => {
                        self.report(
                            &list_path,
                            ProblemKind::WrongType,
                            format!(
                                "expected a non-empty array of variant ids, found {}",
                                json_type(other)
                            ),
                        );
                        Vec::new()
                    }
                }
            }
            None => (0..variants.len()).filter(|&v| variants[v].ai).collect(),
        };
        let action = action?;
        match action {
            GuardAction::Fallback if fallback.is_empty() => {
                self.report(
                    &action_path,
                    ProblemKind::InvalidValue,
                    "action \"fallback\" needs the flag's \"fallback\" list",
                );
            }
            GuardAction::Halt | GuardAction::Rollback => {
                let ramps_watched = rules.iter().any(
                    |r| matches!(&r.action, Action::Ramp(ramp) if watched.contains(&ramp.variant)),
                );
                if !ramps_watched {
                    self.report(
                        &action_path,
                        ProblemKind::InvalidValue,
                        format!(
                            "action \"{}\" needs a ramp rule whose variant this guardrail watches",
                            action.as_str()
                        ),
                    );
                }
            }
            _ => {}
        }
        Some(Guardrail {
            id,
            metric,
            threshold: threshold?,
            window: window?,
            min_samples: min_samples?,
            action,
            cooldown: cooldown?,
            probe_share: probe_share?,
            variants: watched,
        })
    }

    fn at_least_a_second(&mut self, path: &str, ms: Millis) -> bool {
        if ms < 1000 {
            self.report(path, ProblemKind::InvalidValue, "must be at least 1s");
            return false;
        }
        true
    }

    fn rules(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
        segments: &[&str],
    ) -> Vec<Rule> {
        let Value::Array(items) = value else {
            self.report(
                path,
                ProblemKind::WrongType,
                format!("expected an array of rules, found {}", json_type(value)),
            );
            return Vec::new();
        };
        let mut seen_ids: FxHashMap<String, usize> = FxHashMap::default();
        let mut rules = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let rule_path = index(path, i);
            let Some(rule) = self.rule(&rule_path, i, item, variants, flag, segments) else {
                continue;
            };
            if let Some(first) = seen_ids.insert(rule.id.to_string(), i) {
                self.report(
                    &join(&rule_path, "id"),
                    ProblemKind::DuplicateRuleId,
                    format!("rule id \"{}\" is already used by rules[{first}]", rule.id),
                );
            }
            rules.push(rule);
        }
        rules
    }

    fn rule(
        &mut self,
        path: &str,
        position: usize,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
        segments: &[&str],
    ) -> Option<Rule> {
        let map = self.object(path, value)?;
        self.check_fields(
            path,
            map,
            &[
                "id",
                "description",
                "when",
                "serve",
                "split",
                "ramp",
                "bucket_by",
                "salt",
            ],
            &[],
        );
        let id: Arc<str> = match map.get("id") {
            Some(v) => Arc::from(self.non_empty_string(&join(path, "id"), v).unwrap_or("")),
            // Unnamed rules are named by position, the same way error paths name them.
            None => Arc::from(format!("rules[{position}]")),
        };
        let description = self.optional_string(path, map, "description");
        let when = match map.get("when") {
            Some(v) => Some(self.condition(&join(path, "when"), v, segments)?),
            None => None,
        };
        let actions: Vec<&str> = ["serve", "split", "ramp"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect();
        let action = match actions.as_slice() {
            ["serve"] => Action::Serve(self.variant_ref(
                &join(path, "serve"),
                &map["serve"],
                variants,
                flag,
            )?),
            ["split"] => {
                Action::Split(self.split(&join(path, "split"), &map["split"], variants, flag)?)
            }
            ["ramp"] => {
                Action::Ramp(self.ramp(&join(path, "ramp"), &map["ramp"], variants, flag)?)
            }
            [] => {
                self.report(
                    path,
                    ProblemKind::MissingField,
                    "a rule needs one of \"serve\", \"split\" or \"ramp\"",
                );
                return None;
            }
            _ => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!(
                        "a rule has exactly one of serve/split/ramp, found {}",
                        actions.join(", ")
                    ),
                );
                return None;
            }
        };
        let is_bucketed = !matches!(action, Action::Serve(_));
        let mut bucket_by = None;
        let mut salt = None;
        for key in ["bucket_by", "salt"] {
            let Some(v) = map.get(key) else { continue };
            let field_path = join(path, key);
            if !is_bucketed {
                self.report(
                    &field_path,
                    ProblemKind::InvalidValue,
                    format!("\"{key}\" only applies to rules with a split or a ramp"),
                );
                continue;
            }
            if key == "bucket_by" {
                bucket_by = self.non_empty_string(&field_path, v).map(Box::from);
            } else {
                salt = self.string(&field_path, v).map(Box::from);
            }
        }
        Some(Rule {
            id,
            description,
            when,
            action,
            bucket_by,
            salt,
            // Filled in by `Loader::flag` once the flag's own salt is known.
            hasher: SaltedHasher::default(),
        })
    }

    /// A percentage as thousandths of a percent, or `None` (reported) when out of range or
    /// finer than 0.001 %.
    fn percent(&mut self, path: &str, value: &Value, allow_zero: bool) -> Option<u32> {
        let Some(p) = value.as_f64() else {
            self.report(
                path,
                ProblemKind::WrongType,
                format!("expected a number of percent, found {}", json_type(value)),
            );
            return None;
        };
        let lower_ok = if allow_zero { p >= 0.0 } else { p > 0.0 };
        if !lower_ok || p > 100.0 {
            let range = if allow_zero {
                "0 to 100"
            } else {
                "above 0 and at most 100"
            };
            self.report(
                path,
                ProblemKind::InvalidValue,
                format!("percent must be {range}, found {p}"),
            );
            return None;
        }
        if decimals_of(value).is_none_or(|d| d > 3) {
            self.report(
                path,
                ProblemKind::PercentPrecision,
                format!("{p} % is finer than the 0.001 % resolution of bucketing"),
            );
            return None;
        }
        let rounded = (p * 1000.0).round();
        Some(rounded as u32)
    }

    fn split(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
    ) -> Option<Split> {
        let Value::Array(items) = value else {
            self.report(
                path,
                ProblemKind::WrongType,
                format!(
                    "expected an array of {{\"variant\", \"weight\" | \"percent\"}}, found {}",
                    json_type(value)
                ),
            );
            return None;
        };
        if items.is_empty() {
            self.report(
                path,
                ProblemKind::InvalidValue,
                "a split needs at least one variant",
            );
            return None;
        }
        let mut uses_percent = None;
        let mut entries = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let entry_path = index(path, i);
            let Some(map) = self.object(&entry_path, item) else {
                ok = false;
                continue;
            };
            self.check_fields(&entry_path, map, &["variant", "weight", "percent"], &[]);
            let variant = self
                .required(&entry_path, map, "variant")
                .and_then(|v| self.variant_ref(&join(&entry_path, "variant"), v, variants, flag));
            let weight = match (map.get("weight"), map.get("percent")) {
                (Some(w), None) => {
                    if uses_percent == Some(true) {
                        self.report(
                            &entry_path,
                            ProblemKind::InvalidWeights,
                            "mixes \"weight\" and \"percent\" in one split",
                        );
                    }
                    uses_percent = Some(false);
                    match w.as_u64() {
                        Some(n) if n <= u64::from(u32::MAX) => Some(n as u32),
                        _ => {
                            self.report(
                                &join(&entry_path, "weight"),
                                ProblemKind::InvalidValue,
                                format!(
                                    "a weight is a whole number from 0 to {}, found {w}",
                                    u32::MAX
                                ),
                            );
                            None
                        }
                    }
                }
                (None, Some(p)) => {
                    if uses_percent == Some(false) {
                        self.report(
                            &entry_path,
                            ProblemKind::InvalidWeights,
                            "mixes \"weight\" and \"percent\" in one split",
                        );
                    }
                    uses_percent = Some(true);
                    self.percent(&join(&entry_path, "percent"), p, true)
                }
                (Some(_), Some(_)) => {
                    self.report(
                        &entry_path,
                        ProblemKind::InvalidValue,
                        "give either \"weight\" or \"percent\", not both",
                    );
                    None
                }
                (None, None) => {
                    self.report(
                        &entry_path,
                        ProblemKind::MissingField,
                        "each split entry needs a \"weight\" or a \"percent\"",
                    );
                    None
                }
            };
            match (variant, weight) {
                (Some(v), Some(w)) => {
                    if entries.iter().any(|(_, existing)| *existing == v) {
                        self.report(
                            &join(&entry_path, "variant"),
                            ProblemKind::InvalidValue,
                            format!(
                                "variant \"{}\" appears twice in this split",
                                variants.ids[v]
                            ),
                        );
                        ok = false;
                    }
                    entries.push((w, v));
                }
                _ => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let total: u64 = entries.iter().map(|(w, _)| u64::from(*w)).sum();
        if uses_percent == Some(true) && total != u64::from(PERCENT_TOTAL) {
            self.report(
                path,
                ProblemKind::InvalidWeights,
                format!(
                    "percentages add up to {} %, not 100 %",
                    total as f64 / 1000.0
                ),
            );
            return None;
        }
        if total == 0 || total > u64::from(u32::MAX) {
            self.report(
                path,
                ProblemKind::InvalidWeights,
                format!(
                    "weights must add up to between 1 and {}, found {total}",
                    u32::MAX
                ),
            );
            return None;
        }
        let mut upper = 0u32;
        let ranges = entries
            .into_iter()
            .map(|(weight, variant)| {
                upper += weight;
                (upper, variant)
            })
            .collect();
        Some(Split {
            ranges,
            total: total as u32,
        })
    }

    fn ramp(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
    ) -> Option<Ramp> {
        let map = self.object(path, value)?;
        self.check_fields(
            path,
            map,
            &[
                "variant",
                "baseline",
                "start",
                "steps",
                "paused_at",
                "rolled_back",
            ],
            &[],
        );
        let variant = self
            .required(path, map, "variant")
            .and_then(|v| self.variant_ref(&join(path, "variant"), v, variants, flag));
        let baseline = match map.get("baseline") {
            Some(v) => {
                let b = self.variant_ref(&join(path, "baseline"), v, variants, flag);
                if b.is_some() && b == variant {
                    self.report(
                        &join(path, "baseline"),
                        ProblemKind::InvalidValue,
                        "the baseline must differ from the ramped variant",
                    );
                }
                b
            }
            None => None,
        };
        let start = self
            .required(path, map, "start")
            .and_then(|v| self.timestamp(&join(path, "start"), v));
        let paused_at = map
            .get("paused_at")
            .and_then(|v| self.timestamp(&join(path, "paused_at"), v));
        let rolled_back = map
            .get("rolled_back")
            .and_then(|v| self.boolean(&join(path, "rolled_back"), v))
            .unwrap_or(false);
        let steps_path = join(path, "steps");
        let steps_value = self.required(path, map, "steps")?;
        let Value::Array(items) = steps_value else {
            self.report(
                &steps_path,
                ProblemKind::WrongType,
                "expected an array of {\"percent\", \"hold\"}",
            );
            return None;
        };
        if items.is_empty() {
            self.report(
                &steps_path,
                ProblemKind::InvalidValue,
                "a ramp needs at least one step",
            );
            return None;
        }
        let mut steps = Vec::with_capacity(items.len());
        let mut begins = start.unwrap_or(0);
        let mut previous: Option<u32> = None;
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let step_path = index(&steps_path, i);
            let Some(step) = self.object(&step_path, item) else {
                ok = false;
                continue;
            };
            self.check_fields(&step_path, step, &["percent", "hold"], &[]);
            let milli_percent = self
                .required(&step_path, step, "percent")
                .and_then(|v| self.percent(&join(&step_path, "percent"), v, false));
            let is_last = i + 1 == items.len();
            let hold = match step.get("hold") {
                Some(v) => {
                    let hold = self.duration(&join(&step_path, "hold"), v);
                    if hold == Some(0) {
                        self.report(
                            &join(&step_path, "hold"),
                            ProblemKind::InvalidDuration,
                            "a hold must be longer than 0",
                        );
                    }
                    hold
                }
                None if is_last => None,
                None => {
                    self.report(
                        &join(&step_path, "hold"),
                        ProblemKind::MissingField,
                        "every step but the last needs a \"hold\" (how long it lasts)",
                    );
                    ok = false;
                    None
                }
            };
            let Some(milli_percent) = milli_percent else {
                ok = false;
                continue;
            };
            if let Some(prev) = previous {
                if milli_percent <= prev {
                    self.report(
                        &join(&step_path, "percent"),
                        ProblemKind::RampNotIncreasing,
                        format!(
                            "ramp steps must strictly increase: {} % follows {} %",
                            milli_percent as f64 / 1000.0,
                            prev as f64 / 1000.0
                        ),
                    );
                    ok = false;
                }
            }
            previous = Some(milli_percent);
            steps.push(RampStep {
                milli_percent,
                hold,
                begins,
            });
            begins = begins.saturating_add(hold.unwrap_or(0));
        }
        if !ok {
            return None;
        }
        Some(Ramp {
            variant: variant?,
            baseline,
            start: start?,
            steps,
            paused_at,
            rolled_back,
        })
    }
}

/// How many decimals the shortest text of a JSON number has (`12.345` → 3, `1e-5` → 5).
fn decimals_of(value: &Value) -> Option<i64> {
    let text = value.as_number()?.to_string();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text.as_str(), 0),
    };
    let fraction = mantissa
        .split_once('.')
        .map_or("", |(_, f)| f.trim_end_matches('0'));
    Some((fraction.len() as i64 - exponent).max(0))
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

/// The closest candidate by edit distance, when it is close enough to be a likely typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b_chars: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b_chars.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b_chars.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b_chars.len()]
}

// The constructors of `Document` live here, with the loader they call: the document layer
// does not import the layer above it.
impl Document {
    /// Parses, validates and compiles a document from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Document> {
        from_slice(bytes)
    }

    /// Parses, validates and compiles a document from JSON text.
    pub fn from_json(text: &str) -> Result<Document> {
        from_slice(text.as_bytes())
    }

    /// Validates and compiles an already-parsed JSON value.
    pub fn from_value(value: serde_json::Value) -> Result<Document> {
        from_value(value)
    }
}
