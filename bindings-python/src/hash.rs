//! `bucket(salt, unit, total)`: bucketing v1 (docs/bucketing.md), the same function the core
//! evaluates splits with.

use flagrail_core::hash::bucket_i64;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};

use flagrail_core::Error as CoreError;

use crate::error::{invalid_argument, to_py_err};

/// The bucket in ``range(total)`` that ``unit`` falls into under ``salt``.
///
/// MurmurHash3 x86_32 (seed 0) of ``salt + unit``, scaled to ``total`` (bucketing v1,
/// identical in Rust, Python and Node). Percentages in flag documents are weights over 100000.
///
/// Args:
///     salt: The flag's salt (by default the flag key).
///     unit: The bucketing unit: a str as is, or an int (hashed as its decimal text).
///     total: The total weight, 1 to 4294967295.
///
/// Raises:
///     InvalidArgumentError: ``total`` is out of range, ``unit`` is an int outside the
///         64-bit signed range, or ``salt`` or ``unit`` is a str with unpaired surrogates
///         (it has no UTF-8 form; code ``INVALID_ARGUMENT``).
///     TypeError: ``unit`` is neither a str nor an int.
#[pyfunction]
#[pyo3(signature = (salt, unit, total = 100_000))]
pub(crate) fn bucket(
    py: Python<'_>,
    salt: &Bound<'_, PyString>,
    unit: &Bound<'_, PyAny>,
    total: i64,
) -> PyResult<u32> {
    let salt = well_formed(py, salt, "salt")?;
    let total = match u32::try_from(total) {
        Ok(total) if total > 0 => total,
        _ => {
            return Err(invalid_argument(
                py,
                format!("total must be between 1 and 4294967295, got {total}"),
            ))
        }
    };
    let bucketed = if let Ok(text) = unit.cast::<PyString>() {
        flagrail_core::bucket(salt, well_formed(py, text, "unit")?, total)
    } else if unit.cast::<PyInt>().is_ok() && unit.cast::<PyBool>().is_err() {
        let Ok(int) = unit.extract::<i64>() else {
            return Err(invalid_argument(
                py,
                format!("an int unit must fit in 64 bits (signed), got {unit}"),
            ));
        };
        bucket_i64(salt, int, total)
    } else {
        return Err(PyTypeError::new_err(format!(
            "unit must be a str or an int, not {}",
            unit.get_type().name()?
        )));
    };
    // `total` was checked above, so the core always answers.
    bucketed.ok_or_else(|| invalid_argument(py, "total must be at least 1"))
}

/// The UTF-8 text of a str, or `INVALID_ARGUMENT` for one with unpaired surrogates (instead of
/// Python's `UnicodeEncodeError`: the same error as Node's `bucket`).
fn well_formed<'a>(py: Python<'_>, text: &'a Bound<'_, PyString>, name: &str) -> PyResult<&'a str> {
    text.to_str()
        .map_err(|_| to_py_err(py, &CoreError::unpaired_surrogates(name)))
}
