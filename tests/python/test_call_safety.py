"""`call` / `acall` when the caller makes a mistake or gives up, and what they cost the caller:
programming errors are never model outcomes, cancellation gives budgets back at once, nested
calls hit a documented limit instead of the C stack, timed-out threads are capped, a shadow
never runs before the served attempt, and the texts of failed attempts are the core's (the
same as Node's, bindings-node/__test__/call-safety.test.js).

No assertion depends on how long something took.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Optional, assert_type

import pytest

from flagrail import CallDepthError, CallResult, Flags, InvalidArgumentError, Output, Reject, Variant

USER = {"user_id": "u-1"}


def chain_doc(**variant_a: Any) -> dict[str, Any]:
    return {
        "revision": "r1",
        "flags": {
            "bot": {
                "variants": {"a": {"model": "m-a", **variant_a}, "b": {"model": "m-b"}, "human": {"ai": False}},
                "default": "a",
                "fallback": ["b", "human"],
            }
        },
    }


def budget_doc() -> dict[str, Any]:
    return {
        "revision": "b1",
        "flags": {
            "chat": {
                "variants": {"opus": {"max_tokens": 1000, "cost_per_1k_output_tokens": 0.5}, "human": {"ai": False}},
                "default": "opus",
                "fallback": ["human"],
                "budgets": [{"id": "cap", "max_cost": 1.0, "window": "1h", "action": {"serve": "human"}}],
            }
        },
    }


def run_script(code: str, **env: str) -> str:
    """Runs `code` in a fresh interpreter (a crash there fails the test instead of the run)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


# -- programming errors are not model outcomes ---------------------------------------------


def test_call_given_an_async_function_raises_type_error_naming_acall_and_records_nothing() -> None:
    flags = Flags.from_dict(chain_doc())
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)

    async def answer(v: Variant) -> str:
        return "never awaited"

    with pytest.raises(TypeError, match=r"acall"):
        flags.call("bot", USER, answer)
    assert flags.metrics().get("bot", {}) == {}
    assert [e for e in events if e["type"] == "outcome"] == []

    class Callable:
        async def __call__(self, v: Variant) -> str:
            return "never awaited"

    with pytest.raises(TypeError, match=r"acall"):
        flags.call("bot", USER, Callable())
    # With a timeout the function runs on a worker thread: the same check.
    timed = Flags.from_dict(chain_doc(timeout_ms=5000))
    with pytest.raises(TypeError, match=r"acall"):
        timed.call("bot", USER, answer)
    assert timed.metrics().get("bot", {}) == {}


def test_acall_accepts_a_plain_function() -> None:
    flags = Flags.from_dict(chain_doc(timeout_ms=5000))

    def answer(v: Variant) -> str:
        if v.id == "a":
            raise Reject("not this one")
        return f"plain {v.id}"

    r = asyncio.run(flags.acall("bot", USER, answer))
    assert (r.value, r.variant.id) == ("plain b", "b")
    assert [(a.variant, a.error_kind) for a in r.attempts] == [("a", "rejected"), ("b", None)]


def test_nested_calls_past_the_limit_raise_recursion_error_instead_of_crashing() -> None:
    out = run_script(
        """
        import sys
        from flagrail import CallDepthError, Flags
        sys.setrecursionlimit(100_000)
        flags = Flags.from_dict({"flags": {"bot": {"variants": {"a": {}}, "default": "a"}}})
        outcomes = []
        flags.on_event(lambda e: outcomes.append(e) if e["type"] == "outcome" else None)
        depth = 0
        def nest(v):
            global depth
            depth += 1
            return flags.call("bot", {"user_id": "u"}, nest).value
        try:
            nest(None)
        except CallDepthError as e:
            assert isinstance(e, RecursionError)
            # Every enclosing call ended with it: attempts recorded as cancelled, no error.
            kinds = {o["outcome"] for o in outcomes}
            print("CallDepthError", e.code, depth, len(outcomes), kinds, e)
        """
    )
    assert out.startswith("CallDepthError CALL_DEPTH_EXCEEDED 101 100 {'cancelled'} "), out
    assert "nested more than 100 deep" in out


