"""OpenTelemetry spans around ``Flags.call`` and ``Flags.acall``.

Installed by the package at import when ``opentelemetry`` can be found and
``FLAGRAIL_OTEL`` is not ``0``; otherwise nothing here is imported and ``call`` is the native
method itself (no cost). ``opentelemetry.trace`` is imported on the first call, and while no
SDK is configured (the API's non-recording spans) a call goes straight to the native method.

Each call makes a span ``flagrail.call <flag>`` (the run) with one child
``flagrail.attempt <flag>`` per time the function is called (the fallback chain, the shadow),
current while the function runs so that the model client's own spans nest under it. The
attributes are OpenTelemetry's feature-flag ones (``feature_flag.key``,
``feature_flag.result.variant``, ``feature_flag.result.reason``, ``feature_flag.version`` =
the document revision, ``feature_flag.provider.name``), the GenAI ones the variant and the
function's ``Output`` know (``gen_ai.request.model``, ``gen_ai.request.temperature``,
``gen_ai.request.max_tokens``, ``gen_ai.request.top_p``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``) and flagrail's (``flagrail.run_id``, ``flagrail.rule_id``,
``flagrail.assigned_variant``, ``flagrail.fallback_used``, ``flagrail.attempts``,
``flagrail.cost``, ``flagrail.outcome``, ``flagrail.shadow``). A failed attempt has status
ERROR and ``error.type`` = the core's error kind (``timeout``, ``rate_limit`` …); an attempt
abandoned at its timeout ends at the timeout. docs/ecosystem.md lists them all; the Node
package (``otel.js``) makes the same spans.

Not public API.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ._flagrail import Flags, Output, __version__

if TYPE_CHECKING:
    from ._flagrail import Attempt, CallResult, Variant

__all__ = ["install"]

PROVIDER_NAME = "flagrail"

_tracer: Any = None
_api: Any = None


def _load() -> Any:
    """The tracer, resolved on the first call (a proxy until the app sets a provider)."""
    global _tracer, _api
    if _tracer is None:
        from opentelemetry import trace

        _api = trace
        _tracer = trace.get_tracer("flagrail", __version__)
    return _tracer


_UNKNOWN = object()


def _without_sdk() -> bool:
    """No tracer provider registered yet: every span would be non-recording, so the call runs
    untraced. Checked on every call (an app may register its provider after the first one),
    so it reads the API's global directly: ``get_tracer_provider()`` consults the process
    environment each time, which costs more than the rest of this wrapper. Should a future
    API rename that global, the public function decides instead."""
    _load()
    registered = getattr(_api, "_TRACER_PROVIDER", _UNKNOWN)
    if registered is _UNKNOWN:
        return type(_api.get_tracer_provider()) is _api.ProxyTracerProvider
    return registered is None


def _variant_attributes(variant: Variant, attributes: dict[str, Any]) -> None:
    """The GenAI request attributes a variant's payload knows."""
    payload = variant.payload
    if not hasattr(payload, "get"):
        return
    model = payload.get("model")
    if isinstance(model, str):
        attributes["gen_ai.request.model"] = model
    for field, name in (("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p")):
        value = payload.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attributes[name] = float(value)
    max_tokens = payload.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attributes["gen_ai.request.max_tokens"] = max_tokens


