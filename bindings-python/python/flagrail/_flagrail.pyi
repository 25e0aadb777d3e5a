"""Type stubs of the native module ``flagrail._flagrail``. Import from ``flagrail``.

Kept in sync with bindings-python/src/*.rs (whose ``///`` docs are the runtime docstrings) by
``python -m mypy.stubtest flagrail._flagrail``, which ``make test-python`` runs.
"""

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import datetime
from os import PathLike
from types import TracebackType
from typing import Any, Generic, TypeVar, final, overload

from flagrail._pins import PinStore

__all__ = [
    "Flags",
    "Flag",
    "Override",
    "RedisPinStore",
    "Variant",
    "CallResult",
    "Attempt",
    "Output",
    "Tracker",
    "bucket",
    "diff",
    "_after_fork_in_child",
    "_after_fork_in_parent",
    "_before_fork",
    "_hold_locks_for_tests",
    "_before_exit",
    "_forget_call_threads",
    "_stop_call_threads",
    "_next_call_job",
    "_enter_call",
    "_MAX_CALL_DEPTH",
    "_Slot",
    "_reuses_results",
    "_Run",
    "HASH_VERSION",
    "__version__",
]

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)

__version__: str
HASH_VERSION: int
_MAX_CALL_DEPTH: int

def _enter_call(flag: str, depth: int) -> int:
    """Raises the core's ``CallDepthError`` when an ``acall`` at ``depth`` would nest too deep;
    the next depth otherwise. Not public API."""
"""The bucketing algorithm version (docs/bucketing.md); a change is a new version."""

def bucket(salt: str, unit: str | int, total: int = 100000) -> int:
    """The bucket in ``range(total)`` that ``unit`` falls into under ``salt``.

    MurmurHash3 x86_32 (seed 0) of ``salt + unit``, scaled to ``total`` (bucketing v1,
    identical in Rust, Python and Node). Percentages in flag documents are weights over 100000.

    Args:
        salt: The flag's salt (by default the flag key).
        unit: The bucketing unit: a str as is, or an int (hashed as its decimal text).
        total: The total weight, 1 to 4294967295.

    Raises:
        InvalidArgumentError: ``total`` is out of range, ``unit`` is an int outside the
            64-bit signed range, or ``salt`` or ``unit`` is a str with unpaired surrogates
            (it has no UTF-8 form; code ``INVALID_ARGUMENT``).
        TypeError: ``unit`` is neither a str nor an int.
    """

def diff(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    users: int | None = None,
    seed: int | None = None,
    population: Iterable[Mapping[str, Any]] | None = None,
    at: datetime | str | None = None,
) -> dict[str, Any]:
    """Reviews the change from ``old`` to ``new`` before it goes live, as ``flagrail diff`` does.

    Both documents are evaluated by the core over a population at ``at``, and again at each
    later step of the new document's ramps. The review shows what changed per flag and which
    share of units moves from which variant to which: overall, per segment of ``new`` and
    along its ramps.

    Args:
        old: The document now live, as a mapping (what ``json.load`` gives).
        new: The proposed document.
        users: Synthetic units to evaluate (default 10000, at most 1000000), drawn from both
            documents' attributes with ``seed``: the same documents and seed give the same units.
        seed: The synthetic population's seed (default 1).
        population: Evaluate these contexts (mappings) instead of synthetic units.
        at: The review instant: an aware datetime or an RFC 3339 string (default now).

    Returns:
        The review: ``old_revision``, ``new_revision``, ``at``, ``units``, ``changes``,
        ``flags`` (per flag: ``moved``, ``moved_share``, ``moves``, ``segments``,
        ``ramp_steps``), ``dangers`` (each with a stable ``code``: ``RAMP_JUMP``,
        ``KILL_CALLS_MODEL``, ``REBUCKET``, ``REMOVED_VARIANT_SERVED``) and ``dangerous``.

    Raises:
        DocumentError: A document is invalid; each problem's path starts with ``old.`` or
            ``new.`` (code ``INVALID_DOCUMENT``).
        InvalidArgumentError: ``users`` or ``seed`` is out of range or given with
            ``population``, or the population is empty, too large or holds a non-mapping.
    """

def _before_exit() -> None:
    """Registered with ``atexit`` by the package; not meant to be called directly.

    A watcher thread that is logging a reload while the interpreter finalizes would be torn
    out of Python half-way (a fatal error in ``PyGILState_Release``). At exit, watchers stop
    attaching, and the ones already attached are given up to two seconds to finish.
    """

def _forget_call_threads() -> None:
    """Forgets the worker threads of sync ``call`` after ``fork()`` in the child (they did not
    survive it). Registered by ``flagrail._call``; not meant to be called directly."""

def _stop_call_threads() -> None:
    """The interpreter is exiting: idle worker threads of sync ``call`` never attach to it
    again. Registered with ``atexit`` by ``flagrail._call``; not meant to be called directly."""

def _next_call_job(done: list[Any]) -> tuple[Callable[..., Any], tuple[Any, ...], _Slot | None] | None:
    """The next job of a worker thread of sync ``call``, waited for with the GIL released, or
    ``None`` when the worker has idled long enough. ``done`` is ``[]`` or the outcome of the
    job just run, ``[slot, ok, value]``, emptied here. Not public API."""

@final
class _Slot:
    """Where a worker reports the result of a job someone waits for. Not public API."""

def _reuses_results() -> bool:
    """Whether ``Flags.variant`` hands out result objects nobody holds any more again (decided at
    import: off with ``FLAGRAIL_REUSE_RESULTS=0``, and without a GIL). For tests and debugging.
    """

def _before_fork() -> None:
    """Takes every lock of every live ``Flags`` before a ``fork()``, so that the child starts
    with none held by a thread it does not have.

    Registered by the package with ``os.register_at_fork(before=...)``; not meant to be called
    directly.
    """

