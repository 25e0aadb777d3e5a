"""The evaluation benchmark of docs/benchmarks.md, for Python.

ns per ``flags.variant("chat-model", {...})`` including building the context dict and reading
the variant id, peak RSS against an empty-loop baseline, and memory over 10 million evaluations.

    make build-python-release build-pyo3-floor && .venv/bin/python bench/python_eval.py
    N=200000 REPS=7 MEM_EVALS=10000000 .venv/bin/python bench/python_eval.py

Beside it, in the same passes, the PyO3 floor of docs/benchmarks.md (bench/pyo3-floor: the
cheapest PyO3 call that evaluates the scenario by hand), so that the ratio to what any PyO3
evaluator pays on this machine is measured in one run: the benchmark brief's floor is 102 ns
and its target 150 ns, a ratio of 1.47 (docs/benchmarks.md). Skipped, with a note, when that module is not installed.

With ``FLAGRAIL_PLAIN_METHODS=1`` flagrail keeps PyO3's ``#[pymethods]`` entry points instead of
the raw ones of bindings-python/src/fast.rs, and the result is named ``python_variant_plain_methods``:
two runs, each with the floor in the same passes, show what the raw entry points gain.

``BENCH_CLOCK=cpu`` times passes with this thread's CPU time instead of wall time: on a machine
loaded far past its cores, wall time mostly measures waiting for one.

Prints one ``RESULT {...}`` line per result. The empty-loop baseline runs in a child process
(this file with BENCH_MODE=baseline) that never imports flagrail, so its peak RSS is the
process's own floor with the same user list.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Callable

N = int(os.environ.get("N", "200000"))
REPS = int(os.environ.get("REPS", "7"))
MEM_EVALS = int(os.environ.get("MEM_EVALS", "10000000"))
MODE = os.environ.get("BENCH_MODE", "main")
PLAIN_METHODS = os.environ.get("FLAGRAIL_PLAIN_METHODS") == "1"
# `wall` (default) or `cpu`: this thread's CPU time, for a machine so loaded that wall time
# mostly measures the wait for a core (docs/benchmarks.md says which numbers used which).
CLOCK = os.environ.get("BENCH_CLOCK", "wall")
if CLOCK not in ("wall", "cpu"):
    sys.exit("BENCH_CLOCK must be wall or cpu")
now_ns = time.thread_time_ns if CLOCK == "cpu" else time.perf_counter_ns
if N < 1000 or REPS < 5:
    sys.exit("N must be >= 1000 and REPS >= 5")

# The scenario: chat-model, a rule `segment eq "internal"` -> v3, then 90/5/5 by user_id.
DOCUMENT = {
    "revision": "bench-1",
    "flags": {
        "chat-model": {
            "bucket_by": "user_id",
            "variants": {
                "control": {"model": "model-a"},
                "v2": {"model": "model-b"},
                "v3": {"model": "model-c"},
            },
            "default": "control",
            "rules": [
                {"id": "internal", "when": {"attr": "segment", "op": "eq", "value": "internal"}, "serve": "v3"},
                {
                    "id": "split",
                    "split": [
                        {"variant": "control", "percent": 90},
                        {"variant": "v2", "percent": 5},
                        {"variant": "v3", "percent": 5},
                    ],
                },
            ],
        }
    },
}

USERS = [(f"user-{i}", "internal" if i % 10 == 0 else "external") for i in range(N)]


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1048576


def median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def result(fields: dict[str, object]) -> None:
    print("RESULT " + json.dumps(fields), flush=True)


def timed_once(one_pass: Callable[[], int]) -> float:
    """ns per evaluation of one pass."""
    start = now_ns()
    one_pass()
    return (now_ns() - start) / N


def timed(one_pass: Callable[[], int]) -> list[float]:
    """Times `one_pass` REPS times after one untimed warm-up; ns per evaluation of each rep."""
    one_pass()
    return [timed_once(one_pass) for _ in range(REPS)]


def pyo3_floor(flags: object) -> Callable[[], int] | None:
    """The floor's timed pass, after checking that it answers exactly like flagrail."""
    try:
        import flagrail_pyo3_floor  # type: ignore[import-not-found]
    except ImportError:
        print("note: bench/pyo3-floor is not installed (make build-pyo3-floor); no floor", flush=True)
        return None
    floor_variant = flagrail_pyo3_floor.variant
    for uid, seg in USERS:
        ours = flags.variant("chat-model", {"user_id": uid, "segment": seg}).id  # type: ignore[attr-defined]
        if floor_variant("chat-model", {"user_id": uid, "segment": seg}) != ours:
            sys.exit(f"the PyO3 floor disagrees with flagrail for {uid}")

    def floor_all() -> int:
        sink = 0
        for uid, seg in USERS:
            v = floor_variant("chat-model", {"user_id": uid, "segment": seg})
            sink += len(v)
        return sink

    return floor_all


