//! The evaluation context: the attributes of one request (user, session, plan, …).
//!
//! Evaluation asks for attributes one name at a time through [`Context`], so that a binding can
//! read only the attributes a flag actually uses straight out of a Python dict or a JS object,
//! borrowing strings instead of converting the whole context.

use std::borrow::Cow;
use std::collections::HashMap;

/// One attribute value as evaluation sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr<'a> {
    /// The context has no such attribute (or it is null).
    Missing,
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A list of strings (group memberships, tags, …).
    List(Cow<'a, [Cow<'a, str>]>),
    /// A value of a type that conditions cannot use (an object, a nested list of numbers, …).
    /// Matching treats it as absent; `explain` shows the type name.
    Unsupported(&'static str),
}

impl Attr<'_> {
    /// The type name used in explanations.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Attr::Missing => "missing",
            Attr::Str(_) => "string",
            Attr::Int(_) => "integer",
            Attr::Float(_) => "float",
            Attr::Bool(_) => "boolean",
            Attr::List(_) => "list of strings",
            Attr::Unsupported(name) => name,
        }
    }
}

/// Anything that can answer "what is attribute `name`?".
pub trait Context {
    fn attr(&self, name: &str) -> Attr<'_>;

    /// The attribute's text when it is a string, else `None` (then read it with [`attr`]).
    ///
    /// Conditions and bucketing try this first: most attributes are strings, and a context
    /// that already holds its values can answer with two words in registers instead of
    /// building an [`Attr`] that the caller copies back out of memory.
    ///
    /// [`attr`]: Context::attr
    #[inline]
    fn str_attr(&self, name: &str) -> Option<&str> {
        match self.attr(name) {
            Attr::Str(text) => Some(text),
            _ => None,
        }
    }
}

impl<C: Context + ?Sized> Context for &C {
    fn attr(&self, name: &str) -> Attr<'_> {
        (**self).attr(name)
    }

    #[inline]
    fn str_attr(&self, name: &str) -> Option<&str> {
        (**self).str_attr(name)
    }
}

/// `a == b` without a call to `memcmp` for texts of up to 16 bytes: attribute names (compared
/// once per attribute read, on every evaluation) and the short values of `eq` / `ne` tests.
#[inline(always)]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        // Two overlapping 8-byte windows cover the whole name.
        8..=16 => {
            let word = |s: &[u8], at: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&s[at..at + 8]);
                u64::from_ne_bytes(bytes)
            };
            let last = a.len() - 8;
            word(a, 0) == word(b, 0) && word(a, last) == word(b, last)
        }
        4..=7 => {
            let word = |s: &[u8], at: usize| {
                let mut bytes = [0u8; 4];
                bytes.copy_from_slice(&s[at..at + 4]);
                u32::from_ne_bytes(bytes)
            };
            let last = a.len() - 4;
            word(a, 0) == word(b, 0) && word(a, last) == word(b, last)
        }
        _ => a == b,
    }
}

/// A context with no attributes.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyContext;

impl Context for EmptyContext {
    fn attr(&self, _name: &str) -> Attr<'_> {
        Attr::Missing
    }
}

/// A borrowed list of pairs: the cheapest context to build in Rust request handlers.
impl<'v> Context for [(&str, Attr<'v>)] {
    fn attr(&self, name: &str) -> Attr<'_> {
        for (key, value) in self {
            if same_text(key, name) {
                return shorten(value);
            }
        }
        Attr::Missing
    }

    #[inline]
    fn str_attr(&self, name: &str) -> Option<&str> {
        match &self.iter().find(|(key, _)| same_text(key, name))?.1 {
            Attr::Str(text) => Some(text),
            _ => None,
        }
    }
}

fn shorten<'s>(value: &'s Attr<'_>) -> Attr<'s> {
    match value {
        Attr::Missing => Attr::Missing,
        Attr::Str(s) => Attr::Str(s),
        Attr::Int(i) => Attr::Int(*i),
        Attr::Float(f) => Attr::Float(*f),
        Attr::Bool(b) => Attr::Bool(*b),
        // Borrowing is enough: `Cow` is covariant, so the longer-lived items coerce.
        Attr::List(items) => Attr::List(Cow::Borrowed(&**items)),
        Attr::Unsupported(name) => Attr::Unsupported(name),
    }
}

