//! JSON values to and from Python objects (documents, payloads, explanations, status).
//!
//! None of this runs on the evaluation path: payloads are converted once per document and
//! variant and cached (see `variant.rs`), explanations and status are administrative calls.

use flagrail_core::{Error as CoreError, Problem, ProblemKind};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyMappingProxy, PyString, PyTuple,
};
use serde_json::{Map, Number, Value};

/// Plain Python objects: dict, list, str, int, float, bool, None.
pub(crate) fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => number(py, n)?,
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => PyList::new(
            py,
            items
                .iter()
                .map(|item| to_python(py, item))
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any(),
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// Read-only Python objects for values shared between calls (payloads): objects become
/// `types.MappingProxyType` over a private dict and arrays become tuples, all the way down, so
/// that no caller can change what the next caller reads.
pub(crate) fn to_frozen<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Array(items) => PyTuple::new(
            py,
            items
                .iter()
                .map(|item| to_frozen(py, item))
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any(),
        Value::Object(map) => {
            let dict = frozen_dict(py, map)?;
            PyMappingProxy::new(py, dict.cast::<PyMapping>()?).into_any()
        }
        other => to_python(py, other)?,
    })
}

/// The private dict behind a frozen object (its values frozen too).
pub(crate) fn frozen_dict<'py>(
    py: Python<'py>,
    map: &Map<String, Value>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, item) in map {
        dict.set_item(PyString::intern(py, key), to_frozen(py, item)?)?;
    }
    Ok(dict)
}

fn number<'py>(py: Python<'py>, n: &Number) -> PyResult<Bound<'py, PyAny>> {
    if let Some(i) = n.as_i64() {
        Ok(i.into_pyobject(py)?.into_any())
    } else if let Some(u) = n.as_u64() {
        Ok(u.into_pyobject(py)?.into_any())
    } else {
        Ok(PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any())
    }
}

/// serde_json's own nesting limit, so `from_dict` and `from_json` reject the same documents
/// (and a dict that contains itself fails instead of overflowing the stack).
const MAX_DEPTH: usize = 128;

/// A Python object as a JSON value, for `Flags.from_dict`. Every value that has no JSON form is
/// reported as a document problem at its path, all of them at once, like the core's own
/// validation.
pub(crate) fn from_python(value: &Bound<'_, PyAny>) -> Result<Value, CoreError> {
    let mut problems = Vec::new();
    let converted = walk(value, "", 0, &mut problems);
    if problems.is_empty() {
        Ok(converted)
    } else {
        Err(CoreError::InvalidDocument { problems })
    }
}

