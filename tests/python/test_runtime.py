"""The runtime around the call, from Python: fallback chains and their bounds, timeouts that
really cancel (asyncio) or abandon (threads), error classification, guardrails, concurrent
calls, metrics, Prometheus text, events, hashed units, feedback and trackers.

The "provider" is a local fake with controllable latency and failures: no network.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

import flagrail
from flagrail import (
    AllAttemptsFailedError,
    Attempt,
    CallError,
    CallResult,
    FlagNotFoundError,
    FlagrailError,
    Flags,
    InvalidArgumentError,
    Output,
    Reject,
    Variant,
)


def chain_doc(**extra: Any) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "variants": {
            "a": {
                "model": "model-a",
                "cost_per_1k_input_tokens": 0.003,
                "cost_per_1k_output_tokens": 0.015,
            },
            "b": {"model": "model-b"},
            "c": {"model": "model-c"},
            "human": {"ai": False, "message": "Talk to a person"},
        },
        "default": "a",
        "fallback": ["b", "c", "human"],
    }
    flag.update(extra)
    return {"revision": "r1", "flags": {"bot": flag}}


def with_variant(doc: dict[str, Any], variant: str, **fields: Any) -> dict[str, Any]:
    doc["flags"]["bot"]["variants"][variant].update(fields)
    return doc


class ProviderError(Exception):
    """What a provider SDK raises: an HTTP status and a code."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class FakeProvider:
    """A model stand-in: per variant, a latency and a failure (an exception to raise)."""

    def __init__(
        self,
        *,
        fail: Mapping[str, BaseException] | None = None,
        latency: Mapping[str, float] | None = None,
        answer: Callable[[Variant], object] | None = None,
    ) -> None:
        self.fail = fail or {}
        self.latency = latency or {}
        self.answer = answer or (lambda v: f"answer from {v['model']}")
        self.calls: list[str] = []
        self.cancelled: list[str] = []
        self.lock = threading.Lock()

    def _start(self, variant: Variant) -> str:
        vid = variant.id
        assert isinstance(vid, str)
        with self.lock:
            self.calls.append(vid)
        return vid

    def __call__(self, variant: Variant) -> object:
        vid = self._start(variant)
        if vid in self.latency:
            time.sleep(self.latency[vid])
        if vid in self.fail:
            raise self.fail[vid]
        return self.answer(variant)

    async def acall(self, variant: Variant) -> object:
        vid = self._start(variant)
        try:
            await asyncio.sleep(self.latency.get(vid, 0))
        except asyncio.CancelledError:
            self.cancelled.append(vid)
            raise
        if vid in self.fail:
            raise self.fail[vid]
        return self.answer(variant)


def kinds(attempts: Iterable[Attempt]) -> list[tuple[str, str | None]]:
    return [(a.variant, a.error_kind) for a in attempts]


USER = {"user_id": "u-1"}


# -- the chain ------------------------------------------------------------------------------


def test_success_on_the_assigned_variant() -> None:
    flags = Flags.from_dict(chain_doc())
    provider = FakeProvider()
    r = flags.call("bot", USER, provider)
    assert isinstance(r, CallResult)
    assert r.value == "answer from model-a"
    assert isinstance(r.variant, Variant) and r.variant.id == "a"
    assert r.variant["model"] == "model-a" and r.variant.reason == "DEFAULT"
    assert r.variant.revision == "r1"
    assert r.assigned == "a" and not r.fallback_used
    assert len(r.run_id) == 32
    [attempt] = r.attempts
    assert (attempt.variant, attempt.outcome, attempt.error_kind, attempt.error) == ("a", "success", None, None)
    assert attempt.latency_ms >= 0
    assert provider.calls == ["a"]


def test_the_chain_tries_each_fallback_once_in_order_and_ends_on_the_non_ai_variant() -> None:
    flags = Flags.from_dict(chain_doc())
    seen: list[Variant] = []

    def failing(v: Variant) -> str:
        seen.append(v)
        raise ProviderError("overloaded", status_code=503)

    r = flags.call("bot", USER, failing)
    assert [v.id for v in seen] == ["a", "b", "c"]
    # The Variant handed to fn is the step's variant, with the evaluation's reason/revision.
    assert [v["model"] for v in seen] == ["model-a", "model-b", "model-c"]
    assert all(v.reason == "DEFAULT" and v.revision == "r1" and v.flag == "bot" for v in seen)
    assert r.value is None
    assert r.variant.id == "human" and r.variant["message"] == "Talk to a person"
    assert r.fallback_used and r.assigned == "a"
    assert kinds(r.attempts) == [("a", "server"), ("b", "server"), ("c", "server")]
    assert all(a.error == "ProviderError: overloaded" and a.outcome == "error" for a in r.attempts)


