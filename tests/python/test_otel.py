"""OpenTelemetry spans of ``Flags.call`` / ``Flags.acall``, read back with the SDK's
``InMemorySpanExporter``.

The SDK's provider is global and set once per process: here it samples only while a test of
this file runs (``Switch``), so the rest of the suite evaluates with non-recording spans.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import Attributes

from flagrail import AllAttemptsFailedError, Flags, Output, Reject, Variant


class Switch(Sampler):
    """Records while ``on``; drops (non-recording spans) otherwise."""

    def __init__(self) -> None:
        self.on = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        # The sampler hands the start attributes on to the span.
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "flagrail test switch"


SWITCH = Switch()
EXPORTER = InMemorySpanExporter()
_provider = TracerProvider(sampler=SWITCH)
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)


@pytest.fixture(autouse=True)
def recording() -> Iterator[None]:
    EXPORTER.clear()
    SWITCH.on = True
    try:
        yield
    finally:
        SWITCH.on = False
        EXPORTER.clear()


def doc(**extra: Any) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "variants": {
            "a": {"model": "model-a", "temperature": 0.2, "max_tokens": 500},
            "b": {"model": "model-b", "timeout_ms": 50},
            "human": {"ai": False, "message": "Talk to a person"},
        },
        "default": "a",
        "fallback": ["b", "human"],
        "rules": [{"id": "pro", "when": {"attr": "plan", "op": "eq", "value": "pro"}, "serve": "a"}],
    }
    flag.update(extra)
    return {"revision": "r7", "flags": {"bot": flag}}


def spans() -> tuple[ReadableSpan, list[ReadableSpan]]:
    finished = EXPORTER.get_finished_spans()
    runs = [s for s in finished if s.name == "flagrail.call bot"]
    assert len(runs) == 1, [s.name for s in finished]
    attempts = [s for s in finished if s.name == "flagrail.attempt bot"]
    attempts.sort(key=lambda s: s.start_time or 0)
    return runs[0], attempts


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_served_call_is_a_run_span_with_one_attempt_child() -> None:
    flags = Flags.from_dict(doc())
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("request") as request:

        def fn(v: Variant) -> Output[str]:
            # The attempt span is current while the function runs: the model client's spans
            # nest under it.
            inner = trace.get_current_span()
            assert inner.get_span_context().span_id != request.get_span_context().span_id
            return Output("hi", input_tokens=12, output_tokens=34, cost=0.5)

        r = flags.call("bot", {"user_id": "u1", "plan": "pro"}, fn)
    run, attempts = spans()
    assert len(attempts) == 1
    attempt = attempts[0]
    assert run.parent is not None and run.parent.span_id == request.get_span_context().span_id
    assert attempt.parent is not None and attempt.parent.span_id == run.context.span_id
    a = attrs(run)
    assert a["feature_flag.key"] == "bot"
    assert a["feature_flag.provider.name"] == "flagrail"
    assert a["feature_flag.result.variant"] == "a"
    assert a["feature_flag.result.reason"] == "targeting_match"
    assert a["feature_flag.version"] == "r7"
    assert a["flagrail.run_id"] == r.run_id
    assert a["flagrail.rule_id"] == "pro"
    assert a["flagrail.fallback_used"] is False
    assert a["gen_ai.request.model"] == "model-a"
    assert a["gen_ai.usage.input_tokens"] == 12
    assert a["gen_ai.usage.output_tokens"] == 34
    assert a["flagrail.cost"] == 0.5
    assert run.status.status_code == StatusCode.UNSET
    events = [e for e in run.events if e.name == "feature_flag.evaluation"]
    assert len(events) == 1 and dict(events[0].attributes or {})["feature_flag.result.variant"] == "a"
    b = attrs(attempt)
    assert b["feature_flag.result.variant"] == "a"
    assert b["gen_ai.request.model"] == "model-a"
    assert b["gen_ai.request.temperature"] == 0.2
    assert b["gen_ai.request.max_tokens"] == 500
    assert b["gen_ai.usage.output_tokens"] == 34
    assert b["flagrail.outcome"] == "success"
    assert b["flagrail.shadow"] is False


def test_a_fallback_chain_has_one_attempt_span_per_step_with_the_errors_recorded() -> None:
    flags = Flags.from_dict(doc())

    def fn(v: Variant) -> str:
        if v.id == "a":
            raise Reject("too short")
        time.sleep(0.5)  # "b" has a 50 ms timeout: abandoned
        return "late"

    r = flags.call("bot", {"user_id": "u1"}, fn)
    assert r.variant.id == "human" and r.fallback_used
    run, attempts = spans()
    assert [attrs(s)["feature_flag.result.variant"] for s in attempts] == ["a", "b"]
    rejected, late = attempts
    assert rejected.status.status_code == StatusCode.ERROR
    assert attrs(rejected)["error.type"] == "rejected"
    assert any(e.name == "exception" for e in rejected.events)
    # Abandoned at its timeout: labelled by the core's record, ended at the timeout (not when
    # the thread finished).
    assert late.status.status_code == StatusCode.ERROR
    assert attrs(late)["error.type"] == "timeout"
    assert late.end_time is not None and late.start_time is not None
    assert late.end_time - late.start_time < 400_000_000
    a = attrs(run)
    assert a["feature_flag.result.variant"] == "human"
    assert a["flagrail.assigned_variant"] == "a"
    assert a["flagrail.fallback_used"] is True
    assert a["flagrail.attempts"] == 2


def test_all_attempts_failed_is_an_error_on_the_run_span() -> None:
    flags = Flags.from_dict(doc(fallback=["b"]))

    def fn(v: Variant) -> str:
        raise RuntimeError(f"down {v.id}")

    with pytest.raises(AllAttemptsFailedError) as failed:
        flags.call("bot", {"user_id": "u1"}, fn)
    run, attempts = spans()
    assert run.status.status_code == StatusCode.ERROR
    assert attrs(run)["error.type"] == "ALL_ATTEMPTS_FAILED"
    assert attrs(run)["flagrail.run_id"] == failed.value.run_id
    assert [attrs(s)["error.type"] for s in attempts] == ["other", "other"]


def test_an_unknown_flag_is_an_error_span() -> None:
    flags = Flags.from_dict(doc())
    with pytest.raises(Exception):
        flags.call("bot-typo", {}, lambda v: "x")
    finished = EXPORTER.get_finished_spans()
    assert len(finished) == 1
    assert dict(finished[0].attributes or {})["error.type"] == "FLAG_NOT_FOUND"


def test_acall_spans_and_a_cancelled_timeout() -> None:
    flags = Flags.from_dict(doc())

    async def fn(v: Variant) -> str:
        if v.id == "b":
            await asyncio.sleep(1)
        raise_if = v.id == "a"
        if raise_if:
            raise RuntimeError("boom")
        return "never"

    r = asyncio.run(flags.acall("bot", {"user_id": "u1"}, fn))
    assert r.variant.id == "human"
    run, attempts = spans()
    assert [attrs(s)["error.type"] for s in attempts] == ["other", "timeout"]
    assert attrs(run)["flagrail.attempts"] == 2


def test_nothing_is_recorded_without_a_sampled_span_and_the_result_is_the_same() -> None:
    SWITCH.on = False
    flags = Flags.from_dict(doc())
    r = flags.call("bot", {"user_id": "u1"}, lambda v: v.id)
    assert r.value == "a"
    assert EXPORTER.get_finished_spans() == ()


def test_threads_each_get_their_own_run_span() -> None:
    flags = Flags.from_dict(doc())
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                flags.call("bot", {"user_id": "u1"}, lambda v: "ok")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    finished = EXPORTER.get_finished_spans()
    runs = {s.context.span_id for s in finished if s.name == "flagrail.call bot"}
    attempts = [s for s in finished if s.name == "flagrail.attempt bot"]
    assert len(runs) == 80 and len(attempts) == 80
    assert all(s.parent is not None and s.parent.span_id in runs for s in attempts)


def test_without_opentelemetry_call_stays_the_native_method() -> None:
    # FLAGRAIL_OTEL=0 is the same switch as a missing package: nothing is imported.
    code = (
        "import sys, flagrail\n"
        "print(type(flagrail.Flags.call).__name__, 'opentelemetry' in sys.modules)\n"
    )
    env = dict(os.environ, FLAGRAIL_OTEL="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["method_descriptor", "False"]
    # With it installed, the package imports nothing from it until the first call, which
    # (no SDK registered in that process) runs untraced with the same result.
    code = (
        "import sys, flagrail\n"
        "before = 'opentelemetry.trace' in sys.modules\n"
        "flags = flagrail.Flags.from_dict({'revision': 'r', 'flags': {'f': {'variants': {'a': {}}, 'default': 'a'}}})\n"
        "r = flags.call('f', {}, lambda v: 'ok')\n"
        "print(before, 'opentelemetry.trace' in sys.modules, r.value, r.variant.id)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "ok", "a"]


def test_a_shadow_attempt_is_an_attempt_span_of_the_run() -> None:
    flags = Flags.from_dict(doc(shadow={"variant": "b", "percent": 100, "max_cost_per_hour": 5.0}))
    done = threading.Event()

    def fn(v: Variant) -> str:
        if v.is_shadow:
            done.set()
        return f"answer {v.id}"

    r = flags.call("bot", {"user_id": "u1"}, fn)
    assert r.shadow == "b"
    assert done.wait(10)

    def both() -> list[ReadableSpan] | None:
        found = [s for s in EXPORTER.get_finished_spans() if s.name == "flagrail.attempt bot"]
        return found if len(found) == 2 else None

    deadline = time.monotonic() + 10
    attempts = both()
    while attempts is None and time.monotonic() < deadline:
        time.sleep(0.01)
        attempts = both()
    assert attempts is not None
    run = [s for s in EXPORTER.get_finished_spans() if s.name == "flagrail.call bot"][0]
    by_shadow = {attrs(s)["flagrail.shadow"]: s for s in attempts}
    assert attrs(by_shadow[True])["feature_flag.result.variant"] == "b"
    assert attrs(by_shadow[False])["feature_flag.result.variant"] == "a"
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in attempts)
