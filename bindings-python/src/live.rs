//! `Flags`, the live handle, and `Flag`, a handle bound to one flag key.
//!
//! Threads: `Flags` is immutable from Python (`frozen`) and everything it holds is `Send +
//! Sync` (the core swaps documents behind an `ArcSwap`; the Python-object cache is swapped the
//! same way), so one instance is shared by every thread. Evaluation keeps the GIL: it takes a
//! couple of hundred nanoseconds, about what releasing and re-acquiring it would cost. Loading
//! and compiling a document releases it.
//!
//! Reloads happen on the core's watcher thread; it reports them to the `flagrail` logger,
//! attaching to Python only to log.
//!
//! Fork: every handle is tracked by [`crate::fork`], whose hooks hold the handles' locks
//! across `fork()` and restart watchers, pollers and fleet threads in the child.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flagrail_core::live::overrides::for_tests;
use flagrail_core::live::DEFAULT_POLL_INTERVAL;
use flagrail_core::{FileOptions, Flags as CoreFlags, ReloadEvent};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

use crate::convert::{from_python, to_python};
use crate::error::{invalid_argument, IntoPyResult};
use crate::handle::Inner;
use crate::overrides::Override;
use crate::runtime::{self, CallResult, PyRun, Tracker};
use crate::variant::{py_repr, Variant};

/// Sends every event of `core` to a JSON-lines file as well (the `events=` of the loaders).
fn write_events(py: Python<'_>, core: &CoreFlags, events: Option<PathBuf>) -> PyResult<()> {
    match events {
        Some(path) => core.write_events_to(path).into_py_result(py),
        None => Ok(()),
    }
}

/// In a forked child: only the forking thread exists, so no listener is attached.
pub(crate) fn forget_listeners_after_fork() {
    ATTACHED_LISTENERS.store(0, Ordering::SeqCst);
}

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Logs a reload event to the `flagrail` logger (called on the watcher thread).
fn log_reload(py: Python<'_>, source: &str, event: &ReloadEvent) -> PyResult<()> {
    let logger = LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("logging")?
            .call_method1("getLogger", ("flagrail",))?
            .unbind())
    })?;
    let logger = logger.bind(py);
    let extra = PyDict::new(py);
    extra.set_item("flagrail_source", source)?;
    match event {
        ReloadEvent::Applied { previous, revision } => {
            extra.set_item("flagrail_event", "reload_applied")?;
            extra.set_item("flagrail_revision", revision)?;
            extra.set_item("flagrail_previous_revision", previous)?;
        }
        ReloadEvent::Rejected { error } => {
            extra.set_item("flagrail_event", "reload_rejected")?;
            extra.set_item("flagrail_code", error.code())?;
        }
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("extra", extra)?;
    // Level and text are the core's, shared with Node.
    let (level, message) = event.log_line(source);
    logger.call_method(level.as_str(), ("%s", message), Some(&kwargs))?;
    Ok(())
}

/// Set at interpreter exit: watcher threads stop attaching to Python from then on.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Watcher threads between "may I attach?" and "done with Python".
static ATTACHED_LISTENERS: AtomicUsize = AtomicUsize::new(0);