class _Attempt:
    """One call of the user's function: its span and when it started; the lock makes the
    function's end and the run's end of it exclusive."""

    __slots__ = ("span", "start_ns", "lock", "ended_by_run")

    def __init__(self, span: Any, start_ns: int, ended_by_run: bool) -> None:
        self.span = span
        self.start_ns = start_ns
        self.lock = threading.Lock()
        # An attempt of the served chain: the run's record of it (outcome, the core's error
        # kind, usage, latency) labels and ends it, so that an attempt abandoned at its
        # timeout reads as a timeout even when its function returns later. A shadow's ends
        # itself.
        self.ended_by_run = ended_by_run

    def succeed(self, value: Any) -> None:
        with self.lock:
            span = self.span
            if self.ended_by_run or not span.is_recording():
                return
            span.set_attribute("flagrail.outcome", "success")
            if isinstance(value, Output):
                if value.input_tokens is not None:
                    span.set_attribute("gen_ai.usage.input_tokens", value.input_tokens)
                if value.output_tokens is not None:
                    span.set_attribute("gen_ai.usage.output_tokens", value.output_tokens)
                if value.cost is not None:
                    span.set_attribute("flagrail.cost", value.cost)
            span.end()

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            span = self.span
            if not span.is_recording():
                return
            span.record_exception(exc)
            span.set_status(_api.Status(_api.StatusCode.ERROR, str(exc) or type(exc).__name__))
            if self.ended_by_run:
                return  # the run labels it with the core's error kind and latency
            kind = getattr(exc, "error_kind", None)
            span.set_attribute("flagrail.outcome", "error")
            span.set_attribute("error.type", kind if isinstance(kind, str) else type(exc).__qualname__)
            span.end()

    def settle(self, record: Attempt) -> None:
        with self.lock:
            span = self.span
            if not span.is_recording():
                return
            span.set_attribute("flagrail.outcome", record.outcome)
            if record.input_tokens is not None:
                span.set_attribute("gen_ai.usage.input_tokens", record.input_tokens)
            if record.output_tokens is not None:
                span.set_attribute("gen_ai.usage.output_tokens", record.output_tokens)
            if record.cost is not None:
                span.set_attribute("flagrail.cost", record.cost)
            if record.error_kind is not None:
                span.set_attribute("error.type", record.error_kind)
                span.set_status(_api.Status(_api.StatusCode.ERROR, record.error or record.error_kind))
            span.end(end_time=self.start_ns + int(record.latency_ms * 1_000_000))

    def end(self) -> None:
        with self.lock:
            if self.span.is_recording():
                self.span.end()


