//! Core errors as Python exceptions.
//!
//! The exception classes are defined in Python (`flagrail/exceptions.py`) so that they are
//! ordinary, documented, picklable classes that users can subclass and catch; the native module
//! imports them once and instantiates them with the core's stable `code` and, for document
//! errors, every problem with its path.

use flagrail_core::Error as CoreError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

const EXCEPTIONS: &str = "flagrail.exceptions";

static DOCUMENT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static SOURCE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INVALID_ARGUMENT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static FLAG_NOT_FOUND_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ALL_ATTEMPTS_FAILED_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CALL_DEPTH_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static PROBLEM: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Converts a core error into the matching `flagrail` exception.
pub(crate) fn to_py_err(py: Python<'_>, err: &CoreError) -> PyErr {
    to_py_err_with(py, err, |_| Ok(()))
}

/// [`to_py_err`] with more keyword arguments for the exception (`extra` sets them), for
/// what the binding knows beyond the core error (a failed call's attempts and run id).
pub(crate) fn to_py_err_with(
    py: Python<'_>,
    err: &CoreError,
    extra: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyErr {
    match build(py, err, extra) {
        Ok(exception) => exception,
        // Only reachable if the Python half of the package is broken (exceptions.py missing);
        // that import error is the more useful one to show.
        Err(import_failure) => import_failure,
    }
}

fn build(
    py: Python<'_>,
    err: &CoreError,
    extra: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyResult<PyErr> {
    let (class, cell) = match err {
        CoreError::InvalidDocument { .. } => ("DocumentError", &DOCUMENT_ERROR),
        CoreError::SourceUnreachable { .. }
        | CoreError::SignatureInvalid { .. }
        | CoreError::NotRegularFile { .. } => ("SourceError", &SOURCE_ERROR),
        CoreError::InvalidArgument { .. } => ("InvalidArgumentError", &INVALID_ARGUMENT_ERROR),
        CoreError::FlagNotFound { .. } => ("FlagNotFoundError", &FLAG_NOT_FOUND_ERROR),
        CoreError::AllAttemptsFailed { .. } => {
            ("AllAttemptsFailedError", &ALL_ATTEMPTS_FAILED_ERROR)
        }
        CoreError::CallTooDeep { .. } => ("CallDepthError", &CALL_DEPTH_ERROR),
    };
    let class = cell.import(py, EXCEPTIONS, class)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("code", err.code())?;
    match err {
        CoreError::InvalidDocument { problems } => {
            let problem_class = PROBLEM.import(py, EXCEPTIONS, "Problem")?;
            let items = problems
                .iter()
                .map(|p| problem_class.call1((p.path.as_str(), p.code(), p.message.as_str())))
                .collect::<PyResult<Vec<_>>>()?;
            kwargs.set_item("problems", PyTuple::new(py, items)?)?;
        }
        CoreError::SourceUnreachable { source, .. }
        | CoreError::SignatureInvalid { source, .. }
        | CoreError::NotRegularFile { source, .. } => {
            kwargs.set_item("source", source.as_str())?;
        }
        CoreError::FlagNotFound { flag }
        | CoreError::AllAttemptsFailed { flag, .. }
        | CoreError::CallTooDeep { flag, .. } => {
            kwargs.set_item("flag", flag.as_str())?;
        }
        CoreError::InvalidArgument { .. } => {}
    }
    extra(&kwargs)?;
    let instance = class.call((err.to_string(),), Some(&kwargs))?;
    Ok(PyErr::from_value(instance))
}

/// `InvalidArgumentError` with a message (code `INVALID_ARGUMENT`).
pub(crate) fn invalid_argument(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py_err(
        py,
        &CoreError::InvalidArgument {
            message: message.into(),
        },
    )
}

/// `result.into_py_result(py)?` at call sites: the one-liner every binding method uses.
pub(crate) trait IntoPyResult<T> {
    fn into_py_result(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, CoreError> {
    fn into_py_result(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|err| to_py_err(py, &err))
    }
}
