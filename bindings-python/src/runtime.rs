//! The runtime around the call: `Flags.call` / `Flags.acall`, trackers, feedback, metrics and
//! events, over `flagrail_core::runtime`.
//!
//! The core decides which variant to try next, measures each attempt and records it; this file
//! only runs the user's function and reports what happened. `call` (sync) loops in Rust: a step
//! without a timeout calls the function inline, a step with one hands it to a native worker
//! thread and waits for it with the GIL released (`workers.rs`, capped per process). `acall`
//! loops in Python (`flagrail._call.acall`, where asyncio can cancel the attempt) over a
//! [`PyRun`], the same [`RunState`] behind a lock. In both, a shadow drawn for the call starts
//! only once the served chain has ended.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flagrail_core::live::PinSource;
use flagrail_core::live::{Attempt as CoreAttempt, Run, Step, Usage};
use flagrail_core::runtime::{
    attempt_message, check_tokens, check_usage, classify, parse_error_kind, timeout_message,
    CallbackSink, ErrorFacts, ErrorKind, Event, SEGMENT_ATTRIBUTE,
};
use flagrail_core::{Error as CoreError, Evaluation, Flags as CoreFlags};
use pyo3::exceptions::{PyException, PyRecursionError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::context::{with_declared, Source};
use crate::convert::{output_json, to_python};
use crate::error::{to_py_err, to_py_err_with, IntoPyResult};
use crate::handle::Inner;
use crate::sticky::{pin_write, PinRead, PinStore, PinWrite};
use crate::variant::{py_repr, DocCache, Outcome, Variant};
use crate::workers::{run_timed, spawn, Timed, CALL_THREADS_VARIABLE};

const HELPERS: &str = "flagrail._call";

static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static COROUTINE_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ACALL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GENERIC_ALIAS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// One call in progress: the core's run plus the Python objects its results share.
pub(crate) struct RunState {
    run: Run,
    cache: Arc<DocCache>,
    flag_index: usize,
    /// The variant handed to the function in flight and its timeout (ms).
    current: Option<(Py<Variant>, Option<u64>)>,
    /// The variant that served (set on success or on a non-AI step).
    served: Option<Py<Variant>>,
    /// The shadow variant whose run was started beside this one.
    shadow_started: Option<usize>,
    /// What `acall` writes to the user's pin store for this run's decision.
    pending_pin: Option<PinWrite>,
}

/// Where a run's sticky pin comes from.
pub(crate) enum Pins {
    /// `call`: the user's pin store when one is installed (read and written here), else the
    /// core's memory store.
    Auto,
    /// The core's memory store.
    Memory,
    /// `acall`: the pin it read (and awaited) from the user's store; the write is handed back
    /// by `_Run._pin_effect`.
    Read(PinRead),
}

/// What the caller does next.
pub(crate) enum Next<'py> {
    /// Call the function with this variant, with this timeout (ms).
    Call(Bound<'py, Variant>, Option<u64>),
    /// The run is over: a non-AI variant served, or every step failed ([`RunState::finish`]).
    Done,
}

/// Starts a run of `flag` for `context`; `FlagNotFoundError` for an unknown flag.
pub(crate) fn start(
    inner: &Inner,
    py: Python<'_>,
    flag: &Bound<'_, PyString>,
    context: Option<&Bound<'_, PyAny>>,
    pins: Pins,
) -> PyResult<RunState> {
    let source = Source::from_arg(context)?;
    let core = inner.core();
    // The run evaluates this snapshot: the document whose run attributes are read below.
    let snapshot = core.snapshot();
    let document = Arc::clone(snapshot.document_arc());
    // A key that is not valid UTF-8 (lone surrogates) cannot name a flag.
    let key = flag.to_str().ok();
    let Some((key, index)) = key.and_then(|k| Some((k, document.flag_position(k)?))) else {
        return Err(to_py_err(
            py,
            &CoreError::FlagNotFound {
                flag: flag.to_string_lossy().into_owned(),
            },
        ));
    };
    let flag_def = &document.flags()[index];
    let live_cache = inner.cache_for(py, &document);
    // `run_attributes` starts with `attributes`, whose interned keys the cache already has.
    let keys: Vec<Py<PyString>> = {
        let known = live_cache
            .flag(py, index)
            .map_or(&[][..], |f| &f.attr_keys[..]);
        flag_def
            .run_attributes
            .iter()
            .enumerate()
            .map(|(i, name)| match known.get(i) {
                Some(k) if i < flag_def.attributes.len() => k.clone_ref(py),
                _ => attribute_key(py, name),
            })
            .collect()
    };
    let store = match (&pins, &flag_def.sticky) {
        (Pins::Auto, Some(sticky)) => inner.pins().custom().map(|store| (sticky, store)),
        _ => None,
    };
    // A test override in this context (`flags.override`): the chain starts at its variant.
    let forced = inner.overrides.forced(py, flag)?;
    let forced = forced.as_ref().map(|v| v.to_str()).transpose()?;
    let (run, pending_pin) = with_declared(source, &flag_def.run_attributes, &keys, |ctx| {
        if forced.is_some_and(|v| flag_def.variant_position(v).is_some()) {
            return Ok((
                core.start_run_forced(&snapshot, key, ctx, PinSource::Memory, forced)?,
                None,
            ));
        }
        match (pins, store) {
            (Pins::Auto, Some((sticky, store))) => {
                let read =
                    PinStore::key_of(key, sticky, ctx).map(|k| inner.pins().read(py, &store, k));
                let pin = read.as_ref().and_then(|r| r.pin.as_deref());
                let run = core.start_run_with(&snapshot, key, ctx, PinSource::Given(pin))?;
                if let Some(read) = read.filter(|r| r.ok) {
                    if let Some(write) = pin_write(&run.evaluation().decision(), read.key) {
                        inner.pins().write(py, &store, write);
                    }
                }
                Ok((run, None))
            }
            (Pins::Read(read), _) => {
                // The key as this document names it (a reload since `_begin` may have
                // changed the flag's `sticky`): a pin read under another key is not used.
                let key_now = flag_def
                    .sticky
                    .as_ref()
                    .and_then(|sticky| PinStore::key_of(key, sticky, ctx));
                let pin = read
                    .pin
                    .as_deref()
                    .filter(|_| key_now.as_deref() == Some(read.key.as_str()));
                let run = core.start_run_with(&snapshot, key, ctx, PinSource::Given(pin))?;
                let pending = match key_now {
                    Some(k) if read.ok => pin_write(&run.evaluation().decision(), k),
                    _ => None,
                };
                Ok((run, pending))
            }
            (Pins::Auto | Pins::Memory, _) => Ok((core.start_run_in(&snapshot, key, ctx)?, None)),
        }
    })?
    .into_py_result(py)?;
    let evaluation = run.evaluation();
    let (cache, flag_index) = if Arc::ptr_eq(&evaluation.document, &document) {
        (live_cache, index)
    } else {
        (
            inner.cache_for(py, &evaluation.document),
            evaluation.flag_index.unwrap_or(index),
        )
    };
    Ok(RunState {
        run,
        cache,
        flag_index,
        current: None,
        served: None,
        shadow_started: None,
        pending_pin,
    })
}

/// `Flags._begin`: the user's store and the pin key of `flag` for `context`, when `acall`
/// is to read the pin itself (a sticky flag, a store installed, a conversation id given).
pub(crate) fn pin_lookup(
    inner: &Inner,
    py: Python<'_>,
    flag: &Bound<'_, PyString>,
    context: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<(Py<PyAny>, String)>> {
    let source = Source::from_arg(context)?;
    let Some(store) = inner.pins().custom() else {
        return Ok(None);
    };
    let snapshot = inner.core().snapshot();
    let document = Arc::clone(snapshot.document_arc());
    let Some((key, index)) = flag
        .to_str()
        .ok()
        .and_then(|k| Some((k, document.flag_position(k)?)))
    else {
        return Ok(None);
    };
    let flag_def = &document.flags()[index];
    let Some(sticky) = &flag_def.sticky else {
        return Ok(None);
    };
    let cache = inner.cache_for(py, &document);
    let Some(flag_cache) = cache.flag(py, index) else {
        return Ok(None);
    };
    let pin_key = with_declared(source, &flag_def.attributes, &flag_cache.attr_keys, |ctx| {
        PinStore::key_of(key, sticky, ctx)
    })?;
    Ok(pin_key.map(|k| (store.clone_ref(py), k)))
}

/// The interned key of a run attribute that evaluation does not read (`segment`, or a
/// `bucket_by` no rule uses).
fn attribute_key(py: Python<'_>, name: &str) -> Py<PyString> {
    static SEGMENT: PyOnceLock<Py<PyString>> = PyOnceLock::new();
    if name == SEGMENT_ATTRIBUTE {
        SEGMENT
            .get_or_init(py, || PyString::intern(py, SEGMENT_ATTRIBUTE).unbind())
            .clone_ref(py)
    } else {
        PyString::intern(py, name).unbind()
    }
}

impl RunState {
    /// The `Variant` of step `index`: the step's id and payload, the evaluation's reason, rule,
    /// bucket and revision.
    fn variant<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, Variant>> {
        let mut decision = self.run.evaluation().decision();
        decision.choice.variant_index = Some(index);
        let id = self
            .cache
            .flag(py, self.flag_index)
            .map_or_else(|| py.None(), |f| f.variant_id(py, Some(index)));
        let mut outcome = Outcome::from(decision);
        if self.run.is_shadow() {
            outcome = outcome.as_shadow();
        }
        Bound::new(py, Variant::found(Arc::clone(&self.cache), outcome, id))
    }

    /// The shadow copy of this run, when the evaluation drew a shadow variant and its hourly
    /// cap has room (the core checks and reserves); remembered for `CallResult.shadow`.
    pub(crate) fn take_shadow(&mut self) -> Option<PyRun> {
        let run = self.run.shadow_run()?;
        self.shadow_started = run.shadow_variant();
        Some(PyRun::new(RunState {
            run,
            cache: Arc::clone(&self.cache),
            flag_index: self.flag_index,
            current: None,
            served: None,
            shadow_started: None,
            pending_pin: None,
        }))
    }

    pub(crate) fn next<'py>(&mut self, py: Python<'py>) -> PyResult<Next<'py>> {
        match self.run.next_step() {
            Step::Call {
                variant,
                timeout_ms,
            } => {
                let v = self.variant(py, variant)?;
                self.current = Some((v.clone().unbind(), timeout_ms));
                Ok(Next::Call(v, timeout_ms))
            }
            Step::Serve { variant } => {
                self.served = Some(self.variant(py, variant)?.unbind());
                Ok(Next::Done)
            }
            Step::Exhausted => Ok(Next::Done),
        }
    }

    /// The attempt in flight returned `value` (an `Output` reports usage and is unwrapped).
    pub(crate) fn succeed(
        mut self,
        py: Python<'_>,
        value: Bound<'_, PyAny>,
    ) -> PyResult<CallResult> {
        let (value, usage) = match value.cast::<Output>() {
            Ok(output) => {
                let o = output.get();
                (o.value.clone_ref(py), o.usage(None))
            }
            Err(_) => (value.unbind(), Usage::default()),
        };
        if self.run.wants_output() {
            // Runs with a shadow (and shadow runs) carry the output in their outcome events.
            self.run.set_output(output_json(value.bind(py)));
        }
        self.run.succeed(usage);
        self.served = self.current.take().map(|(v, _)| v);
        self.result(py, value)
    }

    /// The attempt in flight raised `err`. An `Exception` is classified and recorded, and the
    /// chain goes on. Anything else (`KeyboardInterrupt`, `asyncio.CancelledError` …) and a
    /// `RecursionError` (a programming error, never the model's) end the call and are raised
    /// again; the attempt is recorded as cancelled and feeds no metric.
    pub(crate) fn fail(&mut self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        if !err.is_instance_of::<PyException>(py) || err.is_instance_of::<PyRecursionError>(py) {
            self.cancel();
            return Err(err);
        }
        let timeout = self.current.take().and_then(|(_, t)| t);
        let (kind, message) = describe(err.value(py).as_any(), timeout);
        self.run.fail(kind, Some(&message), Usage::default());
        Ok(())
    }

    /// The attempt in flight failed with `kind` without an exception (a timeout the binding
    /// measured, a step it could not start).
    pub(crate) fn fail_with(&mut self, kind: ErrorKind, message: &str) {
        self.current = None;
        self.run.fail(kind, Some(message), Usage::default());
    }

    /// The caller gave up while an attempt was in flight: the core gives back its reservation
    /// now and records it as cancelled (see `Run::cancel`).
    pub(crate) fn cancel(&mut self) {
        self.current = None;
        self.run.cancel();
    }

    /// The result once [`RunState::next`] said `Done`: the non-AI variant that served, or
    /// `AllAttemptsFailedError`.
    pub(crate) fn finish(self, py: Python<'_>) -> PyResult<CallResult> {
        if self.served.is_some() && self.run.served().is_some() {
            return self.result(py, py.None());
        }
        let attempts = attempts_list(py, self.run.attempts())?;
        let run_id = self.run.run_id().to_string();
        let err = CoreError::AllAttemptsFailed {
            flag: self.run.evaluation().flag_key().to_string(),
            attempts: self.run.attempts().len(),
        };
        Err(to_py_err_with(py, &err, |kwargs| {
            kwargs.set_item("attempts", attempts)?;
            kwargs.set_item("run_id", run_id)
        }))
    }

    fn result(self, py: Python<'_>, value: Py<PyAny>) -> PyResult<CallResult> {
        let variant = match self.served {
            Some(v) => v,
            None => match self.run.served() {
                Some(index) => self.variant(py, index)?.unbind(),
                None => return Err(PyTypeError::new_err("the run did not serve")),
            },
        };
        Ok(CallResult {
            value,
            variant,
            shadow: self.shadow_started,
            run: self.run,
            cache: self.cache,
        })
    }
}

