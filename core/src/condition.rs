//! Targeting conditions: compiled operators and how they match context attributes.
//!
//! Matching is strictly typed and total: a missing attribute, or one whose type the operator
//! cannot use, makes the condition false whatever the operator (`ne` and `not_in` included);
//! only `not` inverts. Nothing here allocates on the match path except reading a list
//! attribute that a binding had to convert.

use std::cmp::Ordering;

use regex::Regex;
use rustc_hash::FxHashSet;
use serde_json::json;

use crate::context::{Attr, Context};
use crate::time::{parse_timestamp, Millis};
use crate::trace::Tracer;

/// A compiled condition tree.
#[derive(Debug)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    /// A reference to a segment, by index into the document's segments.
    Segment(usize),
    Test(Test),
}

/// One `attr op value` test.
#[derive(Debug)]
pub struct Test {
    pub attr: Box<str>,
    pub op: Op,
}

/// A scalar operand of `eq` / `ne`.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(Box<str>),
    Num(f64),
    Bool(bool),
}

/// The operand of `in` / `not_in`.
#[derive(Debug, Default)]
pub struct ValueSet {
    pub strings: FxHashSet<Box<str>>,
    pub numbers: Vec<f64>,
    pub bools: Vec<bool>,
}

#[derive(Debug)]
pub enum Op {
    Eq(Scalar),
    Ne(Scalar),
    In(ValueSet),
    NotIn(ValueSet),
    Contains(Vec<Box<str>>),
    StartsWith(Vec<Box<str>>),
    EndsWith(Vec<Box<str>>),
    Matches(Box<Regex>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Semver(SemverOp, semver::Version),
    Before(Millis),
    After(Millis),
    Exists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemverOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// Every operator name the document accepts, in documentation order.
pub const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "gt",
    "gte",
    "lt",
    "lte",
    "semver_eq",
    "semver_ne",
    "semver_gt",
    "semver_gte",
    "semver_lt",
    "semver_lte",
    "before",
    "after",
    "exists",
];

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Eq(_) => "eq",
            Op::Ne(_) => "ne",
            Op::In(_) => "in",
            Op::NotIn(_) => "not_in",
            Op::Contains(_) => "contains",
            Op::StartsWith(_) => "starts_with",
            Op::EndsWith(_) => "ends_with",
            Op::Matches(_) => "matches",
            Op::Gt(_) => "gt",
            Op::Gte(_) => "gte",
            Op::Lt(_) => "lt",
            Op::Lte(_) => "lte",
            Op::Semver(SemverOp::Eq, _) => "semver_eq",
            Op::Semver(SemverOp::Ne, _) => "semver_ne",
            Op::Semver(SemverOp::Gt, _) => "semver_gt",
            Op::Semver(SemverOp::Gte, _) => "semver_gte",
            Op::Semver(SemverOp::Lt, _) => "semver_lt",
            Op::Semver(SemverOp::Lte, _) => "semver_lte",
            Op::Before(_) => "before",
            Op::After(_) => "after",
            Op::Exists => "exists",
        }
    }
}

/// Parses a version leniently on the context side: an optional leading `v`, and missing minor or
/// patch numbers read as 0 (`"2"` is 2.0.0, `"v1.4"` is 1.4.0).
pub fn parse_version(text: &str) -> Option<semver::Version> {
    let text = text.strip_prefix('v').unwrap_or(text);
    if let Ok(version) = semver::Version::parse(text) {
        return Some(version);
    }
    let core_end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, suffix) = text.split_at(core_end);
    let parts = core.split('.').count();
    if parts == 0 || parts > 2 {
        return None;
    }
    let padded = format!("{core}{}{suffix}", ".0".repeat(3 - parts));
    semver::Version::parse(&padded).ok()
}

fn numeric(attr: &Attr<'_>) -> Option<f64> {
    match attr {
        Attr::Int(i) => Some(*i as f64),
        Attr::Float(f) if !f.is_nan() => Some(*f),
        _ => None,
    }
}

