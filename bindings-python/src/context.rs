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
//! treats as absent and `explain` shows; it never raises. A mapping whose `__getitem__` raises an
//! `Exception` reads as absent too; a `BaseException` that is not an `Exception`
//! (`KeyboardInterrupt`, `SystemExit`) is not an answer about the attribute: it propagates.

use std::borrow::Cow;

use flagrail_core::{Attr, Positional};
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};

use crate::ffi;

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

/// Sets `attr` to what the core reads of one attribute value, borrowing its text from the
/// value (which the caller keeps alive for as long as `attr` is used).
///
/// Writes in place, each branch its own variant: a function returning the `Attr` has it built
/// in a temporary and copied with wider loads than the stores that built it, which stalls the
/// CPU on every attribute of every call.
#[inline(always)]
fn set_attr<'v>(attr: &mut Attr<'v>, held: &'v Option<Bound<'_, PyAny>>) {
    let Some(value) = held else {
        return;
    };
    // An exact `str` first, by type pointer: under the stable ABI `PyUnicode_Check` is a call
    // into the interpreter, the pointer compare is not.
    match value.cast_exact::<PyString>() {
        Ok(text) => match ffi::utf8(text) {
            Some(text) => *attr = Attr::Str(text),
            None => *attr = Attr::Unsupported("string with unpaired surrogates"),
        },
        Err(_) => *attr = attr_of_other(value),
    }
}

/// Every type but an exact `str`. bool before int: Python's bool is an int subclass.
#[inline(never)]
fn attr_of_other<'v>(value: &'v Bound<'_, PyAny>) -> Attr<'v> {
    if let Ok(text) = value.cast::<PyString>() {
        return match text.to_str() {
            Ok(text) => Attr::Str(text),
            Err(_) => Attr::Unsupported("string with unpaired surrogates"),
        };
    }
    if let Ok(flag) = value.cast::<PyBool>() {
        return Attr::Bool(flag.is_true());
    }
    if value.cast::<PyInt>().is_ok() {
        return match value.extract::<i64>() {
            Ok(int) => Attr::Int(int),
            // Beyond i64: the same as a JSON number that does not fit, a float.
            Err(_) => value
                .extract::<f64>()
                .map_or(Attr::Unsupported("integer out of range"), Attr::Float),
        };
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        return Attr::Float(float.value());
    }
    if value.is_none() {
        return Attr::Missing;
    }
    if let Ok(list) = value.cast::<PyList>() {
        return strings(list.iter());
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return strings(tuple.iter());
    }
    Attr::Unsupported(unsupported_name(value))
}

/// A list or tuple whose items are all strings; the texts are copied, because the items are
/// not kept alive past this call (lists are rare in contexts, strings are the common case).
fn strings<'v, 'py>(items: impl Iterator<Item = Bound<'py, PyAny>>) -> Attr<'v> {
    let mut texts = Vec::new();
    for item in items {
        match item.cast::<PyString>() {
            Ok(text) => match text.to_str() {
                Ok(text) => texts.push(Cow::Owned(text.to_string())),
                Err(_) => return Attr::Unsupported("list with a string with unpaired surrogates"),
            },
            Err(_) => return Attr::Unsupported("list with non-string items"),
        }
    }
    Attr::List(Cow::Owned(texts))
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
/// with them as a core context. Fails only with a `BaseException` that is not an `Exception`,
/// raised by a mapping's `__getitem__` (see the module docs).
#[inline]
pub(crate) fn with_declared<'py, R>(
    source: Source<'_, 'py>,
    names: &[Box<str>],
    keys: &[Py<PyString>],
    evaluate: impl FnOnce(&Positional<'_, '_>) -> R,
) -> PyResult<R> {
    // Sized to the flag: every slot is initialised, converted and dropped on every call.
    match names.len() {
        0 => Ok(evaluate(&Positional { names, values: &[] })),
        1 => with_inline::<1, R>(source, names, keys, evaluate),
        2 => with_inline::<2, R>(source, names, keys, evaluate),
        3 => with_inline::<3, R>(source, names, keys, evaluate),
        4 => with_inline::<4, R>(source, names, keys, evaluate),
        _ => {
            let mut held: Vec<Option<Bound<'py, PyAny>>> = vec![None; names.len()];
            read_declared(source, keys, &mut held)?;
            let mut attrs: Vec<Attr<'_>> = held.iter().map(|_| Attr::Missing).collect();
            for (attr, held) in attrs.iter_mut().zip(&held) {
                set_attr(attr, held);
            }
            Ok(evaluate(&Positional {
                names,
                values: &attrs,
            }))
        }
    }
}

#[inline(always)]
fn with_inline<'py, const N: usize, R>(
    source: Source<'_, 'py>,
    names: &[Box<str>],
    keys: &[Py<PyString>],
    evaluate: impl FnOnce(&Positional<'_, '_>) -> R,
) -> PyResult<R> {
    // The values are held (one reference each) while the core borrows their text: looking up
    // a later key can run Python code (a colliding key's `__eq__`) that mutates the dict.
    let mut held: [Option<Bound<'py, PyAny>>; N] = [const { None }; N];
    read_declared(source, keys, &mut held)?;
    let mut attrs: [Attr<'_>; N] = [const { Attr::Missing }; N];
    for (attr, held) in attrs.iter_mut().zip(&held) {
        set_attr(attr, held);
    }
    Ok(evaluate(&Positional {
        names,
        values: &attrs,
    }))
}

#[inline(always)]
fn read_declared<'py>(
    source: Source<'_, 'py>,
    keys: &[Py<PyString>],
    out: &mut [Option<Bound<'py, PyAny>>],
) -> PyResult<()> {
    match source {
        Source::Empty => {}
        Source::Dict(dict) => {
            for (key, held) in keys.iter().zip(out.iter_mut()) {
                *held = ffi::dict_get(dict, key.bind(dict.py()));
            }
        }
        Source::Mapping(mapping) => {
            let py = mapping.py();
            for (key, held) in keys.iter().zip(out.iter_mut()) {
                match mapping.get_item(key.bind(py)) {
                    Ok(value) => *held = Some(value),
                    // KeyError is "absent"; so is any other Exception of a user mapping,
                    // because a flag read never raises.
                    Err(error) if error.is_instance_of::<PyException>(py) => {}
                    // KeyboardInterrupt, SystemExit, GeneratorExit: the program is being
                    // stopped, not answering.
                    Err(error) => return Err(error),
                }
            }
        }
    }
    Ok(())
}

/// The slots of the document's attribute union that the flags of one `variants()` call read:
/// a bit mask for the first 64 (no allocation), a list beyond.
pub(crate) struct Needed {
    mask: u64,
    wide: Vec<bool>,
}

impl Needed {
    pub(crate) fn new(union: usize) -> Needed {
        Needed {
            mask: 0,
            wide: if union > 64 {
                vec![false; union]
            } else {
                Vec::new()
            },
        }
    }

    #[inline]
    pub(crate) fn mark(&mut self, slots: &[usize]) {
        for &slot in slots {
            match self.wide.get_mut(slot) {
                Some(needed) => *needed = true,
                None if slot < 64 => self.mask |= 1 << slot,
                None => {}
            }
        }
    }

    #[inline]
    fn has(&self, slot: usize) -> bool {
        match self.wide.get(slot) {
            Some(needed) => *needed,
            None => slot < 64 && self.mask & (1 << slot) != 0,
        }
    }
}

/// Calls `each` with every item of `keys` (a list, a tuple or another iterable) as a `str`;
/// `TypeError` for a single `str` or an item that is not one.
///
/// A list or tuple is read by index: iterating a generic object asks it for
/// `__length_hint__`, a Python call that costs about as much as deciding one flag.
#[inline]
pub(crate) fn for_each_key<'py>(
    keys: &Bound<'py, PyAny>,
    mut each: impl FnMut(Bound<'py, PyString>) -> PyResult<()>,
) -> PyResult<()> {
    let key_of = |key: Bound<'py, PyAny>| {
        key.cast_into::<PyString>().map_err(|e| {
            PyTypeError::new_err(format!(
                "keys must hold str flag keys, not {}",
                type_name(&e.into_inner())
            ))
        })
    };
    if let Ok(list) = keys.cast::<PyList>() {
        for key in list.iter() {
            each(key_of(key)?)?;
        }
        return Ok(());
    }
    if let Ok(tuple) = keys.cast::<PyTuple>() {
        for key in tuple.iter() {
            each(key_of(key)?)?;
        }
        return Ok(());
    }
    if keys.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "keys must be an iterable of flag keys, not a single str (use variant())",
        ));
    }
    for key in keys.try_iter()? {
        each(key_of(key?)?)?;
    }
    Ok(())
}