def test_nested_acalls_past_the_same_limit_raise_call_depth_error() -> None:
    flags = Flags.from_dict({"flags": {"bot": {"variants": {"a": {}}, "default": "a"}}})
    depth = 0

    async def nest(v: Variant) -> str | None:
        nonlocal depth
        depth += 1
        return (await flags.acall("bot", USER, nest)).value

    with pytest.raises(CallDepthError) as raised:
        asyncio.run(nest(flags.variant("bot", USER)))
    assert isinstance(raised.value, RecursionError)
    assert raised.value.code == "CALL_DEPTH_EXCEEDED" and raised.value.flag == "bot"
    assert depth == 101
    # Nothing was counted against the variant (the attempts are cancelled, not failed).
    assert flags.metrics().get("bot", {}).get("a", {}).get("errors", 0) == 0

    # Concurrent acalls of one task group are side by side, not nested: no limit between them.
    async def many() -> list[str | None]:
        async def leaf(v: Variant) -> str | None:
            await asyncio.sleep(0)
            return v.id

        results = await asyncio.gather(*(flags.acall("bot", USER, leaf) for _ in range(300)))
        return [r.value for r in results]

    assert asyncio.run(many()) == ["a"] * 300


def test_a_cancelled_acall_gives_its_budget_back_at_once_and_is_recorded() -> None:
    flags = Flags.from_dict(budget_doc())
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    kept: list[BaseException] = []

    async def hang(v: Variant) -> str:
        await asyncio.sleep(60)
        return "late"

    async def main() -> None:
        tasks = [asyncio.ensure_future(flags.acall("chat", USER, hang)) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert flags.variant("chat", USER).reason == "BUDGET", "two reservations of $0.50 fill it"
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError as exc:
                kept.append(exc)  # its traceback keeps the frames (and the run) alive

    asyncio.run(main())
    assert len(kept) == 2
    assert flags.variant("chat", USER).reason == "DEFAULT", "the reservations are back"
    cancelled = [e for e in events if e["type"] == "outcome"]
    assert [(e["variant"], e["outcome"], e["error_kind"]) for e in cancelled] == [("opus", "cancelled", None)] * 2
    assert flags.metrics().get("chat", {}).get("opus", {}).get("requests", 0) == 0


def test_keyboard_interrupt_in_call_is_recorded_as_cancelled() -> None:
    flags = Flags.from_dict(budget_doc())
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)

    def interrupted(v: Variant) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        flags.call("chat", USER, interrupted)
    assert [e["outcome"] for e in events if e["type"] == "outcome"] == ["cancelled"]
    assert flags.variant("chat", USER).reason == "DEFAULT"


def test_call_result_value_is_optional() -> None:
    flags = Flags.from_dict(chain_doc())
    r = flags.call("bot", USER, lambda v: "text")
    assert_type(r.value, Optional[str])
    killed = Flags.from_dict({"flags": {"bot": {"variants": {"h": {"ai": False}}, "default": "h"}}})
    assert killed.call("bot", USER, lambda v: "text").value is None


# -- errors that are the request's fault --------------------------------------------------