fn scalar_eq(attr: &Attr<'_>, scalar: &Scalar) -> Option<bool> {
    match (attr, scalar) {
        (Attr::Str(s), Scalar::Str(v)) => Some(*s == &**v),
        (Attr::Bool(b), Scalar::Bool(v)) => Some(b == v),
        (Attr::Int(_) | Attr::Float(_), Scalar::Num(v)) => numeric(attr).map(|n| n == *v),
        _ => None,
    }
}

fn set_contains(attr: &Attr<'_>, set: &ValueSet) -> Option<bool> {
    match attr {
        Attr::Str(s) => Some(set.strings.contains(*s)),
        Attr::Bool(b) => Some(set.bools.contains(b)),
        Attr::Int(_) | Attr::Float(_) => numeric(attr).map(|n| set.numbers.contains(&n)),
        // A list attribute is in the set when any of its items is.
        Attr::List(items) => Some(items.iter().any(|item| set.strings.contains(&**item))),
        _ => None,
    }
}

fn timestamp_of(attr: &Attr<'_>) -> Option<Millis> {
    match attr {
        Attr::Str(s) => parse_timestamp(s),
        // Numbers are Unix seconds.
        Attr::Int(i) => i.checked_mul(1000),
        Attr::Float(f) if f.is_finite() => Some((f * 1000.0) as Millis),
        _ => None,
    }
}

impl Op {
    /// `Some(result)` when the attribute has a type the operator can use, `None` otherwise.
    #[inline]
    fn apply(&self, attr: &Attr<'_>) -> Option<bool> {
        match self {
            Op::Exists => Some(!matches!(attr, Attr::Missing)),
            Op::Eq(v) => scalar_eq(attr, v),
            Op::Ne(v) => scalar_eq(attr, v).map(|eq| !eq),
            Op::In(set) => set_contains(attr, set),
            Op::NotIn(set) => set_contains(attr, set).map(|found| !found),
            Op::Contains(needles) => match attr {
                Attr::Str(s) => Some(needles.iter().any(|n| s.contains(&**n))),
                Attr::List(items) => Some(
                    needles
                        .iter()
                        .any(|n| items.iter().any(|item| **item == **n)),
                ),
                _ => None,
            },
            Op::StartsWith(prefixes) => match attr {
                Attr::Str(s) => Some(prefixes.iter().any(|p| s.starts_with(&**p))),
                _ => None,
            },
            Op::EndsWith(suffixes) => match attr {
                Attr::Str(s) => Some(suffixes.iter().any(|p| s.ends_with(&**p))),
                _ => None,
            },
            Op::Matches(regex) => match attr {
                Attr::Str(s) => Some(regex.is_match(s)),
                _ => None,
            },
            Op::Gt(v) => numeric(attr).map(|n| n > *v),
            Op::Gte(v) => numeric(attr).map(|n| n >= *v),
            Op::Lt(v) => numeric(attr).map(|n| n < *v),
            Op::Lte(v) => numeric(attr).map(|n| n <= *v),
            Op::Semver(op, v) => match attr {
                Attr::Str(s) => parse_version(s).map(|actual| {
                    let ord = actual.cmp_precedence(v);
                    match op {
                        SemverOp::Eq => ord == Ordering::Equal,
                        SemverOp::Ne => ord != Ordering::Equal,
                        SemverOp::Gt => ord == Ordering::Greater,
                        SemverOp::Gte => ord != Ordering::Less,
                        SemverOp::Lt => ord == Ordering::Less,
                        SemverOp::Lte => ord != Ordering::Greater,
                    }
                }),
                _ => None,
            },
            Op::Before(t) => timestamp_of(attr).map(|a| a < *t),
            Op::After(t) => timestamp_of(attr).map(|a| a > *t),
        }
    }
}

fn describe_attr(attr: &Attr<'_>) -> serde_json::Value {
    match attr {
        Attr::Missing => serde_json::Value::Null,
        Attr::Str(s) => json!(s),
        Attr::Int(i) => json!(i),
        Attr::Float(f) => json!(f),
        Attr::Bool(b) => json!(b),
        Attr::List(items) => json!(items.iter().map(|s| &**s).collect::<Vec<_>>()),
        Attr::Unsupported(name) => json!(format!("<{name}>")),
    }
}

