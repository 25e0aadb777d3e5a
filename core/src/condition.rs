//! Targeting conditions: compiled operators and how they match context attributes.
//!
//! Matching is strictly typed and total: a missing attribute, or one whose type the operator
//! cannot use, makes the condition false whatever the operator (`ne` and `not_in` included);
//! only `not` inverts. Nothing here allocates on the match path except reading a list
//! attribute that a binding had to convert.
//!
//! The cost of one test is bounded whatever the context: a condition compares at most
//! [`MAX_COMPARED_BYTES`] of a string and [`MAX_COMPARED_ITEMS`] items of a list (a longer
//! value is not compared, like a value of the wrong type), and many needles of `contains`,
//! `starts_with` or `ends_with` are searched for in one pass of an Aho-Corasick automaton.

use std::cmp::Ordering;

use aho_corasick::{AhoCorasick, Anchored, Input, StartKind};
use regex::Regex;
use rustc_hash::FxHashSet;

use crate::context::{same_text, Attr, Context};
use crate::time::{parse_timestamp, Millis};
use crate::trace::{Actual, Step, Tracer};

/// Longest context string a condition compares, in bytes. A longer string is not compared by
/// any operator but `exists` (the test is false, as for a value of the wrong type), so that one
/// test never reads more than this of a request.
pub const MAX_COMPARED_BYTES: usize = 4096;
/// Most items of a list attribute a condition compares; a longer list is not compared.
pub(crate) const MAX_COMPARED_ITEMS: usize = 256;
/// From this many needles on, `contains`, `starts_with` and `ends_with` search with one
/// automaton instead of trying each needle.
const AUTOMATON_FROM_NEEDLES: usize = 8;

/// A compiled condition tree.
#[derive(Debug)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    /// A reference to a segment of the document.
    Segment(SegmentRef),
    Test(Test),
}

/// A reference to a segment: its index in the document's segments and, for a segment that
/// more than one place references, its slot in the per-evaluation [`SegmentMemo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRef {
    pub(crate) index: usize,
    pub(crate) memo: Option<u32>,
}

/// The segments already decided during one evaluation of one condition, so that a segment
/// referenced from several places (a diamond of segments) is evaluated once, not once per path.
/// Slots below 64 live in two words on the stack; only a document with more than 64 shared
/// segments spills to the heap.
#[derive(Debug, Default)]
pub(crate) struct SegmentMemo {
    known: u64,
    matched: u64,
    /// Slots from 64 on, two bits each (known, matched), grown on first use.
    spill: Vec<u64>,
}

impl SegmentMemo {
    #[inline]
    fn get(&self, slot: u32) -> Option<bool> {
        let slot = slot as usize;
        if slot < 64 {
            let bit = 1u64 << slot;
            return (self.known & bit != 0).then_some(self.matched & bit != 0);
        }
        let (word, bit) = ((slot - 64) / 32, ((slot - 64) % 32) * 2);
        let bits = self.spill.get(word).copied().unwrap_or(0) >> bit;
        (bits & 1 != 0).then_some(bits & 2 != 0)
    }

    #[inline]
    fn set(&mut self, slot: u32, matched: bool) {
        let slot = slot as usize;
        if slot < 64 {
            let bit = 1u64 << slot;
            self.known |= bit;
            if matched {
                self.matched |= bit;
            }
            return;
        }
        let (word, bit) = ((slot - 64) / 32, ((slot - 64) % 32) * 2);
        if self.spill.len() <= word {
            self.spill.resize(word + 1, 0);
        }
        self.spill[word] |= (1 | (u64::from(matched) << 1)) << bit;
    }
}

/// One `attr op value` test.
#[derive(Debug)]
pub struct Test {
    pub(crate) attr: Box<str>,
    pub(crate) op: Op,
}