fn listen(core: &CoreFlags) {
    let source = core.status().source;
    core.on_reload(move |event| {
        // Counted before the check (both SeqCst): `_before_exit` either sees this listener
        // in flight and waits for it, or this listener sees the interpreter exiting.
        ATTACHED_LISTENERS.fetch_add(1, Ordering::SeqCst);
        if !EXITING.load(Ordering::SeqCst) {
            // `try_attach`: never attach to an interpreter that is shutting down.
            Python::try_attach(|py| {
                if let Err(err) = log_reload(py, &source, event) {
                    err.write_unraisable(py, None);
                }
            });
        }
        ATTACHED_LISTENERS.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Registered with ``atexit`` by the package; not meant to be called directly.
///
/// A watcher thread that is logging a reload while the interpreter finalizes would be torn
/// out of Python half-way (a fatal error in ``PyGILState_Release``). At exit, watchers stop
/// attaching, and the ones already attached are given up to two seconds to finish.
#[pyfunction]
pub(crate) fn _before_exit(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while ATTACHED_LISTENERS.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

fn poll_interval(py: Python<'_>, seconds: Option<f64>) -> PyResult<Duration> {
    match seconds {
        None => Ok(DEFAULT_POLL_INTERVAL),
        Some(s) => match Duration::try_from_secs_f64(s) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(invalid_argument(
                py,
                format!("poll_interval must be a positive number of seconds, got {s}"),
            )),
        },
    }
}

/// The live feature flags of a process.
///
/// Create one per document at startup and share it: it is safe to use from any number of
/// threads, and a file source is reloaded in the background (a new document is validated off
/// the request path and swapped in atomically; an invalid one never replaces the live one).
/// Reading a flag never raises.
///
/// Example::
///
///     flags = Flags.from_file("flags.json")
///     v = flags.variant("support-bot", {"user_id": "u-1", "plan": "pro"})
///     v.id, v["model"], v.reason
#[pyclass(frozen, module = "flagrail", name = "Flags")]
pub struct Flags {
    inner: Arc<Inner>,
}

impl Flags {
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The shared handle itself (to keep it alive on another thread).
    pub(crate) fn inner_arc(&self) -> Arc<Inner> {
        Arc::clone(&self.inner)
    }
}

#[pymethods]
impl Flags {
    /// Loads a flag document from a JSON file and, unless ``reload=False``, watches it.
    ///
    /// A changed file goes live within one poll interval (0.25 s by default). Forked children
    /// (gunicorn ``--preload``, celery prefork, multiprocessing) keep watching.
    ///
    /// Args:
    ///     path: The JSON file.
    ///     reload: Watch the file and hot-reload it.
    ///     poll_interval: Seconds between checks of the file.
    ///     events: A JSON-lines file that every telemetry event is appended to (see
    ///         ``write_events``).
    ///     exposures: Exposure events and per-variant counts for plain reads (``variant``,
    ///         ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
    ///         (seconds, default 3600: one event per unit, flag and revision per window),
    ///         ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
    ///         ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
    ///         docs/runtime.md, "Exposures of plain reads".
    ///     verify_key: The text of ``flagrail.pub``: the document must carry a detached
    ///         ed25519 signature by this key in ``<path>.sig`` (written by ``flagrail sign``).
    ///         Every reload checks the pair: an unsigned or wrongly signed version is rejected
    ///         (``SIGNATURE_INVALID`` in ``status()`` and the ``reload_rejected`` event) and the
    ///         live one stays; a document replaced before its ``.sig`` goes live once both
    ///         match.
    ///     redis: ``redis://host:port/db`` or ``redis+cluster://host:port,…``: share budgets,
    ///         guardrails, metrics and sticky pins with every process (Python or Node) opened
    ///         with the same Redis (see ``fleet_metrics`` and docs/fleet.md). Never waits for
    ///         Redis: an unreachable one means local enforcement until it answers.
    ///
    /// Raises:
    ///     SourceError: The file (or the events file) cannot be opened (code
    ///         ``SOURCE_UNREACHABLE``), or it is not signed by ``verify_key``
    ///         (``SIGNATURE_INVALID``).
    ///     DocumentError: The document is invalid; ``problems`` lists every problem.
    ///     InvalidArgumentError: ``verify_key`` is not the text of a ``flagrail.pub``, or
    ///         ``redis`` is not a Redis URL (``REDIS_URL_INVALID``).
    #[staticmethod]
    #[pyo3(signature = (
        path, *, reload = true, poll_interval = None, events = None, exposures = None,
        verify_key = None, redis = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn from_file(
        py: Python<'_>,
        path: PathBuf,
        reload: bool,
        poll_interval: Option<f64>,
        events: Option<PathBuf>,
        exposures: Option<&Bound<'_, PyAny>>,
        verify_key: Option<&str>,
        redis: Option<&str>,
    ) -> PyResult<Flags> {
        let interval = self::poll_interval(py, poll_interval)?;
        let verifier = verify_key
            .map(flagrail_sources::VerifyKey::parse)
            .transpose()
            .into_py_result(py)?
            .map(|key| Arc::new(key) as Arc<dyn flagrail_core::live::DocumentVerifier>);
        let options = FileOptions {
            reload,
            poll_interval: interval,
            verifier,
            ..FileOptions::default()
        };
        let core = py
            .detach(|| CoreFlags::from_file_with(&path, options))
            .into_py_result(py)?;
        write_events(py, &core, events)?;
        crate::exposures::enable(py, &core, exposures)?;
        listen(&core);
        let inner = crate::handle::track(Arc::new(Inner::new(py, core, interval)));
        crate::fleet::attach(py, &inner, redis)?;
        Ok(Flags { inner })
    }

    /// Loads a flag document from an HTTP(S) URL and polls it in the background.
    ///
    /// Each poll is a conditional GET (``If-None-Match`` / ``If-Modified-Since``): an unchanged
    /// document costs a 304 and no parse. A new document is checked (signature, when
    /// ``verify_key`` is given), validated and swapped in atomically; a failed poll, or a bad,
    /// truncated, oversized (over 16 MiB) or unsigned document, never replaces the live one.
    /// Failures back off exponentially with full jitter (up to 30 s; ``Retry-After`` is
    /// honoured); the first success returns to ``poll_interval``. ``status()["remote"]`` has the
    /// URL, ETag, last success and attempt, consecutive failures, staleness and the last error
    /// with its code. The poller stops with ``close()`` (or ``with``) and restarts in forked
    /// children.
    ///
    /// Startup: the document is fetched before this returns. If that fails and ``cache_path``
    /// holds a valid copy (every good document is written there atomically), the copy serves
    /// at once (``status()["remote"]["served_from_cache"]``) and polling goes on. Without a
    /// usable cache, attempts go on for up to ``startup_timeout`` seconds, then this raises.
    ///
    /// Args:
    ///     url: ``http://`` or ``https://``; credentials in it are never shown.
    ///     poll_interval: Seconds between polls.
    ///     cache_path: A file that keeps the last good document for cold starts.
    ///     verify_key: The text of ``flagrail.pub``: documents must carry a detached ed25519
    ///         signature (``<url>.sig``, written by ``flagrail sign``) by this key.
    ///     headers: Sent with every request (e.g. ``{"Authorization": "Bearer …"}``); never
    ///         logged, never sent to another host on a redirect.
    ///     ca_file: A PEM file of CA certificates to trust instead of the bundled Mozilla
    ///         roots.
    ///     timeout: Seconds a response (headers and body) may take once connected; a stalled
    ///         server fails that poll (connecting has its own 5 s bound).
    ///     startup_timeout: Seconds to wait for a first document without a usable cache.
    ///     events: A JSON-lines file that every telemetry event is appended to.
    ///     exposures: Exposure events and per-variant counts for plain reads (``variant``,
    ///         ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
    ///         (seconds, default 3600: one event per unit, flag and revision per window),
    ///         ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
    ///         ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
    ///         docs/runtime.md, "Exposures of plain reads".
    ///     redis: Share budgets, guardrails, metrics and pins through this Redis (as in
    ///         ``from_file``).
    ///
    /// Raises:
    ///     SourceError: No document could be fetched in time (``SOURCE_UNREACHABLE``) or it is
    ///         not signed by ``verify_key`` (``SIGNATURE_INVALID``).
    ///     DocumentError: The server's document is invalid and no cache could serve.
    ///     InvalidArgumentError: A bad URL, header, key, CA file or interval.
    #[staticmethod]
    #[pyo3(signature = (
        url, *, poll_interval = 5.0, cache_path = None, verify_key = None, headers = None,
        ca_file = None, timeout = 10.0, startup_timeout = 10.0, events = None, exposures = None, redis = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn from_url(
        py: Python<'_>,
        url: &str,
        poll_interval: f64,
        cache_path: Option<PathBuf>,
        verify_key: Option<&str>,
        headers: Option<std::collections::BTreeMap<String, String>>,
        ca_file: Option<PathBuf>,
        timeout: f64,
        startup_timeout: f64,
        events: Option<PathBuf>,
        exposures: Option<&Bound<'_, PyAny>>,
        redis: Option<&str>,
    ) -> PyResult<Flags> {
        let interval = self::poll_interval(py, Some(poll_interval))?;
        let seconds = |name: &str, value: f64| match Duration::try_from_secs_f64(value) {
            Ok(d) => Ok(d),
            Err(_) => Err(invalid_argument(
                py,
                format!("{name} must be a number of seconds >= 0, got {value}"),
            )),
        };
        let startup = seconds("startup_timeout", startup_timeout)?;
        let read_timeout = seconds("timeout", timeout)?;
        let verify_key = verify_key
            .map(flagrail_sources::VerifyKey::parse)
            .transpose()
            .into_py_result(py)?;
        let options = flagrail_sources::HttpOptions {
            poll_interval: interval,
            cache_path,
            verify_key,
            headers: headers.unwrap_or_default().into_iter().collect(),
            ca_file,
            read_timeout,
            startup_timeout: startup,
            ..flagrail_sources::HttpOptions::default()
        };
        let core = py
            .detach(|| flagrail_sources::from_url(url, options))
            .into_py_result(py)?;
        write_events(py, &core, events)?;
        crate::exposures::enable(py, &core, exposures)?;
        listen(&core);
        let inner = crate::handle::track(Arc::new(Inner::new(py, core, interval)));
        crate::fleet::attach(py, &inner, redis)?;
        Ok(Flags { inner })
    }

    /// Loads a flag document from a Redis key and follows every push at once.
    ///
    /// The document lives at ``key``; ``flagrail push`` (and ``flagrail kill`` / ``unkill``
    /// with ``--redis``) writes it atomically and announces the new revision on the
    /// document's pub/sub channel. Every process subscribed to it re-reads the key as soon as
    /// the message arrives, right after every (re)subscription, and every ``poll_interval``
    /// seconds as a safety net (pub/sub can drop messages). A new document is checked
    /// (signature, when ``verify_key`` is given: the signature lives at a sibling key),
    /// validated and swapped in atomically; a bad or unsigned one never replaces the live
    /// one. ``url`` is ``redis://host:port[/db]`` or, for a Redis Cluster,
    /// ``redis+cluster://host1:port1,host2:port2,...``: every key of one document shares one
    /// hash tag, so each write stays in one slot. ``status()["remote"]`` says ``kind:
    /// "redis"``, whether the process is connected and subscribed, the push counter
    /// (``redis_revision``), last success, staleness and the last error with its code. The
    /// poller reconnects with backoff, stops with ``close()`` (or ``with``) and restarts in
    /// forked children.
    ///
    /// Startup never fails because Redis is down: after ``startup_timeout`` seconds without
    /// an answer, the cache (``cache_path``) serves, or else an empty document (revision
    /// ``redis:waiting``: every flag answers the caller's default) until Redis returns and the
    /// real document loads. An empty key is treated the same way (nothing pushed yet).
    ///
    /// Args:
    ///     url: ``redis://`` or ``redis+cluster://``; a password in it is never shown.
    ///     key: The key that holds the document.
    ///     poll_interval: Seconds between safety-net reads.
    ///     cache_path: A file that keeps the last good document for cold starts.
    ///     verify_key: The text of ``flagrail.pub``: documents must carry a detached ed25519
    ///         signature by this key (``flagrail push`` stores the ``.sig`` beside the
    ///         document).
    ///     timeout: Seconds a Redis reply (and connecting) may take.
    ///     startup_timeout: Seconds to wait for Redis before serving the cache or the empty
    ///         document.
    ///     events: A JSON-lines file that every telemetry event is appended to.
    ///     exposures: Exposure events and per-variant counts for plain reads (``variant``,
    ///         ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
    ///         (seconds, default 3600: one event per unit, flag and revision per window),
    ///         ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
    ///         ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
    ///         docs/runtime.md, "Exposures of plain reads".
    ///     redis: Share budgets, guardrails, metrics and sticky pins through this Redis (as
    ///         in ``from_file``; usually ``url`` again). The shared keys carry ``key``'s hash
    ///         tag.
    ///
    /// Raises:
    ///     DocumentError: Redis holds an invalid document and no cache could serve.
    ///     SourceError: Redis holds a document not signed by ``verify_key``
    ///         (``SIGNATURE_INVALID``) and no cache could serve.
    ///     InvalidArgumentError: A bad URL, key, verify key or interval.
    #[staticmethod]
    #[pyo3(signature = (
        url, *, key = "flagrail:document", poll_interval = 30.0, cache_path = None,
        verify_key = None, timeout = 1.0, startup_timeout = 5.0, events = None, exposures = None, redis = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn from_redis(
        py: Python<'_>,
        url: &str,
        key: &str,
        poll_interval: f64,
        cache_path: Option<PathBuf>,
        verify_key: Option<&str>,
        timeout: f64,
        startup_timeout: f64,
        events: Option<PathBuf>,
        exposures: Option<&Bound<'_, PyAny>>,
        redis: Option<&str>,
    ) -> PyResult<Flags> {
        let interval = self::poll_interval(py, Some(poll_interval))?;
        let seconds = |name: &str, value: f64| match Duration::try_from_secs_f64(value) {
            Ok(d) if !(name == "timeout" && d.is_zero()) => Ok(d),
            _ => Err(invalid_argument(
                py,
                format!("{name} must be a number of seconds > 0, got {value}"),
            )),
        };
        let startup = seconds("startup_timeout", startup_timeout)?;
        let reply_timeout = seconds("timeout", timeout)?;
        let verify_key = verify_key
            .map(flagrail_sources::VerifyKey::parse)
            .transpose()
            .into_py_result(py)?;
        let options = flagrail_fleet::RedisOptions {
            key: key.to_string(),
            poll_interval: interval,
            cache_path,
            verify_key,
            timeouts: flagrail_fleet::Timeouts {
                connect: reply_timeout,
                read: reply_timeout,
                write: reply_timeout,
            },
            startup_timeout: startup,
            ..flagrail_fleet::RedisOptions::default()
        };
        let core = py
            .detach(|| flagrail_fleet::from_redis(url, options))
            .into_py_result(py)?;
        write_events(py, &core, events)?;
        crate::exposures::enable(py, &core, exposures)?;
        listen(&core);
        let inner = crate::handle::track(Arc::new(Inner::new(py, core, interval)));
        crate::fleet::attach_keyed(py, &inner, redis, key)?;
        Ok(Flags { inner })
    }

    /// Loads a flag document from JSON text (no reloading).
    ///
    /// Args:
    ///     text: The document.
    ///     events: A JSON-lines file that every telemetry event is appended to.
    ///     exposures: Exposure events and per-variant counts for plain reads (``variant``,
    ///         ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
    ///         (seconds, default 3600: one event per unit, flag and revision per window),
    ///         ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
    ///         ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
    ///         docs/runtime.md, "Exposures of plain reads".
    ///
    /// Raises:
    ///     DocumentError: The document is invalid; ``problems`` lists every problem.
    ///     SourceError: The events file cannot be opened.
    #[staticmethod]
    #[pyo3(signature = (text, *, events = None, exposures = None))]
    fn from_json(
        py: Python<'_>,
        text: &str,
        events: Option<PathBuf>,
        exposures: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Flags> {
        let core = py
            .detach(|| CoreFlags::from_json(text))
            .into_py_result(py)?;
        write_events(py, &core, events)?;
        crate::exposures::enable(py, &core, exposures)?;
        Ok(Flags {
            inner: crate::handle::track(Arc::new(Inner::new(py, core, DEFAULT_POLL_INTERVAL))),
        })
    }

    /// Loads a flag document from a dict, as ``json.load`` would return it (no reloading).
    ///
    /// Args:
    ///     obj: The document.
    ///     events: A JSON-lines file that every telemetry event is appended to.
    ///     exposures: Exposure events and per-variant counts for plain reads (``variant``,
    ///         ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
    ///         (seconds, default 3600: one event per unit, flag and revision per window),
    ///         ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
    ///         ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
    ///         docs/runtime.md, "Exposures of plain reads".
    ///
    /// Raises:
    ///     DocumentError: The document is invalid, or holds a value with no JSON form;
    ///         ``problems`` lists every problem.
    ///     SourceError: The events file cannot be opened.
    #[staticmethod]
    #[pyo3(signature = (obj, *, events = None, exposures = None))]
    fn from_dict(
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        events: Option<PathBuf>,
        exposures: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Flags> {
        let value = from_python(obj).into_py_result(py)?;
        let core = py
            .detach(|| CoreFlags::from_value(value))
            .into_py_result(py)?;
        write_events(py, &core, events)?;
        crate::exposures::enable(py, &core, exposures)?;
        Ok(Flags {
            inner: crate::handle::track(Arc::new(Inner::new(py, core, DEFAULT_POLL_INTERVAL))),
        })
    }

    /// Flags for a test, from a short mapping: ``Flags.for_tests({"support-bot": "v2.2"})``.
    ///
    /// Each entry is one flag: a variant id (the flag's only variant, served to everyone), an
    /// object of variant ids to payloads with an optional ``"default"`` (the first variant
    /// otherwise), or a flag written in full (it has ``"variants"``). The document's revision
    /// is ``"for-tests"``.
    ///
    /// Raises:
    ///     InvalidArgumentError: The mapping is not of that shape.
    ///     DocumentError: The document it makes is invalid (a default naming no variant …).
    #[staticmethod]
    #[pyo3(signature = (mapping, *, events = None, exposures = None))]
    fn for_tests(
        py: Python<'_>,
        mapping: &Bound<'_, PyAny>,
        events: Option<PathBuf>,
        exposures: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Flags> {
        let value = from_python(mapping).into_py_result(py)?;
        let document = for_tests::document(&value).into_py_result(py)?;
        let core = CoreFlags::from_value(document).into_py_result(py)?;
        write_events(py, &core, events)?;
        crate::exposures::enable(py, &core, exposures)?;
        Ok(Flags {
            inner: crate::handle::track(Arc::new(Inner::new(py, core, DEFAULT_POLL_INTERVAL))),
        })
    }

    /// Serves ``variant`` for ``flag`` inside a ``with`` block, in this thread or asyncio task
    /// only: ``with flags.override("support-bot", "v2.2"): ...``.
    ///
    /// Inside the block ``variant``, ``Flag.variant`` and ``call`` / ``acall`` of that flag
    /// serve the variant with reason ``DEFAULT`` whatever the context (kills, rules, pins and
    /// budgets do not apply; a ``call``'s fallbacks still do). Blocks nest (the innermost
    /// wins), and leaving one restores what was in force before, also when it raised. Other
    /// threads, and tasks not created inside the block, never see it. ``explain`` is not
    /// affected.
    ///
    /// Raises:
    ///     InvalidArgumentError: On entering, when the live document has no such flag or the
    ///         flag no such variant.
    fn r#override(&self, flag: Bound<'_, PyString>, variant: Bound<'_, PyString>) -> Override {
        Override::new(
            self.inner.core().clone(),
            Arc::clone(&self.inner.overrides),
            flag,
            variant,
        )
    }

    /// The variant of ``flag`` for ``context``.
    ///
    /// Never raises for a flag or a context value: an unknown flag gives ``default`` with
    /// reason ``FLAG_NOT_FOUND``, and a context value of a type no condition can use is
    /// ignored for matching (``explain`` shows it).
    ///
    /// Args:
    ///     flag: The flag key.
    ///     context: The request's attributes: str, int, float, bool or list of str values.
    ///     default: The id to report when the flag does not exist.
    ///     at: Evaluate as of this instant (an aware datetime or an RFC 3339 string) instead
    ///         of now: for simulations of ramps.
    // Replaced at import by the raw entry point of `fast.rs`, which copies this docstring and
    // signature: this declaration is where they are written.
    #[pyo3(signature = (flag, context = None, default = None, *, at = None))]
    fn variant<'py>(
        &self,
        py: Python<'py>,
        flag: &Bound<'py, PyString>,
        context: Option<&Bound<'py, PyAny>>,
        default: Option<&Bound<'py, PyString>>,
        at: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Variant>> {
        self.inner.variant(py, flag, context, default, at)
    }

    /// Several flags for one context, the context read once: ``{key: Variant}`` in the order
    /// of ``keys``.
    ///
    /// Each result is the one ``variant(key, context)`` returns, and every flag is decided on
    /// the same document revision (a reload cannot land between two of them). Only the
    /// attributes the requested flags use are read from ``context``. A key that names no flag
    /// gives a ``FLAG_NOT_FOUND`` result whose ``id`` is ``None``; a repeated key appears once.
    ///
    /// Args:
    ///     context: The request's attributes, as for ``variant``.
    ///     keys: The flag keys (a list, tuple or other iterable of str; not a single str).
    ///     at: Evaluate as of this instant, as for ``variant``.
    ///
    /// Raises:
    ///     TypeError: ``keys`` is a str, or holds something that is not a str.
    #[pyo3(signature = (context, keys, *, at = None))]
    fn variants<'py>(
        &self,
        py: Python<'py>,
        context: Option<&Bound<'py, PyAny>>,
        keys: &Bound<'py, PyAny>,
        at: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.inner.variants(py, context, Some(keys), at)
    }

    /// Every flag of the live document for one context, the context read once:
    /// ``{key: Variant}`` in document order (see ``variants``).
    ///
    /// Args:
    ///     context: The request's attributes, as for ``variant``.
    ///     at: Evaluate as of this instant, as for ``variant``.
    #[pyo3(signature = (context = None, *, at = None))]
    fn all<'py>(
        &self,
        py: Python<'py>,
        context: Option<&Bound<'py, PyAny>>,
        at: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.inner.variants(py, context, None, at)
    }

    /// A handle bound to one flag key: ``chat = flags.flag("support-bot")`` then
    /// ``chat.variant(user)``. The flag does not have to exist (yet).
    fn flag(&self, key: Bound<'_, PyString>) -> Flag {
        Flag {
            inner: Arc::clone(&self.inner),
            key: key.unbind(),
        }
    }

    /// How ``flag`` is decided for ``context``, step by step.
    ///
    /// The result fields (``flag``, ``variant``, ``payload``, ``reason``, ``rule_id``,
    /// ``bucket``, ``revision``, ``kill_source``) plus ``steps``, each condition with the
    /// attribute value it saw (a value of an unusable type shows as ``"<dict>"`` with an
    /// ``ignored`` note).
    #[pyo3(signature = (flag, context = None, *, at = None))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        flag: &Bound<'py, PyString>,
        context: Option<&Bound<'py, PyAny>>,
        at: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.inner.explain(py, flag, context, at)
    }

    /// Source, live revision, its age, the last reload error (with ``code`` and every
    /// problem's ``path``), reload counters, whether the file is watched, local kills, tripped
    /// guardrails, the ramps an autopilot governs (``autopilot``: state, step, percent, when
    /// the step began, and ``last_decision``: the last decision the autopilot wrote, when,
    /// samples per arm and each metric's interval and status), every budget's state (``budgets``), the pins held in memory
    /// (``sticky_pins``) and the pin store (``sticky_store``: ``kind`` ``"memory"`` or
    /// ``"custom"``, ``errors`` it raised since the process started, ``last_error``).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut status = self.inner.core.status().to_json();
        status["sticky_store"] = self.inner.pins.status_json();
        to_python(py, &status)
    }

    /// Keeps the pins of sticky flags in ``store`` instead of this process's memory, so that
    /// every instance of the app sees the same pins; ``None`` goes back to memory.
    ///
    /// ``store`` is any object with ``get(key) -> str | None``, ``set(key, value,
    /// ttl_seconds)`` and ``delete(key)`` (see ``flagrail.PinStore``); keys are
    /// ``flagrail/pin/<flag>/<conversation>``, values are variant ids, and ``set`` gets the
    /// flag's ``sticky.ttl`` in seconds (the store expires pins). ``get`` may return bytes
    /// (UTF-8). ``acall`` awaits methods that return an awaitable; ``variant``, ``explain``
    /// and ``call`` cannot, and count that as a store error.
    ///
    /// A store that fails never fails an evaluation: the pin is ignored (and nothing written
    /// for that decision), and the error is counted in ``status()["sticky_store"]``.
    ///
    /// Raises:
    ///     TypeError: ``store`` lacks a callable ``get``, ``set`` or ``delete``.
    #[pyo3(signature = (store))]
    fn use_pin_store(&self, store: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.inner.pins.install(store.filter(|s| !s.is_none()))
    }

    /// Begins ``acall`` in one crossing (not public API): ``(run, shadow run or None, first
    /// step)``, the first step being what ``next(run)`` would give (``(variant, timeout)`` or
    /// ``None``); or ``(None, (store, key), None)`` when the pin of ``flag`` must first be
    /// read from the user's store (then ``_start_run`` with what it returned).
    #[allow(clippy::type_complexity)]
    fn _begin<'py>(
        &self,
        py: Python<'py>,
        flag: &Bound<'py, PyString>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(
        Option<PyRun>,
        Option<Py<PyAny>>,
        Option<(Bound<'py, Variant>, Option<f64>)>,
    )> {
        if let Some(lookup) = runtime::pin_lookup(&self.inner, py, flag, context)? {
            let lookup = lookup.into_pyobject(py)?.into_any().unbind();
            return Ok((None, Some(lookup), None));
        }
        let run = PyRun::new(runtime::start(
            &self.inner,
            py,
            flag,
            context,
            runtime::Pins::Memory,
        )?);
        let shadow = match run.take_shadow() {
            Some(shadow) => Some(Py::new(py, shadow)?.into_any()),
            None => None,
        };
        // The first step in the same crossing: a second one costs more than the step.
        let first = run.step(py)?;
        Ok((Some(run), shadow, first))
    }

    /// Counts an exception a pin store method raised in ``acall`` (not public API).
    fn _pin_store_error(&self, method: &str, exc: &Bound<'_, PyAny>) {
        self.inner.pins.record_exception(method, exc);
    }

    /// Kills ``flag`` (or every flag when ``None``) in this process only: the next evaluation
    /// serves the flag's kill variant with reason ``KILLED``. The document is not changed.
    #[pyo3(signature = (flag = None, *, reason = None))]
    fn kill(&self, flag: Option<&str>, reason: Option<&str>) {
        self.inner.core.kill(flag, reason);
    }

    /// Lifts a local kill of ``flag`` (every local kill when ``None``). A kill written in the
    /// document stays in force until a new document lifts it.
    #[pyo3(signature = (flag = None))]
    fn unkill(&self, flag: Option<&str>) {
        self.inner.core.unkill(flag);
    }

    /// Checks a file source now and reloads it if it changed; returns whether a new document
    /// went live. Useful with ``reload=False``. A static source returns ``False``.
    ///
    /// Raises:
    ///     SourceError: The file cannot be read.
    ///     DocumentError: The new document is invalid (the live one stays).
    fn reload_if_changed(&self, py: Python<'_>) -> PyResult<bool> {
        let core = &self.inner.core;
        py.detach(|| core.reload_if_changed()).into_py_result(py)
    }

    /// Stops the background watcher or poller; the last document keeps serving. Idempotent.
    /// ``with Flags.from_file(...) as flags:`` closes at the end of the block.
    fn close(&self, py: Python<'_>) {
        self.inner.core.stop_watching();
        let fleet = &self.inner.fleet;
        py.detach(|| fleet.close());
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the handle (see ``close``); exceptions propagate.
    #[pyo3(signature = (exc_type = None, exc_value = None, traceback = None))]
    fn __exit__(
        &self,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc_value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) {
        let _ = (exc_type, exc_value, traceback);
        Python::attach(|py| self.close(py));
    }

    /// The revision of the live document.
    #[getter]
    fn revision<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, self.inner.core.snapshot().document().revision())
    }

    /// Calls ``fn(variant)`` through the flag's fallback chain and returns the first result.
    ///
    /// The assigned variant is tried first, then the flag's ``fallback`` list in order, each
    /// at most once, within ``max_attempts`` model calls and ``max_total_ms``. An exception
    /// from ``fn`` (classified: ``timeout``, ``rate_limit``, ``server``, ``content_policy``,
    /// ``rejected`` for ``Reject``, ``invalid_request``, ``other``) or a timeout moves to the next step. A non-AI
    /// variant (``"ai": false``) ends the chain without calling ``fn``: ``value`` is ``None``.
    /// ``fn`` may return ``Output(value, input_tokens=..., output_tokens=..., cost=...)`` to
    /// report usage.
    ///
    /// A step without ``timeout_ms`` calls ``fn`` on this thread. A step with one runs it on a
    /// worker thread and waits at most that long; a Python function cannot be cancelled, so a
    /// late one is abandoned (it runs to its end, its result is discarded) and the chain moves
    /// on. Workers are capped per process (``FLAGRAIL_CALL_THREADS``, default 256): when every
    /// one is busy with an attempt that outlived its timeout, the step fails at once with kind
    /// ``timeout`` without calling ``fn``. Use ``acall`` when attempts must really be cancelled.
    ///
    /// When the flag's ``shadow`` draws its variant for this unit, ``fn`` is also called with
    /// that variant (``is_shadow`` true) on a worker thread once the chain has ended: nothing
    /// waits for it, and what it returns or raises never reaches the result
    /// (``CallResult.shadow`` names it). Both outcomes are recorded with the function's
    /// output, for comparison.
    ///
    /// Programming errors are not model outcomes: an ``async`` ``fn`` raises ``TypeError``
    /// (use ``acall``), a ``RecursionError`` or a ``BaseException`` (``KeyboardInterrupt``)
    /// ends the call at once (the attempt is recorded as cancelled, feeding no metric), and
    /// ``call`` nested more than 100 deep on one thread raises ``CallDepthError`` (a
    /// ``RecursionError``, code ``CALL_DEPTH_EXCEEDED``; the limit is the core's, as in Node).
    ///
    /// Args:
    ///     flag: The flag key.
    ///     context: The request's attributes (as for ``variant``); ``segment`` labels metrics.
    ///     fn: Called with the ``Variant`` of each step.
    ///
    /// Raises:
    ///     FlagNotFoundError: The live document has no such flag (code ``FLAG_NOT_FOUND``).
    ///     AllAttemptsFailedError: Every step failed and none was non-AI (code
    ///         ``ALL_ATTEMPTS_FAILED``); ``attempts`` lists them.
    #[pyo3(signature = (flag, context, r#fn))]
    fn call(
        &self,
        py: Python<'_>,
        flag: &Bound<'_, PyString>,
        context: Option<&Bound<'_, PyAny>>,
        r#fn: &Bound<'_, PyAny>,
    ) -> PyResult<CallResult> {
        runtime::call(&self.inner, py, flag, context, r#fn)
    }

    /// ``call`` for an async ``fn``: ``await flags.acall(flag, context, fn)``.
    ///
    /// The same chain as ``call``; an attempt that reaches its ``timeout_ms`` is cancelled
    /// (its coroutine sees ``asyncio.CancelledError``) and the chain moves on. Cancelling the
    /// awaiting task cancels the attempt in flight and ends the call: the attempt is recorded
    /// as cancelled and its budget reservation given back at once. A plain function is
    /// accepted too; it runs on the event loop's thread, so its timeout is only noticed once
    /// it returns. A shadow call runs as a task of its own, created once the served chain has
    /// ended, that nothing awaits. Pin store methods that return an awaitable are awaited.
    ///
    /// Raises:
    ///     FlagNotFoundError: The live document has no such flag (code ``FLAG_NOT_FOUND``).
    ///     AllAttemptsFailedError: Every step failed and none was non-AI (code
    ///         ``ALL_ATTEMPTS_FAILED``); ``attempts`` lists them.
    ///     CallDepthError: ``acall`` nested more than 100 deep in one task (an ``acall``
    ///         awaited inside the function of another; code ``CALL_DEPTH_EXCEEDED``).
    #[pyo3(signature = (flag, context, r#fn))]
    fn acall<'py>(
        slf: &Bound<'py, Self>,
        flag: &Bound<'py, PyString>,
        context: Option<&Bound<'py, PyAny>>,
        r#fn: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        runtime::acall(slf.as_any(), flag, context, r#fn)
    }

    /// Starts a run for ``acall`` (not public API). ``pinned`` is ``(key, value, ok)``: what
    /// the pin store's ``get`` returned (awaited) for ``_begin``'s key, ``ok`` false when
    /// it raised.
    #[pyo3(signature = (flag, context, pinned = None))]
    fn _start_run(
        &self,
        py: Python<'_>,
        flag: &Bound<'_, PyString>,
        context: Option<&Bound<'_, PyAny>>,
        pinned: Option<(String, Bound<'_, PyAny>, bool)>,
    ) -> PyResult<PyRun> {
        let pins = match pinned {
            None => runtime::Pins::Memory,
            Some((key, value, ok)) => runtime::Pins::Read(self.inner.pins.accept(key, &value, ok)),
        };
        runtime::start(&self.inner, py, flag, context, pins).map(PyRun::new)
    }

    /// A tracker for a model call the app makes itself with ``variant``:
    /// ``t = flags.tracker(v, user)`` then ``t.success(...)`` or ``t.error(...)``.
    ///
    /// Args:
    ///     variant: A result of ``variant()`` (or ``Flag.variant()``).
    ///     context: The request's attributes: the unit and ``segment`` label the events and
    ///         metrics.
    ///
    /// Raises:
    ///     FlagNotFoundError: ``variant`` is the result of an unknown flag.
    #[pyo3(signature = (variant, context = None))]
    fn tracker(
        &self,
        py: Python<'_>,
        variant: &Bound<'_, Variant>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Tracker> {
        runtime::tracker(&self.inner, py, variant, context)
    }

    /// Attaches user feedback to the run that served it (``CallResult.run_id`` or
    /// ``Tracker.run_id``): ``score`` (-1 to 1, e.g. +1/-1) and/or ``quality`` (0 to 1,
    /// watched by ``quality`` guardrails). The first score and the first quality of a run
    /// count; later ones are ignored. Returns ``False`` when the run is unknown (never seen,
    /// not served, or older than the last 100,000 runs) or every value given was already
    /// counted.
    ///
    /// Raises:
    ///     InvalidArgumentError: ``score`` or ``quality`` is NaN, infinite or out of its range.
    #[pyo3(signature = (run_id, *, score = None, quality = None))]
    fn feedback(
        &self,
        py: Python<'_>,
        run_id: &Bound<'_, PyString>,
        score: Option<f64>,
        quality: Option<f64>,
    ) -> PyResult<bool> {
        // A str with lone surrogates has no UTF-8 form, so it names no run: unknown, like any
        // other id this process never gave out (not a UnicodeEncodeError). The scores are
        // checked first either way (INVALID_ARGUMENT decided by the core).
        match run_id.to_str() {
            Ok(run_id) => self
                .inner
                .core
                .feedback(run_id, score, quality)
                .into_py_result(py),
            Err(_) => flagrail_core::runtime::check_feedback(score, quality)
                .map(|()| false)
                .into_py_result(py),
        }
    }

    /// Outcome aggregates since the process started, as
    /// ``{flag: {variant: {"requests", "errors", "errors_by_kind", "latency_ms", "tokens",
    /// "cost", "quality", "segments", "guardrails", ...}}}``, plus ``"$budgets"`` (every
    /// budget's state) when the document has budgets and ``"$exposures"`` (as
    /// ``status()["exposures"]``) on a handle opened with ``exposures=``.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner.core.metrics())
    }

    /// ``metrics()`` in the Prometheus text exposition format, for a ``/metrics`` endpoint.
    fn metrics_text(&self) -> String {
        self.inner.core.metrics_text()
    }

    /// The whole fleet's aggregates (a handle opened with ``redis=``): every process's
    /// ``metrics()`` added up — counters summed, rates and means recomputed, latency
    /// quantiles the largest of any process — plus ``"$fleet"``: ``processes``, the fleet's
    /// guardrail states, ``read_at``. Read by the background thread every second; this call
    /// makes no round trip.
    ///
    /// Raises:
    ///     InvalidArgumentError: The handle was not opened with ``redis=``.
    fn fleet_metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::fleet::metrics(py, &self.inner)
    }

    /// ``fleet_metrics()`` in the Prometheus text format (``flagrail_fleet_*`` series).
    ///
    /// Raises:
    ///     InvalidArgumentError: The handle was not opened with ``redis=``.
    fn fleet_metrics_text(&self, py: Python<'_>) -> PyResult<String> {
        crate::fleet::metrics_text(py, &self.inner)
    }

    /// Calls ``callback(event)`` with every telemetry event (a dict with ``type``, ``time``,
    /// ``flag``, ``variant``, ``revision``, ``run_id`` …): exposures, outcomes, feedback and
    /// guardrail trips.
    ///
    /// The callback runs synchronously on the thread that produced the event (keep it quick;
    /// hand the event to a queue for slow work). An exception it raises is logged to the
    /// ``flagrail`` logger and never reaches the call.
    fn on_event(&self, callback: Bound<'_, PyAny>) {
        runtime::on_event(&self.inner.core, callback.unbind());
    }

    /// Appends every telemetry event to ``path`` as one JSON object per line (safe with other
    /// threads and processes appending to the same file). A write failure never fails a call.
    ///
    /// Raises:
    ///     SourceError: The file cannot be opened.
    fn write_events(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.inner.core.write_events_to(path).into_py_result(py)
    }

    /// Hashes unit ids in events with ``key`` (HMAC-SHA-256, ``"h:"`` + 32 hex digits) so that
    /// no raw id leaves the process while events of one unit still join; ``None`` stops
    /// hashing. A ``str`` key is used as its UTF-8 bytes.
    fn hash_units(&self, key: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        runtime::hash_units(&self.inner.core, key)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let status = self.inner.core.status();
        Ok(format!(
            "<flagrail.Flags source={} revision={}>",
            py_repr(py, &status.source)?,
            py_repr(py, &status.revision)?
        ))
    }
}