def test_a_later_success_serves_and_stops_the_chain() -> None:
    flags = Flags.from_dict(chain_doc())
    provider = FakeProvider(fail={"a": ProviderError("slow down", status_code=429)})
    r = flags.call("bot", USER, provider)
    assert r.value == "answer from model-b" and r.variant.id == "b" and r.fallback_used
    assert kinds(r.attempts) == [("a", "rate_limit"), ("b", None)]
    assert provider.calls == ["a", "b"]


def test_max_attempts_bounds_model_calls() -> None:
    flags = Flags.from_dict(chain_doc(max_attempts=2))
    provider = FakeProvider(fail={v: ProviderError("boom") for v in "abc"})
    r = flags.call("bot", USER, provider)
    assert provider.calls == ["a", "b"]
    assert r.variant.id == "human" and len(r.attempts) == 2


def test_max_total_ms_bounds_the_whole_call() -> None:
    doc = with_variant(chain_doc(max_total_ms=150), "a", timeout_ms=1000)
    flags = Flags.from_dict(doc)
    provider = FakeProvider(latency={"a": 1.0})
    started = time.monotonic()
    r = flags.call("bot", USER, provider)
    elapsed = time.monotonic() - started
    # The first attempt's timeout is cut to the call's 150 ms; then the time is spent and
    # the chain goes straight to the non-AI variant.
    assert elapsed < 0.8, elapsed
    assert kinds(r.attempts) == [("a", "timeout")]
    assert r.variant.id == "human"


def test_reject_moves_on_to_the_next_step() -> None:
    flags = Flags.from_dict(chain_doc())
    provider = FakeProvider(fail={"a": Reject("no citation")})
    r = flags.call("bot", USER, provider)
    assert r.variant.id == "b"
    assert r.attempts[0].error_kind == "rejected" and r.attempts[0].error == "Reject: no citation"
    assert not isinstance(Reject("x"), FlagrailError)


def test_a_non_ai_variant_is_served_without_calling_fn() -> None:
    flags = Flags.from_dict(chain_doc(default="human"))
    called: list[Variant] = []
    r = flags.call("bot", USER, called.append)
    assert called == []
    assert r.value is None and r.variant.id == "human" and r.attempts == []
    assert r.assigned == "human" and not r.fallback_used
    assert flags.metrics()["bot"]["human"]["served_static"] == 1


def test_all_attempts_failed_raises_with_the_attempts() -> None:
    doc = {"revision": "r2", "flags": {"bot": {"variants": {"a": {}, "b": {}}, "default": "a", "fallback": ["b"]}}}
    flags = Flags.from_dict(doc)
    provider = FakeProvider(fail={"a": TimeoutError(), "b": ValueError("bad json")})
    with pytest.raises(AllAttemptsFailedError) as info:
        flags.call("bot", USER, provider)
    err = info.value
    assert isinstance(err, CallError) and isinstance(err, FlagrailError)
    assert err.code == "ALL_ATTEMPTS_FAILED" and err.flag == "bot"
    assert kinds(err.attempts) == [("a", "timeout"), ("b", "other")]
    assert err.attempts[1].error == "ValueError: bad json"
    assert err.run_id is not None and len(err.run_id) == 32
    assert "2 attempts" in str(err)


def test_an_unknown_flag_raises_flag_not_found() -> None:
    flags = Flags.from_dict(chain_doc())
    with pytest.raises(FlagNotFoundError) as info:
        flags.call("nope", USER, lambda v: 1)
    assert info.value.code == "FLAG_NOT_FOUND" and info.value.flag == "nope"
    assert isinstance(info.value, LookupError) and isinstance(info.value, CallError)
    with pytest.raises(FlagNotFoundError):
        asyncio.run(flags.acall("nope", USER, FakeProvider().acall))


