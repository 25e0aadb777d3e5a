//! The `exposures=` option of the loaders: read from Python, validated and kept by the core
//! (`flagrail_core::runtime::exposures`).

use flagrail_core::runtime::exposures::ExposureOptions;
use flagrail_core::Flags as CoreFlags;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::error::{invalid_argument, IntoPyResult};

/// The option names as Python spells them, for the core's messages.
const NAMES: [&str; 3] = ["window", "sample", "max_keys"];

/// Turns on exposures of plain reads for `core` when `exposures` asks for them: `None` or
/// `False` leaves them off, `True` uses the defaults, a dict sets `window` (seconds),
/// `sample` (0 to 1) and `max_keys`.
pub(crate) fn enable(
    py: Python<'_>,
    core: &CoreFlags,
    exposures: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let Some(exposures) = exposures.filter(|e| !e.is_none()) else {
        return Ok(());
    };
    let options = if let Ok(on) = exposures.cast::<PyBool>() {
        if !on.is_true() {
            return Ok(());
        }
        ExposureOptions::default()
    } else if let Ok(dict) = exposures.cast::<PyDict>() {
        let mut values: [Option<f64>; 3] = [None; 3];
        for (key, value) in dict.iter() {
            let name: String = key.extract().map_err(|_| {
                invalid_argument(
                    py,
                    "exposures: keys must be strings (window, sample, max_keys)",
                )
            })?;
            let Some(slot) = NAMES.iter().position(|n| *n == name) else {
                return Err(invalid_argument(
                    py,
                    format!(
                        "exposures: unknown option {name:?} (expected window, sample, max_keys)"
                    ),
                ));
            };
            if value.is_none() {
                continue;
            }
            if value.is_instance_of::<PyBool>() {
                return Err(invalid_argument(
                    py,
                    format!("exposures: {name} must be a number, got a bool"),
                ));
            }
            let number: f64 = value
                .extract()
                .map_err(|_| invalid_argument(py, format!("exposures: {name} must be a number")))?;
            values[slot] = Some(number);
        }
        // Seconds in Python, milliseconds in the core.
        let window_ms = values[0].map(|seconds| seconds * 1000.0);
        ExposureOptions::new(window_ms, values[1], values[2], NAMES).into_py_result(py)?
    } else {
        return Err(invalid_argument(
            py,
            "exposures must be a dict (window, sample, max_keys), True or None",
        ));
    };
    core.enable_exposures(options).into_py_result(py)
}
