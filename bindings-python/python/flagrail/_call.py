"""The host-language half of ``Flags.acall``: the asyncio loop over the chain.

The core (through ``_flagrail``) decides which variant to try next and records what happened;
this module only does what needs asyncio:

* the chain of ``acall``: an attempt with a timeout is really cancelled (``asyncio.timeout`` on
  3.11+, ``asyncio.wait_for`` on 3.10). A plain (non-async) function is accepted too: it runs
  on the event loop's thread, so its timeout can only be noticed once it returns. A
  ``BaseException`` (the awaiting task cancelled, ``KeyboardInterrupt``) or a
  ``RecursionError`` ends the call: the core records the attempt as cancelled and gives its
  budget reservation back at once.
* the pin store of a sticky flag, read and written here, awaiting methods that return an
  awaitable.
* the shadow attempt, run as a task (kept in ``_shadow_tasks`` until done) that is created
  only once the served chain has ended: a shadow never runs before or beside the served
  attempt, so even one that blocks the loop never delays the served answer. Whatever it
  raises is recorded as its failed attempt and swallowed.

The sync ``Flags.call`` runs in Rust (``src/runtime.rs``); its timed steps and its shadows run
on native worker threads (``src/workers.rs``), forgotten in a forked child here.

Not public API: use ``Flags.call`` and ``Flags.acall``.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import sys
import threading
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Union

from contextvars import ContextVar

from ._flagrail import _MAX_CALL_DEPTH, _enter_call, _forget_call_threads, _next_call_job, _stop_call_threads

if TYPE_CHECKING:
    from ._flagrail import CallResult, Flags, Variant, _Run

__all__ = ["acall"]

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_call_threads)
atexit.register(_stop_call_threads)


def _work() -> None:
    """A worker thread of sync ``call`` (``src/workers.rs``): runs jobs until it has idled
    long enough. A job is ``callable(*args)``; its outcome goes back with the request for the
    next job, to ``slot`` when someone waits for it (a timed step), dropped otherwise (a
    shadow, which records its own)."""
    done: list[Any] = []
    while True:
        job = _next_call_job(done)  # empties `done`: nothing of the last job is kept while idle
        if job is None:
            return
        run, args, slot = job
        del job
        try:
            done = [slot, True, run(*args)]
        except BaseException as exc:  # handed to the waiting caller, or dropped
            done = [slot, False, exc]
        del run, args, slot


def _start_worker() -> None:
    """Starts one more worker thread (called by ``src/workers.rs``, which counts them)."""
    threading.Thread(target=_work, name="flagrail-call", daemon=True).start()

_Fn = Callable[["Variant"], Union[Awaitable[Any], Any]]


async def _value(returned: Any) -> Any:
    """What the function's call gave: awaited when it is awaitable (an ``async def``)."""
    if type(returned) is CoroutineType or inspect.isawaitable(returned):
        return await returned
    return returned


if sys.version_info >= (3, 11):

    async def _attempt(fn: _Fn, variant: Variant, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            return await _value(fn(variant))

else:

    async def _attempt(fn: _Fn, variant: Variant, timeout: float) -> Any:
        return await asyncio.wait_for(_value(fn(variant)), timeout)


async def _step(fn: _Fn, variant: Variant, timeout: float | None) -> Any:
    if timeout is not None:
        return await _attempt(fn, variant, timeout)
    returned = fn(variant)
    if type(returned) is CoroutineType:
        return await returned
    return await _value(returned)


async def _shadow_async(run: _Run, fn: _Fn) -> None:
    for variant, timeout in run:
        try:
            value = await _step(fn, variant, timeout)
        except Exception as exc:
            try:
                run.fail(exc)
            except BaseException:  # a RecursionError: recorded as cancelled, nothing to report
                return
            continue
        except BaseException:
            run._cancel()
            raise
        run.succeed(value)
        return


# Shadow tasks of ``acall``: the event loop keeps only weak references to tasks.
_shadow_tasks: set[asyncio.Task[None]] = set()


def _shadow_done(task: asyncio.Task[None]) -> None:
    _shadow_tasks.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a shadow never logs "exception was never retrieved"


def _start_shadow_task(run: _Run, fn: _Fn) -> None:
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


# How deep ``acall`` is nested (an ``acall`` awaited inside the function of another): a context
# variable, so that it follows the awaiting chain, and tasks created inside ``fn`` inherit it,
# while concurrent tasks are side by side, not nested in each other. (Measured: its get, set and
# reset cost about 2,000 instructions per acall, less than keying a dict by the current task.)
_DEPTH: ContextVar[int] = ContextVar("flagrail_acall_depth", default=0)


async def acall(flags: Flags, flag: str, context: Any, fn: _Fn) -> CallResult[Any]:
    """The chain of ``Flags.acall``: the core plans, this loop awaits."""
    depth = _DEPTH.get()
    if depth >= _MAX_CALL_DEPTH:
        _enter_call(flag, depth)  # the core's CallDepthError, before anything is recorded
    token = _DEPTH.set(depth + 1)
    shadow = None
    ended = False
    try:
        # One crossing in the common case: the run, its shadow if any, and its first step.
        begun = flags._begin(flag, context)
        if begun[0] is None:
            store, key = begun[1]
            run = flags._start_run(flag, context, await _read_pin(flags, store, key))
            effect = run._pin_effect()
            if effect is not None:
                await _write_pin(flags, store, effect)
            shadow = run._shadow()
            step = next(run, None)
        else:
            run, shadow, step = begun
        while step is not None:
            variant, timeout = step
            try:
                if timeout is None:
                    value = fn(variant)
                    if type(value) is CoroutineType or inspect.isawaitable(value):
                        value = await value
                else:
                    value = await _attempt(fn, variant, timeout)
            except Exception as exc:
                run.fail(exc)  # raises again a RecursionError, recorded as cancelled
                step = next(run, None)
                continue
            except BaseException:
                run._cancel()
                raise
            result = run.succeed(value)
            ended = True
            return result
        ended = True
        return run.finish()
    finally:
        _DEPTH.reset(token)
        # After the served chain, never before or beside it; not when the caller is gone.
        if shadow is not None and ended:
            _start_shadow_task(shadow, fn)