/// Classifies an exception raised by the user's function: its `error_kind` (declared), class
/// name, `status_code`/`status`, `code` and message, decided by the core. Returns the kind and
/// the text for the attempts list (the core's `attempt_message`, the same as Node's).
fn describe(exc: &Bound<'_, PyAny>, timeout_ms: Option<u64>) -> (ErrorKind, String) {
    let attr = |name: &str| exc.getattr_opt(name).ok().flatten();
    let declared: Option<String> = attr("error_kind").and_then(|v| v.extract().ok());
    let name = exc
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let status = ["status_code", "status"].iter().find_map(|a| {
        let v = attr(a)?;
        if v.is_instance_of::<PyBool>() {
            return None;
        }
        v.extract::<u16>().ok()
    });
    let code: Option<String> = attr("code").and_then(|v| v.extract().ok());
    let message = exc.str().map(|s| s.to_string()).unwrap_or_default();
    let kind = classify(&ErrorFacts {
        declared_kind: declared.as_deref(),
        name: &name,
        status,
        code: code.as_deref(),
        message: &message,
    });
    let text = match (message.is_empty(), kind, timeout_ms) {
        // `asyncio.timeout` raises a bare `TimeoutError` at the step's timeout.
        (true, ErrorKind::Timeout, Some(ms)) => timeout_message(ms),
        _ => attempt_message(&name, &message),
    };
    (kind, text)
}

