//! The `at=` argument: the instant a simulation evaluates at (ramps read it instead of the
//! clock).

use flagrail_core::time::{parse_timestamp, Millis};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{IntoPyDict, PyString, PyType};

use crate::error::invalid_argument;

static DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static EPOCH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MILLISECOND: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Unix milliseconds of an aware `datetime` or an RFC 3339 string (`"2026-11-21T09:00:00Z"`,
/// or a bare date, midnight UTC).
pub(crate) fn millis(at: &Bound<'_, PyAny>) -> PyResult<Millis> {
    let py = at.py();
    if let Ok(text) = at.cast::<PyString>() {
        let text = text.to_str()?;
        return parse_timestamp(text).ok_or_else(|| {
            invalid_argument(
                py,
                format!(
                    "at: {text:?} is not an RFC 3339 timestamp such as \"2026-11-21T09:00:00Z\""
                ),
            )
        });
    }
    let datetime = DATETIME.import(py, "datetime", "datetime")?;
    if at.is_instance(datetime)? {
        // A naive datetime could be local time or UTC; guessing would shift a ramp by hours.
        if at.call_method0("utcoffset")?.is_none() {
            return Err(invalid_argument(
                py,
                "at: a naive datetime is ambiguous; pass an aware one, \
                 e.g. datetime(2026, 11, 21, tzinfo=timezone.utc)",
            ));
        }
        let epoch = EPOCH.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            let utc = py.import("datetime")?.getattr("timezone")?.getattr("utc")?;
            Ok(datetime.call1((1970, 1, 1, 0, 0, 0, 0, utc))?.unbind())
        })?;
        let millisecond = MILLISECOND.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            let timedelta = py.import("datetime")?.getattr("timedelta")?;
            Ok(timedelta
                .call((), Some(&[("milliseconds", 1)].into_py_dict(py)?))?
                .unbind())
        })?;
        // Exact integer arithmetic on the datetime, not a float timestamp.
        let elapsed = at.sub(epoch.bind(py))?.floor_div(millisecond.bind(py))?;
        return elapsed
            .extract::<Millis>()
            .map_err(|_| invalid_argument(py, "at: the datetime is out of range"));
    }
    Err(PyTypeError::new_err(format!(
        "at must be a datetime or an RFC 3339 string, not {}",
        at.get_type().name()?
    )))
}
