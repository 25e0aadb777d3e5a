//! Raw CPython reads for the hot path: a dict probe, a string's UTF-8, a reference count and
//! the items of a key list.
//!
//! Raw because PyO3's safe forms return `PyResult<Option<Bound>>` and the like through memory,
//! and reading them back costs a store-forwarding stall per attribute on every evaluation. With
//! `fast.rs`, `batch.rs` and `fork.rs` (locks held across `fork()`), the only modules of the
//! crate that use `unsafe` (the workspace denies it).
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
    let Some(sequence) = Sequence::of(keys) else {
        return false;
    };
    usize::try_from(sequence.size).ok() == Some(expected.len())
        && expected
            .iter()
            .enumerate()
            .all(|(index, key)| std::ptr::eq(sequence.item(index), key.as_ptr()))
}

/// The first item of a non-empty `list` or `tuple`, borrowed (only its address is used).
#[inline]
pub(crate) fn first_item(keys: &Bound<'_, PyAny>) -> Option<*mut ffi::PyObject> {
    let sequence = Sequence::of(keys)?;
    (sequence.size > 0).then(|| sequence.item(0))
}

/// An exact `list` or `tuple` and its size, read once.
struct Sequence<'a> {
    object: &'a Bound<'a, PyAny>,
    list: bool,
    size: ffi::Py_ssize_t,
}

impl<'a> Sequence<'a> {
    #[inline]
    fn of(object: &'a Bound<'a, PyAny>) -> Option<Sequence<'a>> {
        let list = object.is_exact_instance_of::<PyList>();
        if !list && !object.is_exact_instance_of::<PyTuple>() {
            return None;
        }
        // SAFETY: a live list or tuple, and the thread is attached (a `Bound` exists).
        let size = unsafe {
            if list {
                ffi::PyList_Size(object.as_ptr())
            } else {
                ffi::PyTuple_Size(object.as_ptr())
            }
        };
        Some(Sequence { object, list, size })
    }

    /// Item `index`, borrowed; null (with an error set) past the end, which callers never ask:
    /// they stay below `size`, and no Python code runs between reading it and the items.
    #[inline]
    fn item(&self, index: usize) -> *mut ffi::PyObject {
        let Ok(index) = ffi::Py_ssize_t::try_from(index) else {
            return std::ptr::null_mut();
        };
        // SAFETY: as in `of`; the call only reads.
        unsafe {
            if self.list {
                ffi::PyList_GetItem(self.object.as_ptr(), index)
            } else {
                ffi::PyTuple_GetItem(self.object.as_ptr(), index)
            }
        }
    }
}