thread_local! {
    /// How deep `Flags.call` is nested on this thread (the C stack it uses grows with it).
    static CALL_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// One level of `Flags.call` nesting on this thread, given back when dropped; past the core's
/// `MAX_CALL_DEPTH`, `CallDepthError` (a `RecursionError`, code `CALL_DEPTH_EXCEEDED`).
struct Nesting;

impl Nesting {
    fn enter(py: Python<'_>, flag: &Bound<'_, PyString>) -> PyResult<Nesting> {
        let depth = CALL_DEPTH.with(std::cell::Cell::get);
        // `to_str` borrows (abi3 on 3.10+): nothing is allocated on the way in.
        match flagrail_core::live::enter_call(flag.to_str().unwrap_or_default(), depth) {
            Ok(next) => {
                CALL_DEPTH.with(|d| d.set(next));
                Ok(Nesting)
            }
            Err(err) => Err(crate::error::to_py_err(py, &err)),
        }
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        CALL_DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

/// `Flags.call`: the whole chain, in Rust. A shadow drawn for this call starts on a worker
/// once the chain has ended, so that it never delays the served answer.
pub(crate) fn call<'py>(
    inner: &Inner,
    py: Python<'py>,
    flag: &Bound<'py, PyString>,
    context: Option<&Bound<'py, PyAny>>,
    function: &Bound<'py, PyAny>,
) -> PyResult<CallResult> {
    let _nesting = Nesting::enter(py, flag)?;
    let mut state = start(inner, py, flag, context, Pins::Auto)?;
    let shadow = state.take_shadow();
    let mut result = drive(py, state, function);
    if let Some(shadow) = shadow {
        if !start_shadow(py, shadow, function) {
            if let Ok(result) = result.as_mut() {
                result.shadow = None;
            }
        }
    }
    result
}

/// Runs the chain of `state` to its end with `function`.
fn drive<'py>(
    py: Python<'py>,
    mut state: RunState,
    function: &Bound<'py, PyAny>,
) -> PyResult<CallResult> {
    loop {
        let Next::Call(variant, timeout_ms) = state.next(py)? else {
            return state.finish(py);
        };
        let returned = match timeout_ms {
            None => function.call1((variant,)),
            Some(ms) => match call_on_worker(py, function, variant, ms)? {
                Timed::Returned(result) => result.map(|value| value.into_bound(py)),
                Timed::Late => {
                    state.fail_with(ErrorKind::Timeout, &timeout_message(ms));
                    continue;
                }
                Timed::Refused { cap } => {
                    state.fail_with(
                        ErrorKind::ThreadsBusy,
                        &format!(
                            "not started: all {cap} call threads are busy with attempts that \
                             outlived their timeout (the cap is {CALL_THREADS_VARIABLE})"
                        ),
                    );
                    continue;
                }
            },
        };
        match returned {
            Ok(value) => {
                if is_coroutine(py, &value)? {
                    return Err(coroutine_given(py, &value, function));
                }
                return state.succeed(py, value);
            }
            Err(err) => state.fail(py, err)?,
        }
    }
}

/// Runs `function(variant)` on a worker, in a copy of the caller's context variables, and
/// waits at most `timeout_ms` for it.
fn call_on_worker(
    py: Python<'_>,
    function: &Bound<'_, PyAny>,
    variant: Bound<'_, Variant>,
    timeout_ms: u64,
) -> PyResult<Timed> {
    let run = COPY_CONTEXT
        .import(py, "contextvars", "copy_context")?
        .call0()?
        .getattr(intern!(py, "run"))?
        .unbind();
    let args = PyTuple::new(py, [function.as_any(), variant.as_any()])?.unbind();
    Ok(run_timed(py, Duration::from_millis(timeout_ms), run, args))
}

/// Whether `value` is a coroutine object (what an `async def` returns when called).
fn is_coroutine(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    let coroutine = COROUTINE_TYPE.import(py, "types", "CoroutineType")?;
    Ok(value.get_type().is(coroutine))
}

/// The `TypeError` of a `call` given an async function; the coroutine is closed (it never
/// ran, and it must not warn that it was never awaited). The run is dropped unrecorded.
fn coroutine_given(py: Python<'_>, value: &Bound<'_, PyAny>, function: &Bound<'_, PyAny>) -> PyErr {
    if let Err(err) = value.call_method0(intern!(py, "close")) {
        err.write_unraisable(py, Some(value));
    }
    let shown = function
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "the function".into());
    PyTypeError::new_err(format!(
        "Flags.call got a coroutine from {shown}: an async function must be awaited with \
         `await flags.acall(...)`"
    ))
}

