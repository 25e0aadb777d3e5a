//! Raw CPython entry points for `Flags.variant` and `Flag.variant`, the hot path of the package.
//!
//! With `ffi.rs`, the only modules of the crate that use `unsafe` (the workspace denies it;
//! these opt in). Why: a `#[pymethods]` method goes through PyO3's generic trampoline (a
//! thread-local attach count, the deferred-decref pool, a generic argument parser and a
//! `self` type check) on every call, which costs about as much as the evaluation itself. The
//! functions here are plain `METH_FASTCALL | METH_KEYWORDS` C functions that parse the four
//! arguments by position and delegate to the same Rust code the PyO3 methods call.
//!
//! How they are installed: `Flags.variant` and `Flag.variant` are declared as ordinary
//! `#[pymethods]` (so their docstrings and text signatures are written once, there), and at
//! module init [`install`] replaces each class attribute with a method descriptor of the same
//! name, docstring and signature whose C function is the one here. Behaviour is identical;
//! tests/python/test_api.py checks the argument handling through the public API.
//!
//! Safety argument, shared by every `unsafe` block below:
//! - CPython calls these functions with the GIL held (abi3 wheels never run free-threaded),
//!   so `Python::assume_attached` is sound for the duration of the call.
//! - The method descriptor checks that `self` is an instance of the class it was created for
//!   before calling, so `self` is a `Flags` (or `Flag`) object.
//! - `args` holds `nargs` positional arguments followed by one value per name in `kwnames`,
//!   all borrowed for the duration of the call (the vectorcall protocol).
//! - A panic is caught before it reaches the C boundary and raised as `RuntimeError`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::Borrowed;

use crate::live::{Flag, Flags};

/// The environment variable that keeps the plain `#[pymethods]` entry points (`1`): how
/// bench/python_eval.py measures what the raw ones gain, in the same run.
pub(crate) const PLAIN_METHODS: &str = "FLAGRAIL_PLAIN_METHODS";

/// Replaces `Flags.variant` and `Flag.variant` with the raw entry points.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    if std::env::var(PLAIN_METHODS).is_ok_and(|v| v == "1") {
        return Ok(());
    }
    replace_method(py, &py.get_type::<Flags>(), flags_variant)?;
    replace_method(py, &py.get_type::<Flag>(), flag_variant)?;
    Ok(())
}

type FastCall = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// Sets `class.variant` to a descriptor of `function` with the docstring and text signature of
/// the PyO3 method it replaces.
fn replace_method(py: Python<'_>, class: &Bound<'_, PyType>, function: FastCall) -> PyResult<()> {
    let declared = class.getattr("variant")?;
    let signature: String = declared.getattr("__text_signature__")?.extract()?;
    let doc: String = declared.getattr("__doc__")?.extract()?;
    // CPython reads the text signature back out of the docstring: `name(sig)\n--\n\n<doc>`.
    let doc = CString::new(format!("variant{signature}\n--\n\n{doc}"))
        .map_err(|_| PyRuntimeError::new_err("variant docstring contains a NUL byte"))?;
    // The definition must outlive the descriptor, which lives as long as the class: for the
    // life of the process. Leaked once per class at import.
    let definition = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"variant".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: function,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.into_raw(),
    }));
    // SAFETY: `class` is a live type object and `definition` is 'static.
    let descriptor = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyDescr_NewMethod(class.as_type_ptr(), ptr::from_mut(definition)),
        )?
    };
    class.setattr("variant", descriptor)
}

/// `Flags.variant(flag, context=None, default=None, *, at=None)`.
unsafe extern "C" fn flags_variant(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: see the module comment.
    unsafe {
        entry(|py| {
            let [flag, context, default, at] = parse(py, &FLAGS_VARIANT, args, nargs, kwnames)?;
            let flag = string_argument(flag, "flag")?;
            let default = optional_string(default, "default")?;
            let at = not_none(at);
            let handle = Borrowed::from_ptr(py, slf).cast_unchecked::<Flags>();
            handle
                .get()
                .inner()
                .variant(
                    py,
                    &flag,
                    context.as_deref(),
                    default.as_deref(),
                    at.as_deref(),
                )
                .map(Bound::into_ptr)
        })
    }
}

/// `Flag.variant(context=None, default=None, *, at=None)`.
unsafe extern "C" fn flag_variant(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: see the module comment.
    unsafe {
        entry(|py| {
            let [context, default, at] = parse(py, &FLAG_VARIANT, args, nargs, kwnames)?;
            let default = optional_string(default, "default")?;
            let at = not_none(at);
            let handle = Borrowed::from_ptr(py, slf).cast_unchecked::<Flag>();
            let handle = handle.get();
            handle
                .inner()
                .variant(
                    py,
                    handle.key_object().bind(py),
                    context.as_deref(),
                    default.as_deref(),
                    at.as_deref(),
                )
                .map(Bound::into_ptr)
        })
    }
}

