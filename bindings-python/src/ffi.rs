//! Raw CPython reads for the hot path: a dict probe, a string's UTF-8 and a reference count.
//!
//! Raw because PyO3's safe forms return `PyResult<Option<Bound>>` and the like through memory,
//! and reading them back costs a store-forwarding stall per attribute on every evaluation. With
//! `fast.rs`, the only modules of the crate that use `unsafe` (the workspace denies it).
#![allow(unsafe_code)]

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

/// `dict[key]` as a new reference; `None` when absent. An error raised while probing (by a
/// colliding key's `__eq__`) is cleared and reads as absent: a flag read never raises.
///
/// Raw because PyO3's `get_item` returns a `PyResult<Option<Bound>>` through memory, and
/// reading it back costs a store-forwarding stall per attribute on the hot path.
#[inline(always)]
pub(crate) fn dict_get<'py>(
    dict: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
) -> Option<Bound<'py, PyAny>> {
    // SAFETY: both pointers are live objects of the right types, and the thread is attached
    // (a `Bound` exists).
    unsafe {
        let value = ffi::PyDict_GetItemWithError(dict.as_ptr(), key.as_ptr());
        if value.is_null() {
            if !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear();
            }
            return None;
        }
        // The dict's reference is borrowed; the caller gets its own.
        Some(Bound::from_borrowed_ptr(dict.py(), value))
    }
}

/// The UTF-8 text of `text`, borrowed from the string object (which caches it); `None` for a
/// string with lone surrogates. Raw for the same reason as [`dict_get`].
#[inline(always)]
pub(crate) fn utf8<'a>(text: &'a Bound<'_, PyString>) -> Option<&'a str> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `text` is a live str and the thread is attached. The buffer CPython returns is
    // valid UTF-8 of `size` bytes, owned by the string object, and lives as long as it: at
    // least `'a`.
    unsafe {
        let data = ffi::PyUnicode_AsUTF8AndSize(text.as_ptr(), &mut size);
        if data.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        let size = usize::try_from(size).ok()?;
        Some(std::str::from_utf8_unchecked(std::slice::from_raw_parts(
            data.cast::<u8>(),
            size,
        )))
    }
}

/// Whether `object`'s only reference is the caller's.
#[inline(always)]
pub(crate) fn is_only_reference(object: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a live object; reading its reference count has no other effect.
    unsafe { ffi::Py_REFCNT(object.as_ptr()) == 1 }
}

/// Whether `keys` is a `list` or `tuple` holding exactly the objects `expected`, in order
/// (compared by identity): how `variants()` recognises a key list it has seen. Raw so that no
/// item is taken and released just to compare its address.
#[inline]
pub(crate) fn same_items(keys: &Bound<'_, PyAny>, expected: &[Py<PyString>]) -> bool {
    let list = keys.is_exact_instance_of::<PyList>();
    if !list && !keys.is_exact_instance_of::<PyTuple>() {
        return false;
    }
    let keys = keys.as_ptr();
    // SAFETY: `keys` is a live list or tuple and the thread is attached. Both calls only read:
    // the size, then borrowed items at indices below it (nothing runs in between that could
    // shrink a list).
    unsafe {
        let size = if list {
            ffi::PyList_Size(keys)
        } else {
            ffi::PyTuple_Size(keys)
        };
        if usize::try_from(size).ok() != Some(expected.len()) {
            return false;
        }
        expected.iter().enumerate().all(|(index, key)| {
            let index = index as ffi::Py_ssize_t;
            let item = if list {
                ffi::PyList_GetItem(keys, index)
            } else {
                ffi::PyTuple_GetItem(keys, index)
            };
            std::ptr::eq(item, key.as_ptr())
        })
    }
}

/// The first item of a non-empty `list` or `tuple`, borrowed (only its address is used).
#[inline]
pub(crate) fn first_item(keys: &Bound<'_, PyAny>) -> Option<*mut ffi::PyObject> {
    let list = keys.is_exact_instance_of::<PyList>();
    if !list && !keys.is_exact_instance_of::<PyTuple>() {
        return None;
    }
    // SAFETY: a live list or tuple, the thread attached; index 0 is read only when the size
    // says it exists, so no error is set.
    unsafe {
        let keys = keys.as_ptr();
        let size = if list {
            ffi::PyList_Size(keys)
        } else {
            ffi::PyTuple_Size(keys)
        };
        if size < 1 {
            return None;
        }
        Some(if list {
            ffi::PyList_GetItem(keys, 0)
        } else {
            ffi::PyTuple_GetItem(keys, 0)
        })
    }
}