/// Starts `shadow` on a worker, where its chain runs like `call`'s and whatever it raises is
/// recorded and swallowed; `false` when no worker was free (the shadow is then dropped
/// unrecorded, and its hourly cap reservation given back).
fn start_shadow(py: Python<'_>, shadow: PyRun, function: &Bound<'_, PyAny>) -> bool {
    let Some(state) = shadow.lock().take() else {
        return false;
    };
    let run = COPY_CONTEXT
        .import(py, "contextvars", "copy_context")
        .and_then(|copy| copy.call0())
        .and_then(|context| context.getattr(intern!(py, "run")));
    let runner = Py::new(
        py,
        PyShadow {
            state: Mutex::new(Some(state)),
            function: function.clone().unbind(),
        },
    );
    let args = runner.and_then(|runner| PyTuple::new(py, [runner]));
    match (run, args) {
        (Ok(run), Ok(args)) => spawn(py, run.unbind(), args.unbind()),
        (Err(err), _) | (_, Err(err)) => {
            err.write_unraisable(py, Some(function));
            false
        }
    }
}

/// The chain of a shadow run as a callable, so that it runs inside a copy of the caller's
/// context variables (`Context.run`).
#[pyclass(frozen, module = "flagrail._flagrail", name = "_Shadow")]
pub struct PyShadow {
    state: Mutex<Option<RunState>>,
    function: Py<PyAny>,
}