/// A handle bound to one flag key (see ``Flags.flag``).
#[pyclass(frozen, module = "flagrail", name = "Flag")]
pub struct Flag {
    inner: Arc<Inner>,
    key: Py<PyString>,
}

impl Flag {
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn key_object(&self) -> &Py<PyString> {
        &self.key
    }
}

#[pymethods]
impl Flag {
    /// The flag key.
    #[getter]
    fn key(&self, py: Python<'_>) -> Py<PyString> {
        self.key.clone_ref(py)
    }

    /// The variant of this flag for ``context`` (see ``Flags.variant``).
    // Replaced at import by `fast.rs`, like `Flags.variant`.
    #[pyo3(signature = (context = None, default = None, *, at = None))]
    fn variant<'py>(
        &self,
        py: Python<'py>,
        context: Option<&Bound<'py, PyAny>>,
        default: Option<&Bound<'py, PyString>>,
        at: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Variant>> {
        self.inner
            .variant(py, self.key.bind(py), context, default, at)
    }

    /// How this flag is decided for ``context`` (see ``Flags.explain``).
    #[pyo3(signature = (context = None, *, at = None))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        context: Option<&Bound<'py, PyAny>>,
        at: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.inner.explain(py, self.key.bind(py), context, at)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<flagrail.Flag {}>", self.key.bind(py).repr()?))
    }
}