def _after_fork_in_parent() -> None:
    """Lets go of what ``_before_fork`` took, in the parent.

    Registered by the package with ``os.register_at_fork(after_in_parent=...)``; not meant to
    be called directly.
    """

def _after_fork_in_child() -> None:
    """Lets go of what ``_before_fork`` took, starts every live ``Flags``' metrics from zero in
    a forked child, restarts their reload watchers and pollers, attaches a fresh fleet state
    where the parent shared one, and draws a new seed for run ids.

    Registered by the package with ``os.register_at_fork(after_in_child=...)``; not meant to be
    called directly.
    """

def _hold_locks_for_tests(flags: Flags, seconds: float) -> None:
    """Holds every lock of ``flags`` on a new thread for ``seconds``, and returns once they are
    held: the state a fork meets when another thread is inside an update. For tests."""

@final
class Flags:
    """The live feature flags of a process.

    Create one per document at startup and share it: it is safe to use from any number of
    threads, and a file source is reloaded in the background (a new document is validated off
    the request path and swapped in atomically; an invalid one never replaces the live one).
    Reading a flag never raises.

    Example::

        flags = Flags.from_file("flags.json")
        v = flags.variant("support-bot", {"user_id": "u-1", "plan": "pro"})
        v.id, v["model"], v.reason
    """

    @staticmethod
    def from_file(
        path: str | PathLike[str],
        *,
        reload: bool = True,
        poll_interval: float | None = None,
        events: str | PathLike[str] | None = None,
        exposures: bool | Mapping[str, float] | None = None,
        verify_key: str | None = None,
        redis: str | None = None,
    ) -> Flags:
        """Loads a flag document from a JSON file and, unless ``reload=False``, watches it.

        A changed file goes live within one poll interval (0.25 s by default). Forked children
        (gunicorn ``--preload``, celery prefork, multiprocessing) keep watching.

        Args:
            path: The JSON file.
            reload: Watch the file and hot-reload it.
            poll_interval: Seconds between checks of the file.
            events: A JSON-lines file that every telemetry event is appended to (see
                ``write_events``).
            exposures: Exposure events and per-variant counts for plain reads (``variant``,
                ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
                (seconds, default 3600: one event per unit, flag and revision per window),
                ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
                ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
                docs/runtime.md, "Exposures of plain reads".
            verify_key: The text of ``flagrail.pub``: the document must carry a detached
                ed25519 signature by this key in ``<path>.sig`` (written by ``flagrail sign``).
                Every reload checks the pair: an unsigned or wrongly signed version is rejected
                (``SIGNATURE_INVALID`` in ``status()`` and the ``reload_rejected`` event) and the
                live one stays; a document replaced before its ``.sig`` goes live once both
                match.
            redis: ``redis://host:port/db`` or ``redis+cluster://host:port,…``: share budgets,
                guardrails, metrics and sticky pins with every process (Python or Node) opened
                with the same Redis (see ``fleet_metrics`` and docs/fleet.md). Never waits for
                Redis: an unreachable one means local enforcement until it answers.

        Raises:
            SourceError: The file (or the events file) cannot be opened (code
                ``SOURCE_UNREACHABLE``), or it is not signed by ``verify_key``
                (``SIGNATURE_INVALID``).
            DocumentError: The document is invalid; ``problems`` lists every problem.
            InvalidArgumentError: ``verify_key`` is not the text of a ``flagrail.pub``, or
                ``redis`` is not a Redis URL (``REDIS_URL_INVALID``).
        """

    @staticmethod
    def from_url(
        url: str,
        *,
        poll_interval: float = 5.0,
        cache_path: str | PathLike[str] | None = None,
        verify_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        ca_file: str | PathLike[str] | None = None,
        timeout: float = 10.0,
        startup_timeout: float = 10.0,
        events: str | PathLike[str] | None = None,
        exposures: bool | Mapping[str, float] | None = None,
        redis: str | None = None,
    ) -> Flags:
        """Loads a flag document from an HTTP(S) URL and polls it in the background.

        Each poll is a conditional GET (``If-None-Match`` / ``If-Modified-Since``): an unchanged
        document costs a 304 and no parse. A new document is checked (signature, when
        ``verify_key`` is given), validated and swapped in atomically; a failed poll, or a bad,
        truncated, oversized (over 16 MiB) or unsigned document, never replaces the live one.
        Failures back off exponentially with full jitter (up to 30 s; ``Retry-After`` is
        honoured); the first success returns to ``poll_interval``. ``status()["remote"]`` has the
        URL, ETag, last success and attempt, consecutive failures, staleness and the last error
        with its code. The poller stops with ``close()`` (or ``with``) and restarts in forked
        children.

        Startup: the document is fetched before this returns. If that fails and ``cache_path``
        holds a valid copy (every good document is written there atomically), the copy serves
        at once (``status()["remote"]["served_from_cache"]``) and polling goes on. Without a
        usable cache, attempts go on for up to ``startup_timeout`` seconds, then this raises.

        Args:
            url: ``http://`` or ``https://``; credentials in it are never shown.
            poll_interval: Seconds between polls.
            cache_path: A file that keeps the last good document for cold starts.
            verify_key: The text of ``flagrail.pub``: documents must carry a detached ed25519
                signature (``<url>.sig``, written by ``flagrail sign``) by this key.
            headers: Sent with every request (e.g. ``{"Authorization": "Bearer …"}``); never
                logged, never sent to another host on a redirect.
            ca_file: A PEM file of CA certificates to trust instead of the bundled Mozilla
                roots.
            timeout: Seconds a response (headers and body) may take once connected; a stalled
                server fails that poll (connecting has its own 5 s bound).
            startup_timeout: Seconds to wait for a first document without a usable cache.
            events: A JSON-lines file that every telemetry event is appended to.
            exposures: Exposure events and per-variant counts for plain reads (``variant``,
                ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
                (seconds, default 3600: one event per unit, flag and revision per window),
                ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
                ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
                docs/runtime.md, "Exposures of plain reads".
            redis: Share budgets, guardrails, metrics and pins through this Redis (as in
                ``from_file``).

        Raises:
            SourceError: No document could be fetched in time (``SOURCE_UNREACHABLE``) or it is
                not signed by ``verify_key`` (``SIGNATURE_INVALID``).
            DocumentError: The server's document is invalid and no cache could serve.
            InvalidArgumentError: A bad URL, header, key, CA file or interval.
        """

    @staticmethod
    def from_redis(
        url: str,
        *,
        key: str = "flagrail:document",
        poll_interval: float = 30.0,
        cache_path: str | PathLike[str] | None = None,
        verify_key: str | None = None,
        timeout: float = 1.0,
        startup_timeout: float = 5.0,
        events: str | PathLike[str] | None = None,
        exposures: bool | Mapping[str, float] | None = None,
        redis: str | None = None,
    ) -> Flags:
        """Loads a flag document from a Redis key and follows every push at once.

        The document lives at ``key``; ``flagrail push`` (and ``flagrail kill`` / ``unkill``
        with ``--redis``) writes it atomically and announces the new revision on the
        document's pub/sub channel. Every process subscribed to it re-reads the key as soon as
        the message arrives, right after every (re)subscription, and every ``poll_interval``
        seconds as a safety net (pub/sub can drop messages). A new document is checked
        (signature, when ``verify_key`` is given: the signature lives at a sibling key),
        validated and swapped in atomically; a bad or unsigned one never replaces the live
        one. ``url`` is ``redis://host:port[/db]`` or, for a Redis Cluster,
        ``redis+cluster://host1:port1,host2:port2,...``: every key of one document shares one
        hash tag, so each write stays in one slot. ``status()["remote"]`` says ``kind:
        "redis"``, whether the process is connected and subscribed, the push counter
        (``redis_revision``), last success, staleness and the last error with its code. The
        poller reconnects with backoff, stops with ``close()`` (or ``with``) and restarts in
        forked children.

        Startup never fails because Redis is down: after ``startup_timeout`` seconds without
        an answer, the cache (``cache_path``) serves, or else an empty document (revision
        ``redis:waiting``: every flag answers the caller's default) until Redis returns and the
        real document loads. An empty key is treated the same way (nothing pushed yet).

        Args:
            url: ``redis://`` or ``redis+cluster://``; a password in it is never shown.
            key: The key that holds the document.
            poll_interval: Seconds between safety-net reads.
            cache_path: A file that keeps the last good document for cold starts.
            verify_key: The text of ``flagrail.pub``: documents must carry a detached ed25519
                signature by this key (``flagrail push`` stores the ``.sig`` beside the
                document).
            timeout: Seconds a Redis reply (and connecting) may take.
            startup_timeout: Seconds to wait for Redis before serving the cache or the empty
                document.
            events: A JSON-lines file that every telemetry event is appended to.
            exposures: Exposure events and per-variant counts for plain reads (``variant``,
                ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
                (seconds, default 3600: one event per unit, flag and revision per window),
                ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
                ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
                docs/runtime.md, "Exposures of plain reads".
            redis: Share budgets, guardrails, metrics and sticky pins through this Redis (as
                in ``from_file``; usually ``url`` again). The shared keys carry ``key``'s hash
                tag.

        Raises:
            DocumentError: Redis holds an invalid document and no cache could serve.
            SourceError: Redis holds a document not signed by ``verify_key``
                (``SIGNATURE_INVALID``) and no cache could serve.
            InvalidArgumentError: A bad URL, key, verify key or interval.
        """

    @staticmethod
    def from_json(
        text: str,
        *,
        events: str | PathLike[str] | None = None,
        exposures: bool | Mapping[str, float] | None = None,
    ) -> Flags:
        """Loads a flag document from JSON text (no reloading).

        Args:
            text: The document.
            events: A JSON-lines file that every telemetry event is appended to.
            exposures: Exposure events and per-variant counts for plain reads (``variant``,
                ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
                (seconds, default 3600: one event per unit, flag and revision per window),
                ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
                ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
                docs/runtime.md, "Exposures of plain reads".

        Raises:
            DocumentError: The document is invalid; ``problems`` lists every problem.
            SourceError: The events file cannot be opened.
        """

    @staticmethod
    def from_dict(
        obj: Mapping[str, Any],
        *,
        events: str | PathLike[str] | None = None,
        exposures: bool | Mapping[str, float] | None = None,
    ) -> Flags:
        """Loads a flag document from a dict, as ``json.load`` would return it (no reloading).

        Args:
            obj: The document.
            events: A JSON-lines file that every telemetry event is appended to.
            exposures: Exposure events and per-variant counts for plain reads (``variant``,
                ``variants``, ``all``): ``True`` for the defaults, or a dict with ``window``
                (seconds, default 3600: one event per unit, flag and revision per window),
                ``sample`` (share of units, 0 to 1, default 1; drawn by bucketing
                ``"<flag>/exposure"``) and ``max_keys`` (keys remembered, default 100000). See
                docs/runtime.md, "Exposures of plain reads".

        Raises:
            DocumentError: The document is invalid, or holds a value with no JSON form;
                ``problems`` lists every problem.
            SourceError: The events file cannot be opened.
        """

    @staticmethod
    def for_tests(
        mapping: Mapping[str, str | Mapping[str, Any]],
        *,
        events: str | PathLike[str] | None = None,
        exposures: bool | Mapping[str, float] | None = None,
    ) -> Flags:
        """Flags for a test, from a short mapping: ``Flags.for_tests({"support-bot": "v2.2"})``.

        Each entry is one flag: a variant id (the flag's only variant, served to everyone), an
        object of variant ids to payloads with an optional ``"default"`` (the first variant
        otherwise), or a flag written in full (it has ``"variants"``). The document's revision
        is ``"for-tests"``.

        Raises:
            InvalidArgumentError: The mapping is not of that shape.
            DocumentError: The document it makes is invalid (a default naming no variant …).
        """

    def override(self, flag: str, variant: str) -> Override:
        """Serves ``variant`` for ``flag`` inside a ``with`` block, in this thread or asyncio task
        only: ``with flags.override("support-bot", "v2.2"): ...``.

        Inside the block ``variant``, ``Flag.variant`` and ``call`` / ``acall`` of that flag
        serve the variant with reason ``DEFAULT`` whatever the context (kills, rules, pins and
        budgets do not apply; a ``call``'s fallbacks still do). Blocks nest (the innermost
        wins), and leaving one restores what was in force before, also when it raised. Other
        threads, and tasks not created inside the block, never see it. ``explain`` is not
        affected.

        Raises:
            InvalidArgumentError: On entering, when the live document has no such flag or the
                flag no such variant.
        """

    def variant(
        self,
        flag: str,
        context: Mapping[str, object] | None = None,
        default: str | None = None,
        *,
        at: datetime | str | None = None,
    ) -> Variant:
        """The variant of ``flag`` for ``context``.

        Never raises for a flag or a context value: an unknown flag gives ``default`` with
        reason ``FLAG_NOT_FOUND``, and a context value of a type no condition can use is
        ignored for matching (``explain`` shows it).

        Args:
            flag: The flag key.
            context: The request's attributes: str, int, float, bool or list of str values.
            default: The id to report when the flag does not exist.
            at: Evaluate as of this instant (an aware datetime or an RFC 3339 string) instead
                of now: for simulations of ramps.
        """

    def variants(
        self,
        context: Mapping[str, object] | None,
        keys: Iterable[str],
        *,
        at: datetime | str | None = None,
    ) -> dict[str, Variant]:
        """Several flags for one context, the context read once: ``{key: Variant}`` in the order
        of ``keys``.

        Each result is the one ``variant(key, context)`` returns, and every flag is decided on
        the same document revision (a reload cannot land between two of them). Only the
        attributes the requested flags use are read from ``context``. A key that names no flag
        gives a ``FLAG_NOT_FOUND`` result whose ``id`` is ``None``; a repeated key appears once.

        Args:
            context: The request's attributes, as for ``variant``.
            keys: The flag keys (a list, tuple or other iterable of str; not a single str).
            at: Evaluate as of this instant, as for ``variant``.

        Raises:
            TypeError: ``keys`` is a str, or holds something that is not a str.
        """

    def all(
        self, context: Mapping[str, object] | None = None, *, at: datetime | str | None = None
    ) -> dict[str, Variant]:
        """Every flag of the live document for one context, the context read once:
        ``{key: Variant}`` in document order (see ``variants``).

        Args:
            context: The request's attributes, as for ``variant``.
            at: Evaluate as of this instant, as for ``variant``.
        """

    def flag(self, key: str) -> Flag:
        """A handle bound to one flag key: ``chat = flags.flag("support-bot")`` then
        ``chat.variant(user)``. The flag does not have to exist (yet)."""

    def explain(
        self,
        flag: str,
        context: Mapping[str, object] | None = None,
        *,
        at: datetime | str | None = None,
    ) -> dict[str, Any]:
        """How ``flag`` is decided for ``context``, step by step.

        The result fields (``flag``, ``variant``, ``payload``, ``reason``, ``rule_id``,
        ``bucket``, ``revision``, ``kill_source``) plus ``steps``, each condition with the
        attribute value it saw (a value of an unusable type shows as ``"<dict>"`` with an
        ``ignored`` note).
        """

    def status(self) -> dict[str, Any]:
        """Source, live revision, its age, the last reload error (with ``code`` and every
        problem's ``path``), reload counters, whether the file is watched, local kills, tripped
        guardrails, the ramps an autopilot governs (``autopilot``: state, step, percent, when
        the step began, and ``last_decision``: the last decision the autopilot wrote, when,
        samples per arm and each metric's interval and status), every budget's state (``budgets``), the pins held in memory
        (``sticky_pins``) and the pin store (``sticky_store``: ``kind`` ``"memory"`` or
        ``"custom"``, ``errors`` it raised since the process started, ``last_error``)."""

    def use_pin_store(self, store: PinStore | None) -> None:
        """Keeps the pins of sticky flags in ``store`` instead of this process's memory, so
        that every instance of the app sees the same pins; ``None`` goes back to memory.

        ``store`` is any object with ``get(key) -> str | None``, ``set(key, value,
        ttl_seconds)`` and ``delete(key)`` (see ``flagrail.PinStore``); keys are
        ``flagrail/pin/<flag>/<conversation>``, values are variant ids, and ``set`` gets the
        flag's ``sticky.ttl`` in seconds (the store expires pins). ``get`` may return bytes
        (UTF-8). ``acall`` awaits methods that return an awaitable; ``variant``, ``explain``
        and ``call`` cannot, and count that as a store error.

        A store that fails never fails an evaluation: the pin is ignored (and nothing written
        for that decision), and the error is counted in ``status()["sticky_store"]``.

        Raises:
            TypeError: ``store`` lacks a callable ``get``, ``set`` or ``delete``.
        """

    def _begin(
        self, flag: str, context: Mapping[str, object] | None
    ) -> (
        tuple[_Run, _Run | None, tuple[Variant, float | None] | None]
        | tuple[None, tuple[Any, str], None]
    ):
        """Begins ``acall`` in one crossing (not public API): ``(run, shadow run or None, first
        step)``, the first step being what ``next(run)`` would give (``(variant, timeout)`` or
        ``None``); or ``(None, (store, key), None)`` when the pin of ``flag`` must first be
        read from the user's store (then ``_start_run`` with what it returned)."""

    def _pin_store_error(self, method: str, exc: BaseException) -> None:
        """Counts an exception a pin store method raised in ``acall`` (not public API)."""

    def kill(self, flag: str | None = None, *, reason: str | None = None) -> None:
        """Kills ``flag`` (or every flag when ``None``) in this process only: the next
        evaluation serves the flag's kill variant with reason ``KILLED``. The document is not
        changed."""

    def unkill(self, flag: str | None = None) -> None:
        """Lifts a local kill of ``flag`` (every local kill when ``None``). A kill written in
        the document stays in force until a new document lifts it."""

    def close(self) -> None:
        """Stops the background watcher or poller; the last document keeps serving.
        Idempotent. ``with Flags.from_file(...) as flags:`` closes at the end of the block."""

    def __enter__(self) -> Flags: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        """Closes the handle (see ``close``); exceptions propagate."""

    def reload_if_changed(self) -> bool:
        """Checks a file source now and reloads it if it changed; returns whether a new
        document went live. Useful with ``reload=False``. A static source returns ``False``.

        Raises:
            SourceError: The file cannot be read.
            DocumentError: The new document is invalid (the live one stays).
        """

    @overload
    def call(
        self,
        flag: str,
        context: Mapping[str, object] | None,
        fn: Callable[[Variant], Output[_T]],
    ) -> CallResult[_T]:
        """Calls ``fn(variant)`` through the flag's fallback chain and returns the first result.

        The assigned variant is tried first, then the flag's ``fallback`` list in order, each
        at most once, within ``max_attempts`` model calls and ``max_total_ms``. An exception
        from ``fn`` (classified: ``timeout``, ``rate_limit``, ``server``, ``content_policy``,
        ``rejected`` for ``Reject``, ``invalid_request``, ``other``) or a timeout moves to the next step. A non-AI
        variant (``"ai": false``) ends the chain without calling ``fn``: ``value`` is ``None``.
        ``fn`` may return ``Output(value, input_tokens=..., output_tokens=..., cost=...)`` to
        report usage.

        A step without ``timeout_ms`` calls ``fn`` on this thread. A step with one runs it on a
        worker thread and waits at most that long; a Python function cannot be cancelled, so a
        late one is abandoned (it runs to its end, its result is discarded) and the chain moves
        on. Workers are capped per process (``FLAGRAIL_CALL_THREADS``, default 256): when every
        one is busy with an attempt that outlived its timeout, the step fails at once with kind
        ``timeout`` without calling ``fn``. Use ``acall`` when attempts must really be cancelled.

        When the flag's ``shadow`` draws its variant for this unit, ``fn`` is also called with
        that variant (``is_shadow`` true) on a worker thread once the chain has ended: nothing
        waits for it, and what it returns or raises never reaches the result
        (``CallResult.shadow`` names it). Both outcomes are recorded with the function's
        output, for comparison.

        Programming errors are not model outcomes: an ``async`` ``fn`` raises ``TypeError``
        (use ``acall``), a ``RecursionError`` or a ``BaseException`` (``KeyboardInterrupt``)
        ends the call at once (the attempt is recorded as cancelled, feeding no metric), and
        ``call`` nested more than 100 deep on one thread raises ``CallDepthError`` (a
        ``RecursionError``, code ``CALL_DEPTH_EXCEEDED``; the limit is the core's, as in Node).

        Args:
            flag: The flag key.
            context: The request's attributes (as for ``variant``); ``segment`` labels metrics.
            fn: Called with the ``Variant`` of each step.

        Raises:
            FlagNotFoundError: The live document has no such flag (code ``FLAG_NOT_FOUND``).
            AllAttemptsFailedError: Every step failed and none was non-AI (code
                ``ALL_ATTEMPTS_FAILED``); ``attempts`` lists them.
        """

    @overload
    def call(
        self, flag: str, context: Mapping[str, object] | None, fn: Callable[[Variant], _T]
    ) -> CallResult[_T]: ...

    @overload
    def acall(
        self,
        flag: str,
        context: Mapping[str, object] | None,
        fn: Callable[[Variant], Awaitable[Output[_T]]],
    ) -> Coroutine[Any, Any, CallResult[_T]]:
        """``call`` for an async ``fn``: ``await flags.acall(flag, context, fn)``.

        The same chain as ``call``; an attempt that reaches its ``timeout_ms`` is cancelled
        (its coroutine sees ``asyncio.CancelledError``) and the chain moves on. Cancelling the
        awaiting task cancels the attempt in flight and ends the call: the attempt is recorded
        as cancelled and its budget reservation given back at once. A plain function is
        accepted too; it runs on the event loop's thread, so its timeout is only noticed once
        it returns. A shadow call runs as a task of its own, created once the served chain has
        ended, that nothing awaits. Pin store methods that return an awaitable are awaited.

        Raises:
            FlagNotFoundError: The live document has no such flag (code ``FLAG_NOT_FOUND``).
            AllAttemptsFailedError: Every step failed and none was non-AI (code
                ``ALL_ATTEMPTS_FAILED``); ``attempts`` lists them.
            CallDepthError: ``acall`` nested more than 100 deep in one task (an ``acall``
                awaited inside the function of another; code ``CALL_DEPTH_EXCEEDED``).
        """

    @overload
    def acall(
        self,
        flag: str,
        context: Mapping[str, object] | None,
        fn: Callable[[Variant], Awaitable[_T]],
    ) -> Coroutine[Any, Any, CallResult[_T]]: ...
    @overload
    def acall(
        self,
        flag: str,
        context: Mapping[str, object] | None,
        fn: Callable[[Variant], Output[_T]],
    ) -> Coroutine[Any, Any, CallResult[_T]]: ...
    @overload
    def acall(
        self,
        flag: str,
        context: Mapping[str, object] | None,
        fn: Callable[[Variant], _T],
    ) -> Coroutine[Any, Any, CallResult[_T]]: ...

    def _start_run(
        self,
        flag: str,
        context: Mapping[str, object] | None,
        pinned: tuple[str, object, bool] | None = None,
    ) -> _Run:
        """Starts a run for ``acall`` (not public API). ``pinned`` is ``(key, value, ok)``:
        what the pin store's ``get`` returned (awaited) for ``_begin``'s key, ``ok``
        false when it raised."""

    def tracker(self, variant: Variant, context: Mapping[str, object] | None = None) -> Tracker:
        """A tracker for a model call the app makes itself with ``variant``:
        ``t = flags.tracker(v, user)`` then ``t.success(...)`` or ``t.error(...)``.

        Args:
            variant: A result of ``variant()`` (or ``Flag.variant()``).
            context: The request's attributes: the unit and ``segment`` label the events and
                metrics.

        Raises:
            FlagNotFoundError: ``variant`` is the result of an unknown flag.
        """

    def feedback(self, run_id: str, *, score: float | None = None, quality: float | None = None) -> bool:
        """Attaches user feedback to the run that served it (``CallResult.run_id`` or
        ``Tracker.run_id``): ``score`` (-1 to 1, e.g. +1/-1) and/or ``quality`` (0 to 1,
        watched by ``quality`` guardrails). The first score and the first quality of a run
        count; later ones are ignored. Returns ``False`` when the run is unknown (never seen,
        not served, or older than the last 100,000 runs) or every value given was already
        counted.

        Raises:
            InvalidArgumentError: ``score`` or ``quality`` is NaN, infinite or out of its range."""

    def metrics(self) -> dict[str, Any]:
        """Outcome aggregates since the process started, as
        ``{flag: {variant: {"requests", "errors", "errors_by_kind", "latency_ms", "tokens",
        "cost", "quality", "segments", "guardrails", ...}}}``, plus ``"$budgets"`` (every
        budget's state) when the document has budgets and ``"$exposures"`` (as
        ``status()["exposures"]``) on a handle opened with ``exposures=``."""

    def metrics_text(self) -> str:
        """``metrics()`` in the Prometheus text exposition format, for a ``/metrics`` endpoint."""

    def fleet_metrics(self) -> dict[str, Any]:
        """The whole fleet's aggregates (a handle opened with ``redis=``): every process's
        ``metrics()`` added up — counters summed, rates and means recomputed, latency
        quantiles the largest of any process — plus ``"$fleet"``: ``processes``, the fleet's
        guardrail states, ``read_at``. Read by the background thread every second; this call
        makes no round trip.

        Raises:
            InvalidArgumentError: The handle was not opened with ``redis=``.
        """

    def fleet_metrics_text(self) -> str:
        """``fleet_metrics()`` in the Prometheus text format (``flagrail_fleet_*`` series).

        Raises:
            InvalidArgumentError: The handle was not opened with ``redis=``.
        """

    def on_event(self, callback: Callable[[dict[str, Any]], object]) -> None:
        """Calls ``callback(event)`` with every telemetry event (a dict with ``type``, ``time``,
        ``flag``, ``variant``, ``revision``, ``run_id`` …): exposures, outcomes, feedback and
        guardrail trips.

        The callback runs synchronously on the thread that produced the event (keep it quick;
        hand the event to a queue for slow work). An exception it raises is logged to the
        ``flagrail`` logger and never reaches the call.
        """

    def write_events(self, path: str | PathLike[str]) -> None:
        """Appends every telemetry event to ``path`` as one JSON object per line (safe with
        other threads and processes appending to the same file). A write failure never fails a
        call.

        Raises:
            SourceError: The file cannot be opened.
        """

    def hash_units(self, key: str | bytes | None) -> None:
        """Hashes unit ids in events with ``key`` (HMAC-SHA-256, ``"h:"`` + 32 hex digits) so
        that no raw id leaves the process while events of one unit still join; ``None`` stops
        hashing. A ``str`` key is used as its UTF-8 bytes."""

    @property
    def revision(self) -> str:
        """The revision of the live document."""

