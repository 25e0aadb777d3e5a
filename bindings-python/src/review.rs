//! `diff(old, new, ...)`: the change review of `flagrail diff` as a dict (the logic, limits and
//! messages are `flagrail_core::review::review_documents`).

use flagrail_core::review::{review_documents, Population, ReviewOptions};
use flagrail_core::time::now_millis;
use pyo3::prelude::*;

use crate::convert::{from_python, to_python};
use crate::error::{invalid_argument, IntoPyResult};
use crate::time;

/// Reviews the change from ``old`` to ``new`` before it goes live, as ``flagrail diff`` does.
///
/// Both documents are evaluated by the core over a population at ``at``, and again at each
/// later step of the new document's ramps. The review shows what changed per flag and which
/// share of units moves from which variant to which: overall, per segment of ``new`` and
/// along its ramps.
///
/// Args:
///     old: The document now live, as a mapping (what ``json.load`` gives).
///     new: The proposed document.
///     users: Synthetic units to evaluate (default 10000, at most 1000000), drawn from both
///         documents' attributes with ``seed``: the same documents and seed give the same units.
///     seed: The synthetic population's seed (default 1).
///     population: Evaluate these contexts (mappings) instead of synthetic units.
///     at: The review instant: an aware datetime or an RFC 3339 string (default now).
///
/// Returns:
///     The review: ``old_revision``, ``new_revision``, ``at``, ``units``, ``changes``,
///     ``flags`` (per flag: ``moved``, ``moved_share``, ``moves``, ``segments``,
///     ``ramp_steps``), ``dangers`` (each with a stable ``code``: ``RAMP_JUMP``,
///     ``KILL_CALLS_MODEL``, ``REBUCKET``, ``REMOVED_VARIANT_SERVED``) and ``dangerous``.
///
/// Raises:
///     DocumentError: A document is invalid; each problem's path starts with ``old.`` or
///         ``new.`` (code ``INVALID_DOCUMENT``).
///     InvalidArgumentError: ``users`` or ``seed`` is out of range or given with
///         ``population``, or the population is empty, too large or holds a non-mapping.
#[pyfunction]
#[pyo3(signature = (old, new, *, users = None, seed = None, population = None, at = None))]
pub(crate) fn diff<'py>(
    py: Python<'py>,
    old: &Bound<'py, PyAny>,
    new: &Bound<'py, PyAny>,
    users: Option<i64>,
    seed: Option<i64>,
    population: Option<&Bound<'py, PyAny>>,
    at: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let old = from_python(old).into_py_result(py)?;
    let new = from_python(new).into_py_result(py)?;
    let at = match at {
        Some(at) => time::millis(at)?,
        None => now_millis(),
    };
    let given = match population {
        Some(given) => {
            let mut units = Vec::new();
            for unit in given.try_iter()? {
                units.push(from_python(&unit?).into_py_result(py)?);
            }
            Some(units)
        }
        None => None,
    };
    // Python ints as the host number the core checks (whole, in range) for both languages.
    let population = Population::of_options(users.map(|n| n as f64), seed.map(|s| s as f64), given)
        .into_py_result(py)?;
    let review = py
        .detach(|| review_documents(&old, &new, population, &ReviewOptions { at }))
        .into_py_result(py)?;
    let value = serde_json::to_value(&review)
        .map_err(|err| invalid_argument(py, format!("review: {err}")))?;
    to_python(py, &value)
}
