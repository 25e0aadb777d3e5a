"""The thread hand-off of a sync ``Flags.call`` step with ``timeout_ms``, against the pure-Python
pool it replaced, measured in one process so that both see the same machine.

* new: ``flags.call`` with ``timeout_ms`` minus ``flags.call`` without it (the step runs on a
  native-fed worker thread, src/workers.rs);
* old: ``call_with_timeout(fn, variant, 10.0)`` of ``flagrail/_call.py`` at commit 3d34d9a (a
  ``concurrent.futures.Future`` per attempt on a pool of Python daemon threads) minus a direct
  call of ``fn``.

    git show 3d34d9a:bindings-python/python/flagrail/_call.py > /tmp/old_call.py
    make build-python-release && .venv/bin/python bench/python_handoff.py /tmp/old_call.py

Prints one ``RESULT`` line: median µs over REPS passes of N calls each, with every pass.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import time
from typing import Any, Callable

from flagrail import Flags, Variant

N = int(os.environ.get("N", "5000"))
REPS = int(os.environ.get("REPS", "7"))


def document(timeout_ms: int | None) -> dict[str, Any]:
    a: dict[str, Any] = {"model": "m"}
    if timeout_ms is not None:
        a["timeout_ms"] = timeout_ms
    return {"flags": {"bot": {"variants": {"a": a, "human": {"ai": False}}, "default": "a", "fallback": ["human"]}}}


def fn(v: Variant) -> int:
    return 1


def per_call_us(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(N):
        work()
    return (time.perf_counter() - start) / N * 1e6


def main() -> None:
    spec = importlib.util.spec_from_file_location("old_call", sys.argv[1])
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    inline, timed = Flags.from_dict(document(None)), Flags.from_dict(document(10_000))
    ctx = {"user_id": "u"}
    v = inline.variant("bot", ctx)

    def old_pass() -> float:
        return per_call_us(lambda: old.call_with_timeout(fn, v, 10.0)) - per_call_us(lambda: fn(v))

    def new_pass() -> float:
        return per_call_us(lambda: timed.call("bot", ctx, fn)) - per_call_us(lambda: inline.call("bot", ctx, fn))

    old_pass(), new_pass()  # warm-up: threads started, caches
    olds, news = [], []
    for _ in range(REPS):
        olds.append(round(old_pass(), 1))
        news.append(round(new_pass(), 1))
    print(
        "RESULT "
        + json.dumps(
            {
                "name": "python_call_timeout_handoff",
                "new_us": statistics.median(news),
                "old_us": statistics.median(olds),
                "new_reps": news,
                "old_reps": olds,
                "n": N,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