#[pymethods]
impl PyShadow {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(state) = state else {
            return Ok(());
        };
        match drive(py, state, self.function.bind(py)) {
            Ok(_) => Ok(()),
            // Every step failed: recorded, nothing to report.
            Err(err) if err.is_instance_of::<PyException>(py) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// Raises the core's ``CallDepthError`` when an ``acall`` at ``depth`` would nest too deep;
/// the next depth otherwise. Not public API.
#[pyfunction]
pub(crate) fn _enter_call(py: Python<'_>, flag: &str, depth: u32) -> PyResult<u32> {
    flagrail_core::live::enter_call(flag, depth).map_err(|err| crate::error::to_py_err(py, &err))
}

/// `Flags.acall`: the coroutine of `flagrail._call.acall`, which starts the run when awaited.
pub(crate) fn acall<'py>(
    flags: &Bound<'py, PyAny>,
    flag: &Bound<'py, PyString>,
    context: Option<&Bound<'py, PyAny>>,
    function: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = flags.py();
    ACALL
        .import(py, HELPERS, "acall")?
        .call1((flags, flag, context, function))
}

/// A call in progress, for the asyncio loop of ``flagrail._call.acall``. Not public API.
#[pyclass(frozen, module = "flagrail._flagrail", name = "_Run")]
pub struct PyRun {
    state: Mutex<Option<RunState>>,
}

impl PyRun {
    /// The shadow run to start beside this one (once), or `None`.
    pub(crate) fn take_shadow(&self) -> Option<PyRun> {
        self.lock().as_mut()?.take_shadow()
    }

    /// The next step of the chain: the variant to call and its timeout in seconds, or `None`
    /// when the chain has ended (`__next__`, and the first step that `Flags._begin` returns).
    pub(crate) fn step<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, Variant>, Option<f64>)>> {
        let mut guard = self.lock();
        let Some(state) = guard.as_mut() else {
            return Ok(None);
        };
        Ok(match state.next(py)? {
            Next::Call(v, t) => Some((v, t.map(|ms| ms as f64 / 1000.0))),
            Next::Done => None,
        })
    }

    pub(crate) fn new(state: RunState) -> PyRun {
        PyRun {
            state: Mutex::new(Some(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<RunState>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> PyResult<RunState> {
        self.lock()
            .take()
            .ok_or_else(|| PyTypeError::new_err("this call is already over"))
    }
}

#[pymethods]
impl PyRun {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// ``(variant, timeout_seconds or None)`` to call next; the iteration ends with the run
    /// (then ``finish()``).
    fn __next__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, Variant>, Option<f64>)>> {
        self.step(py)
    }

    /// The attempt in flight returned ``value``: the result.
    fn succeed(&self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<CallResult> {
        self.take()?.succeed(py, value)
    }

    /// The attempt in flight raised ``exc``.
    fn fail(&self, py: Python<'_>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let err = PyErr::from_value(exc);
        match self.lock().as_mut() {
            Some(state) => state.fail(py, err),
            None => Err(err),
        }
    }

    /// The result once the iteration ended, or ``AllAttemptsFailedError``.
    fn finish(&self, py: Python<'_>) -> PyResult<CallResult> {
        self.take()?.finish(py)
    }

    /// The caller gave up (a ``BaseException`` reached ``acall``): the attempt in flight is
    /// recorded as cancelled and its reservation given back now, not when the run is
    /// collected.
    fn _cancel(&self) {
        if let Some(state) = self.lock().as_mut() {
            state.cancel();
        }
    }

    /// The shadow run to start beside this one (once), or ``None``.
    fn _shadow(&self) -> Option<PyRun> {
        self.take_shadow()
    }

    /// What to write to the user's pin store for this run's decision (once):
    /// ``("set", key, variant, ttl_seconds)``, ``("delete", key)`` or ``None``.
    fn _pin_effect<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let write = self.lock().as_mut().and_then(|s| s.pending_pin.take());
        write.map(|w| w.to_python(py)).transpose()
    }
}

/// What ``Flags.call`` and ``Flags.acall`` return.
///
/// ``value`` is what the function returned (unwrapped from ``Output``), or ``None`` when a
/// non-AI variant served without calling it; ``variant`` is the variant that served.
#[pyclass(frozen, module = "flagrail", name = "CallResult")]
pub struct CallResult {
    /// What the function returned (unwrapped from ``Output``); ``None`` when a non-AI variant
    /// served without calling the function.
    #[pyo3(get)]
    value: Py<PyAny>,
    /// The variant that served: the one whose call succeeded, or the non-AI variant the chain
    /// ended on. Its ``reason``, ``rule_id``, ``bucket`` and ``revision`` are the evaluation's.
    #[pyo3(get)]
    variant: Py<Variant>,
    shadow: Option<usize>,
    run: Run,
    cache: Arc<DocCache>,
}

#[pymethods]
impl CallResult {
    /// Every model call made, in order (a non-AI variant that served is not an attempt).
    #[getter]
    fn attempts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        attempts_list(py, self.run.attempts())
    }

    /// Whether a variant other than the assigned one served.
    #[getter]
    fn fallback_used(&self) -> bool {
        self.run.fallback_used()
    }

    /// The id of this call in events and in ``Flags.feedback``.
    #[getter]
    fn run_id<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, self.run.run_id())
    }

