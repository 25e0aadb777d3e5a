//! Reusing result objects that nobody holds any more: the one place that decides it.
//!
//! Why: allocating, initialising and freeing a `Variant` per `flags.variant(...)` costs more
//! than the decision. Most callers read a field or two of a result and drop it, so each
//! document keeps a few result objects per flag and variant ([`Pool`]) and hands one out again,
//! with the new outcome written in, once the caller has let go of it.
//!
//! The invariant: **a result that anyone else still holds is never rewritten.** An object is
//! reused only when the pool's reference is its only one (reference count 1), checked and
//! rewritten under the GIL with no Python code in between, so no Python code and no other
//! thread can observe the rewrite. `Variant` has no weak references (they would see it without
//! a count). Its id and document are those of its pool slot, so only the outcome (rule, bucket,
//! reason …) changes, and `Variant::reuse_for` refuses an outcome of another flag or variant.
//! tests/python/test_reuse.py tests the invariant (results kept in lists, dicts, frames and by
//! other threads keep their own fields), not only that reuse happens.
//!
//! The off switch: `FLAGRAIL_REUSE_RESULTS=0` in the environment at import makes every call
//! allocate a new result (for debugging, or to rule this module out); results are then never
//! shared except the unit-independent ones of `live.rs`. A free-threaded interpreter running
//! without its GIL never reuses either (the count could change under us).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::ffi::is_only_reference;
use crate::variant::{DocCache, Outcome, Variant};

/// The environment variable that turns reuse off (`0`, `false`, `off` or `no`).
pub(crate) const SWITCH: &str = "FLAGRAIL_REUSE_RESULTS";

/// A few per variant: a loop's previous result is still bound to its variable while the next
/// call runs, and a caller may keep some results around (a handler's request state, the last
/// result of an earlier loop) without making every later call allocate.
const PER_VARIANT: usize = 4;

/// Whether result objects may be reused (decided once, at import).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Decides [`ENABLED`]: the GIL must serialize every thread, and the switch must not be off.
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    let gil_enabled = match sys.getattr("_is_gil_enabled") {
        Ok(is_enabled) => is_enabled.call0()?.is_truthy()?,
        // Before 3.13 there is no free-threaded build: the GIL is always there.
        Err(_) => true,
    };
    let switched_off = std::env::var(SWITCH).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        )
    });
    ENABLED.store(gil_enabled && !switched_off, Ordering::Relaxed);
    Ok(())
}

/// Whether ``Flags.variant`` hands out result objects nobody holds any more again (decided at
/// import: off with ``FLAGRAIL_REUSE_RESULTS=0``, and without a GIL). For tests and debugging.
#[pyfunction]
pub(crate) fn _reuses_results() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The reusable result objects of one flag and variant of one document, created on first use.
pub(crate) struct Pool(PyOnceLock<[Py<Variant>; PER_VARIANT]>);

impl Pool {
    pub(crate) fn new() -> Pool {
        Pool(PyOnceLock::new())
    }

    /// A result object of this pool that no one else holds, given `outcome` (which must be of
    /// the pool's flag and variant, whose interned id `id` makes new objects); `None` when
    /// every object is held, or reuse is off.
    #[inline]
    pub(crate) fn take<'py>(
        &self,
        py: Python<'py>,
        cache: &Arc<DocCache>,
        outcome: &Outcome,
        id: impl FnOnce() -> Py<PyAny>,
    ) -> PyResult<Option<Bound<'py, Variant>>> {
        if !ENABLED.load(Ordering::Relaxed) {
            return Ok(None);
        }
        // The filled pool read inline; filling it (once per document, flag and variant) out
        // of line.
        let objects = match self.0.get(py) {
            Some(objects) => objects,
            None => self.fill(py, cache, outcome, id)?,
        };
        for object in objects {
            let object = object.bind(py);
            // The invariant (see the module docs): only an object whose one reference is ours.
            if is_only_reference(object.as_any()) && object.get().reuse_for(outcome) {
                return Ok(Some(object.clone()));
            }
        }
        Ok(None)
    }

    #[cold]
    #[inline(never)]
    fn fill(
        &self,
        py: Python<'_>,
        cache: &Arc<DocCache>,
        outcome: &Outcome,
        id: impl FnOnce() -> Py<PyAny>,
    ) -> PyResult<&[Py<Variant>; PER_VARIANT]> {
        self.0.get_or_try_init(py, || -> PyResult<_> {
            let id = id();
            let mut objects = Vec::with_capacity(PER_VARIANT);
            for _ in 0..PER_VARIANT {
                let variant = Variant::found(Arc::clone(cache), *outcome, id.clone_ref(py));
                objects.push(Py::new(py, variant)?);
            }
            objects
                .try_into()
                .map_err(|_| PyRuntimeError::new_err("reusable results"))
        })
    }
}
