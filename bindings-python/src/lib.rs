//! Python bindings: convert arguments, call flagrail-core, convert results.
use pyo3::prelude::*;

/// bucket(salt, unit, total=100000) -> int
#[pyfunction]
#[pyo3(signature = (salt, unit, total = 100_000))]
fn bucket(salt: &str, unit: &str, total: u32) -> PyResult<u32> {
    flagrail_core::bucket(salt, unit, total)
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("total must be at least 1"))
}

#[pymodule]
fn _flagrail(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(bucket, m)?)?;
    Ok(())
}
