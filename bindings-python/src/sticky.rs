//! Sticky conversations with a shared pin store: `Flags.use_pin_store(store)`.
//!
//! By default the core keeps pins in a bounded in-memory store per handle, and the binding has
//! nothing to do. A user store (Redis, memcached, a database …) is a duck-typed object with
//! `get(key)`, `set(key, value, ttl_seconds)` and `delete(key)`; keys are
//! `flagrail/pin/<flag>/<conversation>` ([`pin_key`]). For a flag with `sticky`, the binding reads
//! the pin before the decision, hands it to the core (`PinSource::Given`, which writes nothing),
//! then carries out the decision's [`PinEffect`] on the store.
//!
//! A store must never take flags down with it: an exception, an awaitable on a sync path, or a
//! value that is not a str, bytes or None is counted (with the last message, in
//! `status()["sticky_store"]`) and the evaluation goes on without the pin, writing nothing.
//! `acall` reads and writes through `flagrail._call`, which awaits async stores.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use flagrail_core::document::sticky::{conversation_of, Sticky};
use flagrail_core::evaluate::PinEffect;
use flagrail_core::runtime::sticky::pin_key;
use flagrail_core::{Context, Decision};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use pyo3::{intern, IntoPyObjectExt};
use serde_json::{json, Value};

/// The pin store of one handle: the user's store (or none: the core's memory store) and the
/// errors it raised.
#[derive(Default)]
pub(crate) struct PinStore {
    custom: ArcSwapOption<Py<PyAny>>,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// What the store said about one conversation.
pub(crate) struct PinRead {
    pub(crate) key: String,
    pub(crate) pin: Option<String>,
    /// `false` when the read failed: the decision is made without a pin and written nowhere.
    pub(crate) ok: bool,
}

/// What the caller does to the store after a decision.
pub(crate) enum PinWrite {
    Set {
        key: String,
        variant: String,
        ttl_seconds: f64,
    },
    Delete {
        key: String,
    },
}

impl PinStore {
    /// The user's store, if one is installed (loaded once per evaluation of a sticky flag).
    #[inline]
    pub(crate) fn custom(&self) -> Option<Arc<Py<PyAny>>> {
        self.custom.load_full()
    }

    /// Installs `store` (`None`: back to the in-memory store).
    pub(crate) fn install(&self, store: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        if let Some(store) = store {
            for method in ["get", "set", "delete"] {
                let callable = store
                    .getattr_opt(method)?
                    .is_some_and(|attr| attr.is_callable());
                if !callable {
                    return Err(PyTypeError::new_err(format!(
                        "a pin store needs get(key), set(key, value, ttl_seconds) and \
                         delete(key) methods; {} has no callable {method}",
                        store.get_type().name()?
                    )));
                }
            }
        }
        self.custom
            .store(store.map(|s| Arc::new(s.clone().unbind())));
        Ok(())
    }

    /// Counts a failure of `method` (`get`, `set`, `delete`) with its message.
    pub(crate) fn record_error(&self, method: &str, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(format!("{method}: {message}"));
        }
    }

    /// Counts an exception raised by `method` (`acall`, whose store calls are made in Python).
    pub(crate) fn record_exception(&self, method: &str, exc: &Bound<'_, PyAny>) {
        self.record_error(method, describe(exc));
    }

    /// The pin `acall` read (awaited) for `key`: `raw` is what `get` returned, or `ok` is
    /// false when it raised (already counted).
    pub(crate) fn accept(&self, key: String, raw: &Bound<'_, PyAny>, ok: bool) -> PinRead {
        if !ok {
            return PinRead {
                key,
                pin: None,
                ok: false,
            };
        }
        match pin_value(raw) {
            Ok(pin) => PinRead { key, pin, ok: true },
            Err(message) => {
                self.record_error("get", message);
                PinRead {
                    key,
                    pin: None,
                    ok: false,
                }
            }
        }
    }

    /// `status()["sticky_store"]`.
    pub(crate) fn status_json(&self) -> Value {
        let last = self.last_error.lock().ok().and_then(|l| l.clone());
        json!({
            "kind": if self.custom.load().is_some() { "custom" } else { "memory" },
            "errors": self.errors.load(Ordering::Relaxed),
            "last_error": last,
        })
    }

