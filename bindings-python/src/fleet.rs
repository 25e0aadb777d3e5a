//! `redis=URL`: the handle's budgets, guardrails, metrics and sticky pins shared with a fleet
//! through Redis (`flagrail_fleet::shared`). The binding only attaches the fleet state, offers
//! it as the pin store, and converts what it reports.

use std::sync::Arc;

use flagrail_fleet::shared::{FleetOptions, FleetState};
use pyo3::exceptions::PyConnectionError;
use pyo3::prelude::*;

use crate::convert::to_python;
use crate::error::{invalid_argument, IntoPyResult};
use crate::handle::Inner;

/// Attaches fleet state at `url` to `inner` and installs the Redis pin store.
pub(crate) fn attach(py: Python<'_>, inner: &Arc<Inner>, url: Option<&str>) -> PyResult<()> {
    attach_keyed(
        py,
        inner,
        url,
        flagrail_fleet::connection::DEFAULT_DOCUMENT_KEY,
    )
}

/// [`attach`] with the keys under the hash tag of `document_key` (a `from_redis` handle's
/// document key).
pub(crate) fn attach_keyed(
    py: Python<'_>,
    inner: &Arc<Inner>,
    url: Option<&str>,
    document_key: &str,
) -> PyResult<()> {
    let Some(url) = url else {
        return Ok(());
    };
    let options = FleetOptions {
        document_key: document_key.to_string(),
        ..FleetOptions::default()
    };
    let fleet = FleetState::attach(&inner.core, url, options.clone())
        .map_err(flagrail_core::Error::from)
        .into_py_result(py)?;
    if let Ok(mut slot) = inner.fleet.slot().lock() {
        *slot = Some((url.to_string(), options, fleet));
    }
    let store = Py::new(
        py,
        RedisPins {
            handle: Arc::downgrade(inner),
        },
    )?;
    inner.pins.install(Some(store.bind(py).as_any()))
}

/// In a forked child the fleet's thread is gone and its locks may be held by it: forget the
/// parent's state (never join or lock it) and attach afresh, as a new process of the fleet.
pub(crate) fn after_fork(inner: &Arc<Inner>) {
    let previous = match inner.fleet.slot().try_lock() {
        Ok(mut slot) => slot.take(),
        Err(_) => return,
    };
    let Some((url, options, parent)) = previous else {
        return;
    };
    parent.forget_in_forked_child();
    if let Ok(fleet) = FleetState::attach(&inner.core, &url, options.clone()) {
        if let Ok(mut slot) = inner.fleet.slot().try_lock() {
            *slot = Some((url, options, fleet));
        }
    }
}

fn fleet_of(py: Python<'_>, inner: &Inner) -> PyResult<Arc<FleetState>> {
    inner.fleet.get().ok_or_else(|| {
        invalid_argument(
            py,
            "this Flags does not share state: open it with redis=\"redis://…\"",
        )
    })
}

/// `Flags.fleet_metrics()`.
pub(crate) fn metrics<'py>(py: Python<'py>, inner: &Inner) -> PyResult<Bound<'py, PyAny>> {
    let fleet = fleet_of(py, inner)?;
    to_python(py, &fleet.fleet_metrics())
}

/// `Flags.fleet_metrics_text()`.
pub(crate) fn metrics_text(py: Python<'_>, inner: &Inner) -> PyResult<String> {
    Ok(fleet_of(py, inner)?.fleet_metrics_text())
}

/// The built-in Redis pin store a handle opened with ``redis=`` uses (installed for you; see
/// ``flagrail.PinStore`` for the protocol). ``get`` reads Redis with a 50 ms timeout and
/// raises ``ConnectionError`` while Redis is unreachable (the pin is then ignored and counted
/// in ``status()["sticky_store"]``); ``set`` and ``delete`` are queued and never wait.
#[pyclass(frozen, module = "flagrail", name = "RedisPinStore")]
pub(crate) struct RedisPins {
    handle: std::sync::Weak<Inner>,
}

impl RedisPins {
    fn fleet(&self) -> PyResult<Arc<FleetState>> {
        self.handle
            .upgrade()
            .and_then(|inner| inner.fleet.get())
            .ok_or_else(|| PyConnectionError::new_err("the fleet state of this Flags is closed"))
    }
}

#[pymethods]
impl RedisPins {
    /// The pinned variant id at ``key``, or ``None``.
    fn get(&self, py: Python<'_>, key: &str) -> PyResult<Option<String>> {
        let fleet = self.fleet()?;
        py.detach(|| fleet.pin_get(key))
            .map_err(|error| PyConnectionError::new_err(format!("{}: {error}", error.code())))
    }

    /// Pins ``key`` to ``value`` for ``ttl_seconds`` (queued).
    fn set(&self, key: &str, value: &str, ttl_seconds: f64) -> PyResult<()> {
        self.fleet()?.pin_set(key, value, ttl_seconds);
        Ok(())
    }

    /// Removes the pin at ``key`` (queued).
    fn delete(&self, key: &str) -> PyResult<()> {
        self.fleet()?.pin_delete(key);
        Ok(())
    }
}