class _Traced:
    """The user's function as the native chain calls it: each call is an attempt span, current
    while the function runs (on this thread, a worker thread or the event loop)."""

    __slots__ = ("fn", "flag", "parent", "is_async", "attempts", "calls")

    def __init__(self, fn: Callable[..., Any], flag: str, parent: Any, is_async: bool) -> None:
        self.fn = fn
        self.flag = flag
        self.parent = parent
        self.is_async = is_async
        # Served-chain attempts by variant id (each variant is tried at most once per run).
        self.attempts: dict[str, _Attempt] = {}
        self.calls = 0

    def __repr__(self) -> str:
        return repr(self.fn)  # what `call`'s error messages show

    def _start(self, variant: Variant) -> _Attempt:
        self.calls += 1
        attributes: dict[str, Any] = {
            "feature_flag.key": self.flag,
            "feature_flag.provider.name": PROVIDER_NAME,
            "feature_flag.result.variant": str(variant.id),
            "feature_flag.version": variant.revision,
            "flagrail.shadow": variant.is_shadow,
            "flagrail.attempt": self.calls,
        }
        _variant_attributes(variant, attributes)
        start_ns = time.time_ns()
        span = _tracer.start_span(
            f"flagrail.attempt {self.flag}",
            context=self.parent,
            attributes=attributes,
            start_time=start_ns,
        )
        attempt = _Attempt(span, start_ns, not variant.is_shadow)
        if not variant.is_shadow:
            self.attempts[str(variant.id)] = attempt
        return attempt

    def __call__(self, variant: Variant) -> Any:
        attempt = self._start(variant)
        try:
            with _api.use_span(attempt.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                value = self.fn(variant)
        except BaseException as exc:
            attempt.fail(exc)
            raise
        if self.is_async and hasattr(value, "__await__"):
            return self._finish_async(attempt, value)
        attempt.succeed(value)
        return value

    async def _finish_async(self, attempt: _Attempt, pending: Awaitable[Any]) -> Any:
        try:
            with _api.use_span(attempt.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                value = await pending
        except BaseException as exc:
            attempt.fail(exc)
            raise
        attempt.succeed(value)
        return value

    def settle(self, attempts: list[Attempt]) -> None:
        """Labels each attempt span with what the core recorded (``error.type`` is the core's
        error kind); one still open was abandoned at its timeout and ends there."""
        for record in attempts:
            attempt = self.attempts.get(record.variant)
            if attempt is not None:
                attempt.settle(record)

    def close(self) -> None:
        """Ends every attempt span still open (the call itself was cancelled)."""
        for attempt in list(self.attempts.values()):
            attempt.end()


def _served(run_span: Any, traced: _Traced, result: CallResult[Any]) -> None:
    variant = result.variant
    attributes: dict[str, Any] = {
        "feature_flag.result.variant": str(variant.id),
        "feature_flag.result.reason": variant._open_feature_reason.lower(),
        "feature_flag.version": variant.revision,
        "flagrail.run_id": result.run_id,
        "flagrail.assigned_variant": result.assigned,
        "flagrail.fallback_used": result.fallback_used,
    }
    if variant.rule_id is not None:
        attributes["flagrail.rule_id"] = variant.rule_id
    _variant_attributes(variant, attributes)
    _usage(result.attempts, attributes)
    run_span.set_attributes(attributes)
    # The evaluation as OpenTelemetry's feature-flag event, on the span it happened in.
    run_span.add_event(
        "feature_flag.evaluation",
        {
            "feature_flag.key": variant.flag,
            "feature_flag.provider.name": PROVIDER_NAME,
            "feature_flag.result.variant": str(variant.id),
            "feature_flag.result.reason": attributes["feature_flag.result.reason"],
            "feature_flag.version": variant.revision,
        },
    )
    traced.settle(result.attempts)
    traced.close()


def _usage(attempts: list[Attempt], attributes: dict[str, Any]) -> None:
    attributes["flagrail.attempts"] = len(attempts)
    totals = {"gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0}
    seen = set()
    cost = 0.0
    for record in attempts:
        for name, value in (
            ("gen_ai.usage.input_tokens", record.input_tokens),
            ("gen_ai.usage.output_tokens", record.output_tokens),
        ):
            if value is not None:
                totals[name] += value
                seen.add(name)
        if record.cost is not None:
            cost += record.cost
            seen.add("flagrail.cost")
    for name, total in totals.items():
        if name in seen:
            attributes[name] = total
    if "flagrail.cost" in seen:
        attributes["flagrail.cost"] = cost


def _failed(run_span: Any, traced: _Traced | None, exc: BaseException) -> None:
    attempts = getattr(exc, "attempts", None)
    code = getattr(exc, "code", None)
    run_id = getattr(exc, "run_id", None)
    if isinstance(run_id, str):
        run_span.set_attribute("flagrail.run_id", run_id)
    if isinstance(attempts, list):
        attributes: dict[str, Any] = {}
        _usage(attempts, attributes)
        run_span.set_attributes(attributes)
        if traced is not None:
            traced.settle(attempts)
    if traced is not None:
        traced.close()
    run_span.set_attribute("error.type", code if isinstance(code, str) else type(exc).__qualname__)
    run_span.record_exception(exc)
    run_span.set_status(_api.Status(_api.StatusCode.ERROR, str(exc) or type(exc).__name__))


def _run_span(flag: Any) -> Any:
    return _load().start_span(
        f"flagrail.call {flag}",
        attributes={"feature_flag.key": str(flag), "feature_flag.provider.name": PROVIDER_NAME},
    )


def install() -> None:
    """Replaces ``Flags.call`` and ``Flags.acall`` with the traced versions below."""
    native_call = Flags.call
    native_acall = Flags.acall

    @functools.wraps(native_call)
    def call(self: Flags, flag: str, context: Any, fn: Callable[..., Any]) -> Any:
        if _without_sdk():
            return native_call(self, flag, context, fn)
        run_span = _run_span(flag)
        if not run_span.is_recording():
            return native_call(self, flag, context, fn)
        parent = _api.set_span_in_context(run_span)
        traced = _Traced(fn, str(flag), parent, is_async=False)
        try:
            with _api.use_span(run_span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                result = native_call(self, flag, context, traced)
        except BaseException as exc:
            _failed(run_span, traced, exc)
            run_span.end()
            raise
        _served(run_span, traced, result)
        run_span.end()
        return result

    @functools.wraps(native_acall)
    async def acall(self: Flags, flag: str, context: Any, fn: Callable[..., Any]) -> Any:
        if _without_sdk():
            return await native_acall(self, flag, context, fn)
        run_span = _run_span(flag)
        if not run_span.is_recording():
            return await native_acall(self, flag, context, fn)
        parent = _api.set_span_in_context(run_span)
        traced = _Traced(fn, str(flag), parent, is_async=True)
        try:
            with _api.use_span(run_span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                result = await native_acall(self, flag, context, traced)
        except BaseException as exc:
            _failed(run_span, traced, exc)
            run_span.end()
            raise
        _served(run_span, traced, result)
        run_span.end()
        return result

    setattr(Flags, "call", call)
    setattr(Flags, "acall", acall)