    /// The store key of the conversation in `ctx`, for a sticky flag; `None` when the context
    /// names no conversation.
    pub(crate) fn key_of<C: Context + ?Sized>(
        flag: &str,
        sticky: &Sticky,
        ctx: &C,
    ) -> Option<String> {
        conversation_of(sticky, ctx).map(|conversation| pin_key(flag, &conversation))
    }

    /// Reads the pin of `key` synchronously (an awaitable counts as an error).
    pub(crate) fn read(&self, py: Python<'_>, store: &Py<PyAny>, key: String) -> PinRead {
        let returned = store
            .bind(py)
            .call_method1(intern!(py, "get"), (key.as_str(),));
        let pin = match returned {
            Ok(value) => refuse_awaitable(&value).and_then(|()| pin_value(&value)),
            Err(err) => Err(describe(err.value(py).as_any())),
        };
        match pin {
            Ok(pin) => PinRead { key, pin, ok: true },
            Err(message) => {
                self.record_error("get", message);
                PinRead {
                    key,
                    pin: None,
                    ok: false,
                }
            }
        }
    }

    /// Carries out `write` on the store synchronously.
    pub(crate) fn write(&self, py: Python<'_>, store: &Py<PyAny>, write: PinWrite) {
        let store = store.bind(py);
        let (method, returned) = match write {
            PinWrite::Set {
                key,
                variant,
                ttl_seconds,
            } => (
                "set",
                store.call_method1(intern!(py, "set"), (key, variant, ttl_seconds)),
            ),
            PinWrite::Delete { key } => {
                ("delete", store.call_method1(intern!(py, "delete"), (key,)))
            }
        };
        let outcome = match returned {
            Ok(value) => refuse_awaitable(&value),
            Err(err) => Err(describe(err.value(py).as_any())),
        };
        if let Err(message) = outcome {
            self.record_error(method, message);
        }
    }
}

/// What a decision asks of the store for the conversation `key`.
pub(crate) fn pin_write(decision: &Decision<'_>, key: String) -> Option<PinWrite> {
    let sticky = decision.flag?.sticky.as_ref()?;
    match decision.pin {
        PinEffect::Write => Some(PinWrite::Set {
            key,
            variant: decision.variant_id()?.to_string(),
            ttl_seconds: sticky.ttl as f64 / 1000.0,
        }),
        PinEffect::Delete => Some(PinWrite::Delete { key }),
        PinEffect::None | PinEffect::Keep => None,
    }
}

impl PinWrite {
    /// `("set", key, variant, ttl_seconds)` or `("delete", key)`, for `flagrail._call`.
    pub(crate) fn to_python<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            PinWrite::Set {
                key,
                variant,
                ttl_seconds,
            } => ("set", key.as_str(), variant.as_str(), *ttl_seconds).into_bound_py_any(py),
            PinWrite::Delete { key } => ("delete", key.as_str()).into_bound_py_any(py),
        }
    }
}

/// A stored pin: a str, UTF-8 bytes (what most Redis clients return) or None.
fn pin_value(value: &Bound<'_, PyAny>) -> Result<Option<String>, String> {
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(text) = value.cast::<PyString>() {
        return text
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| "returned a str with unpaired surrogates".to_string());
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return std::str::from_utf8(bytes.as_bytes())
            .map(|s| Some(s.to_string()))
            .map_err(|_| "returned bytes that are not UTF-8".to_string());
    }
    Err(format!(
        "returned {}, expected str, bytes or None",
        type_name(value)
    ))
}

/// A sync path cannot wait: an awaitable is closed (no "never awaited" warning) and refused.
fn refuse_awaitable(value: &Bound<'_, PyAny>) -> Result<(), String> {
    let py = value.py();
    if !value.hasattr(intern!(py, "__await__")).unwrap_or(false) {
        return Ok(());
    }
    if let Ok(Some(close)) = value.getattr_opt(intern!(py, "close")) {
        let _ = close.call0();
    }
    Err(
        "returned an awaitable on a sync path (variant, explain, call); \
         an async store works with acall only"
            .to_string(),
    )
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "an object".to_string(), |n| n.to_string())
}

/// `TypeName: message` of an exception.
fn describe(exc: &Bound<'_, PyAny>) -> String {
    let message = exc.str().map(|s| s.to_string()).unwrap_or_default();
    if message.is_empty() {
        type_name(exc)
    } else {
        format!("{}: {message}", type_name(exc))
    }
}