impl Test {
    /// Whether the context's attribute passes this test (`false` when it cannot be compared).
    #[inline]
    fn matches<C: Context + ?Sized, T: Tracer>(&self, ctx: &C, trace: &mut T) -> bool {
        // Strings, the usual case, come without building an `Attr` in the context.
        let attr = match ctx.str_attr(&self.attr) {
            Some(text) => Attr::Str(text),
            None => ctx.attr(&self.attr),
        };
        let outcome = self.op.apply(&attr);
        trace.note(|| Step::Condition {
            attr: self.attr.to_string(),
            op: self.op.name(),
            actual: describe_attr(&attr),
            matched: outcome.unwrap_or(false),
            ignored: outcome.is_none().then(|| match attr {
                Attr::Missing => "attribute is missing".to_string(),
                _ if !within_bounds(&attr) => format!(
                    "attribute is longer than a condition compares ({MAX_COMPARED_BYTES} bytes, {MAX_COMPARED_ITEMS} items)"
                ),
                _ => format!(
                    "attribute has type {}, which `{}` cannot compare",
                    attr.type_name(),
                    self.op.name()
                ),
            }),
        });
        outcome.unwrap_or(false)
    }
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
    pub(crate) strings: FxHashSet<Box<str>>,
    /// Sorted (see [`ValueSet::add_number`]): looked up by binary search.
    numbers: Vec<f64>,
    pub(crate) bools: Vec<bool>,
}

impl ValueSet {
    /// Adds a number (`-0` is stored as `0`, which it equals).
    pub(crate) fn add_number(&mut self, n: f64) {
        let n = n + 0.0;
        if let Err(at) = self.numbers.binary_search_by(|x| x.total_cmp(&n)) {
            self.numbers.insert(at, n);
        }
    }

    fn has_number(&self, n: f64) -> bool {
        let n = n + 0.0;
        self.numbers.binary_search_by(|x| x.total_cmp(&n)).is_ok()
    }
}

#[derive(Debug)]
pub enum Op {
    Eq(Scalar),
    Ne(Scalar),
    In(ValueSet),
    NotIn(ValueSet),
    Contains(Needles),
    StartsWith(Needles),
    EndsWith(Needles),
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

/// Where a needle must be found in a string attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeedlePlace {
    Anywhere,
    Start,
    End,
}

/// The operand of `contains`, `starts_with` and `ends_with`: strings, any of which may match.
#[derive(Debug)]
pub struct Needles {
    list: Vec<Box<str>>,
    place: NeedlePlace,
    /// With many needles: one automaton over them all (over the reversed needles for `End`)
    /// and, for list attributes, the needles as a set.
    many: Option<Box<ManyNeedles>>,
}

#[derive(Debug)]
struct ManyNeedles {
    automaton: AhoCorasick,
    set: FxHashSet<Box<str>>,
    /// Bytes of the longest needle: all an anchored search at the end needs to look at.
    longest: usize,
}

impl Needles {
    /// Compiles needles for `place`; `Err` when the automaton cannot be built (its size bound).
    pub fn new(list: Vec<Box<str>>, place: NeedlePlace) -> Result<Needles, String> {
        let many = if list.len() >= AUTOMATON_FROM_NEEDLES {
            let patterns: Vec<Vec<u8>> = list
                .iter()
                .map(|needle| match place {
                    NeedlePlace::End => needle.bytes().rev().collect(),
                    _ => needle.as_bytes().to_vec(),
                })
                .collect();
            let start = match place {
                NeedlePlace::Anywhere => StartKind::Unanchored,
                NeedlePlace::Start | NeedlePlace::End => StartKind::Anchored,
            };
            let automaton = AhoCorasick::builder()
                .start_kind(start)
                .build(&patterns)
                .map_err(|err| err.to_string())?;
            Some(Box::new(ManyNeedles {
                automaton,
                set: list.iter().cloned().collect(),
                longest: list.iter().map(|n| n.len()).max().unwrap_or(0),
            }))
        } else {
            None
        };
        Ok(Needles { list, place, many })
    }

    /// The needles as written.
    pub fn as_slice(&self) -> &[Box<str>] {
        &self.list
    }

    /// Whether one needle is found in `text` at this operand's place.
    #[inline]
    fn found_in(&self, text: &str) -> bool {
        let Some(many) = &self.many else {
            return match self.place {
                NeedlePlace::Anywhere => self.list.iter().any(|n| text.contains(&**n)),
                NeedlePlace::Start => self.list.iter().any(|n| text.starts_with(&**n)),
                NeedlePlace::End => self.list.iter().any(|n| text.ends_with(&**n)),
            };
        };
        match self.place {
            NeedlePlace::Anywhere => many.automaton.is_match(text),
            NeedlePlace::Start => many
                .automaton
                .is_match(Input::new(text).anchored(Anchored::Yes)),
            NeedlePlace::End => {
                // A suffix is at most the longest needle: that tail of the text, reversed on
                // the stack (compared strings and needles are at most MAX_COMPARED_BYTES).
                let tail = &text.as_bytes()[text.len().saturating_sub(many.longest)..];
                let mut reversed = [0u8; MAX_COMPARED_BYTES];
                let Some(buffer) = reversed.get_mut(..tail.len()) else {
                    return false;
                };
                for (slot, byte) in buffer.iter_mut().zip(tail.iter().rev()) {
                    *slot = *byte;
                }
                many.automaton
                    .is_match(Input::new(&*buffer).anchored(Anchored::Yes))
            }
        }
    }