def empty_loop() -> int:
    # The same loop without flagrail: build the context, read a field.
    sink = 0
    for uid, seg in USERS:
        ctx = {"user_id": uid, "segment": seg}
        sink += len(ctx["segment"])
    return sink


def three_flags() -> None:
    """Three flags for one request (docs/benchmarks.md, Targets: ``variants`` within 1.5x one ``variant``).

    The scenario's flag plus two more of the same shape (other keys, so other buckets), read
    with one ``variants(context, keys)`` call, against one ``variant`` and three ``variant``
    calls on the same handle, interleaved pass by pass.
    """
    from flagrail import Flags

    same = DOCUMENT["flags"]["chat-model"]  # type: ignore[index]
    three = Flags.from_dict({"revision": "bench-3", "flags": {"chat-model": same, "prompt": same, "temperature": same}})
    keys = ["chat-model", "prompt", "temperature"]
    variant, variants = three.variant, three.variants

    def one() -> int:
        sink = 0
        for uid, seg in USERS:
            v = variant("chat-model", {"user_id": uid, "segment": seg})
            sink += len(v.id)
        return sink

    def separate() -> int:
        sink = 0
        for uid, seg in USERS:
            ctx = {"user_id": uid, "segment": seg}
            a, b, c = variant("chat-model", ctx), variant("prompt", ctx), variant("temperature", ctx)
            sink += len(a.id) + len(b.id) + len(c.id)
        return sink

    def many() -> int:
        sink = 0
        for uid, seg in USERS:
            r = variants({"user_id": uid, "segment": seg}, keys)
            sink += len(r["chat-model"].id) + len(r["prompt"].id) + len(r["temperature"].id)
        return sink

    passes = {"one": one, "separate": separate, "many": many}
    for one_pass in passes.values():
        one_pass()
    reps: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(REPS):
        for name, one_pass in passes.items():
            reps[name].append(timed_once(one_pass))
    m = {name: median(r) for name, r in reps.items()}
    result(
        {
            "name": "python_variants_three",
            "clock": CLOCK,
            "ns_per_request": round(m["many"], 1),
            "reps": [round(r, 1) for r in reps["many"]],
            "one_variant_ns": round(m["one"], 1),
            "three_variant_calls_ns": round(m["separate"], 1),
            "ratio_to_one_variant": round(m["many"] / m["one"], 2),
            "target_ratio": 1.5,
            "n": N,
        }
    )