    /// The variant id the flag assigned (the first step of the chain).
    #[getter]
    fn assigned(&self, py: Python<'_>) -> Py<PyAny> {
        let evaluation = self.run.evaluation();
        match evaluation.flag_index.and_then(|i| self.cache.flag(py, i)) {
            Some(f) => f.variant_id(py, evaluation.variant_index),
            None => py.None(),
        }
    }

    /// The id of the shadow variant run beside this call (its outcome is recorded with
    /// ``"shadow": true`` and never served), or ``None``: no shadow drawn for this unit, or
    /// the shadow's ``max_cost_per_hour`` is spent.
    #[getter]
    fn shadow(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let index = self.shadow?;
        Some(
            self.cache
                .flag(py, self.run.evaluation().flag_index?)?
                .variant_id(py, Some(index)),
        )
    }

    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        generic_alias(cls, item)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "CallResult(variant={}, value={}, attempts={}, fallback_used={}, run_id={})",
            self.variant.bind(py).getattr("id")?.repr()?,
            self.value.bind(py).repr()?,
            self.run.attempts().len(),
            if self.run.fallback_used() {
                "True"
            } else {
                "False"
            },
            py_repr(py, self.run.run_id())?,
        ))
    }
}

fn generic_alias<'py>(
    cls: &Bound<'py, PyType>,
    item: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    GENERIC_ALIAS
        .import(cls.py(), "types", "GenericAlias")?
        .call1((cls, item))
}

fn attempts_list<'py>(py: Python<'py>, attempts: &[CoreAttempt]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, attempts.iter().map(|a| Attempt { inner: a.clone() }))
}

/// One model call of a ``Flags.call``: which variant, how it ended, how long it took, what it
/// used.
#[pyclass(frozen, module = "flagrail", name = "Attempt")]
pub struct Attempt {
    inner: CoreAttempt,
}

#[pymethods]
impl Attempt {
    /// The variant id that was called.
    #[getter]
    fn variant(&self) -> &str {
        &self.inner.variant
    }

    /// ``"success"`` or ``"error"``.
    #[getter]
    fn outcome(&self) -> &'static str {
        self.inner.outcome()
    }

    /// Why it failed: ``"timeout"``, ``"rate_limit"``, ``"server"``, ``"content_policy"``,
    /// ``"rejected"``, ``"invalid_request"``, ``"other"`` or ``"threads_busy"`` (not started: every
    /// call thread was busy); ``None`` for a success.
    #[getter]
    fn error_kind(&self) -> Option<&'static str> {
        self.inner.error.map(ErrorKind::as_str)
    }

    /// The error's message (the exception's text), ``None`` for a success.
    #[getter]
    fn error(&self) -> Option<&str> {
        self.inner.message.as_deref()
    }

    /// Wall time of the attempt, measured by the core with a monotonic clock.
    #[getter]
    fn latency_ms(&self) -> f64 {
        self.inner.latency_ms
    }

    /// Input tokens, as reported by ``Output``.
    #[getter]
    fn input_tokens(&self) -> Option<u64> {
        self.inner.input_tokens
    }

    /// Output tokens, as reported by ``Output``.
    #[getter]
    fn output_tokens(&self) -> Option<u64> {
        self.inner.output_tokens
    }

    /// The cost: as reported by ``Output``, or computed from the tokens and the variant's
    /// ``cost_per_1k_input_tokens`` / ``cost_per_1k_output_tokens``.
    #[getter]
    fn cost(&self) -> Option<f64> {
        self.inner.cost
    }

    /// The attempt as a plain dict, ready for JSON logs.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner.to_json())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut out = format!(
            "Attempt(variant={}, outcome={}",
            py_repr(py, &self.inner.variant)?,
            py_repr(py, self.inner.outcome())?
        );
        if let Some(kind) = self.inner.error {
            out.push_str(&format!(", error_kind={}", py_repr(py, kind.as_str())?));
        }
        if let Some(message) = &self.inner.message {
            out.push_str(&format!(", error={}", py_repr(py, message)?));
        }
        out.push_str(&format!(", latency_ms={:.3})", self.inner.latency_ms));
        Ok(out)
    }
}

