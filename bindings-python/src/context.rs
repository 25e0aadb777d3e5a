//! The evaluation context, read straight out of the caller's dict.
//!
//! Only the attributes the flag can read ([`flagrail_core::Flag::attributes`]) are looked at,
//! and nothing is copied: each value is held (one reference) for the duration of the call and
//! its text is borrowed. [`with_declared`] reads them up front and hands them to the core as a
//! [`Positional`] context. The dict is probed with pre-interned keys: their hash is cached, and
//! `{"user_id": ...}` literals are the same interned objects, so each probe ends on a pointer
//! compare. (Measured alternatives: scanning small dicts with `PyDict_Next` was no faster and
//! reads keys the flag does not use; reading lazily, on the core's first request for each
//! name, was no faster either and needs per-call bookkeeping.)
//!
//! A value of a type no condition can use is reported as [`Attr::Unsupported`], which matching
//! treats as absent and `explain` shows; it never raises.

use std::borrow::Cow;

use flagrail_core::{Attr, Positional};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};

/// Where attributes come from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a, 'py> {
    Empty,
    Dict(&'a Bound<'py, PyDict>),
    /// Any other `collections.abc.Mapping`, read through `__getitem__`.
    Mapping(&'a Bound<'py, PyAny>),
}

impl<'a, 'py> Source<'a, 'py> {
    /// Checks the type of the `context` argument: `None`, a dict or a mapping.
    pub(crate) fn from_arg(context: Option<&'a Bound<'py, PyAny>>) -> PyResult<Self> {
        let Some(context) = context else {
            return Ok(Source::Empty);
        };
        if let Ok(dict) = context.cast::<PyDict>() {
            return Ok(Source::Dict(dict));
        }
        if context.is_none() {
            return Ok(Source::Empty);
        }
        if context.cast::<PyMapping>().is_ok() {
            return Ok(Source::Mapping(context));
        }
        Err(PyTypeError::new_err(format!(
            "context must be a dict (or another mapping) of attribute names to values, \
             or None; got {}",
            type_name(context)
        )))
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "an object".to_string(), |n| n.to_string())
}

/// One attribute value, kept alive while evaluation borrows from it.
enum Held<'py> {
    Missing,
    Str(Bound<'py, PyString>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A list or tuple whose items are all strings.
    List(Vec<Bound<'py, PyString>>),
    Unsupported(&'static str),
}

impl<'py> Held<'py> {
    fn read(value: Bound<'py, PyAny>) -> Held<'py> {
        // Most common first, and moved rather than cloned (no reference-count round trip).
        // bool before int: Python's bool is an int subclass.
        let value = match value.cast_into::<PyString>() {
            Ok(text) => return Held::Str(text),
            Err(other) => other.into_inner(),
        };
        if let Ok(flag) = value.cast::<PyBool>() {
            return Held::Bool(flag.is_true());
        }
        if value.cast::<PyInt>().is_ok() {
            return match value.extract::<i64>() {
                Ok(int) => Held::Int(int),
                // Beyond i64: the same as a JSON number that does not fit, a float.
                Err(_) => value
                    .extract::<f64>()
                    .map_or(Held::Unsupported("integer out of range"), Held::Float),
            };
        }
        if let Ok(float) = value.cast::<PyFloat>() {
            return Held::Float(float.value());
        }
        if value.is_none() {
            return Held::Missing;
        }
        if let Ok(list) = value.cast::<PyList>() {
            return strings(list.iter());
        }
        if let Ok(tuple) = value.cast::<PyTuple>() {
            return strings(tuple.iter());
        }
        Held::Unsupported(unsupported_name(&value))
    }

    fn attr(&self) -> Attr<'_> {
        match self {
            Held::Missing => Attr::Missing,
            Held::Str(text) => match text.to_str() {
                Ok(text) => Attr::Str(text),
                Err(_) => Attr::Unsupported("string with unpaired surrogates"),
            },
            Held::Int(int) => Attr::Int(*int),
            Held::Float(float) => Attr::Float(*float),
            Held::Bool(flag) => Attr::Bool(*flag),
            Held::List(items) => {
                let texts: Result<Vec<Cow<'_, str>>, _> = items
                    .iter()
                    .map(|s| s.to_str().map(Cow::Borrowed))
                    .collect();
                match texts {
                    Ok(texts) => Attr::List(Cow::Owned(texts)),
                    Err(_) => Attr::Unsupported("list with a string with unpaired surrogates"),
                }
            }
            Held::Unsupported(name) => Attr::Unsupported(name),
        }
    }
}

fn strings<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>) -> Held<'py> {
    let mut texts = Vec::new();
    for item in items {
        match item.cast_into::<PyString>() {
            Ok(text) => texts.push(text),
            Err(_) => return Held::Unsupported("list with non-string items"),
        }
    }
    Held::List(texts)
}