def main() -> None:
    if MODE == "baseline":
        reps = timed(empty_loop)
        result(
            {
                "name": "python_empty_loop",
                "ns_per_eval": round(median(reps), 1),
                "reps": [round(r, 1) for r in reps],
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "n": N,
            }
        )
        return

    child = subprocess.run(
        [sys.executable, __file__],
        env={**os.environ, "BENCH_MODE": "baseline"},
        capture_output=True,
        text=True,
        check=True,
    )
    baseline_line = next(line for line in child.stdout.splitlines() if line.startswith("RESULT "))
    print(baseline_line, flush=True)
    baseline = json.loads(baseline_line[len("RESULT ") :])

    from flagrail import Flags

    flags = Flags.from_dict(DOCUMENT)

    # Correctness pass: internal users get v3 by the rule; the others split 90/5/5 within 1 point.
    counts = {"control": 0, "v2": 0, "v3": 0}
    externals = 0
    for uid, seg in USERS:
        v = flags.variant("chat-model", {"user_id": uid, "segment": seg})
        if seg == "internal":
            if v.id != "v3" or v.reason != "TARGETING_MATCH":
                sys.exit(f"internal user {uid} got {v.id} ({v.reason})")
        else:
            if v.reason != "SPLIT" or v.id is None:
                sys.exit(f"external user {uid} got reason {v.reason}")
            counts[v.id] += 1
            externals += 1
    shares = {k: 100 * c / externals for k, c in counts.items()}
    for variant, want in (("control", 90), ("v2", 5), ("v3", 5)):
        if abs(shares[variant] - want) > 1:
            sys.exit(f"split off: {shares}")

    def evaluate_all() -> int:
        sink = 0
        for uid, seg in USERS:
            v = flags.variant("chat-model", {"user_id": uid, "segment": seg})
            sink += len(v.id)
        return sink

    floor = pyo3_floor(flags)
    if floor is None:
        reps = timed(evaluate_all)
        floor_reps: list[float] = []
    else:
        # Interleaved, so that both see the same state of a noisy machine.
        evaluate_all()
        floor()
        reps, floor_reps = [], []
        for _ in range(REPS):
            reps.append(timed_once(evaluate_all))
            floor_reps.append(timed_once(floor))
    peak = peak_rss_mb()
    fields: dict[str, object] = {
        "name": "python_variant_plain_methods" if PLAIN_METHODS else "python_variant",
        "clock": CLOCK,
        "ns_per_eval": round(median(reps), 1),
        "reps": [round(r, 1) for r in reps],
        "peak_rss_mb": round(peak, 1),
        "baseline_peak_rss_mb": baseline["peak_rss_mb"],
        "rss_over_baseline_mb": round(peak - baseline["peak_rss_mb"], 1),
        "baseline_ns_per_eval": baseline["ns_per_eval"],
        "n": N,
        "split_percent": {k: round(v, 2) for k, v in shares.items()},
    }
    if floor_reps:
        fields["pyo3_floor_ns_per_eval"] = round(median(floor_reps), 1)
        fields["ratio_to_pyo3_floor"] = round(median(reps) / median(floor_reps), 2)
    result(fields)
    if floor_reps:
        result(
            {
                "name": "python_pyo3_floor",
                "ns_per_eval": round(median(floor_reps), 1),
                "reps": [round(r, 1) for r in floor_reps],
                "n": N,
            }
        )

    three_flags()

    # Memory flatness: RSS sampled every million evaluations; growth is measured from the
    # second sample on (the first million warms up the allocator).
    samples = []
    chunk = 1_000_000
    done = 0
    sink = 0
    while done < MEM_EVALS:
        stop = min(MEM_EVALS, done + chunk)
        for k in range(done, stop):
            uid, seg = USERS[k % N]
            v = flags.variant("chat-model", {"user_id": uid, "segment": seg})
            sink += len(v.id)
        done = stop
        samples.append(current_rss_mb())
    if samples:
        start = samples[min(1, len(samples) - 1)]
        end = samples[-1]
        millions = max(1, len(samples) - 2)
        result(
            {
                "name": "python_memory_10m",
                "evals": MEM_EVALS,
                "rss_mb_samples": [round(s, 1) for s in samples],
                "growth_mb": round(end - start, 2),
                "growth_kb_per_million_evals": round((end - start) * 1024 / millions, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "flat": end - start < 5,
                "sink": sink % 1000,
            }
        )


if __name__ == "__main__":
    main()
