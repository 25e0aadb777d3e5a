//! Test overrides (`flags.override(flag, variant)`): the scopes of one `Flags`, kept in a
//! `contextvars.ContextVar` so that each thread and each asyncio task sees only the overrides
//! it opened (a new thread starts with an empty context; a task copies its creator's context
//! when it is created). What a forced variant means is the core's
//! (`flagrail_core::live::overrides::forced`); this file keeps the scopes and converts.
//!
//! The evaluation hot path pays one relaxed atomic load for this; the context variable is read
//! only by a `Flags` that has opened an override at least once (in tests). Not "while a scope
//! is open": a task or a copied context created inside a block keeps its overrides after the
//! block has closed, as any context variable does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use flagrail_core::live::overrides::forced::check_forced;
use flagrail_core::Flags as CoreFlags;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

use crate::error::IntoPyResult;

/// The override scopes of one `Flags`.
pub(crate) struct OverrideScopes {
    /// Whether a scope was ever opened on this `Flags`; until then evaluation reads nothing
    /// else.
    used: AtomicBool,
    /// `ContextVar[dict[str, str] | None]`: flag key -> forced variant id in the current
    /// context. Each scope sets a new dict (never mutated), so resetting its token restores
    /// exactly what the enclosing scope saw.
    var: PyOnceLock<Py<PyAny>>,
}

impl Default for OverrideScopes {
    fn default() -> Self {
        OverrideScopes {
            used: AtomicBool::new(false),
            var: PyOnceLock::new(),
        }
    }
}

impl OverrideScopes {
    fn var<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyAny>> {
        let var = self.var.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            let class = py.import("contextvars")?.getattr("ContextVar")?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("default", py.None())?;
            Ok(class.call(("flagrail.override",), Some(&kwargs))?.unbind())
        })?;
        Ok(var.bind(py))
    }

    /// The variant forced for `flag` in the current context, if any.
    #[inline]
    pub(crate) fn forced<'py>(
        &self,
        py: Python<'py>,
        flag: &Bound<'py, PyString>,
    ) -> PyResult<Option<Bound<'py, PyString>>> {
        if !self.used.load(Ordering::Relaxed) {
            return Ok(None);
        }
        self.forced_in_context(py, flag)
    }

    #[cold]
    fn forced_in_context<'py>(
        &self,
        py: Python<'py>,
        flag: &Bound<'py, PyString>,
    ) -> PyResult<Option<Bound<'py, PyString>>> {
        let Some(var) = self.var.get(py) else {
            return Ok(None);
        };
        let current = var.bind(py).call_method0("get")?;
        let Ok(map) = current.cast::<PyDict>() else {
            return Ok(None);
        };
        match map.get_item(flag)? {
            Some(variant) => Ok(Some(variant.cast_into::<PyString>()?)),
            None => Ok(None),
        }
    }
}

/// A context manager that serves ``variant`` for ``flag`` inside its ``with`` block, in this thread
/// or asyncio task only.
#[pyclass(frozen, module = "flagrail", name = "Override")]
pub(crate) struct Override {
    core: CoreFlags,
    scopes: Arc<OverrideScopes>,
    flag: Py<PyString>,
    variant: Py<PyString>,
    /// Tokens of the `ContextVar.set` calls of this object's open scopes (innermost last).
    tokens: Mutex<Vec<Py<PyAny>>>,
}

impl Override {
    pub(crate) fn new(
        core: CoreFlags,
        scopes: Arc<OverrideScopes>,
        flag: Bound<'_, PyString>,
        variant: Bound<'_, PyString>,
    ) -> Override {
        Override {
            core,
            scopes,
            flag: flag.unbind(),
            variant: variant.unbind(),
            tokens: Mutex::new(Vec::new()),
        }
    }
}

#[pymethods]
impl Override {
    /// Opens the scope.
    ///
    /// Raises:
    ///     InvalidArgumentError: The live document has no such flag, or the flag no such
    ///         variant.
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let py = slf.py();
        let this = slf.get();
        let (flag, variant) = (this.flag.bind(py), this.variant.bind(py));
        check_forced(&this.core.document(), flag.to_str()?, variant.to_str()?)
            .into_py_result(py)?;
        let var = this.scopes.var(py)?;
        // Before the variable is set: no evaluation may miss it once set.
        this.scopes.used.store(true, Ordering::Relaxed);
        let next = PyDict::new(py);
        let current = var.call_method0("get")?;
        if let Ok(map) = current.cast::<PyDict>() {
            next.update(map.as_mapping())?;
        }
        next.set_item(flag, variant)?;
        let token = var.call_method1("set", (next,))?;
        this.tokens
            .lock()
            .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("override state poisoned"))?
            .push(token.unbind());
        Ok(slf)
    }

    /// Closes the scope, restoring what was in force before it, also when the block raised
    /// (the exception propagates).
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        let token = self
            .tokens
            .lock()
            .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("override state poisoned"))?
            .pop();
        let Some(token) = token else {
            return Ok(false);
        };
        self.scopes.var(py)?.call_method1("reset", (token,))?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Override(flag={:?}, variant={:?})",
            self.flag.bind(py).to_string(),
            self.variant.bind(py).to_string()
        )
    }
}