class BadRequestError(Exception):
    """What a provider SDK raises for HTTP 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.status_code = 400


def test_a_request_fault_falls_back_without_counting_against_the_variant() -> None:
    doc = chain_doc()
    doc["flags"]["bot"]["guardrails"] = [
        {"metric": "error_rate", "max": 0.05, "min_samples": 20, "action": "fallback", "variants": ["a"]}
    ]
    flags = Flags.from_dict(doc)

    def answer(v: Variant) -> str:
        if v.id == "a":
            raise BadRequestError("This model's maximum context length is 8192 tokens; your messages resulted in 9000")
        return f"from {v.id}"

    for i in range(60):
        r = flags.call("bot", {"user_id": f"u{i}"}, answer)
        assert (r.variant.id, r.attempts[0].error_kind) == ("b", "invalid_request")
    assert flags.variant("bot", USER).reason == "DEFAULT", "the guardrail did not trip"
    a = flags.metrics()["bot"]["a"]
    assert a["errors_by_kind"]["invalid_request"] == 60
    # The guardrail saw none of them (a variant it never observed has no entry yet).
    assert a.get("guardrails", {}).get("error_rate", {}).get("samples", 0) == 0


# -- evidence that cannot be poisoned -------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, -1e300])
def test_usage_numbers_are_refused_before_anything_is_recorded(bad: float) -> None:
    flags = Flags.from_dict(chain_doc())
    with pytest.raises(InvalidArgumentError, match="cost"):
        Output("x", cost=bad)
    tracker = flags.tracker(flags.variant("bot", USER), USER)
    with pytest.raises(InvalidArgumentError, match="latency_ms"):
        tracker.success(latency_ms=bad)
    with pytest.raises(InvalidArgumentError, match="cost"):
        tracker.error("server", cost=bad)
    assert flags.metrics().get("bot", {}) == {}, "nothing was recorded"
    tracker.success(latency_ms=12.5, cost=0.25)  # still reportable, once, with good numbers
    a = flags.metrics()["bot"]["a"]
    assert (a["requests"], a["errors"], a["cost"]) == (1, 0, 0.25)


@pytest.mark.parametrize(
    ("bad", "shown"),
    [(-1, "-1"), (1.5, "1.5"), (2**53, "9007199254740992"), (2**70, "1180591620717411300000"), (float("nan"), "NaN")],
)
def test_token_counts_are_refused_with_the_cores_message_before_anything_is_recorded(bad: Any, shown: str) -> None:
    # `bad` is typed Any: the stubs say int, and this checks what the core does with the rest.
    flags = Flags.from_dict(chain_doc())
    message = f"input_tokens must be a whole number from 0 to 9007199254740991, got {shown}"
    with pytest.raises(InvalidArgumentError) as info:
        Output("x", input_tokens=bad)
    assert str(info.value) == message
    tracker = flags.tracker(flags.variant("bot", USER), USER)
    with pytest.raises(InvalidArgumentError, match="^input_tokens must be a whole number"):
        tracker.success(input_tokens=bad)
    with pytest.raises(InvalidArgumentError, match="^output_tokens must be a whole number"):
        tracker.error("server", output_tokens=bad)
    assert flags.metrics().get("bot", {}) == {}, "nothing was recorded"
    tracker.success(input_tokens=2**53 - 1, output_tokens=0)  # the bounds are accepted
    whole: Any = 812.0
    assert Output("x", input_tokens=whole).input_tokens == 812  # a whole float is a count
    assert flags.metrics()["bot"]["a"]["requests"] == 1


def test_an_output_with_a_bad_cost_fails_the_attempt_like_any_error() -> None:
    flags = Flags.from_dict(chain_doc())

    def answer(v: Variant) -> Output[str]:
        return Output("text", cost=float("nan") if v.id == "a" else 0.5)

    r = flags.call("bot", USER, answer)
    assert (r.variant.id, r.value) == ("b", "text")
    assert r.attempts[0].error_kind == "other"
    assert r.attempts[0].error is not None and r.attempts[0].error.startswith("InvalidArgumentError: cost")


# -- one text for failed attempts ----------------------------------------------------------


def test_attempt_error_text_is_the_cores_name_and_message() -> None:
    flags = Flags.from_dict(chain_doc())

    def fail(v: Variant) -> str:
        if v.id == "a":
            raise ValueError("bad json")
        raise RuntimeError("é" * 1500)

    r = flags.call("bot", USER, fail)
    first, second = r.attempts
    assert first.error == "ValueError: bad json"
    assert second.error is not None
    assert second.error == "RuntimeError: " + "é" * (1000 - len("RuntimeError: ")) + "…"


def test_an_unknown_error_kind_names_every_kind() -> None:
    flags = Flags.from_dict(chain_doc())
    tracker = flags.tracker(flags.variant("bot", USER), USER)
    with pytest.raises(InvalidArgumentError) as info:
        tracker.error("slow")
    assert str(info.value) == (
        'unknown error kind "slow"; expected one of: timeout, rate_limit, server, content_policy, rejected, other, '
        "invalid_request, threads_busy"
    )


# -- threads and time ----------------------------------------------------------------------


def test_timed_out_threads_are_capped_and_exhaustion_is_its_own_kind_that_never_trips() -> None:
    out = run_script(
        """
        import json, os, threading
        from flagrail import Flags
        doc = {"flags": {"bot": {"variants": {"a": {"timeout_ms": 20}, "human": {"ai": False}},
                                 "default": "a", "fallback": ["human"],
                                 "guardrails": [{"metric": "error_rate", "max": 0.25, "min_samples": 20,
                                                 "action": "fallback", "variants": ["a"]}]}}}
        flags = Flags.from_dict(doc)
        hung = threading.Event()
        def provider(v):
            hung.wait()
            return "late"
        before = len(os.listdir("/proc/self/task"))
        results = [flags.call("bot", {"user_id": "u"}, provider) for _ in range(40)]
        after = len(os.listdir("/proc/self/task"))
        errors = [r.attempts[0].error for r in results]
        print(after - before)
        print(sum(e == "timed out after 20 ms" for e in errors))
        print(sorted(set(e for e in errors if e != "timed out after 20 ms")))
        print(json.dumps([r.attempts[0].error_kind for r in results]))
        print(json.dumps([r.variant.id for r in results]))
        print(flags.variant("bot", {"user_id": "u"}).reason)
        print(json.dumps(flags.metrics()["bot"]["a"]["errors_by_kind"]))
        hung.set()
        """,
        FLAGRAIL_CALL_THREADS="4",
    )
    grown, timed_out, others, kinds, served, reason, by_kind = out.splitlines()
    assert int(grown) <= 4, out
    assert int(timed_out) == 4, out
    # The first four hang on a worker and time out; the rest find no worker free.
    assert json.loads(kinds) == ["timeout"] * 4 + ["threads_busy"] * 36, kinds
    assert "all 4 call threads are busy" in others and "FLAGRAIL_CALL_THREADS" in others, others
    # Every call still served: the non-AI fallback.
    assert set(json.loads(served)) == {"human"}, served
    # 36 refused steps are the process's fault, not the variant's: 4 timeouts stay under
    # min_samples, so the guardrail has not tripped (it would have on 40 counted failures).
    assert reason == "DEFAULT", out
    assert json.loads(by_kind)["threads_busy"] == 36 and json.loads(by_kind)["timeout"] == 4, by_kind


def test_timed_steps_work_in_a_forked_child_whose_parent_had_workers() -> None:
    out = run_script(
        """
        import os, sys
        from flagrail import Flags
        doc = {"flags": {"bot": {"variants": {"a": {"timeout_ms": 5000}}, "default": "a"}}}
        flags = Flags.from_dict(doc)
        print(flags.call("bot", {"user_id": "u"}, lambda v: "parent").value, flush=True)
        pid = os.fork()
        if pid == 0:
            value = flags.call("bot", {"user_id": "u"}, lambda v: "child").value
            os.write(1, (value + "\\n").encode())
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        """
    )
    assert out.splitlines() == ["parent", "child", "child exit 0"], out


# -- shadows after the served attempt -------------------------------------------------------


def shadow_doc() -> dict[str, Any]:
    return {
        "flags": {
            "bot": {
                "variants": {"stable": {}, "cand": {}},
                "default": "stable",
                "shadow": {"variant": "cand", "percent": 100},
            }
        }
    }


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_blocking_shadow_starts_only_after_the_served_call_returned() -> None:
    flags = Flags.from_dict(shadow_doc())
    order: list[str] = []
    done = threading.Event()

    def ask(v: Variant) -> str:
        if v.is_shadow:
            order.append("shadow starts")
            busy(0.05)
            done.set()
            return "shadow"
        order.append("served starts")
        time.sleep(0.05)  # lets any thread that was started run meanwhile
        order.append("served ends")
        return "served"

    r = flags.call("bot", USER, ask)
    order.append("call returned")
    assert r.shadow == "cand"
    assert done.wait(10)
    assert order.index("call returned") < order.index("shadow starts"), order
    assert order[:2] == ["served starts", "served ends"], order


def test_a_blocking_shadow_starts_only_after_acall_returned() -> None:
    flags = Flags.from_dict(shadow_doc())
    order: list[str] = []

    async def ask(v: Variant) -> str:
        if v.is_shadow:
            order.append("shadow starts")
            busy(0.05)
            return "shadow"
        order.append("served starts")
        await asyncio.sleep(0.01)
        order.append("served ends")
        return "served"

    async def main() -> CallResult[str]:
        r = await flags.acall("bot", USER, ask)
        order.append("acall returned")
        for _ in range(500):
            if "shadow starts" in order:
                break
            await asyncio.sleep(0.01)
        return r

    r = asyncio.run(main())
    assert r.shadow == "cand"
    assert order == ["served starts", "served ends", "acall returned", "shadow starts"], order