fn join(path: &str, key: &str) -> String {
    // The core's path syntax: `flags.support-bot.rules[2].when.op`.
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn problem(problems: &mut Vec<Problem>, path: &str, kind: ProblemKind, message: String) {
    problems.push(Problem {
        path: path.to_string(),
        kind,
        message,
    });
}

fn walk(value: &Bound<'_, PyAny>, path: &str, depth: usize, problems: &mut Vec<Problem>) -> Value {
    if depth > MAX_DEPTH {
        problem(
            problems,
            path,
            ProblemKind::InvalidValue,
            format!("nested more than {MAX_DEPTH} levels deep"),
        );
        return Value::Null;
    }
    if let Ok(text) = value.cast::<PyString>() {
        return match text.to_str() {
            Ok(text) => Value::String(text.to_string()),
            Err(_) => {
                problem(
                    problems,
                    path,
                    ProblemKind::WrongType,
                    "a string with unpaired surrogates has no JSON form".to_string(),
                );
                Value::Null
            }
        };
    }
    if let Ok(flag) = value.cast::<PyBool>() {
        return Value::Bool(flag.is_true());
    }
    if value.cast::<PyInt>().is_ok() {
        if let Ok(i) = value.extract::<i64>() {
            return Value::from(i);
        }
        if let Ok(u) = value.extract::<u64>() {
            return Value::from(u);
        }
        // serde_json reads larger integer literals as floats; do the same.
        return float(value.extract::<f64>().ok(), path, problems);
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        return float(Some(f.value()), path, problems);
    }
    if value.is_none() {
        return Value::Null;
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = Map::new();
        for (key, item) in dict.iter() {
            let key_text = match key.cast::<PyString>().map(|k| k.to_str()) {
                Ok(Ok(text)) => text.to_string(),
                _ => {
                    problem(
                        problems,
                        path,
                        ProblemKind::WrongType,
                        format!("object keys must be strings, found {}", python_type(&key)),
                    );
                    continue;
                }
            };
            let item_path = join(path, &key_text);
            let converted = walk(&item, &item_path, depth + 1, problems);
            map.insert(key_text, converted);
        }
        return Value::Object(map);
    }
    let items: Option<Vec<Bound<'_, PyAny>>> = if let Ok(list) = value.cast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    };
    if let Some(items) = items {
        return Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| walk(item, &format!("{path}[{i}]"), depth + 1, problems))
                .collect(),
        );
    }
    if let Ok(mapping) = value.cast::<PyMapping>() {
        // Another mapping (a Variant payload, a MappingProxyType, an OrderedDict subclass…):
        // copied through a dict.
        let dict = PyDict::new(value.py());
        if dict.update(mapping).is_ok() {
            return walk(dict.as_any(), path, depth + 1, problems);
        }
    }
    problem(
        problems,
        path,
        ProblemKind::WrongType,
        format!("a {} has no JSON form", python_type(value)),
    );
    Value::Null
}

fn float(value: Option<f64>, path: &str, problems: &mut Vec<Problem>) -> Value {
    match value.and_then(Number::from_f64) {
        Some(n) => Value::Number(n),
        None => {
            problem(
                problems,
                path,
                ProblemKind::InvalidValue,
                "NaN, infinities and out-of-range numbers have no JSON form".to_string(),
            );
            Value::Null
        }
    }
}

fn python_type(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "object".to_string(), |n| n.to_string())
}

/// What a call's function returned, as JSON for outcome events (runs with a shadow compare the
/// two outputs offline). Never fails: a value with no JSON form (a datetime, an SDK response
/// object, a NaN …) is written as its `str()`, wherever it sits in the structure, and nesting
/// below the serde_json limit is cut the same way.
pub(crate) fn output_json(value: &Bound<'_, PyAny>) -> Value {
    lenient(value, 0)
}

fn lenient(value: &Bound<'_, PyAny>, depth: usize) -> Value {
    let as_text = |value: &Bound<'_, PyAny>| {
        Value::String(
            value
                .str()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("<{}>", python_type(value))),
        )
    };
    if depth > MAX_DEPTH {
        return as_text(value);
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Value::String(text.to_string_lossy().into_owned());
    }
    if let Ok(flag) = value.cast::<PyBool>() {
        return Value::Bool(flag.is_true());
    }
    if value.cast::<PyInt>().is_ok() {
        if let Ok(i) = value.extract::<i64>() {
            return Value::from(i);
        }
        if let Ok(u) = value.extract::<u64>() {
            return Value::from(u);
        }
        return as_text(value);
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        return Number::from_f64(f.value()).map_or_else(|| as_text(value), Value::Number);
    }
    if value.is_none() {
        return Value::Null;
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = Map::new();
        for (key, item) in dict.iter() {
            let key = match key.cast::<PyString>() {
                Ok(text) => text.to_string_lossy().into_owned(),
                Err(_) => match as_text(&key) {
                    Value::String(text) => text,
                    _ => continue,
                },
            };
            map.insert(key, lenient(&item, depth + 1));
        }
        return Value::Object(map);
    }
    if let Ok(list) = value.cast::<PyList>() {
        return Value::Array(list.iter().map(|item| lenient(&item, depth + 1)).collect());
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return Value::Array(tuple.iter().map(|item| lenient(&item, depth + 1)).collect());
    }
    as_text(value)
}
