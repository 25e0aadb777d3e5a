"""The overhead of ``Flags.call`` / ``Flags.acall`` beyond the user's function, for Python.

What is measured, per call, as the median over REPS passes of N calls each:

* ``python_call_overhead``: ``flags.call(flag, ctx, fn)`` with ``fn = lambda v: 1`` on a variant
  without ``timeout_ms`` (fn runs inline), minus a loop calling ``fn(v)`` directly.
* ``python_acall_overhead``: ``await flags.acall(flag, ctx, fn)`` with ``async def fn(v): return
  1``, no timeout, minus a loop doing ``await fn(v)`` directly.
* ``python_acall_timeout_overhead``: the same with ``timeout_ms`` on the variant (each attempt
  is wrapped in ``asyncio.timeout`` / ``asyncio.wait_for`` so that it can be cancelled).
* ``python_call_timeout_overhead``: ``flags.call`` with ``timeout_ms`` (fn runs on a worker
  thread and the caller waits on it with the GIL released): a thread hand-off per call.
* ``python_call_served_latency`` / ``python_acall_served_latency``: the wall time of each
  served call (its function returns at once) on a flag with a shadow at 100 % whose function
  busy-loops ``SHADOW_MS`` (50) ms, against the same flag without the shadow: SHADOW_CALLS calls
  each, one at a time with a pause longer than the shadow between them, so that what is
  measured is whether a call waits for its own shadow. Reports p50, p99 and max in µs.

Both loops build nothing else and iterate over the same list of contexts (a split on
``user_id`` decides, so every call evaluates the flag and draws a bucket). The whole run records
one attempt per call in the metrics; no event sink is attached.

    make build-python-release && .venv/bin/python bench/python_call.py
    N=100000 REPS=7 .venv/bin/python bench/python_call.py

Prints one ``RESULT {"name": ..., "ns_per_call": ..., "reps": [...]}`` line per result
(``ns_per_call`` is the median overhead; ``reps`` the overhead of each pass).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any, Awaitable, Callable

from flagrail import Flags, Variant

N = int(os.environ.get("N", "100000"))
REPS = int(os.environ.get("REPS", "7"))
if N < 1000 or REPS < 5:
    sys.exit("N must be >= 1000 and REPS >= 5")
# Thread hand-offs are ~1000x slower than an inline call: fewer of them per pass.
N_THREADED = max(1000, N // 20)


def document(timeout_ms: int | None) -> dict[str, Any]:
    fast: dict[str, Any] = {"model": "model-a"}
    if timeout_ms is not None:
        fast["timeout_ms"] = timeout_ms
    return {
        "revision": "bench-call",
        "flags": {
            "bot": {
                "variants": {"a": fast, "b": dict(fast, model="model-b"), "human": {"ai": False}},
                "default": "a",
                "fallback": ["b", "human"],
                "rules": [{"id": "split", "split": [{"variant": "a", "percent": 50}, {"variant": "b", "percent": 50}]}],
            }
        },
    }


CONTEXTS = [{"user_id": f"user-{i}"} for i in range(N)]


def fn(v: Variant) -> int:
    return 1


async def afn(v: Variant) -> int:
    return 1


def per_call(seconds: float, n: int) -> float:
    return seconds / n * 1e9


def sync_pass(flags: Flags, n: int) -> tuple[float, float]:
    contexts = CONTEXTS[:n]
    v = flags.variant("bot", contexts[0])
    call = flags.call
    f = fn
    start = time.perf_counter()
    for _ctx in contexts:
        f(v)
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    for ctx in contexts:
        call("bot", ctx, f)
    measured = time.perf_counter() - start
    return per_call(baseline, n), per_call(measured, n)


async def async_pass(flags: Flags, n: int) -> tuple[float, float]:
    contexts = CONTEXTS[:n]
    v = flags.variant("bot", contexts[0])
    acall = flags.acall
    f: Callable[[Variant], Awaitable[int]] = afn
    start = time.perf_counter()
    for _ctx in contexts:
        await f(v)
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    for ctx in contexts:
        await acall("bot", ctx, f)
    measured = time.perf_counter() - start
    return per_call(baseline, n), per_call(measured, n)


def report(name: str, passes: list[tuple[float, float]], n: int) -> None:
    overheads = [round(measured - baseline, 1) for baseline, measured in passes]
    print(
        "RESULT "
        + json.dumps(
            {
                "name": name,
                "ns_per_call": round(statistics.median(overheads), 1),
                "reps": overheads,
                "n": n,
                "baseline_ns": round(statistics.median(b for b, _ in passes), 1),
                "total_ns": round(statistics.median(m for _, m in passes), 1),
            }
        ),
        flush=True,
    )


SHADOW_MS = 50
SHADOW_CALLS = 40


def shadow_document(shadow: bool) -> dict[str, Any]:
    flag: dict[str, Any] = {"variants": {"stable": {}, "cand": {}}, "default": "stable"}
    if shadow:
        flag["shadow"] = {"variant": "cand", "percent": 100}
    return {"revision": "bench-shadow", "flags": {"bot": flag}}


def busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def shadowed(v: Variant) -> int:
    if v.is_shadow:
        busy(SHADOW_MS)
    return 1


async def ashadowed(v: Variant) -> int:
    return shadowed(v)


def latency_stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max_us": round(ordered[-1], 1),
    }


def served_latency() -> None:
    pause = SHADOW_MS / 1000 * 1.6
    for name, is_async in (("python_call_served_latency", False), ("python_acall_served_latency", True)):
        found: dict[str, dict[str, float]] = {}
        for label, shadow in (("without_shadow", False), ("with_blocking_shadow", True)):
            flags = Flags.from_dict(shadow_document(shadow))
            samples: list[float] = []

            async def one_async(ctx: dict[str, str]) -> float:
                start = time.perf_counter()
                await flags.acall("bot", ctx, ashadowed)
                took = time.perf_counter() - start
                await asyncio.sleep(pause)  # the shadow task runs here
                return took

            for i in range(SHADOW_CALLS):
                ctx = {"user_id": f"user-{i}"}
                if is_async:
                    samples.append(asyncio.run(one_async(ctx)) * 1e6)
                else:
                    start = time.perf_counter()
                    flags.call("bot", ctx, shadowed)
                    samples.append((time.perf_counter() - start) * 1e6)
                    time.sleep(pause)
            found[label] = latency_stats(samples[2:])  # the first calls start the worker
        print("RESULT " + json.dumps({"name": name, "shadow_ms": SHADOW_MS, "calls": SHADOW_CALLS - 2, **found}), flush=True)


def main() -> None:
    inline = Flags.from_dict(document(None))
    timed = Flags.from_dict(document(10_000))

    sync_pass(inline, min(N, 10_000))  # warm-up: caches, allocator
    report("python_call_overhead", [sync_pass(inline, N) for _ in range(REPS)], N)

    async def run_async() -> None:
        await async_pass(inline, min(N, 10_000))
        report("python_acall_overhead", [await async_pass(inline, N) for _ in range(REPS)], N)
        await async_pass(timed, min(N, 10_000))
        report("python_acall_timeout_overhead", [await async_pass(timed, N) for _ in range(REPS)], N)

    asyncio.run(run_async())

    sync_pass(timed, 1000)
    report("python_call_timeout_overhead", [sync_pass(timed, N_THREADED) for _ in range(REPS)], N_THREADED)

    served_latency()


if __name__ == "__main__":
    main()
