//! Conditions (`when` and segment bodies): `attr`/`op`/`value` tests combined with `all`,
//! `any`, `not` and `segment` references, and the operands of each operator.

use regex::RegexBuilder;
use serde_json::Value;

use super::read::{index, Object};
use super::segments::SegmentNames;
use super::suggest::did_you_mean;
use super::{Loader, MAX_REGEX_COMPILED_BYTES, MAX_REGEX_LENGTH};
use crate::condition::{
    parse_version, Condition, NeedlePlace, Needles, Op, Scalar, SegmentRef, SemverOp, Test,
    ValueSet, MAX_COMPARED_BYTES, OPERATORS,
};
use crate::error::ProblemKind;

/// Every field a condition may have, whatever its shape.
const CONDITION_FIELDS: &[&str] = &["attr", "op", "value", "segment", "all", "any", "not"];

impl Loader {
    pub(super) fn condition(
        &mut self,
        path: &str,
        value: &Value,
        segments: &SegmentNames<'_>,
    ) -> Option<Condition> {
        let object = self.object(path, value)?;
        let shape = ["all", "any", "not", "segment", "attr"]
            .into_iter()
            .filter(|k| object.has(k))
            .collect::<Vec<_>>();
        match shape.as_slice() {
            [key @ ("all" | "any")] => {
                self.check_fields(&object, &[key], &[]);
                let list_path = object.path_of(key);
                let Value::Array(items) = &object.map[*key] else {
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
                let compiled: Vec<Condition> = compiled.into_iter().collect::<Option<_>>()?;
                Some(if *key == "all" {
                    Condition::All(compiled)
                } else {
                    Condition::Any(compiled)
                })
            }
            ["not"] => {
                self.check_fields(&object, &["not"], &[]);
                let inner =
                    self.required(&object, "not", |l, path, v| l.condition(path, v, segments))?;
                Some(Condition::Not(Box::new(inner)))
            }
            ["segment"] => {
                self.check_fields(&object, &["segment"], &[]);
                self.required(&object, "segment", |l, path, v| {
                    let name = l.string(path, v)?;
                    let found = segments.get(name).copied();
                    if found.is_none() {
                        l.report(
                            path,
                            ProblemKind::UnknownSegment,
                            format!("no segment named \"{name}\""),
                        );
                    }
                    found
                })
                .map(|index| Condition::Segment(SegmentRef { index, memo: None }))
            }
            ["attr"] => {
                self.check_fields(&object, &["attr", "op", "value"], &[]);
                self.test(&object).map(Condition::Test)
            }
            [] => {
                // A typo of a shape key (`atr`, `segmnt`) says so, with a hint.
                let before = self.problems.len();
                self.check_fields(&object, CONDITION_FIELDS, &[]);
                if self.problems.len() > before {
                    return None;
                }
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

    fn test(&mut self, object: &Object<'_>) -> Option<Test> {
        let attr = self.required(object, "attr", Self::non_empty_string);
        let op_name = self.required(object, "op", Self::string)?;
        if !OPERATORS.contains(&op_name) {
            self.report(
                &object.path_of("op"),
                ProblemKind::UnknownOperator,
                format!(
                    "unknown operator \"{op_name}\"{}",
                    did_you_mean(op_name, OPERATORS)
                ),
            );
            return None;
        }
        let value_path = object.path_of("value");
        let value = object.get("value");
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
        let op = self.operand(op_name, &value_path, value)?;
        Some(Test {
            attr: attr?.into(),
            op,
        })
    }

    /// The compiled operator `op_name` with its operand `value`.
    fn operand(&mut self, op_name: &str, path: &str, value: &Value) -> Option<Op> {
        Some(match op_name {
            "eq" => Op::Eq(self.scalar(path, value)?),
            "ne" => Op::Ne(self.scalar(path, value)?),
            "in" => Op::In(self.value_set(path, value)?),
            "not_in" => Op::NotIn(self.value_set(path, value)?),
            "contains" => Op::Contains(self.needles(path, value, NeedlePlace::Anywhere)?),
            "starts_with" => Op::StartsWith(self.needles(path, value, NeedlePlace::Start)?),
            "ends_with" => Op::EndsWith(self.needles(path, value, NeedlePlace::End)?),
            "matches" => Op::Matches(Box::new(self.regex(path, value)?)),
            "gt" => Op::Gt(self.number(path, value)?),
            "gte" => Op::Gte(self.number(path, value)?),
            "lt" => Op::Lt(self.number(path, value)?),
            "lte" => Op::Lte(self.number(path, value)?),
            "before" => Op::Before(self.timestamp(path, value)?),
            "after" => Op::After(self.timestamp(path, value)?),
            semver_op => {
                let which = match semver_op {
                    "semver_eq" => SemverOp::Eq,
                    "semver_ne" => SemverOp::Ne,
                    "semver_gt" => SemverOp::Gt,
                    "semver_gte" => SemverOp::Gte,
                    "semver_lt" => SemverOp::Lt,
                    _ => SemverOp::Lte,
                };
                let text = self.string(path, value)?;
                let Some(version) = parse_version(text) else {
                    self.report(
                        path,
                        ProblemKind::InvalidSemver,
                        format!("\"{text}\" is not a semantic version (1.4.2, 2.0.0-beta.1)"),
                    );
                    return None;
                };
                Op::Semver(which, version)
            }
        })
    }

    /// The needles of `contains`, `starts_with` or `ends_with`, each comparable.
    fn needles(&mut self, path: &str, value: &Value, place: NeedlePlace) -> Option<Needles> {
        let list = self.strings(path, value)?;
        let mut ok = true;
        for (i, needle) in list.iter().enumerate() {
            let needle_path = match value {
                Value::Array(_) => index(path, i),
                _ => path.to_string(),
            };
            ok &= self.comparable(&needle_path, needle);
        }
        if !ok {
            return None;
        }
        match Needles::new(list, place) {
            Ok(needles) => Some(needles),
            Err(reason) => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!("too many needles: {reason}"),
                );
                None
            }
        }
    }

    /// A string operand no longer than a condition compares (a longer one could never match).
    fn comparable(&mut self, path: &str, text: &str) -> bool {
        if text.len() <= MAX_COMPARED_BYTES {
            return true;
        }
        self.report(
            path,
            ProblemKind::InvalidValue,
            format!(
                "is {} bytes; a condition compares at most {MAX_COMPARED_BYTES} bytes of a value, so it could never match",
                text.len()
            ),
        );
        false
    }

    fn scalar(&mut self, path: &str, value: &Value) -> Option<Scalar> {
        match value {
            Value::String(s) => self
                .comparable(path, s)
                .then(|| Scalar::Str(s.as_str().into())),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => n.as_f64().map(Scalar::Num),
            other => {
                self.wrong_type(path, "a string, number or boolean", other);
                None
            }
        }
    }

    fn value_set(&mut self, path: &str, value: &Value) -> Option<ValueSet> {
        let Value::Array(items) = value else {
            self.wrong_type(path, "an array", value);
            return None;
        };
        let mut set = ValueSet::default();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.scalar(&index(path, i), item) {
                Some(Scalar::Str(s)) => {
                    set.strings.insert(s);
                }
                Some(Scalar::Num(n)) => set.add_number(n),
                Some(Scalar::Bool(b)) => set.bools.push(b),
                None => ok = false,
            }
        }
        ok.then_some(set)
    }

    /// A string, or a non-empty array of strings (any of which may match).
    pub(super) fn strings(&mut self, path: &str, value: &Value) -> Option<Vec<Box<str>>> {
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
                self.wrong_type(path, "a string or a non-empty array of strings", other);
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
}