impl Condition {
    /// Whether the context matches. `segments` are the document's compiled segments.
    #[inline]
    pub(crate) fn matches<C: Context + ?Sized, T: Tracer>(
        &self,
        ctx: &C,
        segments: &[Segment],
        trace: &mut T,
    ) -> bool {
        match self {
            Condition::All(items) => items.iter().all(|c| c.matches(ctx, segments, trace)),
            Condition::Any(items) => items.iter().any(|c| c.matches(ctx, segments, trace)),
            Condition::Not(inner) => !inner.matches(ctx, segments, trace),
            Condition::Segment(index) => {
                let Some(segment) = segments.get(*index) else {
                    return false;
                };
                let matched = segment.condition.matches(ctx, segments, trace);
                trace.note(|| json!({ "segment": &*segment.name, "matched": matched }));
                matched
            }
            Condition::Test(test) => {
                // Strings, the usual case, come without building an `Attr` in the context.
                let attr = match ctx.str_attr(&test.attr) {
                    Some(text) => Attr::Str(text),
                    None => ctx.attr(&test.attr),
                };
                let outcome = test.op.apply(&attr);
                trace.note(|| {
                    let mut note = json!({
                        "attr": &*test.attr,
                        "op": test.op.name(),
                        "actual": describe_attr(&attr),
                        "matched": outcome.unwrap_or(false),
                    });
                    if outcome.is_none() {
                        note["ignored"] = json!(match attr {
                            Attr::Missing => "attribute is missing".to_string(),
                            _ => format!(
                                "attribute has type {}, which `{}` cannot compare",
                                attr.type_name(),
                                test.op.name()
                            ),
                        });
                    }
                    note
                });
                outcome.unwrap_or(false)
            }
        }
    }

    /// Attribute names this condition reads, segments expanded (for lint and bindings).
    pub fn attributes<'a>(&'a self, segments: &'a [Segment], out: &mut Vec<&'a str>) {
        match self {
            Condition::All(items) | Condition::Any(items) => {
                items.iter().for_each(|c| c.attributes(segments, out))
            }
            Condition::Not(inner) => inner.attributes(segments, out),
            Condition::Segment(index) => {
                if let Some(segment) = segments.get(*index) {
                    segment.condition.attributes(segments, out);
                }
            }
            Condition::Test(test) => {
                if !out.contains(&&*test.attr) {
                    out.push(&test.attr);
                }
            }
        }
    }
}

/// A named, reusable condition.
#[derive(Debug)]
pub struct Segment {
    pub name: Box<str>,
    pub condition: Condition,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn lenient_versions() {
        assert_eq!(parse_version("v1.4"), semver::Version::parse("1.4.0").ok());
        assert_eq!(parse_version("2"), semver::Version::parse("2.0.0").ok());
        assert_eq!(
            parse_version("1.2-beta.1"),
            semver::Version::parse("1.2.0-beta.1").ok()
        );
        assert_eq!(parse_version("one"), None);
        assert_eq!(parse_version("1.2.3.4"), None);
    }

    #[test]
    fn wrong_types_never_match_even_negated_operators() {
        let ne = Op::Ne(Scalar::Str("x".into()));
        assert_eq!(ne.apply(&Attr::Missing), None);
        assert_eq!(ne.apply(&Attr::Int(3)), None);
        assert_eq!(ne.apply(&Attr::Str("y")), Some(true));
        let list = Attr::List(Cow::Owned(vec![
            Cow::Borrowed("beta"),
            Cow::Borrowed("staff"),
        ]));
        assert_eq!(Op::Contains(vec!["staff".into()]).apply(&list), Some(true));
        assert_eq!(Op::Contains(vec!["sta".into()]).apply(&list), Some(false));
        assert_eq!(Op::Gt(1.5).apply(&Attr::Int(2)), Some(true));
        assert_eq!(Op::Gt(1.5).apply(&Attr::Float(f64::NAN)), None);
        assert_eq!(Op::Exists.apply(&Attr::Unsupported("object")), Some(true));
    }
}
