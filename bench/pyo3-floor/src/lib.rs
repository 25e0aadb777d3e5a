//! The floor that `bench/python_eval.py` reports beside `flags.variant`: the cheapest PyO3
//! call that evaluates the bench scenario from the caller's dict, written by hand for exactly
//! that scenario (the row "a PyO3 call that evaluates the whole scenario from that dict" of
//! the floors of docs/benchmarks.md). No document, no rules engine, no result object: two dict reads, one
//! string compare, one bucket with the core's hash, an interned id back.
//!
//! It exists so that one run measures both: machines differ (docs/benchmarks.md asks for ratios
//! taken in one run), and this is what any PyO3 evaluator pays on the machine at hand.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3::{intern, Bound};

/// `chat-model`: `segment == "internal"` → `v3`, else 90/5/5 over `user_id`.
#[pyfunction]
fn variant<'py>(
    py: Python<'py>,
    flag: &Bound<'py, PyString>,
    context: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyString>> {
    let salt = flag.to_str()?;
    let segment = context.get_item(intern!(py, "segment"))?;
    if let Some(segment) = segment {
        if segment.cast::<PyString>()?.to_str()? == "internal" {
            return Ok(intern!(py, "v3").clone());
        }
    }
    let Some(user) = context.get_item(intern!(py, "user_id"))? else {
        return Ok(intern!(py, "control").clone());
    };
    let user = user.cast_into::<PyString>()?;
    let bucket = flagrail_core::bucket(salt, user.to_str()?, 100_000).unwrap_or(0);
    Ok(match bucket {
        0..90_000 => intern!(py, "control"),
        90_000..95_000 => intern!(py, "v2"),
        _ => intern!(py, "v3"),
    }
    .clone())
}

#[pymodule(gil_used = false)]
fn flagrail_pyo3_floor(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(variant, m)?)
}