/// `Attr::Unsupported` carries a static name: known types are named, the rest are "object".
fn unsupported_name(value: &Bound<'_, PyAny>) -> &'static str {
    const KNOWN: &[&str] = &[
        "dict",
        "set",
        "frozenset",
        "bytes",
        "bytearray",
        "datetime",
        "date",
        "time",
        "timedelta",
        "Decimal",
        "UUID",
        "complex",
    ];
    let Ok(name) = value.get_type().name() else {
        return "object";
    };
    let Ok(name) = name.to_str() else {
        return "object";
    };
    // No isinstance(…, Mapping) here: ABC checks can run Python code, and this runs while a
    // dict is being scanned.
    KNOWN
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("object")
}

/// Reads the flag's attributes (`names`, interned as `keys`) from `source` and runs `evaluate`
/// with them as a core context.
#[inline]
pub(crate) fn with_declared<'py, R>(
    source: Source<'_, 'py>,
    names: &[Box<str>],
    keys: &[Py<PyString>],
    evaluate: impl FnOnce(&Positional<'_, '_>) -> R,
) -> R {
    // Sized to the flag: every slot is initialised, converted and dropped on every call.
    match names.len() {
        0 => evaluate(&Positional { names, values: &[] }),
        1 => with_inline::<1, R>(source, names, keys, evaluate),
        2 => with_inline::<2, R>(source, names, keys, evaluate),
        3 => with_inline::<3, R>(source, names, keys, evaluate),
        4 => with_inline::<4, R>(source, names, keys, evaluate),
        _ => {
            let mut held: Vec<Held<'py>> = (0..names.len()).map(|_| Held::Missing).collect();
            read_declared(source, keys, &mut held);
            let attrs: Vec<Attr<'_>> = held.iter().map(Held::attr).collect();
            evaluate(&Positional {
                names,
                values: &attrs,
            })
        }
    }
}

#[inline]
fn with_inline<'py, const N: usize, R>(
    source: Source<'_, 'py>,
    names: &[Box<str>],
    keys: &[Py<PyString>],
    evaluate: impl FnOnce(&Positional<'_, '_>) -> R,
) -> R {
    let mut held: [Held<'py>; N] = [const { Held::Missing }; N];
    read_declared(source, keys, &mut held);
    let attrs: [Attr<'_>; N] = std::array::from_fn(|i| held[i].attr());
    evaluate(&Positional {
        names,
        values: &attrs,
    })
}

fn read_declared<'py>(source: Source<'_, 'py>, keys: &[Py<PyString>], out: &mut [Held<'py>]) {
    match source {
        Source::Empty => {}
        Source::Dict(dict) => {
            for (key, held) in keys.iter().zip(out.iter_mut()) {
                // Err: a key whose __eq__ raised during the probe reads as absent.
                if let Ok(Some(value)) = dict.get_item(key.bind(dict.py())) {
                    *held = Held::read(value);
                }
            }
        }
        Source::Mapping(mapping) => {
            for (key, held) in keys.iter().zip(out.iter_mut()) {
                // KeyError is "absent"; so is any other error of a user mapping, because a flag
                // read never raises.
                if let Ok(value) = mapping.get_item(key.bind(mapping.py())) {
                    *held = Held::read(value);
                }
            }
        }
    }
}