def test_output_reports_usage_and_is_unwrapped() -> None:
    flags = Flags.from_dict(chain_doc())
    r = flags.call("bot", USER, lambda v: Output({"text": "hi"}, input_tokens=1000, output_tokens=2000))
    assert r.value == {"text": "hi"}
    [attempt] = r.attempts
    assert (attempt.input_tokens, attempt.output_tokens) == (1000, 2000)
    assert attempt.cost == pytest.approx(0.003 + 0.030)  # from the variant's prices
    r2 = flags.call("bot", USER, lambda v: Output("x", cost=0.5))
    assert r2.value == "x" and r2.attempts[0].cost == 0.5 and r2.attempts[0].input_tokens is None
    m = flags.metrics()["bot"]["a"]
    assert m["tokens"] == {"input": 1000, "output": 2000}
    assert m["cost"] == pytest.approx(0.533)
    assert repr(Output("x", input_tokens=3)) == "Output('x', input_tokens=3)"
    assert Output[int] is not None and CallResult[str] is not None


def test_base_exceptions_end_the_call_unrecorded() -> None:
    class Stop(BaseException):
        pass

    flags = Flags.from_dict(chain_doc())
    with pytest.raises(Stop):
        flags.call("bot", USER, FakeProvider(fail={"a": Stop()}))
    assert flags.metrics().get("bot", {}).get("a", {}).get("requests", 0) == 0


# -- classification -------------------------------------------------------------------------


class DeclaredError(Exception):
    error_kind = "content_policy"


class APIStatusError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ProviderError("Too Many Requests", status_code=429), "rate_limit"),
        (ProviderError("Service Unavailable", status_code=503), "server"),
        (APIStatusError("overloaded", 529), "server"),
        (ProviderError("Gateway Timeout", status_code=504), "timeout"),
        (DeclaredError("whatever"), "content_policy"),
        (ProviderError("flagged", status_code=400, code="content_policy_violation"), "content_policy"),
        (ValueError("the response was blocked by the safety system"), "content_policy"),
        (TimeoutError(), "timeout"),
        (ConnectionResetError("connection reset by peer"), "server"),
        (ProviderError("rate_limit_exceeded"), "rate_limit"),
        (KeyError("choices"), "other"),
        (Reject("meh"), "rejected"),
    ],
)
def test_errors_are_classified(error: Exception, kind: str) -> None:
    flags = Flags.from_dict(chain_doc())
    r = flags.call("bot", USER, FakeProvider(fail={"a": error}))
    assert r.attempts[0].error_kind == kind
    assert flags.metrics()["bot"]["a"]["errors_by_kind"][kind] == 1


# -- timeouts -------------------------------------------------------------------------------


def test_sync_timeout_abandons_the_late_thread_and_moves_on() -> None:
    doc = with_variant(chain_doc(), "a", timeout_ms=100)
    flags = Flags.from_dict(doc)
    provider = FakeProvider(latency={"a": 10.0})
    started = time.monotonic()
    r = flags.call("bot", USER, provider)
    elapsed = time.monotonic() - started
    assert elapsed < 2, elapsed
    assert r.variant.id == "b" and r.value == "answer from model-b"
    [timeout, ok] = r.attempts
    assert (timeout.error_kind, timeout.error) == ("timeout", "timed out after 100 ms")
    assert 90 <= timeout.latency_ms < 1000
    assert ok.outcome == "success"


def test_sync_timeout_step_runs_on_a_thread_with_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("req-7")
    doc = with_variant(chain_doc(), "a", timeout_ms=1000)
    flags = Flags.from_dict(doc)
    seen: list[tuple[str, bool]] = []

    def fn(v: Variant) -> str:
        seen.append((request_id.get(), threading.current_thread() is threading.main_thread()))
        raise Reject("next")

    r = flags.call("bot", USER, fn)
    # Step "a" (timeout) ran on a pool thread, steps "b" and "c" (no timeout) inline.
    assert seen == [("req-7", False), ("req-7", True), ("req-7", True)]
    assert r.variant.id == "human"


def test_sync_exceptions_inside_timed_steps_are_classified() -> None:
    doc = with_variant(chain_doc(), "a", timeout_ms=1000)
    flags = Flags.from_dict(doc)
    r = flags.call("bot", USER, FakeProvider(fail={"a": ProviderError("x", status_code=429)}))
    assert kinds(r.attempts)[0] == ("a", "rate_limit")