impl<'v, const N: usize> Context for [(&str, Attr<'v>); N] {
    fn attr(&self, name: &str) -> Attr<'_> {
        self.as_slice().attr(name)
    }

    #[inline]
    fn str_attr(&self, name: &str) -> Option<&str> {
        self.as_slice().str_attr(name)
    }
}

/// Reads a JSON value the way every binding reads its native values.
pub(crate) fn attr_from_json(value: &serde_json::Value) -> Attr<'_> {
    use serde_json::Value;
    match value {
        Value::Null => Attr::Missing,
        Value::String(s) => Attr::Str(s),
        Value::Bool(b) => Attr::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Attr::Int(i)
            } else if n.is_u64() {
                // Beyond i64: not representable as an integer unit; treated as a float.
                Attr::Float(n.as_f64().unwrap_or(f64::NAN))
            } else {
                Attr::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::Array(items) => {
            let mut strings = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => strings.push(Cow::Borrowed(s.as_str())),
                    _ => return Attr::Unsupported("list with non-string items"),
                }
            }
            Attr::List(Cow::Owned(strings))
        }
        Value::Object(_) => Attr::Unsupported("object"),
    }
}

/// A JSON object as a context (the CLI and the test vectors use this).
impl Context for serde_json::Map<String, serde_json::Value> {
    fn attr(&self, name: &str) -> Attr<'_> {
        self.get(name).map_or(Attr::Missing, attr_from_json)
    }
}

impl Context for serde_json::Value {
    fn attr(&self, name: &str) -> Attr<'_> {
        match self {
            serde_json::Value::Object(map) => map.attr(name),
            _ => Attr::Missing,
        }
    }
}

impl Context for HashMap<String, serde_json::Value> {
    fn attr(&self, name: &str) -> Attr<'_> {
        self.get(name).map_or(Attr::Missing, attr_from_json)
    }
}

impl Context for HashMap<&str, &str> {
    fn attr(&self, name: &str) -> Attr<'_> {
        self.get(name).map_or(Attr::Missing, |v| Attr::Str(v))
    }
}

/// Attributes passed positionally, in the order of [`crate::Flag::attributes`]: the cheapest
/// shape for a binding that reads only the attributes a flag uses and hands them over as
/// arguments.
#[derive(Debug, Clone, Copy)]
pub struct Positional<'a, 'v> {
    pub names: &'a [Box<str>],
    pub values: &'a [Attr<'v>],
}

impl Context for Positional<'_, '_> {
    fn attr(&self, name: &str) -> Attr<'_> {
        match self.names.iter().position(|n| same_text(n, name)) {
            Some(i) => self.values.get(i).map_or(Attr::Missing, shorten),
            None => Attr::Missing,
        }
    }

    #[inline]
    fn str_attr(&self, name: &str) -> Option<&str> {
        let index = self.names.iter().position(|n| same_text(n, name))?;
        match self.values.get(index)? {
            Attr::Str(text) => Some(text),
            _ => None,
        }
    }
}

/// One flag's share of a context read once for several flags: `values` follow the document's
/// attribute union ([`crate::Document::attributes`]), and `slots` say where each of the flag's
/// `names` ([`crate::Flag::attributes`]) sits in it ([`crate::Flag::attribute_slots`]). How a
/// binding evaluates several flags for one request: it converts the union's needed values once,
/// and each flag looks only through its own few names (a [`Positional`] over the whole union
/// would scan every name of the document on each read).
#[derive(Debug, Clone, Copy)]
pub struct Slotted<'a, 'v> {
    pub names: &'a [Box<str>],
    pub slots: &'a [usize],
    pub values: &'a [Attr<'v>],
}

// Inlined into the evaluation like `Positional`'s reads (a call per attribute read cost ~50
// instructions per read in the three-flag benchmark, callgrind).
impl<'v> Slotted<'_, 'v> {
    #[inline(always)]
    fn value(&self, name: &str) -> Option<&Attr<'v>> {
        let index = self.names.iter().position(|n| same_text(n, name))?;
        self.values.get(*self.slots.get(index)?)
    }
}

