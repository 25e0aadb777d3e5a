//! Python bindings of flagrail: convert arguments, call `flagrail_core`, convert results.
//!
//! The native module is private (`flagrail._flagrail`); the `flagrail` package re-exports it
//! with the exception classes, the fork hook and the typed stubs. One file per core module:
//! [`live`] (the `Flags` and `Flag` classes), [`handle`] (the state behind them and the
//! evaluation hot path), [`variant`] (the result), [`runtime`] (`call`, trackers, metrics,
//! events), [`context`] (reading the caller's dict), [`hash`] (`bucket`), [`error`], [`time`]
//! (`at=`), [`sticky`] (a shared pin store), plus [`convert`] (JSON values), [`reuse`] (handing
//! out result objects nobody holds, with its off switch), [`fast`] (the raw C entry points of
//! `variant`), [`batch`] (those of `variants` and `all`) and [`ffi`] (raw dict, string and
//! reference-count reads); the last three are the crate's only `unsafe` code. No module imports one that imports it back
//! (`tools/check_layers.py`).

use pyo3::prelude::*;

mod batch;
mod context;
mod convert;
mod error;
mod exposures;
mod fast;
mod ffi;
mod fleet;
mod fork;
mod handle;
mod hash;
mod live;
mod overrides;
mod reuse;
mod review;
mod runtime;
mod sticky;
mod time;
mod variant;
mod workers;

/// The native half of the ``flagrail`` package. Import from ``flagrail``, not from here.
#[pymodule(gil_used = false)]
fn _flagrail(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<live::Flags>()?;
    m.add_class::<live::Flag>()?;
    m.add_class::<overrides::Override>()?;
    m.add_class::<variant::Variant>()?;
    m.add_class::<runtime::CallResult>()?;
    m.add_class::<runtime::Attempt>()?;
    m.add_class::<runtime::Output>()?;
    m.add_class::<runtime::Tracker>()?;
    m.add_class::<runtime::PyRun>()?;
    m.add_class::<workers::PySlot>()?;
    m.add_class::<fleet::RedisPins>()?;
    m.add_function(wrap_pyfunction!(hash::bucket, m)?)?;
    m.add_function(wrap_pyfunction!(review::diff, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_before_fork, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_after_fork_in_parent, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_hold_locks_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(live::_before_exit, m)?)?;
    m.add_function(wrap_pyfunction!(workers::_forget_call_threads, m)?)?;
    m.add_function(wrap_pyfunction!(workers::_stop_call_threads, m)?)?;
    m.add_function(wrap_pyfunction!(workers::_next_call_job, m)?)?;
    m.add_function(wrap_pyfunction!(reuse::_reuses_results, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::_enter_call, m)?)?;
    m.add("_MAX_CALL_DEPTH", flagrail_core::live::MAX_CALL_DEPTH)?;
    // After the classes exist: swaps in the raw entry points of `variant`.
    fast::install(m.py())?;
    // Likewise for `variants` and `all` (several flags for one context).
    batch::install(m.py())?;
    reuse::init(m.py())?;
    m.add("HASH_VERSION", flagrail_core::HASH_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
