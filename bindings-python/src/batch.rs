//! Raw CPython entry points for `Flags.variants` and `Flags.all`: several flags for one
//! context (docs/benchmarks.md, Targets, bounds three flags at 1.5 × one `variant`).
//!
//! Why raw, as for `variant` in `fast.rs` (whose argument parser this shares): PyO3's
//! `#[pymethods]` trampoline and generic argument parser cost about as much per call as
//! deciding one flag. The methods stay declared in `live.rs` (their docstrings and text
//! signatures are written there, once); [`install`] replaces each class attribute with a
//! method descriptor of the same name, docstring and signature whose C function is the one
//! here, delegating to the same `Inner::variants`. With `FLAGRAIL_PLAIN_METHODS=1` the
//! `#[pymethods]` entries are kept (`fast::PLAIN_METHODS`).
//!
//! Safety argument, shared by every `unsafe` block below (the same as `fast.rs`):
//! - CPython calls these functions with the GIL held (abi3 wheels never run free-threaded),
//!   so `Python::assume_attached` is sound for the duration of the call.
//! - The method descriptor checks that `self` is an instance of the class it was created for
//!   before calling, so `self` is a `Flags` object.
//! - `args` holds `nargs` positional arguments followed by one value per name in `kwnames`,
//!   all borrowed for the duration of the call (the vectorcall protocol).
//! - A panic is caught before it reaches the C boundary and raised as `RuntimeError`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::Borrowed;

use crate::fast::{not_none, parse, Parameters, PLAIN_METHODS};
use crate::live::Flags;

/// Replaces `Flags.variants` and `Flags.all` with the raw entry points.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    if std::env::var(PLAIN_METHODS).is_ok_and(|v| v == "1") {
        return Ok(());
    }
    let class = py.get_type::<Flags>();
    replace_method(py, &class, c"variants", flags_variants)?;
    replace_method(py, &class, c"all", flags_all)?;
    Ok(())
}

type FastCall = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// Sets `class.<name>` to a descriptor of `function` with the docstring and text signature of
/// the PyO3 method it replaces.
fn replace_method(
    py: Python<'_>,
    class: &Bound<'_, PyType>,
    name: &'static CStr,
    function: FastCall,
) -> PyResult<()> {
    let text_name = name
        .to_str()
        .map_err(|_| PyRuntimeError::new_err("method name is not UTF-8"))?;
    let declared = class.getattr(text_name)?;
    let signature: String = declared.getattr("__text_signature__")?.extract()?;
    let doc: String = declared.getattr("__doc__")?.extract()?;
    // CPython reads the text signature back out of the docstring: `name(sig)\n--\n\n<doc>`.
    let doc = CString::new(format!("{text_name}{signature}\n--\n\n{doc}"))
        .map_err(|_| PyRuntimeError::new_err("docstring contains a NUL byte"))?;
    // The definition must outlive the descriptor, which lives as long as the class: for the
    // life of the process. Leaked once per method at import.
    let definition = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
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
    class.setattr(text_name, descriptor)
}

const FLAGS_VARIANTS: Parameters<3> = Parameters {
    method: "variants",
    names: ["context", "keys", "at"],
    positional: 2,
    required: 2,
};

const FLAGS_ALL: Parameters<2> = Parameters {
    method: "all",
    names: ["context", "at"],
    positional: 1,
    required: 0,
};

/// `Flags.variants(context, keys, *, at=None)`.
unsafe extern "C" fn flags_variants(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: see the module comment.
    unsafe {
        entry(|py| {
            let [context, keys, at] = parse(py, &FLAGS_VARIANTS, args, nargs, kwnames)?;
            // `parse` checked that the required arguments are there.
            let Some(keys) = keys else {
                return Err(PyRuntimeError::new_err("variants(): keys missing"));
            };
            let context = not_none(context);
            let at = not_none(at);
            let handle = Borrowed::from_ptr(py, slf).cast_unchecked::<Flags>();
            handle
                .get()
                .inner()
                .variants(py, context.as_deref(), Some(&keys), at.as_deref())
                .map(Bound::into_ptr)
        })
    }
}

/// `Flags.all(context=None, *, at=None)`.
unsafe extern "C" fn flags_all(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: see the module comment.
    unsafe {
        entry(|py| {
            let [context, at] = parse(py, &FLAGS_ALL, args, nargs, kwnames)?;
            let context = not_none(context);
            let at = not_none(at);
            let handle = Borrowed::from_ptr(py, slf).cast_unchecked::<Flags>();
            handle
                .get()
                .inner()
                .variants(py, context.as_deref(), None, at.as_deref())
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
            PyRuntimeError::new_err("flagrail: internal error (a panic) in variants()").restore(py);
            ptr::null_mut()
        }
    }
}