impl Context for Slotted<'_, '_> {
    #[inline]
    fn attr(&self, name: &str) -> Attr<'_> {
        self.value(name).map_or(Attr::Missing, shorten)
    }

    #[inline(always)]
    fn str_attr(&self, name: &str) -> Option<&str> {
        match self.value(name)? {
            Attr::Str(text) => Some(text),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slotted_reads_each_name_through_its_slot() {
        let names: Vec<Box<str>> = vec!["plan".into(), "user_id".into(), "tags".into()];
        let slots = [2, 0, 3];
        let union = [
            Attr::Str("u1"),
            Attr::Int(7),
            Attr::Str("pro"),
            Attr::List(Cow::Owned(vec![Cow::Borrowed("beta")])),
        ];
        let view = Slotted {
            names: &names,
            slots: &slots,
            values: &union,
        };
        assert_eq!(view.attr("plan"), Attr::Str("pro"));
        assert_eq!(view.str_attr("user_id"), Some("u1"));
        assert_eq!(
            view.attr("tags"),
            Attr::List(Cow::Owned(vec![Cow::Borrowed("beta")]))
        );
        assert_eq!(view.str_attr("tags"), None);
        // A union value the flag does not name, and a name the flag does not have.
        assert_eq!(view.attr("n"), Attr::Missing);
        assert_eq!(view.str_attr("absent"), None);
        // A slot past the values reads as missing rather than panicking.
        let short = Slotted {
            names: &names,
            slots: &slots,
            values: &union[..1],
        };
        assert_eq!(short.attr("plan"), Attr::Missing);
        assert_eq!(short.str_attr("user_id"), Some("u1"));
    }

    #[test]
    fn same_text_agrees_with_string_equality() {
        // Every length from 0 to 20, and a difference at every byte position.
        for len in 0..=20usize {
            let name: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            assert!(same_text(&name, &name.clone()), "{name:?}");
            for at in 0..len {
                let mut other = name.clone().into_bytes();
                other[at] = b'_';
                let other = String::from_utf8(other).unwrap();
                assert!(!same_text(&name, &other), "{name:?} vs {other:?}");
            }
            assert!(!same_text(&name, &format!("{name}x")));
        }
        assert!(same_text("user_id", "user_id") && !same_text("user_id", "segment"));
        assert!(same_text("é", "é") && !same_text("é", "e\u{301}"));
    }

    #[test]
    fn str_attr_is_attr_when_it_is_a_string() {
        let names: Vec<Box<str>> = ["s", "empty", "n", "list", "missing"]
            .iter()
            .map(|n| Box::from(*n))
            .collect();
        let values = [
            Attr::Str("text"),
            Attr::Str(""),
            Attr::Int(3),
            Attr::List(Cow::Owned(vec![Cow::Borrowed("a")])),
            Attr::Missing,
        ];
        let positional = Positional {
            names: &names,
            values: &values,
        };
        let pairs = [
            ("s", Attr::Str("text")),
            ("empty", Attr::Str("")),
            ("n", Attr::Int(3)),
        ];
        let json: serde_json::Value =
            serde_json::json!({"s": "text", "empty": "", "n": 3, "list": ["a"]});
        for name in ["s", "empty", "n", "list", "missing", "absent"] {
            let expected = match positional.attr(name) {
                Attr::Str(text) => Some(text.to_string()),
                _ => None,
            };
            assert_eq!(positional.str_attr(name).map(str::to_string), expected);
            assert_eq!(json.str_attr(name).map(str::to_string), expected);
            let in_pairs = pairs.iter().any(|(n, _)| *n == name);
            if in_pairs || expected.is_none() {
                assert_eq!(pairs.str_attr(name).map(str::to_string), expected);
                let pairs_ref = &pairs;
                let by_ref = <&[(&str, Attr<'_>); 3] as Context>::str_attr(&pairs_ref, name);
                assert_eq!(by_ref.map(str::to_string), expected);
            }
        }
    }
}