/// Runs `body` attached to the interpreter, turning an error into a raised exception and a
/// panic into `RuntimeError`.
///
/// # Safety
/// The caller is CPython calling a C function of this module: the GIL is held.
#[inline(always)]
unsafe fn entry(
    body: impl FnOnce(Python<'_>) -> PyResult<*mut ffi::PyObject>,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held (see the module comment).
    let py = unsafe { Python::assume_attached() };
    match catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(object)) => object,
        Ok(Err(error)) => {
            error.restore(py);
            ptr::null_mut()
        }
        Err(_) => {
            PyRuntimeError::new_err("flagrail: internal error (a panic) in variant()").restore(py);
            ptr::null_mut()
        }
    }
}

/// The parameters of a method: positional-or-keyword names, then keyword-only names.
pub(crate) struct Parameters<const N: usize> {
    pub(crate) method: &'static str,
    pub(crate) names: [&'static str; N],
    pub(crate) positional: usize,
    pub(crate) required: usize,
}

const FLAGS_VARIANT: Parameters<4> = Parameters {
    method: "variant",
    names: ["flag", "context", "default", "at"],
    positional: 3,
    required: 1,
};

const FLAG_VARIANT: Parameters<3> = Parameters {
    method: "variant",
    names: ["context", "default", "at"],
    positional: 2,
    required: 0,
};

pub(crate) type Argument<'a, 'py> = Option<Borrowed<'a, 'py, PyAny>>;

/// Sorts the vectorcall arguments into parameter slots, with CPython's error messages.
///
/// # Safety
/// `args` holds `nargs` positional arguments and then one value per name in `kwnames`.
#[inline(always)]
pub(crate) unsafe fn parse<'a, 'py, const N: usize>(
    py: Python<'py>,
    parameters: &Parameters<N>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<[Argument<'a, 'py>; N]> {
    let mut slots: [Argument<'a, 'py>; N] = [None; N];
    let positional = usize::try_from(nargs).unwrap_or(0);
    if positional > parameters.positional {
        return Err(PyTypeError::new_err(format!(
            "{}() takes at most {} positional arguments ({positional} given)",
            parameters.method, parameters.positional
        )));
    }
    for (index, slot) in slots.iter_mut().enumerate().take(positional) {
        // SAFETY: index < nargs.
        *slot = Some(unsafe { Borrowed::from_ptr(py, *args.add(index)) });
    }
    if !kwnames.is_null() {
        // SAFETY: kwnames is a tuple of strings (the vectorcall protocol).
        let names = unsafe { Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>() };
        for (offset, name) in names.iter().enumerate() {
            let name = name.cast_into::<PyString>()?;
            let name = name.to_str()?;
            let Some(index) = parameters.names.iter().position(|p| *p == name) else {
                return Err(PyTypeError::new_err(format!(
                    "{}() got an unexpected keyword argument '{name}'",
                    parameters.method
                )));
            };
            if slots[index].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{}() got multiple values for argument '{name}'",
                    parameters.method
                )));
            }
            // SAFETY: keyword values follow the positional ones, one per name.
            slots[index] = Some(unsafe { Borrowed::from_ptr(py, *args.add(positional + offset)) });
        }
    }
    if let Some(missing) = parameters.names[..parameters.required]
        .iter()
        .zip(&slots)
        .find_map(|(name, slot)| slot.is_none().then_some(name))
    {
        return Err(PyTypeError::new_err(format!(
            "{}() missing required argument '{missing}'",
            parameters.method
        )));
    }
    Ok(slots)
}

/// A `str` argument.
#[inline(always)]
fn string_argument<'a, 'py>(
    value: Argument<'a, 'py>,
    name: &str,
) -> PyResult<Borrowed<'a, 'py, PyString>> {
    match value {
        Some(value) => value.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "argument '{name}' must be str, not {}",
                type_name(&value)
            ))
        }),
        None => Err(PyTypeError::new_err(format!(
            "missing required argument '{name}'"
        ))),
    }
}

/// An optional `str` argument; `None` is the same as leaving it out.
#[inline(always)]
fn optional_string<'a, 'py>(
    value: Argument<'a, 'py>,
    name: &str,
) -> PyResult<Option<Borrowed<'a, 'py, PyString>>> {
    match value {
        Some(value) if !value.is_none() => string_argument(Some(value), name).map(Some),
        _ => Ok(None),
    }
}

/// `None` is the same as leaving the argument out.
#[inline(always)]
pub(crate) fn not_none<'a, 'py>(value: Argument<'a, 'py>) -> Argument<'a, 'py> {
    value.filter(|value| !value.is_none())
}

fn type_name(value: &Borrowed<'_, '_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "an object".to_string(), |n| n.to_string())
}