    /// Whether one item of a list equals one needle (`contains` on a list attribute).
    #[inline]
    fn equals_an_item(&self, items: &[std::borrow::Cow<'_, str>]) -> bool {
        match &self.many {
            Some(many) => items.iter().any(|item| many.set.contains(&**item)),
            None => self
                .list
                .iter()
                .any(|n| items.iter().any(|item| **item == **n)),
        }
    }
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
    pub(crate) fn name(&self) -> &'static str {
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
pub(crate) fn parse_version(text: &str) -> Option<semver::Version> {
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
        Attr::Int(_) | Attr::Float(_) => numeric(attr).map(|n| set.has_number(n)),
        // A list attribute is in the set when any of its items is.
        Attr::List(items) => Some(items.iter().any(|item| set.strings.contains(&**item))),
        _ => None,
    }
}

/// Whether a condition compares this value: strings of at most [`MAX_COMPARED_BYTES`], lists
/// of at most [`MAX_COMPARED_ITEMS`] such strings.
#[inline]
fn within_bounds(attr: &Attr<'_>) -> bool {
    match attr {
        Attr::Str(s) => s.len() <= MAX_COMPARED_BYTES,
        Attr::List(items) => {
            items.len() <= MAX_COMPARED_ITEMS
                && items.iter().all(|item| item.len() <= MAX_COMPARED_BYTES)
        }
        _ => true,
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
    #[inline(always)]
    fn apply(&self, attr: &Attr<'_>) -> Option<bool> {
        // The usual rule compares a string attribute with a string (`segment eq "internal"`):
        // decided here, inlined into the evaluation. Through the general match below it was a
        // call of ~55 instructions per test (callgrind, three-flag benchmark).
        if let (Op::Eq(Scalar::Str(value)) | Op::Ne(Scalar::Str(value)), Attr::Str(text)) =
            (self, attr)
        {
            if text.len() <= MAX_COMPARED_BYTES {
                return Some(same_text(text, value) == matches!(self, Op::Eq(_)));
            }
        }
        self.apply_general(attr)
    }

    /// [`Op::apply`] for every other operator and attribute type.
    #[inline(never)]
    fn apply_general(&self, attr: &Attr<'_>) -> Option<bool> {
        if !within_bounds(attr) {
            return matches!(self, Op::Exists).then_some(true);
        }
        match self {
            Op::Exists => Some(!matches!(attr, Attr::Missing)),
            Op::Eq(v) => scalar_eq(attr, v),
            Op::Ne(v) => scalar_eq(attr, v).map(|eq| !eq),
            Op::In(set) => set_contains(attr, set),
            Op::NotIn(set) => set_contains(attr, set).map(|found| !found),
            Op::Contains(needles) => match attr {
                Attr::Str(s) => Some(needles.found_in(s)),
                Attr::List(items) => Some(needles.equals_an_item(items)),
                _ => None,
            },
            Op::StartsWith(needles) | Op::EndsWith(needles) => match attr {
                Attr::Str(s) => Some(needles.found_in(s)),
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

fn describe_attr(attr: &Attr<'_>) -> Actual {
    match attr {
        Attr::Missing => Actual::Missing,
        Attr::Str(s) => Actual::Str(s.to_string()),
        Attr::Int(i) => Actual::Int(*i),
        Attr::Float(f) => Actual::Float(*f),
        Attr::Bool(b) => Actual::Bool(*b),
        Attr::List(items) => Actual::List(items.iter().map(|s| s.to_string()).collect()),
        Attr::Unsupported(name) => Actual::Unsupported(name),
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
        // A single test, the usual rule, needs no segment memo: building and dropping one (its
        // spill is a Vec) cost ~10 ns per evaluation in the scenario bench.
        if let Condition::Test(test) = self {
            return test.matches(ctx, trace);
        }
        let mut memo = SegmentMemo::default();
        self.eval(ctx, segments, &mut memo, trace)
    }

    fn eval<C: Context + ?Sized, T: Tracer>(
        &self,
        ctx: &C,
        segments: &[Segment],
        memo: &mut SegmentMemo,
        trace: &mut T,
    ) -> bool {
        match self {
            Condition::All(items) => items.iter().all(|c| c.eval(ctx, segments, memo, trace)),
            Condition::Any(items) => items.iter().any(|c| c.eval(ctx, segments, memo, trace)),
            Condition::Not(inner) => !inner.eval(ctx, segments, memo, trace),
            Condition::Segment(reference) => {
                let Some(segment) = segments.get(reference.index) else {
                    return false;
                };
                let known = reference.memo.and_then(|slot| memo.get(slot));
                let matched = match known {
                    Some(matched) => matched,
                    None => {
                        let matched = segment.condition.eval(ctx, segments, memo, trace);
                        if let Some(slot) = reference.memo {
                            memo.set(slot, matched);
                        }
                        matched
                    }
                };
                trace.note(|| Step::Segment {
                    segment: segment.name.to_string(),
                    matched,
                });
                matched
            }
            Condition::Test(test) => test.matches(ctx, trace),
        }
    }

    /// Attribute names this condition reads, segments expanded, each segment once (for lint
    /// and bindings).
    pub fn attributes<'a>(&'a self, segments: &'a [Segment], out: &mut Vec<&'a str>) {
        let mut seen = FxHashSet::default();
        let mut pending: Vec<&'a Condition> = vec![self];
        while let Some(condition) = pending.pop() {
            match condition {
                Condition::All(items) | Condition::Any(items) => pending.extend(items.iter().rev()),
                Condition::Not(inner) => pending.push(inner),
                Condition::Segment(reference) => {
                    if let Some(segment) = segments.get(reference.index) {
                        if seen.insert(reference.index) {
                            pending.push(&segment.condition);
                        }
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

    /// Calls `visit` on every segment reference of this condition (not following them).
    pub(crate) fn for_each_reference(&self, visit: &mut impl FnMut(&SegmentRef)) {
        match self {
            Condition::All(items) | Condition::Any(items) => {
                items.iter().for_each(|c| c.for_each_reference(visit))
            }
            Condition::Not(inner) => inner.for_each_reference(visit),
            Condition::Segment(reference) => visit(reference),
            Condition::Test(_) => {}
        }
    }

    /// [`Condition::for_each_reference`], able to change the reference.
    pub(crate) fn for_each_reference_mut(&mut self, visit: &mut impl FnMut(&mut SegmentRef)) {
        match self {
            Condition::All(items) | Condition::Any(items) => items
                .iter_mut()
                .for_each(|c| c.for_each_reference_mut(visit)),
            Condition::Not(inner) => inner.for_each_reference_mut(visit),
            Condition::Segment(reference) => visit(reference),
            Condition::Test(_) => {}
        }
    }

    /// Levels of conditions from this one down to its deepest test, a segment reference
    /// counting one level more than the segment's own depth (`depth_of`).
    pub(crate) fn depth(&self, depth_of: &impl Fn(usize) -> usize) -> usize {
        1 + match self {
            Condition::All(items) | Condition::Any(items) => {
                items.iter().map(|c| c.depth(depth_of)).max().unwrap_or(0)
            }
            Condition::Not(inner) => inner.depth(depth_of),
            Condition::Segment(reference) => depth_of(reference.index),
            Condition::Test(_) => 0,
        }
    }
}

/// A named, reusable condition.
#[derive(Debug)]
pub struct Segment {
    pub(crate) name: Box<str>,
    pub(crate) condition: Condition,
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
    fn the_string_fast_path_answers_as_the_general_path() {
        let at_bound = "a".repeat(MAX_COMPARED_BYTES);
        let past_bound = "a".repeat(MAX_COMPARED_BYTES + 1);
        let values = [
            "internal",
            "",
            "é",
            "tier-b-12",
            at_bound.as_str(),
            past_bound.as_str(),
        ];
        let attrs = [
            "internal",
            "external",
            "",
            "é",
            "e\u{301}",
            "tier-b-12",
            "tier_b-12",
            "tier-b-13",
            &at_bound,
            &past_bound,
        ];
        for value in values {
            for op in [
                Op::Eq(Scalar::Str(value.into())),
                Op::Ne(Scalar::Str(value.into())),
            ] {
                for text in attrs {
                    let attr = Attr::Str(text);
                    assert_eq!(
                        op.apply(&attr),
                        op.apply_general(&attr),
                        "{} {value:?} on {text:?}",
                        op.name()
                    );
                }
            }
        }
        // Past the bound nothing is compared, even against an equal operand.
        let eq = Op::Eq(Scalar::Str(past_bound.as_str().into()));
        assert_eq!(eq.apply(&Attr::Str(&past_bound)), None);
        assert_eq!(eq.apply(&Attr::Str(&at_bound)), Some(false));
        let eq = Op::Eq(Scalar::Str(at_bound.as_str().into()));
        assert_eq!(eq.apply(&Attr::Str(&at_bound)), Some(true));
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
        let contains =
            |n: &str| Op::Contains(Needles::new(vec![n.into()], NeedlePlace::Anywhere).unwrap());
        assert_eq!(contains("staff").apply(&list), Some(true));
        assert_eq!(contains("sta").apply(&list), Some(false));
        assert_eq!(Op::Gt(1.5).apply(&Attr::Int(2)), Some(true));
        assert_eq!(Op::Gt(1.5).apply(&Attr::Float(f64::NAN)), None);
        assert_eq!(Op::Exists.apply(&Attr::Unsupported("object")), Some(true));
    }

    fn needles(words: &[&str], place: NeedlePlace) -> Needles {
        Needles::new(words.iter().map(|w| Box::from(*w)).collect(), place).unwrap()
    }

    #[test]
    fn many_needles_match_exactly_like_few() {
        let words: Vec<String> = (0..40)
            .map(|i| format!("w{i}x"))
            .chain(["".into(), "é€".into()])
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        for place in [NeedlePlace::Anywhere, NeedlePlace::Start, NeedlePlace::End] {
            let automaton = needles(&words, place);
            assert!(automaton.many.is_some());
            for text in ["", "w3x", "aw39xb", "w17", "é€ab", "abé€", "xw0", "w12xend"] {
                for subset in [&words[..5], &words[5..], &words[..]] {
                    let few = needles(subset, place);
                    let many = needles(subset, place);
                    assert_eq!(
                        few.found_in(text),
                        few.list.iter().any(|n| match place {
                            NeedlePlace::Anywhere => text.contains(&**n),
                            NeedlePlace::Start => text.starts_with(&**n),
                            NeedlePlace::End => text.ends_with(&**n),
                        }),
                        "{place:?} {text:?}"
                    );
                    assert_eq!(
                        few.found_in(text),
                        many.found_in(text),
                        "{place:?} {text:?}"
                    );
                }
                // The 42 needles through the automaton against each tried alone.
                let alone = words.iter().any(|w| needles(&[w], place).found_in(text));
                assert_eq!(automaton.found_in(text), alone, "{place:?} {text:?}");
            }
        }
    }

    #[test]
    fn values_longer_than_the_bounds_are_not_compared() {
        let long = "a".repeat(MAX_COMPARED_BYTES + 1);
        let at_bound = "a".repeat(MAX_COMPARED_BYTES);
        let contains = Op::Contains(needles(&["a"], NeedlePlace::Anywhere));
        assert_eq!(contains.apply(&Attr::Str(&at_bound)), Some(true));
        assert_eq!(contains.apply(&Attr::Str(&long)), None);
        assert_eq!(
            Op::Ne(Scalar::Str("b".into())).apply(&Attr::Str(&long)),
            None
        );
        assert_eq!(Op::Exists.apply(&Attr::Str(&long)), Some(true));
        let items: Vec<Cow<'_, str>> = (0..=MAX_COMPARED_ITEMS)
            .map(|_| Cow::Borrowed("a"))
            .collect();
        assert_eq!(contains.apply(&Attr::List(Cow::Owned(items))), None);
    }

    #[test]
    fn number_sets_ignore_the_sign_of_zero() {
        let mut set = ValueSet::default();
        for n in [3.0, -0.0, 1.5, 3.0] {
            set.add_number(n);
        }
        assert!(set.has_number(0.0) && set.has_number(-0.0) && set.has_number(1.5));
        assert!(!set.has_number(2.0));
        assert_eq!(set.numbers, vec![0.0, 1.5, 3.0]);
    }
}