@final
class Override:
    """A context manager that serves ``variant`` for ``flag`` inside its ``with`` block, in this thread
    or asyncio task only."""

    def __enter__(self) -> Override:
        """Opens the scope.

        Raises:
            InvalidArgumentError: The live document has no such flag, or the flag no such
                variant.
        """

    def __exit__(self, *_exc: object) -> bool:
        """Closes the scope, restoring what was in force before it, also when the block raised
        (the exception propagates)."""

@final
class RedisPinStore:
    """The built-in Redis pin store a handle opened with ``redis=`` uses (installed for you; see
    ``flagrail.PinStore`` for the protocol). ``get`` reads Redis with a 50 ms timeout and
    raises ``ConnectionError`` while Redis is unreachable (the pin is then ignored and counted
    in ``status()["sticky_store"]``); ``set`` and ``delete`` are queued and never wait.
    """

    def get(self, key: str) -> str | None:
        """The pinned variant id at ``key``, or ``None``."""

    def set(self, key: str, value: str, ttl_seconds: float) -> None:
        """Pins ``key`` to ``value`` for ``ttl_seconds`` (queued)."""

    def delete(self, key: str) -> None:
        """Removes the pin at ``key`` (queued)."""

@final
class Flag:
    """A handle bound to one flag key (see ``Flags.flag``)."""

    @property
    def key(self) -> str:
        """The flag key."""

    def variant(
        self,
        context: Mapping[str, object] | None = None,
        default: str | None = None,
        *,
        at: datetime | str | None = None,
    ) -> Variant:
        """The variant of this flag for ``context`` (see ``Flags.variant``)."""

    def explain(
        self, context: Mapping[str, object] | None = None, *, at: datetime | str | None = None
    ) -> dict[str, Any]:
        """How this flag is decided for ``context`` (see ``Flags.explain``)."""