/// What the function given to ``Flags.call`` may return to report usage:
/// ``return Output(text, input_tokens=812, output_tokens=95)``. The call's ``value`` is
/// ``value``; tokens and cost go to the attempt, the metrics and the events (without ``cost``,
/// it is computed from the variant's prices).
#[pyclass(frozen, module = "flagrail", name = "Output")]
pub struct Output {
    /// What the call returns as ``CallResult.value``.
    #[pyo3(get)]
    value: Py<PyAny>,
    /// Input (prompt) tokens of the model call.
    #[pyo3(get)]
    input_tokens: Option<u64>,
    /// Output (completion) tokens of the model call.
    #[pyo3(get)]
    output_tokens: Option<u64>,
    /// The cost of the model call, when the function knows it.
    #[pyo3(get)]
    cost: Option<f64>,
}

impl Output {
    fn usage(&self, latency_ms: Option<f64>) -> Usage {
        Usage {
            latency_ms,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost: self.cost,
        }
    }
}

#[pymethods]
impl Output {
    #[new]
    #[pyo3(signature = (value, *, input_tokens = None, output_tokens = None, cost = None))]
    fn new(
        py: Python<'_>,
        value: Py<PyAny>,
        input_tokens: Option<f64>,
        output_tokens: Option<f64>,
        cost: Option<f64>,
    ) -> PyResult<Output> {
        // NaN, infinite, negative or (for tokens) fractional: INVALID_ARGUMENT, decided by the
        // core.
        check_usage(None, cost).map_err(|e| to_py_err(py, &e))?;
        let (input_tokens, output_tokens) =
            check_tokens(input_tokens, output_tokens).map_err(|e| to_py_err(py, &e))?;
        Ok(Output {
            value,
            input_tokens,
            output_tokens,
            cost,
        })
    }

    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        generic_alias(cls, item)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut out = format!("Output({}", self.value.bind(py).repr()?);
        if let Some(n) = self.input_tokens {
            out.push_str(&format!(", input_tokens={n}"));
        }
        if let Some(n) = self.output_tokens {
            out.push_str(&format!(", output_tokens={n}"));
        }
        if let Some(c) = self.cost {
            out.push_str(&format!(", cost={c}"));
        }
        out.push(')');
        Ok(out)
    }
}

/// Starts a tracker on a variant the app already has.
pub(crate) fn tracker(
    inner: &Inner,
    py: Python<'_>,
    variant: &Bound<'_, Variant>,
    context: Option<&Bound<'_, PyAny>>,
) -> PyResult<Tracker> {
    let source = Source::from_arg(context)?;
    let v = variant.get();
    let outcome = v.outcome();
    let document = Arc::clone(&v.cache().doc);
    let flag_def = outcome
        .flag_index()
        .and_then(|i| Some((i, document.flags().get(i)?)));
    let Some((flag_index, flag_def)) = flag_def else {
        return Err(to_py_err(
            py,
            &CoreError::FlagNotFound {
                flag: variant.getattr("flag")?.str()?.to_string(),
            },
        ));
    };
    let evaluation = Evaluation::of_found(
        Arc::clone(&document),
        flag_index,
        outcome.variant_index(),
        outcome.rule_index(),
        outcome.reason(),
        outcome.bucket(),
        outcome.kill_source(),
    );
    let keys: Vec<Py<PyString>> = flag_def
        .run_attributes
        .iter()
        .map(|name| attribute_key(py, name))
        .collect();
    let run = with_declared(source, &flag_def.run_attributes, &keys, |ctx| {
        inner.core().tracker(evaluation, ctx)
    })?
    .into_py_result(py)?;
    Ok(Tracker {
        run_id: PyString::new(py, run.run_id()).unbind(),
        run: Mutex::new(run),
    })
}