def test_acall_timeout_really_cancels_the_attempt() -> None:
    doc = with_variant(chain_doc(), "a", timeout_ms=100)
    flags = Flags.from_dict(doc)
    provider = FakeProvider(latency={"a": 10.0})

    async def main() -> tuple[CallResult[object], float]:
        started = time.monotonic()
        r = await flags.acall("bot", USER, provider.acall)
        return r, time.monotonic() - started

    r, elapsed = asyncio.run(main())
    assert elapsed < 2, elapsed
    assert provider.cancelled == ["a"], "the attempt's coroutine saw CancelledError"
    assert r.variant.id == "b" and r.value == "answer from model-b"
    assert kinds(r.attempts) == [("a", "timeout"), ("b", None)]
    assert r.attempts[0].error == "timed out after 100 ms"


def test_acall_chain_reject_output_and_non_ai_terminal() -> None:
    flags = Flags.from_dict(chain_doc())

    async def ask(v: Variant) -> Output[str]:
        if v.id == "a":
            raise Reject("wrong")
        if v.id == "b":
            raise ProviderError("x", status_code=503)
        return Output("from c", input_tokens=5)

    r = asyncio.run(flags.acall("bot", USER, ask))
    assert r.value == "from c" and r.variant.id == "c"
    assert kinds(r.attempts) == [("a", "rejected"), ("b", "server"), ("c", None)]
    assert r.attempts[2].input_tokens == 5

    async def never(v: Variant) -> str:
        raise ProviderError("down", status_code=500)

    r2 = asyncio.run(flags.acall("bot", USER, never))
    assert r2.value is None and r2.variant.id == "human"


def test_acall_all_failed_and_outer_cancellation() -> None:
    doc = {"flags": {"bot": {"variants": {"a": {"timeout_ms": 5000}, "b": {}}, "default": "a", "fallback": ["b"]}}}
    flags = Flags.from_dict(doc)

    async def fail(v: Variant) -> str:
        raise ValueError("nope")

    with pytest.raises(AllAttemptsFailedError) as info:
        asyncio.run(flags.acall("bot", USER, fail))
    assert kinds(info.value.attempts) == [("a", "other"), ("b", "other")]

    provider = FakeProvider(latency={"a": 10.0})

    async def cancel_soon() -> None:
        task = asyncio.ensure_future(flags.acall("bot", USER, provider.acall))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())
    assert provider.cancelled == ["a"] and provider.calls == ["a"]


# -- guardrails -----------------------------------------------------------------------------


def guarded_doc() -> dict[str, Any]:
    return {
        "revision": "g1",
        "flags": {
            "bot": {
                "variants": {"stable": {"model": "m-stable"}, "cand": {"model": "m-cand"}, "human": {"ai": False}},
                "default": "cand",
                "fallback": ["stable", "human"],
                "guardrails": [{"metric": "error_rate", "max": 0.05, "min_samples": 20, "action": "fallback"}],
            }
        },
    }


def test_a_failing_candidate_trips_its_guardrail() -> None:
    flags = Flags.from_dict(guarded_doc())
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    provider = FakeProvider(fail={"cand": ProviderError("internal server error", status_code=500)})
    for i in range(19):
        r = flags.call("bot", {"user_id": f"u{i}"}, provider)
        assert r.variant.id == "stable" and r.fallback_used
    assert flags.variant("bot", {"user_id": "x"}).reason == "DEFAULT"
    assert flags.status()["guardrails"] == []
    flags.call("bot", {"user_id": "u19"}, provider)

    v = flags.variant("bot", {"user_id": "x"})
    assert (v.reason, v.id) == ("GUARDRAIL", "stable")
    guardrails = flags.status()["guardrails"]
    assert guardrails and guardrails[0]["variant"] == "cand" and guardrails[0]["state"] == "tripped"
    trips = [e for e in events if e["type"] == "guardrail_trip"]
    assert len(trips) == 1
    assert trips[0]["variant"] == "cand" and trips[0]["revision"] == "g1" and trips[0]["samples"] == 20
    assert flags.metrics()["bot"]["cand"]["guardrails"]["error_rate"]["state"] == "tripped"

    # New calls start on the fallback: the candidate is not called any more.
    before = len(provider.calls)
    r = flags.call("bot", {"user_id": "y"}, provider)
    assert provider.calls[before:] == ["stable"]
    assert r.variant.id == "stable" and r.variant.reason == "GUARDRAIL" and r.assigned == "stable"