@final
class Variant:
    """The variant of a flag that one context gets, and why.

    Returned by ``Flags.variant()`` and ``Flag.variant()``; never constructed directly.
    Immutable, hashable and comparable. Item access reads the payload: ``v["model"]``,
    ``v.get("temperature", 0.7)``.
    """

    @property
    def id(self) -> str | None:
        """The variant id (``"control"``, ``"v2.2"`` …); the caller's ``default`` when the flag
        does not exist (``reason == "FLAG_NOT_FOUND"``), which is ``None`` unless one was given."""

    @property
    def flag(self) -> str:
        """The flag key that was evaluated."""

    @property
    def payload(self) -> Any:
        """The variant's payload (model, prompt, parameters …) as a read-only mapping.

        Nested objects are read-only mappings and arrays are tuples. Converted once per document
        and shared by every result. A non-object payload (``true``, ``"gpt"``, ``3``) is returned
        as is; an unknown flag (``FLAG_NOT_FOUND``) has ``None``, as in Node, the CLI and
        docs/flag-document.md.
        """

    @property
    def reason(self) -> str:
        """Why this variant was chosen: one of ``FLAG_NOT_FOUND``, ``KILLED``, ``GUARDRAIL``,
        ``STICKY``, ``BUDGET``, ``TARGETING_MATCH``, ``SPLIT``, ``DEFAULT``."""

    @property
    def _open_feature_reason(self) -> str:
        """The OpenFeature resolution reason of this decision (``flagrail.openfeature`` and the
        OpenTelemetry spans read it; not public API): the core's table, where the default of a
        flag without rules reads ``STATIC``."""

    @property
    def rule_id(self) -> str | None:
        """The id of the rule that decided, or ``None`` (default, kill, unknown flag)."""

    @property
    def bucket(self) -> int | None:
        """The unit's bucket when a split or ramp decided (over the split's total weight, or
        100000 for percentages), else ``None``."""

    @property
    def revision(self) -> str:
        """The revision of the flag document that made this decision."""

    @property
    def kill_source(self) -> str | None:
        """Which kill switch is in force when ``reason == "KILLED"``: ``"document"``,
        ``"flag"``, ``"local-all"``, ``"local-flag"``, ``"guardrail"`` or ``"budget"``;
        otherwise ``None``."""

    @property
    def shadow(self) -> str | None:
        """The id of the shadow variant drawn for this decision (the flag's ``shadow`` runs it
        beside the served call in ``Flags.call``), or ``None``."""

    @property
    def budget(self) -> str | None:
        """The id of the budget that decided: for reason ``BUDGET``, or ``KILLED`` by an
        exhausted budget (``kill_source == "budget"``); otherwise ``None``."""

    @property
    def is_shadow(self) -> bool:
        """``True`` only for the variant handed to the function of a shadow call (its result
        is recorded, never served)."""

    def cache_key(self, *parts: str | int) -> str:
        """A cache key for a response of this variant: ``flagrail:v1:<flag>:<variant>:<payload
        hash>``, plus a hash of ``parts`` when given (the prompt, the user …).

        Editing the variant's payload (model, prompt, parameters) changes its keys, and two
        variants never share a key, so a cached answer is never served for another variant.
        The same in every language (tests/vectors/v1/cache-keys.json).

        Args:
            parts: Strings and integers (an integer is its decimal text; ``bool`` is refused).

        Raises:
            TypeError: A part is neither a str nor an int.
            InvalidArgumentError: An int part is outside the 64-bit signed range.
            FlagNotFoundError: The result is of an unknown flag (it has no payload).
        """

    def __getitem__(self, key: str, /) -> Any:
        """``v["model"]``: a payload field. Raises ``KeyError`` when the payload has no such
        field (or is not an object)."""

    def get(self, key: str, default: Any = None) -> Any:
        """``v.get("temperature", 0.7)``: a payload field, or ``default`` when it is absent."""

    def to_dict(self) -> dict[str, Any]:
        """The result as a new plain dict (payload copied as plain dicts and lists), ready for
        JSON logs: ``flag``, ``variant``, ``payload``, ``reason``, ``rule_id``, ``bucket``,
        ``revision``, ``kill_source``, ``budget``, ``shadow``."""

    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class CallResult(Generic[_T]):
    """What ``Flags.call`` and ``Flags.acall`` return.

    ``value`` is what the function returned (unwrapped from ``Output``), or ``None`` when a
    non-AI variant served without calling it; ``variant`` is the variant that served.
    """

    @classmethod
    def __class_getitem__(cls, item: Any) -> Any: ...

    @property
    def value(self) -> _T | None:
        """What the function returned (unwrapped from ``Output``); ``None`` when a non-AI
        variant served without calling the function."""

    @property
    def variant(self) -> Variant:
        """The variant that served: the one whose call succeeded, or the non-AI variant the
        chain ended on. Its ``reason``, ``rule_id``, ``bucket`` and ``revision`` are the
        evaluation's."""

    @property
    def attempts(self) -> list[Attempt]:
        """Every model call made, in order (a non-AI variant that served is not an attempt)."""

    @property
    def fallback_used(self) -> bool:
        """Whether a variant other than the assigned one served."""

    @property
    def run_id(self) -> str:
        """The id of this call in events and in ``Flags.feedback``."""

    @property
    def assigned(self) -> str:
        """The variant id the flag assigned (the first step of the chain)."""

    @property
    def shadow(self) -> str | None:
        """The id of the shadow variant run beside this call (its outcome is recorded with
        ``"shadow": true`` and never served), or ``None``: no shadow drawn for this unit, or
        the shadow's ``max_cost_per_hour`` is spent."""