/// Reads the union slots `needed` marks from `source` (the others stay missing; `keys` are
/// the document's attribute union as interned strings) and runs `evaluate` with every slot's
/// value: how `variants()` and `all()` convert a context once for several flags, each flag
/// then reading its share through a `flagrail_core::Slotted` view. Fails like
/// [`with_declared`].
#[inline]
pub(crate) fn with_union<'py, R>(
    source: Source<'_, 'py>,
    keys: &[Py<PyString>],
    needed: &Needed,
    evaluate: impl FnOnce(&[Attr<'_>]) -> R,
) -> PyResult<R> {
    // A small union (the usual document) lives on the stack: no allocation per call.
    const INLINE: usize = 8;
    if keys.len() <= INLINE {
        let mut held: [Option<Bound<'py, PyAny>>; INLINE] = [const { None }; INLINE];
        read_selected(source, keys, needed, &mut held[..keys.len()])?;
        let mut attrs: [Attr<'_>; INLINE] = [const { Attr::Missing }; INLINE];
        for (attr, held) in attrs.iter_mut().zip(&held) {
            set_attr(attr, held);
        }
        return Ok(evaluate(&attrs[..keys.len()]));
    }
    let mut held: Vec<Option<Bound<'py, PyAny>>> = vec![None; keys.len()];
    read_selected(source, keys, needed, &mut held)?;
    let mut attrs: Vec<Attr<'_>> = held.iter().map(|_| Attr::Missing).collect();
    for (attr, held) in attrs.iter_mut().zip(&held) {
        set_attr(attr, held);
    }
    Ok(evaluate(&attrs))
}

/// [`read_declared`] for the keys whose slot `needed` marks.
#[inline]
fn read_selected<'py>(
    source: Source<'_, 'py>,
    keys: &[Py<PyString>],
    needed: &Needed,
    out: &mut [Option<Bound<'py, PyAny>>],
) -> PyResult<()> {
    let selected = keys
        .iter()
        .zip(out.iter_mut())
        .enumerate()
        .filter(|(slot, _)| needed.has(*slot));
    match source {
        Source::Empty => {}
        Source::Dict(dict) => {
            for (_, (key, held)) in selected {
                *held = ffi::dict_get(dict, key.bind(dict.py()));
            }
        }
        Source::Mapping(mapping) => {
            let py = mapping.py();
            for (_, (key, held)) in selected {
                match mapping.get_item(key.bind(py)) {
                    Ok(value) => *held = Some(value),
                    // As in `read_declared`: an `Exception` is "absent", anything else stops.
                    Err(error) if error.is_instance_of::<PyException>(py) => {}
                    Err(error) => return Err(error),
                }
            }
        }
    }
    Ok(())
}
