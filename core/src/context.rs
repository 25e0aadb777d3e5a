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
    pub fn type_name(&self) -> &'static str {
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
}

impl<C: Context + ?Sized> Context for &C {
    fn attr(&self, name: &str) -> Attr<'_> {
        (**self).attr(name)
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
            if *key == name {
                return shorten(value);
            }
        }
        Attr::Missing
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
}

/// Reads a JSON value the way every binding reads its native values.
pub fn attr_from_json(value: &serde_json::Value) -> Attr<'_> {
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
        match self.names.iter().position(|n| &**n == name) {
            Some(i) => self.values.get(i).map_or(Attr::Missing, shorten),
            None => Attr::Missing,
        }
    }
}