def test_cooldown_then_half_open_probe_closes_the_guardrail() -> None:
    doc = guarded_doc()
    doc["flags"]["bot"]["guardrails"][0].update({"cooldown": "1s", "probe_percent": 100})
    flags = Flags.from_dict(doc)
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    failing = FakeProvider(fail={"cand": ProviderError("internal server error", status_code=500)})
    for i in range(20):
        flags.call("bot", {"user_id": f"u{i}"}, failing)
    assert flags.variant("bot", {"user_id": "x"}).reason == "GUARDRAIL"
    # During the cooldown the candidate is not served.
    assert flags.status()["guardrails"][0]["state"] == "tripped"
    time.sleep(1.1)
    # Half-open: with probe_percent 100 every unit probes the candidate again.
    assert flags.status()["guardrails"][0]["state"] == "half_open"
    assert flags.variant("bot", {"user_id": "x"}).id == "cand"
    healthy = FakeProvider()
    for i in range(20):
        r = flags.call("bot", {"user_id": f"p{i}"}, healthy)
        assert r.variant.id == "cand"
    assert flags.status()["guardrails"] == []
    assert flags.variant("bot", {"user_id": "x"}).reason == "DEFAULT"
    assert [e["type"] for e in events if e["type"].startswith("guardrail_")] == [
        "guardrail_trip",
        "guardrail_probe",
        "guardrail_recover",
    ]