@final
class Attempt:
    """One model call of a ``Flags.call``: which variant, how it ended, how long it took, what
    it used."""

    @property
    def variant(self) -> str:
        """The variant id that was called."""

    @property
    def outcome(self) -> str:
        """``"success"`` or ``"error"``."""

    @property
    def error_kind(self) -> str | None:
        """Why it failed: ``"timeout"``, ``"rate_limit"``, ``"server"``, ``"content_policy"``,
        ``"rejected"``, ``"invalid_request"``, ``"other"`` or ``"threads_busy"`` (not started: every
        call thread was busy); ``None`` for a success."""

    @property
    def error(self) -> str | None:
        """The error's message (the exception's text), ``None`` for a success."""

    @property
    def latency_ms(self) -> float:
        """Wall time of the attempt, measured by the core with a monotonic clock."""

    @property
    def input_tokens(self) -> int | None:
        """Input tokens, as reported by ``Output``."""

    @property
    def output_tokens(self) -> int | None:
        """Output tokens, as reported by ``Output``."""

    @property
    def cost(self) -> float | None:
        """The cost: as reported by ``Output``, or computed from the tokens and the variant's
        ``cost_per_1k_input_tokens`` / ``cost_per_1k_output_tokens``."""

    def to_dict(self) -> dict[str, Any]:
        """The attempt as a plain dict, ready for JSON logs."""