/// Reports the outcome of one model call that the app makes itself.
///
/// From ``Flags.tracker(variant, context)``: the attempt is timed from the tracker's creation
/// unless ``latency_ms`` is given. Report once, with ``success()`` or ``error()``; later reports
/// are ignored. Outcomes reach the metrics, the guardrails and the events like those of
/// ``Flags.call``, and ``run_id`` works with ``Flags.feedback`` after a success.
#[pyclass(frozen, module = "flagrail", name = "Tracker")]
pub struct Tracker {
    run: Mutex<Run>,
    /// The id of this run in events and in ``Flags.feedback``.
    #[pyo3(get)]
    run_id: Py<PyString>,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl Tracker {
    /// The call succeeded.
    ///
    /// Args:
    ///     latency_ms: The call's duration, when the app timed it (else the time since the
    ///         tracker was created).
    ///     input_tokens: Input tokens used.
    ///     output_tokens: Output tokens produced.
    ///     cost: The call's cost (else computed from the tokens and the variant's prices).
    ///
    /// Raises:
    ///     InvalidArgumentError: ``latency_ms`` or ``cost`` is NaN, infinite or negative, or a
    ///         token count is not a whole number from 0 to 2**53 - 1; nothing is recorded and
    ///         the tracker can still be reported.
    #[pyo3(signature = (*, latency_ms = None, input_tokens = None, output_tokens = None, cost = None))]
    fn success(
        &self,
        py: Python<'_>,
        latency_ms: Option<f64>,
        input_tokens: Option<f64>,
        output_tokens: Option<f64>,
        cost: Option<f64>,
    ) -> PyResult<()> {
        check_usage(latency_ms, cost).map_err(|e| to_py_err(py, &e))?;
        let (input_tokens, output_tokens) =
            check_tokens(input_tokens, output_tokens).map_err(|e| to_py_err(py, &e))?;
        self.lock().succeed(Usage {
            latency_ms,
            input_tokens,
            output_tokens,
            cost,
        });
        Ok(())
    }

    /// The call failed.
    ///
    /// Args:
    ///     kind_or_exception: An error kind (``"timeout"``, ``"rate_limit"``, ``"server"``,
    ///         ``"content_policy"``, ``"rejected"``, ``"invalid_request"``, ``"other"``) or the exception the call
    ///         raised, classified like those of ``Flags.call``.
    ///     latency_ms: The call's duration, when the app timed it.
    ///     input_tokens: Input tokens used.
    ///     output_tokens: Output tokens produced.
    ///     cost: The call's cost.
    ///
    /// Raises:
    ///     InvalidArgumentError: ``kind_or_exception`` is a string that names no error kind, or
    ///         ``latency_ms`` or ``cost`` is NaN, infinite or negative, or a token count is not
    ///         a whole number from 0 to 2**53 - 1; nothing is recorded and the tracker can still
    ///         be reported.
    #[pyo3(signature = (kind_or_exception = None, *, latency_ms = None, input_tokens = None, output_tokens = None, cost = None))]
    fn error(
        &self,
        py: Python<'_>,
        kind_or_exception: Option<&Bound<'_, PyAny>>,
        latency_ms: Option<f64>,
        input_tokens: Option<f64>,
        output_tokens: Option<f64>,
        cost: Option<f64>,
    ) -> PyResult<()> {
        check_usage(latency_ms, cost).map_err(|e| to_py_err(py, &e))?;
        let (input_tokens, output_tokens) =
            check_tokens(input_tokens, output_tokens).map_err(|e| to_py_err(py, &e))?;
        let (kind, message) = match kind_or_exception {
            None => (ErrorKind::Other, None),
            Some(arg) => match arg.cast::<PyString>() {
                Ok(text) => {
                    let kind = parse_error_kind(text.to_str()?).map_err(|e| to_py_err(py, &e))?;
                    (kind, None)
                }
                Err(_) => {
                    let (kind, message) = describe(arg, None);
                    (kind, Some(message))
                }
            },
        };
        self.lock().fail(
            kind,
            message.as_deref(),
            Usage {
                latency_ms,
                input_tokens,
                output_tokens,
                cost,
            },
        );
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<flagrail.Tracker run_id={}>",
            self.run_id.bind(py).repr()?
        ))
    }
}

/// Calls `callback(event_dict)` for every event, attached to the interpreter; an exception is
/// logged to the `flagrail` logger and never reaches the call that produced the event.
pub(crate) fn on_event(core: &CoreFlags, callback: Py<PyAny>) {
    core.add_event_sink(Arc::new(CallbackSink(move |event: &Event| {
        // `try_attach`: never attach to an interpreter that is shutting down.
        Python::try_attach(|py| {
            let callback = callback.bind(py);
            let delivered = to_python(py, event).and_then(|e| callback.call1((e,)));
            if let Err(err) = delivered {
                log_callback_error(py, callback, err);
            }
        });
    })));
}

fn log_callback_error(py: Python<'_>, callback: &Bound<'_, PyAny>, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import("logging")?
                .call_method1("getLogger", ("flagrail",))?
                .unbind())
        })?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", err.value(py))?;
        logger.bind(py).call_method(
            "error",
            (
                "flagrail event callback %r raised; the event was dropped",
                callback,
            ),
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if let Err(failure) = logged {
        failure.write_unraisable(py, Some(callback));
    }
}

/// `Flags.hash_units`: a str key is used as its UTF-8 bytes.
pub(crate) fn hash_units(core: &CoreFlags, key: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    match key {
        None => core.set_unit_hash_key(None),
        Some(key) => {
            if let Ok(bytes) = key.cast::<PyBytes>() {
                core.set_unit_hash_key(Some(bytes.as_bytes()));
            } else if let Ok(text) = key.cast::<PyString>() {
                core.set_unit_hash_key(Some(text.to_str()?.as_bytes()));
            } else {
                return Err(PyTypeError::new_err("key must be str, bytes or None"));
            }
        }
    }
    Ok(())
}