def test_processes_append_whole_lines_to_one_events_file(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    script = tmp_path / "writer.py"
    script.write_text(
        "import json, sys\n"
        "from flagrail import Flags\n"
        "flags = Flags.from_json(sys.argv[1], events=sys.argv[2])\n"
        "for i in range(300):\n"
        "    flags.call('bot', {'user_id': f'{sys.argv[3]}-{i}', 'segment': 'x' * (i % 200)}, lambda v: 1)\n"
    )
    doc = json.dumps(chain_doc())
    writers = [
        subprocess.Popen([sys.executable, str(script), doc, str(events), f"w{n}"]) for n in range(3)
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    lines = events.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is one whole event
    assert len(parsed) == 3 * 300 * 2  # an exposure and an outcome per call
    assert {e["unit"].split("-")[0] for e in parsed} == {"w0", "w1", "w2"}


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_calls_from_threads_are_all_counted() -> None:
    flags = Flags.from_dict(chain_doc())
    per_thread = 250
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(per_thread):
                fail = {"a": ProviderError("x", status_code=503)} if i % 10 == 0 else {}
                r = flags.call("bot", {"user_id": f"u{t}-{i}"}, FakeProvider(fail=fail, answer=lambda v: Output(1, input_tokens=1)))
                assert r.value == 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    m = flags.metrics()["bot"]
    assert m["a"]["requests"] == 8 * per_thread
    assert m["a"]["errors"] == 8 * per_thread // 10
    assert m["b"]["requests"] == 8 * per_thread // 10 and m["b"]["errors"] == 0
    assert m["a"]["tokens"]["input"] + m["b"]["tokens"]["input"] == 8 * per_thread


def test_concurrent_acalls_with_gather_are_all_counted() -> None:
    # Late attempts wait on an event nobody sets, so only the attempt timeout ends them; the
    # others finish at once. The timeout is generous so a loaded machine cannot make a prompt
    # attempt late: what is counted never depends on the machine's speed.
    doc = with_variant(chain_doc(), "a", timeout_ms=3000)
    flags = Flags.from_dict(doc)
    n = 400

    async def main() -> list[CallResult[int]]:
        never = asyncio.Event()

        async def ask(v: Variant, i: int) -> int:
            # Every 8th call is late on "a" (cancelled by its timeout), every 5th fails on "a".
            if v.id == "a" and i % 8 == 0:
                await never.wait()
            await asyncio.sleep(0)
            if v.id == "a" and i % 5 == 0:
                raise ProviderError("x", status_code=429)
            return i

        def asker(i: int) -> Callable[[Variant], Awaitable[int]]:
            return lambda v: ask(v, i)

        return await asyncio.gather(*(flags.acall("bot", {"user_id": f"u{i}"}, asker(i)) for i in range(n)))

    results = asyncio.run(main())
    assert [r.value for r in results] == list(range(n))
    late = sum(1 for i in range(n) if i % 8 == 0)
    failed = sum(1 for i in range(n) if i % 8 != 0 and i % 5 == 0)
    m = flags.metrics()["bot"]
    assert m["a"]["requests"] == n
    assert m["a"]["errors_by_kind"]["timeout"] == late
    assert m["a"]["errors_by_kind"]["rate_limit"] == failed
    assert m["b"]["requests"] == late + failed


# -- telemetry ------------------------------------------------------------------------------


TAGS = {"type", "time", "run_id", "flag", "variant", "revision"}


def test_events_are_written_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    flags = Flags.from_dict(chain_doc(), events=path)
    provider = FakeProvider(fail={"a": ProviderError("x", status_code=503)})
    results = [flags.call("bot", {"user_id": f"u{i}", "segment": "beta"}, provider) for i in range(5)]
    assert flags.feedback(results[0].run_id, score=1)
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events].count("exposure") == 5
    assert [e["type"] for e in events].count("outcome") == 10
    assert events[-1]["type"] == "feedback"
    for e in events:
        assert TAGS <= e.keys(), e
        assert e["flag"] == "bot" and e["revision"] == "r1"
    outcomes = [e for e in events if e["type"] == "outcome"]
    assert {(e["variant"], e["outcome"], e["error_kind"]) for e in outcomes} == {
        ("a", "error", "server"),
        ("b", "success", None),
    }
    assert all(e["model"] in ("model-a", "model-b") and e["segment"] == "beta" for e in outcomes)
    assert all(e["unit"] == f"u{i // 2}" for i, e in enumerate(outcomes))


def test_events_from_file_and_write_events(tmp_path: Path) -> None:
    doc_path = tmp_path / "flags.json"
    doc_path.write_text(json.dumps(chain_doc()))
    first, second = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    flags = Flags.from_file(doc_path, reload=False, events=first)
    flags.write_events(second)
    flags.call("bot", USER, lambda v: 1)
    assert first.read_text() == second.read_text()
    assert len(first.read_text().splitlines()) == 2
    j = Flags.from_json(json.dumps(chain_doc()), events=tmp_path / "three.jsonl")
    j.call("bot", USER, lambda v: 1)
    assert len((tmp_path / "three.jsonl").read_text().splitlines()) == 2
    with pytest.raises(flagrail.SourceError):
        flags.write_events(tmp_path / "no-such-dir" / "x.jsonl")


def test_units_can_be_hashed() -> None:
    flags = Flags.from_dict(chain_doc())
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    flags.hash_units("secret")
    flags.call("bot", {"user_id": "alice"}, lambda v: 1)
    flags.hash_units(b"secret")
    flags.call("bot", {"user_id": "alice"}, lambda v: 1)
    flags.hash_units(None)
    flags.call("bot", {"user_id": "alice"}, lambda v: 1)
    units = [e["unit"] for e in events]
    hashed = units[:4]
    assert all(u.startswith("h:") and len(u) == 34 and "alice" not in u for u in hashed)
    assert len(set(hashed)) == 1, "the same unit hashes the same with a str or bytes key"
    assert units[4:] == ["alice", "alice"]
    flags.hash_units("other")
    flags.call("bot", {"user_id": "alice"}, lambda v: 1)
    assert events[-1]["unit"] not in hashed
    with pytest.raises(TypeError):
        flags.hash_units(12)  # type: ignore[arg-type]


def test_a_failing_event_callback_is_logged_and_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    flags = Flags.from_dict(chain_doc())
    seen: list[str] = []

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("sink down")

    flags.on_event(broken)
    flags.on_event(lambda e: seen.append(e["type"]))
    with caplog.at_level(logging.ERROR, logger="flagrail"):
        r = flags.call("bot", USER, lambda v: "ok")
    assert r.value == "ok"
    assert seen == ["exposure", "outcome"]
    records = [rec for rec in caplog.records if rec.name == "flagrail"]
    assert len(records) == 2
    assert records[0].exc_info is not None and "sink down" in str(records[0].exc_info[1])


def test_feedback() -> None:
    flags = Flags.from_dict(chain_doc())
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    r = flags.call("bot", USER, lambda v: "ok")
    assert flags.feedback(r.run_id, score=1, quality=0.8)
    # The first score and the first quality of a run count; a replay counts nothing.
    assert not flags.feedback(r.run_id, score=-1)
    assert not flags.feedback("no-such-run", score=1)
    # NaN, infinities and out-of-range values are refused by the core before anything counts.
    r2 = flags.call("bot", USER, lambda v: "ok")
    for bad in ({"quality": float("nan")}, {"quality": -1e300}, {"quality": 1.5}, {"score": float("inf")}, {"score": -2.0}):
        with pytest.raises(InvalidArgumentError):
            flags.feedback(r2.run_id, **bad)
    m = flags.metrics()["bot"]["a"]
    assert m["quality"] == {"mean": 0.8, "count": 1}
    assert m["feedback"] == {"mean": 1.0, "count": 1}
    fb = [e for e in events if e["type"] == "feedback"]
    assert [(e["run_id"], e["variant"], e["score"]) for e in fb] == [(r.run_id, "a", 1.0)]


def test_metrics_contents() -> None:
    flags = Flags.from_dict(chain_doc())
    for i in range(10):
        fail = {"a": ProviderError("x", status_code=429)} if i % 5 == 0 else {}
        segment = "internal" if i < 4 else "external"
        flags.call(
            "bot",
            {"user_id": f"u{i}", "segment": segment},
            FakeProvider(fail=fail, answer=lambda v: Output("ok", input_tokens=100, output_tokens=10)),
        )
    m = flags.metrics()
    a = m["bot"]["a"]
    assert a["requests"] == 10 and a["errors"] == 2 and a["error_rate"] == pytest.approx(0.2)
    assert a["errors_by_kind"]["rate_limit"] == 2
    assert a["tokens"] == {"input": 800, "output": 80}
    assert a["segments"]["internal"]["requests"] == 4 and a["segments"]["external"]["requests"] == 6
    assert a["latency_ms"]["count"] == 10 and a["latency_ms"]["p50"] is not None
    assert m["bot"]["b"]["requests"] == 2
    json.dumps(m)  # plain JSON types all the way down


def test_metrics_text_parses_as_prometheus() -> None:
    flags = Flags.from_dict(guarded_doc())
    provider = FakeProvider(fail={"cand": ProviderError("x", status_code=503)}, answer=lambda v: Output("ok", input_tokens=7))
    for i in range(25):
        flags.call("bot", {"user_id": f"u{i}", "segment": "beta"}, provider)
    text = flags.metrics_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["flagrail_requests"]
    assert requests.type == "counter"
    samples = {
        (s.labels["variant"], s.labels.get("segment")): s.value
        for s in requests.samples
        if s.name == "flagrail_requests_total"
    }
    # One series per segment and no per-variant total beside them (tests/python/test_prometheus.py).
    assert ("cand", None) not in samples
    assert samples[("cand", "beta")] == 20, "the guardrail trips at 20 and reroutes the rest"
    assert samples[("stable", "beta")] == 25
    errors: dict[tuple[str, str], float] = {}
    for s in families["flagrail_errors"].samples:
        if s.name == "flagrail_errors_total":
            key = (s.labels["variant"], s.labels["kind"])
            errors[key] = errors.get(key, 0) + s.value
    assert errors[("cand", "server")] == 20 and errors[("stable", "server")] == 0
    assert any(name.startswith("flagrail_guardrail") for name in families), sorted(families)
    for family in families.values():
        assert family.documentation, family.name


# -- trackers -------------------------------------------------------------------------------


def test_tracker_reports_an_apps_own_call() -> None:
    flags = Flags.from_dict(chain_doc())
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    v = flags.variant("bot", USER)
    t = flags.tracker(v, {"user_id": "u-1", "segment": "beta"})
    assert len(t.run_id) == 32
    t.success(latency_ms=120.0, input_tokens=1000, output_tokens=2000)
    t.success(latency_ms=1.0)  # only the first report counts
    assert flags.feedback(t.run_id, quality=0.9)
    a = flags.metrics()["bot"]["a"]
    assert a["requests"] == 1 and a["latency_ms"]["mean"] == 120.0
    assert a["cost"] == pytest.approx(0.033) and a["segments"]["beta"]["requests"] == 1
    assert [e["type"] for e in events] == ["exposure", "outcome", "feedback"]
    assert all(e["run_id"] == t.run_id for e in events)

    flags.tracker(v).error("rate_limit", latency_ms=5)
    flags.tracker(v).error(ProviderError("x", status_code=503))
    flags.tracker(v).error()
    assert flags.metrics()["bot"]["a"]["errors_by_kind"] | {} == {
        "timeout": 0,
        "rate_limit": 1,
        "server": 1,
        "content_policy": 0,
        "rejected": 0,
        "other": 1,
        "invalid_request": 0,
        "threads_busy": 0,
    }
    with pytest.raises(InvalidArgumentError):
        flags.tracker(v).error("explode")
    with pytest.raises(FlagNotFoundError):
        flags.tracker(flags.variant("nope", USER))