@final
class Output(Generic[_T_co]):
    """What the function given to ``Flags.call`` may return to report usage:
    ``return Output(text, input_tokens=812, output_tokens=95)``. The call's ``value`` is
    ``value``; tokens and cost go to the attempt, the metrics and the events (without ``cost``,
    it is computed from the variant's prices)."""

    @classmethod
    def __class_getitem__(cls, item: Any) -> Any: ...

    def __new__(
        cls,
        value: _T_co,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: float | None = None,
    ) -> Output[_T_co]: ...
    @property
    def value(self) -> _T_co:
        """What the call returns as ``CallResult.value``."""

    @property
    def input_tokens(self) -> int | None:
        """Input (prompt) tokens of the model call."""

    @property
    def output_tokens(self) -> int | None:
        """Output (completion) tokens of the model call."""

    @property
    def cost(self) -> float | None:
        """The cost of the model call, when the function knows it."""

@final
class Tracker:
    """Reports the outcome of one model call that the app makes itself.

    From ``Flags.tracker(variant, context)``: the attempt is timed from the tracker's creation
    unless ``latency_ms`` is given. Report once, with ``success()`` or ``error()``; later
    reports are ignored. Outcomes reach the metrics, the guardrails and the events like those
    of ``Flags.call``, and ``run_id`` works with ``Flags.feedback`` after a success.
    """

    @property
    def run_id(self) -> str:
        """The id of this run in events and in ``Flags.feedback``."""

    def success(
        self,
        *,
        latency_ms: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: float | None = None,
    ) -> None:
        """The call succeeded.

        Args:
            latency_ms: The call's duration, when the app timed it (else the time since the
                tracker was created).
            input_tokens: Input tokens used.
            output_tokens: Output tokens produced.
            cost: The call's cost (else computed from the tokens and the variant's prices).

        Raises:
            InvalidArgumentError: ``latency_ms`` or ``cost`` is NaN, infinite or negative, or a
                token count is not a whole number from 0 to 2**53 - 1; nothing is recorded and
                the tracker can still be reported.
        """

    def error(
        self,
        kind_or_exception: str | BaseException | None = None,
        *,
        latency_ms: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: float | None = None,
    ) -> None:
        """The call failed.

        Args:
            kind_or_exception: An error kind (``"timeout"``, ``"rate_limit"``, ``"server"``,
                ``"content_policy"``, ``"rejected"``, ``"invalid_request"``, ``"other"``) or the exception the call
                raised, classified like those of ``Flags.call``.
            latency_ms: The call's duration, when the app timed it.
            input_tokens: Input tokens used.
            output_tokens: Output tokens produced.
            cost: The call's cost.

        Raises:
            InvalidArgumentError: ``kind_or_exception`` is a string that names no error kind, or
                ``latency_ms`` or ``cost`` is NaN, infinite or negative, or a token count is not
                a whole number from 0 to 2**53 - 1; nothing is recorded and the tracker can still
                be reported.
        """

@final
class _Run:
    """A call in progress, for the asyncio loop of ``flagrail._call.acall``. Not public API."""

    def __iter__(self) -> _Run: ...
    def __next__(self) -> tuple[Variant, float | None]:
        """``(variant, timeout_seconds or None)`` to call next; the iteration ends with the run
        (then ``finish()``)."""

    def succeed(self, value: object) -> CallResult[Any]:
        """The attempt in flight returned ``value``: the result."""

    def fail(self, exc: BaseException) -> None:
        """The attempt in flight raised ``exc``."""

    def finish(self) -> CallResult[Any]:
        """The result once the iteration ended, or ``AllAttemptsFailedError``."""

    def _cancel(self) -> None:
        """The caller gave up (a ``BaseException`` reached ``acall``): the attempt in flight is
        recorded as cancelled and its reservation given back now, not when the run is
        collected."""

    def _shadow(self) -> _Run | None:
        """The shadow run to start beside this one (once), or ``None``."""

    def _pin_effect(self) -> tuple[str, str, str, float] | tuple[str, str] | None:
        """What to write to the user's pin store for this run's decision (once):
        ``("set", key, variant, ttl_seconds)``, ``("delete", key)`` or ``None``."""
