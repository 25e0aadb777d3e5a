"""The host-language half of ``Flags.call`` / ``Flags.acall``: running the user's function.

The core (through ``_flagrail``) decides which variant to try next and records what happened;
this module only does what needs Python's own concurrency:

* ``call_with_timeout``: a sync attempt with a timeout runs on a shared pool of daemon threads
  and is waited on with the timeout. A Python function cannot be cancelled, so a late attempt
  is abandoned: it runs to its end on its thread and its result (or exception) is discarded.
  The threads are daemons, so an abandoned attempt never holds up interpreter exit.
* ``acall``: the asyncio loop over the chain; an attempt with a timeout is really cancelled
  (``asyncio.timeout`` on 3.11+, ``asyncio.wait_for`` on 3.10). It also reads and writes the
  user's pin store of a sticky flag, awaiting methods that return an awaitable.
* Shadow calls: ``submit_shadow`` runs the shadow attempt of a sync ``call`` on the same pool
  of daemon threads, and ``acall`` runs it as a task (kept in ``_shadow_tasks`` until done).
  Nothing waits for a shadow, and whatever it raises is recorded as its failed attempt and
  swallowed: a shadow never delays, changes or fails the served call.

Not public API: use ``Flags.call`` and ``Flags.acall``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import queue
import sys
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as _FutureTimeout
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from ._flagrail import CallResult, Flags, Variant, _Run

__all__ = ["acall", "call_with_timeout", "submit_shadow"]

# Workers that found no work for this long exit; the pool grows again on demand.
_IDLE_SECONDS = 30.0

_Work = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]]


class _DaemonPool:
    """A thread pool of daemon threads that never queues work behind a busy (or abandoned)
    attempt: a submission with no idle worker starts a new thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        # Workers waiting for work that no submission has claimed yet.
        self._idle = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._work.put((future, fn, args))
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        if spawn:
            threading.Thread(target=self._worker, name="flagrail-call", daemon=True).start()
        return future

    def _worker(self) -> None:
        while True:
            try:
                future, fn, args = self._work.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        return
                # Every idle worker has been claimed by a submission: one is on its way.
                continue
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:  # handed to the waiting caller
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args
            with self._lock:
                self._idle += 1


_pool: _DaemonPool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _DaemonPool:
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = _DaemonPool()
            pool = _pool
    return pool


def _forget_pool() -> None:
    # Threads do not survive fork(): a child starts a pool of its own.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def call_with_timeout(fn: Callable[[Variant], Any], variant: Variant, timeout: float) -> Any:
    """Runs ``fn(variant)`` on a daemon thread (in a copy of the caller's context variables)
    and returns its result, or raises ``TimeoutError`` after ``timeout`` seconds."""
    run = contextvars.copy_context().run
    future = _get_pool().submit(run, fn, variant)
    try:
        return future.result(timeout)
    except _FutureTimeout:
        if future.done() and not future.cancelled():
            raise  # fn itself raised TimeoutError just in time
        future.cancel()
        raise TimeoutError() from None


if sys.version_info >= (3, 11):

    async def _attempt(fn: Callable[[Variant], Awaitable[Any]], variant: Variant, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            return await fn(variant)

else:

    async def _attempt(fn: Callable[[Variant], Awaitable[Any]], variant: Variant, timeout: float) -> Any:
        return await asyncio.wait_for(fn(variant), timeout)


def submit_shadow(run: _Run, fn: Callable[[Variant], Any]) -> None:
    """Starts the shadow attempt of a sync ``call`` on a daemon thread (in a copy of the
    caller's context variables); nothing waits for it."""
    _get_pool().submit(contextvars.copy_context().run, _shadow_sync, run, fn)


def _shadow_sync(run: _Run, fn: Callable[[Variant], Any]) -> None:
    for variant, timeout in run:
        try:
            value = fn(variant) if timeout is None else call_with_timeout(fn, variant, timeout)
        except Exception as exc:
            run.fail(exc)
            continue
        run.succeed(value)


async def _shadow_async(run: _Run, fn: Callable[[Variant], Awaitable[Any]]) -> None:
    for variant, timeout in run:
        try:
            value = await (fn(variant) if timeout is None else _attempt(fn, variant, timeout))
        except Exception as exc:
            run.fail(exc)
            continue
        run.succeed(value)


# Shadow tasks of ``acall``: the event loop keeps only weak references to tasks.
_shadow_tasks: set[asyncio.Task[None]] = set()


def _shadow_done(task: asyncio.Task[None]) -> None:
    _shadow_tasks.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a shadow never logs "exception was never retrieved"


def _start_shadow_task(run: _Run, fn: Callable[[Variant], Awaitable[Any]]) -> None:
    task = asyncio.get_running_loop().create_task(_shadow_async(run, fn))
    _shadow_tasks.add(task)
    task.add_done_callback(_shadow_done)


async def _settle(value: Any) -> Any:
    """``value``, awaited when a pin store method returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


async def _read_pin(flags: Flags, store: Any, key: str) -> tuple[str, object, bool]:
    try:
        return (key, await _settle(store.get(key)), True)
    except Exception as exc:
        flags._pin_store_error("get", exc)
        return (key, None, False)


async def _write_pin(flags: Flags, store: Any, effect: tuple[Any, ...]) -> None:
    method, *args = effect
    try:
        await _settle(getattr(store, method)(*args))
    except Exception as exc:
        flags._pin_store_error(method, exc)


async def acall(
    flags: Flags, flag: str, context: Any, fn: Callable[[Variant], Awaitable[Any]]
) -> CallResult[Any]:
    """The chain of ``Flags.acall``: the core plans, this loop awaits."""
    # One crossing in the common case: the run and its shadow, if any.
    begun = flags._begin(flag, context)
    if begun[0] is None:
        store, key = begun[1]
        run = flags._start_run(flag, context, await _read_pin(flags, store, key))
        effect = run._pin_effect()
        if effect is not None:
            await _write_pin(flags, store, effect)
        shadow = run._shadow()
    else:
        run, shadow = begun
    if shadow is not None:
        _start_shadow_task(shadow, fn)
    for variant, timeout in run:
        try:
            value = await (fn(variant) if timeout is None else _attempt(fn, variant, timeout))
        except Exception as exc:
            run.fail(exc)
            continue
        return run.succeed(value)
    return run.finish()
